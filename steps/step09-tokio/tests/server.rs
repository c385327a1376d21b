//! step09 beyond the conformance suite, which runs it with one worker per core: the
//! same checks with a set number of workers, and how offloaded answers are ordered.

use std::net::SocketAddr;

use conformance::{Client, checks, expected};
use shared::fib::OFFLOAD_FROM_N;
use step09::{Options, Server};

/// Starts step09 on a free loopback port with `threads` worker threads (`None`: one per core).
///
/// The `..` keeps this compiling when an exercise adds an option (step09's `--deadline`).
#[allow(clippy::needless_update)]
fn start(threads: Option<usize>) -> SocketAddr {
    conformance::start_with::<Server>(Options {
        threads,
        ..Options::default()
    })
}

#[test]
fn the_protocol_checks_pass_with_the_executor_on_four_threads() {
    let addr = start(Some(4));
    checks::values_0_to_20(addr);
    checks::pipelined_1000(addr);
    checks::one_byte_at_a_time(addr);
    checks::bad_inputs_then_good(addr);
    checks::line_limit(addr);
    checks::half_close(addr);
    checks::vanishing_clients(addr);
    checks::concurrent_connections(addr, 200);
    // On a server of its own: the vanished clients' fib(25)s may still fill the pool's queue
    // here, and fib(44) would be refused `error: busy` (seen once in a full suite).
    checks::fast_while_slow(start(Some(4)));
}

#[test]
fn both_sides_of_the_threshold_answer_in_request_order() {
    let mut client = Client::connect(start(Some(1)));
    let ns: Vec<u32> = (OFFLOAD_FROM_N - 3..=OFFLOAD_FROM_N + 2)
        .rev()
        .chain([0, 25, 1])
        .collect();
    let requests: String = ns.iter().map(|n| format!("{n}\n")).collect();
    client.send(requests.as_bytes());
    for n in ns {
        assert_eq!(client.line(), expected(n), "fib({n})");
    }
}

#[test]
fn a_half_close_waits_for_offloaded_answers() {
    let mut client = Client::connect(start(Some(1)));
    client.send(b"30\n3\n31");
    client.half_close();
    assert_eq!(
        client.read_to_close(),
        format!("{}\n2\n", expected(30)),
        "every complete line answered, the partial one ignored"
    );
}
