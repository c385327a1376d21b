//! The idle client: many connections that do nothing, held open.
//!
//! ```text
//! cargo run -p step02                                                # in one terminal
//! cargo run -p clients --bin fast -- --idle --conns 1000 --secs 30   # in another
//! ps -o pid,nlwp,rss,cmd -C step02                                   # in a third
//! ```
//!
//! **What it shows:** what a connection that does nothing costs a server. step02 holds a
//! thread per connection: `ps` or `top` shows a thousand threads (NLWP) and their stacks in
//! the resident memory (RSS). step03's event loop holds the same thousand connections in one
//! thread with a few hundred bytes each. The results table measures the same thing (its idle
//! column); this is the version to watch live.
//!
//! **How:** it opens every connection and sends one request on each (`1\n`) to see that the
//! server serves it, then nothing, and prints once a second how many connections are still
//! open (and how many the server has not served yet: a server that serves one connection
//! at a time serves only the first). At the end (`--secs`, or Ctrl-C) it asks one more
//! request on each connection still open and counts the answers. A server that closes idle
//! connections (`error: idle timeout` after its `--idle-timeout`, 60 s by default) is
//! counted and reported, not an error.
//!
//! One thread drives every connection with a readiness loop, as in the fast client: the
//! client must not need a thousand threads to show that a server does.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};

use crate::answers::{AnswerChecker, last_words};
use crate::connect::{connect, ensure_file_limit};
use crate::error::{ClientError, closed_by_peer};
use crate::report::Ended;
use crate::request::Request;

/// How often the loop looks at the stop flag when no socket has anything to say.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// How long the final check waits for the answers, plus a millisecond per connection: a
/// server answers a thousand `1\n` requests in milliseconds, so only one that does not serve
/// some connections at all (step01) makes the check wait this long.
const END_CHECK_PATIENCE: Duration = Duration::from_secs(5);

/// Readiness events taken per poll.
const EVENTS_PER_POLL: usize = 1024;

/// What an idle run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleConfig {
    /// The server's address.
    pub addr: SocketAddr,
    /// How many connections to hold open.
    pub conns: usize,
    /// How long to hold them (measured after connecting); `None` until the stop flag.
    pub duration: Option<Duration>,
}

impl Default for IdleConfig {
    /// One connection to the default address, held until stopped.
    fn default() -> Self {
        IdleConfig {
            addr: crate::cli::default_addr(),
            conns: 1,
            duration: None,
        }
    }
}

/// One line of progress of the idle client, once a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleSecond {
    /// Time since every connection was open.
    pub elapsed: Duration,
    /// Connections still open.
    pub open: usize,
    /// Open connections whose first request has no answer yet: the server has not served
    /// them (or not yet accepted them).
    pub unserved: usize,
    /// Connections the server has closed.
    pub closed: usize,
}

impl fmt::Display for IdleSecond {
    /// `   3.0 s     1000 open`, then what is not as it should be.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:6.1} s {:>8} open",
            self.elapsed.as_secs_f64(),
            self.open
        )?;
        if self.unserved > 0 {
            write!(f, ", {} not served yet", self.unserved)?;
        }
        if self.closed > 0 {
            write!(f, ", {} closed by the server", self.closed)?;
        }
        Ok(())
    }
}

/// The result of an idle run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleReport {
    /// Connections asked for.
    pub conns: usize,
    /// Connections opened: fewer than asked only when stopped while opening.
    pub opened: usize,
    /// How long they were held, from when all were open to the final check.
    pub held: Duration,
    /// Connections whose first request was answered while they were held.
    pub answered_at_start: usize,
    /// Connections still open at the end that answered the final request (and the first).
    pub answered_at_end: usize,
    /// Connections the server closed (and that did not answer at the end).
    pub closed: usize,
    /// The last line of a connection the server closed, when it was not an answer: its
    /// reason, such as `error: idle timeout`.
    pub last_line: Option<String>,
    /// How long the final check waited for answers before giving up on the rest.
    pub patience: Duration,
    /// Why the holding ended: [`Ended::Deadline`] or [`Ended::Stopped`].
    pub ended: Ended,
}

impl IdleReport {
    /// Connections open at the end that did not answer in time.
    pub fn silent(&self) -> usize {
        self.opened - self.answered_at_end - self.closed
    }
}

