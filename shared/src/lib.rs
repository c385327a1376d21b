//! What every step of the workbook shares, so that a step's source shows only its
//! concurrency style:
//!
//! - [`protocol`]: framing lines out of a byte stream, parsing requests, writing answers;
//! - [`fib`]: the deliberately slow recursive Fibonacci, the CPU work the workshop measures;
//! - [`cli`]: the server command line (`--addr`, `--max-n`), the `listening on` line, and the
//!   [`Server`] trait through which `main`, the tests and the benchmarks start any step;
//! - [`net`]: socket helpers (running out of file descriptors, reporting a failed
//!   connection);
//! - [`shutdown`]: hearing about Ctrl-C and SIGTERM, and what a step says as it drains;
//! - [`trace`]: `--trace` and `--trace-file`, watching a loop turn.

pub mod cli;
pub mod fib;
pub mod net;
pub mod protocol;
pub mod shutdown;
pub mod trace;

pub use cli::{Config, NoOptions, Server};
