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
//! fast client in a third terminal: it prints nothing. It is connected (the kernel accepted
//! the connection into the listen backlog) but this server will not `read` from it until the
//! first client leaves. Stop the first client with Ctrl-C and the second starts counting.
//! A slow client (`--bin slow`) likewise holds everybody up for the whole of its fib(40).
//!
//! **The limit:** a second client waits. One blocking thread can only wait for one thing, and
//! while it waits on one client's socket it cannot notice another's. The next step gives each
//! connection a thread of its own (step02).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use shared::cli::{Config, NoOptions};
use shared::net::{ACCEPT_BACKOFF, is_out_of_fds, is_transient_accept_error};
use shared::protocol::{self, Flow, LineBuffer};

/// The step01 server: a listening socket and the protocol's `--max-n`.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    max_n: u32,
}

impl shared::Server for Server {
    type Options = NoOptions;
    const ABOUT: &'static str =
        "Step 1: a synchronous fib server. Blocking calls, one connection at a time.";

    fn bind(config: &Config, _: &NoOptions) -> io::Result<Self> {
        Ok(Server {
            listener: TcpListener::bind(config.addr)?,
            max_n: config.max_n,
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
                    let _ = serve_connection(stream, self.max_n);
                }
                // Out of file descriptors: the waiting connection stays in the backlog.
                // Pause instead of retrying in a tight loop at 100% CPU.
                Err(error) if is_out_of_fds(&error) => thread::sleep(ACCEPT_BACKOFF),
                Err(error) if is_transient_accept_error(&error) => continue,
                Err(error) => return Err(error),
            }
        }
    }
    // ANCHOR_END: accept_loop
}

// ANCHOR: serve_connection
/// Serves one connection until the client closes it: read what has arrived, answer every
/// complete line in it, write the answers, repeat.
///
/// step02 reuses this function unchanged, on a thread per connection.
///
/// # Errors
///
/// When reading or writing the socket fails (the client reset the connection). The caller
/// ignores it: a client leaving rudely is nothing the server must report.
pub fn serve_connection(mut stream: TcpStream, max_n: u32) -> io::Result<()> {
    let mut lines = LineBuffer::new();
    let mut answers = Vec::new();
    loop {
        let received = match stream.read(lines.spare()) {
            Ok(received) => received,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if received == 0 {
            // End of input: every complete line has been answered already, and any bytes
            // after the last `\n` are ignored, as the protocol says.
            return Ok(());
        }
        lines.filled(received);

        // Answer every complete line of this read with one write: a pipelining client gets
        // all its answers in as few packets as possible.
        let mut flow = Flow::Continue;
        while let Some(frame) = lines.next_frame() {
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
    }
}
// ANCHOR_END: serve_connection

/// Closes a connection after `error: line too long` so that the client reads the error.
///
/// Closing a socket with unread input makes the kernel send a reset instead of a normal
/// close, and a reset can destroy the answer before the client has read it. So: end our side
/// (`shutdown(Write)` sends the answer, then end-of-stream), then discard what the client is
/// still sending, for a moment at most, before the socket is dropped.
fn close_after_error(mut stream: &TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(100)));
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}
