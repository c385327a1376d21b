//! Small socket helpers the steps share: which errors mean what, and reporting the ones that
//! deserve a word.

use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether an `accept` failed because this process (EMFILE) or the whole system (ENFILE) has
/// no file descriptors left.
///
/// The listener stays readable while connections wait in its backlog, so a server that simply
/// retries would spin at 100% CPU. Every step instead pauses accepting for
/// [`ACCEPT_BACKOFF`] and keeps serving the connections it has; one of them closing frees a
/// descriptor.
pub fn is_out_of_fds(error: &io::Error) -> bool {
    // 24 and 23 are EMFILE and ENFILE on Linux and macOS alike.
    matches!(error.raw_os_error(), Some(24) | Some(23))
}

/// How long a step stops accepting after running out of file descriptors.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Whether an `accept` error concerns only the one connection being accepted (it was reset
/// or aborted while waiting in the backlog, or a signal interrupted the call): skip it and
/// accept the next.
pub fn is_transient_accept_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Whether accepting failed for lack of a resource that closing connections gives back:
/// file descriptors (EMFILE, ENFILE), or kernel memory to register one more socket with the
/// poller (ENOMEM, or ENOSPC for the per-user limit of epoll registrations, ENOBUFS). Like
/// running out of descriptors, the cure is to pause accepting and serve the connections
/// there are.
pub fn is_out_of_resources(error: &io::Error) -> bool {
    is_out_of_fds(error)
        || matches!(
            error.kind(),
            io::ErrorKind::OutOfMemory | io::ErrorKind::StorageFull
        )
        // ENOBUFS: the socket layer could not allocate memory.
        || error.raw_os_error() == Some(105)
}

/// Whether `error` is only the client leaving rudely (a reset, a broken pipe, an end of
/// input in the middle of a write): nothing a server must report.
pub fn is_client_gone(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

/// How many connection errors [`report_connection_error`] prints a second at most.
pub const ERRORS_PER_SECOND: u32 = 5;

/// The window [`report_connection_error`] counts in: its start and how many it printed.
static REPORTED: Mutex<Option<(Instant, u32, u64)>> = Mutex::new(None);

/// Reports on stderr that serving a connection failed, as a server should: a broken step
/// then fails with a word rather than silently. The client leaving rudely is not reported
/// ([`is_client_gone`]). At most [`ERRORS_PER_SECOND`] lines a second are printed, so a flood
/// of failing clients cannot flood the terminal; the next line printed says how many were
/// left out.
pub fn report_connection_error(step: &str, error: &io::Error) {
    if is_client_gone(error) {
        return;
    }
    let now = Instant::now();
    let mut reported = REPORTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (start, printed, skipped) = reported.get_or_insert((now, 0, 0));
    if now.duration_since(*start) >= Duration::from_secs(1) {
        (*start, *printed) = (now, 0);
    }
    if *printed >= ERRORS_PER_SECOND {
        *skipped += 1;
        return;
    }
    *printed += 1;
    let skipped = std::mem::take(skipped);
    drop(reported);
    if skipped > 0 {
        eprintln!("{step}: a connection failed: {error} (and {skipped} more not shown)");
    } else {
        eprintln!("{step}: a connection failed: {error}");
    }
}
