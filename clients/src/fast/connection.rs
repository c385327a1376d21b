//! One connection of the fast client: a small state machine driven by readiness events.
//!
//! A connection writes a *batch* (`depth` request lines in one write), counts answers as
//! they arrive, and writes the next batch once every answer of this one is in. With depth 1
//! that is the plain request/answer ping-pong; with depth 16 it is pipelining, which shows
//! how much of a server's cost is per system call rather than per request.
//!
//! The socket is non-blocking and registered edge-triggered (mio's only mode): an event says
//! "something changed", and the connection must read, and write, until the kernel says
//! `WouldBlock`, or it will not hear from that socket again.
//!
//! When the server closes the connection, the connection records it ([`Connection::ended`])
//! and the run ends with a report that says so. An `error: ` line instead of an answer is
//! either the server's last words before closing (`error: idle timeout`) or the answer to a
//! request (`error: n must be at most 45`, a run that measures nothing): only what follows
//! tells, so the connection waits ([`Connection::awaiting_close`]) for the end of the stream
//! (last words) or more bytes (an error) and the run gives up waiting after
//! [`LAST_WORDS_PATIENCE`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::answers::{AnswerChecker, last_words};
use crate::connect::connect;
use crate::error::{ClientError, closed_by_peer};
use crate::report::{Ended, FastAnswer};
use crate::request::Request;
use crate::stats::Latency;

/// How long an `error: ` line may wait for the end of the stream that makes it the server's
/// last words. A server closes right after writing them (microseconds on loopback), so this
/// is a generous safety net; it delays only the error of a run whose every answer is an
/// error, by this much.
pub const LAST_WORDS_PATIENCE: Duration = Duration::from_millis(500);

/// What all connections of one run share: the request, the batch bytes, the `--count`
/// budget, the latency histogram and the read buffer. One thread drives every connection,
/// so one read buffer serves them all and stays hot in the cache.
#[derive(Debug)]
pub struct Load {
    request: Request,
    /// `depth` copies of the request line, built once: every batch is a prefix of it.
    batch: Vec<u8>,
    depth: usize,
    /// Requests that `--count` still allows, or `None` for no limit.
    unsent: Option<u64>,
    latency: Latency,
    buffer: Vec<u8>,
    /// With `--rate`: when each connection whose batch is answered may start the next.
    pacing: Option<Pacing>,
    /// When the caller wants every answer as it arrives: the reads with answers since it
    /// last took them. `None` otherwise, so that a full-speed run pays nothing for it.
    trace: Option<Vec<FastAnswer>>,
}

/// The schedule of a paced run.
#[derive(Debug)]
struct Pacing {
    /// From the start of one batch to the start of the next on the same connection.
    interval: Duration,
    /// Connections waiting for their next batch, earliest first (by index into the run's
    /// connections).
    due: BinaryHeap<Reverse<(Instant, usize)>>,
}

/// Large enough for every answer of a deep pipeline over many connections to arrive in one
/// read each; small enough to stay in the L2 cache.
const READ_BUFFER: usize = 64 * 1024;

impl Load {
    /// The shared state of a run sending `request` `depth` at a time, `count` in all.
    pub fn new(request: Request, depth: usize, count: Option<u64>) -> Load {
        Load {
            batch: request.line().repeat(depth),
            request,
            depth,
            unsent: count,
            latency: Latency::new(),
            buffer: vec![0; READ_BUFFER],
            pacing: None,
            trace: None,
        }
    }

    /// Paces the run: a connection whose batch is answered starts the next one `interval`
    /// after it started the last, instead of at once. The run's loop starts them
    /// ([`Load::take_due`]).
    pub fn pace(&mut self, interval: Duration) {
        self.pacing = Some(Pacing {
            interval,
            due: BinaryHeap::new(),
        });
    }

    /// Keeps every read's answers for [`Load::take_answers`].
    pub fn trace_answers(&mut self) {
        self.trace = Some(Vec::new());
    }

    /// The answers that arrived since the last call (none unless [`Load::trace_answers`]).
    pub fn take_answers(&mut self) -> Vec<FastAnswer> {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// In a paced run, when the next connection may start its next batch.
    pub fn next_due(&self) -> Option<Instant> {
        let pacing = self.pacing.as_ref()?;
        pacing.due.peek().map(|Reverse((due, _))| *due)
    }

    /// In a paced run, a connection (by index) whose next batch is due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Option<usize> {
        let pacing = self.pacing.as_mut()?;
        match pacing.due.peek() {
            Some(Reverse((due, _))) if *due <= now => pacing.due.pop().map(|Reverse((_, i))| i),
            _ => None,
        }
    }

    /// The request every connection repeats.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The latencies recorded so far; the run hands the histogram to its report.
    pub fn into_latency(self) -> Latency {
        self.latency
    }

