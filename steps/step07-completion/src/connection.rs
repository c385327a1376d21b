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
//!   ([`Connection::exchange`]): the receive starts once the send has gone out, and only the
//!   receive posts a completion. So a request costs one completion and one `io_uring_enter`,
//!   the one that submits its answer and waits for the next request, and when that receive's
//!   completion comes, the send is known to be done and `sending` is ours again.
//! - A connection that must close while operations are in flight (the client reset it, say)
//!   cannot simply be dropped: the kernel would write into freed memory, or a new connection
//!   given the same slab key or file descriptor number would receive the old one's
//!   completions. It asks the kernel to cancel them and stays, buffers and socket and all,
//!   until every completion has come back.

use std::fmt;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;

use io_uring::opcode;
use io_uring::types::{CancelBuilder, Fd};
use shared::net::report_connection_error;
use shared::protocol::{self, DEFAULT_READ_CAPACITY, Flow, LineBuffer, MAX_LINE};

use crate::kernel_buffer::KernelBuffer;
use crate::outbox::Outbox;
use crate::ring::Ring;
use crate::token::Token;

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
    /// Taking no more input: answer every complete line received, send; then close if the
    /// client has ended its input, or shut down our side and linger. After a line too long
    /// the last answer is the error.
    Finishing,
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
    /// The client has ended its input (a receive returned 0).
    input_ended: bool,
    recv_in_flight: bool,
    /// Cancellations asked for by `close` whose completions have not come yet.
    cancels_in_flight: u32,
}
// ANCHOR_END: connection

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
            input_ended: false,
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
        match (self.state, result) {
            // Cancelled, or it raced the cancellation: either way the bytes are not wanted.
            (State::Closing, _) => {}
            (State::Reading, 1..) => self.take_received(result as usize, core.max_n),
            (State::Reading, 0) => {
                self.input_ended = true;
                self.state = State::Finishing;
            }
            // Discarded.
            (State::Lingering, 1..) => {}
            // The client has read everything and closed: the clean end.
            (State::Lingering, 0) => self.state = State::Closing,
            // The client reset or vanished: this ends only this connection.
            (_, error) => self.fail(io::Error::from_raw_os_error(-error)),
        }
    }

    /// A send completed: the kernel took `result` bytes of the outbox, or failed.
    ///
    /// A send linked to a receive completes only when the chain broke (the send failed, or
    /// was cancelled): the kernel then cancels the receive behind it without a completion of
    /// its own (`IOSQE_CQE_SKIP_SUCCESS` on the send skips the rest of the chain's), so
    /// neither is in flight any more.
    pub fn on_sent(&mut self, result: i32) {
        if self.outbox.chained() {
            self.recv_in_flight = false;
        }
        if let Err(error) = self.outbox.on_sent(result) {
            self.fail(error);
        }
    }

    /// A cancellation asked for by `close` completed.
    pub fn on_cancelled(&mut self) {
        self.cancels_in_flight -= 1;
    }
    // ANCHOR_END: on_completion

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
        // Input that waited while the connection was over its bounds comes first; the line
        // buffer and `unread` are ours whatever is in flight, the input buffer only between
        // receives.
        if matches!(self.state, State::Reading | State::Finishing) && !self.paused() {
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
            return self.exchange(key, core.ring).map(|()| Status::Open);
        }
        self.send_answers(key, core.ring)?;
        // `send_answers` submits whenever there is anything to send: no send in flight means
        // every answer has been sent.
        let all_sent = !self.outbox.in_flight();
        match self.state {
            State::Finishing if all_sent && self.input_ended => return Ok(Status::Closed),
            State::Finishing if all_sent => {
                // The answers are all with the kernel: it sends them, then the end of our
                // stream.
                if self.stream.shutdown(Shutdown::Write).is_err() {
                    // The client is already gone.
                    self.state = State::Closing;
                    return self.close(key, core.ring);
                }
                self.state = State::Lingering;
                self.discard(key, core.ring)?;
            }
            State::Lingering if !self.recv_in_flight => self.discard(key, core.ring)?,
            _ => {}
        }
        Ok(Status::Open)
    }

    /// Whether the connection holds as many answers as it may: it takes no more input.
    fn paused(&self) -> bool {
        self.outbox.unsent() >= OUTPUT_LIMIT
    }

    /// Takes the `len` bytes a receive has just put in `input`.
    fn take_received(&mut self, len: usize, max_n: u32) {
        let input = std::mem::take(&mut self.input);
        // SAFETY: the receive that wrote these bytes has completed, and the next one is
        // submitted only after `take` has framed or copied them.
        self.take(unsafe { input.bytes(0..len) }, max_n);
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
        if self.state == State::Reading {
            // Over the bounds in the middle of the bytes: the rest waits, copied out, so
            // that the input buffer is free for the next receive.
            self.unread.extend_from_slice(&data[used..]);
        }
    }

    /// Frames `data` and answers every complete request in it, until the connection is over
    /// its bounds; returns how many bytes it used. Every answer goes to the same output
    /// buffer, so all the requests of one receive are answered by one send.
    fn take_input(&mut self, data: &[u8], max_n: u32) -> usize {
        let mut used = 0;
        loop {
            if self.answer_requests(max_n) == Flow::Close {
                self.state = State::Finishing;
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
            if protocol::answer(frame, max_n, self.outbox.queue()) == Flow::Close {
                return Flow::Close;
            }
        }
        Flow::Continue
    }

    // ANCHOR: receive
    /// Submits the answers that wait and the next receive, into the input buffer, as one
    /// linked chain: the send first, the receive once it has gone out. Without answers to
    /// send (a partial line), or while a send is in flight already, the receive goes alone.
    ///
    /// Both reach the kernel in the same `io_uring_enter`, the one that waits for what comes
    /// next, and only the receive posts a completion: one system call and one completion per
    /// request. Submitted side by side instead, the send's completion, arriving at once,
    /// would end that wait, and a second enter would wait for the receive.
    fn exchange(&mut self, key: usize, ring: &mut Ring) -> io::Result<()> {
        let receive = self.receive_entry(key);
        // SAFETY: the receive writes into `input`, a raw allocation owned by this
        // connection: moving the connection (the slab grows) moves only the pointer to it,
        // and no reference to its bytes exists until the receive's completion has arrived
        // (`on_received` makes the first). The connection stays in the slab, socket open,
        // until then (`recv_in_flight`, see `Status::Closed`). The send before it is the
        // outbox's (see `Outbox::send_then`); `recv_in_flight` also covers the case where the
        // send fails and its completion says the receive will never run.
        let chained = unsafe {
            self.outbox.send_then(
                Fd(self.stream.as_raw_fd()),
                Token::Send(key).into(),
                &receive,
                ring,
            )?
        };
        if !chained {
            // SAFETY: as above.
            unsafe { ring.push(&receive)? };
        }
        self.recv_in_flight = true;
        Ok(())
    }
    // ANCHOR_END: receive

    /// A receive into the input buffer, whose completion names this connection.
    fn receive_entry(&mut self, key: usize) -> io_uring::squeue::Entry {
        opcode::Recv::new(
            Fd(self.stream.as_raw_fd()),
            self.input.as_ptr(),
            u32::try_from(self.input.len()).unwrap_or(u32::MAX),
        )
        .build()
        .user_data(Token::Recv(key).into())
    }

    /// Submits the answers that wait, unless a send is already in flight.
    fn send_answers(&mut self, key: usize, ring: &mut Ring) -> io::Result<()> {
        // SAFETY: the outbox and the socket belong to this connection, which stays in the
        // slab, socket open, until this send's completion has arrived (`Status::Closed` needs
        // the outbox not `in_flight`).
        unsafe {
            self.outbox
                .send(Fd(self.stream.as_raw_fd()), Token::Send(key).into(), ring)
        }
    }

    /// Submits a receive whose bytes are thrown away (lingering).
    fn discard(&mut self, key: usize, ring: &mut Ring) -> io::Result<()> {
        let entry = self.receive_entry(key);
        // SAFETY: as in `exchange`: `input` is this connection's raw allocation, which
        // nothing reads (lingering never looks at the bytes) and which stays, socket open,
        // until this receive completes.
        unsafe { ring.push(&entry)? };
        self.recv_in_flight = true;
        Ok(())
    }

    // ANCHOR: close
    /// Closes the connection: at once if nothing is in flight, otherwise after asking the
    /// kernel to cancel what is, and waiting for the completions: the cancelled operations'
    /// and the cancellation's own. Until they have come, the buffers are still the
    /// kernel's, and the connection stays.
    ///
    /// The cancellation names this connection's socket, so that it finds the send and the
    /// receive, linked or not, and were the socket closed first, its number could be reused
    /// by the next accepted connection and the cancellation would hit that one. It can find
    /// nothing (an operation between two steps: a receive about to start behind the send
    /// that just went out); when it completes and something is still in flight, it is
    /// asked again.
    fn close(&mut self, key: usize, ring: &mut Ring) -> io::Result<Status> {
        let in_flight = self.recv_in_flight || self.outbox.in_flight();
        if !in_flight && self.cancels_in_flight == 0 {
            // Dropping the connection closes its socket and frees its buffers.
            return Ok(Status::Closed);
        }
        if in_flight && self.cancels_in_flight == 0 {
            let entry =
                opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(self.stream.as_raw_fd())).all())
                    .build()
                    .user_data(Token::Cancel(key).into());
            // SAFETY: a cancellation points to no buffer. It names the socket, which stays
            // open until this cancellation's completion has arrived (`cancels_in_flight`).
            unsafe { ring.push(&entry)? };
            self.cancels_in_flight += 1;
        }
        Ok(Status::Open)
    }
    // ANCHOR_END: close
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
            .field("input_ended", &self.input_ended)
            .field("recv_in_flight", &self.recv_in_flight)
            .field("cancels_in_flight", &self.cancels_in_flight)
            .finish_non_exhaustive()
    }
}
