//! Latency statistics: a histogram of how long requests waited for their answers.
//!
//! A mean hides what the workshop is about: a server that answers most requests in 20 µs
//! and some in 200 ms has a fine mean and unhappy clients. So the fast client records every
//! request's latency in an HDR histogram (constant memory, 3 significant digits at any
//! magnitude) and reports percentiles: p50 is the typical request, p99 and p99.9 the slow
//! tail that queueing, scheduling and CPU-heavy neighbours create.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The slowest latency the histogram tells apart: larger ones are recorded as this. A
/// minute is beyond any run of the workbook.
const MAX_TRACKED_MICROS: u64 = 60_000_000;

/// Request latencies, in microseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram from 1 µs to a minute, at 3 significant digits.
    pub fn new() -> Latency {
        Latency {
            // Constant bounds that satisfy the crate's rules (low >= 1, high >= 2 * low,
            // sigfig <= 5), so creation cannot fail.
            histogram: Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 3)
                .expect("constant, valid histogram bounds"),
        }
    }

    /// Records `count` requests that each waited `latency`.
    ///
    /// The fast client reads the clock once per read, not once per answer, so all the
    /// answers that arrived in one read share one latency: that is when the client saw them.
    pub fn record(&mut self, latency: Duration, count: u64) {
        let Micros(micros) = Micros::of(latency);
        // Saturating: a latency beyond the bounds is recorded as the largest tracked value
        // rather than lost or turned into an error in the middle of a run.
        self.histogram.saturating_record_n(micros, count);
    }

    /// How many latencies were recorded.
    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// The percentiles the reports show, or `None` when nothing was recorded.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.histogram.is_empty() {
            return None;
        }
        Some(Percentiles {
            p50: self.histogram.value_at_quantile(0.50),
            p99: self.histogram.value_at_quantile(0.99),
            p999: self.histogram.value_at_quantile(0.999),
            max: self.histogram.max(),
        })
    }

    /// The histogram itself, for other percentiles or for merging runs.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }
}

/// Latency percentiles in microseconds (each value is the highest of its histogram bucket,
/// within 0.1% of the recorded latency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// Half the requests took at most this long.
    pub p50: u64,
    /// 99 in 100 requests took at most this long.
    pub p99: u64,
    /// 999 in 1000 requests took at most this long.
    pub p999: u64,
    /// The slowest request.
    pub max: u64,
}

impl fmt::Display for Percentiles {
    /// `p50 48 µs, p99 12.5 ms, p99.9 301 ms, max 412 ms`: see [`Micros`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {}, p99 {}, p99.9 {}, max {}",
            Micros(self.p50),
            Micros(self.p99),
            Micros(self.p999),
            Micros(self.max)
        )
    }
}

/// A latency in microseconds, printed for people to read at a glance.
///
/// Below 10 ms in whole microseconds (`48 µs`, `9500 µs`), where the fast client's latencies
/// live and every digit means something; above, in milliseconds (`12.5 ms` below 100 ms,
/// `301 ms` above), where a latency is one fib(40) or a queue behind one and the last digits
/// of `301311 µs` are noise that makes the number hard to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Micros(pub u64);

impl Micros {
    /// `duration` in whole microseconds (saturating: no latency of the workbook comes near).
    pub fn of(duration: Duration) -> Micros {
        Micros(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0;
        // Precision is lost only above 2^53 µs (285 years).
        let millis = micros as f64 / 1000.0;
        if micros < 10_000 {
            write!(f, "{micros} µs")
        } else if micros < 99_950 {
            // 99.95 ms and up would round to "100.0 ms": those print as "100 ms" below.
            write!(f, "{millis:.1} ms")
        } else {
            write!(f, "{millis:.0} ms")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_recorded_has_no_percentiles() {
        let latency = Latency::new();
        assert!(latency.is_empty());
        assert_eq!(latency.percentiles(), None);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut latency = Latency::new();
        // 990 fast requests, 9 slower, 1 very slow: the tail shows only in p99.9 and max.
        latency.record(Duration::from_micros(20), 990);
        latency.record(Duration::from_micros(500), 9);
        latency.record(Duration::from_millis(30), 1);
        assert_eq!(latency.len(), 1000);
        let p = latency.percentiles().expect("recorded 1000 latencies");
        assert_eq!(p.p50, 20);
        assert_eq!(p.p99, 20);
        assert_eq!(p.p999, 500);
        // 3 significant digits: 30 000 is reported as the top of its bucket.
        assert!((30_000..=30_030).contains(&p.max), "{}", p.max);
    }

    #[test]
    fn sub_microsecond_and_huge_latencies_are_kept() {
        let mut latency = Latency::new();
        latency.record(Duration::from_nanos(300), 1);
        latency.record(Duration::from_secs(3600), 1);
        assert_eq!(latency.len(), 2);
        let p = latency.percentiles().expect("recorded 2 latencies");
        assert_eq!(p.p50, 0);
        assert!(p.max >= MAX_TRACKED_MICROS, "clamped to the top: {}", p.max);
    }

    #[test]
    fn percentiles_print_in_microseconds_below_ten_milliseconds() {
        let p = Percentiles {
            p50: 21,
            p99: 80,
            p999: 1500,
            max: 9999,
        };
        assert_eq!(
            p.to_string(),
            "p50 21 µs, p99 80 µs, p99.9 1500 µs, max 9999 µs"
        );
    }

    #[test]
    fn percentiles_print_in_milliseconds_above() {
        let p = Percentiles {
            p50: 301_311,
            p99: 12_549,
            p999: 10_000,
            max: 99_949,
        };
        assert_eq!(
            p.to_string(),
            "p50 301 ms, p99 12.5 ms, p99.9 10.0 ms, max 99.9 ms"
        );
    }

    #[test]
    fn a_latency_that_would_round_to_100_ms_prints_without_a_decimal() {
        assert_eq!(Micros(99_950).to_string(), "100 ms");
        assert_eq!(Micros(100_000).to_string(), "100 ms");
        assert_eq!(Micros(60_000_000).to_string(), "60000 ms");
        assert_eq!(
            Micros::of(Duration::from_nanos(48_900)).to_string(),
            "48 µs"
        );
    }
}
