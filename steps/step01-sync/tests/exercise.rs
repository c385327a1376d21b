//! The coding exercise of step01 (slides/step01-sync.md, "Exercise: change the code"):
//! `--write-timeout SECS`. Its reference solution is slides/solutions/step01-write-timeout.patch.

use std::io::Write;
use std::thread;
use std::time::Duration;

use conformance::Client;
use conformance::exercise::{missing, require, start_with_args, try_ask};

/// How long the second client waits for its answer: a safety net. With `--write-timeout
/// 0.5` it comes about half a second after the first client has filled the buffers.
const TURN: Duration = Duration::from_secs(20);

#[test]
#[ignore = "exercise: see slides/step01-sync.md, Exercise: change the code"]
fn write_timeout() {
    let addr = start_with_args::<step01::Server>(
        &["--write-timeout", "0.5"],
        "`--write-timeout` is not an option of step01 yet: add it to an `Options` struct in \
         src/lib.rs (with `clap.workspace = true` in the step's Cargo.toml) and make it the \
         step's `type Options`",
    );

    // Client A sends requests for ever and never reads an answer. The server answers until
    // A's receive buffer and its own send buffer are full; then its `write_all` blocks.
    let flooder = Client::connect(addr);
    let mut flood = flooder
        .stream()
        .try_clone()
        .expect("duplicating a socket descriptor");
    thread::spawn(move || {
        let requests = b"1\n".repeat(32 * 1024);
        // Until the server drops A: then the write fails (a reset, a broken pipe).
        while flood.write_all(&requests).is_ok() {}
    });

    // Client B connected after A, so it waits in the backlog behind A.
    let mut second = Client::connect(addr);
    match try_ask(&mut second, "10", TURN) {
        Ok(answer) if answer == "55" => {}
        Ok(answer) => missing(format_args!(
            "the client after the flooding one was answered {answer:?} to `10` instead of `55`"
        )),
        Err(what) if what != "nothing" => missing(format_args!(
            "the client after the flooding one got {what} instead of an answer: a write that \
             timed out must end only that connection; `run` must report it and go on \
             accepting (does the error leave `run` through a `?`?)"
        )),
        Err(_) => missing(format_args!(
            "while a client sent requests without reading its answers, the next client got \
             no answer in {} s: set the write timeout on each accepted stream \
             (`set_write_timeout`) in `run`, so that the blocked `write_all` fails and the \
             server goes on to the next client",
            TURN.as_secs()
        )),
    }
    require(
        try_ask(&mut second, "11", TURN).as_deref() == Ok("89"),
        "the client served after the flooding one must go on being served",
    );
    drop(flooder);
}
