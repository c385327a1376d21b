//! Messages from other threads, as completions: `IORING_OP_MSG_RING`.
//!
//! A ring's queues belong to its loop's thread. Another thread (the signal thread here, the
//! compute pool in step08) that has something to say submits, on a small ring of its own, a
//! message to the target ring: the kernel posts it into the target's completion queue, with
//! the `result` and `user_data` the sender chose, and the target's loop handles it between
//! two completions like any other. No flag to poll, no lock, nothing on the hot path.
//!
//! Such a message is a shutdown request or a fib's answer: losing one would leave a ring
//! running or a connection waiting for ever. So a [`Messenger`] waits for the kernel's word
//! on each message, and tries again when the word is no.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Weak;
use std::thread;
use std::time::Duration;

use io_uring::types::Fd;
use io_uring::{IoUring, opcode};

/// How long a message that could not be delivered waits before it is tried again, at
/// first; the wait doubles with every failure, up to [`LONGEST_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(1);
const LONGEST_RETRY_WAIT: Duration = Duration::from_millis(100);

/// A small ring of its own, to post messages to other rings from one thread.
pub struct Messenger {
    ring: IoUring,
    /// How many messages this messenger has submitted: the number of the last one, which its
    /// completion on our ring carries back.
    sent: u64,
}

impl Messenger {
    /// Sets up the messenger's ring.
    ///
    /// # Errors
    ///
    /// When the ring cannot be set up (out of file descriptors, io_uring refused).
    pub fn new() -> io::Result<Messenger> {
        Ok(Messenger {
            ring: IoUring::new(8)?,
            sent: 0,
        })
    }

    /// Posts a completion with `result` and `user_data` into the ring whose descriptor
    /// `target` is, and returns once the kernel has delivered it: `true`, or `false` when
    /// the target is gone (its owner dropped the last strong reference: its loop has ended,
    /// and nobody would read the message).
    ///
    /// Delivery can fail for a while: the target's completion queue overflows (EOVERFLOW),
    /// the kernel is short of memory (ENOMEM), the target ring is not enabled yet (EBADFD:
    /// step08's rings start disabled), entering the kernel fails. Each failure is tried
    /// again after a pause that doubles up to `LONGEST_RETRY_WAIT`, for as long as the
    /// target lives.
    pub fn post(&mut self, target: &Weak<OwnedFd>, result: i32, user_data: u64) -> bool {
        self.post_until(target, result, user_data, |_| true)
    }

    /// [`post`](Self::post), except that a ring not enabled yet is not waited for: `false`.
    /// For a message whose target checks for itself, once enabled, what it may have missed
    /// (step08's rings look for a shutdown requested before they could hear of it), and
    /// whose sender must not wait for a ring that may never be enabled.
    pub fn post_if_enabled(&mut self, target: &Weak<OwnedFd>, result: i32, user_data: u64) -> bool {
        self.post_until(target, result, user_data, |error| {
            error.raw_os_error() != Some(libc::EBADFD)
        })
    }

    /// Posts, trying again after each failure that `again` says is worth another try.
    fn post_until(
        &mut self,
        target: &Weak<OwnedFd>,
        result: i32,
        user_data: u64,
        again: impl Fn(&io::Error) -> bool,
    ) -> bool {
        let mut wait = FIRST_RETRY_WAIT;
        loop {
            let Some(ring) = target.upgrade() else {
                return false;
            };
            match self.deliver(&ring, result, user_data) {
                Ok(()) => return true,
                Err(error) if !again(&error) => return false,
                Err(_) => {}
            }
            // Let go of the target while waiting: it may end meanwhile.
            drop(ring);
            thread::sleep(wait);
            wait = (wait * 2).min(LONGEST_RETRY_WAIT);
        }
    }

