//! `cargo bench -p step03`: round-trip latency and burst throughput, through the shared harness.
conformance::bench_main!(step03::Server);
