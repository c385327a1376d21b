//! `cargo run -p step05`: see the crate documentation (`src/lib.rs`) for what this step is.
fn main() -> std::process::ExitCode {
    shared::cli::main::<step05::Server>("step05")
}
