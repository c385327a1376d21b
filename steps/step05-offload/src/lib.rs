//! # Step 5: step04's loop, plus a thread pool for the CPU work
//!
//! One thread still does all the I/O, running every connection as an `async fn` task on
//! step04's executor and reactor. What changed is where fib runs: a large `n` goes to a small
//! pool of threads, one per core, and its answer comes back as a future whose task the worker
//! thread wakes.
//!
//! **What changed since step04:** step04's loop stalled for everybody while one fib(40) ran
//! on its thread. Now the connection's task hands fib(40) to the pool and awaits the answer
//! like it awaits a socket: it steps aside, and the loop serves every other connection
//! meanwhile. The executor, reactor and sockets are step04's, used as a library, so this crate
//! holds only the new idea:
//!
//! - [`pool`]: the worker threads and their job queue;
//! - [`offload`]: the future an answer comes back through, a slot and a waker shared with the
//!   worker (a oneshot channel), and the reason step04's wakers are `Send + Sync` and
//!   interrupt the reactor's wait;
//! - this file: the server, with step04's accept loop and handler, and an [`answer`] that
//!   decides where each fib runs (`diff` it against step04's `lib.rs`).
//!
//! **Which requests go to the pool, and why not all of them:** the hop to a worker and back
//! is not free. The job is queued and a sleeping worker woken (a futex call; the scheduler
//! finds it a core), the request's bytes move to that core's cache and the answer back, and
//! the worker wakes the loop (a write to the reactor's eventfd, `epoll_wait` returns). That
//! round trip takes tens of microseconds (16 µs measured here); fib(n) costs about 1.6 times
//! more with every n. Small n are computed inline, where offloading would make the request
//! slower than computing it and spare the loop only a stall shorter than the hop; from
//! [`OFFLOAD_FROM_N`] on, fib is offloaded. The measurement behind that number is in its
//! comment, and `cargo run --release -p step05 --example threshold` measures it on your
//! machine.
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
//! computes on a worker, the fast client's answers keep coming within tens of microseconds,
//! as before it started. Its requests per second drop only by what the worker takes from the
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
use shared::fib::fib;
use shared::net::{ACCEPT_BACKOFF, is_transient_accept_error};
use shared::protocol::{Flow, Frame, LineBuffer, ProtocolError, parse_request};
use shared::protocol::{write_answer, write_error};
use step04::net::{TcpListener, TcpStream};
use step04::{close_after_error, executor, is_out_of_resources, time};

use crate::pool::Pool;

// ANCHOR: threshold
/// fib(n) for `n` at least this is computed on the pool, below it on the loop's thread.
///
/// Measured with `cargo run --release -p step05 --example threshold` on the machine this
/// workbook was written on (2 cores, other work running beside it): the round trip of an
/// empty job through the pool, awaited from a task, took 16 µs (median of 20,000). fib(19)
/// took 12 µs inline, fib(20) 19 µs, fib(21) 31 µs, fib(25) 0.2 ms. So 20 is the first n
/// whose fib costs more than the hop: offloaded, it waits at most about twice as long as
/// inline, and from there on the stall that inline would cause the loop grows 1.6x per n
/// while the hop stays the same. Other machines give other numbers (a 5 µs hop would put
/// the crossover at 17 or 18); the example prints yours.
pub const OFFLOAD_FROM_N: u32 = 20;
// ANCHOR_END: threshold

/// The step05 server: a listening socket, the protocol's `--max-n` and the pool.
#[derive(Debug)]
pub struct Server {
    listener: std::net::TcpListener,
    max_n: u32,
    pool: Pool,
}

impl shared::Server for Server {
    type Options = NoOptions;
    const ABOUT: &'static str = "Step 5: step04's single-threaded async fn loop, plus a thread \
                                 pool (one thread per core) for large fib(n).";

    fn bind(config: &Config, _: &NoOptions) -> io::Result<Self> {
        Ok(Server {
            listener: std::net::TcpListener::bind(config.addr)?,
            max_n: config.max_n,
            pool: Pool::sized_to_cores()?,
        })
    }

    fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener always has a local address")
    }

    fn run(self) -> io::Result<()> {
        // The outer `?`: the executor could not start or its reactor failed. The inner
        // result, returned as is: the accept loop's.
        executor::block_on(accept_loop(self.listener, self.max_n, self.pool))?
    }
}

/// Accepts connections and spawns a task for each: step04's loop, now sharing the pool.
async fn accept_loop(listener: std::net::TcpListener, max_n: u32, pool: Pool) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    // Shared by every connection's task, all on this one thread: an `Rc` is enough.
    let pool = Rc::new(pool);
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let pool = Rc::clone(&pool);
                executor::spawn(async move {
                    // Whatever goes wrong on a connection (reset, garbage) ends its task only.
                    let _ = serve_connection(stream, max_n, &pool).await;
                });
            }
            // The listener stays readable while connections wait in the backlog, so
            // retrying at once would spin. Sleep as a task: the other connections are
            // served meanwhile, and one of them closing frees a descriptor.
            Err(error) if is_out_of_resources(&error) => time::sleep(ACCEPT_BACKOFF).await,
            Err(error) if is_transient_accept_error(&error) => continue,
            Err(error) => return Err(error),
        }
    }
}

/// Serves one connection until the client closes it: step04's handler, with the async
/// [`answer`] in place of `protocol::answer`.
///
/// # Errors
///
/// When reading or writing the socket fails (the client reset the connection), or an
/// offloaded computation failed (a bug: fib cannot panic for any `n` the protocol accepts).
/// The caller ignores it: a client leaving rudely is nothing the server must report.
pub async fn serve_connection(stream: TcpStream, max_n: u32, pool: &Pool) -> io::Result<()> {
    let mut lines = LineBuffer::new();
    let mut answers = Vec::new();
    loop {
        let received = stream.read(lines.spare()).await?;
        if received == 0 {
            // End of input: every complete line has been answered already, and any bytes
            // after the last `\n` are ignored, as the protocol says.
            return Ok(());
        }
        lines.filled(received);

        // Answer every complete line of this read with one write. A large fib is awaited
        // from the pool: this task waits, the loop serves the other connections meanwhile.
        let mut flow = Flow::Continue;
        while let Some(frame) = lines.next_frame() {
            flow = answer(frame, max_n, pool, &mut answers).await?;
            if flow == Flow::Close {
                break;
            }
        }
        stream.write_all(&answers).await?;
        answers.clear();
        if flow == Flow::Close {
            close_after_error(&stream).await;
            return Ok(());
        }
        // Let the other tasks have a turn before reading again. An `.await` steps aside only
        // when it has to wait, and a client that asks again the moment it has its answer
        // (the slow client) may always have its next request waiting: without this, its
        // task would keep the thread, and no other connection would ever be served.
        executor::yield_now().await;
    }
}

// ANCHOR: answer
/// Answers one frame, like `protocol::answer`, but computes a large fib on the pool.
///
/// Awaiting the pool's answer here, before the next frame is even looked at, is what keeps
/// the answers of one connection in request order. Answers to earlier lines of the same read
/// wait in `out` meanwhile and go out together with this one.
///
/// # Errors
///
/// When the offloaded computation failed.
pub async fn answer(
    frame: Frame<'_>,
    max_n: u32,
    pool: &Pool,
    out: &mut Vec<u8>,
) -> io::Result<Flow> {
    let n = match frame {
        Frame::Line(line) => match parse_request(line, max_n) {
            Ok(n) => n,
            Err(error) => {
                write_error(out, error);
                return Ok(Flow::Continue);
            }
        },
        Frame::TooLong => {
            write_error(out, ProtocolError::LineTooLong);
            return Ok(Flow::Close);
        }
    };
    let value = if n < OFFLOAD_FROM_N {
        fib(n)
    } else {
        pool.run(move || fib(n)).await?
    };
    write_answer(out, value);
    Ok(Flow::Continue)
}
// ANCHOR_END: answer
