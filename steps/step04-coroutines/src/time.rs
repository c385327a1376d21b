//! Waiting for time to pass without blocking the thread: [`sleep`] and [`timeout`].
//!
//! The server needs them to pause accepting when file descriptors run out (without a timer it
//! would retry `accept` in a tight loop at 100% CPU), to bound how long it drains a client it
//! is closing on, and for the idle timeout of every connection. A timer is one more thing the reactor waits for: it
//! never sleeps past the nearest deadline, then wakes the tasks whose time has come.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::reactor::Reactor;

/// Completes after `duration`, letting other tasks run meanwhile.
///
/// # Panics
///
/// When polled outside [`block_on`](crate::executor::block_on).
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Some(Instant::now() + duration))
}

/// Completes at `deadline`, letting other tasks run meanwhile; never, when there is no
/// deadline (a connection without an idle timeout).
///
/// # Panics
///
/// When polled outside [`block_on`](crate::executor::block_on).
pub fn sleep_until(deadline: Option<Instant>) -> Sleep {
    Sleep {
        deadline,
        timer: None,
        reactor: None,
    }
}

/// Runs `future` for at most `duration`: `Some(output)` if it finished in time, `None` if the
/// time ran out first (and `future` is dropped unfinished).
///
/// One task waiting on two things at once: whichever of the two wakes it, both are polled
/// again, and the one that is not ready yet sees a spurious wakeup and keeps waiting.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut expired = pin!(sleep(duration));
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        expired.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// The future of [`sleep`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Option<Instant>,
    /// The reactor's key for our timer, once it has one.
    timer: Option<(Instant, usize)>,
    reactor: Option<Rc<Reactor>>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.deadline else {
            return Poll::Pending; // no deadline: never, and no timer to keep
        };
        // Trust the clock, not the wakeup: being polled says only "look again".
        if Instant::now() >= deadline {
            self.cancel();
            return Poll::Ready(());
        }
        let reactor = Rc::clone(self.reactor.get_or_insert_with(Reactor::current));
        match self.timer {
            // Polled again before the deadline: a spurious wakeup (the other half of a
            // `timeout` woke the task). Keep waiting, with the waker we were polled with now.
            Some(timer) => reactor.update_timer(timer, cx.waker()),
            // First poll: leave a timer with the reactor. It fires at or after the deadline
            // (it compares against a later clock reading than ours), so the next poll that
            // it causes finds the deadline passed.
            None => self.timer = Some(reactor.add_timer(deadline, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Sleep {
    fn cancel(&mut self) {
        if let (Some(timer), Some(reactor)) = (self.timer.take(), &self.reactor) {
            reactor.remove_timer(timer);
        }
    }
}

impl Drop for Sleep {
    /// A sleep dropped early (the other side of a [`timeout`] won) removes its timer, so the
    /// reactor does not wake a task for nothing, or keep the thread waiting for a dead timer.
    fn drop(&mut self) {
        self.cancel();
    }
}
