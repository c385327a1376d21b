//! The conformance suite's machinery: start a step, talk to it in raw bytes, check what the
//! protocol promises.
//!
//! The tests themselves are in `tests/conformance.rs`: one macro invocation per step turns
//! every check below into a `#[test]` for that step, so all steps are held to exactly the same
//! protocol. The checks speak plain blocking `std::net` so that nothing in the test shares
//! code with the server under test.
//!
//! Timeouts here are safety nets, never assertions: a check waits up to [`PATIENCE`] for an
//! answer that should come in microseconds, and only fails if it never comes.

pub mod bench;
pub mod checks;
pub mod child;
pub mod exercise;
pub mod trace;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use shared::{Config, Server};

/// How long a check waits for one answer before it declares the server stuck.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Starts step `S` in this process on a free loopback port and returns its address.
///
/// The server is bound on its own thread (a step need not be `Send`) and serves until the
/// test process exits.
///
/// # Panics
///
/// When the step cannot bind: every check needs a server.
pub fn start<S: Server + 'static>() -> SocketAddr {
    try_start::<S>().unwrap_or_else(|error| panic!("the step could not bind: {error}"))
}

/// [`start`] with the step's own options instead of their defaults (a number of threads,
/// say), for a step's tests of what those options change.
///
/// # Panics
///
/// When the step cannot bind: every check needs a server.
pub fn start_with<S: Server + 'static>(options: S::Options) -> SocketAddr {
    try_start_with::<S>(options).unwrap_or_else(|error| panic!("the step could not bind: {error}"))
}

/// [`start`] with command-line arguments, as a user would give them (`--idle-timeout 0.3`),
/// on a free loopback port.
///
/// # Panics
///
/// When the arguments do not parse or the step cannot bind.
pub fn start_args<S: Server + 'static>(args: &[&str]) -> SocketAddr {
    let (mut config, options) = shared::cli::parse::<S>(args.iter().map(|a| a.to_string()))
        .unwrap_or_else(|error| panic!("arguments {args:?}: {error}"));
    config.addr = Config::ephemeral().addr;
    try_start_configured::<S>(config, options)
        .unwrap_or_else(|error| panic!("the step could not bind: {error}"))
}

/// [`start`], returning the step's error when it cannot bind.
///
/// # Errors
///
/// What the step's `bind` returned.
pub fn try_start<S: Server + 'static>() -> io::Result<SocketAddr> {
    try_start_with::<S>(S::Options::default())
}

/// [`start_with`], returning the step's error when it cannot bind.
///
/// # Errors
///
/// What the step's `bind` returned.
pub fn try_start_with<S: Server + 'static>(options: S::Options) -> io::Result<SocketAddr> {
    try_start_configured::<S>(Config::ephemeral(), options)
}

/// Starts step `S` in this process with `config` and `options`; returns its address.
///
/// # Errors
///
/// What the step's `bind` returned.
pub fn try_start_configured<S: Server + 'static>(
    config: Config,
    options: S::Options,
) -> io::Result<SocketAddr> {
    let (bound, address) = mpsc::channel();
    thread::Builder::new()
        .name("server-under-test".into())
        .spawn(move || {
            let server = match S::bind(&config, &options) {
                Ok(server) => server,
                Err(error) => {
                    let _ = bound.send(Err(error));
                    return;
                }
            };
            let _ = bound.send(Ok(server.local_addr()));
            if let Err(error) = server.run() {
                panic!("the server under test stopped: {error}");
            }
        })
        .expect("spawning a thread at test start");
    address
        .recv()
        .expect("the server thread reports its address before anything else")
}

