//! `cargo bench -p step06`: round-trip latency and burst throughput, through the shared harness.
conformance::bench_main!(step06::Server);
