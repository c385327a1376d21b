//! The fast client against a real server (step02, in-process): every answer counted and
//! checked, with one and several connections, one and sixteen requests in flight.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use clients::{
    FastAnswer, FastConfig, FastReport, SlowConfig, run_fast, run_fast_with_answers, run_slow,
};

fn run(conns: usize, depth: usize, count: u64) -> FastReport {
    let config = FastConfig {
        addr: common::start_step02(),
        conns,
        depth,
        count: Some(count),
        ..FastConfig::default()
    };
    let stop = AtomicBool::new(false);
    run_fast(&config, &stop, &mut |_| {}).expect("step02 answers every request correctly")
}

fn assert_complete(report: &FastReport, conns: usize, count: u64) {
    assert_eq!(report.answered, count);
    assert_eq!(report.per_connection.len(), conns);
    assert_eq!(report.per_connection.iter().sum::<u64>(), count);
    assert_eq!(report.starved(), 0, "{:?}", report.per_connection);
    assert_eq!(report.latency.len(), count, "one latency per answer");
}

#[test]
fn one_connection_one_in_flight() {
    let report = run(1, 1, 300);
    assert_complete(&report, 1, 300);
}

#[test]
fn four_connections_one_in_flight() {
    let report = run(4, 1, 400);
    assert_complete(&report, 4, 400);
}

#[test]
fn one_connection_sixteen_in_flight() {
    let report = run(1, 16, 320);
    assert_complete(&report, 1, 320);
}

#[test]
fn four_connections_sixteen_in_flight() {
    let report = run(4, 16, 1000);
    assert_complete(&report, 4, 1000);
}

#[test]
fn a_count_that_is_not_a_whole_number_of_batches_is_met_exactly() {
    // 37 = 2 batches of 16 and one of 5.
    let report = run(1, 16, 37);
    assert_complete(&report, 1, 37);
}

#[test]
fn a_larger_n_is_checked_too() {
    let config = FastConfig {
        addr: common::start_step02(),
        n: 25,
        depth: 4,
        count: Some(40),
        ..FastConfig::default()
    };
    let report = run_fast(&config, &AtomicBool::new(false), &mut |_| {})
        .expect("step02 answers fib(25) = 75025");
    assert_eq!(report.answered, 40);
}

#[test]
fn a_duration_ends_the_run() {
    let config = FastConfig {
        addr: common::start_step02(),
        conns: 2,
        duration: Some(Duration::from_millis(300)),
        ..FastConfig::default()
    };
    let report =
        run_fast(&config, &AtomicBool::new(false), &mut |_| {}).expect("step02 answers correctly");
    assert!(report.elapsed >= Duration::from_millis(300));
    assert_eq!(report.per_connection.len(), 2);
}

#[test]
fn the_stop_flag_ends_a_run_without_limits() {
    let config = FastConfig {
        addr: common::start_step02(),
        ..FastConfig::default()
    };
    let stop = AtomicBool::new(false);
    let report = thread::scope(|scope| {
        scope.spawn(|| {
            thread::sleep(Duration::from_millis(100));
            stop.store(true, Ordering::Relaxed);
        });
        run_fast(&config, &stop, &mut |_| {})
    });
    report.expect("step02 answers correctly");
}

#[test]
fn fast_and_slow_run_side_by_side_and_stop_together() {
    // What the results table's fast+slow column does: two loads on two threads, one flag.
    let addr = common::start_step02();
    let fast = FastConfig {
        addr,
        ..FastConfig::default()
    };
    let slow = SlowConfig {
        addr,
        n: 27,
        ..SlowConfig::default()
    };
    let stop = AtomicBool::new(false);
    let (fast, slow) = thread::scope(|scope| {
        let fast = scope.spawn(|| run_fast(&fast, &stop, &mut |_| {}));
        let slow = scope.spawn(|| run_slow(&slow, &stop, &|_| {}));
        thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        (
            fast.join().expect("the fast load does not panic"),
            slow.join().expect("the slow load does not panic"),
        )
    });
    fast.expect("step02 answers fast requests correctly");
    slow.expect("step02 answers slow requests correctly");
}

#[test]
fn a_rate_spaces_the_requests_and_every_answer_is_reported() {
    // 20 requests per second: a batch every 50 ms, so the third starts 100 ms or more after
    // the first, however quick the server.
    let config = FastConfig {
        addr: common::start_step02(),
        count: Some(3),
        rate: Some(20.0),
        ..FastConfig::default()
    };
    let mut answers: Vec<FastAnswer> = Vec::new();
    let report = run_fast_with_answers(
        &config,
        &AtomicBool::new(false),
        &mut |_| {},
        Some(&mut |answer: &FastAnswer| answers.push(*answer)),
    )
    .expect("step02 answers correctly");
    assert_complete(&report, 1, 3);
    assert!(
        report.elapsed >= Duration::from_millis(100),
        "{:?}",
        report.elapsed
    );
    assert_eq!(answers.len(), 3);
    for answer in answers {
        assert_eq!((answer.connection, answer.n, answer.value), (1, 1, 1));
        assert_eq!(answer.answers, 1);
    }
}

#[test]
fn a_paced_pipeline_sends_whole_batches() {
    // Depth 4 at 40 requests per second: a batch of 4 every 100 ms.
    let config = FastConfig {
        addr: common::start_step02(),
        conns: 2,
        depth: 4,
        count: Some(16),
        rate: Some(40.0),
        ..FastConfig::default()
    };
    let report =
        run_fast(&config, &AtomicBool::new(false), &mut |_| {}).expect("step02 answers correctly");
    assert_complete(&report, 2, 16);
    assert!(
        report.elapsed >= Duration::from_millis(100),
        "{:?}",
        report.elapsed
    );
}

#[test]
fn the_stop_flag_ends_a_paced_run_between_requests() {
    // One request every 100 s: the run waits for the next one and must still stop on time.
    let config = FastConfig {
        addr: common::start_step02(),
        rate: Some(0.01),
        ..FastConfig::default()
    };
    let stop = AtomicBool::new(false);
    let report = thread::scope(|scope| {
        scope.spawn(|| {
            thread::sleep(Duration::from_millis(200));
            stop.store(true, Ordering::Relaxed);
        });
        run_fast(&config, &stop, &mut |_| {})
    })
    .expect("step02 answers correctly");
    assert_eq!(report.answered, 1);
    assert_eq!(report.ended, clients::Ended::Stopped);
}
