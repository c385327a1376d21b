//! `cargo run -p step09`: see the crate documentation (`src/lib.rs`) for what this step is.
fn main() -> std::process::ExitCode {
    shared::cli::main::<step09::Server>("step09")
}
