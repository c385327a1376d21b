//! # Step 7: completion-based I/O, one thread, one io_uring
//!
//! One thread hands the kernel whole operations (accept, receive into this buffer, send these
//! bytes) through a ring of shared memory, and handles their completions as they come back,
//! each dispatched by the `user_data` it was submitted with to its connection in a slab.
//!
//! **What changed since step06:** steps 04 to 06 hid a readiness loop under `async fn`. This
//! step goes back to an explicit loop, step03's shape, to show the other model of I/O plainly.
//! Side by side with step03:
//!
//! ```text
//! readiness (step03, epoll via mio)          completion (step07, io_uring)
//! ---------------------------------          ----------------------------------------
//! register the socket, once                  submit recv(socket, buffer, len)
//! wait: "socket 7 may be read now"           wait: "recv on 7 put 12 bytes in your
//! read(7, buffer) -> 12 bytes                       buffer" (the read has happened)
//! read(7, buffer) -> WouldBlock              submit the next recv
//! write(7, answers) -> 9 bytes of 20         submit send(socket, answers, len)
//! wait for writable, write the rest          wait: "sent 9 of 20", submit the other 11
//! ```
//!
//! Readiness says *you may act now*, and every action is a system call of its own.
//! Completion says *it is done*: the kernel performed the operation, into or out of our
//! memory, while we were doing something else. Every operation queued during one turn of the
//! loop reaches the kernel in the same system call that waits for the next completions, so a
//! busy server makes one system call per batch instead of one per read and write.
//!
//! The price is ownership. A buffer handed to the kernel with a receive belongs to the kernel
//! until that receive completes: we must not read it, move it or free it meanwhile, even if
//! the client is long gone. [`connection`] is about exactly that, and it is why this step has
//! `unsafe`: each submission promises (in a `// SAFETY:` comment) that its buffer and socket
//! outlive the operation. A connection that closes with operations in flight asks the kernel
//! to cancel them and stays, buffers and socket and all, until their completions arrive.
//!
//! **Stopping work**, in this style. On readiness (steps 03 to 06) stopping is ours alone:
//! stop reading a socket, drop a future, close, and nothing else holds our memory. Here the
//! kernel does: cancelling is a request to the kernel, answered by a completion of its own,
//! and a buffer stays the kernel's until the cancelled operation's completion has come. So:
//!
//! - *idle timeout* (`--idle-timeout`, 60 s by default, 0 for none): each receive carries its
//!   deadline, a link timeout in the same chain, the kernel's own timer. When it fires, the
//!   kernel cancels the receive, and the receive's completion (`-ECANCELED`) says so; only
//!   then is the input buffer ours again. The connection answers `error: idle timeout`, shuts
//!   down its side, drains what the client still sends for a moment, and closes. When the
//!   request comes in time, the deadline costs nothing: no completion, no system call.
//! - *graceful shutdown* (Ctrl-C, SIGTERM): the signal thread posts a message to the ring
//!   (`IORING_OP_MSG_RING`), a completion like any other. The loop stops accepting, asks the
//!   kernel to cancel every receive in flight, and for each connection waits for that
//!   completion, answers what it brought, shuts down its side and drains the client's input
//!   until it ends, or until `--grace` (10 s) is over; then it exits 0. A second signal exits
//!   at once.
//! - *load shedding* (`--queue`): there is no compute pool to be full, so no `error: busy`:
//!   fib runs inline, and a slow request simply blocks the ring (see the limit below).
//!
//! **Run it** (Linux 6.0 or later; two terminals, then more):
//!
//! ```text
//! cargo run -p step07
//! cargo run -p clients --bin fast -- --conns 64
//! cargo run -p clients --bin fast -- --conns 8 --depth 16
//! cargo run -p clients --bin slow
//! ```
//!
//! **What to observe:** one thread serves 64 clients, like step03. Count its system calls
//! (`strace -c -f -p $(pgrep step07)` for a few seconds while the fast client runs): where
//! step03 made an `epoll_wait`, a `read` and a `write` per request, this step makes about one
//! `io_uring_enter` per turn of the loop, however many clients that turn served: the results
//! table counts 1.00 system call per request at one fast connection (the answer's send is
//! linked to the next receive, so one enter submits both and waits), 0.05 at 64 in the
//! committed run (0.04–0.36 between runs: a loop that keeps up with its clients enters for a
//! few requests, one that falls behind for dozens; the README's costs section). Pipelined
//! clients (`--depth 16`) get all their answers from one send. Then start the slow client:
//! the fast clients stall, exactly as in step03. fib runs on the ring's only thread, inline,
//! and while it computes fib(40) no completion of anyone else is looked at. Completions made
//! the I/O cheaper, not the CPU work. Finally Ctrl-C the server while a fast client runs: it
//! says it drains, the client gets every answer and then the end of its stream (not a
//! reset), and the server prints how many connections closed and exits.
//!
//! **Watching the loop:** `cargo run -p step07 -- --trace` prints each event of the ring on
//! stderr as it happens; with `talk` (type `1`, then `40`) a request is a handful of lines. A
//! submission when it is queued: `sqe recv conn 0`, `sqe send conn 0: 10 bytes, linked to the
//! recv`, `sqe link timeout conn 0: 60.0 s`. Each `io_uring_enter` when it returns, with what
//! it submitted, what it waited for and what came back: `submit 3, wait for 1 → 1
//! completion`, one per request. Each completion before it is handled: `cqe recv conn 0: 3
//! bytes (so the send linked before it is done)`, `cqe send conn 0: 12 of 20 bytes,
//! resubmitting from 12`, and `-ECANCELED` where a link timeout or a cancellation stopped an
//! operation. Between the `cqe recv` of a `40` and its `sqe send` the ring is silent for a
//! third of a second: fib, inline. `--trace-file FILE.json` writes the same as a timeline
//! (Perfetto): on `main`'s track, `enter` spans (the thread asleep in the kernel) and
//! `dispatch` spans (one completion handled), fib(40)'s as long as the computation.
//!
//! **The limit:** one core. The ring is fed by one thread, so a server on an 8-core machine
//! uses one of them for I/O and for fib alike, and one slow request blocks everyone. step08
//! runs a ring per core with nothing shared between them, and sends fib to a pool of threads
//! whose results come back to the ring as completions too.
//!
//! Where io_uring is refused (a container's seccomp profile, `kernel.io_uring_disabled`),
//! `bind` says so in one line and points at step06, the same server on readiness. On other
//! systems this step builds, and says that it needs Linux.
//!
//! ## Modules
//!
//! - `server` (the [`Server`]): the listener and the ring, bound up front;
//! - [`event_loop`]: the ring's loop: a `match` on what each completion is for, accepting
//!   (and pausing when out of file descriptors), shutting down;
//! - [`token`]: the [`Token`](token::Token) packed into each operation's `user_data`;
//! - [`connection`]: one client connection: who owns which buffer when, backpressure,
//!   half-close, the idle deadline, closing with operations in flight;
//! - [`outbox`]: answers on their way, and partial sends;
//! - [`kernel_buffer`]: memory the kernel writes into, held by no Rust reference meanwhile;
//! - [`messenger`] and [`shutdown`]: messages to a ring from other threads (`MSG_RING`), and
//!   Ctrl-C posted to the ring as one;
//! - [`ring`]: the ring itself: pushing submissions (never dropping one when the queue is
//!   full), waiting for completions, and the clear error where io_uring is refused;
//! - [`trace`]: how `--trace` names a completion's result (`-ECANCELED`, what a cancellation
//!   found).

