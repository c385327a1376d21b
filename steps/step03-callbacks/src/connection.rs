//! One client connection as a state machine, stepped forward by readiness callbacks.
//!
//! step01's `serve_connection` is a loop that blocks in `read` and `write_all`; where the
//! thread is in that loop says what the connection is doing. A callback must not block, so
//! it returns as soon as the socket has nothing more to give or take, and everything the loop
//! kept in local variables, and in its position in the code, has to survive until the next
//! callback: the buffers and a [`State`], stored in a [`Connection`].

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use shared::protocol::{self, Flow, IDLE_TIMEOUT_ANSWER, LineBuffer};

/// How many bytes of answers a connection may hold for a client that is not reading them.
///
/// Past this the connection stops reading requests (backpressure): the client's unread
/// requests wait in the kernel's buffers, then its own writes block, as they should. Without
/// a bound, a client that sends but never reads would make the server buffer answers until
/// memory ran out; with one, it costs at most this much (and one more answer) per connection.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

// ANCHOR: state
/// Where a connection is in its life. In step01 this was the line the thread was on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading requests and answering them.
    Reading,
    /// The answers reached [`OUTPUT_LIMIT`]: not reading until the client has taken them all.
    /// Complete requests may still wait in the line buffer; they are answered on resuming.
    Paused,
    /// The client half-closed: send the remaining answers, then close.
    Finishing,
    /// No more requests: a line was too long, the client was idle too long, or the server is
    /// shutting down. Send the remaining answers (and the error), then shut down our side.
    Ending,
    /// Our side is shut down. Discard what the client still sends until it closes: closing a
    /// socket with unread input sends a reset, and a reset can destroy the last answers
    /// before the client has read them.
    Lingering,
}
// ANCHOR_END: state

/// What the event loop should do with a connection after its callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Keep it registered: it waits for the readiness it asked for.
    Open,
    /// Drop it: it is finished (or broken) and no longer registered.
    Closed,
}

/// What one `read` brought.
enum Received {
    /// Bytes, and maybe more behind them (the read filled the space it was given).
    Bytes,
    /// Bytes, and the socket is empty now: the read took less than it was offered.
    Drained,
    NothingYet,
    EndOfInput,
}

/// A client connection: its socket, its buffers, its state.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    /// The key of this connection in the event loop's registry, and its token in the poll.
    token: Token,
    /// Bytes received, framed into request lines.
    requests: LineBuffer,
    /// Answers the socket has not taken yet.
    answers: Vec<u8>,
    state: State,
    /// The readiness registered with the poll, so that it is changed only when it must be:
    /// every change is a system call.
    interest: Interest,
    /// The last read emptied the socket (see [`Received::Drained`]): until the next event,
    /// reading again would only hear `WouldBlock`.
    drained: bool,
    /// An event said the client has closed its side. Its end of input may be waiting behind
    /// the bytes of a short read, and no new event will announce it: from now on every read
    /// goes on until `WouldBlock` or the end.
    read_closed: bool,
    /// Since when the connection has been idle: its answers all written, no complete line
    /// received since (or since it was accepted; or since it began to linger).
    idle_since: Instant,
}

impl Connection {
    /// Registers a freshly accepted stream with the poll under `token`.
    ///
    /// Requests that arrived before this call are not missed: registering reports the
    /// readiness a socket already has.
    ///
    /// # Errors
    ///
    /// When the poll cannot watch one more socket; the stream is then dropped and closed.
    pub fn register(mut stream: TcpStream, token: Token, registry: &Registry) -> io::Result<Self> {
        registry.register(&mut stream, token, Interest::READABLE)?;
        Ok(Connection {
            stream,
            token,
            requests: LineBuffer::new(),
            answers: Vec::new(),
            state: State::Reading,
            interest: Interest::READABLE,
            drained: false,
            read_closed: false,
            idle_since: Instant::now(),
        })
    }

    /// The callback for this connection's token: its socket became readable, writable, or
    /// both (a reset or a hang-up shows up as readiness too, then as a failing read or write).
    ///
    /// It does not ask which readiness the event reported. It makes all the progress the
    /// socket allows, and every operation stops at `WouldBlock`, so a spurious or stale event
    /// costs a system call, never a blocked thread.
    pub fn on_ready(&mut self, registry: &Registry, max_n: u32, read_closed: bool) -> Status {
        // An event: whatever the last read concluded, there may be something new to read.
        self.drained = false;
        self.read_closed |= read_closed;
        let outcome = match self.advance(max_n) {
            Ok(Status::Open) => self.update_interest(registry).map(|()| Status::Open),
            other => other,
        };
        match outcome {
            Ok(Status::Open) => Status::Open,
            // Finished, or the client reset the connection or vanished: either way this ends
            // only this connection, never the server.
            Ok(Status::Closed) | Err(_) => {
                // mio asks for a source to be deregistered before it is dropped (Linux would
                // forget a closed socket by itself; not every system does).
                let _ = registry.deregister(&mut self.stream);
                Status::Closed
            }
        }
    }

