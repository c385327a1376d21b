//! # Step 4: coroutines on a hand-rolled executor and reactor
//!
//! One thread serves every connection, as in step03, but each connection is an `async fn`
//! that reads top to bottom like step01's blocking [`serve_connection`], with `.await` where
//! step01 blocked. Spawned as a task, it runs until it would block, then steps aside so that
//! other tasks can run.
//!
//! **What changed since step03:** step03 wrote each connection as a state machine by hand:
//! an enum of states, callbacks on readiness events, the partial line and the unwritten
//! answers kept in a struct between calls. Here the compiler writes that state machine: an
//! `async fn` compiles to a [`Future`], a struct holding the locals
//! that live across each `.await`, whose `poll` resumes where it left off. And step03's event
//! loop splits in two halves that know nothing of each other's business, joined by
//! [`Waker`](std::task::Waker)s:
//!
//! - [`reactor`]: waits on the poller (epoll, on the `polling` crate) for sockets and timers,
//!   and wakes the tasks that were waiting for them;
//! - [`executor`]: a queue of woken tasks, polled one by one: [`executor::spawn`],
//!   [`executor::block_on`], [`executor::yield_now`];
//! - [`registration`]: a socket registered with the reactor, and [`Readiness`](registration::Readiness),
//!   the hand-written future that waits until it is ready;
//! - [`net`]: `TcpListener` and `TcpStream` whose `accept`, `read` and `write_all` are
//!   `async`: try the non-blocking call, on `WouldBlock` wait for the reactor, retry;
//! - [`time`]: `sleep` and `timeout`, timers kept by the reactor;
//! - [`stop`]: the shutdown signal tasks wait for, and racing futures;
//! - this file: the server, an accept loop and a connection handler.
//!
//! Cooperative means cooperative: a task gives the thread back only at an `.await` that has
//! to wait. So the handler steps aside once per round of answers ([`executor::yield_now`]),
//! or a client whose next request is always waiting already would keep the thread to itself.
//!
//! No async library is used, only `std::task` and a poller, so that all of it can be read.
//! step05 reuses the executor, reactor and sockets of this crate; step06 replaces them with
//! the library versions (async-executor, async-net).
//!
//! **Run it** (three terminals):
//!
//! ```text
//! cargo run -p step04
//! cargo run -p clients --bin fast -- --conns 64
//! cargo run -p clients --bin slow
//! ```
//!
//! **What to observe:** many fast clients are served at once, on one thread, with little
//! memory per connection (a task is a few hundred bytes plus its 4 KiB line buffer, not a
//! thread stack). Then start the slow client: while its fib(40) is computed, about a third of a second,
//! every fast client stops. The fast client's requests per second collapse to the handful
//! answered between two fib(40)s, and its latency jumps to the length of a fib(40).
//!
//! **What it costs:** the results table counts 8.64 system calls per request at one fast
//! connection, against step03's 3.00. Per request: 0.95 waits, 2.85 `epoll_ctl`, 2.90 reads
//! (the request, the read that finds the socket empty before the task waits, and
//! `polling`'s eventfd), 1.00 write. Our reactor registers sockets oneshot, so a task that
//! waits arms its socket again (one `epoll_ctl`, the price of "one arming, at most one
//! event"; an edge-triggered reactor such as step03's or tokio's never re-arms), and
//! `polling` spends the rest of each wait on its own timer and notifier
//! (`timerfd_settime`, two `epoll_ctl`, an eventfd read).
//! At 64 connections one wait serves many, and it drops to 2.28.
//!
//! **Stopping work:** on readiness, cancelling is dropping a future. A connection waits for
//! its next bytes, its idle deadline (`--idle-timeout`) and the server's shutdown at once
//! ([`stop::race`]); when the deadline or the shutdown comes first, the read's future is
//! dropped, and with it its waker at the reactor: the kernel never held anything of ours, so
//! the socket is at once ours to write the last answers to and close. An idle client is told
//! `error: idle timeout`; on Ctrl-C or SIGTERM the accept loop stops, every connection
//! answers what it has received, shuts down its side and drains until the client closes,
//! and the server exits when they are all done or `--grace` is over.
//!
//! **The limit:** CPU work blocks the single thread. A task gives the thread back only at an
//! `.await` that waits, and `fib(40)` has no `.await` in it: while it runs, no other task
//! runs and the reactor does not even look at the sockets. Cooperative scheduling needs every
//! task to cooperate. step05 keeps this loop for the I/O and sends the CPU work to a pool of
//! threads.

pub mod executor;
pub mod net;
pub mod reactor;
pub mod registration;
pub mod stop;
pub mod time;

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::cli::{Config, NoOptions};
use shared::net::is_transient_accept_error;
use shared::net::{self as shared_net, ACCEPT_BACKOFF, DRAIN_TIME, is_out_of_resources};
use shared::protocol::{self, Flow, Frame, IDLE_TIMEOUT_ANSWER, LineBuffer};
use shared::shutdown::{self, Drain};

