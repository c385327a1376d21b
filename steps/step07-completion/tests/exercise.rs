#![cfg(target_os = "linux")]
//! The coding exercise of step07 (slides/step07-completion.md, "Exercise: change the code"),
//! ignored in the normal suite: `cargo test -p step07 --test exercise -- --ignored`.

use std::time::Duration;

use conformance::exercise::{missing, require, start_with_args, try_line};
use conformance::{Client, PATIENCE, expected};
use step07::Server;

/// How long the third connection's request is given to be answered (wrongly) while two
/// connections are open, after round trips on both of them. A correct server never answers
/// it, whatever the wait; an unlimited one answers it in microseconds.
const NOT_YET: Duration = Duration::from_secs(1);

/// Reads one answer line within `patience`, or fails saying `what` is missing.
fn answer_within(client: &mut Client, patience: Duration, what: &str) -> String {
    try_line(client, patience).unwrap_or_else(|came| missing(format_args!("{what} (got {came})")))
}

/// `--max-conns N`: at N open connections the loop stops accepting (it does not submit the
/// next accept), and submits it again when one of them closes. The connections beyond the
/// limit wait in the listen backlog, handshake done, their requests unread.
#[test]
#[ignore = "exercise: see slides/step07-completion.md, Exercise: change the code"]
fn max_conns() {
    let addr = start_with_args::<Server>(
        &["--max-conns", "2"],
        "`--max-conns` is not an option of step07 yet: add an `Options` with it in src/lib.rs \
         (as step08's has `--threads`; step07 needs `clap.workspace = true` in its \
         Cargo.toml for that) and make it the `Server`'s options in src/server.rs",
    );

    let mut first = Client::connect(addr);
    first.send(b"1\n");
    answer_within(
        &mut first,
        PATIENCE,
        "the first connection must be served with --max-conns 2",
    );
    let mut second = Client::connect(addr);
    second.send(b"2\n");
    answer_within(
        &mut second,
        PATIENCE,
        "the second connection must be served with --max-conns 2: the limit is two open \
         connections, not one",
    );

    // The third: the kernel completes its handshake in the backlog, and its request waits.
    let mut third = Client::connect(addr);
    third.send(b"10\n");
    // Round trips on the two open connections: the loop has gone round many times since.
    for n in 3..13 {
        for client in [&mut first, &mut second] {
            client.send(format!("{n}\n").as_bytes());
            let answer = answer_within(
                client,
                PATIENCE,
                "the two open connections must go on being served at the limit",
            );
            assert_eq!(answer, expected(n), "fib({n})");
        }
    }
    third
        .stream()
        .set_read_timeout(Some(NOT_YET))
        .expect("setting a timeout");
    let mut early = [0u8; 1];
    match third.stream().peek(&mut early) {
        Ok(1..) => missing(
            "the third connection was answered while two were open: at the limit, the loop \
             must not submit the next accept (`on_accepted`, `accept` in src/event_loop.rs)",
        ),
        Ok(_) => missing(
            "the third connection was closed while two were open: leave it waiting in the \
             listen backlog (do not accept it), so that it is served once a place is free",
        ),
        Err(_) => {} // nothing yet, as it should be
    }

    // One of the two closes: the loop accepts again, and the third is served.
    first.half_close();
    assert_eq!(first.read_to_close(), "", "nothing after the answers");
    let answer = answer_within(
        &mut third,
        PATIENCE / 3,
        "the third connection was not answered after one of the two open ones closed: when a \
         connection closes below the limit, submit the accept again",
    );
    require(
        answer == expected(10),
        format_args!("the third connection's `10` was answered {answer:?}, not `55`"),
    );
    // And the second is still served beside it.
    second.send(b"20\n");
    let answer = answer_within(
        &mut second,
        PATIENCE,
        "the second connection must still be served after the third was accepted",
    );
    assert_eq!(answer, expected(20), "fib(20)");
}
