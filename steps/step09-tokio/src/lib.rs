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
//! slow client does not hold the fast ones up. Read its costs in the table: three system
//! calls per request at one fast connection (`epoll_wait`, `recvfrom`, `sendto`), two at 64
//! (the workers wait for several sockets at once): tokio's reactor is edge-triggered, so a
//! socket is never re-armed, and a read shorter than its buffer clears the socket's readiness,
//! so no read ever just hears `WouldBlock`. step08 may beat it on CPU per request:
//! completion-based I/O saves the readiness calls, not the kernel's TCP work, which is most
//! of what a request costs.
//!
//! **Stopping work, as production tokio code does:** [`tokio::time::sleep_until`] for the
//! idle deadline and a [`CancellationToken`] for the shutdown, raced against the read with
//! `tokio::select!` (the losing futures are dropped); a [`TaskTracker`] to wait for the
//! connections to finish, for `--grace` at most; `tokio::signal` for Ctrl-C and SIGTERM (a
//! second one exits at once); a [`Semaphore`] in front of the blocking pool, one permit per
//! core, with at most `--queue` requests waiting for one, beyond which a request is answered
//! `error: busy` (`tower`'s load-shedding does the same for HTTP services).
//!
//! **Where to go next:**
//!
//! - completion-based I/O on a production runtime: `tokio-uring`, or the thread-per-core
//!   runtimes `monoio` and `glommio`, built on io_uring like steps 07 and 08;
//! - protocols: `hyper` for HTTP, `axum` for web services on top of it;
//! - `tower` for what a real server puts around its handler: timeouts, limits on
//!   connections and on work in flight, load shedding, as layers;
//! - `tracing` (and `tokio-console`) to see what the tasks are doing.
//!
//! **Watching the runtime:** tokio's loop is not ours, so `--trace` is refused here; tokio's
//! own view is tokio-console, a `top` for tasks (each task's polls, busy and idle time, its
//! wake-ups, the resources it waits on). It needs three changes this step does not ship,
//! because they slow every build and tokio calls the instrumentation unstable: add
//! `console-subscriber` to this crate's dependencies and tokio's `tracing` feature, call
//! `console_subscriber::init()` first thing in `main`, and build with the cfg tokio asks for:
//! `RUSTFLAGS="--cfg tokio_unstable" cargo run -p step09`. Then, in another terminal,
//! `cargo install --locked tokio-console` once and `tokio-console` (it connects to
//! 127.0.0.1:6669).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shared::cli::Config;
use shared::fib::{OFFLOAD_FROM_N, fib};
use shared::net::{ACCEPT_BACKOFF, DRAIN_TIME, is_out_of_resources, is_transient_accept_error};
use shared::protocol::write_answer;
use shared::protocol::{self, BUSY_ANSWER, Flow, Frame, IDLE_TIMEOUT_ANSWER, LineBuffer, Request};
use shared::shutdown::Drain;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Command-line options of step09 beyond the shared ones.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Options {
    /// Worker threads of the runtime [default: one per core, or $TOKIO_WORKER_THREADS]
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub threads: Option<usize>,
}

/// What every connection is served with, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_n: u32,
    pub idle: Option<Duration>,
    pub grace: Duration,
}

/// The step09 server: a listening socket, the options, and the size of the pool's queue.
#[derive(Debug)]
pub struct Server {
    /// A plain std listener until `run`: a tokio listener can only be made inside a runtime.
    listener: std::net::TcpListener,
    settings: Settings,
    threads: Option<usize>,
    queue: usize,
}

impl shared::Server for Server {
    type Options = Options;
    const ABOUT: &'static str = "Step 9: the reference fib server on tokio's multi-thread \
                                 runtime, fib on its blocking pool.";
    const COMPUTE_POOL: bool = true;

