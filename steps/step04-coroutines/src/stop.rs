//! Stopping work: the shutdown signal every task can wait for, and the count of connections a
//! shutdown waits for.
//!
//! On readiness, stopping a task in the middle of a wait is dropping the future it waits on:
//! the reactor takes the task's waker back (see `Readiness`'s `Drop`), the kernel holds
//! nothing of ours, and the socket is ours to use or close at once. So a connection waits
//! for its next request, its idle deadline and the server's shutdown at once
//! ([`race`]), and whichever comes first, the other two futures are simply dropped.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The server's shutdown signal: set once, from any thread (the signal's), it wakes every
/// task waiting for it.
#[derive(Debug)]
pub struct Stop {
    stopped: AtomicBool,
    grace: Duration,
    /// When the grace period ends, once stopped.
    deadline: Mutex<Option<Instant>>,
    /// The tasks waiting, by the id of their [`Stopped`] future.
    waiting: Mutex<HashMap<usize, Waker>>,
    next_id: AtomicUsize,
}

impl Stop {
    /// A signal not set yet; a shutdown lets the connections finish for `grace`.
    pub fn new(grace: Duration) -> Arc<Stop> {
        Arc::new(Stop {
            stopped: AtomicBool::new(false),
            grace,
            deadline: Mutex::new(None),
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicUsize::new(0),
        })
    }

    /// Sets the signal and wakes every waiting task (from the signal's thread, a wake from
    /// another thread: it interrupts the reactor's wait).
    pub fn set(&self) {
        *lock(&self.deadline) = Some(Instant::now() + self.grace);
        self.stopped.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = lock(&self.waiting).drain().map(|(_, w)| w).collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether the signal is set.
    pub fn is_set(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// When the grace period ends (far in the future until the signal is set).
    pub fn deadline(&self) -> Instant {
        lock(&self.deadline).unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))
    }

    /// A future that completes once the signal is set.
    pub fn wait(self: &Arc<Self>) -> Stopped {
        Stopped {
            stop: Arc::clone(self),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            registered: None,
        }
    }
}

/// The future of [`Stop::wait`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Stopped {
    stop: Arc<Stop>,
    id: usize,
    /// The waker left with the signal, to leave it again only when the task changes.
    registered: Option<Waker>,
}

// ANCHOR: stop
impl Future for Stopped {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stop.is_set() {
            return Poll::Ready(());
        }
        if self
            .registered
            .as_ref()
            .is_none_or(|waker| !waker.will_wake(cx.waker()))
        {
            let waker = cx.waker().clone();
            lock(&self.stop.waiting).insert(self.id, waker.clone());
            self.registered = Some(waker);
            // Set between the check above and the insert: `set` may have drained the list
            // before our waker was in it.
            if self.stop.is_set() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}
// ANCHOR_END: stop

impl Drop for Stopped {
    /// A wait dropped early (its task finished, or something else came first) takes its
    /// waker back.
    fn drop(&mut self) {
        if self.registered.is_some() {
            lock(&self.stop.waiting).remove(&self.id);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one still holds valid data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ANCHOR: race
/// Which of three futures completed first.
#[derive(Debug)]
pub enum First<A, B, C> {
    A(A),
    B(B),
    C(C),
}

/// Polls three futures together and completes with the first to finish; the other two are
/// dropped unfinished. That drop is the cancellation: a future that is never polled again
/// does nothing more, and dropping it gives back whatever it had registered (a waker with
/// the reactor, a timer).
pub async fn race<A: Future, B: Future, C: Future>(
    a: A,
    b: B,
    c: C,
) -> First<A::Output, B::Output, C::Output> {
    let (mut a, mut b, mut c) = (std::pin::pin!(a), std::pin::pin!(b), std::pin::pin!(c));
    poll_fn(|cx| {
        if let Poll::Ready(output) = a.as_mut().poll(cx) {
            return Poll::Ready(First::A(output));
        }
        if let Poll::Ready(output) = b.as_mut().poll(cx) {
            return Poll::Ready(First::B(output));
        }
        c.as_mut().poll(cx).map(First::C)
    })
    .await
}
// ANCHOR_END: race

/// The connections being served, counted, so that a shutdown can wait for the last one.
#[derive(Debug, Default)]
pub struct Connections {
    open: Cell<usize>,
    /// Closed since the shutdown began.
    closed: Cell<usize>,
    /// The task waiting for the count to reach zero.
    waiting: RefCell<Option<Waker>>,
}

impl Connections {
    /// Counts one more connection until the returned guard is dropped (when its task ends).
    pub fn enter(self: &Rc<Self>) -> Open {
        self.open.set(self.open.get() + 1);
        Open(Rc::clone(self))
    }

    /// How many are open.
    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// How many have closed since [`all_closed`](Self::all_closed) was first awaited.
    pub fn closed(&self) -> usize {
        self.closed.get()
    }

    /// Completes when no connection is open any more.
    pub async fn all_closed(&self) {
        self.closed.set(0);
        poll_fn(|cx| {
            if self.open.get() == 0 {
                return Poll::Ready(());
            }
            *self.waiting.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }
}

/// One open connection of [`Connections`].
#[derive(Debug)]
pub struct Open(Rc<Connections>);

impl Drop for Open {
    fn drop(&mut self) {
        let connections = &self.0;
        connections.open.set(connections.open.get() - 1);
        connections.closed.set(connections.closed.get() + 1);
        if connections.open.get() == 0 {
            if let Some(waker) = connections.waiting.borrow_mut().take() {
                waker.wake();
            }
        }
    }
}
