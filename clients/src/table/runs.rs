//! The loads of the results table and their raw numbers: one round of every load against a
//! step's process, and the counted pass that measures what each request costs.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::costs::{Counting, Counts};
use super::pinning;
use super::process::StepProcess;
use crate::{FastConfig, FastReport, SlowConfig, SlowReport, run_fast, run_slow};

/// The longest a step may keep using CPU after a load before the next starts anyway.
const SETTLE_PATIENCE: Duration = Duration::from_secs(20);

/// What the runner was asked to measure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    /// Seconds each load runs.
    pub secs: f64,
    /// The `n` of slow requests.
    pub slow_n: u32,
    /// Idle connections for the memory column (0: skipped).
    pub idle: usize,
    /// Rounds of every load; the table shows the median of the rounds.
    pub repeat: usize,
    /// The per-core mode: each server on CPUs of its own, the load on the others.
    pub pinned: bool,
}

/// One load of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// One fast connection (in the per-core mode: the client on another CPU).
    #[serde(rename = "fast_1")]
    Fast1,
    /// Per-core mode only: one fast connection, the client on the server's CPU.
    #[serde(rename = "fast_1_same_cpu")]
    Fast1SameCpu,
    #[serde(rename = "fast_2")]
    Fast2,
    #[serde(rename = "fast_64")]
    Fast64,
    /// 8 connections, 16 requests in flight each.
    Pipelined,
    #[serde(rename = "slow_1")]
    Slow1,
    #[serde(rename = "slow_2")]
    Slow2,
    /// One fast and one slow client at once.
    FastAndSlow,
}

impl Load {
    /// The loads of one round, in the order they run.
    pub fn timed(pinned: bool) -> Vec<Load> {
        let mut loads = vec![Load::Fast1];
        if pinned {
            loads.push(Load::Fast1SameCpu);
        }
        loads.extend([
            Load::Fast2,
            Load::Fast64,
            Load::Pipelined,
            Load::Slow1,
            Load::Slow2,
            Load::FastAndSlow,
        ]);
        loads
    }

    /// The loads whose cost per request is counted: the fast ones, where a request is only
    /// its system calls (fib(1) costs nothing).
    pub fn counted(pinned: bool) -> Vec<Load> {
        Load::timed(pinned)
            .into_iter()
            .filter(|load| load.fast().is_some() && *load != Load::FastAndSlow)
            .collect()
    }

    /// Connections and requests in flight of the fast client, if the load has one.
    fn fast(self) -> Option<(usize, usize)> {
        match self {
            Load::Fast1 | Load::Fast1SameCpu | Load::FastAndSlow => Some((1, 1)),
            Load::Fast2 => Some((2, 1)),
            Load::Fast64 => Some((64, 1)),
            Load::Pipelined => Some((8, 16)),
            Load::Slow1 | Load::Slow2 => None,
        }
    }

    /// For the progress display.
    pub fn describe(self) -> &'static str {
        match self {
            Load::Fast1 => "1 fast connection",
            Load::Fast1SameCpu => "1 fast connection, client on the server's CPU",
            Load::Fast2 => "2 fast connections",
            Load::Fast64 => "64 fast connections",
            Load::Pipelined => "8 pipelined connections, 16 in flight",
            Load::Slow1 => "1 slow client",
            Load::Slow2 => "2 slow clients",
            Load::FastAndSlow => "1 fast and 1 slow client at once",
        }
    }
}

/// Where a load runs: the CPUs of the server (set when it was started) and of the clients.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// The server's CPUs, in the per-core mode.
    pub server: Option<Vec<usize>>,
    /// The clients' CPUs, in the per-core mode.
    pub load: Option<Vec<usize>>,
}

/// Every raw number of one round of one step; `None` where a load was not run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Round {
    pub fast_1: Option<FastRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_1_same_cpu: Option<FastRun>,
    pub fast_2: Option<FastRun>,
    pub fast_64: Option<FastRun>,
    pub pipelined: Option<FastRun>,
    pub slow_1: Option<SlowRun>,
    pub slow_2: Option<SlowRun>,
    pub mixed_fast: Option<FastRun>,
    pub mixed_slow: Option<SlowRun>,
}

impl Round {
    /// The fast client's run of `load`, if it ran (for the fast+slow load, its fast half).
    pub fn fast(&self, load: Load) -> Option<&FastRun> {
        match load {
            Load::Fast1 => self.fast_1.as_ref(),
            Load::Fast1SameCpu => self.fast_1_same_cpu.as_ref(),
            Load::Fast2 => self.fast_2.as_ref(),
            Load::Fast64 => self.fast_64.as_ref(),
            Load::Pipelined => self.pipelined.as_ref(),
            Load::FastAndSlow => self.mixed_fast.as_ref(),
            Load::Slow1 | Load::Slow2 => None,
        }
    }
}

