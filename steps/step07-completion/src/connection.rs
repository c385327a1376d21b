//! One client connection: its socket, its buffers, which of its operations the kernel is
//! working on, and what to submit next when one of them completes.
//!
//! step03's connection reacted to "you may read now" by reading. This one reacts to "here is
//! what I read into your buffer": by the time the event loop hears about the connection, the
//! `recv` has already happened, into memory the connection handed to the kernel when it
//! submitted the operation. That changes who owns the buffers, and that is this file's lesson:
//!
//! - `input` (the receive buffer) belongs to the kernel while a `recv` is in flight: the
//!   kernel writes into it at a moment of its choosing. We do not even look at it until the
//!   `recv` completes, and it is a [`KernelBuffer`], a raw allocation, so that no `&mut` of
//!   ours claims it meanwhile. Its bytes are then framed into `requests`, which is ours.
//! - the [`Outbox`]'s `sending` belongs to the kernel while a `send` is in flight: appending
//!   to it could move it (a `Vec` reallocates as it grows) and the kernel would read freed
//!   memory. Answers computed meanwhile go to its `queued`, which is ours.
//! - The answers and the next receive go to the kernel together, as one linked chain
//!   (`Connection::exchange`): the receive starts once the send has gone out, and only the
//!   receive posts a completion. So a request costs one completion and one `io_uring_enter`,
//!   the one that submits its answer and waits for the next request, and when that receive's
//!   completion comes, the send is known to be done and `sending` is ours again.
//! - A connection that must close while operations are in flight (the client reset it, say)
//!   cannot simply be dropped: the kernel would write into freed memory, or a new connection
//!   given the same slab key or file descriptor number would receive the old one's
//!   completions. It asks the kernel to cancel them and stays, buffers and socket and all,
//!   until every completion has come back.
//!
//! Stopping work follows from that. An idle connection's receive carries a deadline, a link
//! timeout the kernel cancels it with (`Connection::exchange`); a graceful shutdown asks the
//! kernel to cancel the receive in flight ([`Connection::stop`]). Either way the connection
//! hears of it from the receive's own completion, `-ECANCELED`, and only then is the input
//! buffer its own again. Then it closes cleanly: the last answers, the end of its stream,
//! and the client's input drained until the client ends it, so that closing does not reset
//! the connection under answers the client has not read yet.

use std::fmt;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, Timespec};
use io_uring::{opcode, squeue};
use shared::net::{DRAIN_TIME, report_connection_error};
use shared::protocol::MAX_LINE;
use shared::protocol::{self, DEFAULT_READ_CAPACITY, Flow, IDLE_TIMEOUT_ANSWER, LineBuffer};

use crate::kernel_buffer::KernelBuffer;
use crate::outbox::Outbox;
use crate::ring::Ring;
use crate::token::Token;
use crate::trace;

/// How many bytes of answers a connection may hold for a client that is not reading them:
/// past this it stops submitting receives (backpressure), as step03 stopped reading.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// Bytes one receive can bring: a pipelining client's whole burst, usually.
const INPUT_BUFFER: usize = DEFAULT_READ_CAPACITY;

/// Bytes the line buffer holds: the longest line and its `\r\n` fit, and most pipelined
/// bursts are framed in a few passes.
const LINE_BUFFER: usize = 4 * MAX_LINE;

/// Where a connection is in its life.
///
/// step03's `Paused` is gone: a connection that holds [`OUTPUT_LIMIT`] bytes of answers simply
/// does not submit its next receive, and nothing has to be unregistered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Receiving requests and answering them.
    Reading,
    /// The server is shutting down: the kernel was asked to cancel the receive in flight,
    /// whose completion (its bytes, or `-ECANCELED`) ends the requests this connection
    /// answers.
    Stopping,
    /// Taking no more input: answer every complete line received, send; then close if the
    /// client has ended its input, or shut down our side and linger. After a line too long
    /// or the idle timeout, the last answer is the error.
    Finishing { input_ended: bool },
    /// Our side is shut down: discard what the client still sends until it ends its input,
    /// so that closing does not reset the connection before it has read every answer.
    Lingering,
    /// Done, or broken (reset, vanished): waiting for the kernel to finish or cancel the
    /// operations in flight before the connection may be dropped.
    Closing,
}

