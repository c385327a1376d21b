//! The server: one listener and one ring, bound up front; [`run`](shared::Server::run) runs
//! the ring's event loop on the calling thread.

use std::io;
use std::net::{SocketAddr, TcpListener};

use shared::cli::{Config, NoOptions};
use socket2::{Domain, Socket, Type};

use crate::event_loop;
use crate::ring::{Ring, STEP07_OPERATIONS, require_linux};

/// Submissions the ring holds at once. Pushing more is fine: [`Ring::push`] submits to make
/// room.
const SUBMISSION_QUEUE: u32 = 256;

/// The step07 server: the listener and the ring, not yet running.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    ring: Ring,
    config: Config,
}

impl shared::Server for Server {
    type Options = NoOptions;
    const ABOUT: &'static str = "Step 7: a fib server on one thread and one io_uring: \
                                 completion-based I/O.";
    const TRACE_TARGETS: &'static [&'static str] = &["step07"];

    fn bind(config: &Config, _: &NoOptions) -> io::Result<Self> {
        // Closing a connection cancels its operations by file descriptor (5.19), and
        // dropping the ring cancels everything synchronously (6.0).
        require_linux(6, 0, "step07's cancellation")?;
        Ok(Server {
            listener: listen(config.addr)?,
            ring: Ring::new(SUBMISSION_QUEUE, STEP07_OPERATIONS)?,
            config: config.clone(),
        })
    }

    fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener always has a local address")
    }

    fn run(self) -> io::Result<()> {
        event_loop::serve(self.ring, self.listener, &self.config)
    }
}

/// A listening socket with a backlog of 1024: while the loop computes a fib, connections
/// wait there, handshake done, for the next accept.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Like std's TcpListener: restarting the server does not wait for old connections'
    // TIME_WAIT to pass.
    socket.set_reuse_address(true)?;
    // Every step sets TCP_NODELAY; accepted sockets inherit it from the listener, which
    // spares a system call per connection. Without it, Nagle's algorithm holds a small send
    // back while an earlier one is unacknowledged, and the client delays its ACK (up to
    // 40 ms on Linux) waiting for something to send: an answer sent right after another
    // one (step08's answers back from the pool, a partial send's rest) waits for that ACK.
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
