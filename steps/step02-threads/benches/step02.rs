//! `cargo bench -p step02`: round-trip latency and burst throughput, through the shared harness.
conformance::bench_main!(step02::Server);
