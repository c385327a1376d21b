//! The columns of the results tables, and how each cell is derived from the raw numbers.
//!
//! Cells are computed from the raw numbers (never stored), so a results file from an
//! earlier run can be re-tabulated and compared cell by cell. A rate is the median of the
//! rounds, shown with its spread (`38,482 ±9%`: every round within 9% of the median); a cost
//! comes from the counted pass.

use super::costs::{Counts, KINDS, Kind};
use super::output::StepResult;
use super::runs::{FastRun, Load, Round, SlowRun};

/// The three tables of a results document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// What the clients saw: requests per second, seconds per slow request, latency, memory.
    Rates,
    /// What one request cost the server: system calls, CPU time, context switches.
    Costs,
    /// The system calls of one fast connection, by kind.
    Kinds,
}

/// A measurement of the rates table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Fast1,
    /// Per-core mode: the client on the server's CPU.
    Fast1SameCpu,
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

/// One column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Rate(Rate),
    /// System calls per request under a load.
    Calls(Load),
    /// Server CPU microseconds per request under a load.
    Cpu(Load),
    /// Server context switches per request under a load.
    Switches(Load),
    /// System calls of one kind per request, one fast connection.
    Kind(Kind),
}

/// The loads whose costs the costs table shows.
pub const COST_LOADS: [Load; 3] = [Load::Fast1, Load::Fast64, Load::Pipelined];

/// What a cell shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A measurement, in the column's unit: the median of the rounds, and their range.
    Value(Stat),
    /// Some client got no answer at all in the time the load ran.
    Starved,
    /// The load failed; the message goes under the table.
    Error(String),
    /// Not measured (skipped, not counted here, or this OS cannot tell).
    Missing,
}

/// The median of some measurements, with the smallest and the largest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// How many measurements.
    pub count: usize,
}

impl Stat {
    /// One measurement.
    pub fn one(value: f64) -> Stat {
        Stat {
            median: value,
            min: value,
            max: value,
            count: 1,
        }
    }

    /// The median and range of `values`; `None` without values.
    pub fn of(values: &[f64]) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Some(Stat {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            count: sorted.len(),
        })
    }

    /// How far the farthest measurement lies from the median, in percent of it.
    pub fn spread_percent(&self) -> f64 {
        if self.median == 0.0 {
            return 0.0;
        }
        (self.max - self.median).max(self.median - self.min) / self.median.abs() * 100.0
    }
}

/// Whether a bigger number is better in this column (for the chart and for reading a
/// comparison).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

impl Rate {
    fn all(pinned: bool) -> Vec<Rate> {
        let mut rates = vec![Rate::Fast1];
        if pinned {
            rates.push(Rate::Fast1SameCpu);
        }
        rates.extend([
            Rate::Fast2,
            Rate::Fast64,
            Rate::Pipelined,
            Rate::Slow1,
            Rate::Slow2,
            Rate::MixedFast,
            Rate::MixedSlow,
            Rate::P99,
            Rate::IdleMemory,
        ]);
        rates
    }
}

/// The short name of a load in a header.
fn load_name(load: Load) -> &'static str {
    match load {
        Load::Fast1 => "1 fast",
        Load::Fast1SameCpu => "1 fast, same CPU",
        Load::Fast2 => "2 fast",
        Load::Fast64 => "64 fast",
        Load::Pipelined => "pipelined 8×16",
        Load::Slow1 => "1 slow",
        Load::Slow2 => "2 slow",
        Load::FastAndSlow => "fast+slow",
    }
}

impl Column {
    /// The columns of `table`, in order (the same-CPU column only in the per-core mode).
    pub fn of(table: Table, pinned: bool) -> Vec<Column> {
        match table {
            Table::Rates => Rate::all(pinned).into_iter().map(Column::Rate).collect(),
            Table::Costs => COST_LOADS
                .iter()
                .map(|&load| Column::Calls(load))
                .chain(COST_LOADS.iter().map(|&load| Column::Cpu(load)))
                .chain(COST_LOADS.iter().map(|&load| Column::Switches(load)))
                .collect(),
            Table::Kinds => KINDS.iter().map(|&kind| Column::Kind(kind)).collect(),
        }
    }

    /// Every column of every table: what a slide may quote.
    pub fn every(pinned: bool) -> Vec<Column> {
        [Table::Rates, Table::Costs, Table::Kinds]
            .into_iter()
            .flat_map(|table| Column::of(table, pinned))
            .collect()
    }

