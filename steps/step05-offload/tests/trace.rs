//! `--trace` and `--trace-file` on step05: one request's way through the loop and the pool.

use conformance::trace::{check_excerpt, on, session};

#[test]
fn a_traced_session_shows_the_offload_and_the_wake_from_the_pool() {
    let traced = session(env!("CARGO_BIN_EXE_step05"));
    traced.assert_in_order(&[
        // fib(1), inline.
        on("main", "read 2 bytes"),
        on("main", "write 2 bytes"),
        // fib(40): read, to the pool, computed on a pool thread, the task woken from there,
        // the answer written by the loop.
        on("main", "read 3 bytes"),
        on("main", "fib(40) to the pool"),
        on("pool-", "fib"),
        on("pool-", "fib(40) done on pool-"),
        on("pool-", "woken by pool-"),
        on("main", "write 10 bytes"),
        on("main", "end of input"),
    ]);
    check_excerpt(
        "step05",
        &traced.excerpt("read 3 bytes", "read 3 bytes", "write 10 bytes"),
    );
}