    /// How many requests the next batch may hold: `depth`, fewer when `--count` runs out.
    fn take_batch(&mut self) -> u64 {
        // usize -> u64 cannot lose anything on the 32- and 64-bit targets Rust supports.
        let depth = self.depth as u64;
        match &mut self.unsent {
            None => depth,
            Some(unsent) => {
                let batch = depth.min(*unsent);
                *unsent -= batch;
                batch
            }
        }
    }
}

/// One connection's socket and where it is in its current batch.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    /// Counted from 1, for messages.
    number: usize,
    checker: AnswerChecker,
    /// Bytes in the current batch, and how many of them are written.
    batch_len: usize,
    written: usize,
    /// Requests of the current batch not answered yet.
    in_flight: u64,
    /// When the current batch was started: each answer's latency is measured from here.
    sent_at: Instant,
    answered: u64,
    /// An `error: ` line the server sent instead of an answer, and when it arrived: its last
    /// words if the end of the stream follows, an error if more bytes do.
    error_line: Option<(Vec<u8>, Instant)>,
    /// A write found the connection closed (or reset): reading on tells how it ended.
    write_closed: bool,
    /// The server closed the connection: its last line, if it was not an answer, and
    /// whether the connection was reset.
    closed: Option<(Option<String>, bool)>,
}

impl Connection {
    /// Connects to `addr` (blocking: connecting is not what is measured) and registers the
    /// socket with the poll under `token`.
    ///
    /// It registers for both readable and writable events, once. Edge-triggered events come
    /// only on a change, so a connection that is not waiting to write costs no wake-ups for
    /// being writable, and no `reregister` system call is ever needed.
    ///
    /// # Errors
    ///
    /// [`ClientError::Connect`] or [`ClientError::Poll`].
    pub fn open(
        addr: SocketAddr,
        token: Token,
        registry: &Registry,
    ) -> Result<Connection, ClientError> {
        let stream = connect(addr)?;
        stream
            .set_nonblocking(true)
            .map_err(|error| ClientError::Connect { addr, error })?;
        let mut stream = TcpStream::from_std(stream);
        registry
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(ClientError::Poll)?;
        Ok(Connection {
            stream,
            number: token.0 + 1,
            checker: AnswerChecker::new(),
            batch_len: 0,
            written: 0,
            in_flight: 0,
            sent_at: Instant::now(),
            answered: 0,
            error_line: None,
            write_closed: false,
            closed: None,
        })
    }

    /// Answers received on this connection.
    pub fn answered(&self) -> u64 {
        self.answered
    }

    /// How the server ended this connection, once it has closed it.
    pub fn ended(&self) -> Option<Ended> {
        let (last_line, reset) = self.closed.clone()?;
        Some(Ended::ServerClosed {
            connection: self.number,
            answered: self.answered,
            last_line,
            reset,
        })
    }

    /// When the server sent an `error: ` line that may be its last words, while the
    /// connection is still open: the run waits [`LAST_WORDS_PATIENCE`] from then.
    pub fn awaiting_close(&self) -> Option<Instant> {
        match (&self.error_line, &self.closed) {
            (Some((_, since)), None) => Some(*since),
            _ => None,
        }
    }

    /// The error for an `error: ` line that was not followed by the end of the stream in
    /// time: the server answered a request with it.
    pub fn error_line_error(&self, request: &Request) -> Option<ClientError> {
        let (line, _) = self.error_line.as_ref()?;
        Some(bad_answer(request, line))
    }

    /// Whether a write found the connection closed; [`Connection::on_ready`] then learns how.
    pub fn write_closed(&self) -> bool {
        self.write_closed
    }

    /// Starts the next batch and writes as much of it as the socket takes. Does nothing when
    /// `--count` allows no more requests.
    ///
    /// # Errors
    ///
    /// When the write fails for another reason than the server closing the connection
    /// (that is recorded: see [`Connection::write_closed`]).
    pub fn start_batch(&mut self, load: &mut Load, now: Instant) -> Result<(), ClientError> {
        let requests = load.take_batch();
        if requests == 0 {
            return Ok(());
        }
        // Fits: `requests <= depth`, and the batch of `depth` lines exists in memory.
        self.batch_len = requests as usize * load.request.line().len();
        self.written = 0;
        self.in_flight = requests;
        self.sent_at = now;
        self.flush(&load.batch)
    }

