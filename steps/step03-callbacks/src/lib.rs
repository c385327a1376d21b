//! # Step 3: one thread, non-blocking sockets, callbacks on readiness
//!
//! One thread serves every client. It sleeps in one place only, [`mio::Poll`] (epoll on
//! Linux, kqueue on macOS), which waits for *all* the sockets at once and wakes it with the
//! list of those that are *ready*: readable (bytes, or the end of the stream, are waiting)
//! or writable (the kernel's send buffer has room). Each socket is registered with a token,
//! and a registry maps each token to what should happen when it is ready: the listener's
//! accept, a connection's next step. This is Python's `selectors` version,
//! `sel.register(sock, EVENT_READ, callback)`, in Rust.
//!
//! **What changed since step02:** no thread per connection, and no blocking call outside
//! `poll`. Readiness says that a socket can make progress, not how much, so the sockets are
//! non-blocking: a `read` takes what has arrived and a `write` gives what fits, and when
//! there is nothing more they return `WouldBlock` instead of putting the thread to sleep (a
//! sleeping thread would stall every other client). mio reports readiness edge-triggered,
//! once per change, so every callback accepts, reads or writes until `WouldBlock`. step01's `serve_connection`, a loop that
//! blocked in `read` and `write_all`, becomes a state machine in [`connection`]: since the
//! thread cannot wait in the middle of serving a client, every connection keeps its buffers
//! and where it is (reading, paused for a client that does not read its answers, finishing
//! after a half-close, rejecting a line too long) in a struct, stepped forward by callbacks.
//!
//! **Run it** (two terminals, then a third):
//!
//! ```text
//! cargo run -p step03
//! cargo run -p clients --bin fast -- --conns 64
//! cargo run -p clients --bin slow
//! ```
//!
//! **What to observe:** 64 fast clients are served by one thread (`top -H` shows one server
//! thread where step02 had 64), and the results table's 10k-idle column drops to a few KiB
//! per connection: a socket and two buffers, no stack. Then start the slow client: the fast
//! client stalls. fib runs inside a callback, on the only thread, so while it computes one
//! fib(40) (a few tenths of a second) no other socket is even looked at; the fast clients get
//! a couple of answers per slow answer. Two slow clients take twice as long each: one core does all the work.
//!
//! **Stopping work, in this style:** everything the loop waits for goes through its one
//! `poll`, so stopping is more of the same. An idle client (`--idle-timeout`, 60 s by
//! default) is a deadline: the connections' deadlines are kept sorted ([`Timers`]), `poll`
//! sleeps no longer than the nearest, and a connection whose time is up is told `error: idle
//! timeout`, then ends like after a line too long. Ctrl-C or SIGTERM is an event like any
//! other: the signal's thread wakes the poll with a [`mio::Waker`], and the loop stops
//! accepting, answers what every connection has received, shuts down its side, drains what
//! the client still sends until it closes, and exits when all are closed or `--grace` is
//! over (a second signal exits at once). Nothing is cancelled: a callback is never in the
//! middle of anything when the loop decides.
//!
//! **The limit:** the code is hard to read. The straight-line loop of step01 is chopped into
//! callbacks, and to follow one client you follow the transitions of [`connection::State`]
//! through `WouldBlock`s, partial writes and interest changes; adding a step to the protocol
//! means adding states. And CPU work blocks the loop. step04 keeps the single thread and the
//! readiness, but lets the handler be written as a straight-line `async fn` again: the
//! compiler builds the state machine.
//!
//! ## Modules
//!
//! - this file: the event loop, the token-to-callback registry, accepting connections (and
//!   pausing when out of file descriptors);
//! - [`connection`]: one client connection as a state machine, with partial reads and writes,
//!   backpressure, half-close, and ending after a line too long, an idle timeout or a
//!   shutdown;
//! - [`timers`]: the connections' idle deadlines, soonest first.

pub mod connection;
pub mod timers;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use shared::cli::{Config, NoOptions};
use shared::net::{self, ACCEPT_BACKOFF, is_out_of_resources, is_transient_accept_error};
use shared::shutdown::{self, Drain};
use slab::Slab;

use connection::{Connection, Status, would_block};
pub use timers::Timers;