    /// The header, with its unit. Headers are unique over all three tables, so that a slide
    /// can quote any mix of them.
    pub fn header(self) -> String {
        match self {
            Column::Rate(rate) => match rate {
                Rate::Fast1 => "1 fast (req/s)".into(),
                Rate::Fast1SameCpu => "1 fast, same CPU (req/s)".into(),
                Rate::Fast2 => "2 fast (req/s)".into(),
                Rate::Fast64 => "64 fast (req/s)".into(),
                Rate::Pipelined => "pipelined 8×16 (req/s)".into(),
                Rate::Slow1 => "1 slow (s/req)".into(),
                Rate::Slow2 => "2 slow (s/req)".into(),
                Rate::MixedFast => "fast+slow: fast (req/s)".into(),
                Rate::MixedSlow => "fast+slow: slow (s/req)".into(),
                Rate::P99 => "1 fast p99 (µs)".into(),
                Rate::IdleMemory => "idle (KiB/conn)".into(),
            },
            Column::Calls(load) => format!("{}: calls/req", load_name(load)),
            Column::Cpu(load) => format!("{}: CPU µs/req", load_name(load)),
            Column::Switches(load) => format!("{}: switches/req", load_name(load)),
            Column::Kind(kind) => format!("1 fast: {}/req", kind.name()),
        }
    }

    /// The table the column belongs to.
    pub fn table(self) -> Table {
        match self {
            Column::Rate(_) => Table::Rates,
            Column::Calls(_) | Column::Cpu(_) | Column::Switches(_) => Table::Costs,
            Column::Kind(_) => Table::Kinds,
        }
    }

    pub fn better(self) -> Better {
        match self {
            Column::Rate(
                Rate::Fast1
                | Rate::Fast1SameCpu
                | Rate::Fast2
                | Rate::Fast64
                | Rate::Pipelined
                | Rate::MixedFast,
            ) => Better::Higher,
            _ => Better::Lower,
        }
    }

    /// Whether the column is a throughput in req/s.
    pub fn is_throughput(self) -> bool {
        self.better() == Better::Higher
    }

    /// Whether the column's cells come from perf's counters (and are `–` without them).
    pub fn is_counted(self) -> bool {
        matches!(
            self,
            Column::Calls(_) | Column::Switches(_) | Column::Kind(_)
        )
    }

    /// The cell of this column for a step.
    pub fn cell(self, step: &StepResult) -> Cell {
        if step.unavailable.is_some() {
            return Cell::Missing;
        }
        match self {
            Column::Rate(Rate::IdleMemory) => match &step.idle {
                None => Cell::Missing,
                Some(idle) if idle.starved() || idle.opened < idle.wanted => Cell::Starved,
                Some(idle) => idle
                    .kib_per_connection()
                    .map_or(Cell::Missing, |kib| Cell::Value(Stat::one(kib))),
            },
            Column::Rate(rate) => combine(step.rounds.iter().map(|round| rate_cell(rate, round))),
            Column::Cpu(load) => combine(step.rounds.iter().map(|round| {
                round.fast(load).map_or(Cell::Missing, |run| {
                    fast_cell(run, |run| run.cpu_us_per_request())
                })
            })),
            Column::Calls(load) => count_cell(step, load, |counts| counts.syscalls),
            Column::Switches(load) => count_cell(step, load, |counts| counts.context_switches),
            Column::Kind(kind) => count_cell(step, Load::Fast1, |counts| counts.by_kind()[&kind]),
        }
    }

    /// A cell's text: thousands separated for req/s, milliseconds-precise seconds, whole
    /// microseconds of latency, one decimal of KiB and CPU µs, two significant decimals of
    /// counts; a spread after rates measured in several rounds.
    pub fn format(self, cell: &Cell) -> String {
        match cell {
            Cell::Value(stat) => {
                let value = stat.median;
                let text = match self {
                    Column::Rate(Rate::Slow1 | Rate::Slow2 | Rate::MixedSlow) => {
                        format!("{value:.3}")
                    }
                    Column::Rate(Rate::IdleMemory) | Column::Cpu(_) => format!("{value:.1}"),
                    Column::Calls(_) | Column::Switches(_) | Column::Kind(_) => count(value),
                    _ => thousands(value.round() as u64),
                };
                if stat.count > 1 {
                    format!("{text} ±{:.0}%", stat.spread_percent())
                } else {
                    text
                }
            }
            Cell::Starved => "starved".into(),
            Cell::Error(_) => "error".into(),
            Cell::Missing => "–".into(),
        }
    }
}

