//! Small socket helpers the steps share: which errors mean what, and reporting the ones that
//! deserve a word.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

/// How many connections wait, handshake done, for the server to accept them. std listens
/// with 128; a step busy computing a fib, or one that serves one connection at a time, can
/// have a thousand clients connecting meanwhile.
pub const LISTEN_BACKLOG: i32 = 1024;

/// The listening socket of every step (but step08, which needs one per core): bound to
/// `addr` with `SO_REUSEADDR` (a restarted server does not wait for its old connections'
/// `TIME_WAIT`), a backlog of [`LISTEN_BACKLOG`], and `TCP_NODELAY`, which every accepted
/// connection inherits.
///
/// Why `TCP_NODELAY` in every step: Nagle's algorithm holds a small write back while an
/// earlier one is not acknowledged, and a client may delay its acknowledgement by tens of
/// milliseconds. A step that answers in one write per batch of requests never meets it; one
/// whose answers come back from a pool after earlier answers went out (step08) would wait for
/// the client's delayed acknowledgement. The answers are batched by the servers themselves:
/// the kernel has nothing to add.
///
/// # Errors
///
/// When the address cannot be bound (in use, not local, no permission).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Windows' SO_REUSEADDR means something else (it lets another socket steal the port).
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

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

/// How long a connection closing after an error answer (a line too long, the idle timeout)
/// drains the client's input, at most, before it closes anyway. Closing with unread input
/// would reset the connection and could destroy the answer before the client reads it (see
/// the protocol's "closing" section); a client that reads its answers ends its input at once,
/// one that keeps sending is not waited for. (A graceful shutdown drains until the end of
/// `--grace` instead.)
pub const DRAIN_TIME: Duration = Duration::from_millis(100);

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
/// input in the middle of a write): nothing a server must report. (The clients use it the
/// other way round: the server closed or reset the connection.)
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

/// Reports an `accept` that failed for a reason that is neither transient nor a lack of
/// resources (`EPERM` from a firewall hook, `EPROTO`, an error a kernel adds later): a server
/// says so, pauses for [`ACCEPT_BACKOFF`] as for running out of descriptors, and goes on
/// serving the connections it has. Ending the server for it would end every client's service
/// for one client's failed handshake.
pub fn report_accept_error(step: &str, error: &io::Error) {
    report(step, "accepting a connection failed", error);
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
    report(step, "a connection failed", error);
}

/// Prints `step: what: error` on stderr, at most [`ERRORS_PER_SECOND`] lines a second.
fn report(step: &str, what: &str, error: &io::Error) {
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
        eprintln!("{step}: {what}: {error} (and {skipped} more errors not shown)");
    } else {
        eprintln!("{step}: {what}: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_connections_inherit_no_delay() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).expect("binding port 0");
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(
            accepted.nodelay().unwrap(),
            "TCP_NODELAY inherited from the listener"
        );
        drop(client);
    }

    #[test]
    fn the_client_leaving_is_not_an_error_worth_a_word() {
        assert!(is_client_gone(&io::ErrorKind::ConnectionReset.into()));
        assert!(is_client_gone(&io::ErrorKind::BrokenPipe.into()));
        assert!(!is_client_gone(&io::ErrorKind::PermissionDenied.into()));
        assert!(is_out_of_resources(&io::Error::from_raw_os_error(24)));
    }
}
