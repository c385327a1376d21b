//! What the test binaries of this step share: starting the server (in this process, or as
//! a child process when a test needs a descriptor table or a limit of its own) and talking
//! to it in raw bytes.

// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
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

/// Reads exactly `len` bytes and returns them as text.
pub fn read_exactly(mut stream: &TcpStream, len: usize) -> String {
    let mut bytes = vec![0; len];
    stream.read_exact(&mut bytes).expect("the server answers");
    String::from_utf8(bytes).expect("answers are ASCII")
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

/// Raises this process's soft limit on open files to its hard limit (children inherit it)
/// and returns the new limit.
pub fn raise_fd_limit() -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we pass, which lives for the whole call.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(
        got, 0,
        "getrlimit(RLIMIT_NOFILE) cannot fail with a valid pointer"
    );
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit only reads the rlimit we pass; raising the soft limit up to the hard
    // limit is always permitted.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(
        set, 0,
        "raising the soft limit to the hard limit is always permitted"
    );
    limit.rlim_cur
}

/// The step03 binary serving in a child process; killed when dropped.
pub struct ChildServer {
    child: Child,
    pub addr: SocketAddr,
}

impl ChildServer {
    /// Starts the step03 binary on a free port, with at most `nofile` open files if given.
    pub fn start(nofile: Option<u64>) -> ChildServer {
        let exe = env!("CARGO_BIN_EXE_step03");
        let mut command = match nofile {
            // The shell lowers the limit for itself, then becomes the server.
            Some(nofile) => {
                let mut command = Command::new("sh");
                command.args([
                    "-c",
                    "ulimit -n \"$1\" && exec \"$0\" --addr 127.0.0.1:0",
                    exe,
                    &nofile.to_string(),
                ]);
                command
            }
            None => {
                let mut command = Command::new(exe);
                command.args(["--addr", "127.0.0.1:0"]);
                command
            }
        };
        let mut child = command
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

    /// CPU time the child has used so far, in clock ticks (user + system), where `/proc`
    /// tells.
    pub fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // The command name (field 2) may hold spaces; utime and stime are fields 14 and 15
        // of the whole line, the 12th and 13th after the name's closing parenthesis.
        let after_name = &stat[stat.rfind(')')? + 2..];
        let mut fields = after_name.split_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        Some(utime + stime)
    }

    /// Resident memory of the child in KiB, where `/proc` tells.
    pub fn resident_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
