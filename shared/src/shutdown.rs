//! Ctrl-C and SIGTERM: how a step hears that it should stop, and what it says while it does.
//!
//! A signal handler may do almost nothing safely, so the `ctrlc` crate runs ours on a thread
//! of its own, woken by the signal. That thread calls every callback registered with
//! [`on_signal`]: each step's way of waking its own loop (a mio `Waker`, a task's waker, a
//! message to an io_uring). The loop then shuts down in its own style, and that is the
//! lesson: stop accepting, answer every request received, close each connection cleanly,
//! within `--grace`. A second signal exits at once, for when a client that never reads holds
//! the graceful shutdown up.
//!
//! step09 uses tokio's own signal handling instead, as production tokio code does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

/// A way to wake one server's loop.
type Callback = Box<dyn Fn() + Send>;

/// The callbacks of every server in this process that wants to hear about the signal.
static CALLBACKS: Mutex<Vec<Callback>> = Mutex::new(Vec::new());

/// Set by the first signal, before any callback runs.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Calls `callback`, on a thread of its own, when the first SIGINT or SIGTERM arrives; a
/// second one exits the process at once (status 130, as a shell reports an interrupt).
///
/// If a signal came before the callback was registered, the callback runs at once: a loop
/// that registers as it starts cannot miss a signal that came while it was being built.
///
/// The handler is installed once per process. If something else in the process installed
/// one first (a test binary running several steps), ours is not, and the signal keeps doing
/// what that one says; the callbacks then never run.
pub fn on_signal(callback: impl Fn() + Send + 'static) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(signalled);
    });
    // Checked under the lock that `signalled` takes after setting the flag: either the flag
    // is seen here, or the callback is in the list when `signalled` drains it.
    let mut callbacks = lock();
    if requested() {
        drop(callbacks);
        callback();
        return;
    }
    callbacks.push(Box::new(callback));
}

/// Whether a signal has asked for shutdown.
pub fn requested() -> bool {
    SIGNALLED.load(Ordering::SeqCst)
}

fn lock() -> std::sync::MutexGuard<'static, Vec<Callback>> {
    // A callback that panicked while the list was locked leaves a valid list.
    CALLBACKS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs on `ctrlc`'s thread, once per signal.
fn signalled() {
    if SIGNALLED.swap(true, Ordering::SeqCst) {
        eprintln!("second signal: exiting without waiting for the connections");
        std::process::exit(130);
    }
    for callback in lock().drain(..) {
        callback();
    }
}

/// What a step prints on stderr when it begins to shut down.
pub fn draining_message(step: &str, connections: usize, grace: Duration) -> String {
    format!(
        "{step}: shutting down: no new connections; draining {connections} connection{} \
         (at most {:.1} s; Ctrl-C again to stop at once)…",
        if connections == 1 { "" } else { "s" },
        grace.as_secs_f64()
    )
}

/// What a step prints on stderr when its shutdown is over: how many connections closed
/// cleanly, and how many the end of the grace period cut.
pub fn finished_message(step: &str, closed: usize, cut: usize) -> String {
    format!("{step}: {closed} closed, {cut} cut")
}

/// Counts connections through a shutdown, for [`finished_message`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// Connections that closed cleanly since the shutdown began.
    pub closed: usize,
}

impl Drain {
    /// Prints the [`draining_message`] and starts counting.
    pub fn begin(step: &str, connections: usize, grace: Duration) -> Drain {
        eprintln!("{}", draining_message(step, connections, grace));
        Drain::default()
    }

    /// One more connection closed cleanly.
    pub fn closed(&mut self) {
        self.closed += 1;
    }

    /// Prints the [`finished_message`]: `open` connections were still there at the end.
    pub fn finish(self, step: &str, open: usize) {
        eprintln!("{}", finished_message(step, self.closed, open));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_say_what_happens() {
        assert_eq!(
            draining_message("step03", 12, Duration::from_secs(10)),
            "step03: shutting down: no new connections; draining 12 connections (at most \
             10.0 s; Ctrl-C again to stop at once)…"
        );
        assert!(draining_message("step03", 1, Duration::ZERO).contains("1 connection ("));
        assert_eq!(
            finished_message("step07", 12, 0),
            "step07: 12 closed, 0 cut"
        );
    }
}
