//! Running a step in a child process, for the checks that need a process of its own: a
//! lowered limit on open files (running out of descriptors), a separate descriptor table
//! (10,000 connections need 10,000 descriptors on each side), or signals (a graceful
//! shutdown ends the process).
//!
//! The child is this same test binary, started again to run one test by exact name: the
//! suite's `child_process_entry` for that step, which serves only when the environment
//! variable [`STEP_VAR`] names its step. No separate server binary has to be built first.

use std::env;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use shared::Server;

/// Names the step the child process must serve.
pub const STEP_VAR: &str = "CONFORMANCE_CHILD_STEP";
/// The child's soft limit on open files, when set.
pub const NOFILE_VAR: &str = "CONFORMANCE_CHILD_NOFILE";
/// The child's command-line arguments, one per line.
pub const ARGS_VAR: &str = "CONFORMANCE_CHILD_ARGS";

/// The child's side: when this process was started to serve `step`, lower (or raise) its
/// open-file limit, start step `S` with the arguments it was given, print `listening on
/// ADDR` and serve until the server stops (a graceful shutdown) or the process is killed.
/// In any other process it returns at once: it is the entry point of a child process, not a
/// check of its own.
pub fn child_entry<S: Server>(step: &str) {
    if env::var(STEP_VAR).as_deref() != Ok(step) {
        return;
    }
    if let Some(nofile) = env::var(NOFILE_VAR)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        set_fd_limit(nofile);
    }
    let args = env::var(ARGS_VAR).unwrap_or_default();
    let (mut config, options) =
        shared::cli::parse::<S>(args.lines().filter(|a| !a.is_empty()).map(String::from))
            .unwrap_or_else(|e| panic!("child {step}: arguments {args:?}: {e}"));
    config.addr = shared::Config::ephemeral().addr;
    let server =
        S::bind(&config, &options).unwrap_or_else(|e| panic!("child {step}: cannot bind: {e}"));
    println!("listening on {}", server.local_addr());
    let _ = std::io::stdout().flush();
    if let Err(error) = server.run() {
        panic!("child {step}: the server stopped: {error}");
    }
}

fn set_fd_limit(soft: u64) {
    #[cfg(unix)]
    if let Ok((_, hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, soft.min(hard), hard);
    }
    #[cfg(not(unix))]
    let _ = soft; // Windows has no per-process descriptor limit; out_of_fds does not run there.
}

/// A step serving in a child process; killed when dropped.
#[derive(Debug)]
pub struct ChildServer {
    child: Child,
    /// Where the child listens.
    pub addr: SocketAddr,
    /// What the child writes on stderr, line by line, as it comes.
    stderr: mpsc::Receiver<String>,
    /// The lines taken from `stderr` so far.
    seen: Vec<String>,
}

impl ChildServer {
    /// Starts `step` (whose entry test is `STEP::child_process_entry` in this binary) in a
    /// child process, with its soft open-file limit set to `nofile` if given.
    ///
    /// # Panics
    ///
    /// When the child cannot be started or does not print its address.
    pub fn start(step: &str, nofile: Option<u64>) -> ChildServer {
        ChildServer::start_args(step, nofile, &[])
    }

    /// [`start`](Self::start), with command-line arguments for the step (`--grace 1`).
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_args(step: &str, nofile: Option<u64>, args: &[&str]) -> ChildServer {
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
            .env(ARGS_VAR, args.join("\n"));
        if let Some(nofile) = nofile {
            command.env(NOFILE_VAR, nofile.to_string());
        }
        ChildServer::spawn(step, command)
    }

    /// Starts a step's own binary, as `cargo run -p stepNN -- ARGS` would, on a free
    /// loopback port: for a step's own tests, which find it at `env!("CARGO_BIN_EXE_stepNN")`.
    ///
    /// # Panics
    ///
    /// When the binary cannot be started or exits before printing its address (a refused
    /// argument, say: the panic message carries what the binary wrote on stderr).
    pub fn start_binary(binary: &str, args: &[&str]) -> ChildServer {
        let mut command = Command::new(binary);
        command.args(["--addr", "127.0.0.1:0"]).args(args);
        ChildServer::spawn(binary, command)
    }

    fn spawn(step: &str, mut command: Command) -> ChildServer {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("starting the child server");
        let stdout = child.stdout.take().expect("stdout was piped");
        let stderr = child.stderr.take().expect("stderr was piped");
        let (lines_out, stderr_lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines_out.send(line);
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = clients::table::process::parse_listening_line(&line) {
                        break addr;
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    // The stderr thread ends with the child: take everything it said.
                    let mut why = Vec::new();
                    while let Ok(line) = stderr_lines.recv_timeout(Duration::from_secs(5)) {
                        why.push(line);
                    }
                    panic!(
                        "the child server for {step} exited before printing its address: {}",
                        why.join("\n")
                    );
                }
            }
        };
        // Keep draining the child's output so it never blocks on a full pipe.
        thread::spawn(move || lines.for_each(drop));
        ChildServer {
            child,
            addr,
            stderr: stderr_lines,
            seen: Vec::new(),
        }
    }

    /// CPU time the child has used so far (user + system), where `/proc` tells; `None`
    /// elsewhere.
    pub fn cpu_time(&self) -> Option<Duration> {
        clients::table::process::cpu_time(self.child.id())
    }

    /// How many threads the child has, where `/proc` tells; `None` elsewhere.
    pub fn threads(&self) -> Option<usize> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).ok()?;
        Some(tasks.count())
    }

    /// Resident memory of the child in KiB, where `/proc` tells.
    pub fn resident_kib(&self) -> Option<u64> {
        clients::table::process::resident_kib(self.child.id())
    }

    /// Sends the child SIGTERM, as `kill` or a service manager does.
    #[cfg(unix)]
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("process ids fit in pid_t");
        // SAFETY: kill sends a signal to the process we started; it touches no memory.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }

    /// Waits up to `patience` for the child to exit; its status, or `None` if it is still
    /// running.
    pub fn wait_exit(&mut self, patience: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + patience;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `patience` for a line on the child's stderr that contains `text`, and
    /// returns it.
    pub fn wait_stderr(&mut self, text: &str, patience: Duration) -> Option<String> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(line) = self.seen.iter().find(|line| line.contains(text)) {
                return Some(line.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.stderr.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return None,
            }
        }
    }

    /// Everything the child wrote on stderr so far.
    pub fn stderr_so_far(&mut self) -> String {
        self.seen.extend(self.stderr.try_iter());
        self.seen.join("\n")
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads what is left on a stream until its end or an error; whether it ended with an end
/// of stream (`Ok`) or an error such as a reset (`Err`).
pub fn read_to_end(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).map(|_| rest)
}
