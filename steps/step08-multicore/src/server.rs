//! The server: a listener and a ring per core, bound up front; a thread per ring to run it.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::sync::{Arc, mpsc};
use std::thread;

use io_uring::{IoUring, opcode};
use shared::cli::Config;
use socket2::{Domain, Socket, Type};
use step07::ring::{Ring, require_linux};

use crate::Options;
use crate::event_loop;
use crate::pool::Pool;
use crate::token::Token;

/// Submissions each ring holds at once (more are fine: step07's `Ring::push` makes room).
const SUBMISSION_QUEUE: u32 = 256;

/// The operations step08 submits, checked when the rings are set up.
const OPERATIONS: &[(u8, &str)] = &[
    (opcode::AcceptMulti::CODE, "IORING_OP_ACCEPT"),
    (opcode::RecvMulti::CODE, "IORING_OP_RECV"),
    (opcode::Send::CODE, "IORING_OP_SEND"),
    (opcode::Timeout::CODE, "IORING_OP_TIMEOUT"),
    (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
    (opcode::MsgRingData::CODE, "IORING_OP_MSG_RING"),
];

/// The step08 server: for each core, a listener and a ring, not yet running.
#[derive(Debug)]
pub struct Server {
    cores: Vec<(TcpListener, Ring)>,
    config: Config,
}

impl shared::Server for Server {
    type Options = Options;
    const ABOUT: &'static str = "Step 8: a multicore fib server: an io_uring per core, \
                                 nothing shared on the hot path, fib on a compute pool.";
    const COMPUTE_POOL: bool = true;
    // step08's own events, and its ring's, which are step07's (`io_uring_enter`).
    const TRACE_TARGETS: &'static [&'static str] = &["step08", "step07"];

    fn bind(config: &Config, options: &Options) -> io::Result<Self> {
        let threads = options
            .threads
            .or_else(|| thread::available_parallelism().ok().map(NonZeroUsize::get))
            .unwrap_or(1);
        // The rings defer their task work (`IORING_SETUP_DEFER_TASKRUN`, Linux 6.1), and
        // receive with multishot receives (6.0) into provided buffers (5.19).
        require_linux(6, 1, "step08's rings")?;
        // A listener per core, all on one port (`SO_REUSEPORT`), rather than one acceptor
        // handing connections to the other rings. Measured both ways (the handoff as a
        // message with the new descriptor, `IORING_OP_MSG_RING`, round robin), 2 cores,
        // clients on the same machine, median of 3 runs of 3 s, reuseport vs handoff:
        // 1 connection 42.6k vs 33.8k req/s, 2 connections 78k vs 43k, 64 connections 138k
        // vs 114k, pipelined (8 x 16) 1.57M vs 1.38M. The handoff costs a message per
        // connection and puts every accept on one ring; the kernel's hash costs nothing.
        //
        // SO_REUSEPORT lets any socket of the same user join the port: a second step08
        // started by mistake would silently take a share of the connections. A socket bound
        // without it first gets "address in use" where anything listens already (and, with
        // SO_REUSEADDR, only then: not for the last run's connections in TIME_WAIT).
        if config.addr.port() != 0 {
            let probe = Socket::new(Domain::for_address(config.addr), Type::STREAM, None)?;
            probe.set_reuse_address(true)?;
            probe.bind(&config.addr.into())?;
        }
        // ANCHOR: reuseport
        // The first listener resolves the address (port 0 becomes a free port); the others
        // join it on exactly that address.
        let first = listen(config.addr)?;
        let addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..threads {
            listeners.push(listen(addr)?);
        }
        // ANCHOR_END: reuseport
        let cores = listeners
            .into_iter()
            .map(|listener| Ok((listener, new_ring()?)))
            .collect::<io::Result<_>>()?;
        Ok(Server {
            cores,
            config: config.clone(),
        })
    }

    fn local_addr(&self) -> SocketAddr {
        self.cores[0]
            .0
            .local_addr()
            .expect("a bound listener always has a local address")
    }

    fn run(self) -> io::Result<()> {
        let threads = self.cores.len();
        // One pool thread per ring: the pool is for CPU work, the rings' threads for I/O.
        let pool = Pool::start(threads, self.config.queue_for(threads))?;
        let (finished, results) = mpsc::channel();
        // The descriptors the pool and the signal thread post to; each ring's event loop
        // owns its own, they hold weak references.
        let mut cores = Vec::new();
        let mut rings = Vec::new();
        for (listener, ring) in self.cores {
            let ring_fd = Arc::new(ring.io_uring().as_fd().try_clone_to_owned()?);
            rings.push((Arc::downgrade(&ring_fd), Token::Shutdown.into()));
            cores.push((listener, ring, ring_fd));
        }
        // Every ring hears about Ctrl-C, step07's way (a message posted to it), from before
        // any of them can accept a client. A ring whose thread has not enabled it yet cannot
        // take the message: it checks for a shutdown itself once enabled (`event_loop::serve`).
        step07::shutdown::notify_on_signal(rings)?;
        for (i, (listener, ring, ring_fd)) in cores.into_iter().enumerate() {
            let (pool, finished, config) = (pool.clone(), finished.clone(), self.config.clone());
            thread::Builder::new()
                .name(format!("ring-{i}"))
                .spawn(move || {
                    let served = event_loop::serve(i, ring, ring_fd, listener, &pool, &config);
                    let _ = finished.send(served);
                })?;
        }
        // Only the ring threads hold senders now: if they all end without a word (they
        // panicked), `recv` says so instead of waiting forever.
        drop(finished);
        // Every ring runs until a graceful shutdown; the first one to fail ends the server.
        for _ in 0..threads {
            results
                .recv()
                .map_err(|_| io::Error::other("a ring thread panicked"))??;
        }
        Ok(())
    }
}

/// A listener with `SO_REUSEPORT`: several sockets bound to one port, and the kernel spreads
/// incoming connections over them by a hash of the client's address and port. Also
/// `TCP_NODELAY`, which accepted sockets inherit: answers are batched by us, so Nagle's
/// algorithm would only delay them.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A ring for one core, created disabled: it is enabled by the thread that will own it.
///
/// The two flags below were measured against a ring without them (2 cores, median of 3
/// runs): 64 connections 116k vs 107k req/s, pipelined 1.53M vs 1.36M.
/// `IORING_SETUP_COOP_TASKRUN` instead of deferring gave the same as deferring.
fn new_ring() -> io::Result<Ring> {
    let mut builder = IoUring::builder();
    builder
        .setup_cqsize(SUBMISSION_QUEUE * 16)
        // Only the ring's thread submits (the pool and the signal thread post messages,
        // which is not submitting to this ring): the kernel can skip locking for it.
        .setup_single_issuer()
        // Run the kernel's completion work when the thread asks for completions, not by
        // interrupting it at random moments.
        .setup_defer_taskrun()
        .setup_r_disabled();
    Ring::with_builder(&builder, SUBMISSION_QUEUE, OPERATIONS)
}
