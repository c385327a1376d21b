//! One ring's event loop: its own io_uring, listener, provided buffers and connections, on
//! the thread `ring-N` that owns them. step07's loop, with multishot accept, the pool's
//! results and the shutdown message as completions.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use io_uring::types::{CancelBuilder, Fd, Timespec};
use io_uring::{cqueue, opcode};
use shared::cli::Config;
use shared::net::ACCEPT_BACKOFF;
use shared::shutdown::Drain;
use slab::Slab;
use step07::event_loop::{AfterAcceptError, accept_backlog, after_accept_error};
use step07::ring::Ring;
use step07::trace;

use crate::buffers::BufferRing;
use crate::connection::{Connection, Core, Status};
use crate::pool::{Pool, PoolHandle, fib_value};
use crate::token::{MAX_CONNECTIONS, Token};

/// Provided buffers per ring, and their size. 1024 buffers of 4 KiB, 4 MiB per ring: enough
/// for a burst from every one of a thousand connections at once (a buffer goes back as soon
/// as its completion is handled, so they are only out while completions wait).
///
/// Measured against a 4 KiB buffer per connection (single-shot receives both): the same
/// speed (64 connections 109k vs 112k req/s, pipelined 1.50M vs 1.54M: within the noise),
/// but 10,000 idle connections cost 179 bytes each instead of 1,541 (resident memory; step07,
/// with its 4 KiB line buffer per connection, 4,288).
const BUFFERS: u16 = 1024;
const BUFFER_SIZE: usize = 4096;

/// How long a wait holds out for a whole batch: the completions of the sends submitted with
/// it, which the kernel posts at once, and the next completion after them (the client's next
/// request, usually). Waiting for one would end at the first send's completion, and every
/// request would cost a second `io_uring_enter`; holding out for the batch makes it one. A
/// completion with nothing behind it (the last answer before a client goes quiet) is handled
/// this much later at most.
///
/// Longer than the kernel's scheduler tick (4 ms at the common `HZ=250`), on purpose: a
/// timeout earlier than the tick is the next timer to fire on its CPU, and arming and
/// cancelling it reprograms the CPU's timer hardware, on a virtual machine a trip to the
/// hypervisor each time. With 1 ms here, a request cost 9 µs of CPU with client and server
/// on one CPU, against 3.4 µs with 4 ms or more (Linux 6.18 VM, `taskset -c 0` for both).
const BATCH_WAIT: Duration = Duration::from_millis(5);

/// One ring's event loop.
#[derive(Debug)]
pub struct EventLoop {
    ring: Ring,
    buffers: BufferRing,
    /// Open until the event loop drops: the kernel's operations name it, and a shutdown only
    /// stops accepting.
    listener: TcpListener,
    /// Whether the multishot accept is armed.
    accepting: bool,
    connections: Slab<Connection>,
    pool: PoolHandle,
    /// A duplicate of the ring's descriptor, by which the pool and the signal thread post
    /// their messages to the ring (they hold weak references): while it lives, that number
    /// is this ring's, and once the loop is over, nothing posts to it any more.
    #[expect(dead_code, reason = "held for what dropping it does, never read")]
    ring_fd: Arc<OwnedFd>,
    max_n: u32,
    idle: Option<Duration>,
    /// `--grace`.
    grace: Duration,
    /// Durations the kernel reads when a timeout is submitted.
    backoff: Timespec,
    grace_timeout: Timespec,
    /// Counting the connections closed since the shutdown began; `None` until it does.
    drain: Option<Drain>,
    /// The cancellation of the accept is in flight.
    accept_cancel_in_flight: bool,
    grace_over: bool,
}

