//! What the integration tests share: start the server in-process, connect, raise the
//! open-file limit. Timeouts are safety nets for a stuck server, never assertions.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use shared::Server as _;

/// How long a test waits for an answer that should come in microseconds.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Starts step05 on a free loopback port, serving on its own thread until the test ends.
pub fn start() -> SocketAddr {
    let server = step05::Server::bind(&shared::Config::ephemeral(), &Default::default())
        .expect("binding port 0 on loopback");
    let addr = shared::Server::local_addr(&server);
    thread::spawn(move || server.run());
    addr
}

/// A blocking connection with a safety-net read timeout.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connecting to the server under test");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("setting a timeout on a fresh socket");
    stream
}

/// Reads one line, without its `\n`.
pub fn read_line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    let read = reader.read_line(&mut line).expect("reading an answer");
    assert!(
        read > 0,
        "the server closed the connection instead of answering"
    );
    assert_eq!(line.pop(), Some('\n'), "an answer ends with a newline");
    line
}

/// Sends `n` and reads its answer, on a connection with no other answer pending.
pub fn ask(mut stream: &TcpStream, n: u32) -> String {
    stream
        .write_all(format!("{n}\n").as_bytes())
        .expect("writing a request");
    // Nothing else is in flight, so this reader cannot read past the answer and lose bytes.
    read_line(&mut BufReader::new(stream))
}

/// The answer the protocol expects for `n`.
pub fn expected(n: u32) -> String {
    shared::fib::fib(n).to_string()
}

/// Raises the soft limit on open files to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    let hard = fd_limit().rlim_max;
    set_soft_fd_limit(hard);
    hard
}

/// Sets the soft limit on open files; returns the previous one.
pub fn set_soft_fd_limit(soft: u64) -> u64 {
    let mut limit = fd_limit();
    let previous = limit.rlim_cur;
    limit.rlim_cur = soft;
    // SAFETY: setrlimit only reads the rlimit we pass; a soft limit at or below the hard
    // limit is always permitted.
    let status = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(status, 0, "setting the open-file limit");
    previous
}

fn fd_limit() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we pass, which lives for the whole call.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(status, 0, "reading the open-file limit");
    limit
}

/// The server binary running as a child process on a free port; killed when dropped.
#[derive(Debug)]
pub struct ChildServer {
    child: Child,
    pub addr: SocketAddr,
}

impl ChildServer {
    /// Starts `binary` (`env!("CARGO_BIN_EXE_step05")`) on port 0 and reads the address it
    /// reports on its first line of output.
    pub fn start(binary: &str) -> ChildServer {
        let mut child = Command::new(binary)
            .args(["--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the server binary");
        let stdout = child.stdout.take().expect("stdout was piped above");
        let line = read_line(&mut BufReader::new(stdout));
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the server: {line:?}"));
        ChildServer { child, addr }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
