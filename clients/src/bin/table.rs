//! The results table: every step, measured under the same loads, on this machine.
//!
//! ```text
//! cargo run --release -p clients --bin table
//! cargo run --release -p clients --bin table -- --steps step05,step06 --secs 1 --repeat 1
//! cargo run --release -p clients --bin table -- --pin
//! cargo run --release -p clients --bin table -- --compare results/results.json
//! ```
//!
//! It builds the steps' release binaries, starts each as a process of its own on a free
//! port (reading its `listening on` line), runs every load of the table against it with the
//! same client code as the `fast` and `slow` binaries, stops it, and goes on to the next, in
//! `--repeat` interleaved rounds. Then a pass with perf's counters on the server counts what a
//! request costs, and the idle connections measure memory. It prints the tables and writes
//! them, with every raw number as JSON and a chart as SVG, under `target/results/` (the
//! committed `results/` only with `--update-results`).
//!
//! A load that a step cannot serve (a second client of step01) ends after `--secs` like any
//! other and shows `starved`: the runner never waits on a step for longer than that.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clients::table::columns::{Column, Rate, thousands};
use clients::table::costs::{self, Counts};
use clients::table::idle::measure_idle;
use clients::table::machine::Machine;
use clients::table::output::{Results, StepResult, Sweep};
use clients::table::pinning::{self, cpu_list};
use clients::table::process::{self, StepProcess};
use clients::table::runs::{self, Load, Placement, Plan, Round};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Measures every step of the workbook under the same loads and prints the results tables:
/// what the clients saw (fast clients: 1, 2, 64, pipelined; slow clients: fib(40); both at
/// once; latency; memory per idle connection) and what one request cost the server (system
/// calls, CPU time, context switches).
///
/// Every load runs in --repeat interleaved rounds (every step once per round) and the table
/// shows the median with its spread. System calls and context switches are counted with the
/// kernel's perf events, in a pass of their own (root, or kernel.perf_event_paranoid=-1).
///
/// Writes table.md, results.json and chart.svg under target/results/ (target/results/pinned/
/// with --pin); --update-results writes the committed results/ instead.
#[derive(Parser, Debug)]
#[command(name = "table")]
struct Args {
    /// Steps to measure, comma-separated (default: every folder under steps/)
    #[arg(long, value_delimiter = ',')]
    steps: Vec<String>,

    /// Seconds each load runs
    #[arg(long, default_value = "2", value_parser = clients::cli::parse_secs)]
    secs: Duration,

    /// Rounds of every load, interleaved; the table shows their median and spread
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    repeat: u32,

    /// The n of the slow requests
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=45))]
    slow_n: u32,

    /// Idle connections opened for the memory column (0 skips it)
    #[arg(long, default_value_t = 10_000)]
    idle: usize,

    /// Per-core mode: each server on CPUs of its own (its threads and pools sized to them),
    /// the clients on the others; adds one fast connection with the client on the server's
    /// CPU, which shows what waking an idle CPU costs (Linux)
    #[arg(long)]
    pin: bool,

    /// With --pin: how many CPUs the servers get, one table each (a core sweep:
    /// `--cores 1,2,4`); each needs at least one CPU more for the clients
    #[arg(long, value_delimiter = ',', default_value = "1", requires = "pin",
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    cores: Vec<u32>,

    /// Skip the counted pass (system calls and context switches per request)
    #[arg(long)]
    no_count: bool,

    /// An earlier results.json: also print each cell as new / old
    #[arg(long, value_name = "OLD.json")]
    compare: Option<PathBuf>,

    /// Folder for table.md, results.json and chart.svg [default: target/results, or
    /// target/results/pinned with --pin]
    #[arg(long, value_name = "DIR", conflicts_with = "update_results")]
    out: Option<PathBuf>,

    /// Write the committed results (results/, or results/pinned/ with --pin) instead of
    /// target/: for a new run to commit, README and slides then quote it
    #[arg(long)]
    update_results: bool,

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
    let placements = placements(args)?;
    let folder = output_folder(args, &workspace);

    let plan = Plan {
        secs: args.secs.as_secs_f64(),
        slow_n: args.slow_n,
        idle: usable_idle_count(args.idle),
        repeat: args.repeat as usize,
        pinned: args.pin,
    };
    let counting = if args.no_count {
        Some("skipped (--no-count)".to_string())
    } else {
        costs::available().err()
    };
    if let Some(why) = &counting {
        eprintln!("table: not counting system calls: {why}");
    }
    let binaries = process::build(&workspace, &steps, &args.profile)?;
    let machine = Machine::this();

    let per_sweep = steps.len()
        * (plan.repeat * Load::timed(plan.pinned).len()
            + if counting.is_none() {
                Load::counted(plan.pinned).len()
            } else {
                0
            }
            + usize::from(plan.idle > 0));
    let progress = Progress::new((per_sweep * placements.len()) as u64);
    let mut sweeps = Vec::new();
    for place in &placements {
        if let Some(cpus) = &place.load {
            pinning::pin_this_thread(cpus)
                .map_err(|e| format!("cannot pin the clients to CPU {}: {e}", cpu_list(cpus)))?;
        }
        let sweep = measure(
            &steps,
            &binaries,
            &plan,
            place,
            counting.is_none(),
            &progress,
        );
        sweeps.push(sweep);
    }
    progress.finish();

    let results = Results {
        command: command_line(),
        machine,
        plan,
        counting,
        sweeps,
    };
    print!("{}", results.tables());
    if let Some(old) = &old {
        println!(
            "Compared with {} ({}), new / old:\n",
            old.command, old.machine.date
        );
        print!("{}", results.compare(old));
    }
    results
        .write(&folder)
        .map_err(|e| format!("cannot write the results to {}: {e}", folder.display()))?;
    println!(
        "\nwritten: {}",
        folder.join("{table.md,results.json,chart.svg}").display()
    );
    if !args.update_results && args.out.is_none() {
        println!(
            "(the committed results/ are unchanged; `--update-results` writes them, to commit)"
        );
    }
    Ok(())
}

