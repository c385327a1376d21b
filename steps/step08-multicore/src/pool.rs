//! The compute pool: pool threads that run CPU-heavy fib away from the rings, and post each
//! result back to the ring that asked for it, as a completion.
//!
//! A ring thread must never compute fib(40): for the 0.3 s it takes, every connection of that
//! ring would wait (step07's limit). So the ring hands the job to this pool and goes on. When
//! a pool thread has the value, it does not touch the ring's data (nothing is shared with a
//! ring but the job queue): it sends the ring a message with `IORING_OP_MSG_RING`, through a
//! [`Messenger`] of its own, and the kernel posts it into the target ring's completion queue.
//! To the event loop, a finished fib is one more completion, with a `user_data` that names
//! the connection and the answer's place in line.
//!
//! The queue is bounded (`--queue`, by default 4 jobs per pool thread beyond the running
//! ones): a job that finds it full is refused at once, and the connection answers
//! `error: busy` in its place, rather than make a client wait behind minutes of work.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::thread;

use shared::trace::traced_fib;
use step07::messenger::Messenger;

use crate::token::Token;

/// One fib to compute, and where its completion goes.
#[derive(Debug)]
struct Job {
    n: u32,
    /// The low half of the completion's `user_data`: what the result is for.
    tag: u32,
    /// The asking ring's descriptor (see [`PoolHandle::reply_to`]).
    reply_to: Weak<OwnedFd>,
    /// The asking ring's number (its thread is `ring-N`), for `--trace`.
    ring: usize,
    /// The asking connection's jobs.
    jobs: Arc<ConnectionJobs>,
}

/// One connection's jobs on the pool, shared by the connection and its jobs.
///
/// A connection that closes abandons them: nobody would read their answers, and a vanished
/// client's requests must not keep the pool busy for others. The jobs not started yet give
/// their places in the pool back at once, and are answered uncomputed when a pool thread
/// takes them; each job's place is given back exactly once, by whichever of the two claims
/// it first.
#[derive(Debug, Default)]
pub struct ConnectionJobs {
    /// Jobs of this connection on the pool's queue, not started yet.
    queued: AtomicUsize,
    /// The connection has closed.
    abandoned: AtomicBool,
}

/// How many jobs the pool holds (waiting or running), and how many it may.
#[derive(Debug)]
struct Load {
    jobs: AtomicUsize,
    limit: usize,
    threads: usize,
}

/// The pool's threads, reachable through the [`PoolHandle`]s made by
/// [`handle`](Self::handle).
#[derive(Debug, Clone)]
pub struct Pool {
    jobs: Sender<Job>,
    load: Arc<Load>,
}

/// The queue of the pool was full: the job was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Pool {
    /// Starts `threads` pool threads, which take up to `queue` jobs waiting beyond the ones
    /// they run.
    ///
    /// # Errors
    ///
    /// When a thread, or its messenger's ring, cannot be created.
    pub fn start(threads: usize, queue: usize) -> io::Result<Pool> {
        let (jobs, waiting) = mpsc::channel::<Job>();
        // The cold path: a lock around the queue's receiving end, taken by an idle pool
        // thread to wait for the next job. Jobs are rare and long; contention is not a
        // concern here.
        let waiting = Arc::new(Mutex::new(waiting));
        let load = Arc::new(Load {
            jobs: AtomicUsize::new(0),
            limit: threads.saturating_add(queue),
            threads,
        });
        for i in 0..threads {
            let (waiting, load) = (Arc::clone(&waiting), Arc::clone(&load));
            // Made now, not when a result is ready: a pool thread must always be able to
            // answer, even once the process has run out of descriptors.
            let messenger = Messenger::new()?;
            thread::Builder::new()
                .name(format!("pool-{i}"))
                .spawn(move || compute(&waiting, &load, messenger))?;
        }
        Ok(Pool { jobs, load })
    }

    /// A handle for ring number `ring` to send jobs with; the results come back to
    /// `ring_fd`.
    pub fn handle(&self, ring: usize, ring_fd: &Arc<OwnedFd>) -> PoolHandle {
        PoolHandle {
            jobs: self.jobs.clone(),
            load: Arc::clone(&self.load),
            reply_to: Arc::downgrade(ring_fd),
            ring,
        }
    }
}

