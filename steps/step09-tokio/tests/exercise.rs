//! The coding exercise of step09 (slides/step09-tokio.md, "Exercise: change the code"),
//! ignored in the normal suite: `cargo test -p step09 --test exercise -- --ignored`.

use conformance::exercise::{require, start_with_args, try_ask};
use conformance::{Client, PATIENCE, expected};
use step09::Server;

/// `--deadline SECS`: a request whose answer is not ready within SECS is answered
/// `error: deadline exceeded`, and the connection goes on serving.
#[test]
#[ignore = "exercise: see slides/step09-tokio.md, Exercise: change the code"]
fn deadline() {
    let addr = start_with_args::<Server>(
        &["--deadline", "0.1"],
        "`--deadline` is not an option of step09 yet: add it to `Options` in src/lib.rs",
    );
    let mut client = Client::connect(addr);

    // Small requests are answered inline, long before any deadline.
    let answer = client.ask("10");
    require(
        answer == expected(10),
        format_args!("with --deadline 0.1, `10` must still be answered `55`, not {answer:?}"),
    );

    // fib(45) takes seconds on any machine (fib(40) about 0.3 s): far past 0.1 s.
    let answer = client.ask("45");
    require(
        answer == "error: deadline exceeded",
        format_args!(
            "`45` with --deadline 0.1 was answered {answer:?}, not `error: deadline exceeded`: \
             wrap the wait for the pool's answer in `answer` in `tokio::time::timeout`"
        ),
    );

    // The connection goes on: the next request gets its own answer, not fib(45)'s.
    let next = try_ask(&mut client, "10", PATIENCE);
    require(
        next.is_ok(),
        "after `error: deadline exceeded` the connection was closed (or answered nothing): \
         the deadline answer must let the connection go on serving",
    );
    require(
        next == Ok(expected(10)),
        format_args!(
            "after `error: deadline exceeded`, `10` was answered {next:?} instead of `55`: \
             write the deadline answer in the place of the fib's answer, nothing else"
        ),
    );
}
