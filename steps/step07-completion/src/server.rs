//! The event loop: one thread, one ring, a slab of connections, and a `match` on what each
//! completion is for.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;

use io_uring::opcode;
use io_uring::types::{Fd, Timespec};
use shared::cli::{Config, NoOptions};
use shared::net::{ACCEPT_BACKOFF, is_out_of_fds, is_transient_accept_error};
use slab::Slab;
use socket2::{Domain, Socket, Type};

use crate::connection::{Connection, Status};
use crate::ring::{Ring, STEP07_OPERATIONS, require_linux};

/// Submissions the ring holds at once. Pushing more is fine: [`Ring::push`] submits to make
/// room.
const SUBMISSION_QUEUE: u32 = 256;

/// What a completion is for: which operation, for which connection.
///
/// Every submission carries 64 bits of `user_data` that the kernel hands back, untouched, in
/// its completion; that is how a completion finds its way home. A `Token` packs the kind of
/// operation into the low 3 bits and the connection's slab key above them, so dispatching a
/// completion is a `match` and an index, like step03's tokens. One difference: a connection
/// can have a receive, a send and a cancellation in flight at once, so the token names the
/// operation as well as the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The listener's accept.
    Accept,
    /// The timer that ends a pause in accepting (out of file descriptors).
    AcceptBackoff,
    /// A receive on connection `key`.
    Recv(usize),
    /// A send on connection `key`.
    Send(usize),
    /// The cancellation of connection `key`'s operations as it closes.
    Cancel(usize),
}

impl From<Token> for u64 {
    fn from(token: Token) -> u64 {
        let (kind, key) = match token {
            Token::Accept => (0, 0),
            Token::AcceptBackoff => (1, 0),
            Token::Recv(key) => (2, key),
            Token::Send(key) => (3, key),
            Token::Cancel(key) => (4, key),
        };
        ((key as u64) << 3) | kind
    }
}

impl From<u64> for Token {
    fn from(user_data: u64) -> Token {
        let key = (user_data >> 3) as usize;
        match user_data & 0b111 {
            0 => Token::Accept,
            1 => Token::AcceptBackoff,
            2 => Token::Recv(key),
            3 => Token::Send(key),
            4 => Token::Cancel(key),
            // Every submission's user_data is made by `From<Token>` above.
            kind => unreachable!("user_data {user_data:#x} has no operation kind {kind}"),
        }
    }
}

/// The step07 server: the listener, the ring, and the connections.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    ring: Ring,
    /// Every connection, by the key its operations carry in their `user_data`. A connection
    /// leaves the slab only when no operation in flight names it any more.
    connections: Slab<Connection>,
    max_n: u32,
    /// How long accepting pauses when out of file descriptors, where the kernel can read it:
    /// a timeout operation points to its duration.
    backoff: Timespec,
}

impl shared::Server for Server {
    type Options = NoOptions;
    const ABOUT: &'static str = "Step 7: a fib server on one thread and one io_uring: \
                                 completion-based I/O.";

    fn bind(config: &Config, _: &NoOptions) -> io::Result<Self> {
        // Closing a connection cancels its operations by file descriptor (5.19), and
        // shutting down cancels everything synchronously (6.0).
        require_linux(6, 0, "step07's cancellation")?;
        Ok(Server {
            listener: listen(config.addr)?,
            ring: Ring::new(SUBMISSION_QUEUE, STEP07_OPERATIONS)?,
            connections: Slab::new(),
            max_n: config.max_n,
            backoff: Timespec::from(ACCEPT_BACKOFF),
        })
    }

    fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener always has a local address")
    }

    // ANCHOR: event_loop
    fn run(mut self) -> io::Result<()> {
        self.accept()?;
        loop {
            // The one place this thread waits: submit what was queued, sleep until something
            // completes.
            let completion = self.ring.next_completion()?;
            self.dispatch(completion.user_data().into(), completion.result())?;
        }
    }
    // ANCHOR_END: event_loop
}

/// A listening socket with a backlog of 1024: while the loop computes a fib, connections
/// wait there, handshake done, for the next accept.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Like std's TcpListener: restarting the server does not wait for old connections'
    // TIME_WAIT to pass.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

