//! The one benchmark harness every step's `cargo bench -p stepNN` runs.
//!
//! Each step's `benches/stepNN.rs` is one line, `conformance::bench_main!(stepNN::Server);`
//! (or with `connections = 1` for a step that serves one connection at a time). The server is
//! started once, in-process on a free port, and measured two ways:
//!
//! - `round_trip`: the latency of one fast request (`1\n`) on one connection, one in flight;
//! - `burst`: the throughput of [`BURST`] pipelined requests written in one write on each of
//!   several connections, until every answer is back (`iter_custom`: the clock covers the
//!   writes and all the reads, `Throughput::Elements` turns it into requests per second).
//!
//! These measure the server's latency and throughput from a single client thread. The
//! results table (`cargo run --release -p clients --bin table`) measures the loads of the
//! workshop instead: many connections, slow requests, memory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use criterion::{Criterion, Throughput};

pub use criterion;

/// Requests written in one write per connection in the `burst` benchmark.
pub const BURST: usize = 64;

/// The default number of connections of the `burst` benchmark.
pub const CONNECTIONS: usize = 8;

/// Benchmarks the server at `addr` under the group name `step`.
pub fn bench_server(criterion: &mut Criterion, step: &str, addr: SocketAddr, connections: usize) {
    let mut group = criterion.benchmark_group(step);

    // Closed before the burst opens its connections: step01 serves one at a time.
    let mut one = Connection::open(addr);
    group.throughput(Throughput::Elements(1));
    group.bench_function("round_trip", |b| b.iter(|| one.exchange(b"1\n", 1)));
    drop(one);

    let mut many: Vec<Connection> = (0..connections).map(|_| Connection::open(addr)).collect();
    let burst = b"1\n".repeat(BURST);
    group.throughput(Throughput::Elements((BURST * connections) as u64));
    group.bench_function(format!("burst_{connections}x{BURST}"), |b| {
        b.iter_custom(|iterations| {
            let started = Instant::now();
            for _ in 0..iterations {
                // Write every connection's burst first, then collect the answers, so the
                // server sees all connections busy at once.
                for connection in &mut many {
                    connection.send(&burst);
                }
                for connection in &mut many {
                    connection.receive(BURST);
                }
            }
            started.elapsed()
        })
    });
    group.finish();
}

/// A client connection that counts answer lines without allocating.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream
            .set_nodelay(true)
            .expect("setting TCP_NODELAY on a fresh socket");
        stream
            .set_read_timeout(Some(crate::PATIENCE))
            .expect("setting a timeout on a fresh socket");
        Connection {
            stream,
            buffer: vec![0; 64 * 1024],
        }
    }

    fn send(&mut self, requests: &[u8]) {
        self.stream.write_all(requests).expect("writing requests");
    }

    /// Reads until `answers` lines have arrived. Every answer to `1\n` is `1\n`, so counting
    /// newlines is enough; a wrong answer would show up as a wrong count and a hang.
    fn receive(&mut self, answers: usize) {
        let mut seen = 0;
        while seen < answers {
            let n = match self.stream.read(&mut self.buffer) {
                Ok(0) => panic!("the server closed the connection"),
                Ok(n) => n,
                Err(e) => panic!("no answer from the server: {e}"),
            };
            seen += self.buffer[..n].iter().filter(|&&b| b == b'\n').count();
        }
        assert_eq!(seen, answers, "more answers than requests");
    }

    fn exchange(&mut self, requests: &[u8], answers: usize) {
        self.send(requests);
        self.receive(answers);
    }
}

/// The whole `benches/stepNN.rs` of a step: `conformance::bench_main!(step05::Server);`, or
/// `conformance::bench_main!(step01::Server, connections = 1);` for a step that serves one
/// connection at a time (more would wait on each other forever).
#[macro_export]
macro_rules! bench_main {
    ($server:path) => {
        $crate::bench_main!($server, connections = $crate::bench::CONNECTIONS);
    };
    ($server:path, connections = $connections:expr) => {
        fn bench(criterion: &mut $crate::bench::criterion::Criterion) {
            let addr = $crate::start::<$server>();
            // The group is named after the package: `cargo bench -p step05` shows `step05/...`.
            $crate::bench::bench_server(criterion, env!("CARGO_PKG_NAME"), addr, $connections);
        }
        $crate::bench::criterion::criterion_group!(benches, bench);
        $crate::bench::criterion::criterion_main!(benches);
    };
}