/// Every step under every load with one placement: `repeat` interleaved rounds of the timed
/// loads, then the counted pass, then the idle connections.
fn measure(
    steps: &[String],
    binaries: &Path,
    plan: &Plan,
    place: &Placement,
    count: bool,
    progress: &Progress,
) -> Sweep {
    let mut results: Vec<StepResult> = steps
        .iter()
        .map(|step| StepResult {
            step: step.clone(),
            unavailable: None,
            rounds: Vec::new(),
            counts: BTreeMap::new(),
            idle: None,
        })
        .collect();
    let binary = |step: &str| binaries.join(format!("{step}{}", std::env::consts::EXE_SUFFIX));
    let loads = Load::timed(plan.pinned);
    let start = |result: &mut StepResult, skipped: usize| {
        if result.unavailable.is_some() {
            progress.skip(skipped);
            return None;
        }
        match StepProcess::start(&binary(&result.step), place.server.as_deref()) {
            Ok(process) => Some(process),
            Err(reason) => {
                progress.line(&format!("{}: unavailable: {reason}", result.step));
                result.unavailable = Some(reason);
                progress.skip(skipped);
                None
            }
        }
    };

    for round_number in 1..=plan.repeat {
        for result in &mut results {
            let Some(process) = start(result, loads.len()) else {
                continue;
            };
            let mut round = Round::default();
            for &load in &loads {
                progress.begin(&format!(
                    "round {round_number}/{}: {}: {}",
                    plan.repeat,
                    result.step,
                    load.describe()
                ));
                runs::run_load(load, &process, plan, place, &mut round);
                progress.done(&outcome(load, &round));
            }
            process.stop();
            result.rounds.push(round);
        }
    }
    if count {
        let counted = Load::counted(plan.pinned);
        for result in &mut results {
            let Some(process) = start(result, counted.len()) else {
                continue;
            };
            let step = result.step.clone();
            result.counts = runs::count_loads(&process, plan, place, |load, counts| {
                progress.begin(&format!("counting: {step}: {}", load.describe()));
                progress.done(&counted_outcome(counts));
            });
            process.stop();
        }
    }
    if plan.idle > 0 {
        for result in &mut results {
            let Some(process) = start(result, 1) else {
                continue;
            };
            progress.begin(&format!(
                "{}: {} idle connections",
                result.step,
                thousands(plan.idle as u64)
            ));
            let idle = measure_idle(&process, plan.idle);
            process.stop();
            result.idle = Some(idle);
            let cell = Column::Rate(Rate::IdleMemory).cell(result);
            progress.done(&format!(
                "{} KiB per connection",
                Column::Rate(Rate::IdleMemory).format(&cell)
            ));
        }
    }
    Sweep {
        server_cpus: place.server.clone(),
        load_cpus: place.load.clone(),
        steps: results,
    }
}