// ANCHOR: callbacks
/// What to do when a token becomes ready: an entry of the registry.
///
/// Python's `selectors` stores a function with each socket. In Rust a closure stored in the
/// registry could not also be handed the registry, to add the connections it accepts: it
/// would be borrowed from the very map it changes. So each entry holds the state its
/// callback needs, and [`Server::dispatch`] calls the callback by matching on it. Same idea,
/// a `match` instead of a function pointer.
#[derive(Debug)]
enum Callback {
    /// The listening socket: accept every connection waiting in the backlog.
    Accept,
    /// A client connection: step its state machine.
    Serve(Connection),
    /// The waker that the signal's thread calls on Ctrl-C or SIGTERM: shut down.
    Shutdown,
}
// ANCHOR_END: callbacks

/// The step03 server: the poll, the listener, the registry of callbacks, and the deadlines.
#[derive(Debug)]
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    listener_token: Token,
    /// The registry: a slab hands out small reusable keys, and a key is the token its socket
    /// is registered with, so finding the callback for an event is an index.
    callbacks: Slab<Callback>,
    max_n: u32,
    /// While accepting is paused for lack of file descriptors: when to try again.
    accept_paused_until: Option<Instant>,
    /// `--idle-timeout`, if any, and the connections' deadlines.
    idle: Option<Duration>,
    timers: Timers,
    /// Woken by the signal's thread; kept so that it lives as long as the poll.
    waker: Arc<Waker>,
    grace: Duration,
    /// Once a shutdown has begun: when its grace ends, and the count of connections closed.
    shutdown: Option<(Instant, Drain)>,
}

impl shared::Server for Server {
    type Options = NoOptions;
    const ABOUT: &'static str = "Step 3: a fib server on one thread: non-blocking sockets and \
                                 callbacks on readiness (mio).";
    const TRACE_TARGETS: &'static [&'static str] = &["step03"];

    fn bind(config: &Config, _: &NoOptions) -> io::Result<Self> {
        let poll = Poll::new()?;
        let listener = net::listen(config.addr)?;
        // mio waits for readiness and expects every call to return at once.
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let mut callbacks = Slab::new();
        let listener_token = Token(callbacks.insert(Callback::Accept));
        poll.registry()
            .register(&mut listener, listener_token, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(
            poll.registry(),
            Token(callbacks.insert(Callback::Shutdown)),
        )?);
        Ok(Server {
            poll,
            listener,
            listener_token,
            callbacks,
            max_n: config.max_n,
            accept_paused_until: None,
            idle: config.idle(),
            timers: Timers::default(),
            waker,
            grace: config.grace,
            shutdown: None,
        })
    }

    fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener always has a local address")
    }

    // ANCHOR: event_loop
    fn run(mut self) -> io::Result<()> {
        let waker = Arc::clone(&self.waker);
        shutdown::on_signal(move || {
            // Waking fails only if the poll is gone, and then so is the server.
            let _ = waker.wake();
        });
        let mut events = Events::with_capacity(1024);
        while !self.finished() {
            // The one place this thread waits: until some registered socket is ready, or the
            // nearest deadline (an idle connection, the end of a pause in accepting or of a
            // shutdown's grace).
            if let Err(error) = self.wait(&mut events) {
                if connection::interrupted(&error) {
                    continue;
                }
                return Err(error);
            }
            for event in events.iter() {
                self.dispatch(event.token(), event.is_read_closed() || event.is_error())?;
            }
            // After the events, not before: resuming first could pause accepting again, and
            // then this batch's event for the listener would accept while paused.
            self.resume_accepting_if_due()?;
            self.time_out_idle_connections();
        }
        Ok(())
    }
    // ANCHOR_END: event_loop
}