/// One ring's way into the pool: a sender of jobs, whose results come back to that ring.
#[derive(Debug)]
pub struct PoolHandle {
    jobs: Sender<Job>,
    load: Arc<Load>,
    /// The ring's descriptor, a duplicate owned by its event loop. A result is posted only
    /// while the loop holds it: until then the number is that ring's, and a result finishing
    /// after the loop has ended goes nowhere (never to whatever file reuses the number).
    reply_to: Weak<OwnedFd>,
    /// The ring's number, for `--trace`.
    ring: usize,
}

impl PoolHandle {
    /// Computes fib(n) on the pool, unless its queue is full: the result arrives on this
    /// ring as a completion whose `user_data` has `tag` in its low 32 bits. fib(93) needs 64
    /// bits, and a completion's `result` holds 32: the high half of the value travels in the
    /// high half of `user_data` (see [`fib_value`]).
    ///
    /// # Errors
    ///
    /// [`Busy`] when the pool holds as many jobs as it may: its threads are all computing
    /// and `--queue` jobs wait. The job is not taken.
    ///
    /// `jobs` are the asking connection's (see [`abandon`](Self::abandon)).
    pub fn fib(&self, n: u32, tag: u32, jobs: &Arc<ConnectionJobs>) -> Result<(), Busy> {
        let limit = self.load.limit;
        (self.load.jobs)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |jobs| {
                (jobs < limit).then_some(jobs + 1)
            })
            .map_err(|_| {
                tracing::trace!("conn {}: fib({n}) refused: the pool is full", conn(tag));
                Busy
            })?;
        jobs.queued.fetch_add(1, Ordering::AcqRel);
        let job = Job {
            n,
            tag,
            reply_to: self.reply_to.clone(),
            ring: self.ring,
            jobs: Arc::clone(jobs),
        };
        // Before the job leaves: a pool thread may start on it at once.
        tracing::trace!("conn {}: fib({n}) to the pool", conn(tag));
        // Sending fails only once every pool thread has exited, which they never do: each
        // one loops for as long as the process lives.
        let _ = self.jobs.send(job);
        Ok(())
    }

    /// How many pool threads compute.
    pub fn threads(&self) -> usize {
        self.load.threads
    }

    /// The connection whose `jobs` these are has closed: its jobs not started yet give their
    /// places in the pool back now, and are not computed. Their completions still come, at
    /// once (the connection waits for them before it may leave its slab).
    pub fn abandon(&self, jobs: &ConnectionJobs) {
        jobs.abandoned.store(true, Ordering::Release);
        let released = jobs.queued.swap(0, Ordering::AcqRel);
        self.load.jobs.fetch_sub(released, Ordering::AcqRel);
    }
}

// ANCHOR: compute
/// A pool thread: wait for a job, compute, post the result to the asking ring, repeat.
fn compute(waiting: &Mutex<Receiver<Job>>, load: &Load, mut messenger: Messenger) {
    loop {
        // The lock is held only while waiting for a job, released before computing.
        let job = match waiting.lock() {
            Ok(waiting) => waiting.recv(),
            // A pool thread panicked while waiting: impossible (recv does not panic), and
            // fatal for the pool anyway.
            Err(_) => return,
        };
        let Ok(job) = job else {
            return; // every PoolHandle is gone: the server has shut down
        };
        // Started: unless `abandon` has given its place back already, it is this thread's
        // to give back once done.
        let ours = (job.jobs.queued)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                queued.checked_sub(1)
            })
            .is_ok();
        let value = if job.jobs.abandoned.load(Ordering::Acquire) {
            0 // nobody reads it
        } else {
            traced_fib(job.n)
        };
        if ours {
            // Done: a place in the pool is free for the next job.
            load.jobs.fetch_sub(1, Ordering::AcqRel);
        }
        let (result, user_data) = fib_message(value, job.tag);
        trace_posting(&job);
        // Delivered, however many tries it takes, unless the ring is gone: its connection
        // waits for this answer, and its shutdown for that connection.
        messenger.post(&job.reply_to, result, user_data);
    }
}
// ANCHOR_END: compute

