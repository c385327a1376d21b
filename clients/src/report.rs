//! What a run measured, and how it prints.
//!
//! The binaries print these with `{}`; a results-table runner reads the fields and methods.

use std::fmt;
use std::time::Duration;

use crate::stats::Latency;

/// One line of progress of the fast client, once a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SecondReport {
    /// Time since the load started.
    pub elapsed: Duration,
    /// How long this report covers: a second, or a little more if the loop woke up late.
    pub interval: Duration,
    /// Answers received during `interval`.
    pub answered: u64,
    /// Answers received since the start.
    pub total: u64,
}

impl SecondReport {
    /// Answers per second during this interval.
    pub fn rate(&self) -> f64 {
        per_second(self.answered, self.interval)
    }
}

impl fmt::Display for SecondReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:6.1} s {:>10.0} req/s {:>12} answered",
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.total
        )
    }
}

/// The result of a fast run.
#[derive(Debug, Clone)]
pub struct FastReport {
    /// Requests in flight per connection.
    pub depth: usize,
    /// Time from the first request to the end of the run (connecting not included).
    pub elapsed: Duration,
    /// Answers received, over all connections. Requests still in flight when the run
    /// stopped are not counted.
    pub answered: u64,
    /// Answers received on each connection, in connection order.
    pub per_connection: Vec<u64>,
    /// How long each answered request waited, from the write of its batch to the read that
    /// completed it.
    pub latency: Latency,
}

impl FastReport {
    /// Answers per second over the whole run.
    pub fn req_per_sec(&self) -> f64 {
        per_second(self.answered, self.elapsed)
    }

    /// How many connections got no answer at all: the server never served them.
    pub fn starved(&self) -> usize {
        self.per_connection.iter().filter(|&&n| n == 0).count()
    }
}

impl fmt::Display for FastReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "answered {} requests in {:.2} s: {:.0} req/s",
            self.answered,
            self.elapsed.as_secs_f64(),
            self.req_per_sec()
        )?;
        match self.latency.percentiles() {
            Some(percentiles) => writeln!(f, "latency: {percentiles}")?,
            None => writeln!(f, "latency: no answers")?,
        }
        write_starved(f, self.starved(), self.per_connection.len())
    }
}

/// One answer of the slow client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowAnswer {
    /// Which connection, counted from 1.
    pub connection: usize,
    /// The `n` asked for.
    pub n: u32,
    /// `fib(n)`, as the server answered (and the client checked).
    pub value: u64,
    /// From writing the request to reading the whole answer.
    pub time: Duration,
}

impl fmt::Display for SlowAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fib({}) = {} in {}",
            self.n,
            self.value,
            Seconds(self.time)
        )
    }
}

/// The result of a slow run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowReport {
    /// The `n` asked for.
    pub n: u32,
    /// Time from the first request to the end of the run (connecting not included).
    pub elapsed: Duration,
    /// How long each answered request took, in the order the answers arrived. A request
    /// still being computed when the run stopped is not included.
    pub times: Vec<Duration>,
    /// Answers received on each connection, in connection order.
    pub per_connection: Vec<u64>,
}

impl SlowReport {
    /// How many requests were answered.
    pub fn count(&self) -> usize {
        self.times.len()
    }

    /// The mean time per request, or `None` without answers.
    pub fn mean(&self) -> Option<Duration> {
        let count = u32::try_from(self.times.len()).ok().filter(|&n| n > 0)?;
        Some(self.times.iter().sum::<Duration>() / count)
    }

    /// The longest time a request took, or `None` without answers.
    pub fn max(&self) -> Option<Duration> {
        self.times.iter().max().copied()
    }

    /// How many connections got no answer at all.
    pub fn starved(&self) -> usize {
        self.per_connection.iter().filter(|&&n| n == 0).count()
    }
}

impl fmt::Display for SlowReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let elapsed = self.elapsed.as_secs_f64();
        match (self.mean(), self.max()) {
            (Some(mean), Some(max)) => writeln!(
                f,
                "answered {} requests for fib({}) in {elapsed:.2} s: mean {} per request, max {}",
                self.count(),
                self.n,
                Seconds(mean),
                Seconds(max),
            )?,
            _ => writeln!(f, "no answers for fib({}) in {elapsed:.2} s", self.n)?,
        }
        write_starved(f, self.starved(), self.per_connection.len())
    }
}