/// One fast load.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FastRun {
    pub conns: usize,
    pub depth: usize,
    pub secs: f64,
    pub answered: u64,
    pub per_connection: Vec<u64>,
    pub req_per_sec: f64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub p999_us: Option<u64>,
    pub max_us: Option<u64>,
    /// CPU seconds the server used during the load (user and system, every thread), where
    /// `/proc` tells.
    #[serde(default)]
    pub server_cpu_s: Option<f64>,
    /// The client's error, when the load failed.
    pub error: Option<String>,
}

/// One slow load.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlowRun {
    pub conns: usize,
    pub n: u32,
    pub secs: f64,
    pub per_connection: Vec<u64>,
    /// Seconds each answered request took, in the order they arrived.
    pub times_s: Vec<f64>,
    pub error: Option<String>,
}

impl FastRun {
    fn from_report(conns: usize, report: &FastReport, server_cpu_s: Option<f64>) -> FastRun {
        let percentiles = report.latency.percentiles();
        FastRun {
            conns,
            depth: report.depth,
            secs: report.elapsed.as_secs_f64(),
            answered: report.answered,
            per_connection: report.per_connection.clone(),
            req_per_sec: report.req_per_sec(),
            p50_us: percentiles.map(|p| p.p50),
            p99_us: percentiles.map(|p| p.p99),
            p999_us: percentiles.map(|p| p.p999),
            max_us: percentiles.map(|p| p.max),
            server_cpu_s,
            error: None,
        }
    }

    fn failed(conns: usize, depth: usize, error: String) -> FastRun {
        FastRun {
            conns,
            depth,
            secs: 0.0,
            answered: 0,
            per_connection: Vec::new(),
            req_per_sec: 0.0,
            p50_us: None,
            p99_us: None,
            p999_us: None,
            max_us: None,
            server_cpu_s: None,
            error: Some(error),
        }
    }

    /// Whether some connection got no answer at all.
    pub fn starved(&self) -> bool {
        self.per_connection.contains(&0)
    }

    /// Server CPU microseconds per answered request.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        let cpu = self.server_cpu_s?;
        (self.answered > 0 && self.error.is_none()).then(|| cpu * 1e6 / self.answered as f64)
    }
}

impl SlowRun {
    fn from_report(conns: usize, report: &SlowReport) -> SlowRun {
        SlowRun {
            conns,
            n: report.n,
            secs: report.elapsed.as_secs_f64(),
            per_connection: report.per_connection.clone(),
            times_s: report.times.iter().map(Duration::as_secs_f64).collect(),
            error: None,
        }
    }

    fn failed(conns: usize, n: u32, error: String) -> SlowRun {
        SlowRun {
            conns,
            n,
            secs: 0.0,
            per_connection: Vec::new(),
            times_s: Vec::new(),
            error: Some(error),
        }
    }

    /// Mean seconds per request, if any was answered.
    pub fn mean_s(&self) -> Option<f64> {
        (!self.times_s.is_empty())
            .then(|| self.times_s.iter().sum::<f64>() / self.times_s.len() as f64)
    }

    /// Whether some connection got no answer at all.
    pub fn starved(&self) -> bool {
        self.per_connection.contains(&0)
    }
}

/// Runs `load` against `step` and records it in `round`, then waits for the step to settle.
pub fn run_load(load: Load, step: &StepProcess, plan: &Plan, place: &Placement, round: &mut Round) {
    let duration = Duration::from_secs_f64(plan.secs);
    let slow = |conns| slow_load(step, conns, plan.slow_n, duration);
    match load {
        Load::Slow1 => round.slow_1 = Some(slow(1)),
        Load::Slow2 => round.slow_2 = Some(slow(2)),
        Load::FastAndSlow => {
            // Slow first, so its request is already computing when the fast client starts.
            let (fast_run, slow_run) = thread::scope(|scope| {
                let slow_thread = scope.spawn(|| slow(1));
                let fast_run = fast_load(step, 1, 1, duration);
                (
                    fast_run,
                    slow_thread.join().expect("the slow load does not panic"),
                )
            });
            round.mixed_fast = Some(fast_run);
            round.mixed_slow = Some(slow_run);
        }
        fast => {
            let (conns, depth) = fast.fast().expect("every other load has a fast client");
            let run = on_cpus(same_cpu(load, place), || {
                fast_load(step, conns, depth, duration)
            });
            *fast_slot(round, fast) = Some(run);
        }
    }
    step.settle(SETTLE_PATIENCE);
}

