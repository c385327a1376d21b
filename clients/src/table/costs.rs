//! What one request costs the server: system calls, context switches and CPU time.
//!
//! Rates move with the machine (how busy it is, how fast an idle CPU wakes up); counts do not.
//! A readiness loop makes a wait, a read and a write per request at one connection, however
//! fast the machine is, and a completion loop one `io_uring_enter`: those counts are what
//! separates the styles, and they come out the same run after run.
//!
//! **How they are counted.** With the kernel's perf events, through `perf_event_open(2)` (the
//! `perf-event2` crate), the mechanism `perf stat` uses: a counter per thread of the server's
//! process on the tracepoints `raw_syscalls:sys_enter` (every system call) and
//! `syscalls:sys_enter_<name>` (one kind each), and on the software event
//! `context-switches`. Counters are opened with `inherit`, so a thread the server starts
//! during the load is counted too, and a thread that exits adds its count to its parent's.
//! Only the server's own threads are counted, never the load clients'.
//!
//! Counting a system call costs the kernel a little, so the counts come from a pass of their
//! own after the timed rounds: the rates in the table are measured with no counter attached.
//! CPU time needs no perf event: it is the difference of the server's `utime + stime`
//! (`/proc/PID/stat`, every thread including exited ones) over each timed load.
//!
//! **Permissions.** Tracepoint counters need root, or `kernel.perf_event_paranoid` at -1
//! and a readable tracefs; [`available`] says which is missing, in one line with the command
//! that allows it. Where counting is refused the table says `–` and its legend repeats that
//! line.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The system calls counted one by one, grouped into kinds by [`kind`]. Names are those of
/// the `syscalls:sys_enter_<name>` tracepoints; a name this architecture lacks (aarch64 has
/// no `epoll_wait`) is skipped.
pub const SYSCALLS: &[&str] = &[
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_ctl",
    "read",
    "readv",
    "recvfrom",
    "recvmsg",
    "write",
    "writev",
    "sendto",
    "sendmsg",
    "futex",
    "io_uring_enter",
    "accept",
    "accept4",
];

/// The kinds of system calls the table and the JSON break the total into, in display order.
pub const KINDS: &[Kind] = &[
    Kind::Wait,
    Kind::EpollCtl,
    Kind::Receive,
    Kind::Send,
    Kind::Futex,
    Kind::IoUringEnter,
    Kind::Accept,
    Kind::Other,
];

/// A kind of system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Waiting for readiness: `epoll_wait`, `epoll_pwait`, `epoll_pwait2`.
    Wait,
    /// Registering, re-arming or removing a socket: `epoll_ctl`.
    EpollCtl,
    /// Reading: `read`, `readv`, `recvfrom`, `recvmsg` (an eventfd's read counts here too).
    Receive,
    /// Writing: `write`, `writev`, `sendto`, `sendmsg` (an eventfd's write too).
    Send,
    /// Sleeping or waking a thread on a lock or a condition: `futex`.
    Futex,
    /// Submitting to and waiting on an io_uring: `io_uring_enter`.
    IoUringEnter,
    /// Accepting a connection: `accept`, `accept4`.
    Accept,
    /// Everything else (`timerfd_settime`, `clock_nanosleep`, `mmap`, ...).
    Other,
}

impl Kind {
    /// A short name for a column header.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Wait => "wait",
            Kind::EpollCtl => "epoll_ctl",
            Kind::Receive => "recv/read",
            Kind::Send => "send/write",
            Kind::Futex => "futex",
            Kind::IoUringEnter => "io_uring_enter",
            Kind::Accept => "accept",
            Kind::Other => "other",
        }
    }
}

