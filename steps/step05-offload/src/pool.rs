//! A fixed pool of pool threads for CPU work, one per core.
//!
//! Jobs go through a channel; each pool thread takes the next job, runs it, and takes another.
//! [`Pool::run`] hands back an [`Offload`] future, so the task that offloaded the work waits
//! for it like for a socket: it steps aside, and the loop serves everybody else meanwhile.
//!
//! Production code would use a ready-made pool: `blocking` (step06), `tokio::task::
//! spawn_blocking`, or rayon for data parallelism. This one is the textbook version: a
//! `Mutex` around the receiving end, held only while taking a job.

use std::io;
use std::num::NonZeroUsize;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use crate::offload::{self, Offload};

/// Work for a pool thread: a closure that sends its own result (it owns a `Completer`).
type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads that run closures and send their results back as futures.
#[derive(Debug)]
pub struct Pool {
    jobs: SyncSender<Job>,
    threads: NonZeroUsize,
}

/// The pool's queue is full: the job was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Pool {
    /// A pool with one thread per core (`std::thread::available_parallelism`): fib is pure
    /// CPU, so more threads than cores would only take turns on them. `queue_for` says how
    /// many jobs may wait for a thread, for that many threads.
    ///
    /// # Errors
    ///
    /// When the OS refuses to start a thread.
    pub fn sized_to_cores(queue_for: impl FnOnce(usize) -> usize) -> io::Result<Pool> {
        // `available_parallelism` fails only where the OS cannot say (some sandboxes); one
        // thread still takes the CPU work off the loop.
        let threads = thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        Pool::new(threads, queue_for(threads.get()))
    }

    /// A pool of `threads` pool threads, where at most `queue` jobs wait for a thread.
    ///
    /// # Errors
    ///
    /// When the OS refuses to start a thread.
    pub fn new(threads: NonZeroUsize, queue: usize) -> io::Result<Pool> {
        // A bounded channel: the jobs waiting for a thread are its messages, so "the queue is
        // full" is "the channel is full", and `try_send` says so without waiting.
        let (jobs, queue) = mpsc::sync_channel::<Job>(queue);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.get() {
            let queue = Arc::clone(&queue);
            thread::Builder::new()
                .name(format!("pool-{i}"))
                .spawn(move || work(&queue))?;
        }
        Ok(Pool { jobs, threads })
    }

    /// How many pool threads the pool has.
    pub fn threads(&self) -> NonZeroUsize {
        self.threads
    }

    // ANCHOR: run
    /// Runs `work` on a pool thread; the future resolves to its result, its task woken by
    /// the pool thread. When the queue is full, the work is refused at once: [`Busy`].
    ///
    /// The future's output is an error only if `work` panics.
    ///
    /// # Errors
    ///
    /// [`Busy`] when `queue` jobs wait for a thread already.
    pub fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Offload<T>, Busy> {
        let (completer, offload) = offload::channel();
        match self
            .jobs
            .try_send(Box::new(move || completer.complete(work())))
        {
            Ok(()) => Ok(offload),
            Err(TrySendError::Full(_)) => Err(Busy),
            // Every pool thread has exited, which they do only when the pool is dropped (and
            // `self` is alive) or when a job panicked. The job comes back in the error and is
            // dropped with its completer, and the future reports the failure.
            Err(TrySendError::Disconnected(_)) => Ok(offload),
        }
    }
    // ANCHOR_END: run
}

/// A pool thread: take a job, run it, repeat, until the pool is dropped.
fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while taking a job, not while running it (the guard is a
        // temporary of this statement), so idle pool threads can take the next jobs meanwhile.
        // Poisoning cannot leave a `Receiver` inconsistent, so a poisoned lock is used as is.
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => job(),
            // The pool, and with it the sending side, is gone.
            Err(mpsc::RecvError) => return,
        }
    }
}
