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
//! | [`futures_lite::AsyncReadExt`], [`futures_lite::AsyncWriteExt`] | step04's `read`, `write_all` | `read` and `write_all` as futures, for any async stream |
//! | [`async_io::Timer`] | step04's `time::sleep` | a timer kept by the same reactor |
//! | [`async_io::block_on`] | step04's `executor::block_on` | runs a future on this thread, waiting in the reactor when nothing is ready |
//! | [`blocking::unblock`] | step05's thread pool | runs a closure on a pool thread, wakes the task with its result |
//!
//! The server itself did not change: `diff steps/step05-offload/src/lib.rs
//! steps/step06-executor/src/lib.rs` shows the same accept loop, [`serve_connection`] and
//! [`answer`], with library names. The handler still reads into the shared [`LineBuffer`], so
//! the 64-byte line limit holds as in every other step (`BufReader::read_line` would be
//! shorter, and would buffer a line without end), and [`OFFLOAD_FROM_N`] still decides which
//! fib goes to the pool.
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
//! **What to observe:** step05's behaviour: the libraries do what we did by hand, with more
//! care for the corner cases, but no new idea. The fast clients keep being answered while the
//! slow one computes, and the numbers are step05's, give or take. They were not at first:
//! `run` explains the trap (the future given to `Executor::run` is polled at every wake-up),
//! which cost half of step05's rate with two fast clients. Then try `--threads $(nproc)` against `--conns 64`:
//! the I/O itself now spreads over the cores. How much that pays depends on the cores to
//! spare: the clients need some too, and on the 2-core machine this was written on the gain
//! went from nothing to a third. One fast client gains nothing and may lose: its task hops
//! between threads, and every hop is a wake-up through the kernel.
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
use std::time::Duration;

use async_executor::Executor;
use async_io::Timer;
use async_net::{TcpListener, TcpStream};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use shared::cli::Config;
use shared::fib::fib;
use shared::net::{ACCEPT_BACKOFF, is_out_of_fds, is_transient_accept_error};
use shared::protocol::{Flow, Frame, LineBuffer, ProtocolError, parse_request};
use shared::protocol::{write_answer, write_error};

/// fib(n) for `n` at least this is computed on the blocking pool, below it on the I/O thread.
///
/// step05's threshold, for step05's reason (see its `OFFLOAD_FROM_N`): below 20, fib costs
/// less than the hop to a pool thread and back. The hop through `blocking`'s pool costs about
/// what the hop through step05's does: 20 µs measured here, 16 µs there, on the same busy
/// 2-core machine; fib(20) takes about 20 µs.
pub const OFFLOAD_FROM_N: u32 = 20;

/// Command-line options of step06 beyond `--addr` and `--max-n`.
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

/// The step06 server: a listening socket, the protocol's `--max-n` and `--threads`.
#[derive(Debug)]
pub struct Server {
    /// A plain std listener until `run`, so that `bind` reports errors and the port at once.
    listener: std::net::TcpListener,
    max_n: u32,
    threads: usize,
}

impl shared::Server for Server {
    type Options = Options;
    const ABOUT: &'static str = "Step 6: step05's design on library parts: async-executor, \
                                 async-net and the blocking pool; --threads N runs the \
                                 executor on N threads.";

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
        // Shared with the accept loop, a task that spawns the connections' tasks on it.
        let executor = Arc::new(Executor::new());
        // Makes the listener non-blocking and registers it with async-io's reactor. The
        // reactor is global, so unlike step04 this needs no executor running yet.
        let listener = TcpListener::try_from(self.listener)?;
        let max_n = self.max_n;
        thread::scope(|scope| {
            // The extra threads run the executor until the accept loop ends: closing the
            // channel (dropping `stop`) completes every `stopped.recv()` at once.
            let (stop, stopped) = async_channel::bounded::<()>(1);
            for _ in 1..self.threads {
                let (executor, stopped) = (&executor, stopped.clone());
                thread::Builder::new()
                    .name("executor".into())
                    .spawn_scoped(scope, move || {
                        async_io::block_on(executor.run(stopped.recv()))
                    })?;
            }
            // This thread is one of the executor's threads too, the only one by default.
            // `async_io::block_on`, not `futures_lite::future::block_on`: when the executor has
            // nothing to run, this thread waits on the reactor itself, as step04's loop did,
            // instead of sleeping while async-io's background thread waits and then wakes it.
            //
            // The accept loop is a task like the connections, and `run` only waits for it.
            // `run(future)` polls its future again each time any task wakes, and a re-polled
            // accept tries `accept(2)` again (async-io retries optimistically): given the
            // accept loop itself, this step made an `accept4` and an `epoll_ctl` per request
            // and served two fast clients at half step05's rate.
            let accepting = executor.spawn(accept_loop(Arc::clone(&executor), listener, max_n));
            let served = async_io::block_on(executor.run(accepting));
            drop(stop);
            served
        })
    }
    // ANCHOR_END: run
}

