//! One client connection: its socket, its buffers, which of its operations the kernel is
//! working on, and what to submit next when one of them completes.
//!
//! step03's connection reacted to "you may read now" by reading. This one reacts to "here is
//! what I read into your buffer": by the time the event loop hears about the connection, the
//! `recv` has already happened, into memory the connection handed to the kernel when it
//! submitted the operation. That changes who owns the buffers, and that is this file's lesson:
//!
//! - `requests` (the line buffer) belongs to the kernel while a `recv` is in flight: the
//!   kernel writes into its spare space at a moment of its choosing. We do not frame, compact
//!   or even look at it until the `recv` completes.
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

use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;

use io_uring::opcode;
use io_uring::types::{CancelBuilder, Fd};
use shared::protocol::{self, Flow, LineBuffer};

use crate::outbox::Outbox;
use crate::ring::Ring;
use crate::token::Token;

/// How many bytes of answers a connection may hold for a client that is not reading them:
/// past this it stops submitting receives (backpressure), as step03 stopped reading.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// How many bytes one receive discards after a line too long.
const DISCARD_CHUNK: usize = 4096;

/// Where a connection is in its life.
///
/// step03's `Paused` is gone: a connection that holds [`OUTPUT_LIMIT`] bytes of answers simply
/// does not submit its next receive, and nothing has to be unregistered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Receiving requests and answering them.
    Reading,
    /// The client half-closed: answer every complete line, send, then close.
    Finishing,
    /// A line was too long: send the answers so far and the error, then shut down our side.
    Rejecting,
    /// Our side is shut down after the error: discard what the client still sends until it
    /// closes, so that closing does not reset the connection before it has read the error.
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
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    /// Bytes received, framed into request lines. The kernel's while `recv_in_flight`.
    requests: LineBuffer,
    /// Answers, and the send in flight: partly the kernel's, see [`Outbox`].
    outbox: Outbox,
    /// Where discarded bytes go while lingering. The kernel's while `recv_in_flight` then.
    sink: Vec<u8>,
    state: State,
    recv_in_flight: bool,
    /// Closing asked the kernel to cancel the operations in flight (once is enough).
    cancel_asked: bool,
    cancel_in_flight: bool,
}
// ANCHOR_END: connection

