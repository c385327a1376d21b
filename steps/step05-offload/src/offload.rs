//! The offload future: how a value computed on another thread gets back to a task.
//!
//! A oneshot channel, the smallest there is: a slot behind a `Mutex`, shared by the task
//! (which polls an [`Offload`]) and the pool thread (which holds the [`Completer`]). The
//! task, finding the slot empty, leaves its [`Waker`] there; the pool thread fills the slot and
//! calls the waker. That call happens on the pool thread, which is why step04's wakers
//! are `Send + Sync` and interrupt the reactor's wait: the loop may be asleep in
//! `epoll_wait` when the answer is ready.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// A new channel: the completer goes to the thread that computes, the future to the task
/// that waits.
pub fn channel<T>() -> (Completer<T>, Offload<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
        completer_gone: false,
    }));
    (
        Completer {
            slot: Arc::clone(&slot),
        },
        Offload { slot },
    )
}

/// What the two sides share.
#[derive(Debug)]
struct Slot<T> {
    value: Option<T>,
    /// The waiting task, once it has been polled and found no value.
    waker: Option<Waker>,
    /// The completer has been dropped: no value will come if there is none now.
    completer_gone: bool,
}

/// Resolves to the value the [`Completer`] sends, woken from whichever thread sends it.
///
/// # Errors
///
/// Its output is an error if the completer is dropped without a value: the work panicked
/// on its thread. The task then learns it at once rather than waiting forever.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Offload<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

// ANCHOR: offload
impl<T> Future for Offload<T> {
    type Output = io::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let mut slot = lock(&self.slot);
        if let Some(value) = slot.value.take() {
            return Poll::Ready(Ok(value));
        }
        if slot.completer_gone {
            return Poll::Ready(Err(io::Error::other(
                "the work panicked on its thread and sent no value",
            )));
        }
        // Not done yet (or a spurious wakeup): make sure the latest waker is the one called.
        // The check and the store happen under the lock the pool thread takes to send, so the
        // pool thread either sees this waker or has sent the value we would have seen above.
        match &mut slot.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}
// ANCHOR_END: offload

/// The sending side, held by the thread doing the work.
#[derive(Debug)]
pub struct Completer<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T> Completer<T> {
    /// Sends `value` to the [`Offload`] and wakes its task.
    pub fn complete(self, value: T) {
        lock(&self.slot).value = Some(value);
        // Dropping `self` now wakes the task.
    }
}

impl<T> Drop for Completer<T> {
    /// Wakes the waiting task, whether a value was sent or not (the work panicked): either
    /// way there is something for it to see.
    fn drop(&mut self) {
        let waker = {
            let mut slot = lock(&self.slot);
            slot.completer_gone = true;
            slot.waker.take()
        };
        // Called after the lock is released: waking takes the executor's run-queue lock and
        // writes to the reactor's eventfd, no need to hold ours meanwhile.
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

fn lock<T>(slot: &Mutex<Slot<T>>) -> MutexGuard<'_, Slot<T>> {
    // Poisoned only if a thread panicked while holding the lock, and no code above can panic
    // while holding it: the slot is always consistent.
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}
