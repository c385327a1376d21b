//! # Step 6: step05's design on library parts
//!
//! One thread runs every connection as an `async fn` task and sends large fib(n) to a pool of
//! threads: step05's design. But nothing here is hand-rolled. The executor, the reactor, the
//! async sockets, the timer and the thread pool come from the smol family of crates, small
//! enough to read in an afternoon, and `--threads N` runs the same executor on N threads at
//! next to no cost in code.
//!
//! **What changed since step05:** steps 04 and 05 wrote their machinery by hand; this step
//! deletes it and imports each piece instead:
//!
//! | library piece | replaces | what it does |
//! | --- | --- | --- |
//! | [`async_executor::Executor`] | step04's `executor` | a queue of woken tasks: `spawn`, `run` |
//! | async-io's reactor, inside [`async_net`] | step04's `reactor` | waits on epoll (through `polling`, like step04) and wakes the tasks whose sockets are ready |
//! | [`async_net::TcpListener`], [`async_net::TcpStream`] | step04's `net` | try the non-blocking call; on `WouldBlock` wait for the reactor, retry |
//! | [`futures::AsyncReadExt`], [`futures::AsyncWriteExt`] | step04's `read`, `write_all` | `read` and `write_all` as futures, for any async stream |
//! | [`futures::select_biased!`] | step04's `stop::race` | waits for several futures, drops the ones that lose |
//! | [`async_io::Timer`] | step04's `time::sleep` | a timer kept by the same reactor |
//! | [`async_io::block_on`] | step04's `executor::block_on` | runs a future on this thread, waiting in the reactor when nothing is ready |
//! | [`blocking::unblock`] and [`async_channel`] | step05's thread pool and its bounded queue | runs a closure on a pool thread, wakes the task with its result |
//!
//! The server itself did not change: `diff steps/step05-offload/src/lib.rs
//! steps/step06-executor/src/lib.rs` shows the same accept loop, [`serve_connection`] and
//! [`answer`], with library names. The handler still reads into the shared [`LineBuffer`], so
//! the 64-byte line limit holds as in every other step (`BufReader::read_line` would be
//! shorter, and would buffer a line without end), and [`OFFLOAD_FROM_N`] still decides which
//! fib goes to the pool. One thing is missing on purpose: step04's `yield_now` after each round
//! of answers. async-net's reads and writes are tried at once, so a client that pipelines
//! thousands of requests keeps its task running, and under `--threads 1` every other
//! connection waits for the whole burst: finding and fixing that is this step's exercise (its
//! deck, "Exercise: change the code").
//!
//! Two differences from the hand-rolled parts are worth knowing. async-io has *one* reactor
//! per process, not one per thread: whichever thread sits idle in `async_io::block_on` waits
//! on epoll for everybody (a background thread named `async-io` does it when no thread does).
//! And `Executor` is `Send + Sync`: any thread that calls [`Executor::run`] takes tasks from
//! its queues. Together they are what makes `--threads N` a loop of a few lines in
//! [`Server::run`](shared::Server::run): every thread runs the same executor, and a task may
//! move from one thread to another between two `.await`s, which is why tasks must be `Send`.
//!
//! **Run it** (three terminals):
//!
//! ```text
//! cargo run -p step06
//! cargo run -p clients --bin fast -- --conns 64
//! cargo run -p clients --bin slow
//! ```
//!
//! and on every core: `cargo run -p step06 -- --threads $(nproc)`.
//!
//! **What to observe:** step05's behaviour: the fast clients keep being answered while the
//! slow one computes. What is new here is what the libraries cost, and the results table
//! counts it: a request at one connection makes the same kinds of system calls as step04's
//! (async-io waits through `polling` too: five calls per wait), and the accept loop is a task
//! of its own, because `Executor::run` polls the future it is given at every wake-up (see
//! [`Server::run`](shared::Server::run)). `--threads N` runs the executor on N threads. It
//! pays off when the loop's one core is saturated and another core is free for it: on a
//! two-core machine whose other core runs the clients there is none, and 64 fast clients get
//! no more; `cargo run --release -p clients --bin table -- --pin --cores 1,2` on a machine
//! with cores to spare draws the curve.
//!
//! **Stopping work, on library parts:** the same as step04's, with library names: a
//! connection waits for its next bytes, its idle deadline (an `async_io::Timer`) and the
//! shutdown (an `async_channel` closed by the signal) at once, with
//! [`futures::select_biased!`], and the losers are dropped. The compute pool's queue is a
//! bounded channel: a full one answers `error: busy`.
//!
//! **Watching the loop:** this step has no loop of its own, so `--trace` shows the libraries'
//! events (async-io's and polling's `tracing` feature, turned on in this step's
//! `Cargo.toml`): `waiting on I/O` and `new events epoll_fd=4 res=1` each time a thread
//! waits on epoll, `N ready wakers` after it, `notified` when another thread woke the
//! waiting one, and which thread holds the reactor: `main` while it is idle in `block_on`,
//! the `async-io` thread while `main` runs tasks (its `sleeping for 50 us … 10000 us` is it
//! looking, less and less often, whether anyone still drives the reactor, and taking it when
//! nobody has for ten looks). async-executor emits nothing: its tasks, their
//! wake-ups and polls are what steps 04 and 05 print and this step cannot. `--trace-file
//! FILE.json` records the same as a timeline.
//!
//! **The limit:** readiness costs a system call per operation. Every read and every write of
//! every request crosses into the kernel, and so does every wait: `epoll_wait`, and the
//! `epoll_ctl` that re-arms a socket (`strace -c -f` on this step under one fast client counts
//! them). With requests of a few bytes those crossings are most of what the fast clients
//! measure. step07 uses io_uring: the server queues operations in memory it shares with the
//! kernel, many per system call, and the kernel reports them done.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender, TrySendError};
use async_executor::Executor;
use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use futures::channel::oneshot;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, select_biased};
use shared::cli::Config;
use shared::fib::{OFFLOAD_FROM_N, fib};
use shared::net::{ACCEPT_BACKOFF, DRAIN_TIME, is_out_of_resources, is_transient_accept_error};
use shared::protocol::write_answer;
use shared::protocol::{self, BUSY_ANSWER, Flow, Frame, IDLE_TIMEOUT_ANSWER, LineBuffer, Request};
use shared::shutdown::{self, Drain};

