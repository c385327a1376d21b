//! What machine a results table was measured on: numbers mean little without it.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The machine and toolchain of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    /// Logical cores available to the runner.
    pub cores: usize,
    /// The CPU model, where the OS says.
    pub cpu: String,
    /// The operating system and kernel release.
    pub os: String,
    /// `rustc --version`.
    pub rustc: String,
    /// When the run started, UTC, `YYYY-MM-DD HH:MM`.
    pub date: String,
}

impl Machine {
    /// Describes this machine.
    pub fn this() -> Machine {
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: cpu_model().unwrap_or_else(|| "unknown CPU".into()),
            os: format!(
                "{} {}",
                std::env::consts::OS,
                kernel_release().unwrap_or_default()
            )
            .trim_end()
            .to_string(),
            rustc: command_line("rustc", "--version").unwrap_or_else(|| "rustc (unknown)".into()),
            date: utc_now(),
        }
    }

    /// One line for the foot of a table.
    pub fn summary(&self) -> String {
        format!(
            "{} cores, {}, {}, {}, {} UTC",
            self.cores, self.cpu, self.os, self.rustc, self.date
        )
    }
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok();
    if let Some(info) = info {
        let line = info.lines().find(|l| l.starts_with("model name"))?;
        return Some(line.split_once(':')?.1.trim().to_string());
    }
    command_line("sysctl", "-n machdep.cpu.brand_string")
}

fn kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|r| r.trim().to_string())
        .or_else(|| command_line("uname", "-r"))
}

fn command_line(program: &str, args: &str) -> Option<String> {
    let rustc = if program == "rustc" {
        std::env::var_os("RUSTC").unwrap_or_else(|| program.into())
    } else {
        program.into()
    };
    let output = Command::new(rustc).args(args.split(' ')).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let line = text.lines().next()?.trim();
    (output.status.success() && !line.is_empty()).then(|| line.to_string())
}

fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let minutes = (secs % 86_400) / 60;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        minutes / 60,
        minutes % 60
    )
}

/// Days since 1970-01-01 to a calendar date (Howard Hinnant's `civil_from_days`), so the
/// runner needs no date crate for one timestamp.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
    }

    #[test]
    fn this_machine_has_cores_and_a_compiler() {
        let machine = Machine::this();
        assert!(machine.cores >= 1);
        assert!(machine.rustc.starts_with("rustc"), "{}", machine.rustc);
        assert_eq!(machine.date.len(), "2026-11-22 03:10".len());
    }
}
