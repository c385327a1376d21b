//! The columns of the results table, and how each cell is derived from the raw runs.
//!
//! Cells are computed from the raw numbers (never stored), so a results file from an
//! earlier run can be re-tabulated and compared cell by cell.

use crate::runs::{FastRun, Runs, SlowRun};

/// One column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Fast1,
    Fast2,
    Fast64,
    Pipelined,
    Slow1,
    Slow2,
    MixedFast,
    MixedSlow,
    P99,
    IdleMemory,
}

/// What a cell shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A measurement, in the column's unit.
    Value(f64),
    /// Some client got no answer at all in the time the load ran.
    Starved,
    /// The load failed; the message goes under the table.
    Error(String),
    /// Not measured (skipped, or this OS cannot tell).
    Missing,
}

/// Whether a bigger number is better in this column (for the chart and for reading a
/// comparison).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

impl Column {
    pub const ALL: [Column; 10] = [
        Column::Fast1,
        Column::Fast2,
        Column::Fast64,
        Column::Pipelined,
        Column::Slow1,
        Column::Slow2,
        Column::MixedFast,
        Column::MixedSlow,
        Column::P99,
        Column::IdleMemory,
    ];

    /// The header, with its unit.
    pub fn header(self) -> &'static str {
        match self {
            Column::Fast1 => "1 fast (req/s)",
            Column::Fast2 => "2 fast (req/s)",
            Column::Fast64 => "64 fast (req/s)",
            Column::Pipelined => "pipelined 8×16 (req/s)",
            Column::Slow1 => "1 slow (s/req)",
            Column::Slow2 => "2 slow (s/req)",
            Column::MixedFast => "fast+slow: fast (req/s)",
            Column::MixedSlow => "fast+slow: slow (s/req)",
            Column::P99 => "1 fast p99 (µs)",
            Column::IdleMemory => "idle (KiB/conn)",
        }
    }

    pub fn better(self) -> Better {
        match self {
            Column::Fast1
            | Column::Fast2
            | Column::Fast64
            | Column::Pipelined
            | Column::MixedFast => Better::Higher,
            _ => Better::Lower,
        }
    }

    /// Whether the column is a throughput in req/s (what the chart draws).
    pub fn is_throughput(self) -> bool {
        self.better() == Better::Higher
    }

    /// The cell of this column for a step's runs.
    pub fn cell(self, runs: &Runs) -> Cell {
        match self {
            Column::Fast1 => fast_cell(&runs.fast_1, |run| run.req_per_sec),
            Column::Fast2 => fast_cell(&runs.fast_2, |run| run.req_per_sec),
            Column::Fast64 => fast_cell(&runs.fast_64, |run| run.req_per_sec),
            Column::Pipelined => fast_cell(&runs.pipelined, |run| run.req_per_sec),
            Column::MixedFast => fast_cell(&runs.mixed_fast, |run| run.req_per_sec),
            Column::P99 => match &runs.fast_1 {
                Some(run) if run.error.is_none() && !run.starved() => run
                    .p99_us
                    .map_or(Cell::Missing, |p99| Cell::Value(p99 as f64)),
                other => fast_cell(other, |_| 0.0),
            },
            Column::Slow1 => slow_cell(&runs.slow_1),
            Column::Slow2 => slow_cell(&runs.slow_2),
            Column::MixedSlow => slow_cell(&runs.mixed_slow),
            Column::IdleMemory => match &runs.idle {
                None => Cell::Missing,
                Some(idle) if idle.starved() || idle.opened < idle.wanted => Cell::Starved,
                Some(idle) => idle.kib_per_connection().map_or(Cell::Missing, Cell::Value),
            },
        }
    }

    /// A cell's text: thousands separated for req/s, milliseconds-precise seconds, whole
    /// microseconds, one decimal of KiB.
    pub fn format(self, cell: &Cell) -> String {
        match cell {
            Cell::Value(value) => match self {
                Column::Slow1 | Column::Slow2 | Column::MixedSlow => format!("{value:.3}"),
                Column::IdleMemory => format!("{value:.1}"),
                _ => thousands(value.round() as u64),
            },
            Cell::Starved => "starved".into(),
            Cell::Error(_) => "error".into(),
            Cell::Missing => "–".into(),
        }
    }
}

