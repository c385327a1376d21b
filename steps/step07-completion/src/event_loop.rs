//! The event loop: one thread, one ring, a slab of connections, and a `match` on what each
//! completion is for; accepting, and shutting down gracefully.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use io_uring::opcode;
use io_uring::types::{Fd, Timespec};
use shared::cli::Config;
use shared::net::{
    ACCEPT_BACKOFF, is_out_of_resources, is_transient_accept_error, report_connection_error,
};
use shared::shutdown::Drain;
use slab::Slab;

use crate::connection::{Connection, Core, Status};
use crate::ring::Ring;
use crate::shutdown;
use crate::token::{MAX_CONNECTIONS, Token};
use crate::trace;

/// The ring's event loop: the listener, the ring, and the connections.
#[derive(Debug)]
pub struct EventLoop {
    listener: TcpListener,
    ring: Ring,
    /// A duplicate of the ring's descriptor, by which the signal thread posts to the ring
    /// (it holds a weak reference): while it lives, that number is this ring's, and once the
    /// loop is over, nothing posts to it any more.
    #[expect(dead_code, reason = "held for what dropping it does, never read")]
    ring_fd: Arc<OwnedFd>,
    /// An accept is in flight.
    accepting: bool,
    /// Every connection, by the key its operations carry in their `user_data`. A connection
    /// leaves the slab only when no operation in flight names it any more.
    connections: Slab<Connection>,
    max_n: u32,
    idle: Option<Duration>,
    /// `--grace`.
    grace: Duration,
    /// How long accepting pauses when out of file descriptors, and `grace`, where the kernel
    /// can read them: a timeout operation points to its duration.
    backoff: Timespec,
    grace_timeout: Timespec,
    /// Counting the connections closed since the shutdown began; `None` until it does.
    drain: Option<Drain>,
    /// The cancellation of the accept is in flight.
    accept_cancel_in_flight: bool,
    grace_over: bool,
}

/// Serves on this thread with `ring` and `listener` until a graceful shutdown completes.
///
/// # Errors
///
/// Only when the ring breaks, or cannot be told about signals.
pub fn serve(ring: Ring, listener: TcpListener, config: &Config) -> io::Result<()> {
    let ring_fd = Arc::new(ring.io_uring().as_fd().try_clone_to_owned()?);
    shutdown::notify_on_signal(vec![(Arc::downgrade(&ring_fd), Token::Shutdown.into())])?;
    let mut event_loop = EventLoop {
        listener,
        ring,
        ring_fd,
        accepting: false,
        connections: Slab::new(),
        max_n: config.max_n,
        idle: config.idle(),
        grace: config.grace,
        backoff: Timespec::from(ACCEPT_BACKOFF),
        grace_timeout: Timespec::from(config.grace),
        drain: None,
        accept_cancel_in_flight: false,
        grace_over: false,
    };
    event_loop.run()?;
    if let Some(drain) = event_loop.drain.take() {
        drain.finish("step07", event_loop.connections.len());
    }
    Ok(())
}

impl EventLoop {
    // ANCHOR: event_loop
    fn run(&mut self) -> io::Result<()> {
        self.accept()?;
        while !self.finished() {
            // The one place this thread waits: submit what was queued, sleep until something
            // completes.
            let completion = self.ring.next_completion()?;
            self.dispatch(completion.user_data().into(), completion.result())?;
        }
        Ok(())
    }
    // ANCHOR_END: event_loop

    /// Whether a shutdown is complete: no connection left (or no more patience), and
    /// nothing in flight that names the listener.
    fn finished(&self) -> bool {
        self.drain.is_some()
            && ((self.connections.is_empty() && !self.accepting && !self.accept_cancel_in_flight)
                || self.grace_over)
    }

    // ANCHOR: dispatch
    /// Hands a completion to whoever waits for it. `result` is what the system call would
    /// have returned: a count or a file descriptor, or a negative errno.
    ///
    /// # Errors
    ///
    /// Only when the listener or the ring breaks; a connection's failure ends that
    /// connection.
    fn dispatch(&mut self, token: Token, result: i32) -> io::Result<()> {
        let _dispatch = self.trace_completion(token, result);
        let key = match token {
            Token::Accept => return self.on_accepted(result),
            Token::Recv(key) | Token::Send(key) | Token::Cancel(key) => key,
            // Timers, the shutdown: the loop's own.
            _ => return self.on_loop_event(token),
        };
        // A connection leaves the slab only once nothing in flight names it, so every
        // completion still finds its connection here.
        let (connection, mut core) = self.connection(key);
        match token {
            Token::Recv(_) => connection.on_received(result, &mut core),
            Token::Send(_) => connection.on_sent(result),
            _ => connection.on_cancelled(),
        }
        self.advance(key)
    }
    // ANCHOR_END: dispatch

