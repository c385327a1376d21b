//! The results: the Markdown document, the comparison with an earlier run, and the files the
//! runner writes (`table.md`, `results.json`, `chart.svg`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::columns::{Cell, Column, Rate, Table};
use super::costs::Counts;
use super::idle::IdleRun;
use super::machine::Machine;
use super::markdown;
use super::pinning::cpu_list;
use super::runs::{Load, Plan, Round};

/// Everything one run of the runner measured: what `results.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Results {
    /// The command line that produced these results.
    pub command: String,
    pub machine: Machine,
    pub plan: Plan,
    /// Why system calls and context switches were not counted, if they were not: one line
    /// that says what to run to allow it.
    pub counting: Option<String>,
    /// One set of measurements per placement: a single one, or in the per-core mode one per
    /// number of server CPUs (`--cores`).
    pub sweeps: Vec<Sweep>,
}

/// Every step measured with the same placement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sweep {
    /// The CPUs the servers ran on (per-core mode), or `None` (the whole machine).
    pub server_cpus: Option<Vec<usize>>,
    /// The CPUs the clients ran on (per-core mode).
    pub load_cpus: Option<Vec<usize>>,
    pub steps: Vec<StepResult>,
}

/// One step's row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepResult {
    pub step: String,
    /// Why the step could not be measured at all (it exited at start), if so.
    pub unavailable: Option<String>,
    /// One entry per round of the timed loads.
    pub rounds: Vec<Round>,
    /// The counted pass: what the fast loads cost the server, or why they were not counted.
    pub counts: BTreeMap<Load, Result<Counts, String>>,
    /// The idle connections, measured once.
    pub idle: Option<IdleRun>,
}

impl Sweep {
    /// Where the servers and the clients ran, in words.
    pub fn placement(&self) -> String {
        match (&self.server_cpus, &self.load_cpus) {
            (Some(server), Some(load)) => format!(
                "each server on CPU {} ({} of its own), the clients on CPU {}",
                cpu_list(server),
                plural(server.len(), "CPU"),
                cpu_list(load)
            ),
            _ => "servers and clients sharing every CPU of the machine".into(),
        }
    }

    /// One of the three tables of this sweep, aligned, with the notes for its errors.
    pub fn table(&self, table: Table) -> String {
        let pinned = self.server_cpus.is_some();
        let columns = Column::of(table, pinned);
        let mut headers = vec!["step".to_string()];
        headers.extend(columns.iter().map(|c| c.header()));
        let rows: Vec<Vec<String>> = self
            .steps
            .iter()
            .map(|step| {
                let mut row = vec![step.step.clone()];
                for column in &columns {
                    row.push(match &step.unavailable {
                        Some(_) => "unavailable".into(),
                        None => column.format(&column.cell(step)),
                    });
                }
                row
            })
            .collect();
        markdown::table(&headers, &rows)
    }

    /// What the tables cannot say in a cell: why a step or a load failed.
    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let pinned = self.server_cpus.is_some();
        for step in &self.steps {
            if let Some(reason) = &step.unavailable {
                notes.push(format!("{}: unavailable: {reason}", step.step));
                continue;
            }
            for column in Column::every(pinned) {
                if let Cell::Error(error) = column.cell(step) {
                    let note = format!("{} {}: {error}", step.step, column.header());
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
            }
            if let Some(error) = step.idle.as_ref().and_then(|idle| idle.error.as_ref()) {
                notes.push(format!("{} idle connections: {error}", step.step));
            }
        }
        notes
    }

    /// In the per-core mode: what waking the other CPU costs one fast connection, from the
    /// same load with the client on the server's CPU and on another.
    fn wake_up_note(&self) -> Option<String> {
        let mut ratios = Vec::new();
        let mut extra_us = Vec::new();
        for step in &self.steps {
            let rate = |rate| match Column::Rate(rate).cell(step) {
                Cell::Value(stat) if stat.median > 0.0 => Some(stat.median),
                _ => None,
            };
            if let (Some(other), Some(same)) = (rate(Rate::Fast1), rate(Rate::Fast1SameCpu)) {
                ratios.push(same / other);
                extra_us.push(1e6 / other - 1e6 / same);
            }
        }
        let range = |values: &[f64], digits: usize| {
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{min:.digits$}–{max:.digits$}")
        };
        (!ratios.is_empty()).then(|| {
            format!(
                "Waking a CPU: one fast connection with client and server on one CPU answers \
                 {}× as many requests per second as with the client on another CPU (over {}). \
                 Each request then pays {} µs more: the other CPU has gone idle by the time \
                 the answer comes, and waking it is most of what the request costs.",
                range(&ratios, 1),
                plural(ratios.len(), "step"),
                range(&extra_us, 0)
            )
        })
    }
}

impl Results {
    /// Whether the per-core mode ran.
    pub fn pinned(&self) -> bool {
        self.plan.pinned
    }

