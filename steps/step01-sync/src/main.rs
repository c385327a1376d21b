//! `cargo run -p step01`: see the crate documentation (`src/lib.rs`) for what this step is.
fn main() -> std::process::ExitCode {
    shared::cli::main::<step01::Server>("step01")
}
