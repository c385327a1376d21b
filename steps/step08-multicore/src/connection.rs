//! One client connection on a ring: step07's connection, with three changes.
//!
//! 1. **Provided buffers, multishot receive.** A connection submits one receive that stays
//!    armed and completes again and again, each time with bytes in a buffer the kernel took
//!    from the ring's [`BufferRing`](crate::buffers::BufferRing). The bytes are framed and
//!    answered at once and the buffer goes straight back. There is no receive buffer per
//!    connection any more, only a line buffer for the unfinished tail of a request.
//! 2. **Offloaded fib, answers in order.** fib(n) from [`OFFLOAD_FROM_N`] on goes to the
//!    compute pool. Its answer must still go out in request order, so the answers of later
//!    requests wait behind it ([`InOrder`]) until it returns. When the pool's queue is full,
//!    the answer is `error: busy`, at once, in its place.
//! 3. **Backpressure by cancelling.** A multishot receive keeps receiving until stopped, so a
//!    connection over its bounds (answers the client does not read, fibs on the pool) cancels
//!    it, and arms a new one once it is below them again. Bytes that arrived before the
//!    cancellation landed are kept in `unread`: a provided buffer is never held.
//!
//! The rule of step07 stands: a connection leaves the slab only when nothing in flight names
//! it, and now a fib on the pool names it too, and so does its timer.
//!
//! Stopping work is step07's too, with one difference: a multishot receive cannot carry a
//! link timeout (it would be a deadline for the whole multishot, not for the next request).
//! The idle deadline is a timer of the connection's own instead, one timeout operation, and
//! when it expires the connection asks the kernel to cancel the receive, as a shutdown does,
//! and waits for the receive's last completion before it answers the idle error.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, Timespec};
use io_uring::{cqueue, opcode};
use shared::fib::{OFFLOAD_FROM_N, fib};
use shared::net::{DRAIN_TIME, report_connection_error};
use shared::protocol::{BUSY_ANSWER, Flow, IDLE_TIMEOUT_ANSWER, LineBuffer, MAX_LINE};
use shared::protocol::{Request, request, write_answer};
use step07::outbox::Outbox;
use step07::ring::Ring;
use step07::trace;

use crate::in_order::{InOrder, OFFLOAD_LIMIT};
use crate::pool::{Busy, ConnectionJobs, PoolHandle, fib_value};
use crate::token::Token;

/// How many bytes of answers a connection may hold for a client that is not reading them
/// before it stops receiving: step07's.
pub use step07::connection::OUTPUT_LIMIT;
/// What the event loop should do with a connection after one of its completions: step07's.
pub use step07::connection::Status;

/// Bytes the line buffer holds: the longest line and its `\r\n` fit, and most pipelined
/// bursts are framed in a few passes. Small, because every idle connection keeps one.
const LINE_BUFFER: usize = 4 * MAX_LINE;

/// Why the receive is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The server is shutting down: answer what the receive brought until it ended.
    Shutdown,
    /// The idle timer expired: the last answer is the idle error.
    Idle,
}

/// Where a connection is in its life: step07's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Receiving requests and answering them.
    Reading,
    /// The kernel was asked to cancel the multishot receive; its last completion ends the
    /// input this connection takes.
    Stopping(Stop),
    /// Taking no more input: answer every complete line received, wait for the pool, send;
    /// then close if the client has ended its input, or shut down our side and linger.
    Finishing { input_ended: bool },
    /// Our side is shut down: discard input until the client ends it, or the drain's time is
    /// up, so that closing does not reset the connection under answers not yet read.
    Lingering,
    /// Done, or broken: waiting for every operation and fib in flight to come back.
    Closing,
}

/// What a connection needs from the ring that serves it: step07's `Core`, plus the pool to
/// hand fib to and the group of provided buffers.
#[derive(Debug)]
pub struct Core<'a> {
    pub ring: &'a mut Ring,
    pub pool: &'a PoolHandle,
    /// The group of provided buffers receives take their buffers from.
    pub buffer_group: u16,
    pub max_n: u32,
    /// `--idle-timeout`, or `None` where it is 0.
    pub idle: Option<Duration>,
}

