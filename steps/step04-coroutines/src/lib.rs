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
//! **The limit:** CPU work blocks the single thread. A task gives the thread back only at an
//! `.await` that waits, and `fib(40)` has no `.await` in it: while it runs, no other task
//! runs and the reactor does not even look at the sockets. Cooperative scheduling needs every
//! task to cooperate. step05 keeps this loop for the I/O and sends the CPU work to a pool of
//! threads.

pub mod executor;
pub mod net;
pub mod reactor;
pub mod registration;
pub mod time;

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use shared::cli::{Config, NoOptions};
use shared::net::{ACCEPT_BACKOFF, is_out_of_fds, is_transient_accept_error};
use shared::protocol::{self, Flow, LineBuffer};

use crate::net::{TcpListener, TcpStream};

/// The step04 server: a listening socket and the protocol's `--max-n`.
#[derive(Debug)]
pub struct Server {
    /// A plain std listener until `run`: the reactor belongs to the thread that runs, which
    /// need not be the thread that binds.
    listener: std::net::TcpListener,
    max_n: u32,
}

impl shared::Server for Server {
    type Options = NoOptions;
    const ABOUT: &'static str = "Step 4: a fib server of async fn tasks on a hand-rolled \
                                 executor and reactor, one thread.";

    fn bind(config: &Config, _: &NoOptions) -> io::Result<Self> {
        Ok(Server {
            listener: std::net::TcpListener::bind(config.addr)?,
            max_n: config.max_n,
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
        executor::block_on(accept_loop(self.listener, self.max_n))?
    }
}

/// Accepts connections and spawns a task for each: step02's loop, with a task where step02
/// had a thread.
async fn accept_loop(listener: std::net::TcpListener, max_n: u32) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => executor::spawn(async move {
                // Whatever goes wrong on a connection (reset, garbage) ends its task only.
                let _ = serve_connection(stream, max_n).await;
            }),
            // The listener stays readable while connections wait in the backlog, so
            // retrying at once would spin. Sleep as a task: the other connections are
            // served meanwhile, and one of them closing frees a descriptor.
            Err(error) if is_out_of_resources(&error) => time::sleep(ACCEPT_BACKOFF).await,
            Err(error) if is_transient_accept_error(&error) => continue,
            Err(error) => return Err(error),
        }
    }
}

// ANCHOR: serve_connection
/// Serves one connection until the client closes it: read what has arrived, answer every
/// complete line in it, write the answers, repeat. Line for line step01's `serve_connection`;
/// each `.await` is where step01 blocked, and where this task lets the others run.
///
/// # Errors
///
/// When reading or writing the socket fails (the client reset the connection). The caller
/// ignores it: a client leaving rudely is nothing the server must report.
pub async fn serve_connection(stream: TcpStream, max_n: u32) -> io::Result<()> {
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

        // Answer every complete line of this read with one write. This loop never awaits:
        // the fib of every line is computed right here, on the one thread (see "the limit").
        let mut flow = Flow::Continue;
        while let Some(frame) = lines.next_frame() {
            flow = protocol::answer(frame, max_n, &mut answers);
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
// ANCHOR_END: serve_connection

/// How long a connection being closed after `error: line too long` may take to stop sending.
pub const DRAIN_TIME: Duration = Duration::from_millis(100);

/// Closes a connection after `error: line too long` so that the client reads the error.
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

/// Whether accepting failed for lack of a resource that closing connections gives back:
/// file descriptors (EMFILE, ENFILE), or kernel memory to register one more socket with the
/// poller (ENOMEM, or ENOSPC for the per-user limit of epoll registrations).
pub fn is_out_of_resources(error: &io::Error) -> bool {
    is_out_of_fds(error)
        || matches!(
            error.kind(),
            io::ErrorKind::OutOfMemory | io::ErrorKind::StorageFull
        )
}
