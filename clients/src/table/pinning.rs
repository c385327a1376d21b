//! Which CPUs this process may run on, and keeping a thread or a child process on some of
//! them: the per-core mode (`--pin`) runs each server on CPUs of its own and the load on the
//! others.
//!
//! Why it matters: when a client and a server take turns on two CPUs, every request wakes the
//! other CPU from idle, and on a virtual machine or a laptop saving power that wake-up can
//! cost more than the request. Pinned, each side stays on its own CPUs, and the table can
//! show the same load with client and server on one CPU and on two.

use std::io;
use std::process::Command;

/// The CPUs this thread may run on, in increasing order.
///
/// # Errors
///
/// Where the OS cannot say (not Linux).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    imp::allowed_cpus()
}

/// Keeps the calling thread, and every thread it starts from now on, on `cpus`.
///
/// # Errors
///
/// When the OS refuses (a CPU that does not exist or is not allowed) or cannot pin (not
/// Linux).
pub fn pin_this_thread(cpus: &[usize]) -> io::Result<()> {
    imp::pin_this_thread(cpus)
}

/// Makes `command` start its process on `cpus` only: every thread the process creates
/// inherits the set, and `std::thread::available_parallelism` in it says `cpus.len()`, so the
/// steps that size their threads to the cores run that many.
///
/// # Errors
///
/// Where pinning is not possible (not Linux).
pub fn pin_command(command: &mut Command, cpus: &[usize]) -> io::Result<()> {
    imp::pin_command(command, cpus)
}

/// `0-3,6` for the CPUs 0, 1, 2, 3 and 6, as `taskset -c` writes them.
pub fn cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    fn cpu_set(cpus: &[usize]) -> io::Result<libc::cpu_set_t> {
        // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &cpu in cpus {
            if cpu >= libc::CPU_SETSIZE as usize {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("CPU {cpu} is beyond what sched_setaffinity can name"),
                ));
            }
            // SAFETY: `cpu` is below CPU_SETSIZE (checked above), so the bit is inside `set`.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
        Ok(set)
    }

    pub fn allowed_cpus() -> io::Result<Vec<usize>> {
        // SAFETY: as above, the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: sched_getaffinity writes at most `size_of::<cpu_set_t>()` bytes into `set`,
        // which lives for the whole call.
        if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            // SAFETY: every `cpu` here is below CPU_SETSIZE, so the bit is inside `set`.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect())
    }

    pub fn pin_this_thread(cpus: &[usize]) -> io::Result<()> {
        let set = cpu_set(cpus)?;
        // SAFETY: sched_setaffinity only reads `set`; pid 0 is the calling thread.
        if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn pin_command(command: &mut Command, cpus: &[usize]) -> io::Result<()> {
        let set = cpu_set(cpus)?;
        let pin = move || {
            // SAFETY: sched_setaffinity is a plain system call, safe to make between fork and
            // exec (it allocates nothing and takes no lock); it only reads `set`, a copy
            // owned by this closure.
            if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        };
        // SAFETY: the closure makes one async-signal-safe system call and touches no memory
        // shared with other threads of this process (see `pin`).
        unsafe { command.pre_exec(pin) };
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::process::Command;

    fn unsupported() -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            "pinning to CPUs needs Linux (sched_setaffinity); run without --pin",
        )
    }

    pub fn allowed_cpus() -> io::Result<Vec<usize>> {
        Err(unsupported())
    }

    pub fn pin_this_thread(_: &[usize]) -> io::Result<()> {
        Err(unsupported())
    }

    pub fn pin_command(_: &mut Command, _: &[usize]) -> io::Result<()> {
        Err(unsupported())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_join_runs() {
        assert_eq!(cpu_list(&[0]), "0");
        assert_eq!(cpu_list(&[3, 0, 1, 2, 6]), "0-3,6");
        assert_eq!(cpu_list(&[1, 3, 5]), "1,3,5");
        assert_eq!(cpu_list(&[]), "");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_pinned_thread_runs_where_it_was_put() {
        let cpus = allowed_cpus().expect("Linux tells the allowed CPUs");
        assert!(!cpus.is_empty());
        let last = *cpus.last().unwrap();
        std::thread::spawn(move || {
            pin_this_thread(&[last]).expect("pinning to an allowed CPU");
            assert_eq!(allowed_cpus().unwrap(), vec![last]);
            assert_eq!(std::thread::available_parallelism().unwrap().get(), 1);
        })
        .join()
        .unwrap();
    }
}
