//! Ctrl-C and SIGTERM, as a completion: the signal thread posts a message to the ring.
//!
//! `shared::shutdown` calls our callback on a thread of its own when the first signal
//! arrives. That thread must not touch the ring's queues, so it posts the ring a message
//! ([`Messenger`]), and the request to shut down arrives in the ring's completion queue like
//! everything else: the loop's own thread begins the shutdown between two completions.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Mutex, PoisonError, Weak};

use crate::messenger::Messenger;

/// Posts a completion with its `user_data` to each of `rings` when SIGINT or SIGTERM
/// arrives (at once, if one came already). A ring that is gone by then is skipped, and so is
/// one not enabled yet: its owner checks [`shared::shutdown::requested`] once it has
/// enabled it (the signal is flagged before any message is posted, so either the message or
/// the check sees it).
///
/// The messenger's ring is made here, now, rather than when the signal comes: by then the
/// process may be out of file descriptors (a busy server may well be), and a signal that
/// could not make its ring could only exit without draining.
///
/// # Errors
///
/// When the messenger's ring cannot be set up.
pub fn notify_on_signal(rings: Vec<(Weak<OwnedFd>, u64)>) -> io::Result<()> {
    // The callback is called once, but through `&self`: the messenger it uses goes in a lock.
    let messenger = Mutex::new(Messenger::new()?);
    shared::shutdown::on_signal(move || {
        let mut messenger = messenger.lock().unwrap_or_else(PoisonError::into_inner);
        let to = || crate::trace::count(rings.len(), "ring");
        tracing::trace!("msg_ring to {}: shut down gracefully", to());
        for (ring, user_data) in &rings {
            messenger.post_if_enabled(ring, 0, *user_data);
        }
    });
    Ok(())
}
