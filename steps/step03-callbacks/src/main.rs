//! `cargo run -p step03`: see the crate documentation (`src/lib.rs`) for what this step is.
fn main() -> std::process::ExitCode {
    shared::cli::main::<step03::Server>("step03")
}
