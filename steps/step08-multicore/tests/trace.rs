#![cfg(target_os = "linux")]
//! `--trace` and `--trace-file` on step08: one request received on a ring, computed on the
//! pool, and answered by the same ring once the pool's message has come back.

use conformance::trace::{TraceEvent, check_excerpt, on, session};

#[test]
fn a_traced_session_shows_fib_crossing_from_a_ring_to_the_pool_and_back() {
    let traced = session(env!("CARGO_BIN_EXE_step08"));
    traced.assert_in_order(&[
        on("ring-", "cqe accept → conn 0, still armed"),
        on("ring-", "sqe recv conn 0, multishot"),
        // fib(1), inline on the ring; the send's completion comes with the batch wait.
        on("ring-", "cqe recv conn 0: 2 bytes in buffer"),
        on("ring-", "sqe send conn 0: 2 bytes"),
        on("ring-", "wait for 2 or 5 ms"),
        on("ring-", "cqe send conn 0: 2 bytes"),
        // fib(40): to the pool, computed there, and back to the ring as a completion.
        on("ring-", "cqe recv conn 0: 3 bytes in buffer"),
        on("ring-", "conn 0: fib(40) to the pool"),
        on("pool-", "fib"),
        on("pool-", "fib(40) done on pool-"),
        on("pool-", "msg_ring to ring-"),
        on("ring-", "from the pool: fib(40) = 102334155 for conn 0"),
        on("ring-", "conn 0: 10 bytes of answers released in order"),
        on("ring-", "sqe send conn 0: 10 bytes"),
        on("ring-", "cqe send conn 0: 10 bytes"),
        on("ring-", "cqe recv conn 0: end of input, the recv ends"),
        on("ring-", "conn 0: closed"),
        // SIGTERM: a message to every ring.
        on("ctrl-c", "msg_ring to "),
        on("ring-", "cqe msg_ring from the signal thread"),
    ]);

    let first = |text: &str| -> &TraceEvent {
        traced
            .events
            .iter()
            .find(|event| event.name.contains(text))
            .unwrap_or_else(|| panic!("no event {text:?}"))
    };
    // One ring receives the request, hears back from the pool, and sends the answer.
    let ring = &first("cqe recv conn 0: 3 bytes").thread;
    for text in [
        "fib(40) to",
        "cqe msg_ring from the pool",
        "sqe send conn 0: 10",
    ] {
        assert_eq!(&first(text).thread, ring, "{text:?}");
    }
    // The pool posts to that ring, and nothing of the pool runs on it.
    let posted = &first("msg_ring to ring-").name;
    assert!(posted.contains(&format!("to {ring}:")), "{posted:?}");
    let pool = &first("fib(40) done on").thread;
    assert!(pool.starts_with("pool-"), "{pool}");
    assert!(
        traced
            .events
            .iter()
            .any(|event| &event.thread == pool && event.phase == "B" && event.name == "fib"),
        "a fib span on {pool}"
    );
    assert!(
        traced
            .events
            .iter()
            .all(|event| !(event.thread.starts_with("ring-") && event.name == "fib")),
        "no fib span on a ring"
    );

    check_excerpt(
        "step08",
        &traced.excerpt("io_uring_enter", "3 bytes", "cqe send conn 0: 10 bytes"),
    );
}
