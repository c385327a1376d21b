//! `talk`, the interactive client, as a user runs it, with its input from a pipe.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

fn start(addr: SocketAddr) -> Child {
    Command::new(env!("CARGO_BIN_EXE_talk"))
        .arg("--addr")
        .arg(addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the test can start the client it was built with")
}

/// Waits for `child` to exit by itself, and kills it (failing the test) if it has not after
/// a generous safety net.
fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    while child
        .try_wait()
        .expect("the child can be waited for")
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("talk did not exit: {:?}", child.wait_with_output());
        }
        thread::sleep(Duration::from_millis(20));
    }
    child
        .wait_with_output()
        .expect("the child's output can be read")
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("talk prints UTF-8")
}

#[test]
fn lines_typed_are_sent_and_answers_printed_until_the_end_of_input() {
    let mut child = start(common::start_step02());
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(b"10\n40x\n").expect("talk reads its input");
    // The end of input (Ctrl-D): talk waits for the answers, then exits.
    drop(stdin);
    let output = finish(child);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "55\nerror: not a number\n");
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("talk: connected to 127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("Ctrl-D"), "{stderr}");
    assert!(!stderr.contains("closed"), "the user quit: {stderr}");
}

#[test]
fn a_last_line_without_newline_is_sent_too() {
    let mut child = start(common::start_step02());
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(b"7").expect("talk reads its input");
    drop(stdin);
    let output = finish(child);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "13\n");
}

/// The server times the client out while the user is not typing: talk prints the server's
/// line, says it closed the connection, and exits, without waiting for more input.
#[test]
fn the_server_closing_the_connection_ends_talk() {
    let mut child = start(common::closing_after(1, b"error: idle timeout\n"));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(b"10\n").expect("talk reads its input");
    // Keep the input open: talk must notice the close by itself.
    let output = finish(child);
    drop(stdin);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "55\nerror: idle timeout\n");
    assert!(
        text(&output.stderr)
            .ends_with("talk: server closed the connection (its last line: error: idle timeout)\n"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn nothing_listening_is_one_line_on_stderr_and_a_failure() {
    let addr = common::closed_port();
    let output = finish(start(addr));
    assert!(!output.status.success());
    assert_eq!(text(&output.stdout), "");
    assert_eq!(
        text(&output.stderr),
        format!(
            "talk: cannot connect to {addr}: connection refused \
             (is a step running? try: cargo run -p step01)\n"
        )
    );
}
