//! `cargo bench -p step01`: round-trip latency and burst throughput, through the shared harness.
conformance::bench_main!(step01::Server, connections = 1);