/// Command-line options of step06 beyond the shared ones.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// Threads running the executor (each takes tasks from it and takes turns waiting on the
    /// reactor); `$(nproc)` puts every core to work on the I/O
    #[arg(long, default_value_t = 1,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub threads: usize,
}

impl Default for Options {
    /// One thread, like step05: the same design, so the same numbers to compare.
    fn default() -> Self {
        Options { threads: 1 }
    }
}

/// What every connection is served with, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_n: u32,
    pub idle: Option<Duration>,
    pub grace: Duration,
}

/// The step06 server: a listening socket, the options, and the size of the pool's queue.
#[derive(Debug)]
pub struct Server {
    /// A plain std listener until `run`, so that `bind` reports errors and the port at once.
    listener: std::net::TcpListener,
    settings: Settings,
    threads: usize,
    queue: usize,
}

impl shared::Server for Server {
    type Options = Options;
    const ABOUT: &'static str = "Step 6: step05's design on library parts: async-executor, \
                                 async-net and the blocking pool; --threads N runs the \
                                 executor on N threads.";
    const COMPUTE_POOL: bool = true;
    // No loop of our own to watch: `--trace` shows the events the libraries emit themselves
    // (see the header).
    const TRACE_TARGETS: &'static [&'static str] = &["async_io", "polling"];

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

    fn run(self) -> io::Result<()> {
        // Shared with the accept loop, a task that spawns the connections' tasks on it.
        let executor = Arc::new(Executor::new());
        // Makes the listener non-blocking and registers it with async-io's reactor. The
        // reactor is global, so unlike step04 this needs no executor running yet.
        let listener = TcpListener::try_from(self.listener)?;
        // The shutdown signal: a channel nobody sends on, closed by Ctrl-C or SIGTERM. A
        // closed channel completes every `recv()`, on whatever thread waits.
        let (signal, stop) = async_channel::bounded::<()>(1);
        shutdown::on_signal(move || {
            signal.close();
        });
        let pool = Arc::new(Pool::start(&executor, pool_threads(), self.queue));
        let settings = self.settings;
        // ANCHOR: run
        thread::scope(|scope| {
            // The extra threads run the executor until the accept loop ends: closing the
            // channel (dropping `done`) completes every `finished.recv()` at once.
            let (done, finished) = async_channel::bounded::<()>(1);
            for _ in 1..self.threads {
                let (executor, finished) = (&executor, finished.clone());
                thread::Builder::new()
                    .name("executor".into())
                    .spawn_scoped(scope, move || {
                        async_io::block_on(executor.run(finished.recv()))
                    })?;
            }
            // This thread is one of the executor's threads too, the only one by default.
            // `async_io::block_on`, not `futures::executor::block_on`: when the executor has
            // nothing to run, this thread waits on the reactor itself, as step04's loop did,
            // instead of sleeping while async-io's background thread waits and then wakes it.
            //
            // The accept loop is a task like the connections, and `run` only waits for it.
            // `run(future)` polls its future again each time any task wakes, and a re-polled
            // accept tries `accept(2)` again (async-io retries optimistically): given the
            // accept loop itself, this step made an `accept4` and an `epoll_ctl` per request
            // and served two fast clients at half step05's rate.
            let accepting = executor.spawn(accept_loop(
                Arc::clone(&executor),
                listener,
                settings,
                pool,
                stop,
            ));
            let served = async_io::block_on(executor.run(accepting));
            drop(done);
            served
        })
    }
    // ANCHOR_END: run
}

