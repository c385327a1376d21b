//! The results: the Markdown table, the comparison with an earlier run, and the files under
//! `results/`.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::columns::{Cell, Column};
use crate::machine::Machine;
use crate::runs::{Plan, Runs};

/// Everything one run of the runner measured: what `results.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Results {
    /// The command line that produced these results.
    pub command: String,
    pub machine: Machine,
    pub plan: Plan,
    pub steps: Vec<StepResult>,
}

/// One step's row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepResult {
    pub step: String,
    /// Why the step could not be measured at all (it exited at start), if so.
    pub unavailable: Option<String>,
    pub runs: Runs,
}

impl Results {
    /// The aligned Markdown table, with notes for errors below it.
    pub fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .steps
            .iter()
            .map(|step| {
                let mut row = vec![step.step.clone()];
                for column in Column::ALL {
                    row.push(match &step.unavailable {
                        Some(_) => "unavailable".into(),
                        None => column.format(&column.cell(&step.runs)),
                    });
                }
                row
            })
            .collect();
        let mut out = markdown(&rows);
        let notes = self.notes();
        if !notes.is_empty() {
            out.push('\n');
            for note in notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }

    /// What the table cannot say in a cell: why a step or a load failed.
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for step in &self.steps {
            if let Some(reason) = &step.unavailable {
                notes.push(format!("{}: unavailable: {reason}", step.step));
                continue;
            }
            for column in Column::ALL {
                if let Cell::Error(error) = column.cell(&step.runs) {
                    notes.push(format!("{} {}: {error}", step.step, column.header()));
                }
            }
            if let Some(error) = step.runs.idle.as_ref().and_then(|idle| idle.error.as_ref()) {
                notes.push(format!("{} idle connections: {error}", step.step));
            }
        }
        notes
    }

    /// The table again, each cell as new / old for the steps and cells both runs measured.
    pub fn compare(&self, old: &Results) -> String {
        let rows: Vec<Vec<String>> = self
            .steps
            .iter()
            .map(|step| {
                let old_step = old.steps.iter().find(|s| s.step == step.step);
                let mut row = vec![step.step.clone()];
                for column in Column::ALL {
                    let ratio = old_step.and_then(|old_step| {
                        match (column.cell(&step.runs), column.cell(&old_step.runs)) {
                            (Cell::Value(new), Cell::Value(old)) if old > 0.0 => Some(new / old),
                            _ => None,
                        }
                    });
                    row.push(ratio.map_or_else(|| "–".into(), |r| format!("{r:.2}×")));
                }
                row
            })
            .collect();
        markdown(&rows)
    }

    /// The content of `table.md`: how it was made, on what, and the table.
    pub fn document(&self) -> String {
        format!(
            "# Results\n\n\
             Made by `{}`\non {}.\n\n\
             Each load ran {} s; slow requests are fib({}); the idle column opens {} connections.\n\
             req/s: higher is better; s/req, µs and KiB: lower is better. \"starved\": a client got\n\
             no answer at all while the load ran. \"–\": not measured (skipped, or no /proc here).\n\n{}",
            self.command,
            self.machine.summary(),
            self.plan.secs,
            self.plan.slow_n,
            crate::columns::thousands(self.plan.idle as u64),
            self.table()
        )
    }

    /// Writes `table.md`, `results.json` and `chart.svg` into `folder`.
    ///
    /// # Errors
    ///
    /// When the folder cannot be created or a file written.
    pub fn write(&self, folder: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(folder)?;
        std::fs::write(folder.join("table.md"), self.document())?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(folder.join("results.json"), json + "\n")?;
        std::fs::write(folder.join("chart.svg"), crate::chart::svg(self))?;
        Ok(())
    }

    /// Reads a `results.json`.
    ///
    /// # Errors
    ///
    /// A message naming the file when it cannot be read or is not a results file.
    pub fn read(path: &Path) -> Result<Results, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a results file: {e}", path.display()))
    }
}

/// An aligned Markdown table: the step column left-aligned, the numbers right-aligned.
fn markdown(rows: &[Vec<String>]) -> String {
    let mut header = vec!["step".to_string()];
    header.extend(Column::ALL.iter().map(|c| c.header().to_string()));
    let width = |i: usize| {
        rows.iter()
            .map(|row| row[i].chars().count())
            .chain([header[i].chars().count(), 3])
            .max()
            .unwrap_or(3)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |cells: &[String]| {
        let mut out = String::from("|");
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if i == 0 {
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            } else {
                let _ = write!(out, " {}{cell} |", " ".repeat(pad));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&header);
    out.push('|');
    for (i, width) in widths.iter().enumerate() {
        if i == 0 {
            let _ = write!(out, " {} |", "-".repeat(*width));
        } else {
            let _ = write!(out, " {}: |", "-".repeat(width - 1));
        }
    }
    out.push('\n');
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::FastRun;

    fn results(req_per_sec: f64) -> Results {
        let run = FastRun {
            conns: 1,
            depth: 1,
            secs: 1.0,
            answered: 100,
            per_connection: vec![100],
            req_per_sec,
            p50_us: Some(10),
            p99_us: Some(30),
            p999_us: Some(50),
            max_us: Some(70),
            error: None,
        };
        Results {
            command: "table --steps step01".into(),
            machine: Machine {
                cores: 2,
                cpu: "Test CPU".into(),
                os: "linux 6.1".into(),
                rustc: "rustc 1.95.0".into(),
                date: "2026-11-22 03:00".into(),
            },
            plan: Plan {
                secs: 1.0,
                slow_n: 40,
                idle: 0,
            },
            steps: vec![
                StepResult {
                    step: "step01".into(),
                    unavailable: None,
                    runs: Runs {
                        fast_1: Some(run),
                        ..Runs::default()
                    },
                },
                StepResult {
                    step: "step07".into(),
                    unavailable: Some("io_uring is not available here".into()),
                    runs: Runs::default(),
                },
            ],
        }
    }

    #[test]
    fn the_table_has_every_column_aligned() {
        let table = results(41_234.0).table();
        let lines: Vec<&str> = table.lines().collect();
        for column in Column::ALL {
            assert!(
                lines[0].contains(column.header()),
                "missing {}",
                column.header()
            );
        }
        assert!(lines[1].starts_with("| ----"), "{}", lines[1]);
        assert!(lines[2].starts_with("| step01 |"));
        assert!(lines[2].contains(" 41,234 |"));
        assert!(lines[2].contains(" 30 |"), "p99 of the 1-fast run");
        assert!(lines[3].contains("unavailable"));
        let widths: Vec<usize> = lines[..4].iter().map(|l| l.chars().count()).collect();
        assert!(
            widths.windows(2).all(|w| w[0] == w[1]),
            "aligned: {widths:?}"
        );
        assert!(table.contains("- step07: unavailable: io_uring is not available here"));
    }

    #[test]
    fn comparing_gives_ratios_where_both_measured() {
        let compared = results(50_000.0).compare(&results(25_000.0));
        let row = compared.lines().nth(2).unwrap();
        assert!(row.contains(" 2.00× |"), "{row}");
        assert!(row.contains(" 1.00× |"), "p99 unchanged: {row}");
    }

    #[test]
    fn results_survive_a_round_trip_through_json() {
        let original = results(1.0);
        let json = serde_json::to_string(&original).unwrap();
        assert_eq!(serde_json::from_str::<Results>(&json).unwrap(), original);
    }
}