/// Runs a fast `load` with counters on the server's threads: what the requests cost it.
///
/// # Errors
///
/// When counting is refused or the load did not run through.
pub fn count_load(
    load: Load,
    step: &StepProcess,
    plan: &Plan,
    place: &Placement,
) -> Result<Counts, String> {
    let (conns, depth) = load
        .fast()
        .ok_or_else(|| format!("{load:?} has no fast client to count requests with"))?;
    let duration = Duration::from_secs_f64(plan.secs);
    let counting = Counting::start(step.pid())?;
    let run = on_cpus(same_cpu(load, place), || {
        fast_load(step, conns, depth, duration)
    });
    let counts = counting.finish(run.answered)?;
    step.settle(SETTLE_PATIENCE);
    match run.error {
        Some(error) => Err(error),
        None => Ok(counts),
    }
}

/// The counted pass of one step: every counted load once.
pub fn count_loads(
    step: &StepProcess,
    plan: &Plan,
    place: &Placement,
    mut progress: impl FnMut(Load, &Result<Counts, String>),
) -> BTreeMap<Load, Result<Counts, String>> {
    Load::counted(plan.pinned)
        .into_iter()
        .map(|load| {
            let counts = count_load(load, step, plan, place);
            progress(load, &counts);
            (load, counts)
        })
        .collect()
}

/// The CPUs the client of `load` runs on when they differ from the usual load CPUs: the
/// server's own, for the same-CPU load.
fn same_cpu(load: Load, place: &Placement) -> Option<&[usize]> {
    match load {
        Load::Fast1SameCpu => place.server.as_deref().map(|cpus| &cpus[..1]),
        _ => None,
    }
}

/// Runs `work` on a thread of its own pinned to `cpus` (the calling thread's CPUs when
/// `None`), so that the caller's own placement is untouched.
fn on_cpus<T: Send>(cpus: Option<&[usize]>, work: impl FnOnce() -> T + Send) -> T {
    let Some(cpus) = cpus else {
        return work();
    };
    thread::scope(|scope| {
        scope
            .spawn(|| {
                // Pinning was possible for the server, so it is for this thread; if not,
                // the load runs where it may and the numbers say so.
                let _ = pinning::pin_this_thread(cpus);
                work()
            })
            .join()
            .expect("a load does not panic")
    })
}

fn fast_slot(round: &mut Round, load: Load) -> &mut Option<FastRun> {
    match load {
        Load::Fast1 => &mut round.fast_1,
        Load::Fast1SameCpu => &mut round.fast_1_same_cpu,
        Load::Fast2 => &mut round.fast_2,
        Load::Fast64 => &mut round.fast_64,
        Load::Pipelined => &mut round.pipelined,
        Load::FastAndSlow => &mut round.mixed_fast,
        Load::Slow1 | Load::Slow2 => unreachable!("slow loads have no fast run"),
    }
}

fn fast_load(step: &StepProcess, conns: usize, depth: usize, duration: Duration) -> FastRun {
    let config = FastConfig {
        addr: step.addr,
        conns,
        depth,
        n: 1,
        duration: Some(duration),
        count: None,
        rate: None,
    };
    let cpu_before = step.cpu_time();
    let result = run_fast(&config, &AtomicBool::new(false), &mut |_| {});
    let server_cpu_s = cpu_before
        .zip(step.cpu_time())
        .map(|(before, after)| after.saturating_sub(before).as_secs_f64());
    match result {
        // A server that closes a connection during a load (it should not) fails the load.
        Ok(report) if report.ended.by_server() => {
            FastRun::failed(conns, depth, report.ended.to_string())
        }
        Ok(report) => FastRun::from_report(conns, &report, server_cpu_s),
        Err(error) => FastRun::failed(conns, depth, error.to_string()),
    }
}

fn slow_load(step: &StepProcess, conns: usize, n: u32, duration: Duration) -> SlowRun {
    let config = SlowConfig {
        addr: step.addr,
        conns,
        n,
        duration: Some(duration),
        count: None,
    };
    match run_slow(&config, &AtomicBool::new(false), &|_| {}) {
        Ok(report) if report.ended.by_server() => {
            SlowRun::failed(conns, n, report.ended.to_string())
        }
        Ok(report) => SlowRun::from_report(conns, &report),
        Err(error) => SlowRun::failed(conns, n, error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_cpu_load_exists_only_when_pinned() {
        assert!(!Load::timed(false).contains(&Load::Fast1SameCpu));
        assert_eq!(Load::timed(true)[1], Load::Fast1SameCpu);
        assert_eq!(
            Load::counted(false),
            vec![Load::Fast1, Load::Fast2, Load::Fast64, Load::Pipelined]
        );
        assert!(Load::counted(true).contains(&Load::Fast1SameCpu));
    }

    #[test]
    fn cpu_per_request_needs_requests_and_a_cpu_time() {
        let mut run = FastRun::failed(1, 1, String::new());
        run.error = None;
        run.answered = 20_000;
        run.server_cpu_s = Some(0.5);
        assert_eq!(run.cpu_us_per_request(), Some(25.0));
        run.server_cpu_s = None;
        assert_eq!(run.cpu_us_per_request(), None);
    }
}