impl fmt::Display for IdleReport {
    /// `1000 idle connections held for 10.0 s; 1000 answered at the end`, and what went
    /// wrong with the others.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.opened == 1 {
            "connection"
        } else {
            "connections"
        };
        write!(f, "{} idle {noun}", self.opened)?;
        if self.opened < self.conns {
            write!(f, " (of {} asked for)", self.conns)?;
        }
        write!(f, " held for {:.1} s; ", self.held.as_secs_f64())?;
        if self.answered_at_end == self.opened {
            return write!(f, "{} answered at the end", self.answered_at_end);
        }
        write!(
            f,
            "{} of {} answered at the end",
            self.answered_at_end, self.opened
        )?;
        if self.closed > 0 {
            write!(f, "; the server closed {}", self.closed)?;
            if let Some(line) = &self.last_line {
                // `escape_debug` keeps the promise of one line whatever the server sent.
                write!(f, " ({})", line.escape_debug())?;
            }
        }
        if self.silent() > 0 {
            write!(
                f,
                "; {} did not answer within {:.1} s",
                self.silent(),
                self.patience.as_secs_f64()
            )?;
        }
        Ok(())
    }
}

/// Opens `config.conns` connections, sends one request on each, holds them until
/// `config.duration` or `stop`, then checks with one more request that each is still served.
///
/// `on_second` is called about once a second with how many connections are open.
///
/// # Errors
///
/// A [`ClientError`] when there are no connections to open, the open-file limit is too low
/// for them (it is raised as far as allowed first), a connection cannot be opened, or the
/// server answers wrongly. A server that closes connections, or does not answer them, is
/// not an error: the report counts them.
pub fn run_idle(
    config: &IdleConfig,
    stop: &AtomicBool,
    on_second: &mut dyn FnMut(&IdleSecond),
) -> Result<IdleReport, ClientError> {
    if config.conns == 0 {
        return Err(ClientError::Config(
            "the idle client needs at least one connection".into(),
        ));
    }
    ensure_file_limit(config.conns)?;
    let request = Request::new(1)?;
    let poll = Poll::new().map_err(ClientError::Poll)?;
    let mut connections = Vec::with_capacity(config.conns);
    for index in 0..config.conns {
        // Ctrl-C while opening many connections stops at once.
        if stop.load(Ordering::Relaxed) {
            break;
        }
        connections.push(Idle::open(
            config.addr,
            Token(index),
            poll.registry(),
            &request,
        )?);
    }

    let mut run = IdleRun {
        poll,
        events: Events::with_capacity(EVENTS_PER_POLL),
        buffer: vec![0; 4096],
        connections,
        request,
    };
    let start = Instant::now();
    let deadline = config.duration.map(|duration| start + duration);
    let mut next_second = start + Duration::from_secs(1);
    let ended = loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) {
            break Ended::Stopped;
        }
        if deadline.is_some_and(|deadline| now >= deadline) {
            break Ended::Deadline;
        }
        if now >= next_second {
            on_second(&run.second(now - start));
            // Stay on whole seconds from the start; skip the ones missed in a stall.
            next_second += Duration::from_secs(1);
            if next_second <= now {
                next_second = now + Duration::from_secs(1);
            }
        }
        let wake_at = deadline.map_or(next_second, |deadline| deadline.min(next_second));
        run.wait(
            wake_at
                .saturating_duration_since(now)
                .min(STOP_CHECK_INTERVAL),
        )?;
    };
    let held = start.elapsed();
    let answered_at_start = run
        .connections
        .iter()
        .filter(|connection| connection.answers > 0)
        .count();

    // The final check: one more request on each connection still open, and their answers.
    // It does not look at the stop flag: a Ctrl-C brought the run here, and the check is
    // bounded by its patience (a second Ctrl-C exits at once).
    let opened = run.connections.len();
    // usize -> u64 cannot lose anything on the 32- and 64-bit targets Rust supports.
    let patience = END_CHECK_PATIENCE + Duration::from_millis(opened as u64);
    let mut asked = vec![false; opened];
    for (index, (connection, asked)) in run.connections.iter_mut().zip(&mut asked).enumerate() {
        *asked = connection.ask(&run.request, index + 1)?;
    }
    let check_deadline = Instant::now() + patience;
    loop {
        let now = Instant::now();
        let done = run.connections.iter().all(Idle::settled);
        if done || now >= check_deadline {
            break;
        }
        run.wait(check_deadline - now)?;
    }

    let answered: Vec<bool> = run
        .connections
        .iter()
        .zip(&asked)
        .map(|(connection, asked)| *asked && connection.answers == connection.sent)
        .collect();
    let closed_ones = || {
        run.connections
            .iter()
            .zip(&answered)
            .filter(|(connection, answered)| connection.closed && !**answered)
            .map(|(connection, _)| connection)
    };
    Ok(IdleReport {
        conns: config.conns,
        opened,
        held,
        answered_at_start,
        answered_at_end: answered.iter().filter(|&&answered| answered).count(),
        closed: closed_ones().count(),
        last_line: closed_ones().find_map(|connection| connection.last_line.clone()),
        patience,
        ended,
    })
}