#[cfg(target_os = "linux")]
pub mod connection;
#[cfg(target_os = "linux")]
pub mod event_loop;
#[cfg(target_os = "linux")]
pub mod kernel_buffer;
#[cfg(target_os = "linux")]
pub mod messenger;
#[cfg(target_os = "linux")]
pub mod outbox;
#[cfg(target_os = "linux")]
pub mod ring;
#[cfg(target_os = "linux")]
mod server;
#[cfg(target_os = "linux")]
pub mod shutdown;
#[cfg(target_os = "linux")]
pub mod token;
#[cfg(target_os = "linux")]
pub mod trace;

#[cfg(target_os = "linux")]
pub use server::Server;

#[cfg(not(target_os = "linux"))]
mod elsewhere;
#[cfg(not(target_os = "linux"))]
pub use elsewhere::Server;

/// Whether `error` (from [`Server`]'s `bind`) means that io_uring is not available on this
/// system, as opposed to, say, an address already in use. Tests use it to fail loudly.
pub fn io_uring_unavailable(error: &std::io::Error) -> bool {
    #[cfg(target_os = "linux")]
    {
        ring::IoUringUnavailable::is(error)
    }
    #[cfg(not(target_os = "linux"))]
    {
        error.kind() == std::io::ErrorKind::Unsupported
    }
}
