//! The reactor: the one place this thread waits, and the thing that turns "socket 7 is
//! readable" or "50 ms have passed" into "wake the task that was waiting for it".
//!
//! It wraps a [`Poller`] (epoll on Linux, kqueue on macOS). A task that finds its socket not
//! ready leaves its [`Waker`] here and sleeps; when the executor runs out of ready tasks it calls
//! [`Reactor::react`], which blocks in the poller until a socket becomes ready, the nearest
//! timer expires, or another thread interrupts the wait, and then wakes the tasks concerned.
//! The reactor never runs task code itself: waking only puts a task back in the executor's run
//! queue. That split (the reactor knows about file descriptors and time, the executor knows
//! about tasks) is the shape of every async runtime: tokio's driver, async-io's reactor.

use polling::AsSource;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use polling::{Event, Events, Poller};

use crate::registration::Registration;

thread_local! {
    /// The reactor of the [`block_on`](crate::executor::block_on) running on this thread.
    static CURRENT: RefCell<Option<Rc<Reactor>>> = const { RefCell::new(None) };
}

/// Waits for sockets and timers on behalf of tasks, and wakes the tasks when they are due.
///
/// One per thread, created by [`block_on`](crate::executor::block_on) and found by the
/// socket types of [`net`](crate::net) through [`Reactor::current`].
#[derive(Debug)]
pub struct Reactor {
    /// Shared with the wakers (through [`Notifier`]) so another thread can interrupt a wait.
    poller: Arc<Poller>,
    /// Where `wait` writes the events it found; kept to reuse its allocation.
    events: RefCell<Events>,
    /// For every registered socket (by key): the tasks waiting for it.
    sources: RefCell<HashMap<usize, Waiting>>,
    /// The key the next registered socket gets. Keys are never reused, so an event still in
    /// flight for a socket that has just been closed cannot wake whoever gets its number next.
    next_key: Cell<usize>,
    /// Pending timers, soonest first: `(deadline, id)` so two timers with the same deadline
    /// stay distinct.
    timers: RefCell<BTreeMap<(Instant, usize), Waker>>,
    next_timer_id: Cell<usize>,
}

/// The tasks waiting for one socket: at most one reader and one writer.
#[derive(Debug, Default)]
struct Waiting {
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// What the socket is, for `--trace`: "conn" (the default) or "listener".
    what: Option<&'static str>,
}

/// Which readiness a task waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The socket has bytes (or a connection, or end-of-stream, or an error) to read.
    Read,
    /// The socket has room for bytes to write (or an error).
    Write,
}

impl Waiting {
    fn slot(&mut self, direction: Direction) -> &mut Option<Waker> {
        match direction {
            Direction::Read => &mut self.reader,
            Direction::Write => &mut self.writer,
        }
    }
}

impl Reactor {
    /// A reactor with a fresh poller.
    ///
    /// # Errors
    ///
    /// When the OS refuses an epoll/kqueue instance (out of file descriptors).
    pub fn new() -> io::Result<Reactor> {
        Ok(Reactor {
            poller: Arc::new(Poller::new()?),
            events: RefCell::new(Events::new()),
            sources: RefCell::new(HashMap::new()),
            next_key: Cell::new(0),
            timers: RefCell::new(BTreeMap::new()),
            next_timer_id: Cell::new(0),
        })
    }

    /// The reactor of the `block_on` running on this thread.
    ///
    /// # Panics
    ///
    /// Outside [`block_on`](crate::executor::block_on): there is no reactor to wait with.
    pub fn current() -> Rc<Reactor> {
        CURRENT.with_borrow(|current| {
            current
                .clone()
                .expect("step04's sockets and timers work only inside executor::block_on")
        })
    }

    /// Makes `reactor` this thread's current one (or none).
    pub(crate) fn set_current(reactor: Option<Rc<Reactor>>) {
        CURRENT.set(reactor);
    }

    /// A handle with which any thread can interrupt [`react`](Self::react)'s wait.
    pub fn notifier(&self) -> Notifier {
        Notifier(Arc::clone(&self.poller))
    }

