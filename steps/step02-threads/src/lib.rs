//! # Step 2: a thread per connection
//!
//! Accept a connection, hand it to a new OS thread, go straight back to accepting. Each
//! thread runs step01's blocking [`serve_connection`] unchanged: the code that serves one
//! client is the same, only who waits for it changed.
//!
//! **What changed since step01:** one line, `thread::spawn`. The kernel's scheduler now
//! decides which connection makes progress; while one thread blocks in `read`, another runs.
//!
//! **Run it** (two terminals, then more):
//!
//! ```text
//! cargo run -p step02
//! cargo run -p clients --bin fast -- --conns 2
//! cargo run -p clients --bin slow
//! ```
//!
//! **What to observe:** two fast clients are both served. Start a slow client beside a fast
//! one: the fast one barely notices. Unlike the Python original, Rust has no global
//! interpreter lock, so fib(40) on one thread runs on one core while the other core keeps
//! answering fast requests. With two slow clients on a two-core machine each takes about as
//! long as one alone.
//!
//! **Stopping work:** step01's: each thread's blocking `read` is bounded by the socket's read
//! timeout, so an idle client is told `error: idle timeout` and closed (`--idle-timeout`).
//! And no graceful shutdown: Ctrl-C ends the process at once. A thread blocked in `read`
//! cannot be told to stop; another thread could only shut each socket down under it (what
//! thread-per-connection servers that drain do), and that needs the list of every socket,
//! shared between threads. The event loops from step03 on have that list: it is their state.
//!
//! **The limit:** a thread per connection costs memory (a stack each: address space is
//! reserved up front, and the pages it touches stay resident) and scheduling (every wake-up
//! is a context switch). The results table measures the memory at 10,000 idle connections.
//! A server with many mostly idle clients wants one thread that waits for all of them at once:
//! that is readiness-based I/O, step03.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use shared::cli::{Config, NoOptions};
use shared::net::{self, ACCEPT_BACKOFF, is_out_of_resources, is_transient_accept_error};
use step01::serve_connection;

/// The step02 server: a listening socket and the protocol's `--max-n` and `--idle-timeout`.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    max_n: u32,
    idle: Option<Duration>,
}

impl shared::Server for Server {
    type Options = NoOptions;
    const ABOUT: &'static str = "Step 2: a fib server with an OS thread per connection.";
    const GRACEFUL_SHUTDOWN: bool = false;

    fn bind(config: &Config, _: &NoOptions) -> io::Result<Self> {
        Ok(Server {
            listener: net::listen(config.addr)?,
            max_n: config.max_n,
            idle: config.idle(),
        })
    }

    fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener always has a local address")
    }

    // ANCHOR: accept_loop
    fn run(self) -> io::Result<()> {
        let (max_n, idle) = (self.max_n, self.idle);
        loop {
            match self.listener.accept() {
                Ok((stream, _peer)) => {
                    // The only new idea of this step. A small stack is plenty for
                    // serve_connection (and the recursion of fib(93) is 93 frames deep);
                    // it keeps the memory per idle connection down.
                    let spawned = thread::Builder::new()
                        .name("connection".into())
                        .stack_size(64 * 1024)
                        .spawn(move || {
                            if let Err(error) = serve_connection(stream, max_n, idle) {
                                net::report_connection_error("step02", &error);
                            }
                        });
                    if spawned.is_err() {
                        // The OS refused another thread (a limit on threads or memory). The
                        // connection was moved into the closure and is closed as it drops;
                        // pause like for EMFILE rather than refusing the next one at once.
                        thread::sleep(ACCEPT_BACKOFF);
                    }
                }
                Err(error) if is_transient_accept_error(&error) => continue,
                Err(error) => {
                    if !is_out_of_resources(&error) {
                        net::report_accept_error("step02", &error);
                    }
                    thread::sleep(ACCEPT_BACKOFF);
                }
            }
        }
    }
    // ANCHOR_END: accept_loop
}
