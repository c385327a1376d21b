//! `cargo bench -p step05`: round-trip latency and burst throughput, through the shared harness.
conformance::bench_main!(step05::Server);