/// The compute pool's threads: one per core, like step05's.
fn pool_threads() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

/// Accepts connections and spawns a task for each, until Ctrl-C or SIGTERM: step05's loop,
/// on library parts. Then waits for the connections to finish, for `--grace` at most.
// ANCHOR: accept_loop
async fn accept_loop(
    executor: Arc<Executor<'static>>,
    listener: TcpListener,
    settings: Settings,
    pool: Arc<Pool>,
    stop: Receiver<()>,
) -> io::Result<()> {
    // Each connection's task holds a clone of `open`; when all are dropped, `closed` says so.
    let (open, closed) = async_channel::bounded::<()>(1);
    loop {
        let accepted = select_biased! {
            _ = stop.recv().fuse() => break,
            accepted = listener.accept().fuse() => accepted,
        };
        match accepted {
            // Dropping the handle `spawn` returns would cancel the task: `detach` it.
            Ok((stream, _peer)) => {
                let (pool, stop, open) = (Arc::clone(&pool), stop.clone(), open.clone());
                executor
                    .spawn(async move {
                        if let Err(error) = serve_connection(stream, settings, &pool, &stop).await {
                            shared::net::report_connection_error("step06", &error);
                        }
                        drop(open);
                    })
                    .detach();
            }
            Err(error) if is_transient_accept_error(&error) => continue,
            // The listener stays readable, so retrying at once would spin. Sleep as a task:
            // the others are served meanwhile, and one of them closing frees a descriptor.
            Err(error) => {
                if !is_out_of_resources(&error) {
                    shared::net::report_accept_error("step06", &error);
                }
                Timer::after(ACCEPT_BACKOFF).await;
            }
        }
    }
    // ANCHOR_END: accept_loop
    // The listener closes: new clients are refused.
    drop(listener);
    let draining = open.sender_count() - 1;
    let mut drain = Drain::begin("step06", draining, settings.grace);
    drop(open);
    select_biased! {
        _ = closed.recv().fuse() => {}
        _ = Timer::after(settings.grace).fuse() => {}
    }
    // Connections still open are cut: their tasks are dropped with the executor.
    let cut = closed.sender_count();
    drain.closed = draining - cut;
    drain.finish("step06", cut);
    Ok(())
}