/// `--trace`: the answer to `job` is posted back to its ring, before it is (once posted, the
/// ring may handle it before this thread says anything more).
fn trace_posting(job: &Job) {
    let (ring, n, conn) = (job.ring, job.n, conn(job.tag));
    if job.jobs.abandoned.load(Ordering::Acquire) {
        tracing::trace!("msg_ring to ring-{ring}: fib({n}) for conn {conn}, which has closed");
    } else {
        tracing::trace!("msg_ring to ring-{ring}: fib({n}) for conn {conn}");
    }
}

/// `--trace`: the connection a job's `tag` names (its ring's slab key).
fn conn(tag: u32) -> usize {
    match Token::from(u64::from(tag)) {
        Token::Fib { key, .. } => key,
        token => unreachable!("a job's tag is a Token::Fib (`Connection::offload`), not {token:?}"),
    }
}

/// The `result` and `user_data` of the completion that carries fib's `value` and `tag`.
pub(crate) fn fib_message(value: u64, tag: u32) -> (i32, u64) {
    (value as u32 as i32, (value >> 32 << 32) | u64::from(tag))
}

/// Reassembles a fib value posted by the pool from its completion's `result` (the low 32
/// bits) and `user_data` (the high 32 bits, above the tag).
pub fn fib_value(result: i32, user_data: u64) -> u64 {
    (user_data >> 32 << 32) | u64::from(result as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of one thread with a queue of one, the ring its answers go to, and that ring's
    /// handle on it. The pool and the ring must outlive the handle's jobs: keep all three.
    fn one_thread_and_a_queue_of_one() -> (Pool, io_uring::IoUring, PoolHandle) {
        let pool = Pool::start(1, 1).expect("a pool");
        let ring = io_uring::IoUring::new(8).expect("a ring");
        let fd = Arc::new(
            std::os::fd::AsFd::as_fd(&ring)
                .try_clone_to_owned()
                .expect("dup"),
        );
        let handle = pool.handle(0, &fd);
        (pool, ring, handle)
    }

    #[test]
    fn a_full_queue_refuses_the_next_job() {
        // One thread and a queue of one: two jobs are taken, the third is busy. fib(35)
        // (tens of milliseconds) keeps the thread long enough for the test to be done first.
        let (_pool, _ring, handle) = one_thread_and_a_queue_of_one();
        let jobs = Arc::new(ConnectionJobs::default());
        assert_eq!(handle.fib(35, 1, &jobs), Ok(()));
        assert_eq!(handle.fib(35, 2, &jobs), Ok(()));
        assert_eq!(handle.fib(35, 3, &jobs), Err(Busy));
    }

    #[test]
    fn abandoned_jobs_give_their_places_back_at_once() {
        let (_pool, _ring, handle) = one_thread_and_a_queue_of_one();
        let (gone, next) = (Arc::default(), Arc::default());
        assert_eq!(handle.fib(35, 1, &gone), Ok(()));
        assert_eq!(handle.fib(35, 2, &gone), Ok(()));
        assert_eq!(handle.fib(35, 3, &next), Err(Busy));
        // The first may be running already; the second has not started, and goes.
        handle.abandon(&gone);
        assert_eq!(handle.fib(35, 3, &next), Ok(()));
    }
}