impl Connection {
    /// A freshly accepted connection; [`advance`](Self::advance) submits its first receive.
    pub fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            requests: LineBuffer::new(),
            outbox: Outbox::default(),
            sink: Vec::new(),
            state: State::Reading,
            recv_in_flight: false,
            cancel_asked: false,
            cancel_in_flight: false,
        }
    }

    // ANCHOR: on_completion
    /// A receive completed: `result` bytes are now in our buffer, or it is the end of the
    /// client's input (0), or an error (negative errno).
    pub fn on_received(&mut self, result: i32) {
        self.recv_in_flight = false;
        // A receive linked behind a send starts only once the send went out whole, so its
        // completion is the send's too.
        self.outbox.on_chain_done();
        match (self.state, result) {
            // Cancelled, or it raced the cancellation: either way the bytes are not wanted.
            (State::Closing, _) => {}
            (State::Reading, 1..) => self.requests.filled(result as usize),
            (State::Reading, 0) => self.state = State::Finishing,
            (State::Lingering, 1..) => {}
            // End of input after the error, or the client reset or vanished: this ends only
            // this connection.
            _ => self.state = State::Closing,
        }
    }

    /// A send completed: the kernel took `result` bytes of the outbox, or failed.
    ///
    /// A send linked to a receive completes only when it fails: the kernel then cancels the
    /// receive behind it without a completion of its own (`IOSQE_CQE_SKIP_SUCCESS` on the
    /// send skips the whole chain's), so neither is in flight any more.
    pub fn on_sent(&mut self, result: i32) {
        if self.outbox.chained() {
            self.recv_in_flight = false;
        }
        if !self.outbox.on_sent(result) {
            self.state = State::Closing;
        }
    }

    /// The cancellation asked for by `close` completed.
    pub fn on_cancelled(&mut self) {
        self.cancel_in_flight = false;
    }
    // ANCHOR_END: on_completion

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
        // The line buffer is ours again only when no receive is in flight.
        if matches!(self.state, State::Reading | State::Finishing)
            && !self.recv_in_flight
            && self.answer_requests(core.max_n) == Flow::Close
        {
            self.state = State::Rejecting;
        }
        if self.state == State::Reading
            && !self.recv_in_flight
            && self.outbox.unsent() < OUTPUT_LIMIT
        {
            return self.exchange(key, core.ring).map(|()| Status::Open);
        }
        self.send_answers(key, core.ring)?;
        // `send_answers` submits whenever there is anything to send: no send in flight means
        // every answer has been sent.
        let all_sent = !self.outbox.in_flight();
        match self.state {
            State::Finishing if all_sent => return Ok(Status::Closed),
            State::Rejecting if all_sent => {
                // The answers and the error are all with the kernel: it sends them, then the
                // end of our stream.
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

    /// Answers the complete requests received so far, until the answers reach
    /// [`OUTPUT_LIMIT`].
    ///
    /// fib runs right here, on the ring's only thread: while it computes fib(40) for one
    /// client, no completion of any other client is handled.
    fn answer_requests(&mut self, max_n: u32) -> Flow {
        while self.outbox.unsent() < OUTPUT_LIMIT {
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
    /// Submits the answers that wait and the next receive, into the spare space of the line
    /// buffer, as one linked chain: the send first, the receive once it has gone out. Without
    /// answers to send (a partial line), or while a send is in flight already, the receive
    /// goes alone.
    ///
    /// Both reach the kernel in the same `io_uring_enter`, the one that waits for what comes
    /// next, and only the receive posts a completion: one system call and one completion per
    /// request. Submitted side by side instead, the send's completion, arriving at once,
    /// would end that wait, and a second enter would wait for the receive.
    fn exchange(&mut self, key: usize, ring: &mut Ring) -> io::Result<()> {
        let spare = self.requests.spare();
        let receive = opcode::Recv::new(
            Fd(self.stream.as_raw_fd()),
            spare.as_mut_ptr(),
            u32::try_from(spare.len()).unwrap_or(u32::MAX),
        )
        .build()
        .user_data(Token::Recv(key).into());
        // SAFETY: `spare` is inside the heap allocation of `self.requests`, which this
        // connection owns: moving the connection (the slab grows) moves only the pointer to
        // it. The connection stays in the slab, socket open, until this receive's completion
        // has arrived (`recv_in_flight`, see `Status::Closed`), and nothing reads, compacts
        // or frees the line buffer while `recv_in_flight` is set. The send before it is the
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

    /// Submits a receive whose bytes are thrown away (lingering after a line too long).
    fn discard(&mut self, key: usize, ring: &mut Ring) -> io::Result<()> {
        self.sink.resize(DISCARD_CHUNK, 0);
        let entry = opcode::Recv::new(
            Fd(self.stream.as_raw_fd()),
            self.sink.as_mut_ptr(),
            DISCARD_CHUNK as u32,
        )
        .build()
        .user_data(Token::Recv(key).into());
        // SAFETY: `sink` is a heap allocation owned by this connection and never resized or
        // freed while `recv_in_flight` is set (it is resized only here, before submitting);
        // the connection, socket open, stays in the slab until this receive completes.
        unsafe { ring.push(&entry)? };
        self.recv_in_flight = true;
        Ok(())
    }

    /// Closes the connection: at once if nothing is in flight, otherwise after asking the
    /// kernel to cancel what is.
    ///
    /// The cancellation is an operation too, and it names this connection's socket, so the
    /// connection waits for its completion as well: were the socket closed first, its number
    /// could be reused by the next accepted connection and the cancellation would hit that
    /// one.
    fn close(&mut self, key: usize, ring: &mut Ring) -> io::Result<Status> {
        if !self.recv_in_flight && !self.outbox.in_flight() && !self.cancel_in_flight {
            // Dropping the connection closes its socket and frees its buffers.
            return Ok(Status::Closed);
        }
        if !self.cancel_asked {
            let entry =
                opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(self.stream.as_raw_fd())).all())
                    .build()
                    .user_data(Token::Cancel(key).into());
            // SAFETY: a cancellation points to no buffer. It names the socket, which stays
            // open until this cancellation's completion has arrived (`cancel_in_flight`).
            unsafe { ring.push(&entry)? };
            self.cancel_asked = true;
            self.cancel_in_flight = true;
        }
        Ok(Status::Open)
    }
}
