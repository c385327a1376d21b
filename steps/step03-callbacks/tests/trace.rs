//! `--trace` and `--trace-file` on step03: readiness events and the callbacks they call.

use conformance::trace::{check_excerpt, on, session};

#[test]
fn a_traced_session_shows_each_readiness_event_and_its_reads_and_writes() {
    let traced = session(env!("CARGO_BIN_EXE_step03"));
    traced.assert_in_order(&[
        on("main", "epoll_wait → 1 event: listener"),
        on("main", "accept → conn"),
        on("main", "epoll_wait → 1 event: conn"),
        on("main", "read 2 bytes"),
        on("main", "write 2 bytes"),
        on("main", "epoll_wait → 1 event: conn"),
        on("main", "read 3 bytes"),
        on("main", "write 10 bytes"),
        on("main", "end of input"),
        on("main", "closed"),
    ]);
    check_excerpt(
        "step03",
        &traced.excerpt(
            "epoll_wait → 1 event: conn",
            "read 3 bytes",
            "write 10 bytes",
        ),
    );
}