/// Serves one connection until the client closes it: step05's handler, on `async-net`'s
/// stream with the `futures` extension traits in place of step04's methods.
///
/// # Errors
///
/// When reading or writing the socket fails (the client reset the connection, which the
/// caller does not report).
pub async fn serve_connection(
    mut stream: TcpStream,
    settings: Settings,
    pool: &Pool,
    stop: &Receiver<()>,
) -> io::Result<()> {
    let mut lines = LineBuffer::new();
    let mut answers = Vec::new();
    // Idle from when its answers are written until its next complete line.
    let mut idle_since = Instant::now();
    let mut stopped = std::pin::pin!(stop.recv().fuse());
    loop {
        // ANCHOR: select
        let idle = match settings.idle {
            Some(idle) => Timer::at(idle_since + idle),
            None => Timer::never(),
        };
        let received = select_biased! {
            received = stream.read(lines.spare()).fuse() => received?,
            // Boxed, here and below: rare paths whose futures would otherwise make every
            // connection's task larger for its whole life.
            _ = stopped => return Box::pin(finish(&mut stream, &mut lines, settings, pool)).await,
            _ = idle.fuse() => {
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
        // from the pool: this task waits, the executor runs the other connections meanwhile.
        let mut flow = Flow::Continue;
        let mut answered = false;
        while let Some(frame) = lines.next_frame() {
            answered = true;
            flow = answer(frame, settings.max_n, pool, &mut answers).await;
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
    // `now_or_never`: one poll of the read, whatever the socket has, and no waiting.
    if let Some(received) = stream.read(lines.spare()).now_or_never() {
        lines.filled(received?);
    }
    let mut answers = Vec::new();
    while let Some(frame) = lines.next_frame() {
        if answer(frame, settings.max_n, pool, &mut answers).await == Flow::Close {
            break;
        }
    }
    stream.write_all(&answers).await?;
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = vec![0u8; 4096];
    let drain = async { while let Ok(1..) = stream.read(&mut sink).await {} };
    select_biased! {
        () = drain.fuse() => {}
        _ = Timer::after(settings.grace).fuse() => {}
    }
    Ok(())
}

// ANCHOR: answer
/// Answers one frame, like `protocol::answer`, but computes a large fib on the [`Pool`].
///
/// Awaiting the pool's answer here, before the next frame is even looked at, is what keeps
/// the answers of one connection in request order. Answers to earlier lines of the same read
/// wait in `out` meanwhile and go out together with this one.
pub async fn answer(frame: Frame<'_>, max_n: u32, pool: &Pool, out: &mut Vec<u8>) -> Flow {
    let n = match protocol::request(frame, max_n, out) {
        Request::Fib(n) => n,
        Request::Answered(flow) => return flow,
    };
    let value = if n < OFFLOAD_FROM_N {
        fib(n)
    } else {
        match pool.fib(n) {
            Ok(value) => value.await,
            Err(Busy) => {
                out.extend_from_slice(BUSY_ANSWER);
                return Flow::Continue;
            }
        }
    };
    write_answer(out, value);
    Flow::Continue
}
// ANCHOR_END: answer

/// The pool's queue is full: the job was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// step05's pool, on library parts: one task per core takes jobs from a bounded channel and
/// runs each with [`blocking::unblock`], on a thread of `blocking`'s pool.
///
/// Why not `unblock` straight from the connection's task: `blocking`'s pool is made for
/// blocking *I/O*, so it grows on demand, a thread per waiting job up to 500. For CPU work,
/// threads beyond the number of cores add no speed: ten slow clients would get ten threads
/// sharing the cores, each fib ten times slower. A task per core in front of it keeps one fib
/// per core running, and the channel's bound is the queue (`--queue`): a job that finds it
/// full is refused at once (`error: busy`).
#[derive(Debug)]
pub struct Pool {
    jobs: Sender<(u32, oneshot::Sender<u64>)>,
}

impl Pool {
    /// Starts `threads` compute tasks on `executor`, with room for `queue` jobs waiting.
    pub fn start(executor: &Executor<'static>, threads: usize, queue: usize) -> Pool {
        let (jobs, waiting) = async_channel::bounded::<(u32, oneshot::Sender<u64>)>(queue.max(1));
        for _ in 0..threads {
            let waiting = waiting.clone();
            executor
                .spawn(async move {
                    while let Ok((n, reply)) = waiting.recv().await {
                        let value = blocking::unblock(move || fib(n)).await;
                        // The connection may have gone meanwhile: nobody to tell.
                        let _ = reply.send(value);
                    }
                })
                .detach();
        }
        Pool { jobs }
    }

    // ANCHOR: pool
    /// fib(n), computed on the pool; [`Busy`] at once when the queue is full.
    ///
    /// # Errors
    ///
    /// [`Busy`] when `queue` jobs wait already.
    pub fn fib(&self, n: u32) -> Result<impl Future<Output = u64> + use<>, Busy> {
        let (reply, value) = oneshot::channel();
        match self.jobs.try_send((n, reply)) {
            // A compute task that vanished (it cannot: they loop until the channel closes,
            // which the pool does when it drops) would drop `reply`; fib is then computed
            // here, which is slow but right.
            Ok(()) => Ok(async move { value.await.unwrap_or_else(|_| fib(n)) }),
            Err(TrySendError::Full(_)) => Err(Busy),
            Err(TrySendError::Closed(_)) => Err(Busy),
        }
    }
    // ANCHOR_END: pool
}

/// Closes a connection after an error answer (`line too long`, `idle timeout`) so that the
/// client reads it: step04's `close_after_error`, on library parts.
///
/// Closing a socket with unread input makes the kernel send a reset instead of a normal
/// close, and a reset can destroy the answer before the client has read it. So: end our side
/// (`shutdown(Write)` sends the answer, then end-of-stream), then discard what the client is
/// still sending, for [`DRAIN_TIME`] at most, before the socket is dropped.
async fn close_after_error(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
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
    select_biased! {
        () = drain.fuse() => {}
        _ = Timer::after(DRAIN_TIME).fuse() => {}
    }
}
