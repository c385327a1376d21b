//! `cargo run -p step02`: see the crate documentation (`src/lib.rs`) for what this step is.
fn main() -> std::process::ExitCode {
    shared::cli::main::<step02::Server>("step02")
}