/// The kind of the system call `name` (one of [`SYSCALLS`]).
pub fn kind(name: &str) -> Kind {
    match name {
        "epoll_wait" | "epoll_pwait" | "epoll_pwait2" => Kind::Wait,
        "epoll_ctl" => Kind::EpollCtl,
        "read" | "readv" | "recvfrom" | "recvmsg" => Kind::Receive,
        "write" | "writev" | "sendto" | "sendmsg" => Kind::Send,
        "futex" => Kind::Futex,
        "io_uring_enter" => Kind::IoUringEnter,
        "accept" | "accept4" => Kind::Accept,
        _ => Kind::Other,
    }
}

/// What the counters saw during one load, in the server's process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    /// Requests answered during the load (the clients' count).
    pub answered: u64,
    /// Every system call (`raw_syscalls:sys_enter`).
    pub syscalls: u64,
    /// The calls of [`SYSCALLS`], by name.
    pub by_name: BTreeMap<String, u64>,
    /// Context switches of the server's threads.
    pub context_switches: u64,
}

impl Counts {
    /// The total broken into [`KINDS`]; `Other` is what the named calls leave.
    pub fn by_kind(&self) -> BTreeMap<Kind, u64> {
        let mut kinds: BTreeMap<Kind, u64> = KINDS.iter().map(|&kind| (kind, 0)).collect();
        let mut named = 0;
        for (name, &count) in &self.by_name {
            *kinds.entry(kind(name)).or_default() += count;
            named += count;
        }
        *kinds.entry(Kind::Other).or_default() += self.syscalls.saturating_sub(named);
        kinds
    }

    /// `count` per answered request, if any request was answered.
    pub fn per_request(&self, count: u64) -> Option<f64> {
        (self.answered > 0).then(|| count as f64 / self.answered as f64)
    }
}

/// Whether counting is possible here; if not, one line saying why and what to run.
///
/// # Errors
///
/// The reason counting is refused, with the command that allows it.
pub fn available() -> Result<(), String> {
    imp::available()
}

/// Counters attached to every thread of a running process.
#[derive(Debug)]
pub struct Counting {
    inner: imp::Counting,
}

impl Counting {
    /// Attaches counters to every thread of process `pid` and starts them.
    ///
    /// # Errors
    ///
    /// As [`available`], or when the process is gone.
    pub fn start(pid: u32) -> Result<Counting, String> {
        Ok(Counting {
            inner: imp::Counting::start(pid)?,
        })
    }