    fn bind(config: &Config, options: &Options) -> io::Result<Self> {
        Ok(Server {
            listener: shared::net::listen(config.addr)?,
            settings: Settings {
                max_n: config.max_n,
                idle: config.idle(),
                grace: config.grace,
            },
            threads: options.threads,
            queue: config.queue_for(pool_threads()),
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
        let pool = Arc::new(Pool::new(pool_threads(), self.queue));
        // The accept loop runs on this thread, inside `block_on`; the connections it spawns
        // run on the worker threads.
        runtime.block_on(accept_loop(self.listener, self.settings, pool))
    }
    // ANCHOR_END: run
}

/// CPU-heavy jobs that run at once: one per core.
fn pool_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

// ANCHOR: accept_loop
/// Accepts connections and spawns a task for each, until Ctrl-C or SIGTERM: step06's loop,
/// with tokio's names. Then waits for the connections to finish, for `--grace` at most.
async fn accept_loop(
    listener: std::net::TcpListener,
    settings: Settings,
    pool: Arc<Pool>,
) -> io::Result<()> {
    // Tokio expects the std listener in non-blocking mode already, and registers it with the
    // reactor of the runtime this runs in.
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let stop = CancellationToken::new();
    tokio::spawn(cancel_on_signal(stop.clone()));
    // Tracks the connections' tasks, so that a shutdown can wait for them.
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let (pool, stop) = (Arc::clone(&pool), stop.clone());
                connections.spawn(async move {
                    if let Err(error) = serve_connection(stream, settings, &pool, &stop).await {
                        shared::net::report_connection_error("step09", &error);
                    }
                });
            }
            Err(error) if is_transient_accept_error(&error) => continue,
            // The listener stays readable while connections wait in the backlog, so
            // retrying at once would spin. Sleep as a task: the other connections are
            // served meanwhile, and one of them closing frees a descriptor.
            Err(error) => {
                if !is_out_of_resources(&error) {
                    shared::net::report_accept_error("step09", &error);
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    // ANCHOR_END: accept_loop
    // The listener closes: new clients are refused.
    drop(listener);
    let draining = connections.len();
    let mut drain = Drain::begin("step09", draining, settings.grace);
    connections.close();
    let _ = tokio::time::timeout(settings.grace, connections.wait()).await;
    // Connections still open are cut: their tasks are dropped with the runtime.
    drain.closed = draining - connections.len();
    drain.finish("step09", connections.len());
    Ok(())
}

// ANCHOR: signals
/// Cancels `stop` on the first Ctrl-C or SIGTERM, and exits at once on the second.
async fn cancel_on_signal(stop: CancellationToken) {
    signalled().await;
    stop.cancel();
    signalled().await;
    eprintln!("second signal: exiting without waiting for the connections");
    std::process::exit(130);
}
// ANCHOR_END: signals

/// Completes on the next SIGINT (Ctrl-C) or SIGTERM.
async fn signalled() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serves one connection until the client closes it: step06's handler, on tokio's stream and
/// extension traits.
///
/// # Errors
///
/// When reading or writing the socket fails (the client reset the connection, which the
/// caller does not report), or an offloaded computation did not complete.
pub async fn serve_connection(
    mut stream: TcpStream,
    settings: Settings,
    pool: &Pool,
    stop: &CancellationToken,
) -> io::Result<()> {
    let mut lines = LineBuffer::new();
    let mut answers = Vec::new();
    // Idle from when its answers are written until its next complete line.
    let mut idle_since = Instant::now();
    loop {
        // ANCHOR: select
        let idle = async {
            match settings.idle {
                Some(idle) => tokio::time::sleep_until(idle_since + idle).await,
                None => std::future::pending().await,
            }
        };
        let received = tokio::select! {
            biased;
            received = stream.read(lines.spare()) => received?,
            // Boxed, here and below: rare paths whose futures would otherwise make every
            // connection's task larger for its whole life.
            () = stop.cancelled() => {
                return Box::pin(finish(&mut stream, &mut lines, settings, pool)).await;
            }
            () = idle => {
                stream.write_all(IDLE_TIMEOUT_ANSWER).await?;
                Box::pin(close_after_error(&mut stream)).await;
                return Ok(());
            }
        // ANCHOR_END: select
        };
        if received == 0 {
            // End of input: every complete line has been answered already, and any bytes
            // after the last `\n` are ignored, as the protocol says.
            return Ok(());
        }
        lines.filled(received);

        // Answer every complete line of this read with one write. A large fib is awaited
        // from the pool: this task waits, the worker runs the other tasks meanwhile.
        let mut flow = Flow::Continue;
        let mut answered = false;
        while let Some(frame) = lines.next_frame() {
            answered = true;
            flow = answer(frame, settings.max_n, pool, &mut answers).await?;
            if flow == Flow::Close {
                break;
            }
        }
        stream.write_all(&answers).await?;
        answers.clear();
        if flow == Flow::Close {
            Box::pin(close_after_error(&mut stream)).await;
            return Ok(());
        }
        if answered {
            idle_since = Instant::now();
        }
    }
}

/// The server is shutting down: answer the complete lines received (all answered already)
/// and what one more read brings without waiting, then close cleanly, draining until the
/// client closes or `--grace` is over.
async fn finish(
    stream: &mut TcpStream,
    lines: &mut LineBuffer,
    settings: Settings,
    pool: &Pool,
) -> io::Result<()> {
    match stream.try_read(lines.spare()) {
        Ok(received) => lines.filled(received),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
        Err(error) => return Err(error),
    }
    let mut answers = Vec::new();
    while let Some(frame) = lines.next_frame() {
        if answer(frame, settings.max_n, pool, &mut answers).await? == Flow::Close {
            break;
        }
    }
    stream.write_all(&answers).await?;
    let _ = stream.shutdown().await;
    let mut sink = vec![0u8; 4096];
    let drain = async { while let Ok(1..) = stream.read(&mut sink).await {} };
    let _ = tokio::time::timeout(settings.grace, drain).await;
    Ok(())
}

// ANCHOR: answer
/// Answers one frame, like `protocol::answer`, but computes a large fib on tokio's blocking
/// pool ([`Pool`]).
///
/// Awaiting the pool's answer here, before the next frame is even looked at, is what keeps
/// the answers of one connection in request order. Answers to earlier lines of the same read
/// wait in `out` meanwhile and go out together with this one.
///
/// # Errors
///
/// When the offloaded job did not complete: fib panicked (a bug: it cannot for any `n` the
/// protocol accepts) or the runtime is shutting down.
pub async fn answer(
    frame: Frame<'_>,
    max_n: u32,
    pool: &Pool,
    out: &mut Vec<u8>,
) -> io::Result<Flow> {
    let n = match protocol::request(frame, max_n, out) {
        Request::Fib(n) => n,
        Request::Answered(flow) => return Ok(flow),
    };
    let value = if n < OFFLOAD_FROM_N {
        fib(n)
    } else {
        match pool.fib(n).await {
            Some(value) => value?,
            None => {
                out.extend_from_slice(BUSY_ANSWER);
                return Ok(Flow::Continue);
            }
        }
    };
    write_answer(out, value);
    Ok(Flow::Continue)
}
// ANCHOR_END: answer

/// tokio's blocking pool, bounded for CPU work: a [`Semaphore`] with a permit per core, so
/// that one fib per core runs at a time, and at most `queue` requests waiting for a permit.
///
/// `spawn_blocking` alone is made for blocking I/O: it grows on demand, up to 512 threads,
/// and threads beyond the number of cores add no speed to CPU work (ten fib(40)s on two
/// cores would each take five times as long).
#[derive(Debug)]
pub struct Pool {
    running: Semaphore,
    waiting: AtomicUsize,
    queue: usize,
}

impl Pool {
    /// A pool running `threads` jobs at once, with room for `queue` more waiting.
    pub fn new(threads: usize, queue: usize) -> Pool {
        Pool {
            running: Semaphore::new(threads.max(1)),
            waiting: AtomicUsize::new(0),
            queue,
        }
    }

    // ANCHOR: pool
    /// fib(n) on the blocking pool, or `None` at once when `queue` requests wait already.
    pub async fn fib(&self, n: u32) -> Option<io::Result<u64>> {
        let permit = match self.running.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                // Join the queue, unless it is full.
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return None;
                }
                let permit = self.running.acquire().await;
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                // The semaphore is never closed.
                permit.expect("the pool's semaphore is never closed")
            }
        };
        let value = tokio::task::spawn_blocking(move || fib(n))
            .await
            .map_err(io::Error::other);
        drop(permit);
        Some(value)
    }
    // ANCHOR_END: pool
}

/// Closes a connection after an error answer (`line too long`, `idle timeout`) so that the
/// client reads it.
///
/// Closing a socket with unread input makes the kernel send a reset instead of a normal
/// close, and a reset can destroy the answer before the client has read it. So: end our side
/// (`shutdown` sends the answer, then end-of-stream), then discard what the client is still
/// sending, for [`DRAIN_TIME`] at most, before the socket is dropped.
async fn close_after_error(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    // On the heap, not in a local array: an async fn's locals live in its future, and a
    // 4 KiB array here would make every connection's task 4 KiB larger for its whole life.
    let mut sink = vec![0u8; 4096];
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
