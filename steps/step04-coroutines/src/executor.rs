//! The executor: a run queue of tasks, and the loop that polls them.
//!
//! A task is a spawned future: one connection's `async fn`, boxed and kept until it finishes.
//! The executor polls a task only when it has been woken, so a thousand idle connections cost
//! nothing per turn. A task that cannot go on (its socket is not ready) returns `Pending`
//! after leaving a [`Waker`] with whoever will know when it can: the reactor for sockets and
//! timers, a pool thread in step05. Calling the waker puts the task back in the run queue.
//!
//! Everything here runs on one thread, so tasks need not be `Send` and the executor keeps
//! them in plain `RefCell`s. Only the waker crosses threads: it holds an `Arc` to a queue of
//! task ids behind a `Mutex`, and a [`Notifier`] to interrupt the reactor's wait.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, ThreadId};

use crate::reactor::{Notifier, Reactor};

thread_local! {
    /// The executor of the [`block_on`] running on this thread, for [`spawn`].
    static CURRENT: RefCell<Option<Rc<Executor>>> = const { RefCell::new(None) };
    /// The task being polled on this thread, for what `--trace` says about it.
    static POLLING: Cell<TaskId> = const { Cell::new(MAIN) };
    /// What is waking tasks on this thread right now (the reactor sets it), for `--trace`.
    static WAKING: Cell<Option<fn() -> &'static str>> = const { Cell::new(None) };
}

/// The task being polled on this thread (0, the main future, outside a task's poll): what
/// `--trace` names when a task arms a socket or a timer.
pub fn current_task() -> TaskId {
    POLLING.get()
}

/// Runs `wake` (which wakes tasks) saying, in `--trace`, what is waking them.
pub(crate) fn waking_because(cause: fn() -> &'static str, wake: impl FnOnce()) {
    WAKING.set(Some(cause));
    wake();
    WAKING.set(None);
}

/// A task's number. Numbers are never reused, so a late wake-up of a finished task cannot
/// run another one by mistake.
pub type TaskId = usize;

/// The id of the future passed to [`block_on`]; spawned tasks count up from 1.
const MAIN: TaskId = 0;

/// How many tasks the executor polls, at most, before it looks at the sockets again while
/// tasks are still ready to run.
///
/// Looking costs a wait on the poller (five system calls with `polling` on Linux) even when
/// nothing is in, so looking after every turn, as this executor once did, made a client that
/// asks again as soon as it has its answer pay a wait for nothing per request: after each
/// answer its task yields, is ready again at once, and the loop looked at the sockets before
/// running it. Tokio uses the same number for the same purpose (`event_interval`).
pub const EVENT_INTERVAL: usize = 61;

/// Runs `future` to completion on this thread, together with every task it [`spawn`]s;
/// returns its output. Tasks still unfinished at that point are dropped.
///
/// # Errors
///
/// When the reactor cannot be created (no file descriptor for the poller) or its wait fails.
///
/// # Panics
///
/// When called inside another `block_on` on the same thread, or when a task panics.
pub fn block_on<F: Future>(future: F) -> io::Result<F::Output> {
    let reactor = Rc::new(Reactor::new()?);
    let executor = Rc::new(Executor::new(reactor.notifier()));
    let _entered = Entered::new(&executor, &reactor);
    executor.run(&reactor, future)
}

/// Starts `future` as a new task of the executor running on this thread. It is polled on the
/// executor's next turn, after the current task has yielded (at an `.await` that waits), and
/// runs until it finishes or [`block_on`] returns.
///
/// # Panics
///
/// Outside [`block_on`]: there is no executor to run the task.
pub fn spawn(future: impl Future<Output = ()> + 'static) {
    CURRENT.with_borrow(|current| {
        current
            .as_ref()
            .expect("executor::spawn works only inside executor::block_on")
            .spawn(Box::pin(future));
    });
}

// ANCHOR: yield_now
/// Lets the other tasks run before this one goes on.
///
/// An `.await` gives the thread back only if the future it awaits is not ready. A task whose
/// every read finds data waiting never meets `Pending`, and keeps the thread for as long as
/// its client keeps sending; a task that wants to be fair says so with `yield_now().await`.
pub async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        // Back in the run queue at once: it runs again on the next turn, after the tasks
        // queued already and after the reactor has collected the events that came in.
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}
// ANCHOR_END: yield_now

