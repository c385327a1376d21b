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

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::answers::AnswerChecker;
use crate::connect::connect;
use crate::error::ClientError;
use crate::request::Request;
use crate::stats::Latency;

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
        }
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
        })
    }

    /// Answers received on this connection.
    pub fn answered(&self) -> u64 {
        self.answered
    }

    /// Starts the next batch and writes as much of it as the socket takes. Does nothing when
    /// `--count` allows no more requests.
    ///
    /// # Errors
    ///
    /// When the write fails (the server closed the connection).
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
    /// every answer that has arrived, starting the next batch whenever one completes.
    /// Returns how many answers arrived.
    ///
    /// # Errors
    ///
    /// When the server closed the connection, answered something other than the expected
    /// line, or the socket failed.
    pub fn on_ready(&mut self, load: &mut Load) -> Result<u64, ClientError> {
        self.flush(&load.batch)?;
        let mut answered = 0;
        loop {
            let received = match self.stream.read(&mut load.buffer) {
                Ok(0) => return Err(self.closed(&load.request)),
                Ok(received) => received,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(ClientError::from_io(error, self.number, self.answered)),
            };
            let answers = self
                .checker
                .feed(load.request.answer(), &load.buffer[..received])
                .map_err(|line| bad_answer(&load.request, &line))?;
            if answers > 0 {
                if answers > self.in_flight {
                    return Err(ClientError::ExtraAnswer {
                        connection: self.number,
                    });
                }
                // One clock read per read call, not per answer: answers that arrived
                // together were seen by the client at the same moment anyway.
                let now = Instant::now();
                load.latency.record(now - self.sent_at, answers);
                self.in_flight -= answers;
                self.answered += answers;
                answered += answers;
                if self.in_flight == 0 {
                    self.start_batch(load, now)?;
                }
            }
            // A read that did not fill the buffer emptied the socket: stop here instead of
            // paying one more system call to hear `WouldBlock`. This is safe with epoll's
            // edge triggers because data arriving later raises a new edge; tokio relies on
            // the same rule (it clears read readiness after a short read).
            if received < load.buffer.len() {
                break;
            }
        }
        Ok(answered)
    }

    /// Writes the rest of the current batch until it is all written or the socket's send
    /// buffer is full. In the second case a writable event comes when there is room again.
    fn flush(&mut self, batch: &[u8]) -> Result<(), ClientError> {
        while self.written < self.batch_len {
            match self.stream.write(&batch[self.written..self.batch_len]) {
                Ok(0) => {
                    return Err(ClientError::Closed {
                        connection: self.number,
                        answered: self.answered,
                    });
                }
                // A partial write is normal for a non-blocking socket: remember how far
                // we got, and the next call goes on from there.
                Ok(written) => self.written += written,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    return Err(ClientError::from_io(error, self.number, self.answered));
                }
            }
        }
        Ok(())
    }

    /// The error for the end of the stream: the server's last words if it sent a line that
    /// was not an answer, otherwise that it closed.
    fn closed(&mut self, request: &Request) -> ClientError {
        match self.checker.unfinished_bad_line() {
            Some(line) => bad_answer(request, &line),
            None => ClientError::Closed {
                connection: self.number,
                answered: self.answered,
            },
        }
    }
}

fn bad_answer(request: &Request, line: &[u8]) -> ClientError {
    ClientError::from_bad_answer(request.n(), request.value(), line)
}
