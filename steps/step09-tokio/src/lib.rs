//! # Step 9: the reference, tokio
//!
//! What a production user would write: tokio's multi-thread runtime, a task per connection,
//! CPU-heavy fib on tokio's blocking pool, the small ones inline. The code is step06's, line
//! for line, with tokio's names; the lesson is everything the runtime does behind them.
//!
//! **What changed since step08:** we stop building machinery. `diff
//! steps/step06-executor/src/lib.rs steps/step09-tokio/src/lib.rs` shows how little of the
//! server knows which runtime it runs on: the same accept loop, the same [`serve_connection`]
//! over the shared [`LineBuffer`], the same [`answer`] with the same [`OFFLOAD_FROM_N`].
//!
//! **What tokio does that steps 01 to 08 did by hand:**
//!
//! - *A work-stealing multi-thread scheduler.* A run queue per worker thread (one per core by
//!   default), and idle workers steal half of a busy one's queue. step04 had one queue on one
//!   thread; step06's `--threads` shares one executor between threads; step08 gave each core
//!   its own loop and nothing to share. Tokio also keeps a "LIFO slot": a task woken by the
//!   running task runs next, while its data is still in the cache.
//! - *A reactor.* On Linux, epoll through `mio` (step03's library), readiness-based like steps
//!   03 to 06, edge-triggered so that a socket is armed once, not after every event as step04's
//!   oneshot reactor did. The workers take turns waiting on it, as step06's threads do.
//! - *Timers* ([`tokio::time::sleep`], [`tokio::time::timeout`]): a hierarchical timing wheel
//!   instead of step04's sorted map, so that a million timeouts cost little to add and cancel.
//! - *A blocking pool* ([`tokio::task::spawn_blocking`]): step05's pool and step06's `unblock`.
//! - *Cooperative budgeting.* A task may do 128 operations on tokio's resources per turn; then
//!   they answer "not ready" until it yields. A client pipelining without pause cannot hold a
//!   worker forever. Nothing in our steps did that: step04's executor only ran each ready task
//!   once per turn, and a task that never waits never gives its thread back.
//!
//! **Run it** (three terminals):
//!
//! ```text
//! cargo run -p step09
//! cargo run -p clients --bin fast -- --conns 64
//! cargo run -p clients --bin slow
//! ```
//!
//! `--threads N` sets the number of worker threads (default: one per core).
//!
//! **What to observe:** step09 is the bar the results table holds the other steps to. The
//! slow client does not hold the fast ones up. Against step06 with `--threads $(nproc)`, the
//! same design on another runtime, the difference is engineering alone: on the 2-core machine
//! this was written on, tokio answered one fast client 1.5 to 2 times as fast. step08 may
//! beat it: completion-based I/O on a ring per core saves system calls that readiness must
//! make (`strace -c -f` counts three per request here: `epoll_wait`, `recvfrom`, `sendto`).
//!
//! **Where to go next:**
//!
//! - completion-based I/O on a production runtime: `tokio-uring`, or the thread-per-core
//!   runtimes `monoio` and `glommio`, built on io_uring like steps 07 and 08;
//! - protocols: `hyper` for HTTP, `axum` for web services on top of it;
//! - `tower` for what a real server puts around its handler and this one lacks: timeouts,
//!   limits on connections and on work in flight, load shedding;
//! - `tracing` (and `tokio-console`) to see what the tasks are doing.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use shared::cli::Config;
use shared::fib::fib;
use shared::net::{ACCEPT_BACKOFF, is_out_of_fds, is_transient_accept_error};
use shared::protocol::{Flow, Frame, LineBuffer, ProtocolError, parse_request};
use shared::protocol::{write_answer, write_error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// fib(n) for `n` at least this is computed on the blocking pool, below it on the worker.
///
/// step05's threshold, for step05's reason (see its `OFFLOAD_FROM_N`): below 20, fib costs
/// less than the hop to a pool thread and back. The hop through tokio's blocking pool costs
/// about what the hop through step05's does: 20 µs measured here, 16 µs there, on the same
/// busy 2-core machine; fib(20) takes about 20 µs. Above it, keeping fib on the worker would
/// stall the other tasks queued there, until another worker runs out of work and steals them.
pub const OFFLOAD_FROM_N: u32 = 20;

/// Command-line options of step09 beyond `--addr` and `--max-n`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Options {
    /// Worker threads of the runtime [default: one per core, or $TOKIO_WORKER_THREADS]
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub threads: Option<usize>,
}

/// The step09 server: a listening socket, the protocol's `--max-n` and `--threads`.
#[derive(Debug)]
pub struct Server {
    /// A plain std listener until `run`: a tokio listener can only be made inside a runtime.
    listener: std::net::TcpListener,
    max_n: u32,
    threads: Option<usize>,
}

impl shared::Server for Server {
    type Options = Options;
    const ABOUT: &'static str = "Step 9: the reference fib server on tokio's multi-thread \
                                 runtime, fib on its blocking pool.";