/// The executor's state: the tasks, and the queue of those ready to run.
struct Executor {
    /// Every unfinished task, by id. `RefCell`: one thread, and a task may spawn another
    /// while it is being polled (it is taken out of the map for that).
    tasks: RefCell<HashMap<TaskId, Task>>,
    queue: Arc<RunQueue>,
    next_id: Cell<TaskId>,
}

/// A spawned future and the wake-up handle shared with its wakers.
struct Task {
    future: Pin<Box<dyn Future<Output = ()>>>,
    handle: Arc<TaskHandle>,
}

/// What a task's [`Waker`] points at: which task, and the queue to put it in.
///
/// `std::task::Wake` turns an `Arc` of this into a `Waker` with no unsafe code. The `Arc`
/// makes the waker `Send + Sync`, so a pool thread (step05) can wake a task.
struct TaskHandle {
    id: TaskId,
    /// Whether the task is in the run queue already: a task woken ten times before it runs
    /// (its socket became readable, then writable, ...) is queued, and polled, once.
    scheduled: AtomicBool,
    queue: Arc<RunQueue>,
}

impl Wake for TaskHandle {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if tracing::enabled!(tracing::Level::TRACE) {
            self.trace_wake();
        }
        self.schedule();
    }
}

impl TaskHandle {
    /// Puts the task in the run queue, unless it is there already.
    fn schedule(&self) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.queue.push(self.id);
        }
    }

    /// `--trace`: who woke this task: the reactor (it says which socket just before), a
    /// timer, another task, or another thread (a pool thread, the signal's).
    fn trace_wake(&self) {
        let id = self.id;
        if thread::current().id() != self.queue.owner {
            let thread = thread::current();
            let by = thread.name().unwrap_or("another thread");
            tracing::trace!("task {id} woken by {by}");
        } else if let Some(cause) = WAKING.get() {
            tracing::trace!("task {id} woken by {}", cause());
        } else if POLLING.get() == id {
            tracing::trace!("task {id} woke itself (it yields)");
        } else {
            tracing::trace!("task {id} woken by task {}", POLLING.get());
        }
    }
}

/// The ids of the tasks ready to run. Behind a `Mutex` because wakers may be called on any
/// thread.
struct RunQueue {
    ready: Mutex<Vec<TaskId>>,
    /// Interrupts the reactor's wait, for wakes that come from another thread.
    notifier: Notifier,
    /// The thread running the executor.
    owner: ThreadId,
}