impl Server {
    // ANCHOR: dispatch
    /// Calls the callback registered for `token`; `read_closed` says that the event reported
    /// the client's end of input (or an error) along with readiness.
    ///
    /// # Errors
    ///
    /// Only when the listener breaks; a connection's failure ends that connection.
    fn dispatch(&mut self, token: Token, read_closed: bool) -> io::Result<()> {
        let status = match self.callbacks.get_mut(token.0) {
            Some(Callback::Accept) => return self.accept_connections(),
            Some(Callback::Serve(connection)) => {
                connection.on_ready(self.poll.registry(), self.max_n, read_closed)
            }
            Some(Callback::Shutdown) => return self.begin_shutdown(),
            // Closed earlier in this batch of events. (If a new connection reused the key in
            // the meantime it gets a stale event, which is harmless: see `on_ready`.)
            None => return Ok(()),
        };
        self.after(token, status);
        Ok(())
    }

    /// Drops a connection whose callback said it is finished.
    fn after(&mut self, token: Token, status: Status) {
        if status == Status::Closed {
            tracing::trace!("conn {}: closed", token.0);
            // Dropping the connection closes its socket; its key is free for reuse (a timer
            // still holding it finds another connection, or none, and looks again: see
            // `time_out_idle_connections`).
            self.callbacks.remove(token.0);
            if let Some((_, drain)) = &mut self.shutdown {
                drain.closed();
            }
        }
    }
    // ANCHOR_END: dispatch

    /// Waits in `poll` until the nearest deadline, and says what came (`--trace`).
    fn wait(&mut self, events: &mut Events) -> io::Result<()> {
        let timeout = self.next_timeout();
        let _wait = tracing::trace_span!("wait").entered();
        self.poll.poll(events, timeout)?;
        if tracing::enabled!(tracing::Level::TRACE) {
            self.trace_events(events);
        }
        Ok(())
    }

    /// `--trace`: what one wait brought (`epoll_wait → 2 events: conn 3 readable, ...`).
    fn trace_events(&self, events: &Events) {
        let described: Vec<String> = events
            .iter()
            .map(|event| {
                let what = match self.callbacks.get(event.token().0) {
                    Some(Callback::Accept) => "listener",
                    Some(Callback::Shutdown) => "the signal's waker",
                    _ => "conn",
                };
                let how = match (event.is_readable(), event.is_writable()) {
                    (true, true) => "readable and writable",
                    (true, false) => "readable",
                    (false, true) => "writable",
                    (false, false) => "ready",
                };
                format!("{what} {} {how}", event.token().0)
            })
            .collect();
        match described.len() {
            0 => tracing::trace!("epoll_wait → nothing: a deadline is due"),
            1 => tracing::trace!("epoll_wait → 1 event: {}", described[0]),
            n => tracing::trace!("epoll_wait → {n} events: {}", described.join(", ")),
        }
    }

    /// The listener's callback: accept every connection waiting in the backlog.
    ///
    /// Until `WouldBlock`, because readiness is edge-triggered: the listener was reported
    /// once for however many connections arrived, and will not be reported again for them.
    fn accept_connections(&mut self) -> io::Result<()> {
        loop {
            match self.listener.accept() {
                Ok((stream, _peer)) => self.add_connection(stream),
                Err(error) if would_block(&error) => return Ok(()),
                Err(error) if is_transient_accept_error(&error) => continue,
                Err(error) => {
                    if !is_out_of_resources(&error) {
                        net::report_accept_error("step03", &error);
                    }
                    return self.pause_accepting();
                }
            }
        }
    }

    /// Registers a new connection under a fresh token, with its callback.
    fn add_connection(&mut self, stream: TcpStream) {
        let entry = self.callbacks.vacant_entry();
        // If the poll cannot watch one more socket (a kernel limit on watched descriptors),
        // the stream has been dropped, which closes that one connection; the server goes on.
        let token = Token(entry.key());
        tracing::trace!("accept → conn {}", token.0);
        if let Ok(connection) = Connection::register(stream, token, self.poll.registry()) {
            entry.insert(Callback::Serve(connection));
            if let Some(idle) = self.idle {
                self.timers.add(Instant::now() + idle, token);
            }
        }
    }

    /// Out of file descriptors: stop accepting for [`ACCEPT_BACKOFF`], keep serving.
    ///
    /// The connections that could not be accepted wait in the listen backlog. Edge-triggered
    /// readiness will not spin on them (a level-triggered selector, like Python's, would
    /// report the listener again on every poll, at 100% CPU), but it will not remind us of
    /// them either once a connection closes and frees a descriptor. So the loop wakes itself
    /// after the backoff to try again. Meanwhile the listener is deregistered, so that new
    /// arrivals do not wake the loop for connections it cannot take.
    fn pause_accepting(&mut self) -> io::Result<()> {
        self.poll.registry().deregister(&mut self.listener)?;
        self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
        Ok(())
    }