    /// Registers a non-blocking socket. The returned [`Registration`] owns it and removes it
    /// from the poller when dropped.
    ///
    /// # Errors
    ///
    /// When the kernel refuses one more registration (out of memory, or the per-user limit
    /// `/proc/sys/fs/epoll/max_user_watches`).
    pub fn register<T: AsSource>(self: &Rc<Self>, io: T) -> io::Result<Registration<T>> {
        let key = self.next_key.get();
        self.next_key.set(key + 1);
        // Registered with no interest yet: a task arms it when it has to wait (`Readiness`).
        //
        // SAFETY: `Poller::add` requires that the socket be deleted from the poller before it
        // is closed, or the poller could report events of a closed descriptor (or of whatever
        // file reuses its number) under our key. The socket moves into the `Registration`
        // built right below, which never gives it away, and whose `Drop` deletes it from the
        // poller before the socket field itself is dropped and closed (a struct's `Drop::drop`
        // runs before its fields are dropped). If `add` fails nothing was registered.
        unsafe { self.poller.add(&io.source(), Event::none(key))? };
        self.sources.borrow_mut().insert(key, Waiting::default());
        Ok(Registration::new(io, key, Rc::clone(self)))
    }

    /// Waits for events and wakes the tasks they concern: until a registered socket is
    /// ready, the nearest timer expires or [`Notifier::notify`] is called (`block`), or just
    /// collects what is ready already (`!block`, when tasks are waiting to run).
    ///
    /// # Errors
    ///
    /// When the poller itself fails, which leaves the thread unable to wait for anything.
    pub fn react(&self, block: bool) -> io::Result<()> {
        // ANCHOR: react
        let timeout = if block {
            // Sleep no longer than the nearest timer; `None`: no timer, sleep until an event.
            self.timers
                .borrow()
                .first_key_value()
                .map(|((deadline, _), _)| deadline.saturating_duration_since(Instant::now()))
        } else {
            Some(Duration::ZERO)
        };
        let mut events = self.events.borrow_mut();
        events.clear();
        {
            let _wait = tracing::trace_span!("wait", block).entered();
            self.poller.wait(&mut events, timeout)?;
        }
        if tracing::enabled!(tracing::Level::TRACE) {
            self.trace_events(&events, block);
        }

        // Waking a task only queues it in the executor; no task code runs in this function,
        // which is why it is fine to hold these borrows while waking.
        let mut sources = self.sources.borrow_mut();
        for event in events.iter() {
            // `None`: the socket was deregistered after the kernel reported the event.
            if let Some(waiting) = sources.get_mut(&event.key) {
                // Oneshot mode (polling's default) disarms the whole registration after one
                // event, read and write interest alike. So wake the reader *and* the writer:
                // each retries its operation, and one that still gets `WouldBlock` simply
                // waits again, which re-arms the interest it needs. Production reactors use
                // edge-triggered mode instead and save the re-arming syscall; oneshot is the
                // simplest to reason about: one arming, at most one event.
                for waker in [waiting.reader.take(), waiting.writer.take()]
                    .into_iter()
                    .flatten()
                {
                    crate::executor::waking_because(|| "the reactor", || waker.wake());
                }
            }
        }
        // ANCHOR_END: react

        let now = Instant::now();
        let mut timers = self.timers.borrow_mut();
        while let Some(entry) = timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let waker = entry.remove();
            crate::executor::waking_because(|| "a timer", || waker.wake());
        }
        Ok(())
    }

    /// `--trace`: what one wait brought, `epoll_wait → 2 events: conn 3 readable, listener 0
    /// readable`.
    fn trace_events(&self, events: &Events, block: bool) {
        let sources = self.sources.borrow();
        let described: Vec<String> = events
            .iter()
            .map(|event| {
                let what = sources
                    .get(&event.key)
                    .and_then(|waiting| waiting.what)
                    .unwrap_or("conn");
                let how = match (event.readable, event.writable) {
                    (true, true) => "readable and writable",
                    (true, false) => "readable",
                    (false, true) => "writable",
                    (false, false) => "ready",
                };
                format!("{what} {} {how}", event.key)
            })
            .collect();
        let wait = if block {
            "epoll_wait"
        } else {
            "epoll_wait (no waiting)"
        };
        match described.len() {
            0 if !block => {}
            0 => tracing::trace!("{wait} → nothing (a timer, or another thread woke the loop)"),
            n => tracing::trace!("{wait} → {n} event{}: {}", plural(n), described.join(", ")),
        }
    }

    /// Names the socket `key` for `--trace` ("listener").
    pub(crate) fn name(&self, key: usize, what: &'static str) {
        if let Some(waiting) = self.sources.borrow_mut().get_mut(&key) {
            waiting.what = Some(what);
        }
    }

    /// Arms interest in `direction` for the socket `key`, on behalf of the task of `waker`.
    pub(crate) fn arm(
        &self,
        key: usize,
        io: &impl AsSource,
        direction: Direction,
        waker: &Waker,
    ) -> io::Result<()> {
        let mut sources = self.sources.borrow_mut();
        let waiting = sources
            .get_mut(&key)
            .expect("a socket is registered for as long as its Registration lives");
        *waiting.slot(direction) = Some(waker.clone());
        tracing::trace!(
            "task {} waits to {} {} {key}: epoll_ctl arms it",
            crate::executor::current_task(),
            match direction {
                Direction::Read => "read",
                Direction::Write => "write",
            },
            waiting.what.unwrap_or("conn"),
        );
        // Ask for both directions if both have a waiting task: re-arming replaces the
        // previous interest rather than adding to it.
        let interest = Event::new(key, waiting.reader.is_some(), waiting.writer.is_some());
        self.poller.modify(io.source(), interest).inspect_err(|_| {
            *waiting.slot(direction) = None;
        })
    }

    /// Whether the task waiting in `direction` on `key` is still waiting (its waker is still
    /// here); if so, it is replaced by `waker`, the one the task is being polled with now.
    pub(crate) fn still_waiting(&self, key: usize, direction: Direction, waker: &Waker) -> bool {
        let mut sources = self.sources.borrow_mut();
        let Some(slot) = sources.get_mut(&key).map(|waiting| waiting.slot(direction)) else {
            return false;
        };
        match slot {
            // A task may be polled with a different waker than last time (a future moved to
            // another task); keep the latest so the right task is woken.
            Some(stored) => {
                if !stored.will_wake(waker) {
                    *stored = waker.clone();
                }
                true
            }
            None => false,
        }
    }

    /// Stops waiting in `direction` on `key`.
    pub(crate) fn forget_waker(&self, key: usize, direction: Direction) {
        if let Some(waiting) = self.sources.borrow_mut().get_mut(&key) {
            *waiting.slot(direction) = None;
        }
    }

    /// Removes a socket from the poller; called by `Registration::drop`.
    pub(crate) fn deregister(&self, key: usize, io: &impl AsSource) {
        // Any task still waiting on this socket is the one dropping it, so nothing is lost by
        // dropping the wakers. Deleting cannot fail for a socket that is registered; if it
        // did, the socket closes right after and the kernel forgets it anyway.
        self.sources.borrow_mut().remove(&key);
        let _ = self.poller.delete(io.source());
    }

    /// Adds a timer that wakes `waker` at `deadline`; returns its key for [`Self::remove_timer`].
    pub(crate) fn add_timer(&self, deadline: Instant, waker: Waker) -> (Instant, usize) {
        let id = self.next_timer_id.get();
        self.next_timer_id.set(id + 1);
        self.timers.borrow_mut().insert((deadline, id), waker);
        (deadline, id)
    }

    /// Replaces the waker of a pending timer (nothing happens if it has fired already).
    pub(crate) fn update_timer(&self, key: (Instant, usize), waker: &Waker) {
        if let Some(stored) = self.timers.borrow_mut().get_mut(&key) {
            if !stored.will_wake(waker) {
                *stored = waker.clone();
            }
        }
    }

    /// Cancels a timer (nothing happens if it has fired already).
    pub(crate) fn remove_timer(&self, key: (Instant, usize)) {
        self.timers.borrow_mut().remove(&key);
    }
}

/// Interrupts the reactor's wait from any thread: what a [`Waker`] called on another thread
/// uses so that the woken task does not sit in the run queue while its thread sleeps in
/// `epoll_wait`.
#[derive(Debug, Clone)]
pub struct Notifier(Arc<Poller>);

impl Notifier {
    /// Makes the current (or the next) [`Reactor::react`] return at once.
    pub fn notify(&self) {
        // The poller writes to an eventfd (a pipe on some systems) that it also waits on. That
        // write fails only if the counter is already huge, in which case the wait is already
        // interrupted: nothing to do about an error.
        let _ = self.0.notify();
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