fn fast_cell(run: &Option<FastRun>, value: impl Fn(&FastRun) -> f64) -> Cell {
    match run {
        None => Cell::Missing,
        Some(run) => match &run.error {
            Some(error) => Cell::Error(error.clone()),
            None if run.starved() => Cell::Starved,
            None => Cell::Value(value(run)),
        },
    }
}

fn slow_cell(run: &Option<SlowRun>) -> Cell {
    match run {
        None => Cell::Missing,
        Some(run) => match (&run.error, run.mean_s()) {
            (Some(error), _) => Cell::Error(error.clone()),
            (None, _) if run.starved() => Cell::Starved,
            (None, Some(mean)) => Cell::Value(mean),
            (None, None) => Cell::Starved,
        },
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idle::IdleRun;

    fn fast(per_connection: Vec<u64>, req_per_sec: f64) -> FastRun {
        FastRun {
            conns: per_connection.len(),
            depth: 1,
            secs: 1.0,
            answered: per_connection.iter().sum(),
            per_connection,
            req_per_sec,
            p50_us: Some(20),
            p99_us: Some(45),
            p999_us: Some(90),
            max_us: Some(400),
            error: None,
        }
    }

    fn slow(per_connection: Vec<u64>, times_s: Vec<f64>) -> SlowRun {
        SlowRun {
            conns: per_connection.len(),
            n: 40,
            secs: 2.0,
            per_connection,
            times_s,
            error: None,
        }
    }

    #[test]
    fn throughput_and_latency_cells() {
        let runs = Runs {
            fast_1: Some(fast(vec![50_000], 50_000.4)),
            fast_2: Some(fast(vec![60_000, 0], 60_000.0)),
            ..Runs::default()
        };
        assert_eq!(Column::Fast1.cell(&runs), Cell::Value(50_000.4));
        assert_eq!(Column::Fast1.format(&Column::Fast1.cell(&runs)), "50,000");
        assert_eq!(
            Column::Fast2.cell(&runs),
            Cell::Starved,
            "one connection got nothing"
        );
        assert_eq!(Column::P99.cell(&runs), Cell::Value(45.0));
        assert_eq!(Column::Fast64.cell(&runs), Cell::Missing);
        assert_eq!(Column::Fast64.format(&Cell::Missing), "–");
    }

    #[test]
    fn slow_cells_are_mean_seconds() {
        let runs = Runs {
            slow_1: Some(slow(vec![2], vec![0.4, 0.5])),
            slow_2: Some(slow(vec![1, 0], vec![0.4])),
            mixed_slow: Some(slow(vec![0], vec![])),
            ..Runs::default()
        };
        assert_eq!(Column::Slow1.format(&Column::Slow1.cell(&runs)), "0.450");
        assert_eq!(Column::Slow2.cell(&runs), Cell::Starved);
        assert_eq!(Column::MixedSlow.cell(&runs), Cell::Starved);
    }

    #[test]
    fn errors_are_errors_not_numbers() {
        let mut run = fast(vec![10], 10.0);
        run.error = Some("the server closed connection 1".into());
        let runs = Runs {
            fast_1: Some(run),
            ..Runs::default()
        };
        assert!(matches!(Column::Fast1.cell(&runs), Cell::Error(_)));
        assert!(matches!(Column::P99.cell(&runs), Cell::Error(_)));
    }

    #[test]
    fn idle_memory_per_connection() {
        let idle = |opened, answered, after| IdleRun {
            wanted: 1000,
            opened,
            answered,
            rss_before_kib: Some(2000),
            rss_after_kib: after,
            error: None,
        };
        let runs = |run| Runs {
            idle: Some(run),
            ..Runs::default()
        };
        let full = runs(idle(1000, 1000, Some(10_500)));
        assert_eq!(Column::IdleMemory.cell(&full), Cell::Value(8.5));
        assert_eq!(Column::IdleMemory.format(&Cell::Value(8.5)), "8.5");
        assert_eq!(
            Column::IdleMemory.cell(&runs(idle(1000, 1, Some(3000)))),
            Cell::Starved
        );
        assert_eq!(
            Column::IdleMemory.cell(&runs(idle(300, 300, Some(3000)))),
            Cell::Starved
        );
        assert_eq!(
            Column::IdleMemory.cell(&runs(idle(1000, 1000, None))),
            Cell::Missing
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
