//! One client connection on a core's ring: step07's connection, with three changes.
//!
//! 1. **Provided buffers, multishot receive.** A connection submits one receive that stays
//!    armed and completes again and again, each time with bytes in a buffer the kernel took
//!    from the ring's [`BufferRing`](crate::buffers::BufferRing). The bytes are framed and
//!    answered at once and the buffer goes straight back. There is no receive buffer per
//!    connection any more, only a line buffer for the unfinished tail of a request.
//! 2. **Offloaded fib, answers in order.** fib(n) from [`OFFLOAD_FROM_N`] on goes to the
//!    compute pool. Its answer must still go out in request order, so the answers of later
//!    requests wait behind it ([`InOrder`]) until it returns.
//! 3. **Backpressure by cancelling.** A multishot receive keeps receiving until stopped, so a
//!    connection over its bounds (answers the client does not read, fibs on the pool) cancels
//!    it, and arms a new one once it is below them again. Bytes that arrived before the
//!    cancellation landed are kept in `unread`: a provided buffer is never held.
//!
//! The rule of step07 stands: a connection leaves the slab only when nothing in flight names
//! it, and now a fib on the pool names it too.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;

use io_uring::opcode;
use io_uring::types::{CancelBuilder, Fd};
use shared::fib::fib;
use shared::protocol::{Flow, Frame, LineBuffer, MAX_LINE, ProtocolError};
use shared::protocol::{parse_request, write_answer, write_error};
use step07::outbox::Outbox;
use step07::ring::Ring;

use crate::in_order::{InOrder, OFFLOAD_LIMIT};
use crate::pool::PoolHandle;
use crate::token::Token;

/// fib(n) for `n` at least this is computed on the pool, below it on the ring's thread.
///
/// step05's threshold, for step05's reason (its `OFFLOAD_FROM_N` has the measurement): the
/// round trip through a pool costs about what fib(20) costs (tens of microseconds), so below
/// it the hop costs more than it saves, and from there on the stall it avoids grows 1.6 times
/// per n. Here the hop is a job on a channel and a message back with `IORING_OP_MSG_RING`.
pub const OFFLOAD_FROM_N: u32 = 20;

/// How many bytes of answers a connection may hold for a client that is not reading them
/// before it stops receiving: step07's bound.
pub use step07::connection::OUTPUT_LIMIT;
/// What the event loop should do with a connection after one of its completions: step07's.
pub use step07::connection::Status;

/// Bytes the line buffer holds: the longest line and its `\r\n` fit, and most pipelined
/// bursts are framed in a few passes. Small, because every idle connection keeps one.
const LINE_BUFFER: usize = 4 * MAX_LINE;

