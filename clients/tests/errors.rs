//! What the clients do when the server is missing, misbehaves, or never answers: a clear
//! error, or an honest report of zero answers, and never a hang.

mod common;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clients::{ClientError, FastConfig, FastReport, SlowConfig, SlowReport, run_fast, run_slow};

fn fast(addr: SocketAddr, config: FastConfig) -> Result<FastReport, ClientError> {
    let config = FastConfig { addr, ..config };
    run_fast(&config, &AtomicBool::new(false), &mut |_| {})
}

fn slow(addr: SocketAddr, config: SlowConfig) -> Result<SlowReport, ClientError> {
    let config = SlowConfig { addr, ..config };
    run_slow(&config, &AtomicBool::new(false), &|_| {})
}

fn for_a_moment() -> Option<Duration> {
    Some(Duration::from_millis(300))
}

#[test]
fn nothing_listening_is_a_clear_connect_error() {
    let addr = common::closed_port();
    let errors = [
        fast(addr, FastConfig::default()).expect_err("nothing listens"),
        slow(addr, SlowConfig::default()).expect_err("nothing listens"),
    ];
    for error in errors {
        assert!(
            matches!(&error, ClientError::Connect { error, .. }
                if error.kind() == io::ErrorKind::ConnectionRefused),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "cannot connect to {addr}: connection refused \
                 (is a step running? try: cargo run -p step01)"
            )
        );
    }
}

fn assert_max_n_error(error: ClientError) {
    match error {
        ClientError::ServerError { request, message } => {
            assert_eq!((request, message.as_str()), (50, "n must be at most 45"));
        }
        other => panic!("expected the server's error, got {other:?}"),
    }
}

#[test]
fn the_servers_error_line_stops_the_fast_client() {
    let addr = common::start_step02();
    for depth in [1, 16] {
        let config = FastConfig {
            n: 50,
            depth,
            count: Some(100),
            ..FastConfig::default()
        };
        assert_max_n_error(fast(addr, config).expect_err("50 is above --max-n"));
    }
}

#[test]
fn the_servers_error_line_stops_the_slow_client() {
    let config = SlowConfig {
        n: 50,
        count: Some(3),
        ..SlowConfig::default()
    };
    assert_max_n_error(slow(common::start_step02(), config).expect_err("50 is above --max-n"));
}

#[test]
fn a_wrong_answer_is_an_error() {
    let addr = common::lying_server(b"2\n");
    let config = FastConfig {
        count: Some(10),
        ..FastConfig::default()
    };
    let error = fast(addr, config).expect_err("fib(1) is not 2");
    assert!(
        matches!(&error, ClientError::WrongAnswer { request: 1, expected: 1, got } if got == "2"),
        "{error:?}"
    );
    let config = SlowConfig {
        n: 10,
        count: Some(1),
        ..SlowConfig::default()
    };
    let error = slow(addr, config).expect_err("fib(10) is not 2");
    assert!(
        matches!(&error, ClientError::WrongAnswer { request: 10, expected: 55, got } if got == "2"),
        "{error:?}"
    );
}

#[test]
fn a_server_that_closes_the_connection_is_an_error() {
    let addr = common::closing_server();
    let error = fast(addr, FastConfig::default()).expect_err("the server closed");
    assert!(
        matches!(
            error,
            ClientError::Closed {
                connection: 1,
                answered: 0
            }
        ),
        "{error:?}"
    );
    let error = slow(addr, SlowConfig::default()).expect_err("the server closed");
    assert!(
        matches!(
            error,
            ClientError::Closed {
                connection: 1,
                answered: 0
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_server_that_never_answers_gives_zero_answers_in_time() {
    let addr = common::silent_server();
    let report = fast(
        addr,
        FastConfig {
            conns: 3,
            depth: 16,
            duration: for_a_moment(),
            ..FastConfig::default()
        },
    )
    .expect("silence is a measurement, not an error");
    assert_eq!(report.answered, 0);
    assert_eq!(report.starved(), 3);
    assert_eq!(report.latency.percentiles(), None);

    let report = slow(
        addr,
        SlowConfig {
            conns: 2,
            duration: for_a_moment(),
            ..SlowConfig::default()
        },
    )
    .expect("silence is a measurement, not an error");
    assert_eq!((report.count(), report.starved()), (0, 2));
}

#[test]
fn a_server_that_never_accepts_gives_zero_answers_in_time() {
    // Connections complete in the kernel's backlog, so connecting works; nothing is read.
    let (_listener, addr) = common::never_accepting_listener();
    let report = fast(
        addr,
        FastConfig {
            conns: 2,
            duration: for_a_moment(),
            ..FastConfig::default()
        },
    )
    .expect("silence is a measurement, not an error");
    assert_eq!((report.answered, report.starved()), (0, 2));

    let report = slow(
        addr,
        SlowConfig {
            duration: for_a_moment(),
            ..SlowConfig::default()
        },
    )
    .expect("silence is a measurement, not an error");
    assert_eq!((report.count(), report.starved()), (0, 1));
}
