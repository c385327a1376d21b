//! Opening a connection to the server under test.

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