/// Serves on this thread with `ring` and `listener`, as ring number `index`, until a
/// graceful shutdown completes.
///
/// `ring_fd` is a duplicate of the ring's descriptor, by which the pool and the signal
/// thread post their messages to it; the event loop holds it for as long as it runs.
///
/// # Errors
///
/// When the ring cannot be set up or fails.
pub fn serve(
    index: usize,
    mut ring: Ring,
    ring_fd: Arc<OwnedFd>,
    listener: TcpListener,
    pool: &Pool,
    config: &Config,
) -> io::Result<()> {
    // The ring was created disabled, so that the thread using it, this one, is the one it
    // belongs to (`IORING_SETUP_SINGLE_ISSUER`).
    ring.io_uring().submitter().register_enable_rings()?;
    ring.wait_for_batches(BATCH_WAIT);
    let buffers = BufferRing::register(&ring, 0, BUFFERS, BUFFER_SIZE)?;
    let mut event_loop = EventLoop {
        ring,
        buffers,
        listener,
        accepting: false,
        connections: Slab::new(),
        pool: pool.handle(index, &ring_fd),
        ring_fd,
        max_n: config.max_n,
        idle: config.idle(),
        grace: config.grace,
        backoff: Timespec::from(ACCEPT_BACKOFF),
        grace_timeout: Timespec::from(config.grace),
        drain: None,
        accept_cancel_in_flight: false,
        grace_over: false,
    };
    // A signal that came before the ring was enabled could not be posted to it.
    if shared::shutdown::requested() {
        event_loop.begin_shutdown()?;
    }
    event_loop.run()?;
    if let Some(drain) = event_loop.drain.take() {
        drain.finish(&name(), event_loop.connections.len());
    }
    Ok(())
}

/// What this ring calls itself in what it says: `step08 ring-0`.
fn name() -> String {
    format!("step08 {}", std::thread::current().name().unwrap_or("ring"))
}

impl EventLoop {
    // ANCHOR: event_loop
    fn run(&mut self) -> io::Result<()> {
        self.accept()?;
        while !self.finished() {
            let completion = self.ring.next_completion()?;
            self.dispatch(&completion)?;
        }
        Ok(())
    }
    // ANCHOR_END: event_loop

    /// Whether a shutdown is complete: no connections left (or no more patience), and
    /// nothing in flight that names the listener.
    fn finished(&self) -> bool {
        self.drain.is_some()
            && ((self.connections.is_empty() && !self.accepting && !self.accept_cancel_in_flight)
                || self.grace_over)
    }

    fn dispatch(&mut self, completion: &cqueue::Entry) -> io::Result<()> {
        let (result, flags) = (completion.result(), completion.flags());
        let token = Token::from(completion.user_data());
        let _dispatch = self.trace_completion(completion);
        let key = match token {
            Token::Accept => return self.on_accepted(result, cqueue::more(flags)),
            Token::AcceptBackoff => return self.accept(),
            Token::Shutdown => return self.begin_shutdown(),
            Token::ShutdownDeadline => {
                self.grace_over = true;
                return Ok(());
            }
            Token::CancelAccept => return self.on_accept_cancelled(),
            Token::Recv(key)
            | Token::Send(key)
            | Token::Cancel(key)
            | Token::Timer(key)
            | Token::CancelTimer(key)
            | Token::Fib { key, .. } => key,
        };
        let (connection, mut core, buffers) = self.connection(key);
        match token {
            Token::Recv(_) => {
                let buffer = cqueue::buffer_select(flags);
                let data = match buffer {
                    Some(id) => buffers.take(id, result.max(0) as usize),
                    None => &[],
                };
                connection.on_received(key, result, data, cqueue::more(flags), &mut core);
                // The bytes have been answered or copied: the buffer goes straight back.
                if let Some(id) = buffer {
                    buffers.give_back(id);
                }
            }
            Token::Send(_) => connection.on_sent(result),
            Token::Cancel(_) => connection.on_cancelled(),
            Token::Timer(_) => connection.on_timer(result, core.idle),
            Token::CancelTimer(_) => connection.on_timer_cancelled(),
            Token::Fib { seq, .. } => {
                connection.on_fib(key, seq, fib_value(result, completion.user_data()));
            }
            _ => unreachable!("handled above"),
        }
        self.advance(key)
    }

    /// Connection `key`, what it needs from the loop ([`Core`]), and the provided buffers
    /// its receives fill: borrows of different fields, lent together.
    fn connection(&mut self, key: usize) -> (&mut Connection, Core<'_>, &mut BufferRing) {
        let core = Core {
            ring: &mut self.ring,
            pool: &self.pool,
            buffer_group: self.buffers.group(),
            max_n: self.max_n,
            idle: self.idle,
        };
        (&mut self.connections[key], core, &mut self.buffers)
    }

