//! The coding exercise of step03 (slides/step03-callbacks.md, "Exercise: change the code"):
//! `--max-conns N`. Its reference solution is slides/solutions/step03-max-conns.patch.

use std::io::{self, Read};
use std::thread;
use std::time::{Duration, Instant};

use conformance::Client;
use conformance::exercise::{missing, require, start_with_args, try_ask};

/// What a connection over the limit must be told.
const TOO_MANY: &str = "error: too many connections";

/// How long a refused connection may take to get its error and its close: a safety net, as
/// the server answers it in microseconds.
const REFUSAL: Duration = Duration::from_secs(10);

/// How long the test keeps trying to be served once a connection has closed: the server
/// may see the new connection before the end of the closed one, and refuse it once more.
const RETRY: Duration = Duration::from_secs(20);

/// Whether `client` is served: asked `n`, it answers fib(`n`).
fn served(client: &mut Client, n: u32) -> bool {
    try_ask(client, &n.to_string(), REFUSAL) == Ok(conformance::expected(n))
}

#[test]
#[ignore = "exercise: see slides/step03-callbacks.md, Exercise: change the code"]
fn max_conns() {
    let addr = start_with_args::<step03::Server>(
        &["--max-conns", "2"],
        "`--max-conns` is not an option of step03 yet: add it to an `Options` struct in \
         src/lib.rs (with `clap.workspace = true` in the step's Cargo.toml) and make it the \
         step's `type Options`",
    );

    // Two connections, both served: the server holds them open.
    let mut first = Client::connect(addr);
    let mut second = Client::connect(addr);
    require(
        served(&mut first, 10) && served(&mut second, 10),
        "with --max-conns 2, the first two connections must be served as before",
    );

    // The third one, while two are open: the error, then the end of the stream.
    let mut third = Client::connect(addr);
    third
        .stream()
        .set_read_timeout(Some(REFUSAL))
        .expect("setting a timeout on a fresh socket");
    let mut got = Vec::new();
    let ended = third.reader_mut().read_to_end(&mut got).map(drop);
    let got = String::from_utf8_lossy(&got).into_owned();
    match ended {
        Ok(()) if got == format!("{TOO_MANY}\n") => {}
        Ok(()) if got.is_empty() => missing(format_args!(
            "a third connection, while two were open, was closed without a word: write \
             `{TOO_MANY}\\n` to it before dropping it"
        )),
        Ok(()) => missing(format_args!(
            "a third connection, while two were open, got {got:?} instead of exactly \
             `{TOO_MANY}\\n` and its close"
        )),
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) && got.is_empty() =>
        {
            missing(format_args!(
                "a third connection, while two were open, got nothing in {} s (it was served, \
                 or never accepted): when a connection is accepted at the limit, write \
                 `{TOO_MANY}\\n` to it and drop it instead of registering it",
                REFUSAL.as_secs()
            ))
        }
        Err(_) if got == format!("{TOO_MANY}\n") => missing(format_args!(
            "a third connection, while two were open, was told `{TOO_MANY}` but then not \
             closed within {} s: drop its stream after the write, instead of registering it",
            REFUSAL.as_secs()
        )),
        Err(error) => missing(format_args!(
            "a third connection, while two were open, got {got:?} and then {error}, instead \
             of `{TOO_MANY}\\n` and a close"
        )),
    }

    // The refusal ends only that connection.
    require(
        served(&mut first, 11) && served(&mut second, 11),
        "after refusing a third connection, the two open ones must still be served",
    );

    // One closes: a new connection is served again (maybe not at once: the server may look
    // at the new connection before it sees that the old one has closed).
    drop(first);
    let deadline = Instant::now() + RETRY;
    loop {
        match try_ask(&mut Client::connect(addr), "10", REFUSAL) {
            Ok(answer) if answer == "55" => break,
            Err(what) | Ok(what) if Instant::now() >= deadline => missing(format_args!(
                "once one of the two connections had closed, new connections were still \
                 refused for {} s (the last got {what:?}): count only the connections that are \
                 open, so that a close makes room",
                RETRY.as_secs()
            )),
            _ => thread::sleep(Duration::from_millis(20)),
        }
    }
    require(
        served(&mut second, 12),
        "the connection left open must still be served at the end",
    );
}
