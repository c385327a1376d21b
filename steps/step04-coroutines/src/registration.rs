//! A socket registered with the reactor, and the future that waits until it is ready.
//!
//! [`Registration`] is what [`net`](crate::net) builds its sockets on: it owns a non-blocking
//! socket, and its [`io`](Registration::io) method turns a non-blocking call into an async
//! one. [`Readiness`] is the one future in this step written by hand rather than by the
//! compiler: a struct, and a `poll` that leaves the task's waker with the reactor.

use polling::AsSource;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::reactor::{Direction, Reactor};

/// A non-blocking socket registered with the reactor, so tasks can wait until it is ready.
///
/// It owns the socket: dropping it removes the socket from the poller, then closes it. That is
/// what "a task is dropped" comes down to for I/O: its future is dropped, with it the
/// `Registration`s it holds, and the reactor forgets the socket and the task's wakers.
#[derive(Debug)]
pub struct Registration<T: AsSource> {
    io: T,
    key: usize,
    reactor: Rc<Reactor>,
}

impl<T: AsSource> Registration<T> {
    /// Called by [`Reactor::register`] once `io` is in the poller under `key`.
    pub(crate) fn new(io: T, key: usize, reactor: Rc<Reactor>) -> Registration<T> {
        Registration { io, key, reactor }
    }

    /// The socket, for the non-blocking calls themselves.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The socket's key with the reactor: how `--trace` names it (`conn 7`).
    pub fn key(&self) -> usize {
        self.key
    }

    /// Names the socket in `--trace` ("listener").
    pub(crate) fn name(&self, what: &'static str) {
        self.reactor.name(self.key, what);
    }

    /// Runs the non-blocking operation `op` until it does not return `WouldBlock`, waiting
    /// for `direction` readiness between tries: the heart of every async socket operation.
    ///
    /// Readiness is a hint, never a promise: the kernel may report a socket readable and the
    /// read still find nothing. That and the spurious wakeups (a task polled although its
    /// socket is not ready, because another future of the same task or the other direction
    /// woke it) are harmless for the same reason: the operation is simply retried, and
    /// `WouldBlock` sends the task back to waiting.
    ///
    /// # Errors
    ///
    /// Whatever `op` returns other than `WouldBlock`, or the poller refusing the interest.
    pub async fn io<R>(
        &self,
        direction: Direction,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            match op(&self.io) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                result => return result,
            }
            self.ready(direction).await?;
        }
    }

    /// Resolves once the reactor has seen an event on this socket after the first poll.
    pub fn ready(&self, direction: Direction) -> Readiness<'_, T> {
        Readiness {
            registration: self,
            direction,
            armed: false,
        }
    }
}

impl<T: AsSource> Drop for Registration<T> {
    fn drop(&mut self) {
        self.reactor.deregister(self.key, &self.io);
    }
}

/// The future of [`Registration::ready`]: a hand-written [`Future`], the kind the compiler
/// generates for every `async fn`, here spelled out.
///
/// The first poll leaves the task's waker with the reactor, arms the interest and returns
/// `Pending`. The reactor takes the waker out when an event arrives and wakes the task; the
/// next poll finds the waker gone and returns `Ready`. A poll that finds the waker still there
/// was a spurious wakeup: it refreshes the waker and keeps waiting.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Readiness<'a, T: AsSource> {
    registration: &'a Registration<T>,
    direction: Direction,
    /// Whether our waker has been left with the reactor.
    armed: bool,
}

// ANCHOR: readiness
impl<T: AsSource> Future for Readiness<'_, T> {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Registration { io, key, reactor } = self.registration;
        if !self.armed {
            reactor.arm(*key, io, self.direction, cx.waker())?;
            self.armed = true;
            return Poll::Pending;
        }
        if reactor.still_waiting(*key, self.direction, cx.waker()) {
            Poll::Pending
        } else {
            self.armed = false;
            Poll::Ready(Ok(()))
        }
    }
}
// ANCHOR_END: readiness

impl<T: AsSource> Drop for Readiness<'_, T> {
    /// A future dropped while waiting (its task was dropped, or it lost a race against a
    /// timeout) takes its waker back, so an event arriving later wakes nobody. The interest
    /// may stay armed in the kernel; the event it produces finds no waker and is ignored.
    fn drop(&mut self) {
        if self.armed {
            let Registration { key, reactor, .. } = self.registration;
            reactor.forget_waker(*key, self.direction);
        }
    }
}
