//! `cargo run -p step08`: see the crate documentation (`src/lib.rs`) for what this step is.
fn main() -> std::process::ExitCode {
    shared::cli::main::<step08::Server>("step08")
}
