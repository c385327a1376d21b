//! The slow client against a real server (step02, in-process). fib(20) keeps the tests
//! quick; the client does not care how slow the request really is.

mod common;

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use clients::{SlowAnswer, SlowConfig, run_slow};

#[test]
fn every_answer_is_reported_and_timed() {
    let config = SlowConfig {
        addr: common::start_step02(),
        n: 20,
        count: Some(5),
        ..SlowConfig::default()
    };
    let seen = Mutex::new(Vec::new());
    let report = run_slow(&config, &AtomicBool::new(false), &|answer: &SlowAnswer| {
        seen.lock()
            .expect("no panic while holding the lock")
            .push(*answer);
    })
    .expect("step02 answers fib(20)");

    assert_eq!(report.count(), 5);
    assert_eq!(report.per_connection, [5]);
    assert!(report.mean().is_some() && report.max() >= report.mean());
    let seen = seen.into_inner().expect("no panic while holding the lock");
    assert_eq!(seen.len(), 5);
    for answer in seen {
        assert_eq!((answer.connection, answer.n, answer.value), (1, 20, 6765));
    }
}

/// `error: busy` is a server with a full pool saying "not now", not a broken server: the
/// slow client counts it, waits a moment and asks again, and the summary says how often.
#[test]
fn busy_answers_are_counted_and_the_run_goes_on() {
    let config = SlowConfig {
        addr: common::busy_at_first(2),
        n: 20,
        count: Some(3),
        ..SlowConfig::default()
    };
    let report = run_slow(&config, &AtomicBool::new(false), &|_| {})
        .expect("a busy answer does not end the run");
    assert_eq!(report.count(), 3, "three real answers after two busy ones");
    assert_eq!(report.busy, 2);
    let summary = report.to_string();
    assert!(
        summary.contains("2 answered `error: busy`"),
        "the summary says how many were busy: {summary}"
    );
}

#[test]
fn two_clients_share_the_count() {
    let config = SlowConfig {
        addr: common::start_step02(),
        conns: 2,
        n: 20,
        count: Some(6),
        ..SlowConfig::default()
    };
    let report =
        run_slow(&config, &AtomicBool::new(false), &|_| {}).expect("step02 answers fib(20)");
    assert_eq!(report.count(), 6);
    assert_eq!(report.per_connection.len(), 2);
    assert_eq!(report.per_connection.iter().sum::<u64>(), 6);
}

/// Two slow clients of step01, which serves one connection at a time: the second waits for
/// the whole run. When the first leaves at the deadline, step01 answers the second at once;
/// that answer came after the run ended and must not hide the starvation.
#[test]
fn an_answer_after_the_deadline_does_not_count() {
    use shared::Server as _;
    let server = step01::Server::bind(&shared::Config::ephemeral(), &Default::default())
        .expect("binding port 0 on loopback");
    let addr = server.local_addr();
    std::thread::spawn(move || server.run());
    let config = SlowConfig {
        addr,
        conns: 2,
        n: 15,
        duration: Some(std::time::Duration::from_millis(300)),
        count: None,
    };
    let report = run_slow(&config, &AtomicBool::new(false), &|_| {}).expect("step01 answers");
    assert_eq!(
        report.starved(),
        1,
        "per connection: {:?}",
        report.per_connection
    );
}