/// What a timed load showed, for the progress lines.
fn outcome(load: Load, round: &Round) -> String {
    let slow = |run: &Option<runs::SlowRun>| match run {
        Some(run) if run.error.is_some() => "error".to_string(),
        Some(run) => run
            .mean_s()
            .map_or("starved".into(), |mean| format!("{mean:.3} s/req")),
        None => "–".into(),
    };
    match load {
        Load::Slow1 => slow(&round.slow_1),
        Load::Slow2 => slow(&round.slow_2),
        Load::FastAndSlow => match &round.mixed_fast {
            Some(run) => format!(
                "{} req/s beside {}",
                thousands(run.req_per_sec.round() as u64),
                slow(&round.mixed_slow)
            ),
            None => "–".into(),
        },
        fast => match round.fast(fast) {
            Some(run) if run.error.is_some() => "error".into(),
            Some(run) if run.starved() => "starved".into(),
            Some(run) => format!("{} req/s", thousands(run.req_per_sec.round() as u64)),
            None => "–".into(),
        },
    }
}

fn counted_outcome(counts: &Result<Counts, String>) -> String {
    match counts {
        Ok(counts) => match counts.per_request(counts.syscalls) {
            Some(calls) => format!(
                "{calls:.2} system calls, {:.2} context switches per request",
                counts.per_request(counts.context_switches).unwrap_or(0.0)
            ),
            None => "no request answered".into(),
        },
        Err(error) => format!("not counted: {error}"),
    }
}

/// The placements to measure: the whole machine, or in the per-core mode one per `--cores`
/// entry (the servers on the first CPUs, the clients on the rest).
fn placements(args: &Args) -> Result<Vec<Placement>, String> {
    if !args.pin {
        return Ok(vec![Placement::default()]);
    }
    let cpus = pinning::allowed_cpus().map_err(|e| format!("--pin: {e}"))?;
    args.cores
        .iter()
        .map(|&cores| {
            let cores = cores as usize;
            if cores >= cpus.len() {
                return Err(format!(
                    "--cores {cores}: servers on {cores} CPUs leave none for the clients: this \
                     machine lets the runner use {} (CPU {}); the most is --cores {}",
                    cpus.len(),
                    cpu_list(&cpus),
                    cpus.len().saturating_sub(1)
                ));
            }
            Ok(Placement {
                server: Some(cpus[..cores].to_vec()),
                load: Some(cpus[cores..].to_vec()),
            })
        })
        .collect()
}

/// Where the files go: `--out`, the committed `results/` with `--update-results`, or under
/// cargo's target folder, so that measuring never changes what the tests check.
fn output_folder(args: &Args, workspace: &Path) -> PathBuf {
    let pinned = |folder: PathBuf| {
        if args.pin {
            folder.join("pinned")
        } else {
            folder
        }
    };
    if let Some(out) = &args.out {
        return out.clone();
    }
    if args.update_results {
        return pinned(workspace.join("results"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    pinned(target.join("results"))
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

/// Progress on stderr: a bar on a terminal; elsewhere (CI logs, pipes) a line per step and
/// load, so that a run of several minutes is never silent.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(length: u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                .expect("a constant, valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar: Some(bar) }
    }

    /// A load starts.
    fn begin(&self, what: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(what.to_string()),
            None => eprint!("table: {what}: "),
        }
    }

    /// The load that began has ended with `outcome`.
    fn done(&self, outcome: &str) {
        match &self.bar {
            Some(bar) => bar.inc(1),
            None => eprintln!("{outcome}"),
        }
    }

    /// Loads that will not run (the step is unavailable).
    fn skip(&self, loads: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(loads as u64);
        }
    }

    /// A line of its own.
    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("table: {text}")),
            None => eprintln!("table: {text}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
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

    #[test]
    fn results_go_under_target_unless_asked_for_the_committed_folder() {
        let workspace = Path::new("/w");
        let args = |extra: &[&str]| {
            Args::try_parse_from(["table"].iter().chain(extra)).expect("valid arguments")
        };
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        assert_eq!(output_folder(&args(&[]), workspace), target.join("results"));
        assert_eq!(
            output_folder(&args(&["--pin"]), workspace),
            target.join("results/pinned")
        );
        assert_eq!(
            output_folder(&args(&["--update-results"]), workspace),
            workspace.join("results")
        );
        assert_eq!(
            output_folder(&args(&["--out", "/tmp/x"]), workspace),
            PathBuf::from("/tmp/x")
        );
        assert!(Args::try_parse_from(["table", "--out", "x", "--update-results"]).is_err());
        assert!(
            Args::try_parse_from(["table", "--cores", "2"]).is_err(),
            "needs --pin"
        );
    }
}
