//! `cargo bench -p step08`: round-trip latency and burst throughput, through the shared harness.
conformance::bench_main!(step08::Server);
