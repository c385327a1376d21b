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
//!
//! **How a run ends:** at `--secs` or `--count`, on Ctrl-C, or when the server closes a
//! connection (a server shutting down, or timing out an idle client with
//! `error: idle timeout`): then the report says which connection, after how many answers,
//! and the server's last line ([`Ended`]). Wrong answers, and `error: ` answers to requests,
//! are errors ([`ClientError`]): they make the numbers meaningless.
//!
//! **Paced runs** (`--rate R`, [`FastConfig::rate`]): at most R requests per second on each
//! connection, to follow one request at a time through a server's trace. The loop's poll
//! timeout wakes it for the next batch due; [`run_fast_with_answers`] hands over every
//! answer with its latency as it arrives.

pub mod connection;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll, Token};

use crate::connect::ensure_file_limit;
use crate::error::ClientError;
use crate::report::{Ended, FastAnswer, FastReport, SecondReport};
use crate::request::Request;
use connection::{Connection, LAST_WORDS_PATIENCE, Load};

/// How often the loop looks at the stop flag when no socket has anything to say. It bounds
/// how late a Ctrl-C or a deadline is noticed against a silent server.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Readiness events taken per poll. With more ready connections, the next poll returns the
/// rest at once; a bigger array only costs memory.
const EVENTS_PER_POLL: usize = 1024;

/// What a fast run does.
#[derive(Debug, Clone, PartialEq)]
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
    /// At most this many requests per second on each connection (fractions allowed: 0.5 is
    /// one every two seconds), or `None` to send each batch as soon as the last is answered.
    /// With a depth above 1, whole batches are paced: `depth / rate` seconds apart.
    pub rate: Option<f64>,
}

impl Default for FastConfig {
    /// One connection, one request in flight, fib(1), to the default address, no limit, as
    /// fast as the server answers.
    fn default() -> Self {
        FastConfig {
            addr: crate::cli::default_addr(),
            conns: 1,
            depth: 1,
            n: 1,
            duration: None,
            count: None,
            rate: None,
        }
    }
}

/// Runs a fast load until `config.duration` or `config.count` is reached, `stop` is set, or
/// the server closes a connection; the report's [`ended`](FastReport::ended) says which.
///
/// `on_second` is called about once a second with the progress of that second. The final,
/// partial second is not reported there; it is in the returned report.
///
/// # Errors
///
/// A [`ClientError`] when the configuration is invalid, the open-file limit is too low for
/// the connections, a connection cannot be opened, or the server misbehaves (answers wrongly
/// or with an error). A server that answers nothing is not an error: the report shows zero
/// answers. Nor is a server that closes a connection: the run ends with a report.
pub fn run_fast(
    config: &FastConfig,
    stop: &AtomicBool,
    on_second: &mut dyn FnMut(&SecondReport),
) -> Result<FastReport, ClientError> {
    run_fast_with_answers(config, stop, on_second, None)
}

