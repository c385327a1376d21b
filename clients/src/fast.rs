//! The fast client: many connections, tiny requests, as many per second as the server takes.
//!
//! ```text
//! cargo run -p step02                                      # in one terminal
//! cargo run -p clients --bin fast -- --conns 64 --secs 5   # in another
//! ```
//!
//! **What it measures:** requests answered per second (the server's cost per request, since
//! fib(1) costs nothing), the latency of each request (p50/p99/p99.9), and which connections
//! got no answer at all (*starved*: the server never got round to them).
//!
//! **Why it is written this way:** the client runs on the same machine as the server and
//! competes with it for the CPU, so it must be cheap per request. A thread per connection
//! would spend the CPU on context switches that the server needs. Instead one thread waits
//! for all connections at once on a `mio::Poll` (epoll on Linux), the same readiness loop
//! that step03 teaches on the server side, and each connection is a small state machine
//! ([`connection`]). It never blocks for long: the poll has a timeout, so the run stops on
//! time even when the server never answers.

pub mod connection;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::error::ClientError;
use crate::report::{FastReport, SecondReport};
use crate::request::Request;
use connection::{Connection, Load};

/// How often the loop looks at the stop flag when no socket has anything to say. It bounds
/// how late a Ctrl-C or a deadline is noticed against a silent server.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Readiness events taken per poll. With more ready connections, the next poll returns the
/// rest at once; a bigger array only costs memory.
const EVENTS_PER_POLL: usize = 1024;

/// What a fast run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastConfig {
    /// The server's address.
    pub addr: SocketAddr,
    /// How many connections, all driven from one thread.
    pub conns: usize,
    /// Requests in flight per connection, written in one write; the next batch goes out when
    /// every answer of this one has arrived.
    pub depth: usize,
    /// The `n` of every request.
    pub n: u32,
    /// Stop after this long (measured from the first request, after connecting).
    pub duration: Option<Duration>,
    /// Stop after this many answers in total.
    pub count: Option<u64>,
}

impl Default for FastConfig {
    /// One connection, one request in flight, fib(1), to the default address, no limit.
    fn default() -> Self {
        FastConfig {
            addr: crate::cli::default_addr(),
            conns: 1,
            depth: 1,
            n: 1,
            duration: None,
            count: None,
        }
    }
}

/// Runs a fast load until `config.duration` or `config.count` is reached, or `stop` is set.
///
/// `on_second` is called about once a second with the progress of that second. The final,
/// partial second is not reported there; it is in the returned report.
///
/// # Errors
///
/// A [`ClientError`] when the configuration is invalid, a connection cannot be opened, or
/// the server misbehaves (closes a connection, answers wrongly or with an error). A server
/// that answers nothing is not an error: the report shows zero answers.
pub fn run_fast(
    config: &FastConfig,
    stop: &AtomicBool,
    on_second: &mut dyn FnMut(&SecondReport),
) -> Result<FastReport, ClientError> {
    if config.conns == 0 || config.depth == 0 {
        return Err(ClientError::Config(
            "the fast client needs at least one connection and one request in flight".into(),
        ));
    }
    let request = Request::new(config.n)?;
    let mut poll = Poll::new().map_err(ClientError::Poll)?;
    let mut connections = Vec::with_capacity(config.conns);
    for index in 0..config.conns {
        // Ctrl-C while opening many connections stops at once: the report shows them all
        // starved rather than making the user wait.
        if stop.load(Ordering::Relaxed) {
            break;
        }
        connections.push(Connection::open(
            config.addr,
            Token(index),
            poll.registry(),
        )?);
    }

    let mut load = Load::new(request, config.depth, config.count);
    let start = Instant::now();
    let deadline = config.duration.map(|duration| start + duration);
    for connection in &mut connections {
        connection.start_batch(&mut load, start)?;
    }

    let mut events = Events::with_capacity(EVENTS_PER_POLL);
    let mut ticker = Ticker::new(start);
    let mut answered = 0u64;
    // ANCHOR: event_loop
    let end = loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed)
            || deadline.is_some_and(|deadline| now >= deadline)
            || config.count.is_some_and(|count| answered >= count)
        {
            break now;
        }
        if let Some(second) = ticker.tick(now, answered) {
            on_second(&second);
        }
        let wake_at = deadline.map_or(ticker.next, |deadline| deadline.min(ticker.next));
        let timeout = wake_at
            .saturating_duration_since(now)
            .min(STOP_CHECK_INTERVAL);
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            // A signal (Ctrl-C) interrupted the wait: go round and look at the stop flag.
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(ClientError::Poll(error)),
        }
        for event in events.iter() {
            // Tokens are indices into `connections`, handed out when registering.
            answered += connections[event.token().0].on_ready(&mut load)?;
        }
    };
    // ANCHOR_END: event_loop

    let mut per_connection: Vec<u64> = connections.iter().map(Connection::answered).collect();
    per_connection.resize(config.conns, 0);
    Ok(FastReport {
        depth: config.depth,
        elapsed: end - start,
        answered,
        per_connection,
        latency: load.into_latency(),
    })
}

