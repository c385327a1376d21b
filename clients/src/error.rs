//! Everything that ends a load run early.
//!
//! Each variant prints as one line without the program name, so the binaries can prefix
//! `fast: ` or `slow: ` and a results-table runner can put the same text in its own output.

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// Why a run of the fast or slow client failed.
///
/// A server that answers nothing is not an error: that is a measurement (zero answers,
/// "starved" connections). Nor is a server that closes a connection: that ends the run, and
/// the report says so ([`Ended::ServerClosed`](crate::report::Ended::ServerClosed)). An error
/// is something that makes the measurement meaningless.
#[derive(Debug)]
pub enum ClientError {
    /// The configuration cannot be run (zero connections, an `n` whose fib does not fit in
    /// 64 bits).
    Config(String),
    /// Nothing accepted the connection at `addr`.
    Connect {
        /// Where the client tried to connect.
        addr: SocketAddr,
        /// What the OS said.
        error: io::Error,
    },
    /// The server answered `error: <message>` instead of a number.
    ServerError {
        /// The `n` the client asked for.
        request: u32,
        /// The server's reason, after `error: `.
        message: String,
    },
    /// The server answered a number, or something else, that is not `fib(request)`.
    WrongAnswer {
        /// The `n` the client asked for.
        request: u32,
        /// `fib(request)`.
        expected: u64,
        /// The line the server sent, without its `\n` (invalid UTF-8 replaced).
        got: String,
    },
    /// The server sent more answers than the client sent requests.
    ExtraAnswer {
        /// Which connection, counted from 1.
        connection: usize,
    },
    /// The open-file limit is too low for the connections asked for, and this process may
    /// not raise it far enough.
    FileLimit {
        /// Connections asked for.
        conns: usize,
        /// Open files they need, with a few for the client itself.
        needed: u64,
        /// The most this process may have open.
        limit: u64,
    },
    /// Reading or writing a connection failed for another reason.
    Io {
        /// Which connection, counted from 1.
        connection: usize,
        /// What the OS said.
        error: io::Error,
    },
    /// The event loop could not be set up or polled (out of file descriptors, usually).
    Poll(io::Error),
}

impl ClientError {
    /// The error for an I/O failure on a connection, other than the server closing it (see
    /// [`closed_by_peer`]).
    pub(crate) fn io(error: io::Error, connection: usize) -> ClientError {
        ClientError::Io { connection, error }
    }

    /// The error for an answer line that is not the expected one: the server's own message if
    /// it is an `error: ...` line, otherwise what it sent instead of `expected`.
    pub(crate) fn from_bad_answer(request: u32, expected: u64, line: &[u8]) -> ClientError {
        let text = String::from_utf8_lossy(line);
        match text.strip_prefix("error: ") {
            Some(message) => ClientError::ServerError {
                request,
                message: message.to_owned(),
            },
            None => ClientError::WrongAnswer {
                request,
                expected,
                got: text.into_owned(),
            },
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Config(message) => f.write_str(message),
            ClientError::Connect { addr, error } => {
                write!(f, "cannot connect to {addr}: {}", describe(error))?;
                match error.kind() {
                    io::ErrorKind::ConnectionRefused => {
                        f.write_str(" (is a step running? try: cargo run -p step01)")
                    }
                    io::ErrorKind::TimedOut => {
                        f.write_str(" (the server does not accept: is its backlog full?)")
                    }
                    _ => Ok(()),
                }
            }
            // `escape_debug` keeps the message on one line whatever the server sent.
            ClientError::ServerError { request, message } => write!(
                f,
                "the server answered the request {request} with an error: {}",
                message.escape_debug()
            ),
            ClientError::WrongAnswer {
                request,
                expected,
                got,
            } => write!(
                f,
                "wrong answer to the request {request}: expected {expected}, got \"{}\"",
                got.escape_debug()
            ),
            ClientError::ExtraAnswer { connection } => write!(
                f,
                "the server sent more answers than requests on connection {connection}"
            ),
            ClientError::FileLimit {
                conns,
                needed,
                limit,
            } => write!(
                f,
                "{conns} connections need about {needed} open files, but this process may \
                 open at most {limit} (its hard limit): ask for fewer, or raise the hard \
                 limit (as root: `ulimit -Hn {needed}`, or /etc/security/limits.conf)"
            ),
            ClientError::Io { connection, error } => {
                write!(f, "connection {connection}: {}", describe(error))
            }
            ClientError::Poll(error) => {
                write!(f, "cannot poll the connections: {}", describe(error))
            }
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Connect { error, .. }
            | ClientError::Io { error, .. }
            | ClientError::Poll(error) => Some(error),
            _ => None,
        }
    }
}