/// [`run_fast`], and `on_answer` is called with the answers of every read as they arrive,
/// with their latency: for paced runs (`--rate`), slow enough to follow one by one. Without
/// `on_answer` (`None`) the run does no work for it.
///
/// # Errors
///
/// As for [`run_fast`].
pub fn run_fast_with_answers(
    config: &FastConfig,
    stop: &AtomicBool,
    on_second: &mut dyn FnMut(&SecondReport),
    on_answer: Option<&mut dyn FnMut(&FastAnswer)>,
) -> Result<FastReport, ClientError> {
    if config.conns == 0 || config.depth == 0 {
        return Err(ClientError::Config(
            "the fast client needs at least one connection and one request in flight".into(),
        ));
    }
    let request = Request::new(config.n)?;
    let interval = config
        .rate
        .map(|rate| batch_interval(config.depth, rate))
        .transpose()?;
    ensure_file_limit(config.conns)?;
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
    if let Some(interval) = interval {
        load.pace(interval);
    }
    if on_answer.is_some() {
        load.trace_answers();
    }
    let mut run = Run {
        // Taken from the back, so that connection 1 goes first.
        starting: (0..connections.len()).rev().collect(),
        connections,
        load,
        answered: 0,
        awaiting: Vec::new(),
        on_answer,
    };
    let start = Instant::now();
    let deadline = config.duration.map(|duration| start + duration);
    let mut events = Events::with_capacity(EVENTS_PER_POLL);
    let mut ticker = Ticker::new(start);
    // ANCHOR: event_loop
    let (end, mut ended) = 'run: loop {
        let now = Instant::now();
        if let Some(ended) = run.finished(stop, deadline, config.count, now)? {
            break (now, ended);
        }
        if let Some(second) = ticker.tick(now, run.answered) {
            on_second(&second);
        }
        // The first batches, and in a paced run (--rate) those whose time has come.
        if let Some(ended) = run.start_batches(now)? {
            break (now, ended);
        }
        let wake_at = deadline.map_or(ticker.next, |deadline| deadline.min(ticker.next));
        let timeout = run
            .wake_at(wake_at)
            .saturating_duration_since(now)
            .min(STOP_CHECK_INTERVAL);
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            // A signal (Ctrl-C) interrupted the wait: go round and look at the stop flag.
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(ClientError::Poll(error)),
        }
        for event in events.iter() {
            // The server closing a connection ends the run; the report says so.
            if let Some(ended) = run.on_ready(event)? {
                break 'run (Instant::now(), ended);
            }
        }
    };
    // ANCHOR_END: event_loop

    // An `error: ` line that came just before the end is either the server's last words
    // or an answer: wait (a moment at most) for what follows before reporting either.
    if !ended.by_server() {
        if let Some(closed) = run.settle(&mut poll, &mut events)? {
            ended = closed;
        }
    }

    let mut per_connection: Vec<u64> = run.connections.iter().map(Connection::answered).collect();
    per_connection.resize(config.conns, 0);
    Ok(FastReport {
        depth: config.depth,
        elapsed: end - start,
        answered: run.answered,
        per_connection,
        latency: run.load.into_latency(),
        ended,
    })
}

/// The state of a fast run that its event loop drives.
struct Run<'a> {
    /// Tokens are indices into `connections`, handed out when registering.
    connections: Vec<Connection>,
    load: Load,
    /// Answers received, over all connections.
    answered: u64,
    /// Connections whose first batch is still to be started.
    starting: Vec<usize>,
    /// Connections whose last line was an `error: ` line, waiting to see whether the server
    /// closes after it. Nearly always empty.
    awaiting: Vec<usize>,
    on_answer: Option<&'a mut dyn FnMut(&FastAnswer)>,
}

