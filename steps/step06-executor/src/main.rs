//! `cargo run -p step06`: see the crate documentation (`src/lib.rs`) for what this step is.
fn main() -> std::process::ExitCode {
    shared::cli::main::<step06::Server>("step06")
}
