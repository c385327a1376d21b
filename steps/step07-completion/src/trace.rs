//! What `--trace` calls a completion's `result`: a count, or a negative errno, named.
//!
//! A completion carries what the system call would have returned: bytes, a file descriptor,
//! or `-errno`. The trace shows the errno by its name (`-ECANCELED`), as a C programmer reads
//! it in the kernel's documentation, for the few that the loop expects and acts on; any other
//! as the system's message. Only `--trace` calls these: nothing here runs otherwise.

use std::io;

/// A negative `result` by its name: `-ECANCELED`, or the system's message for the rest.
pub fn errno(result: i32) -> String {
    let name = match -result {
        libc::ECANCELED => "ECANCELED",
        libc::ENOENT => "ENOENT",
        libc::EALREADY => "EALREADY",
        libc::ETIME => "ETIME",
        libc::ENOBUFS => "ENOBUFS",
        libc::ECONNRESET => "ECONNRESET",
        libc::EPIPE => "EPIPE",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        _ => return io::Error::from_raw_os_error(-result).to_string(),
    };
    format!("-{name}")
}

/// What a cancellation's `result` says. One that cancels every operation on a socket
/// (`by_socket`, `IORING_ASYNC_CANCEL_ALL`) counts what it cancelled; one that names an
/// operation by its `user_data` found it (0) or not.
pub fn cancelled(result: i32, by_socket: bool) -> String {
    match result {
        0 if by_socket => "found nothing".to_string(),
        0 => "found it".to_string(),
        1.. => count(result as usize, "operation") + " cancelled",
        _ if result == -libc::ENOENT => "-ENOENT: found nothing (it was completing)".to_string(),
        _ if result == -libc::EALREADY => "-EALREADY: found it running, ending".to_string(),
        _ => errno(result),
    }
}

/// `1 completion`, `2 completions`: `count` and `what`, plural when it is not one.
pub fn count(count: usize, what: &str) -> String {
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {what}{plural}")
}