fn write_starved(f: &mut fmt::Formatter<'_>, starved: usize, conns: usize) -> fmt::Result {
    let noun = if conns == 1 {
        "connection"
    } else {
        "connections"
    };
    write!(f, "starved: {starved} of {conns} {noun} got no answer")
}

fn per_second(count: u64, interval: Duration) -> f64 {
    let secs = interval.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// A duration for people: seconds with millisecond precision, or milliseconds when it is
/// too short for that to show anything (fib(20) takes microseconds).
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs_f64();
        if secs >= 0.01 {
            write!(f, "{secs:.3} s")
        } else {
            write!(f, "{:.3} ms", secs * 1000.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_line_shows_elapsed_rate_and_total() {
        let second = SecondReport {
            elapsed: Duration::from_secs(3),
            interval: Duration::from_millis(1000),
            answered: 41_234,
            total: 123_456,
        };
        assert_eq!(
            second.to_string(),
            "   3.0 s      41234 req/s       123456 answered"
        );
    }

    #[test]
    fn a_late_second_does_not_inflate_the_rate() {
        let second = SecondReport {
            elapsed: Duration::from_millis(2500),
            interval: Duration::from_millis(1250),
            answered: 1000,
            total: 2000,
        };
        assert_eq!(second.rate(), 800.0);
    }

    fn fast_report(per_connection: Vec<u64>) -> FastReport {
        let mut latency = Latency::new();
        let answered = per_connection.iter().sum();
        latency.record(Duration::from_micros(40), answered);
        FastReport {
            depth: 1,
            elapsed: Duration::from_secs(2),
            answered,
            per_connection,
            latency,
        }
    }

    #[test]
    fn the_fast_summary_counts_starved_connections() {
        let report = fast_report(vec![5000, 0, 0]);
        assert_eq!(report.req_per_sec(), 2500.0);
        assert_eq!(report.starved(), 2);
        assert_eq!(
            report.to_string(),
            "answered 5000 requests in 2.00 s: 2500 req/s\n\
             latency: p50 40 µs, p99 40 µs, p99.9 40 µs, max 40 µs\n\
             starved: 2 of 3 connections got no answer"
        );
    }

    #[test]
    fn a_fast_run_without_answers_says_so() {
        let report = fast_report(vec![0]);
        assert_eq!(
            report.to_string(),
            "answered 0 requests in 2.00 s: 0 req/s\n\
             latency: no answers\n\
             starved: 1 of 1 connection got no answer"
        );
    }

    #[test]
    fn a_run_of_no_time_has_no_rate() {
        let report = FastReport {
            elapsed: Duration::ZERO,
            ..fast_report(vec![0])
        };
        assert_eq!(report.req_per_sec(), 0.0);
    }

    #[test]
    fn slow_answers_print_like_the_python_original() {
        let answer = SlowAnswer {
            connection: 1,
            n: 40,
            value: 102334155,
            time: Duration::from_millis(412),
        };
        assert_eq!(answer.to_string(), "fib(40) = 102334155 in 0.412 s");
        let quick = SlowAnswer {
            n: 20,
            value: 6765,
            time: Duration::from_micros(85),
            ..answer
        };
        assert_eq!(quick.to_string(), "fib(20) = 6765 in 0.085 ms");
    }

    #[test]
    fn the_slow_summary_has_mean_and_max() {
        let report = SlowReport {
            n: 40,
            elapsed: Duration::from_millis(1300),
            times: vec![Duration::from_millis(400), Duration::from_millis(500)],
            per_connection: vec![1, 1],
        };
        assert_eq!(report.mean(), Some(Duration::from_millis(450)));
        assert_eq!(report.max(), Some(Duration::from_millis(500)));
        assert_eq!(
            report.to_string(),
            "answered 2 requests for fib(40) in 1.30 s: mean 0.450 s per request, max 0.500 s\n\
             starved: 0 of 2 connections got no answer"
        );
    }

    #[test]
    fn a_slow_run_without_answers_has_no_mean() {
        let report = SlowReport {
            n: 40,
            elapsed: Duration::from_secs(1),
            times: Vec::new(),
            per_connection: vec![0],
        };
        assert_eq!((report.mean(), report.max()), (None, None));
        assert_eq!(
            report.to_string(),
            "no answers for fib(40) in 1.00 s\nstarved: 1 of 1 connection got no answer"
        );
    }
}
