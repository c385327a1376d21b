//! What a run measured, how it ended, and how it prints.
//!
//! The binaries print these with `{}`; a results-table runner reads the fields and methods.
//! Latencies print as [`Micros`] (`48 µs`, `12.5 ms`, `301 ms`); the structs keep them in
//! microseconds or as [`Duration`]s.

use std::fmt;
use std::time::Duration;

use crate::stats::{Latency, Micros};

/// Why a run ended.
///
/// Only the first three are what the caller asked for. The server closing a connection ends
/// a run too, without making it an error: a server that drains its clients on shutdown, or
/// times out an idle one (`error: idle timeout`), ends runs that way by design, and what was
/// measured until then is worth printing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The duration (`--secs`) had passed.
    Deadline,
    /// The count (`--count`) of answers had arrived.
    Count,
    /// The stop flag was set (Ctrl-C).
    Stopped,
    /// The server closed (or reset) a connection.
    ServerClosed {
        /// Which connection, counted from 1.
        connection: usize,
        /// Answers received on it before.
        answered: u64,
        /// The server's last line when it was not an answer: its reason for closing, such
        /// as `error: idle timeout` (without the `\n`; invalid UTF-8 replaced).
        last_line: Option<String>,
        /// The connection was reset (or a write found it broken) rather than closed with an
        /// end of stream: the server went away without draining it, or was killed.
        reset: bool,
    },
}

impl Ended {
    /// Whether the server ended the run, not the caller's limits.
    pub fn by_server(&self) -> bool {
        matches!(self, Ended::ServerClosed { .. })
    }
}

impl fmt::Display for Ended {
    /// One line: `the server closed connection 3 after 1234 answers on it: error: idle
    /// timeout`, or why the run stopped as asked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Deadline => f.write_str("the run ended: its time was up"),
            Ended::Count => f.write_str("the run ended: every answer asked for arrived"),
            Ended::Stopped => f.write_str("the run was stopped (Ctrl-C)"),
            Ended::ServerClosed {
                connection,
                answered,
                last_line,
                reset,
            } => {
                let verb = if *reset { "reset" } else { "closed" };
                let noun = if *answered == 1 { "answer" } else { "answers" };
                write!(
                    f,
                    "the server {verb} connection {connection} after {answered} {noun} on it"
                )?;
                match last_line {
                    // `escape_debug` keeps the promise of one line whatever the server sent.
                    Some(line) => write!(f, ": {}", line.escape_debug()),
                    None => Ok(()),
                }
            }
        }
    }
}

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
    /// Why the run ended.
    pub ended: Ended,
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
        write_starved(f, self.starved(), self.per_connection.len())?;
        write_server_ended(f, &self.ended)
    }
}

/// What one read brought the fast client: the answers to one batch, or part of it (one
/// answer at depth 1). Reported only when asked for ([`run_fast_with_answers`]), for paced
/// runs that are slow enough to follow one answer at a time.
///
/// [`run_fast_with_answers`]: crate::fast::run_fast_with_answers
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastAnswer {
    /// Which connection, counted from 1.
    pub connection: usize,
    /// The `n` asked for.
    pub n: u32,
    /// `fib(n)`, as the server answered (and the client checked).
    pub value: u64,
    /// How many answers arrived together in this read.
    pub answers: u64,
    /// From the write of their batch to this read.
    pub latency: Duration,
}

impl fmt::Display for FastAnswer {
    /// `fib(1) = 1 in 48 µs`, and `(16 answers)` when a read brought several.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fib({}) = {}", self.n, self.value)?;
        if self.answers > 1 {
            write!(f, " ({} answers)", self.answers)?;
        }
        write!(f, " in {}", Micros::of(self.latency))
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
    /// Requests the server answered `error: busy` (its compute pool was full); each was
    /// asked again after [`BUSY_PAUSE`](crate::slow::BUSY_PAUSE).
    pub busy: u64,
    /// Why the run ended.
    pub ended: Ended,
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
        if self.busy > 0 {
            writeln!(
                f,
                "busy: {} answered `error: busy` (the server's pool was full), each asked again \
                 after {} ms",
                self.busy,
                crate::slow::BUSY_PAUSE.as_millis()
            )?;
        }
        write_starved(f, self.starved(), self.per_connection.len())?;
        write_server_ended(f, &self.ended)
    }
}

/// A last line saying why when the server ended the run; nothing when the run ended as asked
/// (the summary's time and count say that already).
fn write_server_ended(f: &mut fmt::Formatter<'_>, ended: &Ended) -> fmt::Result {
    if ended.by_server() {
        write!(f, "\n{ended}")?;
    }
    Ok(())
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
            ended: Ended::Deadline,
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
            busy: 0,
            ended: Ended::Count,
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
            busy: 0,
            ended: Ended::Stopped,
        };
        assert_eq!((report.mean(), report.max()), (None, None));
        assert_eq!(
            report.to_string(),
            "no answers for fib(40) in 1.00 s\nstarved: 1 of 1 connection got no answer"
        );
    }

    #[test]
    fn a_summary_says_when_the_server_ended_the_run() {
        let report = FastReport {
            ended: Ended::ServerClosed {
                connection: 3,
                answered: 1234,
                last_line: Some("error: idle timeout".into()),
                reset: false,
            },
            ..fast_report(vec![1234, 0, 1234])
        };
        assert!(
            report.to_string().ends_with(
                "starved: 1 of 3 connections got no answer\n\
                 the server closed connection 3 after 1234 answers on it: error: idle timeout"
            ),
            "{report}"
        );
        let slow = SlowReport {
            n: 40,
            elapsed: Duration::from_secs(1),
            times: vec![Duration::from_millis(400)],
            per_connection: vec![1],
            busy: 0,
            ended: Ended::ServerClosed {
                connection: 1,
                answered: 1,
                last_line: None,
                reset: true,
            },
        };
        assert!(
            slow.to_string()
                .ends_with("\nthe server reset connection 1 after 1 answer on it"),
            "{slow}"
        );
    }

    #[test]
    fn a_run_that_ended_as_asked_prints_no_extra_line() {
        for ended in [Ended::Deadline, Ended::Count, Ended::Stopped] {
            assert!(!ended.by_server());
            let report = FastReport {
                ended,
                ..fast_report(vec![1])
            };
            assert_eq!(report.to_string().lines().count(), 3, "{report}");
        }
    }

    #[test]
    fn a_servers_last_line_stays_on_one_line() {
        let ended = Ended::ServerClosed {
            connection: 1,
            answered: 0,
            last_line: Some("error: two\nlines".into()),
            reset: false,
        };
        assert_eq!(
            ended.to_string(),
            "the server closed connection 1 after 0 answers on it: error: two\\nlines"
        );
    }

    #[test]
    fn a_paced_answer_prints_its_latency() {
        let answer = FastAnswer {
            connection: 1,
            n: 1,
            value: 1,
            answers: 1,
            latency: Duration::from_micros(48),
        };
        assert_eq!(answer.to_string(), "fib(1) = 1 in 48 µs");
        let batch = FastAnswer {
            answers: 16,
            latency: Duration::from_micros(12_540),
            ..answer
        };
        assert_eq!(batch.to_string(), "fib(1) = 1 (16 answers) in 12.5 ms");
    }
}
