#![cfg(target_os = "linux")]
//! Ctrl-C and SIGTERM shut step08 down gracefully: it stops accepting, answers what it has
//! received (even a fib still computing on the pool), and exits with status 0.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn sigterm_answers_what_was_received_then_exits_0() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_step08"))
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting step08");
    let mut stdout = BufReader::new(server.stdout.take().expect("stdout was piped"));
    let mut first_line = String::new();
    stdout
        .read_line(&mut first_line)
        .expect("reading step08's first line");
    let Some(addr) = first_line.trim_end().strip_prefix("listening on ") else {
        let _ = server.kill();
        let output = server.wait_with_output().expect("waiting for step08");
        let errors = String::from_utf8_lossy(&output.stderr);
        if errors.contains("io_uring is not available") {
            // tests/io_uring.rs says so loudly (and fails where io_uring is required).
            eprintln!("step08 cannot start here: {errors}");
            return;
        }
        panic!("step08 printed {first_line:?} instead of its address: {errors}");
    };

    let stream = TcpStream::connect(addr).expect("connecting to step08");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("setting a timeout");
    let mut client = BufReader::new(stream);
    // One round trip first: the connection has been accepted by then.
    client.get_mut().write_all(b"1\n").expect("sending");
    let mut answer = String::new();
    client.read_line(&mut answer).expect("reading the answer");
    assert_eq!(answer, "1\n");

    // fib(32) goes to the compute pool and takes a few milliseconds: the signal arrives while
    // it computes, and fib(5) waits behind it.
    client.get_mut().write_all(b"32\n5\n").expect("sending");
    // SAFETY: kill only sends a signal to the child we started, which has not been waited
    // for, so its pid is still its own.
    let sent = unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0, "sending SIGTERM");

    let mut rest = String::new();
    std::io::Read::read_to_string(&mut client, &mut rest).expect("reading until step08 closes");
    assert_eq!(
        rest, "2178309\n5\n",
        "the answers to what was sent before the signal"
    );
    // Closing ends the server's drain of this connection (otherwise it drains until the end
    // of --grace).
    drop(client);
    let status = server.wait().expect("waiting for step08 to exit");
    assert!(status.success(), "step08 exited with {status}");
}