    /// Lets connection `key` submit what it waits for next (step07's `advance`), and drops
    /// it once it has closed.
    fn advance(&mut self, key: usize) -> io::Result<()> {
        let (connection, mut core, _) = self.connection(key);
        if connection.advance(key, &mut core)? == Status::Closed {
            self.remove(key);
        }
        Ok(())
    }

    /// `--trace`: says what a completion is, before it is handled (`cqe recv conn 0: 3 bytes
    /// in buffer 5`), and times its handling: a `dispatch` span, entered until it drops.
    fn trace_completion(&self, completion: &cqueue::Entry) -> tracing::span::EnteredSpan {
        if !tracing::enabled!(tracing::Level::TRACE) {
            return tracing::Span::none().entered();
        }
        let dispatch = tracing::trace_span!("dispatch").entered();
        let (result, flags) = (completion.result(), completion.flags());
        let more = if cqueue::more(flags) {
            "still armed"
        } else {
            "no longer armed"
        };
        match Token::from(completion.user_data()) {
            Token::Accept if result >= 0 => {
                // The connection it brings takes the slab's next key (`add_connection`).
                let key = self.connections.vacant_key();
                tracing::trace!("cqe accept → conn {key}, {more}");
            }
            Token::Accept => tracing::trace!("cqe accept: {}, {more}", trace::errno(result)),
            Token::AcceptBackoff => tracing::trace!("cqe timeout: the pause in accepting is over"),
            Token::Shutdown => {
                tracing::trace!("cqe msg_ring from the signal thread: shut down gracefully");
            }
            Token::ShutdownDeadline => {
                tracing::trace!("cqe timeout: the grace period is over: the rest is cut");
            }
            Token::CancelAccept => {
                tracing::trace!("cqe cancel accept: {}", trace::cancelled(result, true));
            }
            token @ (Token::Recv(key)
            | Token::Send(key)
            | Token::Cancel(key)
            | Token::Timer(key)
            | Token::CancelTimer(key)
            | Token::Fib { key, .. }) => {
                self.connections[key].trace_completion(key, token, completion, self.idle);
            }
        }
        dispatch
    }

    /// Drops connection `key`, which closes its socket: nothing in flight names it any more.
    fn remove(&mut self, key: usize) {
        tracing::trace!("conn {key}: closed");
        self.connections.remove(key);
        if let Some(drain) = &mut self.drain {
            drain.closed();
        }
    }

    /// Arms a multishot accept, unless the server is shutting down: one submission, a
    /// completion per accepted connection.
    ///
    /// Measured against step07's accept re-armed after each connection: no difference
    /// (14,000 connections a second either way, where the connecting client was the limit).
    /// It stays for being the simplest multishot operation, and one submission fewer per
    /// connection.
    fn accept(&mut self) -> io::Result<()> {
        if self.drain.is_some() {
            return Ok(());
        }
        let entry = opcode::AcceptMulti::new(Fd(self.listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(Token::Accept.into());
        // SAFETY: no buffer. The listener is closed only when the event loop drops, which
        // cancels everything in flight first.
        unsafe { self.ring.push(&entry)? };
        tracing::trace!("sqe accept, multishot");
        self.accepting = true;
        Ok(())
    }

    /// A completion of the multishot accept: a new connection, or an error; `more` says
    /// whether the accept stays armed. A failed accept never ends the server (step07's
    /// `after_accept_error`).
    fn on_accepted(&mut self, result: i32, more: bool) -> io::Result<()> {
        self.accepting = more;
        if result >= 0 {
            // SAFETY: an accept's result is a file descriptor the kernel just opened for us;
            // nothing else in this process knows it, so the stream is its only owner.
            let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(result) });
            self.add_connection(stream)?;
        } else if result != -libc::ECANCELED {
            let error = io::Error::from_raw_os_error(-result);
            if after_accept_error("step08", &error) == AfterAcceptError::Pause && !self.accepting {
                // The multishot accept has ended with this error; see step07.
                return self.pause_accepting();
            }
        }
        if !self.accepting {
            // The multishot accept ended (a per-connection error, or it was cancelled);
            // `accept` arms a new one unless the server is shutting down.
            self.accept()?;
        }
        Ok(())
    }

