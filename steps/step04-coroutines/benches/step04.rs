//! `cargo bench -p step04`: round-trip latency and burst throughput, through the shared harness.
conformance::bench_main!(step04::Server);
