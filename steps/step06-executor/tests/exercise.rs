//! The coding exercise of step06 (`slides/step06-executor.md`, "Exercise: change the code"):
//! a greedy connection must not keep the executor's thread to itself.
//!
//! One connection pipelines a long burst of requests in one write. The whole burst fits in
//! the kernel's buffers, so the server's reads of it never find the socket empty, and its
//! answers fit too, so no write waits either: the connection's task never meets `Pending`.
//! On one executor thread, async-executor has no budget that would stop it (tokio's has), so
//! another connection's request waits for the whole burst, unless the handler yields.
//!
//! The verdict is an order, not a time: how many of the burst's answers had been written when
//! the other connection's answer arrived. Waiting for all of them fails; a handler that steps
//! aside after every read passes with most of the burst still to come.

use std::io::{ErrorKind, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use conformance::exercise::{missing, require, start_with_args};
use conformance::{Client, PATIENCE, expected};
use shared::fib::OFFLOAD_FROM_N;

/// The greedy connection's burst: this many requests, each a fib computed on the loop (about
/// 12 µs each in a release build, 1.2 s for the burst), so that the burst lasts long after
/// the other connection's request has arrived.
const BURST: usize = 100_000;

#[test]
#[ignore = "exercise: see slides/step06-executor.md, Exercise: change the code"]
fn yield_now() {
    let addr = start_with_args::<step06::Server>(
        &["--threads", "1"],
        "`--threads 1` is step06's own option and must stay",
    );
    // The largest n computed on the loop, not on the pool.
    let n = OFFLOAD_FROM_N - 1;
    let mut other = Client::connect(addr);
    let mut greedy = Client::connect(addr);
    assert_eq!(
        other.ask("1"),
        "1",
        "the other connection, before the burst"
    );
    assert_eq!(
        greedy.ask("1"),
        "1",
        "the greedy connection, before the burst"
    );

    // From a thread of its own: where the kernel's buffers are smaller than here, a write
    // that waits for the server must not keep this thread from reading.
    let mut writer = greedy
        .stream()
        .try_clone()
        .expect("a second handle on the socket");
    let burst = format!("{n}\n").repeat(BURST);
    let sending = thread::spawn(move || writer.write_all(burst.as_bytes()));
    // Its first answers are out: its task is in the middle of the burst now.
    let deadline = Instant::now() + PATIENCE;
    while !greedy.has_answer_waiting() {
        require(
            Instant::now() < deadline,
            format_args!(
                "the greedy connection's burst was not answered within {} s, after an answer \
                 to its first request: a future that returns `Pending` must make sure its \
                 task is woken again (its own waker, here)",
                PATIENCE.as_secs()
            ),
        );
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        other.ask("2"),
        "1",
        "the other connection, during the burst"
    );
    let mut answers = arrived(&mut greedy);

    // Every answer of the burst still comes, in order.
    let answer = format!("{}\n", expected(n));
    let done_by_then = answers.len() / answer.len();
    let mut rest = vec![0u8; answer.len() * BURST - answers.len()];
    if let Err(error) = greedy.reader_mut().read_exact(&mut rest) {
        missing(format_args!(
            "the greedy connection's answers stopped after {done_by_then} of {BURST} ({error}): \
             a future that returns `Pending` must make sure its task is woken again (its own \
             waker, here)"
        ));
    }
    sending
        .join()
        .expect("the sending thread")
        .expect("sending the burst");
    answers.extend_from_slice(&rest);
    require(
        answers
            .chunks(answer.len())
            .all(|got| got == answer.as_bytes()),
        "the greedy connection's answers are not all right: every answer still goes out, in \
         request order",
    );

    if done_by_then == BURST {
        missing(format_args!(
            "the other connection was answered only after all {BURST} answers of the greedy \
             one: in `serve_connection` (src/lib.rs), let the other tasks run after each round \
             of answers (a future that wakes its own task and returns `Pending` once)"
        ));
    }
    require(
        done_by_then < BURST / 2,
        format_args!(
            "the other connection waited for {done_by_then} of the greedy connection's \
             {BURST} answers: it should get its turn while most of them are still to come; \
             yield after every round of answers, not only now and then"
        ),
    );
}

/// What the greedy connection has received so far, read without waiting.
fn arrived(greedy: &mut Client) -> Vec<u8> {
    let mut got = Vec::new();
    greedy
        .stream()
        .set_nonblocking(true)
        .expect("switching to non-blocking");
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match greedy.reader_mut().read(&mut chunk) {
            Ok(0) => panic!("the server closed the greedy connection during its burst"),
            Ok(read) => got.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == ErrorKind::WouldBlock => break,
            Err(error) => panic!("reading the greedy connection's answers: {error}"),
        }
    }
    greedy
        .stream()
        .set_nonblocking(false)
        .expect("switching back to blocking");
    got
}
