//! The load clients of the workbook: what puts a step under load and measures how it copes.
//!
//! Two clients, two questions:
//!
//! - **fast** ([`run_fast`]): how many tiny requests (`1\n`) a server answers per second, how
//!   long each one waits (p50/p99/p99.9 latency), and whether every connection is served or
//!   some are *starved* (a step that serves one connection at a time answers only the first).
//!   Paced with [`FastConfig::rate`] (`fast --rate 2`), it is slow enough to follow one
//!   request at a time through a server's trace ([`run_fast_with_answers`] reports each).
//! - **slow** ([`run_slow`]): how long a CPU-heavy request (`40\n`, fib(40), about 0.3 s of one
//!   core) takes, alone, side by side with another, or beside a fast load.
//!
//! And two helpers for the workshop:
//!
//! - **idle** ([`run_idle`], `fast --idle`): holds many connections open and idle, to watch
//!   what they cost a server (a thread each for step02, almost nothing for step03's event
//!   loop), then checks that each is still served.
//! - **talk** (the `talk` binary): type lines at a server and read its answers, for machines
//!   without `nc`.
//!
//! A run ends at its time or count, on Ctrl-C, or when the server closes a connection (it
//! shuts down, or times out an idle client with `error: idle timeout`): the report says which
//! ([`Ended`]), and it is not an error. Wrong answers are ([`ClientError`]).
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use std::time::Duration;
//!
//! let config = clients::FastConfig {
//!     conns: 8,
//!     depth: 16,
//!     duration: Some(Duration::from_secs(3)),
//!     ..clients::FastConfig::default()
//! };
//! let stop = AtomicBool::new(false);
//! let report = clients::run_fast(&config, &stop, &mut |second| println!("{second}"))?;
//! println!("{report}");
//! # Ok::<(), clients::ClientError>(())
//! ```
//!
//! The clients share a small machine with the server under test, so whatever CPU they burn is
//! taken from the server and limits what can be measured. That is why the fast client drives
//! all its connections from one thread with a readiness loop (mio) instead of a thread per
//! connection, and checks answers by comparing bytes with the one answer it expects instead
//! of parsing numbers. The socket code is written by hand: it is the client side of the same
//! lesson the steps teach.
//!
//! The modules:
//!
//! - [`fast`]: the fast client's event loop, and [`fast::connection`] for one connection's
//!   state machine (write a batch, count its answers, write the next);
//! - [`slow`]: the slow client, a blocking thread per connection;
//! - [`idle`]: the idle client, many connections held open by one readiness loop;
//! - [`request`]: the request a client repeats and the answer line it expects;
//! - [`answers`]: checking a stream of answers against that line, byte by byte;
//! - [`connect`]: opening a connection, with a deadline and a clear error, and enough open
//!   files for many;
//! - [`stats`]: the latency histogram, and latencies for people ([`Micros`]: `48 µs`,
//!   `12.5 ms`, `301 ms`);
//! - [`report`]: what a run measured, why it ended, and how it prints;
//! - [`error`]: everything that makes a run fail, as one-line messages;
//! - [`cli`]: what the `fast`, `slow` and `talk` binaries share (flags, host names, Ctrl-C);
//! - [`table`]: the results-table runner's parts (the `table` binary drives them).
//!
//! Every function here returns within its time limit, even against a server that accepts
//! connections and never answers, so that a results-table runner can call them in-process
//! and trust them to come back.

pub mod answers;
pub mod cli;
pub mod connect;
pub mod error;
pub mod fast;
pub mod idle;
pub mod report;
pub mod request;
pub mod slow;
pub mod stats;
pub mod table;

pub use error::ClientError;
pub use fast::{FastConfig, run_fast, run_fast_with_answers};
pub use idle::{IdleConfig, IdleReport, IdleSecond, run_idle};
pub use report::{Ended, FastAnswer, FastReport, SecondReport, SlowAnswer, SlowReport};
pub use request::Request;
pub use slow::{SlowConfig, run_slow};
pub use stats::{Latency, Micros, Percentiles};
