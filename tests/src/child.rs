//! Running a step in a child process, for the checks that need a process of its own: a
//! lowered limit on open files (running out of descriptors), or a separate descriptor table
//! (10,000 connections need 10,000 descriptors on each side).
//!
//! The child is this same test binary, started again to run one test by exact name: the
//! suite's `child_process_entry` for that step, which serves only when the environment
//! variable [`STEP_VAR`] names its step. No separate server binary has to be built first.

use std::env;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::thread;

use shared::{Config, Server};

/// Names the step the child process must serve.
pub const STEP_VAR: &str = "CONFORMANCE_CHILD_STEP";
/// The child's soft limit on open files, when set.
pub const NOFILE_VAR: &str = "CONFORMANCE_CHILD_NOFILE";

/// The child's side: when this process was started to serve `step`, lower (or raise) its
/// open-file limit, start step `S`, print `listening on ADDR` and serve until killed.
/// In any other process it returns at once: it is the entry point of a child process, not a
/// check of its own.
pub fn child_entry<S: Server>(step: &str) {
    if env::var(STEP_VAR).as_deref() != Ok(step) {
        return;
    }
    if let Some(nofile) = env::var(NOFILE_VAR).ok().and_then(|v| v.parse().ok()) {
        set_fd_limit(nofile);
    }
    let server = S::bind(&Config::ephemeral(), &S::Options::default())
        .unwrap_or_else(|e| panic!("child {step}: cannot bind: {e}"));
    println!("listening on {}", server.local_addr());
    let _ = std::io::stdout().flush();
    if let Err(error) = server.run() {
        panic!("child {step}: the server stopped: {error}");
    }
}

#[cfg(unix)]
fn set_fd_limit(soft: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we pass, which lives for the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur = (soft as libc::rlim_t).min(limit.rlim_max);
        // SAFETY: setrlimit only reads the rlimit we pass; a soft limit at or below the hard
        // limit is always permitted.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
}

/// Windows has no per-process descriptor limit; `out_of_fds` does not run there.
#[cfg(not(unix))]
fn set_fd_limit(_soft: u64) {}

/// A step serving in a child process; killed when dropped.
#[derive(Debug)]
pub struct ChildServer {
    child: Child,
    /// Where the child listens.
    pub addr: SocketAddr,
}

impl ChildServer {
    /// Starts `step` (whose entry test is `STEP::child_process_entry` in this binary) in a
    /// child process, with its soft open-file limit set to `nofile` if given.
    ///
    /// # Panics
    ///
    /// When the child cannot be started or does not print its address.
    pub fn start(step: &str, nofile: Option<u64>) -> ChildServer {
        let exe = env::current_exe().expect("the test binary knows its own path");
        let mut command = Command::new(exe);
        command
            .args([
                &format!("{step}::child_process_entry"),
                "--exact",
                "--ignored",
            ])
            .args(["--nocapture", "--test-threads=1", "--quiet"])
            .env(STEP_VAR, step)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if let Some(nofile) = nofile {
            command.env(NOFILE_VAR, nofile.to_string());
        }
        let mut child = command.spawn().expect("starting the child server");
        let stdout = child.stdout.take().expect("stdout was piped");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        break addr.parse().expect("the child prints a socket address");
                    }
                }
                _ => {
                    let _ = child.kill();
                    panic!("the child server for {step} exited before printing its address");
                }
            }
        };
        // Keep draining the child's output so it never blocks on a full pipe.
        thread::spawn(move || lines.for_each(drop));
        ChildServer { child, addr }
    }

    /// CPU time the child has used so far, in clock ticks (user + system), where `/proc`
    /// tells; `None` elsewhere.
    pub fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // The command name (field 2) may hold spaces; the fields after its `)` are fixed:
        // utime and stime are fields 14 and 15 of the whole line.
        let after_name = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(utime + stime)
    }

    /// Resident memory of the child in KiB, where `/proc` tells.
    pub fn resident_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
