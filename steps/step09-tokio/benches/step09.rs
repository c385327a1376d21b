//! `cargo bench -p step09`: round-trip latency and burst throughput, through the shared harness.
conformance::bench_main!(step09::Server);