/// What the event loop should do with a connection after handling one of its completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Keep it: it has operations in flight.
    Open,
    /// Drop it: nothing in flight names it any more (neither its slab key nor its socket).
    Closed,
}

/// What a connection needs from the event loop that serves it: the ring to submit its
/// operations to, and the settings.
#[derive(Debug)]
pub struct Core<'a> {
    pub ring: &'a mut Ring,
    pub max_n: u32,
    /// `--idle-timeout`, or `None` where it is 0.
    pub idle: Option<Duration>,
}

// ANCHOR: connection
/// A client connection: its socket, its buffers and its operations in flight.
pub struct Connection {
    stream: TcpStream,
    /// Where receives put the bytes. The kernel's while `recv_in_flight`.
    input: KernelBuffer,
    /// The unfinished tail of the requests received so far. Always ours.
    requests: LineBuffer,
    /// Received bytes not framed yet because the connection was over its bounds.
    unread: Vec<u8>,
    /// Answers, and the send in flight: partly the kernel's, see [`Outbox`].
    outbox: Outbox,
    state: State,
    /// When the next receive gives up waiting (idle, or lingering too long).
    deadline: Deadline,
    recv_in_flight: bool,
    /// Cancellations asked for whose completions have not come yet.
    cancels_in_flight: u32,
}
// ANCHOR_END: connection

/// When a connection's next receive gives up waiting: a link timeout behind it, the kernel's
/// own timer, which cancels it.
#[derive(Debug)]
struct Deadline {
    /// Until when: `--idle-timeout` after the last complete line while reading, the end of
    /// the drain while lingering; `None` for as long as it takes.
    at: Option<Instant>,
    /// A complete line has been answered since `at` was set: the idle deadline moves on.
    moved: bool,
    /// How long lingering drains: [`DRAIN_TIME`], or, while the server shuts down, until the
    /// end of its grace period (`None`).
    drain: Option<Duration>,
    /// The link timeout's duration, where the kernel reads it when it takes the submission.
    /// On the heap: the slab moves connections as it grows.
    left: Box<Timespec>,
}

