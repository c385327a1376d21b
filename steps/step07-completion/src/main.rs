//! `cargo run -p step07`: see the crate documentation (`src/lib.rs`) for what this step is.
fn main() -> std::process::ExitCode {
    shared::cli::main::<step07::Server>("step07")
}
