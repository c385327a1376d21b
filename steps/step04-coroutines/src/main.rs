//! `cargo run -p step04`: see the crate documentation (`src/lib.rs`) for what this step is.
fn main() -> std::process::ExitCode {
    shared::cli::main::<step04::Server>("step04")
}
