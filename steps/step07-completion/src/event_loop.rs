//! The event loop: one thread, one ring, a slab of connections, and a `match` on what each
//! completion is for.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;

use io_uring::opcode;
use io_uring::types::{Fd, Timespec};
use shared::net::{
    ACCEPT_BACKOFF, is_out_of_resources, is_transient_accept_error, report_connection_error,
};
use slab::Slab;

use crate::connection::{Connection, Core, Status};
use crate::ring::Ring;
use crate::token::{MAX_CONNECTIONS, Token};

/// The ring's event loop: the listener, the ring, and the connections.
#[derive(Debug)]
pub struct EventLoop {
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

/// Serves on this thread with `ring` and `listener`, forever.
///
/// # Errors
///
/// Only when the listener or the ring breaks.
pub fn serve(ring: Ring, listener: TcpListener, max_n: u32) -> io::Result<()> {
    let mut event_loop = EventLoop {
        listener,
        ring,
        connections: Slab::new(),
        max_n,
        backoff: Timespec::from(ACCEPT_BACKOFF),
    };
    event_loop.run()
}

impl EventLoop {
    // ANCHOR: event_loop
    fn run(&mut self) -> io::Result<()> {
        self.accept()?;
        loop {
            // The one place this thread waits: submit what was queued, sleep until something
            // completes.
            let completion = self.ring.next_completion()?;
            self.dispatch(completion.user_data().into(), completion.result())?;
        }
    }
    // ANCHOR_END: event_loop

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
        let mut core = Core {
            ring: &mut self.ring,
            max_n: self.max_n,
        };
        match token {
            Token::Recv(_) => connection.on_received(result, &mut core),
            Token::Send(_) => connection.on_sent(result),
            _ => connection.on_cancelled(),
        }
        if connection.advance(key, &mut core)? == Status::Closed {
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
        // of the event loop, which cancels every operation in flight before its fields drop
        // (see `Drop for EventLoop`).
        unsafe { self.ring.push(&entry) }
    }

    /// An accept completed: start serving the new connection and accept the next one.
    ///
    /// A failed accept never ends the server (see [`after_accept_error`]).
    fn on_accepted(&mut self, result: i32) -> io::Result<()> {
        if result < 0 {
            let error = io::Error::from_raw_os_error(-result);
            return match after_accept_error(&error) {
                AfterAcceptError::Next => self.accept(),
                AfterAcceptError::Pause => self.pause_accepting(),
            };
        }
        // SAFETY: an accept's result is a file descriptor the kernel just opened for us;
        // nothing else in this process knows it, so the stream is its only owner.
        let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(result) });
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        if key < MAX_CONNECTIONS {
            let connection = entry.insert(Connection::new(stream));
            let mut core = Core {
                ring: &mut self.ring,
                max_n: self.max_n,
            };
            // Submits its first receive (a fresh connection is never closed at once).
            connection.advance(key, &mut core)?;
        } // else dropping the stream closes it: the ring is full
        self.accept()
    }

    /// Out of file descriptors (or memory, or anything [`after_accept_error`] cannot
    /// name): no accept for [`ACCEPT_BACKOFF`], then try again.
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
        // SAFETY: the timeout points to `self.backoff`, a field of the event loop that owns
        // the ring; the kernel reads it when the operation is submitted, and the event loop
        // cancels everything in flight before its fields drop.
        unsafe { self.ring.push(&entry) }
    }
}

/// What to do after an accept failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAcceptError {
    /// Only the connection being accepted failed: accept the next one at once.
    Next,
    /// Pause accepting for [`ACCEPT_BACKOFF`], keep serving, then try again.
    Pause,
}

/// What to do after an accept failed with `error`. Never "stop": whatever the error, the
/// connections already open are served, and accepting tries again.
///
/// - The connection was reset or aborted in the backlog, or the network failed it:
///   [`Next`](AfterAcceptError::Next). Linux passes a new connection's pending network
///   errors on as accept's own (ENETDOWN, EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET,
///   EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH, says accept(2)), and a firewall refuses one
///   connection with EPERM: the next one may be fine.
/// - Out of file descriptors or memory ([`is_out_of_resources`]), or an error we cannot name:
///   [`Pause`](AfterAcceptError::Pause). Closing connections frees what ran out, and an
///   unknown error that repeats at once would otherwise spin the loop; the unknown ones are
///   reported (at most a few a second).
pub fn after_accept_error(error: &io::Error) -> AfterAcceptError {
    let per_connection = [
        libc::ENETDOWN,
        libc::EPROTO,
        libc::ENOPROTOOPT,
        libc::EHOSTDOWN,
        libc::ENONET,
        libc::EHOSTUNREACH,
        libc::EOPNOTSUPP,
        libc::ENETUNREACH,
        libc::EPERM,
    ];
    if is_transient_accept_error(error)
        || error
            .raw_os_error()
            .is_some_and(|errno| per_connection.contains(&errno))
    {
        return AfterAcceptError::Next;
    }
    if !is_out_of_resources(error) {
        report_connection_error("accept", error);
    }
    AfterAcceptError::Pause
}

/// The event loop's fields drop after this: the connections (their buffers and sockets),
/// the listener, the ring. The kernel may still be working on them (a receive waiting for
/// bytes is an operation in flight), so first cancel everything and wait until the kernel
/// has let go.
impl Drop for EventLoop {
    fn drop(&mut self) {
        if self.ring.cancel_all().is_err() {
            // The kernel could not cancel synchronously (out of memory, say), so operations
            // may still be in flight, and they outlive the ring's descriptor: closing it only
            // starts the kernel's teardown, which cancels them later, when it can. So every
            // connection is leaked, never freed or reused by this process: its input buffer
            // (which a receive may still write), its outbox (which a send may still read),
            // and its socket, kept open so that its number is not reused: an operation that
            // looks its descriptor up late (a receive linked behind a send) must not find
            // another file there. The rest may drop: the listener (an accept in flight holds
            // the kernel's own reference to it, and nothing looks it up late), the durations
            // (the kernel copied them when it took the submissions), and the ring (closing
            // it is what tells the kernel to tear down). The cost is memory and descriptors
            // until the process exits, which it does next: the loop ends only with the
            // server.
            std::mem::forget(std::mem::take(&mut self.connections));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_accept_skips_the_connection_or_pauses_but_never_stops() {
        let after = |errno| after_accept_error(&io::Error::from_raw_os_error(errno));
        for errno in [
            libc::ECONNABORTED,
            libc::ECONNRESET,
            libc::EINTR,
            libc::EPROTO,
            libc::EPERM,
            libc::ENETUNREACH,
        ] {
            assert_eq!(after(errno), AfterAcceptError::Next, "errno {errno}");
        }
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::EINVAL,
            libc::EBADF,
        ] {
            assert_eq!(after(errno), AfterAcceptError::Pause, "errno {errno}");
        }
    }
}
