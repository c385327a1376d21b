//! The coding exercise of step04 (`slides/step04-coroutines.md`, "Exercise: change the code"):
//! `--max-conns N`, where the accept loop waits for a free slot instead of refusing.
//!
//! Nothing here depends on timing. The third connection's request is checked after round
//! trips on the other two, which a server waiting for a slot can never have answered early;
//! and once one of the two closes, the answer has a generous safety net to arrive in.

use std::io::Read;
use std::time::Duration;

use conformance::exercise::{missing, start_with_args, try_line};
use conformance::{Client, expected};

/// How long the third connection may take to be answered once a slot is free: microseconds
/// normally, seconds on a loaded machine; only a server that never wakes its accept loop
/// takes longer.
const SLOT_PATIENCE: Duration = Duration::from_secs(20);

#[test]
#[ignore = "exercise: see slides/step04-coroutines.md, Exercise: change the code"]
fn max_conns() {
    let addr = start_with_args::<step04::Server>(
        &["--max-conns", "2"],
        "`--max-conns N` is not an option of step04 yet: give step04 an `Options` struct of its \
         own in src/lib.rs (today it has `type Options = NoOptions`)",
    );
    let mut first = Client::connect(addr);
    let mut second = Client::connect(addr);
    assert_eq!(
        first.ask("10"),
        expected(10),
        "the first connection's answer"
    );
    assert_eq!(
        second.ask("11"),
        expected(11),
        "the second connection's answer"
    );

    // The third client connects (the kernel completes the handshake into the backlog) and
    // sends its request at once.
    let mut third = Client::connect(addr);
    third.send(b"12\n");
    // Round trips on the two open connections: each is a turn of the server's loop, which on
    // the shipped code is enough for the third to be accepted, read and answered.
    for n in 1..=20 {
        assert_eq!(
            first.ask(&n.to_string()),
            expected(n),
            "the first connection"
        );
        assert_eq!(
            second.ask(&n.to_string()),
            expected(n),
            "the second connection"
        );
    }
    if third.has_answer_waiting() {
        let mut got = [0u8; 64];
        let answered = match third.stream().read(&mut got) {
            Ok(0) => missing(
                "the third connection was closed while two were open: with `--max-conns` the \
                 accept loop must wait for a free slot, not refuse the client",
            ),
            Ok(read) => String::from_utf8_lossy(&got[..read]).into_owned(),
            Err(error) => missing(format_args!(
                "the third connection was reset while two were open ({error}): the accept loop \
                 must wait for a free slot, not refuse the client"
            )),
        };
        missing(format_args!(
            "the third connection was answered ({:?}) while two were open with `--max-conns \
             2`: before accepting, the accept loop in `serve` must wait until fewer than 2 \
             connections are open",
            answered.trim_end()
        ));
    }

    // One of the two closes: its task ends, and the accept loop must be woken for the third.
    drop(first);
    let line = match try_line(&mut third, SLOT_PATIENCE) {
        Ok(line) => line,
        Err(came) if came == "a close" => missing(
            "the third connection was closed once a slot was free: it must be accepted and \
             served like the first two",
        ),
        Err(_) => missing(format_args!(
            "the third connection was not answered within {} s after one of the two closed: \
             when a connection's task ends (its `Open` guard is dropped), wake the accept \
             loop's waiting task",
            SLOT_PATIENCE.as_secs()
        )),
    };
    assert_eq!(line, expected(12), "the third connection's answer");
    assert_eq!(
        second.ask("13"),
        expected(13),
        "the second connection, still served"
    );
}
