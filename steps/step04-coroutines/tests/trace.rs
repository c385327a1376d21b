//! `--trace` and `--trace-file` on step04: one request's way through the reactor and the
//! executor.

use conformance::trace::{check_excerpt, on, session};

#[test]
fn a_traced_session_shows_the_reactor_waking_the_task_that_reads_and_writes() {
    let traced = session(env!("CARGO_BIN_EXE_step04"));
    traced.assert_in_order(&[
        on("main", "accept → conn"),
        on("main", "read 2 bytes"),
        on("main", "write 2 bytes"),
        // The task steps aside, finds nothing to read, arms the socket and sleeps; the
        // reactor wakes it when the next request comes.
        on("main", "woke itself (it yields)"),
        on("main", "waits to read conn"),
        on("main", "polled: Pending"),
        on("main", "epoll_wait → 1 event: conn"),
        on("main", "woken by the reactor"),
        // fib(40) on the loop's own thread: no other thread does anything for it.
        on("main", "read 3 bytes"),
        on("main", "write 10 bytes"),
        on("main", "end of input"),
        on("main", "polled: Ready, finished"),
    ]);
    assert!(
        traced
            .events
            .iter()
            .all(|event| !event.thread.starts_with("pool")),
        "step04 has no pool"
    );
    check_excerpt(
        "step04",
        &traced.excerpt("waits to read conn", "read 3 bytes", "write 10 bytes"),
    );
}