impl Connection {
    /// A freshly accepted connection; [`advance`](Self::advance) submits its first receive.
    pub fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            input: KernelBuffer::new(INPUT_BUFFER, 1),
            requests: LineBuffer::with_capacity(LINE_BUFFER),
            unread: Vec::new(),
            outbox: Outbox::default(),
            state: State::Reading,
            deadline: Deadline {
                at: None,
                moved: true,
                drain: Some(DRAIN_TIME),
                left: Box::new(Timespec::new()),
            },
            recv_in_flight: false,
            cancels_in_flight: 0,
        }
    }

    // ANCHOR: on_completion
    /// A receive completed: `result` bytes are now in `input`, or it is the end of the
    /// client's input (0), or an error (negative errno).
    pub fn on_received(&mut self, result: i32, core: &mut Core<'_>) {
        self.recv_in_flight = false;
        // A receive linked behind a send starts only once the send went out whole, so its
        // completion is the send's too.
        self.outbox.on_chain_done();
        let cancelled = result == -libc::ECANCELED;
        match (self.state, result) {
            // Cancelled, or it raced the cancellation: either way the bytes are not wanted.
            (State::Closing, _) => {}
            // Bytes (received before a stop took effect, maybe): answered.
            (State::Reading | State::Stopping, 1..) => self.take_received(result, core.max_n),
            (State::Reading | State::Stopping, 0) => {
                self.state = State::Finishing { input_ended: true };
            }
            // The link timeout fired: idle for `--idle-timeout`.
            (State::Reading, _) if cancelled => self.time_out(),
            (State::Stopping, _) if cancelled => {}
            (State::Lingering, 1..) => {} // discarded
            // The client has read everything and closed, or the drain's time is up.
            (State::Lingering, _) if result == 0 || cancelled => self.state = State::Closing,
            // The client reset or vanished: this ends only this connection.
            (_, error) => self.fail(io::Error::from_raw_os_error(-error)),
        }
    }

    /// A send completed: the kernel took `result` bytes of the outbox, or failed.
    ///
    /// A send linked to a receive completes only when the chain broke (the send failed, or
    /// was cancelled): the kernel then cancels the rest of the chain without completions of
    /// their own, so nothing of it is in flight any more.
    pub fn on_sent(&mut self, result: i32) {
        if self.outbox.chained() {
            self.recv_in_flight = false;
        }
        if let Err(error) = self.outbox.on_sent(result) {
            self.fail(error);
        }
    }
    // ANCHOR_END: on_completion

    /// A cancellation this connection asked for completed.
    pub fn on_cancelled(&mut self) {
        self.cancels_in_flight -= 1;
    }

    /// The server is shutting down: answer what has been received, then close cleanly.
    ///
    /// A receive in flight is the kernel's: it cannot be taken back, only cancelled, and the
    /// connection waits for its completion to learn what it brought (`advance` asks, while
    /// `Stopping`). Without one, the connection finishes at once.
    pub fn stop(&mut self) {
        self.deadline.drain = None;
        if self.state == State::Reading {
            self.state = if self.recv_in_flight {
                State::Stopping
            } else {
                State::Finishing { input_ended: false }
            };
        }
    }

    /// Idle for `--idle-timeout`: the last answer is the idle error, then the connection
    /// closes cleanly.
    fn time_out(&mut self) {
        self.outbox.queue().extend_from_slice(IDLE_TIMEOUT_ANSWER);
        self.state = State::Finishing { input_ended: false };
    }

    /// The connection broke: say why, unless the client merely left, and close it. Only the
    /// first failure is reported; whatever completes after it is part of the closing.
    fn fail(&mut self, error: io::Error) {
        if self.state != State::Closing {
            report_connection_error("step07", &error);
            self.state = State::Closing;
        }
    }

    /// After a completion: answer what can be answered, then submit what the connection
    /// waits for next. `key` is the connection's key in the event loop's slab, which its
    /// operations carry back in their `user_data`; `core` is what it submits to.
    ///
    /// # Errors
    ///
    /// Only when the ring fails; a failing client ends its own connection.
    pub fn advance(&mut self, key: usize, core: &mut Core<'_>) -> io::Result<Status> {
        if self.state == State::Closing {
            return self.close(key, core.ring);
        }
        if self.state == State::Stopping {
            if self.recv_in_flight {
                self.cancel(key, core.ring)?;
                return Ok(Status::Open);
            }
            self.state = State::Finishing { input_ended: false };
        }
        // Input that waited while the connection was over its bounds comes first; the line
        // buffer and `unread` are ours whatever is in flight, the input buffer only between
        // receives.
        if matches!(self.state, State::Reading | State::Finishing { .. }) && !self.paused() {
            let unread = std::mem::take(&mut self.unread);
            let used = self.take_input(&unread, core.max_n);
            self.unread = unread;
            self.unread.drain(..used);
        }
        if self.state == State::Reading
            && !self.recv_in_flight
            && !self.paused()
            && self.unread.is_empty()
        {
            match self.time_left(core.idle) {
                Some(left) if left.is_zero() => {
                    tracing::trace!("conn {key}: idle too long: error: idle timeout");
                    self.time_out();
                }
                left => return self.exchange(key, left, core.ring).map(|()| Status::Open),
            }
        }
        self.send_answers(key, core.ring)?;
        // `send_answers` submits whenever there is anything to send: no send in flight means
        // every answer has been sent.
        let all_sent = !self.outbox.in_flight();
        match self.state {
            State::Finishing { input_ended: true } if all_sent => {
                // The client ended its input and has every answer: nothing is left to drain.
                self.state = State::Closing;
                return self.close(key, core.ring);
            }
            State::Finishing { input_ended: false } if all_sent => {
                // The answers are all with the kernel: it sends them, then the end of our
                // stream.
                if self.stream.shutdown(Shutdown::Write).is_err() {
                    // The client is already gone.
                    self.state = State::Closing;
                    return self.close(key, core.ring);
                }
                self.state = State::Lingering;
                tracing::trace!("conn {key}: all answered: our side shut down, draining its input");
                self.deadline.at = self.deadline.drain.map(|drain| Instant::now() + drain);
                return self.discard(key, core.ring);
            }
            State::Lingering if !self.recv_in_flight => return self.discard(key, core.ring),
            _ => {}
        }
        Ok(Status::Open)
    }

    /// How long the next receive may wait, or `None` for as long as it takes: while reading,
    /// until `--idle-timeout` after the last complete line (answered, so the idle time starts
    /// as its answer is written); while lingering, until the drain's deadline.
    ///
    /// Partial lines do not move the deadline: a client trickling bytes without a newline
    /// times out like a silent one.
    fn time_left(&mut self, idle: Option<Duration>) -> Option<Duration> {
        if self.state == State::Reading {
            let idle = idle?;
            if std::mem::take(&mut self.deadline.moved) {
                self.deadline.at = Some(Instant::now() + idle);
                return Some(idle);
            }
        }
        Some(self.deadline.at?.saturating_duration_since(Instant::now()))
    }

    /// Whether the connection holds as many answers as it may: it takes no more input.
    fn paused(&self) -> bool {
        self.outbox.unsent() >= OUTPUT_LIMIT
    }

    /// Takes the `len` bytes a receive has just put in `input`.
    fn take_received(&mut self, len: i32, max_n: u32) {
        let input = std::mem::take(&mut self.input);
        // SAFETY: the receive that wrote these bytes has completed, and the next one is
        // submitted only after `take` has framed or copied them.
        self.take(unsafe { input.bytes(0..len as usize) }, max_n);
        self.input = input;
    }

    /// Takes newly received bytes: frames and answers them, or, behind input that is
    /// already waiting, keeps them for later.
    fn take(&mut self, data: &[u8], max_n: u32) {
        if !self.unread.is_empty() {
            self.unread.extend_from_slice(data);
            return;
        }
        let used = self.take_input(data, max_n);
        // Over the bounds in the middle of the bytes: the rest waits, copied out, so that
        // the input buffer is free for the next receive. (After a line too long, nothing
        // is left: it is all used up, unread.)
        self.unread.extend_from_slice(&data[used..]);
    }

    /// Frames `data` and answers every complete request in it, until the connection is over
    /// its bounds; returns how many bytes it used. Every answer goes to the same output
    /// buffer, so all the requests of one receive are answered by one send.
    fn take_input(&mut self, data: &[u8], max_n: u32) -> usize {
        let mut used = 0;
        loop {
            if self.answer_requests(max_n) == Flow::Close {
                self.state = State::Finishing { input_ended: false };
                return data.len(); // nothing after a line too long is framed
            }
            if self.paused() || used == data.len() {
                return used;
            }
            used += self.requests.push(&data[used..]);
        }
    }

    /// Answers the complete requests in the line buffer, until the answers reach
    /// [`OUTPUT_LIMIT`].
    ///
    /// fib runs right here, on the ring's only thread: while it computes fib(40) for one
    /// client, no completion of any other client is handled.
    fn answer_requests(&mut self, max_n: u32) -> Flow {
        while !self.paused() {
            let Some(frame) = self.requests.next_frame() else {
                break;
            };
            self.deadline.moved = true;
            if protocol::answer(frame, max_n, self.outbox.queue()) == Flow::Close {
                return Flow::Close;
            }
        }
        Flow::Continue
    }

    // ANCHOR: receive
    /// Submits the answers that wait and the next receive, into the input buffer, as one
    /// linked chain: the send first, the receive once it has gone out, and the receive's
    /// deadline (`left` from now) behind it. Without answers to send, or while a send is in
    /// flight already, the receive and its deadline go alone.
    ///
    /// All reach the kernel in the same `io_uring_enter`, the one that waits for what comes
    /// next, and only the receive posts a completion: one system call and one completion per
    /// request. Submitted side by side instead, the send's completion, arriving at once,
    /// would end that wait, and a second enter would wait for the receive.
    fn exchange(&mut self, key: usize, left: Option<Duration>, ring: &mut Ring) -> io::Result<()> {
        let timeout = self.link_timeout(key, left);
        let receive = self.receive_entry(key, timeout.is_some());
        let then: &[&squeue::Entry] = match &timeout {
            Some(timeout) => &[&receive, timeout],
            None => &[&receive],
        };
        let socket = Fd(self.stream.as_raw_fd());
        // SAFETY: the receive writes into `input`, a raw allocation owned by this
        // connection: moving the connection (the slab grows) moves only the pointer to it,
        // and no reference to its bytes exists until the receive's completion has arrived
        // (`on_received` makes the first). The connection stays in the slab, socket open,
        // until then (`recv_in_flight`, see `Status::Closed`). The timeout is
        // `link_timeout`'s, the send the outbox's (see `Outbox::send_then`);
        // `recv_in_flight` also covers a send that fails, whose completion says that the
        // rest of the chain will never run.
        let chained = unsafe {
            self.outbox
                .send_then(socket, Token::Send(key).into(), then, ring)?
        };
        if !chained {
            // SAFETY: as above.
            unsafe { ring.push_chain(then)? };
        }
        self.recv_in_flight = true;
        self.trace_exchange(key, chained, left);
        Ok(())
    }
    // ANCHOR_END: receive

    /// `--trace`: what [`exchange`](Self::exchange) submitted, in the order the kernel runs it.
    fn trace_exchange(&self, key: usize, chained: bool, left: Option<Duration>) {
        if !tracing::enabled!(tracing::Level::TRACE) {
            return;
        }
        if chained {
            let sending = self.outbox.trace_sending();
            tracing::trace!("sqe send conn {key}: {sending}, linked to the recv");
        }
        let after = if chained { ", after the send" } else { "" };
        let why = if self.state == State::Lingering {
            " (draining: its bytes are thrown away)"
        } else {
            ""
        };
        tracing::trace!("sqe recv conn {key}{after}{why}");
        if let Some(left) = left {
            let secs = left.as_secs_f64();
            tracing::trace!("sqe link timeout conn {key}: {secs:.1} s, linked to the recv");
        }
    }

    /// `--trace`: what a completion of this connection's says, before it is handled.
    pub fn trace_completion(&self, key: usize, token: Token, result: i32) {
        let error = || trace::errno(result);
        match token {
            Token::Recv(_) => {
                let what = match (result, self.state) {
                    (1.., _) => format!("{result} bytes"),
                    (0, _) => "end of input".to_string(),
                    (_, State::Reading) if result == -libc::ECANCELED => {
                        "-ECANCELED: its link timeout fired: idle too long".to_string()
                    }
                    (_, State::Lingering) if result == -libc::ECANCELED => {
                        "-ECANCELED: its link timeout fired: the drain's time is up".to_string()
                    }
                    _ => error(),
                };
                // Its send posted nothing: this completion says that it is done.
                let send = if self.outbox.chained() && result >= 0 {
                    " (so the send linked before it is done)"
                } else {
                    ""
                };
                tracing::trace!("cqe recv conn {key}: {what}{send}");
            }
            Token::Send(_) => {
                let chain = if self.outbox.chained() {
                    ", the linked recv cancelled with it"
                } else {
                    ""
                };
                let (from, total) = self.outbox.trace_offset();
                let offered = total - from;
                match result {
                    1.. if result as usize == offered => {
                        tracing::trace!("cqe send conn {key}: {result} bytes{chain}")
                    }
                    1.. => tracing::trace!(
                        "cqe send conn {key}: {result} of {offered} bytes, resubmitting from \
                         {}{chain}",
                        from + result as usize
                    ),
                    _ => tracing::trace!("cqe send conn {key}: {}{chain}", error()),
                }
            }
            Token::Cancel(_) => {
                tracing::trace!("cqe cancel conn {key}: {}", trace::cancelled(result, true));
            }
            // Posted only when it could not be set up: see `Token::LinkTimeout`.
            _ => tracing::trace!("cqe link timeout conn {key}: {}", error()),
        }
    }

    /// A receive into the input buffer, whose completion names this connection; linked to
    /// the operation after it when `linked`.
    fn receive_entry(&mut self, key: usize, linked: bool) -> squeue::Entry {
        let entry = opcode::Recv::new(
            Fd(self.stream.as_raw_fd()),
            self.input.as_ptr(),
            u32::try_from(self.input.len()).unwrap_or(u32::MAX),
        )
        .build()
        .user_data(Token::Recv(key).into());
        if linked {
            entry.flags(squeue::Flags::IO_LINK)
        } else {
            entry
        }
    }

    // ANCHOR: link_timeout
    /// The receive's deadline, `left` from now, as the kernel's own timer on it: a link
    /// timeout. If it fires first, the kernel cancels the receive, whose completion says
    /// `-ECANCELED`; if the receive completes first, the kernel cancels the timer. Either
    /// way the timer posts no completion of its own (`IOSQE_CQE_SKIP_SUCCESS`, which the
    /// kernel honours for link timeouts: see tests/kernel.rs), so a deadline costs no
    /// completion and no system call.
    fn link_timeout(&mut self, key: usize, left: Option<Duration>) -> Option<squeue::Entry> {
        // The kernel copies the duration when it takes the submission (tests/kernel.rs
        // again), from this Box, which nothing writes until the next receive.
        *self.deadline.left = Timespec::from(left?);
        let timeout = opcode::LinkTimeout::new(&*self.deadline.left)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(Token::LinkTimeout(key).into());
        Some(timeout)
    }
    // ANCHOR_END: link_timeout

    /// Submits the answers that wait, unless a send is already in flight.
    fn send_answers(&mut self, key: usize, ring: &mut Ring) -> io::Result<()> {
        let was_in_flight = self.outbox.in_flight();
        // SAFETY: the outbox and the socket belong to this connection, which stays in the
        // slab, socket open, until this send's completion has arrived (`Status::Closed` needs
        // the outbox not `in_flight`).
        unsafe {
            self.outbox
                .send(Fd(self.stream.as_raw_fd()), Token::Send(key).into(), ring)?;
        }
        if !was_in_flight && self.outbox.in_flight() && tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace!("sqe send conn {key}: {}", self.outbox.trace_sending());
        }
        Ok(())
    }

    /// Submits a receive whose bytes are thrown away (lingering), until the drain's
    /// deadline if it has one; closes if the deadline has passed.
    fn discard(&mut self, key: usize, ring: &mut Ring) -> io::Result<Status> {
        match self.time_left(None) {
            Some(left) if left.is_zero() => {
                self.state = State::Closing;
                self.close(key, ring)
            }
            // Nothing to send while lingering: the receive (and its timeout) go alone.
            left => self.exchange(key, left, ring).map(|()| Status::Open),
        }
    }

    // ANCHOR: close
    /// Closes the connection: at once if nothing is in flight, otherwise after asking the
    /// kernel to cancel what is, and waiting for the completions: the cancelled operations'
    /// and the cancellation's own. Until they have come, the buffers are still the
    /// kernel's, and the connection stays.
    fn close(&mut self, key: usize, ring: &mut Ring) -> io::Result<Status> {
        if !self.in_flight() && self.cancels_in_flight == 0 {
            // Dropping the connection closes its socket and frees its buffers.
            return Ok(Status::Closed);
        }
        self.cancel(key, ring)?;
        Ok(Status::Open)
    }

    /// Asks the kernel to cancel every operation on the socket, unless a cancellation is on
    /// its way already.
    ///
    /// By socket, so that it finds the send and the receive, linked or not (by `user_data`,
    /// a receive waiting behind its send is not found). And the socket stays open until the
    /// cancellation's completion: were it closed first, its number could be reused by the
    /// next accepted connection and the cancellation would hit that one. It can find nothing
    /// (an operation between two steps: a receive about to start behind the send that just
    /// went out); when it completes and something is still in flight, it is asked again.
    fn cancel(&mut self, key: usize, ring: &mut Ring) -> io::Result<()> {
        if self.in_flight() && self.cancels_in_flight == 0 {
            let entry =
                opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(self.stream.as_raw_fd())).all())
                    .build()
                    .user_data(Token::Cancel(key).into());
            // SAFETY: a cancellation points to no buffer. It names the socket, which stays
            // open until this cancellation's completion has arrived (`cancels_in_flight`).
            unsafe { ring.push(&entry)? };
            tracing::trace!("sqe cancel conn {key}: every operation on its socket");
            self.cancels_in_flight += 1;
        }
        Ok(())
    }
    // ANCHOR_END: close

    /// Whether the kernel holds an operation of this connection (other than a cancellation).
    fn in_flight(&self) -> bool {
        self.recv_in_flight || self.outbox.in_flight()
    }
}

impl fmt::Debug for Connection {
    /// By hand, not derived: never the bytes of `input`, which the kernel may be writing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("stream", &self.stream)
            .field("state", &self.state)
            .field("input", &self.input)
            .field("unread", &self.unread.len())
            .field("outbox", &self.outbox)
            .field("deadline", &self.deadline)
            .field("recv_in_flight", &self.recv_in_flight)
            .field("cancels_in_flight", &self.cancels_in_flight)
            .finish_non_exhaustive()
    }
}