// ANCHOR: accept_loop
/// Accepts connections and spawns a task for each: step05's loop, on library parts. No pool
/// to share: `blocking`'s is global.
async fn accept_loop(
    executor: Arc<Executor<'static>>,
    listener: TcpListener,
    max_n: u32,
) -> io::Result<()> {
    loop {
        match listener.accept().await {
            // `spawn` returns a handle to the task's result, and dropping that handle would
            // cancel the task: `detach` lets it run on its own.
            Ok((stream, _peer)) => executor
                .spawn(async move {
                    // Whatever goes wrong on a connection (reset, garbage) ends its task only.
                    let _ = serve_connection(stream, max_n).await;
                })
                .detach(),
            // The listener stays readable while connections wait in the backlog, so
            // retrying at once would spin. Sleep as a task: the other connections are
            // served meanwhile, and one of them closing frees a descriptor.
            Err(error) if is_out_of_resources(&error) => {
                Timer::after(ACCEPT_BACKOFF).await;
            }
            Err(error) if is_transient_accept_error(&error) => continue,
            Err(error) => return Err(error),
        }
    }
}
// ANCHOR_END: accept_loop

/// Serves one connection until the client closes it: step05's handler, on `async-net`'s
/// stream with the `futures-lite` extension traits in place of step04's methods.
///
/// # Errors
///
/// When reading or writing the socket fails (the client reset the connection). The caller
/// ignores it: a client leaving rudely is nothing the server must report.
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
        // from the pool: this task waits, the executor runs the other connections meanwhile.
        let mut flow = Flow::Continue;
        while let Some(frame) = lines.next_frame() {
            flow = answer(frame, max_n, &mut answers).await;
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
/// Answers one frame, like `protocol::answer`, but computes a large fib on `blocking`'s
/// thread pool: step05's `pool.run`, as one call to [`blocking::unblock`].
///
/// Awaiting the pool's answer here, before the next frame is even looked at, is what keeps
/// the answers of one connection in request order. Answers to earlier lines of the same read
/// wait in `out` meanwhile and go out together with this one.
///
/// Why `unblock` and not a pool of our own: it is the smol family's pool for exactly this, a
/// closure that would block an executor thread, and it is already built in (`async-net` uses
/// it to resolve host names). Unlike step05's, it cannot fail: a panic in the closure would
/// resume in this task and end this connection only. What to know about it: it is made for
/// blocking *I/O*, so it grows on demand, a thread per waiting job up to 500
/// (`BLOCKING_MAX_THREADS`), and lets idle threads go after a while. For CPU work, threads
/// beyond the number of cores add no speed: ten slow clients get ten threads sharing the
/// cores, each fib ten times slower, where step05's pool, a thread per core, queues them and
/// finishes the first ones sooner. Production code that offloads heavy CPU work bounds it:
/// a pool sized to the cores (`rayon`), or a semaphore in front of `unblock`.
pub async fn answer(frame: Frame<'_>, max_n: u32, out: &mut Vec<u8>) -> Flow {
    let n = match frame {
        Frame::Line(line) => match parse_request(line, max_n) {
            Ok(n) => n,
            Err(error) => {
                write_error(out, error);
                return Flow::Continue;
            }
        },
        Frame::TooLong => {
            write_error(out, ProtocolError::LineTooLong);
            return Flow::Close;
        }
    };
    let value = if n < OFFLOAD_FROM_N {
        fib(n)
    } else {
        blocking::unblock(move || fib(n)).await
    };
    write_answer(out, value);
    Flow::Continue
}
// ANCHOR_END: answer

/// How long a connection being closed after `error: line too long` may take to stop sending.
const DRAIN_TIME: Duration = Duration::from_millis(100);

/// Closes a connection after `error: line too long` so that the client reads the error:
/// step04's `close_after_error`, on library parts.
///
/// Closing a socket with unread input makes the kernel send a reset instead of a normal
/// close, and a reset can destroy the answer before the client has read it. So: end our side
/// (`shutdown(Write)` sends the answer, then end-of-stream), then discard what the client is
/// still sending, for [`DRAIN_TIME`] at most, before the socket is dropped. step04 raced the
/// reads against its own timer; `or` from `futures-lite` races them against async-io's.
async fn close_after_error(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    let drain = async {
        for _ in 0..16 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let expire = async {
        Timer::after(DRAIN_TIME).await;
    };
    drain.or(expire).await;
}

/// Whether accepting failed for lack of a resource that closing connections gives back: file
/// descriptors (EMFILE, ENFILE), or kernel memory to register one more socket with epoll
/// (ENOMEM, or ENOSPC for the per-user limit of epoll registrations). step04's function:
/// async-net registers every accepted socket with the reactor as step04 did.
fn is_out_of_resources(error: &io::Error) -> bool {
    is_out_of_fds(error)
        || matches!(
            error.kind(),
            io::ErrorKind::OutOfMemory | io::ErrorKind::StorageFull
        )
}