    /// Handles a readiness event: finishes a partly written batch, then reads and checks
    /// every answer that has arrived, starting the next batch whenever one completes (or
    /// scheduling it, in a paced run). Returns how many answers arrived.
    ///
    /// `read_closed` is the event's word that the server has closed its side (or the socket
    /// failed): the connection then reads until the end of the stream, which would raise no
    /// further event once this one is handled.
    ///
    /// # Errors
    ///
    /// When the server answered something other than the expected line, or the socket
    /// failed. The server closing the connection is not an error: see
    /// [`Connection::ended`].
    pub fn on_ready(&mut self, load: &mut Load, read_closed: bool) -> Result<u64, ClientError> {
        self.flush(&load.batch)?;
        let mut answered = 0;
        while self.closed.is_none() {
            let received = match self.stream.read(&mut load.buffer) {
                Ok(0) => {
                    self.closed = Some(self.last_words(&load.request, false)?);
                    break;
                }
                Ok(received) => received,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if closed_by_peer(&error) => {
                    self.closed = Some(self.last_words(&load.request, true)?);
                    break;
                }
                Err(error) => return Err(ClientError::io(error, self.number)),
            };
            if let Some((line, _)) = &self.error_line {
                // More came after the error line: it answered a request, it was not the
                // server's last words.
                return Err(bad_answer(&load.request, line));
            }
            let (answers, bad) = match self
                .checker
                .feed(load.request.answer(), &load.buffer[..received])
            {
                Ok(answers) => (answers, None),
                Err(bad) => (bad.answers, Some(bad)),
            };
            if answers > 0 {
                self.count_answers(load, answers)?;
                answered += answers;
            }
            if let Some(bad) = bad {
                if !bad.is_error() || bad.trailing > 0 {
                    return Err(bad_answer(&load.request, &bad.line));
                }
                // Maybe the server's last words: read on, an end of stream may have come
                // with it.
                self.error_line = Some((bad.line, Instant::now()));
                continue;
            }
            // A read that did not fill the buffer emptied the socket: stop here instead of
            // paying one more system call to hear `WouldBlock`. This is safe with epoll's
            // edge triggers because data arriving later raises a new edge; tokio relies on
            // the same rule (it clears read readiness after a short read). An end of stream
            // that came with this data raises no new edge, though: when the event said the
            // server has closed (or a write found it closed), read on until it shows.
            if received < load.buffer.len() && !read_closed && !self.write_closed {
                break;
            }
        }
        if self.write_closed && self.closed.is_none() {
            // The write failed, and the read found nothing more: the connection is gone.
            self.closed = Some(self.last_words(&load.request, true)?);
        }
        Ok(answered)
    }

    /// Counts `answers` that just arrived for the current batch, and starts (or schedules)
    /// the next batch when this one is complete.
    fn count_answers(&mut self, load: &mut Load, answers: u64) -> Result<(), ClientError> {
        if answers > self.in_flight {
            return Err(ClientError::ExtraAnswer {
                connection: self.number,
            });
        }
        // One clock read per read call, not per answer: answers that arrived together were
        // seen by the client at the same moment anyway.
        let now = Instant::now();
        let latency = now - self.sent_at;
        load.latency.record(latency, answers);
        if let Some(trace) = &mut load.trace {
            trace.push(FastAnswer {
                connection: self.number,
                n: load.request.n(),
                value: load.request.value(),
                answers,
                latency,
            });
        }
        self.in_flight -= answers;
        self.answered += answers;
        if self.in_flight == 0 {
            match &mut load.pacing {
                // From the start of this batch, not its end: the rate does not depend on how
                // quickly the server answers (unless it is slower than the rate).
                Some(pacing) => pacing
                    .due
                    .push(Reverse((self.sent_at + pacing.interval, self.number - 1))),
                None => self.start_batch(load, now)?,
            }
        }
        Ok(())
    }

    /// Writes the rest of the current batch until it is all written or the socket's send
    /// buffer is full. In the second case a writable event comes when there is room again.
    fn flush(&mut self, batch: &[u8]) -> Result<(), ClientError> {
        while self.written < self.batch_len && !self.write_closed {
            match self.stream.write(&batch[self.written..self.batch_len]) {
                Ok(0) => self.write_closed = true,
                // A partial write is normal for a non-blocking socket: remember how far
                // we got, and the next call goes on from there.
                Ok(written) => self.written += written,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if closed_by_peer(&error) => self.write_closed = true,
                Err(error) => return Err(ClientError::io(error, self.number)),
            }
        }
        Ok(())
    }

    /// At the end of the stream: the server's last line if it was not an answer (see
    /// [`last_words`]), and whether the connection was reset.
    fn last_words(
        &mut self,
        request: &Request,
        reset: bool,
    ) -> Result<(Option<String>, bool), ClientError> {
        let error_line = self.error_line.take().map(|(line, _)| line);
        match last_words(error_line, &mut self.checker) {
            Ok(line) => Ok((line, reset)),
            Err(line) => Err(bad_answer(request, &line)),
        }
    }
}

fn bad_answer(request: &Request, line: &[u8]) -> ClientError {
    ClientError::from_bad_answer(request.n(), request.value(), line)
}