/// Where a connection is in its life: step07's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Receiving requests and answering them.
    Reading,
    /// The client half-closed (or the server is shutting down): answer every complete line,
    /// wait for the pool, send, then close.
    Finishing,
    /// A line was too long: send the answers so far and the error, then shut down our side.
    Rejecting,
    /// Our side is shut down after the error: discard input until the client closes.
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
    state: State,
    /// In flight: the multishot receive (armed until a completion without `F_MORE`), ...
    recv_armed: bool,
    /// ... cancellations (and the outbox's send, and the fibs `in_order` waits for).
    cancels_in_flight: u32,
    /// We asked the armed receive to stop (pausing); cleared when it ends. Until Closing,
    /// the only cancellation in flight is that request.
    recv_stopping: bool,
    /// Closing asked the kernel to cancel everything on the socket (once is enough).
    close_asked: bool,
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
            state: State::Reading,
            recv_armed: false,
            cancels_in_flight: 0,
            recv_stopping: false,
            close_asked: false,
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
            // A receive we asked to stop can end with 0 rather than -ECANCELED when the
            // cancellation races it (seen on Linux 6.18). That 0 is not the end of input;
            // were it one, the next receive would see it again.
            (State::Reading, 0) if stopping => {}
            (State::Closing, _) => {}
            (State::Reading, 1..) => self.take(key, data, core),
            // After a line too long, input is discarded: the buffer goes back untouched.
            (State::Rejecting | State::Lingering, 1..) => {}
            (State::Reading, 0) => self.state = State::Finishing,
            // The error is not sent yet; lingering will see the end of input again.
            (State::Rejecting, 0) => {}
            // The receive stopped because we cancelled it (pausing), or because the ring ran
            // out of provided buffers for a moment; `advance` arms a new one when wanted.
            (_, result) if result == -libc::ECANCELED || result == -libc::ENOBUFS => {}
            // The end of input after the error, or a reset or vanished client.
            _ => self.state = State::Closing,
        }
    }

    /// A send completed with `result` bytes, or failed (step07's bookkeeping).
    pub fn on_sent(&mut self, result: i32) {
        if self.outbox.on_sent(result).is_err() {
            self.state = State::Closing;
        }
    }

    /// A cancellation this connection asked for completed.
    ///
    /// Whatever its result: if it did not find the receive (`-ENOENT`: it was ending
    /// anyway, or, on some kernels, it raced a completion and the receive stays armed),
    /// `advance` asks again while the receive is armed and the connection still paused.
    pub fn on_cancelled(&mut self) {
        self.cancels_in_flight -= 1;
    }

    /// The pool posted fib's value for the request numbered `seq`: the answers that waited
    /// for it, and for nothing else, are ready.
    pub fn on_fib(&mut self, seq: u8, value: u64) {
        self.in_order.on_fib(seq, value, self.outbox.queue());
    }

    /// The server is shutting down: receive what the client has sent so far, then see the
    /// end of input, as if the client had half-closed. The usual path (answer every complete
    /// line, send, close) does the rest.
    pub fn stop_reading(&mut self) {
        // A socket that is already shut down or reset has nothing more to give anyway.
        let _ = self.stream.shutdown(Shutdown::Read);
    }

    /// After a completion: answer what can be answered, then submit what the connection
    /// waits for next (step07's `advance`, with pausing by cancellation).
    ///
    /// # Errors
    ///
    /// Only when the ring fails.
    pub fn advance(&mut self, key: usize, core: &mut Core<'_>) -> io::Result<Status> {
        if self.state == State::Closing {
            return self.close(key, core);
        }
        if matches!(self.state, State::Reading | State::Finishing) && !self.paused() {
            // Input that waited while the connection was over its bounds (and complete lines
            // still in the line buffer) comes first.
            let unread = std::mem::take(&mut self.unread);
            let used = self.take_input(key, &unread, core);
            self.unread = unread;
            self.unread.drain(..used);
        }
        self.send_answers(key, core)?;
        let all_sent = !self.outbox.in_flight() && self.in_order.is_empty();
        match self.state {
            State::Reading | State::Lingering => self.keep_receiving(key, core)?,
            State::Finishing if all_sent && self.idle() => return Ok(Status::Closed),
            State::Rejecting if all_sent => {
                if self.stream.shutdown(Shutdown::Write).is_err() {
                    self.state = State::Closing;
                    return self.close(key, core);
                }
                self.state = State::Lingering;
                self.keep_receiving(key, core)?;
            }
            _ => {}
        }
        Ok(Status::Open)
    }

    /// Keeps the multishot receive armed while the connection wants input, and stops it
    /// while the connection is over its bounds (backpressure). Lingering always wants input:
    /// it only discards it.
    ///
    /// Nothing is submitted while a cancellation of the receive is in flight: it could stop a
    /// new receive, and the old one's end is still on its way. Its completion calls
    /// `advance`, and so this, again.
    fn keep_receiving(&mut self, key: usize, core: &mut Core<'_>) -> io::Result<()> {
        let wanted = self.state == State::Lingering || (!self.paused() && self.unread.is_empty());
        match (wanted, self.recv_armed) {
            _ if self.cancels_in_flight > 0 => Ok(()),
            (true, false) => self.receive(key, core),
            (false, true) => self.stop_receiving(key, core),
            _ => Ok(()),
        }
    }

    /// Whether the connection is over its bounds and must not take more input.
    fn paused(&self) -> bool {
        self.outbox.unsent() + self.in_order.bytes() >= OUTPUT_LIMIT
            || self.in_order.len() >= OFFLOAD_LIMIT
    }

    /// Whether nothing in flight names this connection.
    fn idle(&self) -> bool {
        !self.recv_armed
            && !self.outbox.in_flight()
            && self.cancels_in_flight == 0
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
        if self.state == State::Reading {
            // Over the bounds in the middle of the buffer: the buffer must go back to the
            // kernel now, so its rest is copied out.
            self.unread.extend_from_slice(&data[used..]);
        }
    }

    /// Frames `data` and answers every complete request in it, until the connection is over
    /// its bounds; returns how many bytes it used. Every answer goes to the same output
    /// buffer, so all the requests of one receive are answered by one send.
    fn take_input(&mut self, key: usize, data: &[u8], core: &mut Core<'_>) -> usize {
        let mut used = 0;
        loop {
            if self.answer_requests(key, core) == Flow::Close {
                self.state = State::Rejecting;
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
        while !self.paused() {
            let request = match self.requests.next_frame() {
                None => break,
                Some(Frame::Line(line)) => parse_request(line, core.max_n),
                Some(Frame::TooLong) => {
                    self.answer(|out| write_error(out, ProtocolError::LineTooLong));
                    return Flow::Close;
                }
            };
            match request {
                Ok(n) if n >= OFFLOAD_FROM_N => self.offload(key, n, core),
                Ok(n) => self.answer(|out| write_answer(out, fib(n))),
                Err(error) => self.answer(|out| write_error(out, error)),
            }
        }
        Flow::Continue
    }

    /// Appends an answer after every answer before it: straight to the output, or, while a
    /// fib is on the pool, behind the last one.
    fn answer(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        self.in_order.answer(self.outbox.queue(), write);
    }

    /// Sends fib(n) to the pool; its answer takes the next place in line.
    fn offload(&mut self, key: usize, n: u32, core: &mut Core<'_>) {
        let seq = self.in_order.next_seq();
        // The token fits in the low 32 bits of user_data by construction.
        core.pool.fib(n, u64::from(Token::Fib { key, seq }) as u32);
        self.in_order.offloaded();
    }

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
        // SAFETY: no buffer of this connection: the kernel fills provided buffers, which the
        // event loop keeps registered until every operation has completed. The socket stays open
        // until the receive's last completion (`recv_armed`, see `idle`).
        unsafe { core.ring.push(&entry)? };
        self.recv_armed = true;
        Ok(())
    }

    /// Stops the multishot receive (backpressure); it completes with `-ECANCELED`.
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
        }
        Ok(())
    }

    /// Closes at once if nothing is in flight, otherwise after cancelling what is (step07),
    /// and after the pool has returned every fib.
    fn close(&mut self, key: usize, core: &mut Core<'_>) -> io::Result<Status> {
        if self.idle() {
            return Ok(Status::Closed);
        }
        if !self.close_asked && (self.recv_armed || self.outbox.in_flight()) {
            let entry =
                opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(self.stream.as_raw_fd())).all())
                    .build()
                    .user_data(Token::Cancel(key).into());
            // SAFETY: no buffer; it names the socket, which stays open until this
            // cancellation's completion has arrived (`cancels_in_flight`).
            unsafe { core.ring.push(&entry)? };
            self.close_asked = true;
            self.cancels_in_flight += 1;
        }
        Ok(Status::Open)
    }
}