/// Whether `error` means the server closed or reset the connection: a reset, an abort, a
/// broken pipe (the servers' [`shared::net::is_client_gone`], from this side). The run ends
/// with a report saying so, not with an error.
pub(crate) fn closed_by_peer(error: &io::Error) -> bool {
    shared::net::is_client_gone(error)
}

/// The OS error in plain lower-case words, without the `(os error 111)` a user cannot act on.
fn describe(error: &io::Error) -> String {
    #[cfg(unix)]
    if error.raw_os_error() == Some(libc::EMFILE) {
        return "too many open files (the open-file limit, `ulimit -n`, is too low)".into();
    }
    let words = match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out",
        io::ErrorKind::AddrNotAvailable => "address not available",
        io::ErrorKind::PermissionDenied => "permission denied",
        io::ErrorKind::HostUnreachable => "host unreachable",
        io::ErrorKind::NetworkUnreachable => "network unreachable",
        // Keep the promise of one line even for an unusual OS message.
        _ => return error.to_string().replace('\n', " "),
    };
    words.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 25000))
    }

    #[test]
    fn connection_refused_reads_like_the_handbook() {
        let error = ClientError::Connect {
            addr: addr(),
            error: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(
            error.to_string(),
            "cannot connect to 127.0.0.1:25000: connection refused \
             (is a step running? try: cargo run -p step01)"
        );
    }

    #[test]
    fn an_error_line_becomes_the_servers_message() {
        let error = ClientError::from_bad_answer(50, 12586269025, b"error: n must be at most 45");
        assert!(matches!(
            &error,
            ClientError::ServerError { request: 50, message } if message == "n must be at most 45"
        ));
        assert_eq!(
            error.to_string(),
            "the server answered the request 50 with an error: n must be at most 45"
        );
    }

    #[test]
    fn a_wrong_number_names_both_values_on_one_line() {
        let error = ClientError::from_bad_answer(10, 55, b"56\r\x00");
        assert_eq!(
            error.to_string(),
            "wrong answer to the request 10: expected 55, got \"56\\r\\0\""
        );
    }

    #[test]
    fn a_reset_is_the_server_closing_not_an_error() {
        assert!(closed_by_peer(&io::Error::from(
            io::ErrorKind::ConnectionReset
        )));
        assert!(closed_by_peer(&io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(!closed_by_peer(&io::Error::from(io::ErrorKind::TimedOut)));
    }

    #[test]
    fn a_low_file_limit_says_what_to_do() {
        let error = ClientError::FileLimit {
            conns: 5000,
            needed: 5032,
            limit: 1024,
        };
        let text = error.to_string();
        assert!(text.starts_with("5000 connections need about 5032 open files, but "));
        assert!(
            text.contains("at most 1024") && text.contains("ulimit -Hn 5032"),
            "{text}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn too_many_open_files_names_the_limit() {
        let error = ClientError::Connect {
            addr: addr(),
            error: io::Error::from_raw_os_error(libc::EMFILE),
        };
        assert_eq!(
            error.to_string(),
            "cannot connect to 127.0.0.1:25000: too many open files \
             (the open-file limit, `ulimit -n`, is too low)"
        );
    }

    #[test]
    fn no_message_spans_two_lines() {
        let errors = [
            ClientError::FileLimit {
                conns: 1,
                needed: 2,
                limit: 3,
            },
            ClientError::from_bad_answer(1, 1, b"error: two\nlines"),
            ClientError::from_bad_answer(1, 1, b"two\nlines"),
            ClientError::Io {
                connection: 1,
                error: io::Error::other("odd\nerror"),
            },
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.contains('\n'), "{text}");
        }
    }
}
