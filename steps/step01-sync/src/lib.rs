//! # Step 1: synchronous, one connection at a time
//!
//! The simplest server there is: accept a connection, serve it until the client leaves,
//! accept the next. Every call blocks (`accept`, `read`, `write`), so the thread is always
//! waiting for exactly one thing.
//!
//! **What changed:** nothing yet; this is the baseline. It shows the protocol and its
//! framing, which every later step reuses unchanged from the `shared` crate: bytes arrive in
//! arbitrary pieces (one request split over many reads, or many requests in one read), so the
//! server buffers them in a [`LineBuffer`] and answers each complete line.
//!
//! **Run it** (two terminals):
//!
//! ```text
//! cargo run -p step01
//! cargo run -p clients --bin fast
//! ```
//!
//! **What to observe:** the fast client prints its requests per second. Now start a second
//! fast client in a third terminal: it prints `0 req/s`, second after second. It is connected (the kernel accepted
//! the connection into the listen backlog) but this server will not `read` from it until the
//! first client leaves. Stop the first client with Ctrl-C and the second starts counting.
//! A slow client (`--bin slow`) likewise holds everybody up for the whole of its fib(40).
//!
//! **Stopping work:** an idle client (`--idle-timeout`, 60 s by default) is told `error: idle
//! timeout` and closed: the socket's read timeout bounds each blocking `read`, and after it
//! the server looks at the clock (see [`serve_connection`]). That is all this style can do:
//! the thread waits for one thing at a time, and a timer is the one other thing a blocking
//! read can be given. So there is no graceful shutdown either: Ctrl-C ends the process at
//! once, and the kernel closes every socket, with the answers of the connection being served
//! lost if they were not written yet. Waiting for a socket *and* a signal takes a readiness
//! loop (step03).
//!
//! **The limit:** a second client waits. One blocking thread can only wait for one thing, and
//! while it waits on one client's socket it cannot notice another's. The next step gives each
//! connection a thread of its own (step02).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use shared::cli::{Config, NoOptions};
use shared::net::{
    self, ACCEPT_BACKOFF, DRAIN_TIME, is_out_of_resources, is_transient_accept_error,
};
use shared::protocol::{self, Flow, IDLE_TIMEOUT_ANSWER, LineBuffer};

/// The step01 server: a listening socket and the protocol's `--max-n` and `--idle-timeout`.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    max_n: u32,
    idle: Option<Duration>,
}

impl shared::Server for Server {
    type Options = NoOptions;
    const ABOUT: &'static str =
        "Step 1: a synchronous fib server. Blocking calls, one connection at a time.";
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
        loop {
            match self.listener.accept() {
                // Serve this client to the end before looking at the next one. Whatever
                // goes wrong on its connection (reset, garbage) ends only that connection.
                Ok((stream, _peer)) => {
                    if let Err(error) = serve_connection(stream, self.max_n, self.idle) {
                        net::report_connection_error("step01", &error);
                    }
                }
                Err(error) if is_transient_accept_error(&error) => continue,
                // Out of file descriptors (or another failure): the waiting connection stays
                // in the backlog. Pause instead of retrying in a tight loop at 100% CPU, and
                // keep serving: say so only when it is not the usual lack of descriptors.
                Err(error) => {
                    if !is_out_of_resources(&error) {
                        net::report_accept_error("step01", &error);
                    }
                    thread::sleep(ACCEPT_BACKOFF);
                }
            }
        }
    }
    // ANCHOR_END: accept_loop
}

/// Serves one connection until the client closes it: read what has arrived, answer every
/// complete line in it, write the answers, repeat.
///
/// step02 reuses this function unchanged, on a thread per connection.
///
/// # Errors
///
/// When reading or writing the socket fails (the client reset the connection, which the
/// caller does not report: a client leaving rudely is nothing the server must report).
// ANCHOR: serve_connection
pub fn serve_connection(
    mut stream: TcpStream,
    max_n: u32,
    idle: Option<Duration>,
) -> io::Result<()> {
    let mut lines = LineBuffer::new();
    let mut answers = Vec::new();
    // ANCHOR: idle_timeout
    // The connection is idle from the moment its answers are written (or it was accepted)
    // until its next complete line: a client waiting for its own fib is not idle.
    let mut idle_since = Instant::now();
    // No `read` blocks for longer than the timeout: the one other thing a blocking call can
    // wait for. The timeout is set once, not before every read (that would be a system call
    // per request), so bytes that arrive without completing a line wake the read early, and
    // the clock decides: a client that trickles bytes is idle all the same.
    stream.set_read_timeout(idle)?;
    let idle_over = |since: Instant| idle.is_some_and(|idle| since.elapsed() >= idle);
    // ANCHOR_END: idle_timeout
    loop {
        let received = match stream.read(lines.spare()) {
            Ok(received) => received,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            // The read timed out (Linux says WouldBlock, others TimedOut). Idle, unless
            // bytes of a line started this read later than the idle time did.
            Err(error) if is_timeout(&error) => {
                if idle_over(idle_since) {
                    return close_idle(&stream);
                }
                continue;
            }
            Err(error) => return Err(error),
        };
        if received == 0 {
            // End of input: every complete line has been answered already, and any bytes
            // after the last `\n` are ignored, as the protocol says.
            return Ok(());
        }
        lines.filled(received);
        // ANCHOR_END: serve_connection

        // ANCHOR: answer_lines
        // Answer every complete line of this read with one write: a pipelining client gets
        // all its answers in as few packets as possible.
        let mut flow = Flow::Continue;
        let mut answered = false;
        while let Some(frame) = lines.next_frame() {
            answered = true;
            flow = protocol::answer(frame, max_n, &mut answers);
            if flow == Flow::Close {
                break;
            }
        }
        stream.write_all(&answers)?;
        answers.clear();
        if flow == Flow::Close {
            close_after_error(&stream);
            return Ok(());
        }
        if answered {
            idle_since = Instant::now();
        } else if idle_over(idle_since) {
            // Only part of a line, and the time is up.
            return close_idle(&stream);
        }
    }
}
// ANCHOR_END: answer_lines

/// The client has been idle for `--idle-timeout`: tell it, and close.
fn close_idle(mut stream: &TcpStream) -> io::Result<()> {
    stream.write_all(IDLE_TIMEOUT_ANSWER)?;
    close_after_error(stream);
    Ok(())
}

/// Whether a blocking call ran into its timeout: Linux reports `WouldBlock` (EAGAIN), other
/// systems `TimedOut`.
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Closes a connection after an error answer (`line too long`, `idle timeout`) so that the
/// client reads the error.
///
/// Closing a socket with unread input makes the kernel send a reset instead of a normal
/// close, and a reset can destroy the answer before the client has read it. So: end our side
/// (`shutdown(Write)` sends the answer, then end-of-stream), then discard what the client is
/// still sending, for [`DRAIN_TIME`] at most, before the socket is dropped.
fn close_after_error(mut stream: &TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(DRAIN_TIME));
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}