/// The event loop's state during an idle run.
struct IdleRun {
    poll: Poll,
    events: Events,
    /// One read buffer for every connection: they receive a line or two each.
    buffer: Vec<u8>,
    connections: Vec<Idle>,
    request: Request,
}

impl IdleRun {
    /// Waits up to `timeout` for the connections, and reads what arrived.
    fn wait(&mut self, timeout: Duration) -> Result<(), ClientError> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            // A signal (Ctrl-C) interrupted the wait: the caller looks at the stop flag.
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(error) => return Err(ClientError::Poll(error)),
        }
        for event in self.events.iter() {
            // Tokens are indices into `connections`, handed out when registering.
            let index = event.token().0;
            self.connections[index].on_readable(&self.request, &mut self.buffer, index + 1)?;
        }
        Ok(())
    }

    fn second(&self, elapsed: Duration) -> IdleSecond {
        let open = || self.connections.iter().filter(|c| !c.closed);
        IdleSecond {
            elapsed,
            open: open().count(),
            unserved: open().filter(|c| c.answers == 0).count(),
            closed: self.connections.iter().filter(|c| c.closed).count(),
        }
    }
}

/// One idle connection: how many requests it sent and answers it got, and whether the
/// server closed it.
#[derive(Debug)]
struct Idle {
    stream: TcpStream,
    checker: AnswerChecker,
    sent: u64,
    answers: u64,
    closed: bool,
    /// An `error: ` line the server sent (its reason for closing, usually).
    last_line: Option<String>,
}

impl Idle {
    /// Connects, sends the first request, and registers the socket for readable events.
    fn open(
        addr: SocketAddr,
        token: Token,
        registry: &Registry,
        request: &Request,
    ) -> Result<Idle, ClientError> {
        let mut stream = connect(addr)?;
        // Written while the socket still blocks: two bytes into the empty send buffer of a
        // new connection never wait, even for a server that does not accept.
        let closed = match stream.write_all(request.line()) {
            Ok(()) => false,
            Err(error) if closed_by_peer(&error) => true,
            Err(error) => return Err(ClientError::io(error, token.0 + 1)),
        };
        stream
            .set_nonblocking(true)
            .map_err(|error| ClientError::Connect { addr, error })?;
        let mut stream = TcpStream::from_std(stream);
        registry
            .register(&mut stream, token, Interest::READABLE)
            .map_err(ClientError::Poll)?;
        Ok(Idle {
            stream,
            checker: AnswerChecker::new(),
            sent: 1,
            answers: 0,
            closed,
            last_line: None,
        })
    }

    /// Sends the final request, if the connection is still open. Returns whether it did.
    fn ask(&mut self, request: &Request, number: usize) -> Result<bool, ClientError> {
        if self.closed {
            return Ok(false);
        }
        match self.stream.write(request.line()) {
            Ok(written) if written == request.line().len() => {
                self.sent += 1;
                Ok(true)
            }
            // A partial or refused write of two bytes means a send buffer full of earlier
            // requests the server never read: it does not serve this connection.
            Ok(_) => Ok(false),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(error) if closed_by_peer(&error) => {
                self.closed = true;
                Ok(false)
            }
            Err(error) => Err(ClientError::io(error, number)),
        }
    }

