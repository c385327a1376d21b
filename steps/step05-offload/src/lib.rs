//! # Step 5: step04's loop, plus a thread pool for the CPU work
//!
//! One thread still does all the I/O, running every connection as an `async fn` task on
//! step04's executor and reactor. What changed is where fib runs: a large `n` goes to a small
//! pool of threads, one per core, and its answer comes back as a future whose task the pool
//! thread wakes.
//!
//! **What changed since step04:** step04's loop stalled for everybody while one fib(40) ran
//! on its thread. Now the connection's task hands fib(40) to the pool and awaits the answer
//! like it awaits a socket: it steps aside, and the loop serves every other connection
//! meanwhile. The executor, reactor and sockets are step04's, used as a library, so this crate
//! holds only the new idea:
//!
//! - [`pool`]: the pool threads and their job queue;
//! - [`offload`]: the future an answer comes back through, a slot and a waker shared with the
//!   pool thread (a oneshot channel), and the reason step04's wakers are `Send + Sync` and
//!   interrupt the reactor's wait;
//! - this file: the server on step04's accept loop and connection handler (`step04::serve`),
//!   with an [`Offloaded`] answer that decides where each fib runs: step04's [`Inline`]
//!   answer is the one thing this step replaces.
//!
//! [`Inline`]: step04::Inline
//!
//! **Which requests go to the pool, and why not all of them:** the hop to a pool thread and back
//! is not free. The job is queued and a sleeping pool thread woken (a futex call; the scheduler
//! finds it a core), the request's bytes move to that core's cache and the answer back, and
//! the pool thread wakes the loop (a write to the reactor's eventfd, `epoll_wait` returns). That
//! round trip takes tens of microseconds (16 µs measured here); fib(n) costs about 1.6 times
//! more with every n. Small n are computed inline, where offloading would make the request
//! slower than computing it and spare the loop only a stall shorter than the hop; from
//! [`OFFLOAD_FROM_N`] on, fib is offloaded. The measurement behind that number is in its
//! comment, and `cargo run --release -p step05 --example threshold` measures it on your
//! machine.
//!
//! **Shedding load:** the pool's queue is bounded (`--queue N`, by default 4 jobs per pool
//! thread). A CPU-heavy request that finds it full is answered `error: busy` at once, and the
//! connection goes on: better a quick refusal than an answer minutes late, behind everyone
//! else's fib(45). The idle timeout and the graceful shutdown are step04's, unchanged: a
//! connection waiting for the pool is not reading, so not idle, and a shutdown lets it
//! finish.
//!
//! **Run it** (three terminals):
//!
//! ```text
//! cargo run -p step05
//! cargo run -p clients --bin fast -- --conns 64
//! cargo run -p clients --bin slow
//! ```
//!
//! **What to observe:** a slow client no longer stalls the fast ones. While its fib(40)
//! computes on a pool thread, the fast client's answers keep coming within tens of microseconds,
//! as before it started. Its requests per second drop only by what the pool thread takes from the
//! loop and the client: on a two-core machine one slow client costs the fast one a share of a
//! core (compare the results table's `fast+slow: fast` with `1 fast`). Two slow clients
//! compute in parallel on two cores, each as fast as one alone.
//! Answers on each connection still come in request order: the handler awaits an offloaded
//! answer before it looks at the next line, so a connection waits for its own fib(40), and
//! nobody else does.
//!
//! **The limit:** one core does all the I/O. The pool spreads the CPU work over the cores,
//! but every accept, read and write, every parse and every small fib, still runs on the
//! loop's one thread: with enough fast clients it saturates its core while the others idle,
//! and more clients get no more requests per second out of it. step06 builds the
//! same design on library parts (async-executor, async-net, blocking), whose executor can run
//! on every core.

pub mod offload;
pub mod pool;

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use shared::cli::{Config, NoOptions};
use shared::fib::{OFFLOAD_FROM_N, fib};
use shared::protocol::{self, BUSY_ANSWER, Flow, Frame, Request, write_answer};
use shared::trace::traced_fib;
use step04::{Answer, Settings, executor};

use crate::pool::{Busy, Pool};

/// The step05 server: a listening socket, the options of its connections, and the pool.
#[derive(Debug)]
pub struct Server {
    listener: std::net::TcpListener,
    settings: Settings,
    pool: Pool,
}

impl shared::Server for Server {
    type Options = NoOptions;
    const ABOUT: &'static str = "Step 5: step04's single-threaded async fn loop, plus a thread \
                                 pool (one thread per core) for large fib(n).";
    const COMPUTE_POOL: bool = true;
    const TRACE_TARGETS: &'static [&'static str] = &["step04", "step05"];

    fn bind(config: &Config, _: &NoOptions) -> io::Result<Self> {
        Ok(Server {
            listener: shared::net::listen(config.addr)?,
            settings: Settings::new("step05", config),
            pool: Pool::sized_to_cores(|threads| config.queue_for(threads))?,
        })
    }

    fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener always has a local address")
    }

    fn run(self) -> io::Result<()> {
        let answer = Offloaded {
            max_n: self.settings.max_n,
            pool: self.pool,
        };
        // step04's loop and connections, with this step's answer. The outer `?`: the
        // executor could not start or its reactor failed; the inner result is the loop's.
        executor::block_on(step04::serve(self.listener, self.settings, Rc::new(answer)))?
    }
}

// ANCHOR: answer
/// step05's answer: like step04's, but a large fib is computed on the pool.
#[derive(Debug)]
pub struct Offloaded {
    pub max_n: u32,
    pub pool: Pool,
}

impl Answer for Offloaded {
    /// Awaiting the pool's answer here, before the next frame is even looked at, is what
    /// keeps the answers of one connection in request order. Answers to earlier lines of the
    /// same read wait in `out` meanwhile and go out together with this one.
    async fn answer(&self, frame: Frame<'_>, out: &mut Vec<u8>) -> io::Result<Flow> {
        let n = match protocol::request(frame, self.max_n, out) {
            Request::Fib(n) => n,
            Request::Answered(flow) => return Ok(flow),
        };
        let value = if n < OFFLOAD_FROM_N {
            fib(n)
        } else {
            // (`--trace` says it before the job is queued: a pool thread may start it at once.)
            tracing::trace!(
                "task {}: fib({n}) to the pool",
                step04::executor::current_task()
            );
            match self.pool.run(move || traced_fib(n)) {
                // This task waits; the loop serves the other connections meanwhile.
                Ok(offload) => offload.await?,
                Err(Busy) => {
                    tracing::trace!("fib({n}) refused: the pool's queue is full: error: busy");
                    out.extend_from_slice(BUSY_ANSWER);
                    return Ok(Flow::Continue);
                }
            }
        };
        write_answer(out, value);
        Ok(Flow::Continue)
    }
}
// ANCHOR_END: answer