    /// Connection `key`, and what it needs from the loop ([`Core`]): borrows of two
    /// different fields, lent together.
    fn connection(&mut self, key: usize) -> (&mut Connection, Core<'_>) {
        let core = Core {
            ring: &mut self.ring,
            max_n: self.max_n,
            idle: self.idle,
        };
        (&mut self.connections[key], core)
    }

    /// Lets connection `key` submit what it waits for next (`Connection::advance`), and
    /// drops it once it has closed.
    fn advance(&mut self, key: usize) -> io::Result<()> {
        let (connection, mut core) = self.connection(key);
        if connection.advance(key, &mut core)? == Status::Closed {
            self.remove(key);
        }
        Ok(())
    }

    /// `--trace`: says what a completion is, before it is handled (`cqe recv conn 0: 3
    /// bytes`), and times its handling: a `dispatch` span, entered until it drops (a bar in
    /// the timeline; for fib(40), the whole computation, on the loop's only thread).
    fn trace_completion(&self, token: Token, result: i32) -> tracing::span::EnteredSpan {
        if !tracing::enabled!(tracing::Level::TRACE) {
            return tracing::Span::none().entered();
        }
        let dispatch = tracing::trace_span!("dispatch").entered();
        match token {
            Token::Recv(key) | Token::Send(key) | Token::Cancel(key) | Token::LinkTimeout(key) => {
                self.connections[key].trace_completion(key, token, result);
            }
            // The connection it brings takes the slab's next key (`add_connection`).
            Token::Accept if result >= 0 => {
                tracing::trace!("cqe accept → conn {}", self.connections.vacant_key());
            }
            Token::Accept => tracing::trace!("cqe accept: {}", trace::errno(result)),
            Token::AcceptBackoff => tracing::trace!("cqe timeout: the pause in accepting is over"),
            Token::Shutdown => {
                tracing::trace!("cqe msg_ring from the signal thread: shut down gracefully");
            }
            Token::ShutdownDeadline => {
                tracing::trace!("cqe timeout: the grace period is over: the rest is cut");
            }
            Token::CancelAccept => {
                tracing::trace!("cqe cancel accept: {}", trace::cancelled(result, false));
            }
        }
        dispatch
    }

    /// The completions that concern the loop rather than a connection.
    fn on_loop_event(&mut self, token: Token) -> io::Result<()> {
        match token {
            // The pause is over (the timer's result, -ETIME, says only that it expired).
            Token::AcceptBackoff => self.accept(),
            Token::Shutdown => self.begin_shutdown(),
            Token::ShutdownDeadline => {
                self.grace_over = true;
                Ok(())
            }
            Token::CancelAccept => self.on_accept_cancelled(),
            // A link timeout posts a completion only if it could not be set up; the
            // receive's own completion says what happened.
            Token::LinkTimeout(_) => Ok(()),
            Token::Accept | Token::Recv(_) | Token::Send(_) | Token::Cancel(_) => {
                unreachable!("dispatched to their handlers")
            }
        }
    }

    /// Drops connection `key`, which closes its socket and frees its buffers: the kernel
    /// holds neither any more.
    fn remove(&mut self, key: usize) {
        tracing::trace!("conn {key}: closed");
        self.connections.remove(key);
        if let Some(drain) = &mut self.drain {
            drain.closed();
        }
    }

    /// Submits one accept on the listener, unless the server is shutting down. Its
    /// completion brings a new connection's file descriptor, and
    /// [`on_accepted`](Self::on_accepted) submits the next accept.
    fn accept(&mut self) -> io::Result<()> {
        if self.drain.is_some() {
            return Ok(());
        }
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
        unsafe { self.ring.push(&entry)? };
        tracing::trace!("sqe accept");
        self.accepting = true;
        Ok(())
    }

