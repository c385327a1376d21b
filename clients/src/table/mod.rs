//! The results table: every step, measured under the same loads, on this machine.
//!
//! The `table` binary (`cargo run --release -p clients --bin table`) drives these modules; the
//! slides test reads [`columns`] and [`markdown`] to check the tables quoted on the slides.
//!
//! - [`runs`]: the loads and one round of them against a step's process;
//! - [`costs`]: what one request costs the server: system calls (by kind), context switches
//!   (counted with the kernel's perf events) and CPU time (from `/proc`);
//! - [`process`]: building the steps, running each as a process of its own, pinned to CPUs
//!   in the per-core mode;
//! - [`pinning`]: which CPUs there are, and keeping a thread or a process on some of them;
//! - [`idle`]: the memory column, 10,000 idle connections;
//! - [`columns`]: the columns and how each cell is derived from the raw numbers (medians over
//!   rounds, with their spread);
//! - [`output`]: the Markdown document, the JSON file, the comparison with an earlier run;
//! - [`markdown`]: an aligned Markdown table, the one renderer the runner and the slides test
//!   share;
//! - [`chart`]: the SVG chart, a small panel per column with its own scale;
//! - [`machine`]: what machine a table was measured on.

pub mod chart;
pub mod columns;
pub mod costs;
pub mod idle;
pub mod machine;
pub mod markdown;
pub mod output;
pub mod pinning;
pub mod process;
pub mod runs;