    /// Stops counting and returns the counts, with `answered` requests.
    ///
    /// # Errors
    ///
    /// When a counter cannot be read.
    pub fn finish(self, answered: u64) -> Result<Counts, String> {
        let mut counts = self.inner.finish()?;
        counts.answered = answered;
        Ok(counts)
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::path::Path;

    use perf_event::events::{Software, Tracepoint};
    use perf_event::{Builder, Counter};

    use super::{Counts, SYSCALLS};

    /// Where tracefs is usually mounted, then where older systems have it.
    const TRACEFS: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

    /// The line every refusal ends with.
    const ALLOW: &str = "count as root (`sudo cargo run --release -p clients --bin table`), \
                         or allow it: `sudo sysctl kernel.perf_event_paranoid=-1` and \
                         `sudo chmod -R a+rX /sys/kernel/tracing`";

    /// Why the tracepoints cannot be read, and what to run: mount tracefs (fresh machines and
    /// containers often have it unmounted), or allow reading it.
    pub(super) fn unreadable(error: &io::Error, mounted: bool) -> String {
        if mounted {
            format!("cannot read the system-call tracepoints in tracefs ({error}): {ALLOW}")
        } else {
            format!(
                "tracefs is not mounted (no {}/events): mount it with `sudo mount -t tracefs \
                 nodev /sys/kernel/tracing`; then {ALLOW}",
                TRACEFS[0]
            )
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Event {
        AllSyscalls,
        Syscall(&'static str),
        ContextSwitches,
    }

    /// The id of tracepoint `name` (`raw_syscalls/sys_enter`), from tracefs.
    fn tracepoint_id(name: &str) -> io::Result<u64> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no tracefs");
        for root in TRACEFS {
            let path = Path::new(root).join("events").join(name).join("id");
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    return text.trim().parse().map_err(|_| {
                        io::Error::other(format!("{} is not a number", path.display()))
                    });
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// The events to count, with their tracepoint ids: every system call, each of
    /// [`SYSCALLS`] this kernel has, and context switches.
    fn events() -> Result<Vec<(Event, Option<u64>)>, String> {
        let all = tracepoint_id("raw_syscalls/sys_enter").map_err(|error| {
            // `events/` exists only where tracefs is mounted (the folder itself is always
            // there on sysfs); an error other than NotFound means it is there but not ours.
            let mounted = TRACEFS.iter().any(|root| {
                !matches!(std::fs::metadata(Path::new(root).join("events")),
                          Err(e) if e.kind() == io::ErrorKind::NotFound)
            });
            unreadable(&error, mounted)
        })?;
        let mut events = vec![(Event::AllSyscalls, Some(all))];
        for &name in SYSCALLS {
            if let Ok(id) = tracepoint_id(&format!("syscalls/sys_enter_{name}")) {
                events.push((Event::Syscall(name), Some(id)));
            }
        }
        events.push((Event::ContextSwitches, None));
        Ok(events)
    }

    fn counter(event: Event, id: Option<u64>, tid: i32) -> io::Result<Counter> {
        let mut builder = match (event, id) {
            (Event::ContextSwitches, _) | (_, None) => Builder::new(Software::CONTEXT_SWITCHES),
            (_, Some(id)) => Builder::new(Tracepoint::with_id(id)),
        };
        builder
            .observe_pid(tid)
            .any_cpu()
            .inherit(true)
            // Tracepoints fire in the kernel: a counter that excludes the kernel sees none.
            .exclude_kernel(false);
        let mut counter = builder.build()?;
        counter.enable()?;
        Ok(counter)
    }

    fn refused(error: &io::Error) -> String {
        match error.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => {
                format!("perf_event_open refused ({error}): {ALLOW}")
            }
            _ => format!("perf_event_open failed ({error}); this kernel may lack perf events"),
        }
    }

    pub fn available() -> Result<(), String> {
        let events = events()?;
        let (event, id) = events[0];
        // On this very thread: the same permission check as for a server's threads (root,
        // or perf_event_paranoid), without needing one.
        let tid = i32::try_from(std::process::id()).map_err(|_| "pid out of range".to_string())?;
        counter(event, id, tid)
            .map(drop)
            .map_err(|error| refused(&error))
    }

    #[derive(Debug)]
    pub struct Counting {
        counters: Vec<(Event, Counter)>,
    }

    impl Counting {
        pub fn start(pid: u32) -> Result<Counting, String> {
            let events = events()?;
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map_err(|error| format!("cannot list the threads of process {pid}: {error}"))?;
            let mut counters = Vec::new();
            for task in tasks {
                let Some(tid) = task
                    .ok()
                    .and_then(|task| task.file_name().to_str()?.parse::<i32>().ok())
                else {
                    continue;
                };
                for &(event, id) in &events {
                    match counter(event, id, tid) {
                        Ok(counter) => counters.push((event, counter)),
                        // The thread exited between listing and attaching: nothing to count.
                        Err(error) if error.raw_os_error() == Some(libc::ESRCH) => break,
                        Err(error) => return Err(refused(&error)),
                    }
                }
            }
            Ok(Counting { counters })
        }

        pub fn finish(mut self) -> Result<Counts, String> {
            let mut counts = Counts::default();
            for (event, counter) in &mut self.counters {
                counter
                    .disable()
                    .and_then(|()| counter.read())
                    .map(|value| match event {
                        Event::AllSyscalls => counts.syscalls += value,
                        Event::ContextSwitches => counts.context_switches += value,
                        Event::Syscall(name) => {
                            *counts.by_name.entry((*name).to_string()).or_default() += value;
                        }
                    })
                    .map_err(|error| format!("reading a counter: {error}"))?;
            }
            Ok(counts)
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::Counts;

    const WHY: &str = "system calls are counted with Linux's perf events; on macOS, \
                       `sudo dtruss -c -p PID` counts a running step's by hand";

    pub fn available() -> Result<(), String> {
        Err(WHY.into())
    }

    #[derive(Debug)]
    pub struct Counting;

    impl Counting {
        pub fn start(_: u32) -> Result<Counting, String> {
            Err(WHY.into())
        }

        pub fn finish(self) -> Result<Counts, String> {
            Err(WHY.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn an_unmounted_tracefs_is_named_with_the_command_that_mounts_it() {
        let not_found = std::io::Error::from(std::io::ErrorKind::NotFound);
        let why = imp::unreadable(&not_found, false);
        assert!(why.contains("tracefs is not mounted"), "{why}");
        assert!(
            why.contains("sudo mount -t tracefs nodev /sys/kernel/tracing"),
            "{why}"
        );
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let why = imp::unreadable(&denied, true);
        assert!(
            why.contains("sudo chmod -R a+rX /sys/kernel/tracing"),
            "{why}"
        );
        assert!(!why.contains("not mounted"), "{why}");
    }

    fn counts(syscalls: u64, named: &[(&str, u64)]) -> Counts {
        Counts {
            answered: 1000,
            syscalls,
            by_name: named.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
            context_switches: 1000,
        }
    }

    #[test]
    fn the_total_breaks_into_kinds_and_other_takes_the_rest() {
        let counts = counts(
            8000,
            &[
                ("epoll_pwait", 1000),
                ("epoll_ctl", 2000),
                ("read", 1000),
                ("recvfrom", 1000),
                ("sendto", 1000),
            ],
        );
        let kinds = counts.by_kind();
        assert_eq!(kinds[&Kind::Wait], 1000);
        assert_eq!(kinds[&Kind::EpollCtl], 2000);
        assert_eq!(
            kinds[&Kind::Receive],
            2000,
            "read and recvfrom are one kind"
        );
        assert_eq!(kinds[&Kind::Send], 1000);
        assert_eq!(kinds[&Kind::IoUringEnter], 0);
        assert_eq!(kinds[&Kind::Other], 2000, "timerfd_settime and the like");
        assert_eq!(kinds.values().sum::<u64>(), 8000);
        assert_eq!(kinds.len(), KINDS.len());
    }

    #[test]
    fn per_request_needs_requests() {
        let mut counts = counts(3000, &[]);
        assert_eq!(counts.per_request(counts.syscalls), Some(3.0));
        counts.answered = 0;
        assert_eq!(counts.per_request(counts.syscalls), None);
    }

    #[test]
    fn every_counted_call_has_a_kind_other_than_other() {
        for name in SYSCALLS {
            assert_ne!(kind(name), Kind::Other, "{name}");
        }
        assert_eq!(kind("timerfd_settime"), Kind::Other);
    }

    /// Counts this test's own process: reading a pipe a known number of times must show up
    /// in `read` and in the total. Skipped, loudly, where counting is not permitted.
    #[test]
    fn a_known_number_of_reads_is_counted() {
        if let Err(why) = available() {
            eprintln!("NOT COUNTED: {why}");
            return;
        }
        let counting = Counting::start(std::process::id()).expect("counting is available");
        let file = std::fs::File::open("/proc/self/stat").expect("Linux has /proc");
        for _ in 0..500 {
            use std::io::{Read, Seek};
            let mut file = &file;
            let mut buffer = [0u8; 16];
            let _ = file.rewind();
            let _ = file.read(&mut buffer);
        }
        let counts = counting.finish(500).expect("reading the counters");
        assert!(counts.by_name["read"] >= 500, "{counts:?}");
        assert!(counts.syscalls >= 1000, "lseek and read: {counts:?}");
    }
}
