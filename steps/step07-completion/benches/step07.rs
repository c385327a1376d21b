//! `cargo bench -p step07`: round-trip latency and burst throughput, through the shared harness.
conformance::bench_main!(step07::Server);