    fn add_connection(&mut self, stream: TcpStream) -> io::Result<()> {
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        if key >= MAX_CONNECTIONS {
            return Ok(()); // dropping the stream closes it: this ring is full
        }
        let connection = entry.insert(Connection::new(stream));
        if self.drain.is_some() {
            // Accepted as the shutdown began: it closes cleanly like the others.
            connection.stop();
        }
        // Arms its receive (and its timer).
        self.advance(key)
    }

    /// Out of file descriptors (or anything step07's `after_accept_error` says to wait
    /// out): step07's pause, on this ring.
    fn pause_accepting(&mut self) -> io::Result<()> {
        let entry = opcode::Timeout::new(&self.backoff)
            .build()
            .user_data(Token::AcceptBackoff.into());
        let secs = ACCEPT_BACKOFF.as_secs_f64();
        tracing::trace!("sqe timeout: no accept for {secs:.1} s (out of file descriptors)");
        // SAFETY: points to `self.backoff`, a field of the event loop, which cancels
        // everything in flight before its fields drop; the kernel reads it on submission.
        unsafe { self.ring.push(&entry) }
    }

    /// Ctrl-C or SIGTERM: stop accepting (what waits in the backlog is accepted first), stop
    /// every connection (each answers what it has received, then closes cleanly), and give
    /// them `--grace` to do it. step07's shutdown, on this ring.
    fn begin_shutdown(&mut self) -> io::Result<()> {
        if self.drain.is_some() {
            return Ok(());
        }
        self.drain = Some(Drain::begin(&name(), self.connections.len(), self.grace));
        self.cancel_accept()?;
        for stream in accept_backlog(&self.listener) {
            self.add_connection(stream)?;
        }
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.connections[key].stop();
            self.advance(key)?;
        }
        let entry = opcode::Timeout::new(&self.grace_timeout)
            .build()
            .user_data(Token::ShutdownDeadline.into());
        let secs = self.grace.as_secs_f64();
        tracing::trace!("sqe timeout: the end of the grace period, in {secs:.1} s");
        // SAFETY: points to `self.grace_timeout`, a field of the event loop (see
        // `pause_accepting`).
        unsafe { self.ring.push(&entry) }
    }

    /// Asks the kernel to cancel the multishot accept, if it is armed and no cancellation is
    /// on its way already.
    ///
    /// By descriptor rather than by `user_data`: cancelling a multishot operation by
    /// `user_data` while it posts a completion can miss it (the cancellation finds
    /// nothing). Either can miss in such a race, so a cancellation that completes while
    /// the accept is still armed is asked again ([`on_accept_cancelled`]).
    ///
    /// [`on_accept_cancelled`]: Self::on_accept_cancelled
    fn cancel_accept(&mut self) -> io::Result<()> {
        if !self.accepting || self.accept_cancel_in_flight {
            return Ok(());
        }
        let entry =
            opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(self.listener.as_raw_fd())).all())
                .build()
                .user_data(Token::CancelAccept.into());
        // SAFETY: a cancellation points to no buffer; the listener it names stays open
        // until the event loop drops, which cancels everything in flight first.
        unsafe { self.ring.push(&entry)? };
        tracing::trace!("sqe cancel accept");
        self.accept_cancel_in_flight = true;
        Ok(())
    }

    /// The accept's cancellation completed: asked again if the accept is still armed.
    fn on_accept_cancelled(&mut self) -> io::Result<()> {
        self.accept_cancel_in_flight = false;
        self.cancel_accept()
    }
}

/// step07's rule for dropping a ring's owner: cancel everything in flight first, and leak
/// rather than free what the kernel may still use (step07's `Drop` says what and why). The
/// provided buffers unregister themselves when they drop, once nothing is in flight.
impl Drop for EventLoop {
    fn drop(&mut self) {
        if self.ring.cancel_all().is_err() {
            std::mem::forget(std::mem::take(&mut self.connections));
            self.buffers.leak();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_64_bit_fib_travels_in_result_and_user_data() {
        let fib_93: u64 = 12_200_160_415_121_876_738;
        let tag = u64::from(Token::Fib {
            key: 12345,
            seq: 200,
        }) as u32;
        let (result, user_data) = crate::pool::fib_message(fib_93, tag);
        assert_eq!(fib_value(result, user_data), fib_93);
        assert_eq!(
            Token::from(user_data),
            Token::Fib {
                key: 12345,
                seq: 200
            }
        );
    }
}
