//! What the coding exercises' tests share (`steps/stepNN-*/tests/exercise.rs`, one or more
//! per step, `#[ignore]`d so that the normal suite stays green on the shipped code).
//!
//! An exercise's test fails on the shipped code and passes once the exercise is done; its
//! reference solution is `slides/solutions/stepNN-NAME.patch`, and `bash
//! tests/exercises/check.sh` proves both for every exercise. A wrong attempt must learn what
//! is still missing, not only that an assertion failed: every failure here starts with
//! `still missing:` and says what to change.

use std::io::{BufRead, ErrorKind};
use std::net::SocketAddr;
use std::time::Duration;

use shared::Server;

use crate::Client;
use crate::child::ChildServer;

/// Fails the exercise: `what` says what is still missing, in the attendee's terms.
///
/// # Panics
///
/// Always: that is what it is for.
#[track_caller]
pub fn missing(what: impl std::fmt::Display) -> ! {
    panic!("\n\nstill missing: {what}\n\n")
}

/// Checks `condition`; when it does not hold, [`missing`] with `what`.
#[track_caller]
pub fn require(condition: bool, what: impl std::fmt::Display) {
    if !condition {
        missing(what);
    }
}

/// Starts step `S` in this process with `args` as a user would give them, on a free port.
/// Where the step does not take them yet (the exercise adds an option), fails with
/// `still missing: {option}` and clap's own words.
///
/// # Panics
///
/// When the arguments do not parse (the exercise's option is missing) or the step cannot
/// bind.
#[track_caller]
pub fn start_with_args<S: Server + 'static>(args: &[&str], option: &str) -> SocketAddr {
    let (mut config, options) = match shared::cli::parse::<S>(args.iter().map(|a| a.to_string())) {
        Ok(parsed) => parsed,
        Err(error) => missing(format_args!(
            "{option}\n(the step does not take {args:?} yet; clap says: {})",
            error.to_string().lines().next().unwrap_or_default()
        )),
    };
    config.addr = shared::Config::ephemeral().addr;
    crate::try_start_configured::<S>(config, options)
        .unwrap_or_else(|error| panic!("the step could not bind: {error}"))
}

/// Starts a step's own binary (`env!("CARGO_BIN_EXE_stepNN")`) with `args`, in a child
/// process: for the exercises that need signals or the server's stderr. Where the binary
/// refuses the arguments (the exercise adds an option), fails with `still missing: {option}`.
///
/// # Panics
///
/// When the binary refuses `args` or cannot be started.
#[track_caller]
pub fn start_binary_with_args(binary: &str, args: &[&str], option: &str) -> ChildServer {
    if let Err(refusal) = parses(binary, args) {
        missing(format_args!(
            "{option}\n(the step does not take {args:?} yet; it says: {refusal})"
        ));
    }
    ChildServer::start_binary(binary, args)
}

/// Whether `binary` takes `args`: asks it with `--help` appended, which clap answers after
/// checking every argument and without starting the server.
fn parses(binary: &str, args: &[&str]) -> Result<(), String> {
    let output = std::process::Command::new(binary)
        .args(args)
        .arg("--help")
        .output()
        .unwrap_or_else(|error| panic!("starting {binary}: {error}"));
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(stderr.lines().next().unwrap_or_default().to_string())
}

/// Asks `request` on `client` and waits up to `patience` for the answer: [`try_line`].
pub fn try_ask(client: &mut Client, request: &str, patience: Duration) -> Result<String, String> {
    client.send(format!("{request}\n").as_bytes());
    try_line(client, patience)
}

/// Waits up to `patience` for one answer line on `client`: `Ok` with the line (without its
/// `\n`), `Err` saying what came instead (`a close`, `nothing` within `patience`, or the
/// error, such as a reset), for an exercise to turn into what is still missing.
pub fn try_line(client: &mut Client, patience: Duration) -> Result<String, String> {
    client
        .stream()
        .set_read_timeout(Some(patience))
        .expect("setting a timeout on an open socket");
    let mut line = String::new();
    match client.reader_mut().read_line(&mut line) {
        Ok(0) => Err("a close".into()),
        Ok(_) => Ok(line.trim_end().to_string()),
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err("nothing".into())
        }
        Err(error) => Err(error.to_string()),
    }
}