    /// Whether the final check has nothing more to wait for on this connection.
    fn settled(&self) -> bool {
        self.closed || self.answers == self.sent
    }

    /// Reads what arrived until the socket is empty or closed.
    fn on_readable(
        &mut self,
        request: &Request,
        buffer: &mut [u8],
        number: usize,
    ) -> Result<(), ClientError> {
        let bad_answer =
            |line: &[u8]| ClientError::from_bad_answer(request.n(), request.value(), line);
        while !self.closed {
            let received = match self.stream.read(buffer) {
                Ok(0) => {
                    self.close(&bad_answer)?;
                    break;
                }
                Ok(received) => received,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if closed_by_peer(&error) => {
                    self.close(&bad_answer)?;
                    break;
                }
                Err(error) => return Err(ClientError::io(error, number)),
            };
            let mut bytes = &buffer[..received];
            while !bytes.is_empty() {
                match self.checker.feed(request.answer(), bytes) {
                    Ok(answers) => {
                        self.answers += answers;
                        bytes = &[];
                    }
                    Err(bad) if bad.is_error() => {
                        // The server's reason for closing, most likely (idle timeout); kept
                        // for the report. What came after it is checked too.
                        self.answers += bad.answers;
                        self.last_line = Some(String::from_utf8_lossy(&bad.line).into_owned());
                        bytes = &bytes[bytes.len() - bad.trailing..];
                    }
                    Err(bad) => return Err(bad_answer(&bad.line)),
                }
            }
            if self.answers > self.sent {
                return Err(ClientError::ExtraAnswer { connection: number });
            }
        }
        Ok(())
    }

    /// The server closed the connection: keeps its last words, if it said any.
    fn close(&mut self, bad_answer: &dyn Fn(&[u8]) -> ClientError) -> Result<(), ClientError> {
        self.closed = true;
        if let Some(line) = last_words(None, &mut self.checker).map_err(|line| bad_answer(&line))? {
            self.last_line = Some(line);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> IdleReport {
        IdleReport {
            conns: 1000,
            opened: 1000,
            held: Duration::from_secs(10),
            answered_at_start: 1000,
            answered_at_end: 1000,
            closed: 0,
            last_line: None,
            patience: Duration::from_secs(6),
            ended: Ended::Deadline,
        }
    }

    #[test]
    fn a_good_run_is_one_short_line() {
        assert_eq!(
            report().to_string(),
            "1000 idle connections held for 10.0 s; 1000 answered at the end"
        );
    }

    #[test]
    fn connections_the_server_closed_or_forgot_are_counted() {
        let report = IdleReport {
            held: Duration::from_secs(70),
            answered_at_end: 990,
            closed: 8,
            last_line: Some("error: idle timeout".into()),
            ..report()
        };
        assert_eq!(report.silent(), 2);
        assert_eq!(
            report.to_string(),
            "1000 idle connections held for 70.0 s; 990 of 1000 answered at the end; \
             the server closed 8 (error: idle timeout); 2 did not answer within 6.0 s"
        );
    }

    #[test]
    fn a_run_stopped_while_opening_says_how_many_were_opened() {
        let report = IdleReport {
            opened: 1,
            answered_at_end: 1,
            ended: Ended::Stopped,
            ..report()
        };
        assert_eq!(
            report.to_string(),
            "1 idle connection (of 1000 asked for) held for 10.0 s; 1 answered at the end"
        );
    }

    #[test]
    fn a_second_shows_what_is_not_served() {
        let second = IdleSecond {
            elapsed: Duration::from_secs(3),
            open: 1000,
            unserved: 999,
            closed: 0,
        };
        assert_eq!(
            second.to_string(),
            "   3.0 s     1000 open, 999 not served yet"
        );
        let closed = IdleSecond {
            open: 0,
            unserved: 0,
            closed: 1000,
            ..second
        };
        assert_eq!(
            closed.to_string(),
            "   3.0 s        0 open, 1000 closed by the server"
        );
    }

    #[test]
    fn no_connections_is_an_error_not_a_panic() {
        let config = IdleConfig {
            conns: 0,
            ..IdleConfig::default()
        };
        let result = run_idle(&config, &AtomicBool::new(false), &mut |_| {});
        assert!(matches!(result, Err(ClientError::Config(_))));
    }
}