    fn bind(config: &Config, options: &Options) -> io::Result<Self> {
        Ok(Server {
            listener: std::net::TcpListener::bind(config.addr)?,
            max_n: config.max_n,
            threads: options.threads,
        })
    }

    fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener always has a local address")
    }

    // ANCHOR: run
    fn run(self) -> io::Result<()> {
        // What `#[tokio::main]` writes for you, spelled out to set the number of workers.
        let mut runtime = tokio::runtime::Builder::new_multi_thread();
        if let Some(threads) = self.threads {
            runtime.worker_threads(threads);
        }
        let runtime = runtime.enable_io().enable_time().build()?;
        // The accept loop runs on this thread, inside `block_on`; the connections it spawns
        // run on the worker threads.
        runtime.block_on(accept_loop(self.listener, self.max_n))
    }
    // ANCHOR_END: run
}

// ANCHOR: accept_loop
/// Accepts connections and spawns a task for each: step06's loop, with tokio's names.
async fn accept_loop(listener: std::net::TcpListener, max_n: u32) -> io::Result<()> {
    // Tokio expects the std listener in non-blocking mode already, and registers it with the
    // reactor of the runtime this runs in.
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    loop {
        match listener.accept().await {
            // Unlike async-executor's, tokio's task handle detaches the task when dropped:
            // nothing to call.
            Ok((stream, _peer)) => {
                tokio::spawn(async move {
                    // Whatever goes wrong on a connection (reset, garbage) ends its task only.
                    let _ = serve_connection(stream, max_n).await;
                });
            }
            // The listener stays readable while connections wait in the backlog, so
            // retrying at once would spin. Sleep as a task: the other connections are
            // served meanwhile, and one of them closing frees a descriptor.
            Err(error) if is_out_of_resources(&error) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            Err(error) if is_transient_accept_error(&error) => continue,
            Err(error) => return Err(error),
        }
    }
}
// ANCHOR_END: accept_loop

/// Serves one connection until the client closes it: step06's handler, on tokio's stream and
/// extension traits.
///
/// # Errors
///
/// When reading or writing the socket fails (the client reset the connection), or an
/// offloaded computation did not complete. The caller ignores it: a client leaving rudely is
/// nothing the server must report.
pub async fn serve_connection(mut stream: TcpStream, max_n: u32) -> io::Result<()> {
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
        // from the pool: this task waits, the worker runs the other tasks meanwhile.
        let mut flow = Flow::Continue;
        while let Some(frame) = lines.next_frame() {
            flow = answer(frame, max_n, &mut answers).await?;
            if flow == Flow::Close {
                break;
            }
        }
        stream.write_all(&answers).await?;
        answers.clear();
        if flow == Flow::Close {
            close_after_error(&mut stream).await;
            return Ok(());
        }
    }
}

// ANCHOR: answer
/// Answers one frame, like `protocol::answer`, but computes a large fib on tokio's blocking
/// pool with [`tokio::task::spawn_blocking`].
///
/// Awaiting the pool's answer here, before the next frame is even looked at, is what keeps
/// the answers of one connection in request order. Answers to earlier lines of the same read
/// wait in `out` meanwhile and go out together with this one.
///
/// Like step06's `unblock`, the pool is made for blocking I/O: it grows on demand, up to 512
/// threads, and threads beyond the number of cores add no speed to CPU work. Production code
/// bounds CPU-heavy work: a `tokio::sync::Semaphore` in front, or `rayon` and a channel back.
///
/// # Errors
///
/// When the offloaded job did not complete: fib panicked (a bug: it cannot for any `n` the
/// protocol accepts) or the runtime is shutting down.
pub async fn answer(frame: Frame<'_>, max_n: u32, out: &mut Vec<u8>) -> io::Result<Flow> {
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
        tokio::task::spawn_blocking(move || fib(n))
            .await
            .map_err(io::Error::other)?
    };
    write_answer(out, value);
    Ok(Flow::Continue)
}
// ANCHOR_END: answer

/// How long a connection being closed after `error: line too long` may take to stop sending.
const DRAIN_TIME: Duration = Duration::from_millis(100);

/// Closes a connection after `error: line too long` so that the client reads the error.
///
/// Closing a socket with unread input makes the kernel send a reset instead of a normal
/// close, and a reset can destroy the answer before the client has read it. So: end our side
/// (`shutdown` sends the answer, then end-of-stream), then discard what the client is still
/// sending, for [`DRAIN_TIME`] at most, before the socket is dropped.
async fn close_after_error(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async {
        for _ in 0..16 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
}

/// Whether accepting failed for lack of a resource that closing connections gives back: file
/// descriptors (EMFILE, ENFILE), or kernel memory to register one more socket with epoll
/// (ENOMEM, or ENOSPC for the per-user limit of epoll registrations). step04's function:
/// tokio registers every accepted socket with its reactor as step04 did.
fn is_out_of_resources(error: &io::Error) -> bool {
    is_out_of_fds(error)
        || matches!(
            error.kind(),
            io::ErrorKind::OutOfMemory | io::ErrorKind::StorageFull
        )
}
