//! The measurements of one step: the loads of the results table, run one after another
//! against the step's process, with their raw numbers kept for the JSON file.

use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::Duration;

use clients::{FastConfig, FastReport, SlowConfig, SlowReport, run_fast, run_slow};
use serde::{Deserialize, Serialize};

use crate::idle::{IdleRun, measure_idle};
use crate::process::StepProcess;

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
}

/// Every raw number measured for one step; `None` where a load was not run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Runs {
    pub fast_1: Option<FastRun>,
    pub fast_2: Option<FastRun>,
    pub fast_64: Option<FastRun>,
    pub pipelined: Option<FastRun>,
    pub slow_1: Option<SlowRun>,
    pub slow_2: Option<SlowRun>,
    pub mixed_fast: Option<FastRun>,
    pub mixed_slow: Option<SlowRun>,
    pub idle: Option<IdleRun>,
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
    fn from_report(conns: usize, report: &FastReport) -> FastRun {
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
            error: Some(error),
        }
    }

    /// Whether some connection got no answer at all.
    pub fn starved(&self) -> bool {
        self.per_connection.contains(&0)
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

/// The loads of the table, in the order they run. The idle connections come last: opening
/// thousands of connections leaves work behind (closing them) that must not disturb a
/// throughput measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    Fast1,
    Fast2,
    Fast64,
    Pipelined,
    Slow1,
    Slow2,
    FastAndSlow,
    Idle,
}

impl Load {
    pub const ALL: [Load; 8] = [
        Load::Fast1,
        Load::Fast2,
        Load::Fast64,
        Load::Pipelined,
        Load::Slow1,
        Load::Slow2,
        Load::FastAndSlow,
        Load::Idle,
    ];

    /// For the progress display.
    pub fn describe(self) -> &'static str {
        match self {
            Load::Fast1 => "1 fast connection",
            Load::Fast2 => "2 fast connections",
            Load::Fast64 => "64 fast connections",
            Load::Pipelined => "8 pipelined connections, 16 in flight",
            Load::Slow1 => "1 slow client",
            Load::Slow2 => "2 slow clients",
            Load::FastAndSlow => "1 fast and 1 slow client at once",
            Load::Idle => "idle connections and memory",
        }
    }
}

/// Runs `load` against `step` and records it in `runs`.
pub fn run_load(load: Load, step: &StepProcess, plan: &Plan, runs: &mut Runs) {
    let duration = Duration::from_secs_f64(plan.secs);
    let fast = |conns, depth| fast_load(step, conns, depth, duration);
    let slow = |conns| slow_load(step, conns, plan.slow_n, duration);
    match load {
        Load::Fast1 => runs.fast_1 = Some(fast(1, 1)),
        Load::Fast2 => runs.fast_2 = Some(fast(2, 1)),
        Load::Fast64 => runs.fast_64 = Some(fast(64, 1)),
        Load::Pipelined => runs.pipelined = Some(fast(8, 16)),
        Load::Slow1 => runs.slow_1 = Some(slow(1)),
        Load::Slow2 => runs.slow_2 = Some(slow(2)),
        Load::FastAndSlow => {
            // Slow first, so its request is already computing when the fast client starts.
            let (fast_run, slow_run) = thread::scope(|scope| {
                let slow_thread = scope.spawn(|| slow(1));
                let fast_run = fast(1, 1);
                (
                    fast_run,
                    slow_thread.join().expect("the slow load does not panic"),
                )
            });
            runs.mixed_fast = Some(fast_run);
            runs.mixed_slow = Some(slow_run);
        }
        Load::Idle => {
            if plan.idle > 0 {
                runs.idle = Some(measure_idle(step, plan.idle));
            }
        }
    }
    step.settle(SETTLE_PATIENCE);
}

fn fast_load(step: &StepProcess, conns: usize, depth: usize, duration: Duration) -> FastRun {
    let config = FastConfig {
        addr: step.addr,
        conns,
        depth,
        n: 1,
        duration: Some(duration),
        count: None,
    };
    match run_fast(&config, &AtomicBool::new(false), &mut |_| {}) {
        Ok(report) => FastRun::from_report(conns, &report),
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
        Ok(report) => SlowRun::from_report(conns, &report),
        Err(error) => SlowRun::failed(conns, n, error.to_string()),
    }
}