impl RunQueue {
    fn push(&self, id: TaskId) {
        self.lock().push(id);
        // A wake on the executor's own thread happens while the loop is busy (a reactor
        // event, or one task waking another); the loop looks at the queue before it sleeps
        // again. A wake from another thread may come while the loop sleeps in the reactor's
        // `epoll_wait`, which must be interrupted, or the task would wait for some unrelated
        // event to come along. Pushing before notifying means the loop cannot miss it: it
        // either sees the id in the queue, or is woken by the notification.
        if thread::current().id() != self.owner {
            self.notifier.notify();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TaskId>> {
        // Poisoned only if a thread panicked while pushing an id onto a Vec; the Vec is
        // still a valid list of ids, so carry on with it.
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Executor {
    fn new(notifier: Notifier) -> Executor {
        Executor {
            tasks: RefCell::new(HashMap::new()),
            queue: Arc::new(RunQueue {
                ready: Mutex::new(Vec::new()),
                notifier,
                owner: thread::current().id(),
            }),
            next_id: Cell::new(MAIN + 1),
        }
    }

    fn handle(&self, id: TaskId) -> Arc<TaskHandle> {
        Arc::new(TaskHandle {
            id,
            scheduled: AtomicBool::new(false),
            queue: Arc::clone(&self.queue),
        })
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()>>>) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        tracing::trace!("task {id} spawned by task {}", POLLING.get());
        let handle = self.handle(id);
        // A new task is ready to run: its first poll starts it.
        handle.schedule();
        self.tasks.borrow_mut().insert(id, Task { future, handle });
    }

    // ANCHOR: run
    /// The loop: run the tasks that are ready, then let the reactor wait for more to become
    /// ready, until the main future finishes.
    fn run<F: Future>(&self, reactor: &Reactor, future: F) -> io::Result<F::Output> {
        let mut main = pin!(future);
        let main_handle = self.handle(MAIN);
        let main_waker = Waker::from(Arc::clone(&main_handle));
        main_handle.schedule();

        let mut batch = Vec::new();
        // Tasks polled since the reactor last looked at the sockets.
        let mut polled = 0;
        loop {
            // Take the tasks that are ready now and run each once. Tasks they wake go to the
            // next turn: a few busy tasks waking each other take turns with the rest.
            std::mem::swap(&mut batch, &mut *self.queue.lock());
            for id in batch.drain(..) {
                polled += 1;
                if id == MAIN {
                    main_handle.scheduled.store(false, Ordering::Release);
                    if let Poll::Ready(output) = poll_main(main.as_mut(), &main_waker) {
                        return Ok(output);
                    }
                } else {
                    self.run_task(id);
                }
            }
            // Nothing ready: sleep in the reactor until a socket, a timer or another thread
            // wakes a task.
            if self.queue.lock().is_empty() {
                reactor.react(true)?;
                polled = 0;
            } else if polled >= EVENT_INTERVAL {
                // Tasks are ready, but the sockets have not been looked at for a while: collect
                // the events that are in, so that busy tasks yielding to each other cannot keep
                // the ones waiting for I/O from ever being noticed.
                reactor.react(false)?;
                polled = 0;
            }
        }
    }
    // ANCHOR_END: run

    /// Polls task `id` once; drops it if it finished.
    fn run_task(&self, id: TaskId) {
        // Out of the map while it runs, so it can spawn tasks (which borrows the map).
        // `None`: the task finished already and this is a late wake-up, which is harmless.
        let Some(mut task) = self.tasks.borrow_mut().remove(&id) else {
            return;
        };
        // Cleared before polling: a wake-up during the poll must queue the task again.
        task.handle.scheduled.store(false, Ordering::Release);
        let waker = Waker::from(Arc::clone(&task.handle));
        let span = tracing::trace_span!("poll", task = id).entered();
        POLLING.set(id);
        let polled = task.future.as_mut().poll(&mut Context::from_waker(&waker));
        POLLING.set(MAIN);
        drop(span);
        match polled {
            // Finished: dropping the task drops its future's state: its sockets leave the
            // reactor and close. Wakers of it still held elsewhere only queue an id nobody has.
            Poll::Ready(()) => {
                tracing::trace!("task {id} polled: Ready, finished");
                drop(task);
            }
            Poll::Pending => {
                tracing::trace!("task {id} polled: Pending");
                self.tasks.borrow_mut().insert(id, task);
            }
        }
    }
}

/// Polls the main future (task 0) once, saying so for `--trace` as [`Executor::run_task`]
/// does for the others.
fn poll_main<F: Future>(main: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    let span = tracing::trace_span!("poll", task = MAIN).entered();
    let polled = main.poll(&mut Context::from_waker(waker));
    drop(span);
    match polled {
        Poll::Ready(_) => tracing::trace!("task {MAIN} polled: Ready, the server ends"),
        Poll::Pending => tracing::trace!("task {MAIN} polled: Pending"),
    }
    polled
}

/// While alive, makes the executor and the reactor this thread's current ones (for
/// [`spawn`] and the socket types), and resets them when `block_on` ends, even by a panic.
struct Entered;

impl Entered {
    fn new(executor: &Rc<Executor>, reactor: &Rc<Reactor>) -> Entered {
        assert!(
            CURRENT.with_borrow(Option::is_none),
            "executor::block_on cannot run inside another block_on on the same thread"
        );
        CURRENT.set(Some(Rc::clone(executor)));
        Reactor::set_current(Some(Rc::clone(reactor)));
        Entered
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.set(None);
        Reactor::set_current(None);
    }
}
