//! What the test binaries of this step share: starting the server (in this process, or on
//! Linux as a child process whose memory a test can read) and talking to it in raw bytes.

// Each test binary compiles this module and uses only some of it: serving.rs the raw-byte
// helpers, backpressure.rs `ask`, `fib` and `ChildServer`. Every item has a user.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use shared::Server as _;

/// A safety net, not a measurement: a broken server fails the test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Starts step03 in this process on a free port and returns its address.
pub fn start() -> SocketAddr {
    let server = step03::Server::bind(&shared::Config::ephemeral(), &Default::default())
        .expect("binding to a free loopback port");
    let addr = shared::Server::local_addr(&server);
    thread::spawn(move || server.run());
    addr
}

/// Connects, with read and write timeouts as safety nets.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connecting to the server");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("a timeout of 60 s is valid");
    stream
        .set_write_timeout(Some(PATIENCE))
        .expect("a timeout of 60 s is valid");
    stream
}

/// Sends bytes (requests, whole or in pieces).
pub fn send(mut stream: &TcpStream, bytes: &[u8]) {
    stream
        .write_all(bytes)
        .expect("the server takes our requests");
}

/// Shuts down our writing side: the server sees the end of our requests.
pub fn half_close(stream: &TcpStream) {
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutting down a connected socket");
}

/// Reads until the server closes the connection and returns what came.
pub fn read_to_close(mut stream: &TcpStream) -> String {
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .expect("the server closes the connection");
    text
}

/// Sends one request and reads its one-line answer.
pub fn ask(mut stream: &TcpStream, n: u32) -> String {
    stream
        .write_all(format!("{n}\n").as_bytes())
        .expect("sending a request");
    let mut answer = String::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with('\n') {
        stream.read_exact(&mut byte).expect("the server answers");
        answer.push(char::from(byte[0]));
    }
    answer.pop();
    answer
}

/// fib(n) the quick way, to check answers against.
pub fn fib(n: u32) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        (a, b) = (b, a + b);
    }
    a
}

/// The step03 binary serving in a child process; killed when dropped. Linux only: its one
/// user reads the child's resident memory from `/proc`.
#[cfg(target_os = "linux")]
pub struct ChildServer {
    child: std::process::Child,
    pub addr: SocketAddr,
}

#[cfg(target_os = "linux")]
impl ChildServer {
    /// Starts the step03 binary on a free port.
    pub fn start() -> ChildServer {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let mut child = Command::new(env!("CARGO_BIN_EXE_step03"))
            .args(["--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the step03 binary");
        let stdout = child.stdout.take().expect("stdout was piped");
        let mut first_line = String::new();
        BufReader::new(stdout)
            .read_line(&mut first_line)
            .expect("reading the server's first line");
        let addr = first_line
            .trim_end()
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok());
        match addr {
            Some(addr) => ChildServer { child, addr },
            None => {
                let _ = child.kill();
                panic!("the server's first line is not `listening on ADDR`: {first_line:?}");
            }
        }
    }

    /// Resident memory of the child in KiB, where `/proc` tells.
    pub fn resident_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

#[cfg(target_os = "linux")]
impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