/// A client connection: socket, buffers, answers in order, operations in flight.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    /// The unfinished tail of the requests received so far. Always ours: the kernel writes
    /// into provided buffers, never here.
    requests: LineBuffer,
    /// Received bytes not framed yet because the connection was over its bounds.
    unread: Vec<u8>,
    /// Answers ready to go, in order, and the send in flight: step07's partial sends.
    outbox: Outbox,
    /// Answers waiting for fibs on the pool; empty unless one is computing.
    in_order: InOrder,
    /// A request for the pool that found it full while this connection had fibs in line:
    /// it waits, and the connection with it, until one of them comes back.
    held: Option<u32>,
    /// This connection's jobs on the pool, abandoned when it closes. Made with the first.
    jobs: Option<Arc<ConnectionJobs>>,
    state: State,
    /// In flight: the multishot receive (armed until a completion without `F_MORE`), ...
    recv_armed: bool,
    /// ... cancellations of the receive or of the socket's operations (and the outbox's
    /// send, the fibs `in_order` waits for, and the timer).
    cancels_in_flight: u32,
    /// We asked the armed receive to stop; cleared when it ends.
    recv_stopping: bool,
    /// The cancellation in flight is closing's, of every operation on the socket, rather
    /// than of the receive alone: its result counts them (`--trace` says so).
    cancel_by_socket: bool,
    timer: Timer,
}

/// A connection's timer: the idle deadline while reading, the drain's end while lingering.
#[derive(Debug)]
struct Timer {
    /// Its timeout operation is in flight.
    armed: bool,
    /// Its cancellation is in flight.
    cancelling: bool,
    /// Since when the connection has had nothing to do: its last complete line, or the
    /// moment its answers were written after the timer found them outstanding (`None`
    /// until then).
    idle_since: Option<Instant>,
    /// How long lingering drains: [`DRAIN_TIME`], or, while the server shuts down, until the
    /// end of its grace period (`None`).
    drain: Option<Duration>,
    /// Until when this connection lingers, if it has a limit.
    drain_until: Option<Instant>,
    /// The timeout's duration, where the kernel reads it when it takes the submission. On
    /// the heap: the slab moves connections as it grows.
    left: Box<Timespec>,
}