/// A count per request: `3.00`, `0.08`, `13.6`.
fn count(value: f64) -> String {
    if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// The cell of a rate in one round.
fn rate_cell(rate: Rate, round: &Round) -> Cell {
    let fast = |run: &Option<FastRun>| {
        run.as_ref().map_or(Cell::Missing, |run| {
            fast_cell(run, |run| Some(run.req_per_sec))
        })
    };
    match rate {
        Rate::Fast1 => fast(&round.fast_1),
        Rate::Fast1SameCpu => fast(&round.fast_1_same_cpu),
        Rate::Fast2 => fast(&round.fast_2),
        Rate::Fast64 => fast(&round.fast_64),
        Rate::Pipelined => fast(&round.pipelined),
        Rate::MixedFast => fast(&round.mixed_fast),
        Rate::P99 => round.fast_1.as_ref().map_or(Cell::Missing, |run| {
            fast_cell(run, |run| run.p99_us.map(|p99| p99 as f64))
        }),
        Rate::Slow1 => slow_cell(&round.slow_1),
        Rate::Slow2 => slow_cell(&round.slow_2),
        Rate::MixedSlow => slow_cell(&round.mixed_slow),
        Rate::IdleMemory => Cell::Missing,
    }
}

fn fast_cell(run: &FastRun, value: impl Fn(&FastRun) -> Option<f64>) -> Cell {
    match &run.error {
        Some(error) => Cell::Error(error.clone()),
        None if run.starved() => Cell::Starved,
        None => value(run).map_or(Cell::Missing, |v| Cell::Value(Stat::one(v))),
    }
}

fn slow_cell(run: &Option<SlowRun>) -> Cell {
    match run {
        None => Cell::Missing,
        Some(run) => match (&run.error, run.mean_s()) {
            (Some(error), _) => Cell::Error(error.clone()),
            (None, _) if run.starved() => Cell::Starved,
            (None, Some(mean)) => Cell::Value(Stat::one(mean)),
            (None, None) => Cell::Starved,
        },
    }
}

fn count_cell(step: &StepResult, load: Load, count: impl Fn(&Counts) -> u64) -> Cell {
    match step.counts.get(&load) {
        None => Cell::Missing,
        Some(Err(error)) => Cell::Error(error.clone()),
        Some(Ok(counts)) => counts
            .per_request(count(counts))
            .map_or(Cell::Missing, |v| Cell::Value(Stat::one(v))),
    }
}

/// One cell from the cells of the rounds: an error or a starved client in any round wins
/// (it is what the load showed); otherwise the median of the values measured.
pub fn combine(cells: impl IntoIterator<Item = Cell>) -> Cell {
    let mut values = Vec::new();
    let mut starved = false;
    for cell in cells {
        match cell {
            Cell::Error(error) => return Cell::Error(error),
            Cell::Starved => starved = true,
            Cell::Value(stat) => values.push(stat.median),
            Cell::Missing => {}
        }
    }
    if starved {
        return Cell::Starved;
    }
    Stat::of(&values).map_or(Cell::Missing, Cell::Value)
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
    use crate::table::idle::IdleRun;
    use std::collections::BTreeMap;

    pub(crate) fn fast(per_connection: Vec<u64>, req_per_sec: f64) -> FastRun {
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
            server_cpu_s: Some(0.5),
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

    fn step(rounds: Vec<Round>) -> StepResult {
        StepResult {
            step: "step03".into(),
            unavailable: None,
            rounds,
            counts: BTreeMap::new(),
            idle: None,
        }
    }

    #[test]
    fn a_rate_is_the_median_of_the_rounds_with_its_spread() {
        let round = |rate| Round {
            fast_1: Some(fast(vec![50_000], rate)),
            ..Round::default()
        };
        let step = step(vec![round(50_000.0), round(45_000.0), round(60_000.0)]);
        let cell = Column::Rate(Rate::Fast1).cell(&step);
        assert_eq!(
            cell,
            Cell::Value(Stat {
                median: 50_000.0,
                min: 45_000.0,
                max: 60_000.0,
                count: 3
            })
        );
        assert_eq!(Column::Rate(Rate::Fast1).format(&cell), "50,000 ±20%");
        assert_eq!(
            Column::Rate(Rate::P99).format(&Column::Rate(Rate::P99).cell(&step)),
            "45 ±0%"
        );
        assert_eq!(Column::Rate(Rate::Fast64).cell(&step), Cell::Missing);
        assert_eq!(Column::Rate(Rate::Fast64).format(&Cell::Missing), "–");
    }

    #[test]
    fn one_round_shows_no_spread_and_a_starved_round_is_starved() {
        let one = step(vec![Round {
            fast_1: Some(fast(vec![50_000], 50_000.4)),
            fast_2: Some(fast(vec![60_000, 0], 60_000.0)),
            ..Round::default()
        }]);
        let fast1 = Column::Rate(Rate::Fast1);
        assert_eq!(fast1.format(&fast1.cell(&one)), "50,000");
        assert_eq!(Column::Rate(Rate::Fast2).cell(&one), Cell::Starved);
        let cpu = Column::Cpu(Load::Fast1);
        assert_eq!(
            cpu.format(&cpu.cell(&one)),
            "10.0",
            "0.5 s for 50,000 requests"
        );
    }

    #[test]
    fn slow_cells_are_mean_seconds() {
        let step = step(vec![Round {
            slow_1: Some(slow(vec![2], vec![0.4, 0.5])),
            slow_2: Some(slow(vec![1, 0], vec![0.4])),
            mixed_slow: Some(slow(vec![0], vec![])),
            ..Round::default()
        }]);
        let slow1 = Column::Rate(Rate::Slow1);
        assert_eq!(slow1.format(&slow1.cell(&step)), "0.450");
        assert_eq!(Column::Rate(Rate::Slow2).cell(&step), Cell::Starved);
        assert_eq!(Column::Rate(Rate::MixedSlow).cell(&step), Cell::Starved);
    }

    #[test]
    fn errors_are_errors_not_numbers() {
        let mut run = fast(vec![10], 10.0);
        run.error = Some("the server closed connection 1".into());
        let step = step(vec![Round {
            fast_1: Some(run),
            ..Round::default()
        }]);
        assert!(matches!(
            Column::Rate(Rate::Fast1).cell(&step),
            Cell::Error(_)
        ));
        assert!(matches!(
            Column::Rate(Rate::P99).cell(&step),
            Cell::Error(_)
        ));
    }

    #[test]
    fn counted_cells_divide_by_the_requests_answered() {
        let mut step = step(vec![]);
        let counts = Counts {
            answered: 1000,
            syscalls: 3000,
            by_name: [("epoll_wait", 1000), ("recvfrom", 1000), ("sendto", 1000)]
                .into_iter()
                .map(|(name, count)| (name.to_string(), count))
                .collect(),
            context_switches: 1000,
        };
        step.counts.insert(Load::Fast1, Ok(counts));
        step.counts
            .insert(Load::Fast64, Err("perf_event_open refused".into()));
        let calls = Column::Calls(Load::Fast1);
        assert_eq!(calls.format(&calls.cell(&step)), "3.00");
        let wait = Column::Kind(Kind::Wait);
        assert_eq!(wait.format(&wait.cell(&step)), "1.00");
        assert_eq!(
            Column::Kind(Kind::EpollCtl).format(&Column::Kind(Kind::EpollCtl).cell(&step)),
            "0.00"
        );
        assert!(matches!(
            Column::Calls(Load::Fast64).cell(&step),
            Cell::Error(_)
        ));
        assert_eq!(Column::Calls(Load::Pipelined).cell(&step), Cell::Missing);
        assert_eq!(count(13.56), "13.6");
        assert_eq!(count(0.075), "0.07");
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
        let with = |run| StepResult {
            idle: Some(run),
            ..step(vec![])
        };
        let column = Column::Rate(Rate::IdleMemory);
        let full = with(idle(1000, 1000, Some(10_500)));
        assert_eq!(column.cell(&full), Cell::Value(Stat::one(8.5)));
        assert_eq!(column.format(&column.cell(&full)), "8.5");
        assert_eq!(column.cell(&with(idle(1000, 1, Some(3000)))), Cell::Starved);
        assert_eq!(
            column.cell(&with(idle(300, 300, Some(3000)))),
            Cell::Starved
        );
        assert_eq!(column.cell(&with(idle(1000, 1000, None))), Cell::Missing);
    }

    #[test]
    fn headers_are_unique_over_every_table() {
        let headers: Vec<String> = Column::every(true).iter().map(|c| c.header()).collect();
        let mut unique = headers.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), headers.len(), "{headers:?}");
        assert!(headers.contains(&"64 fast: calls/req".to_string()));
    }

    #[test]
    fn medians_of_even_and_odd_counts() {
        assert_eq!(Stat::of(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
        assert_eq!(Stat::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(Stat::of(&[]), None);
        assert_eq!(Stat::of(&[10.0, 9.0, 12.0]).unwrap().spread_percent(), 20.0);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
