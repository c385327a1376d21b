//! The memory column: open thousands of idle connections, read the step's resident memory
//! before and after, then check that every one of them still gets an answer.
//!
//! The difference in resident memory divided by the connections is what one idle
//! connection costs the server in user space: a thread's stack pages for step02, a buffer
//! and a task for the event loops, ring buffers for io_uring. (The kernel's socket buffers
//! are not in the process's resident memory, and are the same for every step.)

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::process::StepProcess;

/// How long one connect may take. On loopback a connect completes at once unless the
/// server's listen backlog is full, which means it is not accepting: then stop opening.
const CONNECT_PATIENCE: Duration = Duration::from_secs(2);

/// What the idle load measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdleRun {
    /// Connections asked for.
    pub wanted: usize,
    /// Connections opened.
    pub opened: usize,
    /// Connections that answered a request after all were open.
    pub answered: usize,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    /// Why fewer connections were opened than wanted.
    pub error: Option<String>,
}

impl IdleRun {
    /// KiB of resident memory per connection, when every connection was opened and
    /// answered and `/proc` told the memory.
    pub fn kib_per_connection(&self) -> Option<f64> {
        if self.opened != self.wanted || self.answered != self.opened || self.opened == 0 {
            return None;
        }
        let grown = self.rss_after_kib?.saturating_sub(self.rss_before_kib?);
        Some(grown as f64 / self.opened as f64)
    }

    /// Whether some connection never got an answer.
    pub fn starved(&self) -> bool {
        self.answered < self.opened
    }
}

/// Opens `wanted` connections to `step`, lets them sit, measures memory, then asks one
/// request on each.
pub fn measure_idle(step: &StepProcess, wanted: usize) -> IdleRun {
    let rss_before_kib = step.resident_kib();
    let mut connections = Vec::with_capacity(wanted);
    let mut error = None;
    for _ in 0..wanted {
        match TcpStream::connect_timeout(&step.addr, CONNECT_PATIENCE) {
            Ok(stream) => connections.push(stream),
            Err(e) => {
                error = Some(format!(
                    "opened {} of {wanted} connections, then: {e}",
                    connections.len()
                ));
                break;
            }
        }
    }
    // Give an event loop a moment to accept the last connections before reading its
    // memory; then the request on each one makes sure it was accepted and served.
    thread::sleep(Duration::from_millis(500));
    let answered = ask_each(&connections);
    let rss_after_kib = step.resident_kib();
    IdleRun {
        wanted,
        opened: connections.len(),
        answered,
        rss_before_kib,
        rss_after_kib,
        error,
    }
}

/// Sends `1\n` on every connection, then reads the answers in order, waiting at most a few
/// seconds for the whole lot (plus a millisecond per connection). Returns how many
/// answered. A step that serves one connection at a time answers the first and starves
/// the rest; the deadline turns that into a count instead of a hang.
fn ask_each(connections: &[TcpStream]) -> usize {
    for mut connection in connections {
        if connection.write_all(b"1\n").is_err() {
            break;
        }
    }
    let deadline =
        Instant::now() + Duration::from_secs(5) + Duration::from_millis(connections.len() as u64);
    let mut answered = 0;
    for mut connection in connections {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        if connection
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .is_err()
        {
            break;
        }
        let mut answer = [0u8; 2];
        match connection.read_exact(&mut answer) {
            Ok(()) if &answer == b"1\n" => answered += 1,
            Ok(()) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => break,
        }
    }
    answered
}