use crate::net::{TcpListener, TcpStream};
use crate::stop::{Connections, First, Stop, race};

/// The step04 server: a listening socket and the options its connections are served with.
#[derive(Debug)]
pub struct Server {
    /// A plain std listener until `run`: the reactor belongs to the thread that runs, which
    /// need not be the thread that binds.
    listener: std::net::TcpListener,
    settings: Settings,
}

/// What every connection is served with, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The step's name, for what it prints.
    pub step: &'static str,
    pub max_n: u32,
    pub idle: Option<Duration>,
    pub grace: Duration,
}

impl Settings {
    /// The settings of `step` from its command line.
    pub fn new(step: &'static str, config: &Config) -> Settings {
        Settings {
            step,
            max_n: config.max_n,
            idle: config.idle(),
            grace: config.grace,
        }
    }
}

impl shared::Server for Server {
    type Options = NoOptions;
    const ABOUT: &'static str = "Step 4: a fib server of async fn tasks on a hand-rolled \
                                 executor and reactor, one thread.";
    const TRACE_TARGETS: &'static [&'static str] = &["step04"];

    fn bind(config: &Config, _: &NoOptions) -> io::Result<Self> {
        Ok(Server {
            listener: shared_net::listen(config.addr)?,
            settings: Settings::new("step04", config),
        })
    }

    fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener always has a local address")
    }

    fn run(self) -> io::Result<()> {
        let max_n = self.settings.max_n;
        // The outer `?`: the executor could not start or its reactor failed. The inner
        // result, returned as is: the accept loop's.
        executor::block_on(serve(
            self.listener,
            self.settings,
            Rc::new(Inline { max_n }),
        ))?
    }
}

