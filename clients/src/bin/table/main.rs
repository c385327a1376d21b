//! The results table: every step, measured under the same loads, on this machine.
//!
//! ```text
//! cargo run --release -p clients --bin table
//! cargo run --release -p clients --bin table -- --steps step05,step06 --secs 3
//! cargo run --release -p clients --bin table -- --compare results/results.json
//! ```
//!
//! It builds the steps' release binaries, starts each as a process of its own on a free
//! port (reading its `listening on` line), runs every load of the table against it with the
//! same client code as the `fast` and `slow` binaries, stops it, and goes on to the next.
//! Then it prints the Markdown table and writes it, with every raw number as JSON and a
//! chart as SVG, under `results/`.
//!
//! A load that a step cannot serve (a second client of step01) ends after `--secs` like any
//! other and shows `starved`: the runner never waits on a step for longer than that.

mod chart;
mod columns;
mod idle;
mod machine;
mod output;
mod process;
mod runs;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use machine::Machine;
use output::{Results, StepResult};
use process::StepProcess;
use runs::{Load, Plan, Runs};

/// Measures every step of the workbook under the same loads and prints the results table:
/// fast clients (1, 2, 64, pipelined), slow clients (fib(40)), both at once, latency, and
/// memory per idle connection. Writes results/table.md, results/results.json and
/// results/chart.svg.
#[derive(Parser, Debug)]
#[command(name = "table")]
struct Args {
    /// Steps to measure, comma-separated (default: every folder under steps/)
    #[arg(long, value_delimiter = ',')]
    steps: Vec<String>,

    /// Seconds each load runs
    #[arg(long, default_value = "5", value_parser = clients::cli::parse_secs)]
    secs: Duration,

    /// The n of the slow requests
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=45))]
    slow_n: u32,

    /// Idle connections opened for the memory column (0 skips it)
    #[arg(long, default_value_t = 10_000)]
    idle: usize,

    /// An earlier results.json: also print each cell as new / old
    #[arg(long, value_name = "OLD.json")]
    compare: Option<PathBuf>,

    /// Folder for table.md, results.json and chart.svg
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Cargo profile to build and run the steps with (`dev` for a quick try)
    #[arg(long, default_value = "release")]
    profile: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("table: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let workspace = workspace();
    let available = process::discover_steps(&workspace)
        .map_err(|e| format!("cannot list {}: {e}", workspace.join("steps").display()))?;
    let steps = select_steps(&available, &args.steps)?;
    let old = args.compare.as_deref().map(Results::read).transpose()?;

    let plan = Plan {
        secs: args.secs.as_secs_f64(),
        slow_n: args.slow_n,
        idle: usable_idle_count(args.idle),
    };
    let binaries = process::build(&workspace, &steps, &args.profile)?;

    let progress = progress_bar((steps.len() * Load::ALL.len()) as u64);
    let mut results = Results {
        command: command_line(),
        machine: Machine::this(),
        plan: plan.clone(),
        steps: Vec::new(),
    };
    for step in &steps {
        progress.set_message(format!("{step}: starting"));
        let binary = binaries.join(format!("{step}{}", std::env::consts::EXE_SUFFIX));
        let result = match StepProcess::start(&binary) {
            Ok(process) => {
                let mut runs = Runs::default();
                for load in Load::ALL {
                    progress.set_message(format!("{step}: {}", load.describe()));
                    runs::run_load(load, &process, &plan, &mut runs);
                    progress.inc(1);
                }
                process.stop();
                StepResult {
                    step: step.clone(),
                    unavailable: None,
                    runs,
                }
            }
            Err(reason) => {
                progress.inc(Load::ALL.len() as u64);
                StepResult {
                    step: step.clone(),
                    unavailable: Some(reason),
                    runs: Runs::default(),
                }
            }
        };
        results.steps.push(result);
    }
    progress.finish_and_clear();

    print!("{}", results.table());
    if let Some(old) = &old {
        println!(
            "\nCompared with {} ({}), new / old:\n",
            old.command, old.machine.date
        );
        print!("{}", results.compare(old));
    }
    let folder = args
        .out
        .clone()
        .unwrap_or_else(|| workspace.join("results"));
    results
        .write(&folder)
        .map_err(|e| format!("cannot write the results to {}: {e}", folder.display()))?;
    println!(
        "\nwritten: {}",
        folder.join("{table.md,results.json,chart.svg}").display()
    );
    Ok(())
}

/// The workspace this runner belongs to (the folder above `clients/`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the clients crate sits inside the workspace")
        .to_path_buf()
}

/// The steps to measure, in order: all of them, or those named (each must exist).
fn select_steps(available: &[(String, PathBuf)], wanted: &[String]) -> Result<Vec<String>, String> {
    let names: Vec<String> = available.iter().map(|(name, _)| name.clone()).collect();
    if wanted.is_empty() {
        return Ok(names);
    }
    for step in wanted {
        if !names.contains(step) {
            return Err(format!(
                "no step named {step:?} (there are: {})",
                names.join(", ")
            ));
        }
    }
    Ok(names
        .into_iter()
        .filter(|name| wanted.contains(name))
        .collect())
}

/// The idle column needs a descriptor per connection on each side (the runner and the
/// step, which inherits the runner's limit). Raise the limit if allowed; if the hard limit
/// is too low, say what to run and measure fewer connections.
fn usable_idle_count(wanted: usize) -> usize {
    if wanted == 0 {
        return 0;
    }
    // Room for the step's own descriptors (listener, poller, pipes) and the runner's.
    let needed = wanted as u64 + 200;
    let limit = process::raise_fd_limit(needed);
    if limit >= needed {
        return wanted;
    }
    let usable = limit.saturating_sub(200) as usize;
    eprintln!(
        "table: {wanted} idle connections need {needed} open files, but the limit is {limit}: \
         measuring {usable}. To measure all, raise the hard limit first \
         (as root: `ulimit -Hn {needed}`) or pass --idle {usable}."
    );
    usable
}

/// The command as a person would type it again, for the header of table.md.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut line = "cargo run --release -p clients --bin table".to_string();
    if !args.is_empty() {
        line.push_str(" -- ");
        line.push_str(&args.join(" "));
    }
    line
}

/// A progress bar on stderr when it is a terminal; nothing otherwise (CI logs, pipes).
fn progress_bar(length: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("a constant, valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_selected_by_name_in_order() {
        let available: Vec<(String, PathBuf)> = ["step01", "step02", "step05"]
            .iter()
            .map(|s| (s.to_string(), PathBuf::new()))
            .collect();
        assert_eq!(select_steps(&available, &[]).unwrap().len(), 3);
        assert_eq!(
            select_steps(&available, &["step05".into(), "step01".into()]).unwrap(),
            vec!["step01", "step05"]
        );
        let error = select_steps(&available, &["step9".into()]).unwrap_err();
        assert!(error.contains("no step named \"step9\""), "{error}");
    }
}