    /// The three tables of every sweep, with their notes: what the runner prints.
    pub fn tables(&self) -> String {
        let mut out = String::new();
        for (i, sweep) in self.sweeps.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            if self.sweeps.len() > 1 {
                let _ = writeln!(out, "## {}\n", capitalized(&sweep.placement()));
            }
            for (table, title) in [
                (Table::Rates, "What the clients saw"),
                (Table::Costs, "What one request costs the server"),
                (Table::Kinds, "System calls of one fast connection, by kind"),
            ] {
                let level = if self.sweeps.len() > 1 { "###" } else { "##" };
                let _ = writeln!(out, "{level} {title}\n");
                out.push_str(&sweep.table(table));
                out.push('\n');
            }
            let notes = sweep.notes();
            if !notes.is_empty() {
                for note in notes {
                    let _ = writeln!(out, "- {note}");
                }
                out.push('\n');
            }
            if let Some(note) = sweep.wake_up_note() {
                let _ = writeln!(out, "{note}\n");
            }
        }
        if let Some(note) = self.scaling_note() {
            let _ = writeln!(out, "{note}\n");
        }
        out
    }

    /// The per-core mode measures the scaling of the multi-thread steps where the machine
    /// has CPUs to spare for it; say what was measured, and what was not.
    fn scaling_note(&self) -> Option<String> {
        if !self.pinned() {
            return None;
        }
        let counts: Vec<usize> = self
            .sweeps
            .iter()
            .filter_map(|sweep| sweep.server_cpus.as_ref().map(Vec::len))
            .collect();
        if counts.len() > 1 {
            return Some(format!(
                "Scaling: the servers ran on {} CPUs; the chart draws 64 fast and pipelined \
                 against the number of CPUs for step06, step08 and step09.",
                counts
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Some(format!(
            "Scaling: one point only. This machine has {}; servers on k CPUs need k more \
             for the clients, so {} CPU is all it can give a server. On a larger machine, \
             `--pin --cores 1,2,4` draws the scaling curve of step06, step08 and step09.",
            plural(self.machine.cores, "CPU"),
            counts.first().copied().unwrap_or(1)
        ))
    }

    /// The content of `table.md`: how it was made, on what, the tables, and how to read them.
    pub fn document(&self) -> String {
        let placement = self.sweeps.first().map_or(String::new(), |sweep| {
            if self.sweeps.len() == 1 {
                format!(" Placement: {}.", sweep.placement())
            } else {
                String::new()
            }
        });
        let rounds = if self.plan.repeat > 1 {
            format!(
                "{} rounds, interleaved (every step once per round); a rate is the median of \
                 the rounds, and `±N%` says how far the farthest round was from it",
                self.plan.repeat
            )
        } else {
            "one round".into()
        };
        format!(
            "# Results\n\n\
             Made by `{}`\non {}.\n\n\
             Each load ran {} s, {rounds}.{placement} Slow requests are fib({}); the idle \
             column opens {} connections.\n\n{}{}",
            self.command,
            self.machine.summary(),
            self.plan.secs,
            self.plan.slow_n,
            super::columns::thousands(self.plan.idle as u64),
            self.tables(),
            self.legend()
        )
    }

    /// How to read the tables, and what `–` means here.
    pub fn legend(&self) -> String {
        let counted = match &self.counting {
            None => "Counts come from a pass of their own after the timed rounds, with perf's \
                     counters on every thread of the server (`raw_syscalls:sys_enter`, \
                     `syscalls:sys_enter_*`, `context-switches`), so that counting never \
                     slows a rate. CPU µs is the server's user + system time \
                     (`/proc/PID/stat`) over the timed rounds, per request."
                .to_string(),
            Some(why) => format!(
                "System calls and context switches were not counted: {why}. CPU µs is the \
                 server's user + system time (`/proc/PID/stat`), per request."
            ),
        };
        format!(
            "How to read them: req/s, higher is better; s/req, µs, KiB and every cost, lower \
             is better. calls/req: system calls the server made per request, switches/req: \
             its context switches per request, both over all its threads. {counted} \
             \"starved\": a client got no answer at all while the load ran. \"–\": not \
             measured (skipped, not counted here, or no /proc on this system).\n"
        )
    }

    /// The rates and costs again, each cell as new / old, for the sweeps, steps and cells
    /// both runs measured.
    pub fn compare(&self, old: &Results) -> String {
        let mut out = String::new();
        for (sweep, old_sweep) in self.sweeps.iter().zip(&old.sweeps) {
            let pinned = sweep.server_cpus.is_some();
            let columns: Vec<Column> = [Table::Rates, Table::Costs]
                .into_iter()
                .flat_map(|table| Column::of(table, pinned))
                .collect();
            let mut headers = vec!["step".to_string()];
            headers.extend(columns.iter().map(|c| c.header()));
            let rows: Vec<Vec<String>> = sweep
                .steps
                .iter()
                .map(|step| {
                    let old_step = old_sweep.steps.iter().find(|s| s.step == step.step);
                    let mut row = vec![step.step.clone()];
                    for column in &columns {
                        let ratio = old_step.and_then(|old_step| {
                            match (column.cell(step), column.cell(old_step)) {
                                (Cell::Value(new), Cell::Value(old)) if old.median > 0.0 => {
                                    Some(new.median / old.median)
                                }
                                _ => None,
                            }
                        });
                        row.push(ratio.map_or_else(|| "–".into(), |r| format!("{r:.2}×")));
                    }
                    row
                })
                .collect();
            out.push_str(&markdown::table(&headers, &rows));
        }
        out
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
        std::fs::write(folder.join("chart.svg"), super::chart::svg(self))?;
        Ok(())
    }

    /// Reads a `results.json`.
    ///
    /// # Errors
    ///
    /// A message naming the file when it cannot be read or is not a results file of this
    /// runner.
    pub fn read(path: &Path) -> Result<Results, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a results file of this runner (an older format?): {e}",
                path.display()
            )
        })
    }
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::table::runs::FastRun;

    pub(crate) fn fast_run(req_per_sec: f64) -> FastRun {
        FastRun {
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
            server_cpu_s: Some(0.002),
            error: None,
        }
    }

    pub(crate) fn results(req_per_sec: f64) -> Results {
        let counts = Counts {
            answered: 100,
            syscalls: 300,
            by_name: BTreeMap::new(),
            context_switches: 100,
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
                repeat: 2,
                pinned: false,
            },
            counting: None,
            sweeps: vec![Sweep {
                server_cpus: None,
                load_cpus: None,
                steps: vec![
                    StepResult {
                        step: "step01".into(),
                        unavailable: None,
                        rounds: vec![
                            Round {
                                fast_1: Some(fast_run(req_per_sec)),
                                ..Round::default()
                            },
                            Round {
                                fast_1: Some(fast_run(req_per_sec * 1.1)),
                                ..Round::default()
                            },
                        ],
                        counts: [(Load::Fast1, Ok(counts))].into_iter().collect(),
                        idle: None,
                    },
                    StepResult {
                        step: "step07".into(),
                        unavailable: Some("io_uring is not available here".into()),
                        rounds: Vec::new(),
                        counts: BTreeMap::new(),
                        idle: None,
                    },
                ],
            }],
        }
    }

    #[test]
    fn every_table_has_every_column_aligned() {
        let results = results(40_000.0);
        for table in [Table::Rates, Table::Costs, Table::Kinds] {
            let text = results.sweeps[0].table(table);
            let lines: Vec<&str> = text.lines().collect();
            for column in Column::of(table, false) {
                assert!(lines[0].contains(&column.header()), "{}", column.header());
            }
            assert!(lines[1].starts_with("| ----"), "{}", lines[1]);
            assert!(lines[2].starts_with("| step01 |"));
            assert!(lines[3].contains("unavailable"));
            let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
            assert!(widths.windows(2).all(|w| w[0] == w[1]), "{widths:?}");
        }
        let rates = results.sweeps[0].table(Table::Rates);
        assert!(
            rates.contains(" 42,000 ±5% |"),
            "median of 40,000 and 44,000: {rates}"
        );
        let costs = results.sweeps[0].table(Table::Costs);
        assert!(costs.contains(" 3.00 |"), "{costs}");
        assert!(
            costs.contains(" 20.0 ±0% |"),
            "2 ms for 100 requests: {costs}"
        );
        let document = results.document();
        assert!(document.contains("- step07: unavailable: io_uring is not available here"));
        assert!(document.contains("## What one request costs the server"));
        assert!(document.contains("2 rounds, interleaved"));
    }

    #[test]
    fn without_counting_the_legend_says_why() {
        let mut results = results(1.0);
        results.counting = Some("perf_event_open refused: run as root".into());
        assert!(
            results
                .document()
                .contains("were not counted: perf_event_open refused: run as root")
        );
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

    #[test]
    fn the_per_core_mode_says_what_waking_a_cpu_costs() {
        let mut results = results(10_000.0);
        results.plan.pinned = true;
        let sweep = &mut results.sweeps[0];
        sweep.server_cpus = Some(vec![0]);
        sweep.load_cpus = Some(vec![1]);
        for round in &mut sweep.steps[0].rounds {
            round.fast_1 = Some(fast_run(10_000.0));
            round.fast_1_same_cpu = Some(fast_run(40_000.0));
        }
        let document = results.document();
        assert!(
            document.contains("each server on CPU 0 (1 CPU of its own)"),
            "{document}"
        );
        assert!(document.contains("4.0–4.0× as many requests"), "{document}");
        assert!(document.contains("75–75 µs more"), "{document}");
        assert!(document.contains("Scaling: one point only"), "{document}");
        assert!(document.contains("1 fast, same CPU (req/s)"));
    }
}
