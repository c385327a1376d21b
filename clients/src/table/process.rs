//! Building the steps and running each as a process of its own.
//!
//! A step runs in its own process, not in the runner's, so that its resident memory and its
//! CPU time can be read from `/proc/PID/status` and `/proc/PID/stat`, its system calls
//! counted, and nothing the runner does (its own threads, its clients' allocations) counted
//! against the step.

use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::pinning;

/// How long a step may take to print its `listening on` line.
const STARTUP_PATIENCE: Duration = Duration::from_secs(30);

/// The steps that exist: every `steps/stepNN-<style>` folder, as `(package, folder)`,
/// sorted. A new step is measured as soon as its folder exists.
pub fn discover_steps(workspace: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut steps = Vec::new();
    for entry in std::fs::read_dir(workspace.join("steps"))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(package) = step_package(name) {
            if path.join("Cargo.toml").is_file() {
                steps.push((package.to_string(), path));
            }
        }
    }
    steps.sort();
    Ok(steps)
}

/// `step05-offload` is package `step05`.
fn step_package(folder: &str) -> Option<&str> {
    let (package, _style) = folder.split_once('-')?;
    let digits = package.strip_prefix("step")?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(package)
}

/// Builds the binaries of `packages` with cargo's `profile` and returns the folder they are
/// in.
///
/// # Errors
///
/// A message when cargo cannot be run or the build fails (cargo has printed why).
pub fn build(workspace: &Path, packages: &[String], profile: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--bins", "--profile", profile]);
    for package in packages {
        command.args(["-p", package]);
    }
    if !std::io::stderr().is_terminal() {
        command.arg("--quiet");
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo to build the steps: {e}"))?;
    if !status.success() {
        return Err("building the steps failed (cargo's messages are above)".into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    // Cargo names the dev profile's folder `debug`.
    let folder = if profile == "dev" { "debug" } else { profile };
    Ok(target.join(folder))
}

/// Reads the address out of a step's first line of output, `listening on 127.0.0.1:40123`.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    line.trim_end().strip_prefix("listening on ")?.parse().ok()
}

/// A step running as a child process.
#[derive(Debug)]
pub struct StepProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl StepProcess {
    /// Starts `binary --addr 127.0.0.1:0` (on `cpus` only, if given) and waits for its
    /// `listening on` line.
    ///
    /// # Errors
    ///
    /// The step's own error message when it exits instead (io_uring refused, say), or a
    /// description of what went wrong.
    pub fn start(binary: &Path, cpus: Option<&[usize]>) -> Result<StepProcess, String> {
        let mut command = Command::new(binary);
        command
            .args(["--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cpus) = cpus {
            pinning::pin_command(&mut command, cpus).map_err(|e| e.to_string())?;
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().expect("stdout was piped");
        let (first_line, line) = mpsc::channel();
        // Read on a thread: a step that hangs before printing must not hang the runner.
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = first_line.send(lines.next());
            // Keep reading so the step never blocks on a full pipe.
            lines.for_each(drop);
        });
        let addr = match line.recv_timeout(STARTUP_PATIENCE) {
            Ok(Some(Ok(text))) => parse_listening_line(&text).ok_or_else(|| {
                format!("unexpected first line {text:?} (want `listening on ADDR`)")
            }),
            Ok(_) => Err(exit_reason(&mut child)),
            Err(_) => Err(format!("printed nothing in {STARTUP_PATIENCE:?}")),
        };
        match addr {
            Ok(addr) => {
                // Drain stderr too, for the same reason as stdout.
                if let Some(mut stderr) = child.stderr.take() {
                    thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
                }
                Ok(StepProcess { child, addr })
            }
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(error)
            }
        }
    }

    /// The step's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The step's resident memory in KiB, where there is a `/proc`.
    pub fn resident_kib(&self) -> Option<u64> {
        resident_kib(self.child.id())
    }

    /// CPU time the step has used so far (user and system, every thread), where there is a
    /// `/proc`.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(self.child.id())
    }

    /// Waits until the step has stopped using CPU, up to `patience`, so one measurement
    /// does not pay for the last one's leftovers (a fib(40) still computing for a client
    /// that has gone, thousands of connections being closed).
    pub fn settle(&self, patience: Duration) {
        let started = Instant::now();
        let Some(mut last) = self.cpu_time() else {
            // No /proc: a fixed pause is the best we can do.
            thread::sleep(Duration::from_secs(1));
            return;
        };
        while started.elapsed() < patience {
            thread::sleep(Duration::from_millis(200));
            let Some(now) = self.cpu_time() else { return };
            // A clock tick (10 ms) in 200 ms is noise: the step is idle.
            if now.saturating_sub(last) <= Duration::from_millis(10) {
                return;
            }
            last = now;
        }
    }

    /// Asks the step to stop (SIGTERM, which step08 handles gracefully), and kills it if it
    /// has not exited within a few seconds.
    pub fn stop(mut self) {
        #[cfg(unix)]
        {
            let pid = libc::pid_t::try_from(self.child.id()).expect("process ids fit in pid_t");
            // SAFETY: kill only sends a signal to the process we started; it touches no memory.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StepProcess {
    fn drop(&mut self) {
        // Never leave a step running behind the runner (a panic, an early return).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Why a step exited before listening: the first line of its error output.
fn exit_reason(child: &mut Child) -> String {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
    match stderr.lines().find(|line| !line.trim().is_empty()) {
        Some(line) => line.trim().to_string(),
        None => format!("exited ({status}) without printing its address"),
    }
}

/// Raises this process's open-file limit towards `wanted` (children inherit it). Returns
/// the limit now in force.
pub fn raise_fd_limit(wanted: u64) -> u64 {
    rlimit::increase_nofile_limit(wanted).unwrap_or(0)
}

/// The resident memory of process `pid` in KiB (`VmRSS` of `/proc/PID/status`), where there
/// is a `/proc`.
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_resident_kib(&status)
}

/// The CPU time process `pid` has used (user and system, over every thread, including the
/// threads that have exited: `utime + stime` of `/proc/PID/stat`), where there is a `/proc`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_cpu_ticks(&stat)?;
    Some(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

/// `VmRSS` in KiB, from the text of `/proc/PID/status`.
pub fn parse_resident_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `utime + stime` in clock ticks, from the text of `/proc/PID/stat`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces; the fields after its
    // `)` are fixed: utime and stime are fields 14 and 15 of the whole line.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The unit of `/proc`'s CPU times (`USER_HZ`, 100 on every Linux in use).
fn clock_ticks_per_second() -> f64 {
    #[cfg(unix)]
    {
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if ticks > 0 {
            return ticks as f64;
        }
    }
    100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_the_bound_address() {
        assert_eq!(
            parse_listening_line("listening on 127.0.0.1:40123\n"),
            Some("127.0.0.1:40123".parse().unwrap())
        );
        assert_eq!(
            parse_listening_line("listening on [::1]:25000"),
            Some("[::1]:25000".parse().unwrap())
        );
        assert_eq!(parse_listening_line("listening on somewhere"), None);
        assert_eq!(parse_listening_line("error: address in use"), None);
    }

    #[test]
    fn proc_files_give_memory_and_cpu_time() {
        let status = "Name:\tstep03\nVmPeak:\t  9000 kB\nVmRSS:\t    4321 kB\nThreads:\t1\n";
        assert_eq!(parse_resident_kib(status), Some(4321));
        let stat = "4242 (step 03) S 1 4242 4242 0 -1 4194560 150 0 0 0 37 5 0 0 20 0 1 0 99";
        assert_eq!(parse_cpu_ticks(stat), Some(42));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory_and_cpu_time() {
        assert!(resident_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert!(cpu_time(std::process::id()).is_some());
    }

    #[test]
    fn step_folders_name_their_package() {
        assert_eq!(step_package("step05-offload"), Some("step05"));
        assert_eq!(step_package("step10-next-idea"), Some("step10"));
        assert_eq!(step_package("step-x"), None);
        assert_eq!(step_package("notes"), None);
        assert_eq!(step_package("stepA-b"), None);
    }

    #[test]
    fn the_workspace_has_steps() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let steps = discover_steps(workspace).unwrap();
        assert_eq!(steps[0].0, "step01");
        assert!(steps.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
    }
}