// ANCHOR: answer
/// How a step answers one request. step04 computes fib right where it reads ([`Inline`]);
/// step05 sends the large ones to a pool of threads, which is the whole of its difference.
// One thread runs every task here, so the futures of `answer` need not be `Send`, which is
// what the lint warns about.
#[allow(async_fn_in_trait)]
pub trait Answer {
    /// Answers `frame` into `out`; says whether the connection goes on.
    ///
    /// # Errors
    ///
    /// When the answer could not be computed (step05: the pool failed).
    async fn answer(&self, frame: Frame<'_>, out: &mut Vec<u8>) -> io::Result<Flow>;
}

/// step04's answer: fib computed on the loop's one thread, however long it takes.
#[derive(Debug)]
pub struct Inline {
    pub max_n: u32,
}

impl Answer for Inline {
    async fn answer(&self, frame: Frame<'_>, out: &mut Vec<u8>) -> io::Result<Flow> {
        // No `.await` in here: the fib of every line runs to its end on the one thread
        // (see "the limit").
        Ok(protocol::answer(frame, self.max_n, out))
    }
}
// ANCHOR_END: answer

/// Accepts connections and spawns a task for each (step02's loop, with a task where step02
/// had a thread) until Ctrl-C or SIGTERM; then waits for the connections to finish, for
/// `--grace` at most.
///
/// # Errors
///
/// When the listener breaks.
pub async fn serve<A: Answer + 'static>(
    listener: std::net::TcpListener,
    settings: Settings,
    answerer: Rc<A>,
) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let stop = Stop::new(settings.grace);
    shutdown::on_signal({
        let stop = Arc::clone(&stop);
        move || stop.set()
    });
    let connections = Rc::new(Connections::default());
    let mut stopped = std::pin::pin!(stop.wait());
    loop {
        let accepted = match race(
            listener.accept(),
            stopped.as_mut(),
            std::future::pending::<()>(),
        )
        .await
        {
            First::A(accepted) => accepted,
            // Stop accepting: the pending accept was dropped, which is all it takes.
            _ => break,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let (open, stop, answerer) =
                    (connections.enter(), Arc::clone(&stop), Rc::clone(&answerer));
                executor::spawn(async move {
                    if let Err(error) = serve_connection(stream, settings, &*answerer, &stop).await
                    {
                        shared_net::report_connection_error(settings.step, &error);
                    }
                    drop(open);
                });
            }
            Err(error) if is_transient_accept_error(&error) => continue,
            // The listener stays readable while connections wait in the backlog, so
            // retrying at once would spin. Sleep as a task: the other connections are
            // served meanwhile, and one of them closing frees a descriptor.
            Err(error) => {
                if !is_out_of_resources(&error) {
                    shared_net::report_accept_error(settings.step, &error);
                }
                time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    // ANCHOR: drain
    // The listener closes here: new clients are refused.
    drop(listener);
    let drain = Drain::begin(settings.step, connections.open(), settings.grace);
    let _ = time::timeout(
        stop.deadline().saturating_duration_since(Instant::now()),
        connections.all_closed(),
    )
    .await;
    let mut drain = drain;
    drain.closed = connections.closed();
    // The connections still open are cut: `block_on` drops their tasks when this returns.
    drain.finish(settings.step, connections.open());
    Ok(())
    // ANCHOR_END: drain
}

// ANCHOR: serve_connection
/// Serves one connection until the client closes it: read what has arrived, answer every
/// complete line in it, write the answers, repeat. Line for line step01's `serve_connection`;
/// each `.await` is where step01 blocked, and where this task lets the others run.
///
/// # Errors
///
/// When reading or writing the socket fails (the client reset the connection, which the
/// caller does not report: a client leaving rudely is nothing the server must report).
pub async fn serve_connection(
    stream: TcpStream,
    settings: Settings,
    answerer: &impl Answer,
    stop: &Arc<Stop>,
) -> io::Result<()> {
    let mut lines = LineBuffer::new();
    let mut answers = Vec::new();
    // Idle from when its answers are written until its next complete line.
    let mut idle_since = Instant::now();
    // One wait for the shutdown, for the whole connection: it registers its waker once.
    let mut stopped = std::pin::pin!(stop.wait());
    loop {
        // The next bytes, the idle deadline or the shutdown: the first wins, the other two
        // futures are dropped. (The rare paths are boxed: an async fn's future is as large
        // as its largest state, for the connection's whole life.)
        let deadline = settings.idle.map(|idle| idle_since + idle);
        let read = stream.read(lines.spare());
        let received = match race(read, stopped.as_mut(), time::sleep_until(deadline)).await {
            First::A(received) => received?,
            First::B(()) => {
                tracing::trace!("conn {}: the server stops: last answers", stream.key());
                return Box::pin(finish(&stream, &mut lines, answerer, stop)).await;
            }
            First::C(()) => {
                tracing::trace!("conn {}: idle too long: error: idle timeout", stream.key());
                return Box::pin(close_idle(&stream)).await;
            }
        };
        if received == 0 {
            // End of input: every complete line has been answered already, and any bytes
            // after the last `\n` are ignored, as the protocol says.
            return Ok(());
        }
        lines.filled(received);
        // ANCHOR_END: serve_connection

        // ANCHOR: answer_lines
        // Answer every complete line of this read with one write.
        let mut flow = Flow::Continue;
        let mut answered = false;
        while let Some(frame) = lines.next_frame() {
            answered = true;
            flow = answerer.answer(frame, &mut answers).await?;
            if flow == Flow::Close {
                break;
            }
        }
        stream.write_all(&answers).await?;
        answers.clear();
        if flow == Flow::Close {
            Box::pin(close_after_error(&stream)).await;
            return Ok(());
        }
        if answered {
            idle_since = Instant::now();
        }
        // Let the other tasks have a turn before reading again. An `.await` steps aside only
        // when it has to wait, and a client that asks again the moment it has its answer
        // (the slow client) may always have its next request waiting: without this, its
        // task would keep the thread, and no other connection would ever be served.
        executor::yield_now().await;
    }
}
// ANCHOR_END: answer_lines

/// The client has been idle for `--idle-timeout`: tell it, and close.
async fn close_idle(stream: &TcpStream) -> io::Result<()> {
    stream.write_all(IDLE_TIMEOUT_ANSWER).await?;
    close_after_error(stream).await;
    Ok(())
}

// ANCHOR: finish
/// The server is shutting down: answer what this connection has received (the complete
/// lines are all answered already; one more read, without waiting, brings what the kernel
/// holds), write it, then close cleanly, draining until the client closes or the grace
/// period is over.
async fn finish(
    stream: &TcpStream,
    lines: &mut LineBuffer,
    answerer: &impl Answer,
    stop: &Stop,
) -> io::Result<()> {
    if let Some(received) = stream.try_read(lines.spare())? {
        lines.filled(received);
    }
    let mut answers = Vec::new();
    while let Some(frame) = lines.next_frame() {
        if answerer.answer(frame, &mut answers).await? == Flow::Close {
            break;
        }
    }
    stream.write_all(&answers).await?;
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = vec![0u8; 4096];
    let drain = async { while let Ok(1..) = stream.read(&mut sink).await {} };
    let _ = time::timeout(
        stop.deadline().saturating_duration_since(Instant::now()),
        drain,
    )
    .await;
    Ok(())
}
// ANCHOR_END: finish

/// Closes a connection after an error answer (`line too long`, `idle timeout`) so that the
/// client reads it.
///
/// Closing a socket with unread input makes the kernel send a reset instead of a normal
/// close, and a reset can destroy the answer before the client has read it. So: end our side
/// (`shutdown(Write)` sends the answer, then end-of-stream), then discard what the client is
/// still sending, for [`DRAIN_TIME`] at most, before the socket is dropped. step01 did the
/// same with a read timeout; a task cannot block, so it races the reads against a timer.
pub async fn close_after_error(stream: &TcpStream) {
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
    let _ = time::timeout(DRAIN_TIME, drain).await;
}
