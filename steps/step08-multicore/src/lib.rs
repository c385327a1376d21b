//! # Step 8: completion-based I/O on every core
//!
//! A thread per core, each with its own io_uring, its own listener and its own connections,
//! sharing nothing while it serves; CPU-heavy fib goes to a pool of threads whose results come
//! back to the asking ring as completions.
//!
//! **What changed since step07:** step07's loop, once per core (`--threads`, default one per
//! core). Each core is a *ring*: a thread (`ring-0`, `ring-1`, ...) running an
//! [`event_loop`] on step07's `Ring` and sending through step07's `Outbox` (both reused,
//! unchanged), with:
//!
//! - **its own listener.** Every core listens on the same port with `SO_REUSEPORT`, and the
//!   kernel spreads incoming connections over the listeners. No acceptor thread, no queue of
//!   new connections, no lock: a connection lives and dies on the core that accepted it.
//! - **multishot operations.** One accept submission accepts every connection, one receive
//!   submission per connection receives until stopped: the kernel posts a completion each
//!   time, and the `F_MORE` flag says whether the operation goes on.
//! - **provided buffers** ([`buffers`]). A receive no longer names a buffer: the kernel picks
//!   one from a ring of buffers shared by the core's connections when bytes arrive, and we
//!   give it back as soon as its bytes are answered. An idle connection holds no buffer.
//! - **batching.** Every complete request in a buffer is answered into one output buffer,
//!   and one send carries them all.
//! - **a compute pool** ([`pool`]). fib(n) from [`OFFLOAD_FROM_N`](shared::fib::OFFLOAD_FROM_N) on runs on a
//!   pool thread, never on a ring. The value comes back to the ring that asked as a completion (a
//!   message posted with `IORING_OP_MSG_RING`), and the connection keeps its answers in
//!   request order ([`in_order`]): answers behind a fib on the pool wait for it.
//!
//! **Stopping work** is step07's (cancelling is a request to the kernel, and a buffer stays
//! the kernel's until the cancelled operation's completion has come), on multishot
//! operations, and with a pool:
//!
//! - *idle timeout* (`--idle-timeout`): a multishot receive cannot carry step07's link
//!   timeout, which would be a deadline for the whole multishot. Each connection has a timer
//!   of its own instead, one timeout operation armed for its deadline; a request only notes
//!   the time, and the timer, when it fires early, is armed again for what is left. When the
//!   connection has been idle (no complete line, no answer outstanding) for the whole
//!   timeout, it asks the kernel to cancel the receive, waits for the receive's last
//!   completion (the buffers of bytes that raced the cancellation go back as usual), answers
//!   `error: idle timeout`, shuts down its side, drains, closes.
//! - *graceful shutdown* (Ctrl-C, SIGTERM): step07's, on every ring: posted to each ring as a
//!   message; each stops accepting (accepting what already waits in its backlog), cancels its
//!   receives and waits for their completions, answers what came (fibs on the pool
//!   included), shuts down each connection's side and drains until the client ends its input
//!   or `--grace` is over, and the process exits 0.
//! - *load shedding* (`--queue`, 4 jobs per pool thread beyond the running ones by default):
//!   a request that finds the pool's queue full is answered `error: busy` at once, in its
//!   place in the answer order, and the connection goes on. A connection already waiting for
//!   the pool is slowed instead (it takes no more input until one of its fibs is back), and a
//!   connection that closes gives its queued jobs' places back at once.
//!
//! Every choice above was measured against its alternative; the numbers are in the comments
//! where each is made (`SO_REUSEPORT` against one acceptor handing connections to the other
//! rings, multishot receives against single ones, provided buffers against a buffer per
//! connection, the ring's setup flags).
//!
//! **Run it** (Linux 6.1 or later; three terminals):
//!
//! ```text
//! cargo run -p step08
//! cargo run -p clients --bin fast -- --conns 64
//! cargo run -p clients --bin fast -- --conns 8 --depth 16
//! cargo run -p clients --bin slow
//! ```
//!
//! **What to observe:** `top -H` shows the threads: `ring-0`, `ring-1`, ... share the fast
//! clients, the `pool-N` threads work only while a slow client is served, and a slow client
//! beside a fast one barely slows it (step05's lesson, kept). Start the server with
//! `--queue 1` and several slow clients: the ones that find the pool full are answered
//! `error: busy`. Ctrl-C the server while clients run: each ring says it drains, every
//! client gets its answers and then the end of its stream, each ring says how many
//! connections closed, and the process exits 0. Compare the results table with
//! step09, tokio: the hand-rolled completion loop against the production readiness runtime.
//!
//! Then look at what sharing nothing costs when the clients run on the same machine. On the
//! 2-core machine this was written on (medians of 4 runs of 3 s; 64 fast connections,
//! then 8 pipelining 16 each):
//!
//! ```text
//! step08                     117k req/s   1.59M req/s
//! step08 --threads 1         146k req/s   2.35M req/s
//! step09 (tokio, 2 workers)  114k req/s   1.81M req/s
//! ```
//!
//! (Runs differ by a fifth on a shared machine; compare the committed results table, where
//! step08 and step09 come out within that of each other.)
//!
//! One ring beats two here. The load generator needs a core too, so two ring threads and
//! the client take turns on two cores, and each completion that wakes a ring thread
//! interrupts whoever is running: in 3 s of pipelining the ring threads went to sleep
//! 110,000 times and the client was preempted 49,000 times, against 6,000 and 200 with one
//! ring (tokio's two workers, which look for work to steal before they sleep: 34,000 and
//! 18,000). Each ring serves only its own connections and sleeps as soon as they are quiet:
//! thread-per-core assumes the cores are the server's. (Try also
//! `chrt --batch 0 target/release/step08`: threads that do not preempt anyone when they
//! wake take bigger batches; here 144k and 2.25M.)
//!
//! **Watching the loop:** `--trace` prints step07's lines (submissions, enters, completions)
//! from every ring's thread, named in the second column, with what is new here: multishot
//! operations that stay armed and the provided buffer each receive filled (`cqe recv conn 0:
//! 3 bytes in buffer 1, still armed`), the batch wait (`submit 1, wait for 2 or 5 ms → 1
//! completion`), the connections' timers, and the pool. One fib(40) crosses threads and comes
//! back: `conn 0: fib(40) to the pool` on `ring-0`; `fib(40) done on pool-0 after 295.0 ms`
//! and `msg_ring to ring-0: fib(40) for conn 0` on the pool thread; then on `ring-0` again
//! `cqe msg_ring from the pool: fib(40) = 102334155 for conn 0`, the answers released in
//! order, and their send. `--trace-file FILE.json` records it as a timeline (Perfetto), a
//! track per ring and per pool thread: the request's completions on its ring's track, its
//! `fib` span on a pool thread's, and the ring asleep in an `enter` span meanwhile, free for
//! its other connections.
//!
//! **The limit:** none; this is the finale. What a production server would add: registered
//! (direct) file descriptors, so the kernel skips looking sockets up on every operation;
//! zero-copy sends for large answers; pinning each ring's thread to its core; a limit on
//! connections; and a better spread than a hash (two busy clients can land on one core while
//! another idles). Runtimes built this way: `monoio`, `glommio`,
//! `tokio-uring`. step09 shows what a production readiness runtime does with the same server.
//!
//! Where io_uring is refused, `bind` says so in one line and points at step06, as in step07;
//! on other systems the step builds and says that it needs Linux.
//!
//! ## Modules
//!
//! - `server` (the [`Server`]): a listener and a ring per core, a thread to run each;
//! - [`event_loop`]: one ring's loop (step07's, plus multishot accept, pool results and
//!   shutdown as completions);
//! - [`token`]: the [`Token`](token::Token) of each operation;
//! - [`connection`]: a connection with multishot receives, backpressure by cancelling them;
//! - [`in_order`]: answers kept in request order around fibs on the pool;
//! - [`buffers`]: the ring of provided buffers;
//! - [`pool`]: the compute pool (bounded: `error: busy` when full) and its messages back to
//!   the rings, by step07's `Messenger`; Ctrl-C and SIGTERM are posted to every ring by
//!   step07's `shutdown` too.

#[cfg(target_os = "linux")]
pub mod buffers;
#[cfg(target_os = "linux")]
pub mod connection;
#[cfg(target_os = "linux")]
pub mod event_loop;
#[cfg(target_os = "linux")]
pub mod in_order;
#[cfg(target_os = "linux")]
pub mod pool;
#[cfg(target_os = "linux")]
mod server;
#[cfg(target_os = "linux")]
pub mod token;

#[cfg(target_os = "linux")]
pub use server::Server;

#[cfg(not(target_os = "linux"))]
mod elsewhere;
#[cfg(not(target_os = "linux"))]
pub use elsewhere::Server;

/// Command-line options of step08 beyond `--addr` and `--max-n`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Options {
    /// Cores to serve on: a thread, a ring and a listener each [default: one per core]
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub threads: Option<usize>,
}

pub use step07::io_uring_unavailable;