    /// An accept completed: start serving the new connection and accept the next one.
    ///
    /// A failed accept never ends the server (see [`after_accept_error`]).
    fn on_accepted(&mut self, result: i32) -> io::Result<()> {
        self.accepting = false;
        if result == -libc::ECANCELED {
            return Ok(()); // the shutdown cancelled it
        }
        if result < 0 {
            let error = io::Error::from_raw_os_error(-result);
            return match after_accept_error("step07", &error) {
                AfterAcceptError::Next => self.accept(),
                AfterAcceptError::Pause => self.pause_accepting(),
            };
        }
        // SAFETY: an accept's result is a file descriptor the kernel just opened for us;
        // nothing else in this process knows it, so the stream is its only owner.
        let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(result) });
        self.add_connection(stream)?;
        self.accept()
    }

    /// Starts serving a newly accepted connection (stopped at once while shutting down).
    fn add_connection(&mut self, stream: TcpStream) -> io::Result<()> {
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        if key < MAX_CONNECTIONS {
            let connection = entry.insert(Connection::new(stream));
            if self.drain.is_some() {
                // Accepted as the shutdown began: it closes cleanly like the others.
                connection.stop();
            }
            // Submits its first receive.
            self.advance(key)?;
        } // else dropping the stream closes it: the ring is full
        Ok(())
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
        let secs = ACCEPT_BACKOFF.as_secs_f64();
        tracing::trace!("sqe timeout: no accept for {secs:.1} s (out of file descriptors)");
        // SAFETY: the timeout points to `self.backoff`, a field of the event loop that owns
        // the ring; the kernel reads it when the operation is submitted, and the event loop
        // cancels everything in flight before its fields drop.
        unsafe { self.ring.push(&entry) }
    }

    /// Ctrl-C or SIGTERM: stop accepting (what waits in the backlog is accepted first), stop
    /// every connection (each answers what it has received, then closes cleanly: see
    /// `Connection::stop`), and give them `--grace` to finish.
    ///
    /// Stopping, in the completion style, is asking: the accept in flight and every
    /// receive in flight are the kernel's, and each is cancelled by a request whose answer
    /// comes as a completion. The loop goes on until every connection has closed.
    fn begin_shutdown(&mut self) -> io::Result<()> {
        if self.drain.is_some() {
            return Ok(());
        }
        self.drain = Some(Drain::begin("step07", self.connections.len(), self.grace));
        self.cancel_accept()?;
        for stream in accept_backlog(&self.listener) {
            self.add_connection(stream)?;
        }
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.connections[key].stop();
            self.advance(key)?;
        }
        let entry = opcode::Timeout::new(&self.grace_timeout)
            .build()
            .user_data(Token::ShutdownDeadline.into());
        let secs = self.grace.as_secs_f64();
        tracing::trace!("sqe timeout: the end of the grace period, in {secs:.1} s");
        // SAFETY: points to `self.grace_timeout`, a field of the event loop (see `pause_accepting`).
        unsafe { self.ring.push(&entry) }
    }

    /// Asks the kernel to cancel the accept in flight, if there is one and no cancellation
    /// is on its way already.
    fn cancel_accept(&mut self) -> io::Result<()> {
        if !self.accepting || self.accept_cancel_in_flight {
            return Ok(());
        }
        let entry = opcode::AsyncCancel::new(Token::Accept.into())
            .build()
            .user_data(Token::CancelAccept.into());
        // SAFETY: a cancellation points to no buffer; the accept it names is the listener's,
        // which stays open until the event loop drops.
        unsafe { self.ring.push(&entry)? };
        tracing::trace!("sqe cancel accept");
        self.accept_cancel_in_flight = true;
        Ok(())
    }

    /// The accept's cancellation completed. If it found nothing (the accept was completing
    /// just then) and the accept is still in flight, it is asked again.
    fn on_accept_cancelled(&mut self) -> io::Result<()> {
        self.accept_cancel_in_flight = false;
        self.cancel_accept()
    }
}

/// The connections waiting in `listener`'s backlog as a shutdown begins: their handshake is
/// done, and their clients think them open. Accepted now, with plain non-blocking accepts,
/// they are closed cleanly like the others; left there, they would be reset when the
/// listener closes.
pub fn accept_backlog(listener: &TcpListener) -> Vec<TcpStream> {
    let mut waiting = Vec::new();
    if listener.set_nonblocking(true).is_ok() {
        // Until the backlog is empty (WouldBlock), or accepting fails for another reason.
        while let Ok((stream, _)) = listener.accept() {
            waiting.push(stream);
        }
    }
    waiting
}

/// What to do after an accept failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAcceptError {
    /// Only the connection being accepted failed: accept the next one at once.
    Next,
    /// Pause accepting for [`ACCEPT_BACKOFF`], keep serving, then try again.
    Pause,
}

/// What to do after an accept of `step`'s failed with `error`. Never "stop": whatever the error, the
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
pub fn after_accept_error(step: &str, error: &io::Error) -> AfterAcceptError {
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
        report_connection_error(step, error);
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
        let after = |errno| after_accept_error("test", &io::Error::from_raw_os_error(errno));
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