    // ANCHOR: idle
    /// When this connection has been idle for `idle`: `None` while an answer is still on its
    /// way (written by us, not yet taken by the socket), or when it cannot be idle (it is
    /// finishing what the client sent before closing its side).
    pub fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        match self.state {
            State::Reading | State::Lingering if self.answers.is_empty() => {
                Some(self.idle_since + idle)
            }
            _ => None,
        }
    }

    /// The connection has been idle too long: tell the client, then end as after any error.
    /// A lingering connection (it is only waiting for the client to close) just closes.
    pub fn time_out(&mut self, registry: &Registry, max_n: u32) -> Status {
        if self.state == State::Lingering {
            let _ = registry.deregister(&mut self.stream);
            return Status::Closed;
        }
        self.answers.extend_from_slice(IDLE_TIMEOUT_ANSWER);
        self.state = State::Ending;
        self.on_ready(registry, max_n, false)
    }
    // ANCHOR_END: idle

    // ANCHOR: stop
    /// The server is shutting down: answer the requests received so far (what is in the
    /// line buffer, and what one more read brings), then end as after an error, draining what
    /// the client still sends until it closes or the grace period is over.
    pub fn stop(&mut self, registry: &Registry, max_n: u32) -> Status {
        if matches!(self.state, State::Reading | State::Paused) {
            let _ = self.receive();
            // Every complete line, even past OUTPUT_LIMIT: this is the last of them.
            while let Some(frame) = self.requests.next_frame() {
                if protocol::answer(frame, max_n, &mut self.answers) == Flow::Close {
                    break;
                }
            }
            self.state = State::Ending;
        }
        self.on_ready(registry, max_n, false)
    }
    // ANCHOR_END: stop

    /// Moves from state to state for as long as the socket allows, and returns when the
    /// connection must wait for readiness ([`Status::Open`]) or is finished.
    ///
    /// mio's readiness is *edge-triggered*: the poll reports a socket when it becomes
    /// readable or writable, not again while it stays so. A callback that left bytes unread
    /// would never hear about them. So every return of `Open` below comes right after the
    /// very operation the state waits for found the socket empty (or full): a `WouldBlock`,
    /// or a read that took less than it was offered. Then the next edge is sure to come.
    /// Paused is the one state that stops reading early, and it is also the one that resumes
    /// reading by itself, here, not on an event.
    ///
    /// The answers to what a read brought are written before the next read. A request
    /// answered, written at once, and the socket known to be empty: one event, one read, one
    /// write per request, which is all that readiness needs (the results table counts them).
    ///
    /// Production loops also cap the work done per callback (tokio gives each task a budget
    /// and then yields): here a client that pipelines without pause, and reads its answers
    /// as fast as they come, could keep the loop to itself.
    // ANCHOR: advance
    fn advance(&mut self, max_n: u32) -> io::Result<Status> {
        loop {
            self.send_answers()?;
            match self.state {
                State::Reading => {
                    let before = self.answers.len();
                    if self.answer_requests(max_n) == Flow::Close {
                        self.state = State::Ending;
                    } else if self.answers.len() >= OUTPUT_LIMIT {
                        self.state = State::Paused;
                    } else if self.answers.len() > before {
                        // New answers: out they go before anything else is read.
                        self.send_answers()?;
                        if self.drained {
                            return Ok(Status::Open);
                        }
                    } else if self.drained {
                        return Ok(Status::Open);
                    } else {
                        match self.receive()? {
                            Received::Bytes => {}
                            Received::Drained => self.drained = true,
                            Received::NothingYet => return Ok(Status::Open),
                            Received::EndOfInput => self.state = State::Finishing,
                        }
                    }
                }
                State::Paused if self.answers.is_empty() => self.state = State::Reading,
                State::Finishing if self.answers.is_empty() => return Ok(Status::Closed),
                State::Ending if self.answers.is_empty() => {
                    // The answers are all with the kernel: it sends them, then end-of-stream.
                    self.stream.shutdown(Shutdown::Write)?;
                    self.state = State::Lingering;
                    self.idle_since = Instant::now();
                }
                // The answers are not all sent: wait until the socket is writable.
                State::Paused | State::Finishing | State::Ending => return Ok(Status::Open),
                State::Lingering => return self.discard_input(),
            }
        }
    }
    // ANCHOR_END: advance

    /// Answers the complete requests received so far, until the answers reach
    /// [`OUTPUT_LIMIT`].
    ///
    /// fib runs right here, on the event loop's only thread: while it computes fib(40) for
    /// one client, no other socket is looked at. That is this step's second limit.
    fn answer_requests(&mut self, max_n: u32) -> Flow {
        while self.answers.len() < OUTPUT_LIMIT {
            let Some(frame) = self.requests.next_frame() else {
                break;
            };
            if protocol::answer(frame, max_n, &mut self.answers) == Flow::Close {
                return Flow::Close;
            }
        }
        Flow::Continue
    }

    /// Reads what the client has sent so far into the request buffer.
    ///
    /// Called only once every complete line has been answered, which is when the line
    /// buffer promises free space.
    ///
    /// A read that takes less than the space it was offered has emptied the socket's receive
    /// buffer, so reading again would only hear `WouldBlock`: one system call saved per
    /// request. With epoll and kqueue, bytes that arrive after it raise a new edge, so it is as
    /// good as the `WouldBlock` (tokio relies on the same rule). Two exceptions: once the
    /// client has closed its side, its end of input raises no new edge (it may be queued
    /// right behind the bytes of this read), and mio on Windows re-arms its readiness only on
    /// `WouldBlock`; then every read goes on until `WouldBlock` or the end.
    fn receive(&mut self) -> io::Result<Received> {
        loop {
            let spare = self.requests.spare();
            let offered = spare.len();
            let read = self.stream.read(spare);
            trace_io(self.token, "read", &read);
            match read {
                Ok(0) => return Ok(Received::EndOfInput),
                Ok(n) => {
                    self.requests.filled(n);
                    if n < offered && !self.read_closed && cfg!(not(windows)) {
                        return Ok(Received::Drained);
                    }
                    return Ok(Received::Bytes);
                }
                Err(error) if would_block(&error) => return Ok(Received::NothingYet),
                Err(error) if interrupted(&error) => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// Writes as much of the answers as the socket takes now; the rest waits until the
    /// socket is writable again.
    fn send_answers(&mut self) -> io::Result<()> {
        let mut sent = 0;
        while sent < self.answers.len() {
            // A write may take only part of what it is offered (a partial write): the
            // kernel's send buffer had room for that much. Offer the rest until it says
            // WouldBlock.
            let written = self.stream.write(&self.answers[sent..]);
            trace_io(self.token, "write", &written);
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(error) if would_block(&error) => break,
                Err(error) if interrupted(&error) => continue,
                Err(error) => return Err(error),
            }
        }
        // Usually the socket took everything and this just empties the buffer; after a
        // partial write, the unsent rest (under OUTPUT_LIMIT) moves to the front once.
        self.answers.drain(..sent);
        if sent > 0 && self.answers.is_empty() {
            // Every answer is with the kernel: from now on the connection is idle.
            self.idle_since = Instant::now();
        }
        Ok(())
    }

    /// Reads and drops whatever the client still sends after the error, until it closes.
    ///
    /// A client that never closes stays here like any idle connection: it costs a socket,
    /// not CPU, until the idle timeout (or the end of a shutdown's grace) closes it.
    fn discard_input(&mut self) -> io::Result<Status> {
        let mut sink = [0u8; 4096];
        loop {
            match self.stream.read(&mut sink) {
                Ok(0) => return Ok(Status::Closed),
                Ok(_) => continue,
                Err(error) if would_block(&error) => return Ok(Status::Open),
                Err(error) if interrupted(&error) => continue,
                Err(error) => return Err(error),
            }
        }
    }

    // ANCHOR: interest
    /// Tells the poll which readiness the current state waits for, if that changed.
    ///
    /// Writability is asked for only while answers wait: a socket is writable nearly all the
    /// time, and every acknowledgement from the client that frees send-buffer space would
    /// wake the loop for nothing. Readability is dropped while paused: that is what stops a
    /// client that does not read from making us read (and answer) more.
    fn update_interest(&mut self, registry: &Registry) -> io::Result<()> {
        let wanted = match self.state {
            State::Reading if self.answers.is_empty() => Interest::READABLE,
            State::Reading => Interest::READABLE | Interest::WRITABLE,
            State::Paused | State::Finishing | State::Ending => Interest::WRITABLE,
            State::Lingering => Interest::READABLE,
        };
        if wanted != self.interest {
            tracing::trace!(
                "conn {}: epoll_ctl: now waits until {wanted:?}",
                self.token.0
            );
            registry.reregister(&mut self.stream, self.token, wanted)?;
            self.interest = wanted;
        }
        Ok(())
    }
    // ANCHOR_END: interest
}

/// The socket has nothing more to give (or no room to take) right now. With a blocking
/// socket the thread would sleep here until it had; a non-blocking one says so and returns,
/// and the thread goes on to serve someone else.
pub(crate) fn would_block(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock
}

/// A signal arrived during the system call; nothing went wrong, try again.
pub(crate) fn interrupted(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::Interrupted
}

/// `--trace`: what a read or a write on a connection did.
fn trace_io(token: Token, what: &str, result: &io::Result<usize>) {
    let conn = token.0;
    match result {
        Ok(0) if what == "read" => tracing::trace!("conn {conn}: read: end of input"),
        Ok(bytes) => tracing::trace!("conn {conn}: {what} {bytes} bytes"),
        Err(error) if would_block(error) => tracing::trace!("conn {conn}: {what}: would block"),
        Err(error) => tracing::trace!("conn {conn}: {what}: {error}"),
    }
}