    /// How long `poll` may sleep: until the nearest deadline, or without limit.
    fn next_timeout(&self) -> Option<Duration> {
        [
            self.accept_paused_until,
            self.timers.next(),
            self.shutdown.as_ref().map(|(deadline, _)| *deadline),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// Once the pause is over, listen again and accept what has been waiting (pausing again
    /// if descriptors are still short).
    fn resume_accepting_if_due(&mut self) -> io::Result<()> {
        match self.accept_paused_until {
            Some(until) if Instant::now() >= until && self.shutdown.is_none() => {
                self.accept_paused_until = None;
                self.poll.registry().register(
                    &mut self.listener,
                    self.listener_token,
                    Interest::READABLE,
                )?;
                self.accept_connections()
            }
            _ => Ok(()),
        }
    }

    // ANCHOR: time_out
    /// Tells the connections whose idle deadline has passed, and closes them.
    ///
    /// A connection's deadline moves every time it answers, and moving an entry in the sorted
    /// timers on every request would cost more than the request. So each connection has one
    /// entry, put in when it was accepted; when an entry's time comes, the connection is asked
    /// for its deadline now, and either times out or gets a new entry for it. The timers cost
    /// something once per idle period, not per request.
    fn time_out_idle_connections(&mut self) {
        let Some(idle) = self.idle else { return };
        let now = Instant::now();
        while let Some(token) = self.timers.pop_due(now) {
            let Some(Callback::Serve(connection)) = self.callbacks.get_mut(token.0) else {
                continue; // closed since; its key may even serve another connection now
            };
            match connection.idle_deadline(idle) {
                Some(deadline) if deadline <= now => {
                    tracing::trace!("conn {}: idle too long: error: idle timeout", token.0);
                    let status = connection.time_out(self.poll.registry(), self.max_n);
                    self.after(token, status);
                    // Ending takes a while (the error is sent, then input drained): keep an
                    // entry, so that a client that never closes is closed after another wait.
                    if status == Status::Open {
                        self.timers.add(now + idle, token);
                    }
                }
                // Active since: look again at its new deadline.
                Some(deadline) => self.timers.add(deadline, token),
                // Busy (answers on their way): look again a timeout later.
                None => self.timers.add(now + idle, token),
            }
        }
    }
    // ANCHOR_END: time_out

    // ANCHOR: shutdown
    /// Ctrl-C or SIGTERM: stop accepting, and let every connection end after answering what
    /// it has received.
    fn begin_shutdown(&mut self) -> io::Result<()> {
        if self.shutdown.is_some() {
            return Ok(());
        }
        // No new connections: the listener leaves the poll (and closes with the server; the
        // kernel refuses whoever connects after that).
        self.poll.registry().deregister(&mut self.listener)?;
        self.accept_paused_until = None;
        let drain = Drain::begin("step03", self.connections(), self.grace);
        self.shutdown = Some((Instant::now() + self.grace, drain));
        let keys: Vec<usize> = self.callbacks.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(Callback::Serve(connection)) = self.callbacks.get_mut(key) {
                let status = connection.stop(self.poll.registry(), self.max_n);
                self.after(Token(key), status);
            }
        }
        Ok(())
    }

    /// Whether a shutdown is over: every connection closed, or the grace period ended (then
    /// the ones left are cut: dropped with the server, which closes their sockets).
    fn finished(&self) -> bool {
        let Some((deadline, drain)) = &self.shutdown else {
            return false;
        };
        let open = self.connections();
        if open > 0 && Instant::now() < *deadline {
            return false;
        }
        drain.finish("step03", open);
        true
    }
    // ANCHOR_END: shutdown

    /// How many client connections are open.
    fn connections(&self) -> usize {
        self.callbacks
            .iter()
            .filter(|(_, callback)| matches!(callback, Callback::Serve(_)))
            .count()
    }
}