/// The own test of a step that needs io_uring (step07, step08): starts it and asks fib(10).
///
/// Where io_uring is refused (`unavailable` says so of the bind error), the suite's checks
/// would only say that the step could not bind; this says why, in a banner written past the
/// test harness's capture, and fails when `WORKBOOK_REQUIRE_IO_URING` is set (CI sets it, so
/// that a machine without io_uring cannot pass by skipping the step).
///
/// # Panics
///
/// When the step does not answer, or cannot bind for another reason.
pub fn io_uring_serves_a_request<S: Server + 'static>(
    step: &str,
    unavailable: fn(&io::Error) -> bool,
) {
    let addr = match try_start::<S>() {
        Ok(addr) => addr,
        Err(error) if unavailable(&error) => {
            let rule = "=".repeat(78);
            let _ = writeln!(
                io::stderr(),
                "\n{rule}\n  {step} NOT TESTED: {error}\n  (the conformance suite's {step}:: \
                 checks do not start either)\n{rule}\n"
            );
            if std::env::var_os("WORKBOOK_REQUIRE_IO_URING").is_some() {
                panic!("WORKBOOK_REQUIRE_IO_URING is set and io_uring is not available: {error}");
            }
            return;
        }
        Err(error) => panic!("{step} could not bind: {error}"),
    };
    assert_eq!(
        Client::connect(addr).ask("10"),
        "55",
        "{step} answers fib(10)"
    );
}

/// One client connection speaking the protocol, with a safety-net read timeout.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `addr`.
    ///
    /// # Panics
    ///
    /// When the connection is refused: the server under test is not listening.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream
            .set_read_timeout(Some(PATIENCE))
            .expect("setting a timeout on a fresh socket");
        // Every write goes out at once, so "one byte at a time" really is one segment a byte.
        stream
            .set_nodelay(true)
            .expect("setting TCP_NODELAY on a fresh socket");
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// The underlying socket.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// The buffered reader over the socket, for reading what is left by hand.
    pub fn reader_mut(&mut self) -> &mut BufReader<TcpStream> {
        &mut self.reader
    }

    /// Writes `bytes` in one `write_all`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.reader
            .get_mut()
            .write_all(bytes)
            .expect("writing a request");
    }

    /// Reads one answer line and returns it without its `\n`.
    ///
    /// # Panics
    ///
    /// When the server closes the connection or does not answer within [`PATIENCE`].
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("the server closed the connection instead of answering"),
            Ok(_) => {}
            Err(e) => panic!("no answer from the server: {e}"),
        }
        assert!(
            line.ends_with('\n'),
            "answer {line:?} does not end with a newline"
        );
        line.pop();
        line
    }

    /// Sends `request` (a `\n` is added) and returns the answer line.
    pub fn ask(&mut self, request: &str) -> String {
        self.send(format!("{request}\n").as_bytes());
        self.line()
    }

    /// Ends our side of the connection (the server sees end of input).
    pub fn half_close(&mut self) {
        self.stream()
            .shutdown(Shutdown::Write)
            .expect("shutting down the write side");
    }

    /// Reads until the server closes the connection and returns everything it sent.
    pub fn read_to_close(&mut self) -> String {
        let mut rest = String::new();
        self.reader
            .read_to_string(&mut rest)
            .unwrap_or_else(|e| panic!("waiting for the server to close: {e} (got {rest:?})"));
        rest
    }

    /// Whether an answer is already waiting to be read, without waiting for one.
    pub fn has_answer_waiting(&mut self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let stream = self.reader.get_ref();
        stream
            .set_nonblocking(true)
            .expect("switching to non-blocking");
        let mut byte = [0u8; 1];
        let waiting = match stream.peek(&mut byte) {
            Ok(n) => n > 0,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) => panic!("peeking at the connection: {e}"),
        };
        stream
            .set_nonblocking(false)
            .expect("switching back to blocking");
        waiting
    }

    /// Closes the connection with a reset (SO_LINGER 0) instead of a normal close: what a
    /// crashing client or a middlebox timing out looks like to the server.
    pub fn reset(self) {
        let stream = self.reader.into_inner();
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
}

/// The answer line the protocol expects for `fib(n)`.
pub fn expected(n: u32) -> String {
    shared::fib::fib(n).to_string()
}

/// Raises this process's soft limit on open files to its hard limit, for the checks that
/// open thousands of connections. Returns the new limit (`u64::MAX` where there is none to
/// raise, as on Windows).
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}
