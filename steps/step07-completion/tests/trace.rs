#![cfg(target_os = "linux")]
//! `--trace` and `--trace-file` on step07: one request's submissions and completions on the
//! ring, all on the loop's one thread.

use conformance::trace::{check_excerpt, on, session};

#[test]
fn a_traced_session_shows_each_submission_enter_and_completion() {
    let traced = session(env!("CARGO_BIN_EXE_step07"));
    traced.assert_in_order(&[
        on("main", "sqe accept"),
        on("main", "enter"),
        on("main", "cqe accept → conn 0"),
        on("main", "sqe recv conn 0"),
        // fib(1): its answer and the next receive go to the kernel linked, in one enter, and
        // only the receive completes.
        on("main", "cqe recv conn 0: 2 bytes"),
        on("main", "sqe send conn 0: 2 bytes, linked to the recv"),
        on("main", "sqe recv conn 0, after the send"),
        on("main", "enter: submit 2, wait for 1 → 1 completion"),
        // fib(40), computed on this same thread, inside the completion's dispatch.
        on("main", "3 bytes (so the send linked before it is done)"),
        on("main", "sqe send conn 0: 10 bytes, linked to the recv"),
        on("main", "cqe recv conn 0: end of input"),
        on("main", "conn 0: closed"),
        // SIGTERM: a message from the signal thread, then the accept cancelled.
        on("ctrl-c", "msg_ring to 1 ring: shut down"),
        on("main", "cqe msg_ring from the signal thread"),
        on("main", "sqe cancel accept"),
        on("main", "cqe accept: -ECANCELED"),
    ]);
    assert!(
        traced
            .events
            .iter()
            .all(|event| event.thread == "main" || event.thread == "ctrl-c"),
        "step07 has one thread (and the signal's)"
    );
    let fib_40 = traced
        .events
        .iter()
        .skip_while(|event| !event.name.contains("3 bytes"))
        .take_while(|event| !event.name.contains("10 bytes"));
    assert!(
        fib_40.clone().all(|event| event.name != "enter"),
        "nothing enters the kernel while fib(40) computes"
    );
    check_excerpt(
        "step07",
        &traced.excerpt("io_uring_enter", "3 bytes", "io_uring_enter"),
    );
}