impl Connection {
    /// A freshly accepted connection; [`advance`](Self::advance) arms its receive.
    pub fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            requests: LineBuffer::with_capacity(LINE_BUFFER),
            unread: Vec::new(),
            outbox: Outbox::default(),
            in_order: InOrder::default(),
            held: None,
            jobs: None,
            state: State::Reading,
            recv_armed: false,
            cancels_in_flight: 0,
            recv_stopping: false,
            cancel_by_socket: false,
            timer: Timer {
                armed: false,
                cancelling: false,
                idle_since: Some(Instant::now()),
                drain: Some(DRAIN_TIME),
                drain_until: None,
                left: Box::new(Timespec::new()),
            },
        }
    }

    /// A completion of the multishot receive: `result` bytes in `data` (a provided buffer,
    /// ours only during this call), the end of input (0), or an error. `more` says whether
    /// the receive stays armed.
    pub fn on_received(
        &mut self,
        key: usize,
        result: i32,
        data: &[u8],
        more: bool,
        core: &mut Core<'_>,
    ) {
        let stopping = self.recv_stopping;
        if !more {
            self.recv_armed = false;
            self.recv_stopping = false;
        }
        match (self.state, result) {
            (State::Closing, _) => {}
            // A receive we asked to stop can end with 0 rather than -ECANCELED when the
            // cancellation races it (seen on Linux 6.18). That 0 is not the end of input;
            // were it one, the next receive would see it again.
            (State::Reading, 0) if stopping => {}
            // Ended while we stop it: for the same race, not taken as the end of input (a
            // real one is seen again by the receive that lingers).
            (State::Stopping(_), 0) => {}
            // Bytes (received before a stop for shutdown took effect, maybe): answered.
            (State::Reading | State::Stopping(Stop::Shutdown), 1..) => self.take(key, data, core),
            (State::Reading, 0) => self.state = State::Finishing { input_ended: true },
            (State::Finishing { .. }, 0) => self.state = State::Finishing { input_ended: true },
            (State::Lingering, 0) => self.state = State::Closing,
            // After the idle timeout or a line too long, and while lingering, input is
            // discarded: the buffer goes back untouched.
            (_, 1..) => {}
            // The receive stopped because we cancelled it, or because the ring ran out of
            // provided buffers for a moment; `advance` arms a new one when wanted.
            (_, result) if result == -libc::ECANCELED || result == -libc::ENOBUFS => {}
            // A reset or vanished client.
            (_, error) => self.fail(io::Error::from_raw_os_error(-error)),
        }
    }

    /// `--trace`: what a completion of this connection's says, before it is handled.
    pub fn trace_completion(
        &self,
        key: usize,
        token: Token,
        completion: &cqueue::Entry,
        idle: Option<Duration>,
    ) {
        let (result, flags) = (completion.result(), completion.flags());
        let error = || trace::errno(result);
        match token {
            Token::Recv(_) => {
                let what = match (result, cqueue::buffer_select(flags)) {
                    (1.., Some(buffer)) => format!("{result} bytes in buffer {buffer}"),
                    (0, _) => "end of input".to_string(),
                    _ if result == -libc::ENOBUFS => "-ENOBUFS: no buffer left".to_string(),
                    _ => error(),
                };
                let more = if cqueue::more(flags) {
                    "still armed"
                } else {
                    "the recv ends"
                };
                tracing::trace!("cqe recv conn {key}: {what}, {more}");
            }
            Token::Send(_) => {
                let (from, total) = self.outbox.trace_offset();
                let offered = total - from;
                match result {
                    1.. if result as usize == offered => {
                        tracing::trace!("cqe send conn {key}: {result} bytes");
                    }
                    1.. => tracing::trace!(
                        "cqe send conn {key}: {result} of {offered} bytes, resubmitting from {}",
                        from + result as usize
                    ),
                    _ => tracing::trace!("cqe send conn {key}: {}", error()),
                }
            }
            Token::Cancel(_) => {
                let what = trace::cancelled(result, self.cancel_by_socket);
                tracing::trace!("cqe cancel conn {key}: {what}");
            }
            Token::Timer(_) => {
                let what = match (self.state, idle, self.timer.idle_since) {
                    _ if result == -libc::ECANCELED => "-ECANCELED: cancelled",
                    (State::Reading, _, _) if self.answers_outstanding() => {
                        "fired: answers outstanding, not idle"
                    }
                    (State::Reading, Some(idle), Some(since)) if since.elapsed() >= idle => {
                        "fired: idle too long: stop receiving, then error: idle timeout"
                    }
                    (State::Reading, _, _) => "fired early: a request came since, armed again",
                    (State::Lingering, _, _) => "fired: the drain's time is up",
                    _ => "fired",
                };
                tracing::trace!("cqe timeout conn {key}: {what}");
            }
            Token::CancelTimer(_) => {
                let what = trace::cancelled(result, false);
                tracing::trace!("cqe cancel timeout conn {key}: {what}");
            }
            Token::Fib { .. } => {
                let value = fib_value(result, completion.user_data());
                if self.state == State::Closing {
                    tracing::trace!("cqe msg_ring from the pool: a fib for conn {key}, closing");
                } else {
                    tracing::trace!(
                        "cqe msg_ring from the pool: fib({}) = {value} for conn {key}",
                        fib_n(value)
                    );
                }
            }
            _ => unreachable!("the event loop traces its own completions"),
        }
    }

    /// A send completed with `result` bytes, or failed (step07's bookkeeping).
    pub fn on_sent(&mut self, result: i32) {
        if let Err(error) = self.outbox.on_sent(result) {
            self.fail(error);
        }
    }

    /// A cancellation of the receive or of the socket's operations completed.
    ///
    /// Whatever its result: if it found nothing (`-ENOENT`: what it cancels was ending
    /// anyway, or, on some kernels, it raced a completion and the receive stays armed),
    /// `advance` asks again while what it wanted to stop is still in flight.
    pub fn on_cancelled(&mut self) {
        self.cancels_in_flight -= 1;
    }

    /// The pool posted fib's value for the request numbered `seq`: the answers that waited
    /// for it, and for nothing else, are ready.
    pub fn on_fib(&mut self, key: usize, seq: u8, value: u64) {
        let ready = self.outbox.queue().len();
        self.in_order.on_fib(seq, value, self.outbox.queue());
        if tracing::enabled!(tracing::Level::TRACE) && self.state != State::Closing {
            match self.outbox.queue().len() - ready {
                0 => tracing::trace!("conn {key}: its answer waits in line for an earlier fib"),
                bytes => tracing::trace!(
                    "conn {key}: {bytes} bytes of answers released in order, {} still in line",
                    step07::trace::count(self.in_order.len(), "fib")
                ),
            }
        }
    }

    // ANCHOR: on_timer
    /// The timer fired (`-ETIME`) or was cancelled (`-ECANCELED`).
    ///
    /// It was armed for the deadline as it was then; a request since has moved the
    /// deadline on, and then `advance` arms it again, for what is left. A connection with
    /// answers outstanding is not idle: its idle time starts again once they are written.
    /// One that has been idle for the whole `--idle-timeout` stops receiving: the kernel is
    /// asked to cancel the receive (`keep_receiving`), and the idle error is answered once
    /// the receive's last completion has come.
    pub fn on_timer(&mut self, result: i32, idle: Option<Duration>) {
        self.timer.armed = false;
        if result == -libc::ECANCELED {
            return;
        }
        match (self.state, idle, self.timer.idle_since) {
            (State::Reading, _, _) if self.answers_outstanding() => self.timer.idle_since = None,
            (State::Reading, Some(idle), Some(since)) if since.elapsed() >= idle => {
                self.state = State::Stopping(Stop::Idle);
            }
            (State::Lingering, _, _) => self.state = State::Closing,
            _ => {}
        }
    }
    // ANCHOR_END: on_timer

    /// The cancellation of the timer completed.
    pub fn on_timer_cancelled(&mut self) {
        self.timer.cancelling = false;
    }

    /// The server is shutting down: answer what has been received, then close cleanly.
    ///
    /// As in step07, the receive is the kernel's: it is asked to stop (`keep_receiving`),
    /// and what it brings until its last completion is answered.
    pub fn stop(&mut self) {
        self.timer.drain = None;
        if self.state == State::Reading {
            self.state = State::Stopping(Stop::Shutdown);
        }
    }

    /// The connection broke: say why, unless the client merely left, and close it. Only the
    /// first failure is reported; whatever completes after it is part of the closing.
    fn fail(&mut self, error: io::Error) {
        if self.state != State::Closing {
            report_connection_error("step08", &error);
            self.state = State::Closing;
        }
    }

    /// Tells the pool not to compute this connection's jobs that have not started: their
    /// answers would go nowhere. (Their completions still come, and are waited for.)
    fn abandon_pool_jobs(&mut self, pool: &PoolHandle) {
        if let Some(jobs) = self.jobs.take() {
            pool.abandon(&jobs);
        }
        self.held = None;
    }

    /// After a completion: answer what can be answered, then submit what the connection
    /// waits for next (step07's `advance`, with pausing by cancellation and a timer).
    ///
    /// # Errors
    ///
    /// Only when the ring fails.
    pub fn advance(&mut self, key: usize, core: &mut Core<'_>) -> io::Result<Status> {
        if self.state == State::Closing {
            self.abandon_pool_jobs(core.pool);
            return self.close(key, core);
        }
        if let Some(n) = self.held.take() {
            // Tried again on every completion while held: most often one of the fibs in
            // line has come back.
            self.offload(key, n, core);
        }
        if let State::Stopping(stop) = self.state {
            if !self.recv_armed {
                // The receive has ended: nothing more comes in.
                if stop == Stop::Idle {
                    self.answer(|out| out.extend_from_slice(IDLE_TIMEOUT_ANSWER));
                }
                self.state = State::Finishing { input_ended: false };
            }
        }
        if matches!(self.state, State::Reading | State::Finishing { .. }) && !self.paused() {
            // Input that waited while the connection was over its bounds (and complete lines
            // still in the line buffer) comes first.
            let unread = std::mem::take(&mut self.unread);
            let used = self.take_input(key, &unread, core);
            self.unread = unread;
            self.unread.drain(..used);
        }
        self.send_answers(key, core)?;
        if self.timer.idle_since.is_none() && !self.answers_outstanding() {
            // The answers the timer found outstanding are written: idle from now.
            self.timer.idle_since = Some(Instant::now());
        }
        let all_sent = !self.outbox.in_flight() && self.in_order.is_empty();
        match self.state {
            State::Finishing { input_ended: true } if all_sent => {
                // The client ended its input and has every answer: nothing is left to drain.
                self.state = State::Closing;
                return self.close(key, core);
            }
            State::Finishing { input_ended: false } if all_sent => self.drain(key, core)?,
            _ => {}
        }
        if self.state == State::Closing {
            return self.close(key, core);
        }
        self.keep_receiving(key, core)?;
        self.keep_timer(key, core)?;
        Ok(Status::Open)
    }

    // ANCHOR: drain
    /// Every answer is sent: shut down our side, then linger, discarding what the client
    /// still sends until it ends its input: closing a socket with unread input would make
    /// the kernel send a reset, which can destroy answers the client has not read yet. (No
    /// `SHUT_RD`: after it a receive sees an end of input at once, and the client's own end
    /// could not be told from it.) The drain lasts [`DRAIN_TIME`] at most, or, while the
    /// server shuts down, until the end of `--grace`.
    fn drain(&mut self, key: usize, core: &mut Core<'_>) -> io::Result<()> {
        if self.stream.shutdown(Shutdown::Write).is_err() {
            // The client is already gone.
            self.state = State::Closing;
            return Ok(());
        }
        self.state = State::Lingering;
        tracing::trace!("conn {key}: all answered: our side shut down, draining its input");
        self.timer.drain_until = self.timer.drain.map(|drain| Instant::now() + drain);
        if self.timer.drain_until.is_some() && self.timer.armed {
            // Armed for the idle deadline, later: cancelled, and armed again for the drain.
            self.cancel_timer(key, core)?;
        }
        Ok(())
    }
    // ANCHOR_END: drain

    /// Keeps the multishot receive armed while the connection wants input, and stops it
    /// while the connection is over its bounds (backpressure) or stopping. Lingering always
    /// wants input: it only discards it. Finishing leaves the receive as it is: armed after
    /// a line too long (discarding), ended otherwise.
    ///
    /// Nothing is submitted while a cancellation is in flight: it could stop a new receive,
    /// and the old one's end is still on its way. Its completion calls `advance`, and so
    /// this, again: a cancellation that found nothing is asked again.
    fn keep_receiving(&mut self, key: usize, core: &mut Core<'_>) -> io::Result<()> {
        let wanted = match self.state {
            // Held for the pool, it goes on receiving (into `unread`, up to a bound): a
            // client that resets meanwhile is noticed at once, and its jobs abandoned.
            State::Reading if self.held.is_some() => {
                !self.over_bounds() && self.unread.len() < OUTPUT_LIMIT
            }
            State::Reading => !self.paused() && self.unread.is_empty(),
            State::Lingering => true,
            State::Stopping(_) => false,
            State::Finishing { .. } | State::Closing => return Ok(()),
        };
        match (wanted, self.recv_armed) {
            _ if self.cancels_in_flight > 0 => Ok(()),
            (true, false) => self.receive(key, core),
            (false, true) => {
                let why = match self.state {
                    State::Stopping(Stop::Shutdown) => "the server shuts down",
                    State::Stopping(Stop::Idle) => "idle too long",
                    _ => "over its bounds (backpressure)",
                };
                tracing::trace!("sqe cancel recv conn {key}: {why}");
                self.cancel_by_socket = false;
                self.stop_receiving(key, core)
            }
            _ => Ok(()),
        }
    }

    // ANCHOR: idle_timer
    /// Keeps the timer armed while the connection has a deadline: `--idle-timeout` after it
    /// last had something to do, while reading; the drain's end, while lingering.
    ///
    /// One timeout operation, armed for the deadline as it is when armed. A request moves
    /// the deadline (`idle_since`) but leaves the timer alone: it fires early, and is armed
    /// again for what is left. So a request costs the timer nothing, neither an operation
    /// nor a system call.
    fn keep_timer(&mut self, key: usize, core: &mut Core<'_>) -> io::Result<()> {
        if self.timer.armed || self.timer.cancelling {
            return Ok(());
        }
        let deadline = match (self.state, core.idle, self.timer.idle_since) {
            (State::Reading, Some(idle), Some(since)) => since + idle,
            (State::Lingering, _, _) => match self.timer.drain_until {
                Some(until) => until,
                None => return Ok(()),
            },
            _ => return Ok(()),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        *self.timer.left = Timespec::from(left);
        let entry = opcode::Timeout::new(&*self.timer.left)
            .build()
            .user_data(Token::Timer(key).into());
        // SAFETY: the timeout points to `timer.left`, on the heap, which the kernel copies
        // when it takes the submission and which is written again only after this timeout's
        // completion (`armed`). Its completion names this connection, which stays in the
        // slab until then (`idle` needs the timer not `armed`).
        unsafe { core.ring.push(&entry)? };
        tracing::trace!("sqe timeout conn {key}: {:.1} s", left.as_secs_f64());
        self.timer.armed = true;
        Ok(())
    }
    // ANCHOR_END: idle_timer

    /// Asks the kernel to cancel the timer, unless a cancellation is on its way already. It
    /// is always found, or has just fired: either way its own completion comes.
    fn cancel_timer(&mut self, key: usize, core: &mut Core<'_>) -> io::Result<()> {
        if self.timer.armed && !self.timer.cancelling {
            let entry = opcode::AsyncCancel::new(Token::Timer(key).into())
                .build()
                .user_data(Token::CancelTimer(key).into());
            // SAFETY: a cancellation points to no buffer; the timer it names is this
            // connection's, which stays in the slab until the cancellation's completion
            // (`cancelling`, see `idle`).
            unsafe { core.ring.push(&entry)? };
            tracing::trace!("sqe cancel timeout conn {key}");
            self.timer.cancelling = true;
        }
        Ok(())
    }

    /// Whether the connection must not frame more input: over its bounds, or held for the
    /// pool.
    fn paused(&self) -> bool {
        self.over_bounds() || self.held.is_some()
    }

    /// Whether the connection holds as many answers, or fibs in line, as it may.
    fn over_bounds(&self) -> bool {
        self.outbox.unsent() + self.in_order.bytes() >= OUTPUT_LIMIT
            || self.in_order.len() >= OFFLOAD_LIMIT
    }

    /// Whether some answer has not gone out yet: the connection is not idle.
    fn answers_outstanding(&self) -> bool {
        self.outbox.unsent() > 0 || !self.in_order.is_empty() || self.held.is_some()
    }

    /// Whether nothing in flight names this connection.
    fn idle(&self) -> bool {
        !self.recv_armed
            && !self.outbox.in_flight()
            && self.cancels_in_flight == 0
            && !self.timer.armed
            && !self.timer.cancelling
            // Whatever waits in line waits for a fib still on the pool.
            && self.in_order.is_empty()
    }

    /// Takes newly received bytes: frames and answers them, or, behind input that is
    /// already waiting, keeps them for later.
    fn take(&mut self, key: usize, data: &[u8], core: &mut Core<'_>) {
        if !self.unread.is_empty() {
            self.unread.extend_from_slice(data);
            return;
        }
        let used = self.take_input(key, data, core);
        // Over the bounds in the middle of the buffer: the buffer must go back to the kernel
        // now, so its rest is copied out. (After a line too long, nothing is left: it is all
        // used up, unread.)
        self.unread.extend_from_slice(&data[used..]);
    }

    /// Frames `data` and answers every complete request in it, until the connection is over
    /// its bounds; returns how many bytes it used. Every answer goes to the same output
    /// buffer, so all the requests of one receive are answered by one send.
    fn take_input(&mut self, key: usize, data: &[u8], core: &mut Core<'_>) -> usize {
        let mut used = 0;
        loop {
            if self.answer_requests(key, core) == Flow::Close {
                self.state = State::Finishing { input_ended: false };
                return data.len(); // nothing after a line too long is framed
            }
            if self.paused() || used == data.len() {
                return used;
            }
            used += self.requests.push(&data[used..]);
        }
    }

    /// Answers the complete lines in the line buffer, until the connection is over its
    /// bounds.
    fn answer_requests(&mut self, key: usize, core: &mut Core<'_>) -> Flow {
        let mut lines = false;
        let mut flow = Flow::Continue;
        while !self.paused() {
            let Some(frame) = self.requests.next_frame() else {
                break;
            };
            // A bad line's error is written at once, in its place in line; a fib is
            // computed below, here or on the pool.
            let asked = self
                .in_order
                .answer(self.outbox.queue(), |out| request(frame, core.max_n, out));
            if let Request::Answered(Flow::Close) = asked {
                flow = Flow::Close; // a line too long: nothing after it is framed
                break;
            }
            lines = true;
            match asked {
                Request::Fib(n) if n >= OFFLOAD_FROM_N => {
                    self.offload(key, n, core);
                    if self.held.is_some() {
                        tracing::trace!("conn {key}: fib({n}) held until one of its fibs is back");
                    }
                }
                Request::Fib(n) => self.answer(|out| write_answer(out, fib(n))),
                Request::Answered(_) => {} // its error is written already
            }
        }
        if lines && core.idle.is_some() {
            // A complete line: the idle deadline moves on (the timer is not touched).
            self.timer.idle_since = Some(Instant::now());
        }
        flow
    }

    /// Appends an answer after every answer before it: straight to the output, or, while a
    /// fib is on the pool, behind the last one.
    fn answer(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        self.in_order.answer(self.outbox.queue(), write);
    }

    // ANCHOR: busy
    /// Sends fib(n) to the pool; its answer takes the next place in line.
    ///
    /// When the pool's queue is full, a request from a connection with nothing in line is
    /// answered `error: busy`, at once and in its place: shedding the load beats making the
    /// client wait behind minutes of queued work, and the connection goes on. A connection
    /// that already waits for the pool is slowed instead, never refused: the request is
    /// held, and the connection frames no more input, until one of its fibs has come back.
    /// It is held, too, once it has as many fibs in line as the pool has threads: one client
    /// may keep every pool thread busy, but the queue beyond them is for the others.
    fn offload(&mut self, key: usize, n: u32, core: &mut Core<'_>) {
        if self.in_order.len() >= core.pool.threads() {
            self.held = Some(n);
            return;
        }
        let seq = self.in_order.next_seq();
        let jobs = self.jobs.get_or_insert_with(Default::default);
        // The token fits in the low 32 bits of user_data by construction.
        match core
            .pool
            .fib(n, u64::from(Token::Fib { key, seq }) as u32, jobs)
        {
            Ok(()) => self.in_order.offloaded(),
            Err(Busy) if !self.in_order.is_empty() => self.held = Some(n),
            Err(Busy) => self.answer(|out| out.extend_from_slice(BUSY_ANSWER)),
        }
    }
    // ANCHOR_END: busy

    /// Arms a multishot receive: each time bytes arrive, the kernel takes a buffer from the
    /// ring's group, fills it, and posts a completion, until it is cancelled or fails.
    ///
    /// Measured against a single receive submitted again after each completion (provided
    /// buffers both, 2 cores, median of 3 runs): 64 connections 138k vs 109k req/s,
    /// pipelined 1.57M vs 1.50M. The single receive tries to read, finds nothing, arms a
    /// wait for the socket, and is submitted again each time; the multishot one stays armed.
    fn receive(&mut self, key: usize, core: &mut Core<'_>) -> io::Result<()> {
        let entry = opcode::RecvMulti::new(Fd(self.stream.as_raw_fd()), core.buffer_group)
            .build()
            .user_data(Token::Recv(key).into());
        // SAFETY: no buffer of this connection: the kernel fills provided buffers, which stay
        // registered until the event loop has cancelled every operation. The socket stays
        // open until the receive's last completion (`recv_armed`, see `idle`).
        unsafe { core.ring.push(&entry)? };
        if self.state == State::Lingering {
            tracing::trace!("sqe recv conn {key}, multishot (draining: its bytes are thrown away)");
        } else {
            tracing::trace!("sqe recv conn {key}, multishot: into the ring's buffers");
        }
        self.recv_armed = true;
        Ok(())
    }

    // ANCHOR: stop_receiving
    /// Asks the kernel to stop the multishot receive (backpressure, the idle timeout, a
    /// shutdown). The receive is not stopped when this returns: it is stopped when its last
    /// completion comes, `-ECANCELED` (or bytes that raced the cancellation, whose buffers go
    /// back as usual). Until then it is still the kernel's.
    fn stop_receiving(&mut self, key: usize, core: &mut Core<'_>) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(Token::Recv(key).into())
            .build()
            .user_data(Token::Cancel(key).into());
        // SAFETY: a cancellation points to no buffer. It names this connection's receive by
        // `user_data`, and the connection, its slab key included, stays until the
        // cancellation's own completion has arrived (`cancels_in_flight`).
        unsafe { core.ring.push(&entry)? };
        self.recv_stopping = true;
        self.cancels_in_flight += 1;
        Ok(())
    }
    // ANCHOR_END: stop_receiving

    /// Submits the answers that wait, unless a send is already in flight: step07's outbox.
    /// A send to a socket with room completes as it is submitted: the ring is told to count
    /// on its completion and wait for the next one with it (see `event_loop::BATCH_WAIT`).
    fn send_answers(&mut self, key: usize, core: &mut Core<'_>) -> io::Result<()> {
        let was_in_flight = self.outbox.in_flight();
        // SAFETY: the outbox and the socket belong to this connection, which stays in the
        // slab, socket open, until this send's completion has arrived (`idle` needs the
        // outbox not `in_flight`).
        unsafe {
            self.outbox.send(
                Fd(self.stream.as_raw_fd()),
                Token::Send(key).into(),
                core.ring,
            )?;
        }
        if !was_in_flight && self.outbox.in_flight() {
            core.ring.expect();
            if tracing::enabled!(tracing::Level::TRACE) {
                tracing::trace!("sqe send conn {key}: {}", self.outbox.trace_sending());
            }
        }
        Ok(())
    }

    /// Closes at once if nothing is in flight, otherwise after cancelling what is (step07:
    /// by socket, asked again while something is still in flight), the timer, and after the
    /// pool has returned every fib.
    fn close(&mut self, key: usize, core: &mut Core<'_>) -> io::Result<Status> {
        if self.idle() {
            return Ok(Status::Closed);
        }
        if (self.recv_armed || self.outbox.in_flight()) && self.cancels_in_flight == 0 {
            let entry =
                opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(self.stream.as_raw_fd())).all())
                    .build()
                    .user_data(Token::Cancel(key).into());
            // SAFETY: no buffer; it names the socket, which stays open until this
            // cancellation's completion has arrived (`cancels_in_flight`).
            unsafe { core.ring.push(&entry)? };
            tracing::trace!("sqe cancel conn {key}: every operation on its socket");
            self.cancel_by_socket = true;
            self.cancels_in_flight += 1;
        }
        self.cancel_timer(key, core)?;
        Ok(Status::Open)
    }
}

/// `--trace`: the n whose fib is `value`. The pool's message carries the value, in all 64
/// bits a completion has room for, and not n; but fib grows strictly from n = 2 on (and every
/// n sent to the pool is larger: [`OFFLOAD_FROM_N`]), so the value names its n.
fn fib_n(value: u64) -> u32 {
    let (mut n, mut fib, mut next) = (0, 0u64, 1u64);
    while fib < value {
        (fib, next) = (next, fib.saturating_add(next));
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fib_value_names_its_n() {
        // Counted up by addition: fib itself would take minutes to reach fib(93). From fib(3)
        // on: fib(1) = fib(2) = 1, and below OFFLOAD_FROM_N nothing goes to the pool anyway.
        let (mut fib, mut next) = (1u64, 2u64);
        for n in 3..=93 {
            (fib, next) = (next, fib.saturating_add(next));
            assert_eq!(fib_n(fib), n, "fib({n}) = {fib}");
        }
        assert_eq!(fib_n(102_334_155), 40);
    }
}