impl Server {
    // ANCHOR: dispatch
    /// Hands a completion to whoever waits for it. `result` is what the system call would
    /// have returned: a count or a file descriptor, or a negative errno.
    ///
    /// # Errors
    ///
    /// Only when the listener or the ring breaks; a connection's failure ends that
    /// connection.
    fn dispatch(&mut self, token: Token, result: i32) -> io::Result<()> {
        let key = match token {
            Token::Accept => return self.on_accepted(result),
            // The pause is over (the timer's result, -ETIME, says only that it expired).
            Token::AcceptBackoff => return self.accept(),
            Token::Recv(key) | Token::Send(key) | Token::Cancel(key) => key,
        };
        // A connection leaves the slab only once nothing in flight names it, so every
        // completion still finds its connection here.
        let connection = &mut self.connections[key];
        match token {
            Token::Recv(_) => connection.on_received(result),
            Token::Send(_) => connection.on_sent(result),
            _ => connection.on_cancelled(),
        }
        if connection.advance(key, &mut self.ring, self.max_n)? == Status::Closed {
            // Dropping it closes its socket and frees its buffers: the kernel holds neither.
            self.connections.remove(key);
        }
        Ok(())
    }
    // ANCHOR_END: dispatch

    /// Submits one accept on the listener. Its completion brings a new connection's file
    /// descriptor, and [`on_accepted`](Self::on_accepted) submits the next accept.
    fn accept(&mut self) -> io::Result<()> {
        let entry = opcode::Accept::new(
            Fd(self.listener.as_raw_fd()),
            ptr::null_mut(),
            ptr::null_mut(),
        )
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(Token::Accept.into());
        // SAFETY: no buffer (we do not ask for the peer's address). The listener is a field
        // of the server, which cancels every operation in flight before its fields drop
        // (see `Drop for Server`).
        unsafe { self.ring.push(&entry) }
    }

    /// An accept completed: start serving the new connection and accept the next one.
    fn on_accepted(&mut self, result: i32) -> io::Result<()> {
        if result < 0 {
            let error = io::Error::from_raw_os_error(-result);
            return if is_out_of_fds(&error) {
                self.pause_accepting()
            } else if is_transient_accept_error(&error) {
                self.accept()
            } else {
                Err(error)
            };
        }
        // SAFETY: an accept's result is a file descriptor the kernel just opened for us;
        // nothing else in this process knows it, so the stream is its only owner.
        let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(result) });
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        let connection = entry.insert(Connection::new(stream));
        // Submits its first receive (a fresh connection is never closed at once).
        connection.advance(key, &mut self.ring, self.max_n)?;
        self.accept()
    }

    /// Out of file descriptors: no accept for [`ACCEPT_BACKOFF`], then try again.
    ///
    /// The waiting connections stay in the listen backlog. Submitting the next accept at once
    /// would fail at once, again and again, at 100% CPU; instead a timeout operation, the
    /// ring's own timer, completes after the backoff and its completion submits the accept.
    /// Meanwhile the open connections are served as usual, and one of them closing frees a
    /// descriptor.
    fn pause_accepting(&mut self) -> io::Result<()> {
        let entry = opcode::Timeout::new(&self.backoff)
            .build()
            .user_data(Token::AcceptBackoff.into());
        // SAFETY: the timeout points to `self.backoff`, a field of the server that owns the
        // ring; the kernel reads it when the operation is submitted, and the server cancels
        // everything in flight before its fields drop.
        unsafe { self.ring.push(&entry) }
    }
}

/// The server's fields drop after this: the connections' buffers and sockets, the listener.
/// The kernel may still be working on them (a receive waiting for bytes is an operation in
/// flight), so first cancel everything and wait until the kernel has let go. Were that
/// impossible, leaking the buffers is the safe choice: the kernel could still write to them.
impl Drop for Server {
    fn drop(&mut self) {
        if self.ring.cancel_all().is_err() {
            std::mem::forget(std::mem::take(&mut self.connections));
        }
    }
}
