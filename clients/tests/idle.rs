//! The idle client (`fast --idle`) against a real server and stand-ins: connections held
//! open, then checked; closes and silence counted, not errors.

mod common;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clients::{Ended, IdleConfig, IdleReport, run_idle};

fn idle(addr: std::net::SocketAddr, conns: usize) -> IdleReport {
    let config = IdleConfig {
        addr,
        conns,
        duration: Some(Duration::from_millis(300)),
    };
    run_idle(&config, &AtomicBool::new(false), &mut |_| {}).expect("counted, not an error")
}

#[test]
fn step02_holds_every_idle_connection_and_answers_at_the_end() {
    let report = idle(common::start_step02(), 50);
    assert_eq!((report.conns, report.opened), (50, 50));
    assert!(report.held >= Duration::from_millis(300));
    assert_eq!(report.answered_at_start, 50);
    assert_eq!(report.answered_at_end, 50);
    assert_eq!((report.closed, report.silent()), (0, 0));
    assert_eq!(report.ended, Ended::Deadline);
    assert_eq!(
        report.to_string(),
        format!(
            "50 idle connections held for {:.1} s; 50 answered at the end",
            report.held.as_secs_f64()
        )
    );
}

#[test]
fn connections_the_server_times_out_are_counted_with_its_reason() {
    let report = idle(common::closing_after(1, b"error: idle timeout\n"), 5);
    assert_eq!(report.opened, 5);
    assert_eq!(report.answered_at_start, 5);
    assert_eq!((report.answered_at_end, report.closed), (0, 5));
    assert_eq!(report.last_line.as_deref(), Some("error: idle timeout"));
    assert!(
        report
            .to_string()
            .ends_with("0 of 5 answered at the end; the server closed 5 (error: idle timeout)"),
        "{report}"
    );
}

/// What step01 looks like to all connections but the first: accepted by the kernel, never
/// served. The final check gives up after its patience (a few seconds).
#[test]
fn connections_a_server_never_serves_are_counted_as_silent() {
    let report = idle(common::silent_server(), 3);
    assert_eq!(report.answered_at_start, 0);
    assert_eq!(report.answered_at_end, 0);
    assert_eq!((report.closed, report.silent()), (0, 3));
}

#[test]
fn the_stop_flag_ends_the_holding() {
    let config = IdleConfig {
        addr: common::start_step02(),
        conns: 2,
        duration: None,
    };
    let report = run_idle(&config, &AtomicBool::new(true), &mut |_| {}).expect("stopped");
    assert_eq!(report.ended, Ended::Stopped);
    assert_eq!(report.opened, 0, "stopped before opening any");
}
