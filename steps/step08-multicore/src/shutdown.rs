//! Ctrl-C (SIGINT) and SIGTERM: tell every ring to shut down gracefully.
//!
//! A signal handler may do almost nothing safely, so the `ctrlc` crate runs ours on a thread
//! of its own, woken by the signal. That thread sends each ring a message
//! (`IORING_OP_MSG_RING`, like the compute pool's results): the shutdown request arrives in
//! the ring's completion queue like everything else, and the ring's own thread handles it
//! between two completions. No flag to poll, no lock on the hot path.
//!
//! A second Ctrl-C exits at once, for when a client that never reads holds the graceful
//! shutdown up.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};

use io_uring::types::Fd;
use io_uring::{IoUring, opcode};

use crate::pool::post;

/// Every ring that wants to hear about the signal, with the `user_data` to post to it. Weak,
/// so that a ring that has shut down is simply skipped.
static RINGS: Mutex<Vec<(Weak<OwnedFd>, u64)>> = Mutex::new(Vec::new());

/// Asks for a completion with `user_data` on the ring `ring_fd` when SIGINT or SIGTERM
/// arrives.
///
/// The handler is installed once per process. If something else in the process installed
/// one first (a test binary running several steps), ours is not, and the signal keeps doing
/// what that one says.
pub fn notify_on_signal(ring_fd: &Arc<OwnedFd>, user_data: u64) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(on_signal);
    });
    let mut rings = RINGS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    rings.retain(|(ring, _)| ring.strong_count() > 0);
    rings.push((Arc::downgrade(ring_fd), user_data));
}

/// Set by the first signal, before any ring is told.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Whether a signal has asked for shutdown. A ring that starts checks this once it can
/// receive messages: a message posted before then could not reach it.
pub fn requested() -> bool {
    SIGNALLED.load(Ordering::SeqCst)
}

/// Runs on `ctrlc`'s thread, once per signal.
fn on_signal() {
    if SIGNALLED.swap(true, Ordering::SeqCst) {
        eprintln!("second signal: exiting without waiting for clients");
        std::process::exit(130);
    }
    let rings: Vec<(Arc<OwnedFd>, u64)> = RINGS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .filter_map(|(ring, user_data)| Some((ring.upgrade()?, *user_data)))
        .collect();
    let Ok(mut messenger) = IoUring::new(8) else {
        // Cannot even make a small ring: stop the hard way rather than ignore the signal.
        std::process::exit(130);
    };
    for (ring, user_data) in rings {
        let entry = opcode::MsgRingData::new(Fd(ring.as_raw_fd()), 0, user_data, None).build();
        // SAFETY: the message points to no memory of ours; `ring` (a strong reference) keeps
        // the target descriptor open until `post` has waited for the message's completion.
        let _ = unsafe { post(&mut messenger, &entry) };
    }
}