    /// Submits one message and waits for its own completion on our ring, which says whether
    /// the kernel delivered it.
    ///
    /// Its own: each message carries its number as `user_data` on our ring, and the wait
    /// ends only at the completion with that number. A completion left from an earlier
    /// message cannot end it, and a wait cut short (a signal) goes on waiting rather than
    /// return with the message still on its way, or still queued: submitted again, it would
    /// arrive twice.
    ///
    /// # Errors
    ///
    /// What the message's completion says when the kernel could not deliver it.
    fn deliver(&mut self, target: &OwnedFd, result: i32, user_data: u64) -> io::Result<()> {
        self.sent = self.sent.wrapping_add(1);
        let number = self.sent;
        let entry = opcode::MsgRingData::new(Fd(target.as_raw_fd()), result, user_data, None)
            .build()
            .user_data(number);
        // SAFETY: the message points to no memory of ours. It names the target by its
        // descriptor, which our caller keeps open until this returns, and this returns only
        // once the message's completion has come: the kernel is done with it.
        if unsafe { self.ring.submission().push(&entry) }.is_err() {
            // Cannot happen: each message leaves the queue before the next one is pushed.
            return Err(io::Error::other("the messenger's submission queue is full"));
        }
        let mut wait = FIRST_RETRY_WAIT;
        loop {
            // Submits the message if it is still queued, and waits for a completion.
            if let Err(error) = self.ring.submit_and_wait(1) {
                if error.kind() != io::ErrorKind::Interrupted {
                    thread::sleep(wait);
                    wait = (wait * 2).min(LONGEST_RETRY_WAIT);
                }
            }
            let ours = self
                .ring
                .completion()
                .find(|completion| completion.user_data() == number);
            if let Some(completion) = ours {
                return match completion.result() {
                    0.. => Ok(()),
                    error => Err(io::Error::from_raw_os_error(-error)),
                };
            }
        }
    }
}

impl std::fmt::Debug for Messenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messenger")
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::sync::Arc;

    use super::*;

    /// The completions waiting on `ring`, as (user_data, result).
    fn completions(ring: &mut IoUring) -> Vec<(u64, i32)> {
        ring.completion()
            .map(|completion| (completion.user_data(), completion.result()))
            .collect()
    }

    fn descriptor(ring: &IoUring) -> Arc<OwnedFd> {
        Arc::new(ring.as_fd().try_clone_to_owned().expect("dup"))
    }

    #[test]
    fn a_message_arrives_as_a_completion() {
        let mut target = IoUring::new(8).expect("a ring");
        let fd = descriptor(&target);
        let mut messenger = Messenger::new().expect("a messenger");
        assert!(messenger.post(&Arc::downgrade(&fd), 7, 42));
        assert!(messenger.post(&Arc::downgrade(&fd), -3, u64::MAX));
        assert_eq!(completions(&mut target), [(42, 7), (u64::MAX, -3)]);
    }

    #[test]
    fn a_message_that_cannot_be_delivered_yet_is_tried_again() {
        // A ring created disabled refuses messages (EBADFD) until it is enabled: here, by
        // another thread, a moment after the message was first tried.
        let target = IoUring::builder()
            .setup_r_disabled()
            .build(8)
            .expect("a ring");
        let fd = descriptor(&target);
        let enabler = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            target
                .submitter()
                .register_enable_rings()
                .expect("enabling");
            target
        });
        let mut messenger = Messenger::new().expect("a messenger");
        assert!(messenger.post(&Arc::downgrade(&fd), 1, 99));
        let mut target = enabler.join().expect("the enabler does not panic");
        assert_eq!(completions(&mut target), [(99, 1)]);
    }

    #[test]
    fn a_message_if_enabled_does_not_wait_for_a_ring_not_enabled() {
        let target = IoUring::builder()
            .setup_r_disabled()
            .build(8)
            .expect("a ring");
        let fd = descriptor(&target);
        let mut messenger = Messenger::new().expect("a messenger");
        assert!(!messenger.post_if_enabled(&Arc::downgrade(&fd), 1, 99));
    }

    #[test]
    fn a_message_to_a_ring_that_is_gone_is_dropped() {
        let target = IoUring::new(8).expect("a ring");
        let fd = descriptor(&target);
        let gone = Arc::downgrade(&fd);
        drop(fd);
        let mut messenger = Messenger::new().expect("a messenger");
        assert!(!messenger.post(&gone, 1, 1));
    }
}