impl Run<'_> {
    /// Why the run should end now, if it should.
    ///
    /// # Errors
    ///
    /// The error of a connection whose `error: ` line has waited long enough for the end of
    /// the stream that did not come: it was the answer to a request.
    fn finished(
        &self,
        stop: &AtomicBool,
        deadline: Option<Instant>,
        count: Option<u64>,
        now: Instant,
    ) -> Result<Option<Ended>, ClientError> {
        if let Some(error) = self.gave_up_waiting(now) {
            return Err(error);
        }
        Ok(if stop.load(Ordering::Relaxed) {
            Some(Ended::Stopped)
        } else if deadline.is_some_and(|deadline| now >= deadline) {
            Some(Ended::Deadline)
        } else if count.is_some_and(|count| self.answered >= count) {
            Some(Ended::Count)
        } else {
            None
        })
    }

    /// Starts the first batches, then (in a paced run) every batch whose time has come.
    /// Returns how the server ended the run, if a write found a connection closed.
    fn start_batches(&mut self, now: Instant) -> Result<Option<Ended>, ClientError> {
        while let Some(index) = self.starting.pop().or_else(|| self.load.take_due(now)) {
            let connection = &mut self.connections[index];
            connection.start_batch(&mut self.load, now)?;
            if connection.write_closed() {
                self.answered += connection.on_ready(&mut self.load, true)?;
            }
            if let Some(ended) = connection.ended() {
                return Ok(Some(ended));
            }
        }
        Ok(None)
    }

    /// When the loop must wake up at the latest: `wake_at` (the next second's report, the
    /// deadline), the next paced batch, or the end of an `error: ` line's patience.
    fn wake_at(&self, wake_at: Instant) -> Instant {
        let paced = self.load.next_due().map_or(wake_at, |due| due.min(wake_at));
        self.awaiting
            .iter()
            .filter_map(|&index| self.connections[index].awaiting_close())
            .map(|since| since + LAST_WORDS_PATIENCE)
            .fold(paced, Instant::min)
    }

    /// Handles one readiness event. Returns how the server ended the run, if it closed this
    /// connection.
    fn on_ready(&mut self, event: &Event) -> Result<Option<Ended>, ClientError> {
        let index = event.token().0;
        let connection = &mut self.connections[index];
        let read_closed = event.is_read_closed() || event.is_error();
        self.answered += connection.on_ready(&mut self.load, read_closed)?;
        if let Some(on_answer) = self.on_answer.as_deref_mut() {
            self.load.take_answers().iter().for_each(&mut *on_answer);
        }
        if connection.awaiting_close().is_some() && !self.awaiting.contains(&index) {
            self.awaiting.push(index);
        }
        Ok(connection.ended())
    }

    /// The error of the first connection whose `error: ` line has waited long enough for
    /// the end of the stream that did not come.
    fn gave_up_waiting(&self, now: Instant) -> Option<ClientError> {
        self.awaiting.iter().find_map(|&index| {
            let since = self.connections[index].awaiting_close()?;
            if now < since + LAST_WORDS_PATIENCE {
                return None;
            }
            self.connections[index].error_line_error(self.load.request())
        })
    }

    /// After the run: waits on the connections whose last line was an `error: ` line until
    /// the server closes one (returned: it ended the run) or their patience runs out (an
    /// error). Other connections' events are ignored: the run is over for them.
    fn settle(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
    ) -> Result<Option<Ended>, ClientError> {
        loop {
            let now = Instant::now();
            if let Some(error) = self.gave_up_waiting(now) {
                return Err(error);
            }
            let Some(wake_at) = self
                .awaiting
                .iter()
                .filter_map(|&index| self.connections[index].awaiting_close())
                .map(|since| since + LAST_WORDS_PATIENCE)
                .min()
            else {
                return Ok(None);
            };
            match poll.poll(events, Some(wake_at.saturating_duration_since(now))) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(ClientError::Poll(error)),
            }
            for event in events.iter() {
                let index = event.token().0;
                if !self.awaiting.contains(&index) {
                    continue;
                }
                // Any answer here is an error (bytes after the `error: ` line), so nothing
                // is counted after the end of the run.
                let read_closed = event.is_read_closed() || event.is_error();
                self.connections[index].on_ready(&mut self.load, read_closed)?;
                if let Some(ended) = self.connections[index].ended() {
                    return Ok(Some(ended));
                }
            }
        }
    }
}

/// The time between two batches on one connection for at most `rate` requests per second.
fn batch_interval(depth: usize, rate: f64) -> Result<Duration, ClientError> {
    let refused = || {
        ClientError::Config(format!(
            "the rate must be a positive number of requests per second, not {rate}"
        ))
    };
    if !rate.is_finite() || rate <= 0.0 {
        return Err(refused());
    }
    // Lossless for any depth a batch of requests can have in memory (below 2^53).
    Duration::try_from_secs_f64(depth as f64 / rate).map_err(|_| refused())
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
    fn a_rate_paces_whole_batches() {
        assert_eq!(
            batch_interval(1, 2.0).ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(batch_interval(1, 0.5).ok(), Some(Duration::from_secs(2)));
        assert_eq!(batch_interval(16, 4.0).ok(), Some(Duration::from_secs(4)));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300] {
            assert!(
                matches!(batch_interval(1, bad), Err(ClientError::Config(_))),
                "{bad}"
            );
        }
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
            FastConfig {
                rate: Some(0.0),
                ..FastConfig::default()
            },
        ] {
            let result = run_fast(&config, &stop, &mut |_| {});
            assert!(matches!(result, Err(ClientError::Config(_))), "{config:?}");
        }
    }
}
