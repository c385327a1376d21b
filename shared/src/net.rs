//! Small socket helpers the steps share.

use std::io;
use std::time::Duration;

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
