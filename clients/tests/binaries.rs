//! The `fast` and `slow` programs as a user runs them: output, exit code, one-line errors.
//! (`talk` has its own file.)

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output};

fn run(program: &str, addr: SocketAddr, args: &[&str]) -> Output {
    let path = match program {
        "fast" => env!("CARGO_BIN_EXE_fast"),
        _ => env!("CARGO_BIN_EXE_slow"),
    };
    Command::new(path)
        .arg("--addr")
        .arg(addr.to_string())
        .args(args)
        .output()
        .expect("the test can start the client it was built with")
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("the clients print UTF-8")
}

#[test]
fn nothing_listening_is_one_line_on_stderr_and_a_failure() {
    let addr = common::closed_port();
    for program in ["fast", "slow"] {
        let output = run(program, addr, &["--secs", "1"]);
        assert!(!output.status.success(), "{program}: {:?}", output.status);
        assert_eq!(
            text(&output.stderr),
            format!(
                "{program}: cannot connect to {addr}: connection refused \
                 (is a step running? try: cargo run -p step01)\n"
            )
        );
    }
}

#[test]
fn the_servers_error_is_one_line_on_stderr_and_a_failure() {
    let addr = common::start_step02();
    for program in ["fast", "slow"] {
        let output = run(program, addr, &["--n", "50", "--count", "5"]);
        assert!(!output.status.success(), "{program}: {:?}", output.status);
        assert_eq!(
            text(&output.stderr),
            format!(
                "{program}: the server answered the request 50 with an error: \
                 n must be at most 45\n"
            )
        );
    }
}

#[test]
fn fast_prints_a_summary() {
    let addr = common::start_step02();
    let output = run(
        "fast",
        addr,
        &["--conns", "2", "--depth", "4", "--count", "400"],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("answered 400 requests in "), "{stdout}");
    assert!(stdout.contains("latency: p50 "), "{stdout}");
    assert!(stdout.contains("starved: 0 of 2 connections"), "{stdout}");
    assert_eq!(text(&output.stderr), "");
}

#[test]
fn slow_prints_each_answer_and_a_summary() {
    let addr = common::start_step02();
    let output = run("slow", addr, &["--n", "20", "--count", "3"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert_eq!(stdout.matches("fib(20) = 6765 in ").count(), 3, "{stdout}");
    assert!(
        stdout.contains("answered 3 requests for fib(20) in "),
        "{stdout}"
    );
}

#[test]
fn a_host_name_is_resolved() {
    let addr = common::start_step02();
    let output = Command::new(env!("CARGO_BIN_EXE_fast"))
        .args(["--addr", &format!("localhost:{}", addr.port())])
        .args(["--count", "5"])
        .output()
        .expect("the test can start the client it was built with");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(&format!("to 127.0.0.1:{}", addr.port())),
        "{stdout}"
    );
    assert!(stdout.contains("answered 5 requests in "), "{stdout}");
}

#[test]
fn a_host_name_that_does_not_resolve_is_refused_clearly() {
    for program in ["fast", "slow"] {
        let path = match program {
            "fast" => env!("CARGO_BIN_EXE_fast"),
            _ => env!("CARGO_BIN_EXE_slow"),
        };
        let output = Command::new(path)
            .args(["--addr", "nosuchhost.invalid:25000"])
            .output()
            .expect("the test can start the client it was built with");
        assert!(!output.status.success());
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("cannot resolve \"nosuchhost.invalid:25000\": "),
            "{program}: {stderr}"
        );
    }
}

/// A server that times the client out: the summary as usual, then why the run ended, and
/// success: it is a normal way for a run to end.
#[test]
fn the_summary_is_printed_when_the_server_ends_the_run() {
    let addr = common::closing_after(3, b"error: idle timeout\n");
    for (program, args, summary) in [
        ("fast", ["--secs", "10"], "answered 3 requests in "),
        ("slow", ["--n", "10"], "answered 3 requests for fib(10) in "),
    ] {
        let output = run(program, addr, &args);
        assert!(
            output.status.success(),
            "{program}: {}",
            text(&output.stderr)
        );
        let stdout = text(&output.stdout);
        assert!(stdout.contains(summary), "{program}: {stdout}");
        assert!(
            stdout.ends_with(
                "\nthe server closed connection 1 after 3 answers on it: error: idle timeout\n"
            ),
            "{program}: {stdout}"
        );
        assert_eq!(text(&output.stderr), "", "{program}");
    }
}

#[test]
fn a_paced_run_prints_each_answer_with_its_latency() {
    let addr = common::start_step02();
    let output = run("fast", addr, &["--rate", "20", "--count", "3"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let answers: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("fib(1) = 1 in "))
        .collect();
    assert_eq!(answers.len(), 3, "{stdout}");
    assert!(
        answers
            .iter()
            .all(|line| line.ends_with(" µs") || line.ends_with(" ms"))
    );
    assert!(
        !stdout.contains(" req/s  "),
        "no per-second lines: {stdout}"
    );
    assert!(stdout.contains("answered 3 requests in "), "{stdout}");
}

#[test]
fn fast_idle_holds_the_connections_and_checks_them() {
    let addr = common::start_step02();
    let output = run("fast", addr, &["--idle", "--conns", "20", "--secs", "0.3"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with("fast: holding 20 idle connections to "),
        "{stdout}"
    );
    assert!(
        stdout.contains("20 idle connections held for 0.3 s; 20 answered at the end"),
        "{stdout}"
    );
}

#[test]
fn fast_idle_refuses_options_that_send_requests() {
    let output = run("fast", common::closed_port(), &["--idle", "--depth", "4"]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("cannot be used with"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn help_explains_what_is_measured() {
    for (program, words) in [
        ("fast", "starved"),
        ("fast", "--idle"),
        ("fast", "--rate"),
        ("slow", "fib(40)"),
    ] {
        let output = run(program, common::closed_port(), &["--help"]);
        assert!(output.status.success());
        assert!(text(&output.stdout).contains(words), "{program} --help");
    }
}

/// `fast | head -1`: when whoever reads the output goes away, the client stops quietly, as
/// any Unix tool does, instead of panicking on the broken pipe.
#[test]
fn a_closed_stdout_ends_the_client_quietly() {
    use std::process::Stdio;

    let addr = common::start_step02();
    for (program, path, args) in [
        ("fast", env!("CARGO_BIN_EXE_fast"), ["--secs", "5"]),
        ("slow", env!("CARGO_BIN_EXE_slow"), ["--n", "1"]),
    ] {
        let mut child = Command::new(path)
            .arg("--addr")
            .arg(addr.to_string())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the test can start the client it was built with");
        // Close the reading end before the client has printed anything past its first line:
        // its next print finds the pipe broken.
        drop(child.stdout.take());
        let output = child
            .wait_with_output()
            .expect("the client can be waited for");
        let stderr = text(&output.stderr);
        assert!(!stderr.contains("panicked"), "{program}: {stderr}");
        assert_eq!(stderr, "", "{program}");
        assert!(output.status.success(), "{program}: {:?}", output.status);
    }
}