/// Produces a [`SecondReport`] each time another second has passed.
#[derive(Debug)]
struct Ticker {
    start: Instant,
    /// When the previous report was made, and the total then.
    last: Instant,
    last_total: u64,
    /// When the next report is due.
    next: Instant,
}

impl Ticker {
    fn new(start: Instant) -> Ticker {
        Ticker {
            start,
            last: start,
            last_total: 0,
            next: start + Duration::from_secs(1),
        }
    }

    fn tick(&mut self, now: Instant, total: u64) -> Option<SecondReport> {
        if now < self.next {
            return None;
        }
        let report = SecondReport {
            elapsed: now - self.start,
            interval: now - self.last,
            answered: total - self.last_total,
            total,
        };
        self.last = now;
        self.last_total = total;
        // Stay on whole seconds from the start; after a stall longer than a second (a
        // suspended terminal), skip the missed ticks instead of printing a burst of them.
        self.next += Duration::from_secs(1);
        if self.next <= now {
            self.next = now + Duration::from_secs(1);
        }
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticker_reports_once_per_second_with_the_answers_of_that_second() {
        let start = Instant::now();
        let mut ticker = Ticker::new(start);
        assert_eq!(ticker.tick(start + Duration::from_millis(999), 10), None);
        let first = ticker
            .tick(start + Duration::from_millis(1002), 100)
            .expect("a second has passed");
        assert_eq!((first.answered, first.total), (100, 100));
        assert_eq!(first.interval, Duration::from_millis(1002));
        assert_eq!(ticker.tick(start + Duration::from_millis(1500), 150), None);
        let second = ticker
            .tick(start + Duration::from_millis(2000), 300)
            .expect("two seconds have passed");
        assert_eq!((second.answered, second.total), (200, 300));
        assert_eq!(second.interval, Duration::from_millis(998));
    }

    #[test]
    fn the_ticker_skips_seconds_missed_during_a_stall() {
        let start = Instant::now();
        let mut ticker = Ticker::new(start);
        let late = ticker
            .tick(start + Duration::from_millis(5500), 50)
            .expect("overdue");
        assert_eq!(late.interval, Duration::from_millis(5500));
        assert_eq!(ticker.tick(start + Duration::from_millis(5600), 60), None);
    }

    #[test]
    fn an_invalid_configuration_is_an_error_not_a_panic() {
        let stop = AtomicBool::new(false);
        for config in [
            FastConfig {
                conns: 0,
                ..FastConfig::default()
            },
            FastConfig {
                depth: 0,
                ..FastConfig::default()
            },
            FastConfig {
                n: 94,
                ..FastConfig::default()
            },
        ] {
            let result = run_fast(&config, &stop, &mut |_| {});
            assert!(matches!(result, Err(ClientError::Config(_))), "{config:?}");
        }
    }
}
