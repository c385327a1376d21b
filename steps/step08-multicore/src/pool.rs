//! The compute pool: pool threads that run CPU-heavy fib away from the rings, and post each result
//! back to the ring that asked for it, as a completion.
//!
//! A ring thread must never compute fib(40): for the 0.4 s it took, every connection of that
//! ring would wait (step07's limit). So the ring hands the job to this pool and goes on. When
//! a pool thread has the value, it does not touch the ring's data (nothing is shared with a
//! ring but the job queue): it sends the ring a message with `IORING_OP_MSG_RING`, submitted
//! on a small ring of its own, and the kernel posts it into the target ring's completion
//! queue. To the event loop, a finished fib is one more completion, with a `user_data` that
//! names the connection and the answer's place in line.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;

use io_uring::types::Fd;
use io_uring::{IoUring, opcode};
use shared::fib::fib;

/// One fib to compute, and where its completion goes.
#[derive(Debug)]
struct Job {
    n: u32,
    /// The low half of the completion's `user_data`: what the result is for.
    tag: u32,
    /// The asking ring's file descriptor (a duplicate: see [`PoolHandle::reply_to`]).
    reply_to: Arc<OwnedFd>,
}

/// The pool's threads, reachable through the [`PoolHandle`]s made by
/// [`handle`](Self::handle).
#[derive(Debug, Clone)]
pub struct Pool {
    jobs: Sender<Job>,
}

impl Pool {
    /// Starts `threads` compute threads.
    ///
    /// # Errors
    ///
    /// When a thread, or its messaging ring, cannot be created.
    pub fn start(threads: usize) -> io::Result<Pool> {
        let (jobs, queue) = mpsc::channel::<Job>();
        // The cold path: a lock around the queue's receiving end, taken by an idle pool
        // thread to wait for the next job. Jobs are rare and long; contention is not a
        // concern here.
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            // A ring of its own, only to send messages to the rings that asked.
            let messenger = IoUring::new(8)?;
            thread::Builder::new()
                .name(format!("pool-{i}"))
                .spawn(move || compute(&queue, messenger))?;
        }
        Ok(Pool { jobs })
    }

    /// A handle for one ring to send jobs with; the results come back to `ring_fd`.
    pub fn handle(&self, ring_fd: Arc<OwnedFd>) -> PoolHandle {
        PoolHandle {
            jobs: self.jobs.clone(),
            reply_to: ring_fd,
        }
    }
}

/// One ring's way into the pool: a sender of jobs, whose results come back to that ring.
#[derive(Debug)]
pub struct PoolHandle {
    jobs: Sender<Job>,
    /// A duplicate of the ring's file descriptor. Every job holds a reference, so the
    /// descriptor number stays this ring's until the last result has been posted: a result
    /// finishing after its ring shut down goes to that ring (where nobody reads it), never to
    /// whatever file reused the number.
    reply_to: Arc<OwnedFd>,
}

impl PoolHandle {
    /// Computes fib(n) on the pool; the result arrives on this ring as a completion whose
    /// `user_data` has `tag` in its low 32 bits. fib(93) needs 64 bits, and a completion's
    /// `result` holds 32: the high half of the value travels in the high half of
    /// `user_data` (see [`fib_value`]).
    pub fn fib(&self, n: u32, tag: u32) {
        let job = Job {
            n,
            tag,
            reply_to: Arc::clone(&self.reply_to),
        };
        // Sending fails only once every pool thread has exited, which they never do: each
        // one loops for as long as the process lives.
        let _ = self.jobs.send(job);
    }
}

// ANCHOR: compute
/// A pool thread: wait for a job, compute, post the result to the asking ring, repeat.
fn compute(queue: &Mutex<Receiver<Job>>, mut messenger: IoUring) {
    loop {
        // The lock is held only while waiting for a job, released before computing.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            // A pool thread panicked while waiting: impossible (recv does not panic), and
            // fatal for the pool anyway.
            Err(_) => return,
        };
        let Ok(job) = job else {
            return; // every PoolHandle is gone: the server has shut down
        };
        let value = fib(std::hint::black_box(job.n));
        let (result, user_data) = fib_message(value, job.tag);
        let entry =
            opcode::MsgRingData::new(Fd(job.reply_to.as_raw_fd()), result, user_data, None).build();
        // SAFETY: the message points to no memory of ours; the target ring's descriptor is
        // kept open by `job.reply_to` until `post` has waited for the message's completion.
        let _ = unsafe { post(&mut messenger, &entry) };
    }
}
// ANCHOR_END: compute

/// Submits `entry` on `messenger` and waits for its completion.
///
/// # Safety
///
/// What `entry` points to must stay valid until this returns.
pub(crate) unsafe fn post(
    messenger: &mut IoUring,
    entry: &io_uring::squeue::Entry,
) -> io::Result<()> {
    // SAFETY: forwarded to our caller; the queue is empty (each post waits for its own
    // completion), so the push cannot fail for lack of room.
    unsafe { messenger.submission().push(entry) }
        .map_err(|_| io::Error::other("the messaging ring is full"))?;
    loop {
        match messenger.submit_and_wait(1) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            result => break result.map(drop)?,
        };
    }
    // The message's own completion says whether it was delivered; a ring that is gone is no
    // one's loss (its connections are gone too).
    messenger.completion().for_each(drop);
    Ok(())
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
