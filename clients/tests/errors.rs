//! What the clients do when the server is missing, misbehaves, closes connections, or never
//! answers: a clear error, or an honest report (of zero answers, of how the server ended the
//! run), and never a hang.

mod common;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clients::{
    ClientError, Ended, FastConfig, FastReport, SlowConfig, SlowReport, run_fast, run_slow,
};

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

/// A safety net, not a measurement: a run that should end because the server closed the
/// connection ends by its deadline instead if the client fails to notice the close.
fn safety_net() -> Option<Duration> {
    Some(Duration::from_secs(10))
}

fn assert_closed(ended: &Ended, answered: u64, last_line: Option<&str>) {
    match ended {
        Ended::ServerClosed {
            connection,
            answered: on_it,
            last_line: words,
            ..
        } => {
            assert_eq!(*connection, 1, "{ended:?}");
            assert_eq!(*on_it, answered, "{ended:?}");
            assert_eq!(words.as_deref(), last_line, "{ended:?}");
        }
        other => panic!("expected the server to end the run, got {other:?}"),
    }
}

#[test]
fn a_server_that_closes_the_connection_ends_the_run_with_a_report() {
    let addr = common::closing_server();
    let config = FastConfig {
        duration: safety_net(),
        ..FastConfig::default()
    };
    let report = fast(addr, config).expect("a close ends the run, it is not an error");
    assert_eq!(report.answered, 0);
    // The server closes before or after reading the request: a reset or an end of stream.
    assert_closed(&report.ended, 0, None);
    let config = SlowConfig {
        duration: safety_net(),
        ..SlowConfig::default()
    };
    let report = slow(addr, config).expect("a close ends the run, it is not an error");
    assert_eq!(report.count(), 0);
    assert_closed(&report.ended, 0, None);
}

#[test]
fn the_servers_last_words_end_the_fast_run_with_a_report() {
    let addr = common::closing_after(3, b"error: idle timeout\n");
    for depth in [1, 16] {
        let config = FastConfig {
            depth,
            duration: safety_net(),
            ..FastConfig::default()
        };
        let report = fast(addr, config).expect("last words end the run, they are no error");
        assert_eq!(report.answered, 3, "depth {depth}");
        assert_eq!(report.per_connection, [3]);
        assert_eq!(report.latency.len(), 3);
        assert_closed(&report.ended, 3, Some("error: idle timeout"));
        assert!(!matches!(
            report.ended,
            Ended::ServerClosed { reset: true, .. }
        ));
    }
}

#[test]
fn the_servers_last_words_end_the_slow_run_with_a_report() {
    let config = SlowConfig {
        n: 10,
        duration: safety_net(),
        ..SlowConfig::default()
    };
    let report = slow(common::closing_after(3, b"error: idle timeout\n"), config)
        .expect("last words end the run, they are no error");
    assert_eq!(report.count(), 3);
    assert_eq!(report.per_connection, [3]);
    assert_closed(&report.ended, 3, Some("error: idle timeout"));
}

/// The end of the stream arrives with the last answer. epoll reports both in one event and
/// raises none after it, so a client that stops reading at a short read never notices.
#[test]
fn an_end_of_stream_right_after_the_last_answer_is_noticed() {
    let addr = common::closing_after(3, b"");
    for depth in [1, 4] {
        let config = FastConfig {
            depth,
            duration: safety_net(),
            ..FastConfig::default()
        };
        let report = fast(addr, config).expect("a close ends the run, it is not an error");
        assert_eq!(report.answered, 3, "depth {depth}");
        assert_closed(&report.ended, 3, None);
    }
    let config = SlowConfig {
        n: 10,
        duration: safety_net(),
        ..SlowConfig::default()
    };
    let report = slow(addr, config).expect("a close ends the run, it is not an error");
    assert_closed(&report.ended, 3, None);
}

#[test]
fn a_wrong_answer_before_the_close_is_still_an_error() {
    let addr = common::closing_after(2, b"2\n");
    let config = FastConfig {
        duration: safety_net(),
        ..FastConfig::default()
    };
    let error = fast(addr, config).expect_err("fib(1) is not 2");
    assert!(
        matches!(&error, ClientError::WrongAnswer { got, .. } if got == "2"),
        "{error:?}"
    );
    let config = SlowConfig {
        n: 10,
        duration: safety_net(),
        ..SlowConfig::default()
    };
    let error = slow(addr, config).expect_err("fib(10) is not 2");
    assert!(
        matches!(&error, ClientError::WrongAnswer { got, .. } if got == "2"),
        "{error:?}"
    );
}

#[test]
fn runs_that_end_as_asked_say_so() {
    let addr = common::start_step02();
    let report = fast(
        addr,
        FastConfig {
            count: Some(10),
            ..FastConfig::default()
        },
    )
    .expect("step02 answers");
    assert_eq!(report.ended, Ended::Count);
    let report = fast(
        addr,
        FastConfig {
            duration: Some(Duration::from_millis(100)),
            ..FastConfig::default()
        },
    )
    .expect("step02 answers");
    assert_eq!(report.ended, Ended::Deadline);
    let report = slow(
        addr,
        SlowConfig {
            n: 10,
            count: Some(2),
            ..SlowConfig::default()
        },
    )
    .expect("step02 answers");
    assert_eq!(report.ended, Ended::Count);
    let report = slow(
        addr,
        SlowConfig {
            n: 10,
            duration: Some(Duration::from_millis(100)),
            ..SlowConfig::default()
        },
    )
    .expect("step02 answers");
    assert_eq!(report.ended, Ended::Deadline);
    let stopped = AtomicBool::new(true);
    let config = FastConfig {
        addr,
        ..FastConfig::default()
    };
    let report = run_fast(&config, &stopped, &mut |_| {}).expect("stopped at once");
    assert_eq!(report.ended, Ended::Stopped);
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
