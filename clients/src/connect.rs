//! Opening connections to the server under test: each one with a deadline and a clear
//! error, and enough open files for all of them.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::ClientError;

/// How long one connect may take before the run fails.
///
/// Connecting to a local server takes microseconds, even to a step that will never serve
/// the connection: the kernel completes the handshake and queues it in the listen backlog.
/// Only a full backlog makes a connect wait (the kernel drops the handshake and retries after
/// 1 s, then 3 s, ...), and a client must not hang on that.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `addr` with a blocking connect, and turns Nagle's algorithm off.
///
/// Without `TCP_NODELAY` the kernel holds back a small write while an earlier one is not
/// yet acknowledged, and the server's delayed acknowledgement can then add tens of
/// milliseconds to a request: the client would measure its own socket options.
///
/// # Errors
///
/// [`ClientError::Connect`] when nothing listens at `addr`, or it does not accept in time.
pub fn connect(addr: SocketAddr) -> Result<TcpStream, ClientError> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|error| ClientError::Connect { addr, error })?;
    stream
        .set_nodelay(true)
        .map_err(|error| ClientError::Connect { addr, error })?;
    Ok(stream)
}

/// Open files a client needs beyond one per connection: stdin, stdout, stderr, the poll, and
/// a margin for what the standard library and a results-table runner open on the side.
pub const RESERVED_FILES: u64 = 32;

/// Raises this process's open-file limit (the soft `RLIMIT_NOFILE`) so that `conns`
/// connections fit, as far as the hard limit allows.
///
/// Each connection is a file descriptor, and the usual soft limit is 1024: a thousand idle
/// connections would otherwise fail half-way with "too many open files". Raising the soft
/// limit up to the hard one needs no privilege.
///
/// # Errors
///
/// [`ClientError::FileLimit`] when even the hard limit is too low, before anything is opened,
/// rather than an `EMFILE` error after hundreds of connections. If the limit cannot be read
/// (no such limit on this system), nothing is checked: a connect then fails with its own
/// clear error.
pub fn ensure_file_limit(conns: usize) -> Result<(), ClientError> {
    // usize -> u64 cannot lose anything on the 32- and 64-bit targets Rust supports.
    let needed = (conns as u64).saturating_add(RESERVED_FILES);
    match rlimit::increase_nofile_limit(needed) {
        Ok(limit) if limit < needed => Err(ClientError::FileLimit {
            conns,
            needed,
            limit,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_connections_fit_within_any_limit() {
        ensure_file_limit(10).expect("every system allows 42 open files");
    }

    #[cfg(unix)]
    #[test]
    fn more_connections_than_the_hard_limit_are_refused_up_front() {
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("a Unix has the limit");
        if hard == rlimit::INFINITY {
            return;
        }
        // Which conns is above the limit depends on the machine; a huge one always is.
        let conns = usize::try_from(hard).unwrap_or(usize::MAX - 64);
        let error = ensure_file_limit(conns).expect_err("above the hard limit");
        assert!(matches!(error, ClientError::FileLimit { limit, .. } if limit <= hard));
    }
}
