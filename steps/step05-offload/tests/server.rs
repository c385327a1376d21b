//! step05 over real TCP: offloaded answers come back, in order, without stalling anybody else.
//!
//! Only what the conformance suite (`tests/`, `suite!(step05: ...)`) does not check, around
//! requests from `OFFLOAD_FROM_N` up, which go to the pool. The protocol's framing, a fast
//! request answered while fib(42) computes, answers in order across the pool (bad lines and a
//! half-close included), one greedy connection not keeping the loop, 2,000 and 10,000
//! connections and running out of descriptors are checked there.

use std::io::Read;
use std::net::SocketAddr;

use conformance::{Client, expected};
use shared::fib::OFFLOAD_FROM_N;

/// Starts step05 on a free loopback port, serving on its own thread until the test ends.
fn start() -> SocketAddr {
    conformance::start::<step05::Server>()
}

#[test]
fn inline_and_offloaded_answers_of_a_pipeline_come_back_in_order() {
    let addr = start();
    let mut client = Client::connect(addr);
    let mut requests = String::new();
    let mut want = String::new();
    for i in 0..300u32 {
        // Every third request is offloaded, the others are computed inline.
        let n = if i % 3 == 0 {
            OFFLOAD_FROM_N + i % 5
        } else {
            i % 15
        };
        requests.push_str(&format!("{n}\n"));
        want.push_str(&format!("{}\n", expected(n)));
    }
    client.send(requests.as_bytes());
    let mut got = vec![0; want.len()];
    client.stream().read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), want);
}

#[test]
fn a_client_that_leaves_while_its_fib_computes_ends_only_its_task() {
    // Room in the queue for every job: this is about wakes of tasks that are gone, not about
    // shedding load.
    let addr = conformance::start_args::<step05::Server>(&["--queue", "1000"]);
    for _ in 0..20 {
        // The worker finishes and wakes a task that is gone: the wake is ignored.
        Client::connect(addr).send(b"27\n");
    }
    assert_eq!(Client::connect(addr).ask("26"), expected(26));
}

#[test]
fn many_connections_offloading_at_once_are_each_answered() {
    // Room in the queue for every job (the default would answer most of them `error: busy`).
    let addr = conformance::start_args::<step05::Server>(&["--queue", "1000"]);
    let mut clients: Vec<_> = (0..200).map(|_| Client::connect(addr)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(format!("{}\n", OFFLOAD_FROM_N + i as u32 % 6).as_bytes());
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(
            client.line(),
            expected(OFFLOAD_FROM_N + i as u32 % 6),
            "connection {i}"
        );
    }
}
