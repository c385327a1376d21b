//! Measures where offloading fib starts to pay: `cargo run --release -p step05 --example threshold`.
//!
//! Prints the time of fib(n) computed inline, next to the round trip of a job through the
//! pool (send it to a worker, compute, wake the task back on the loop), measured the way the
//! server uses it: awaited from a task of step04's executor. `shared::fib::OFFLOAD_FROM_N` is
//! the smallest n whose fib takes longer than the round trip of an empty job.

use std::hint::black_box;
use std::time::{Duration, Instant};

use shared::fib::fib;
use step04::executor::block_on;
use step05::pool::Pool;

/// The median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..runs).map(|_| f()).collect();
    times.sort();
    times[runs / 2]
}

fn main() -> std::io::Result<()> {
    // One job at a time: a queue of one is plenty.
    let pool = Pool::sized_to_cores(|_| 1)?;
    println!("pool of {} threads", pool.threads());

    let hop = block_on(async {
        let mut times = Vec::new();
        for _ in 0..20_000 {
            let start = Instant::now();
            pool.run(|| ())
                .expect("one job at a time never finds the queue full")
                .await
                .expect("an empty job cannot panic");
            times.push(start.elapsed());
        }
        times.sort();
        times[times.len() / 2]
    })?;
    println!("round trip of an empty job through the pool: {hop:.1?} (median)");

    println!(
        "{:>3}  {:>12}  {:>18}",
        "n", "fib(n) inline", "fib(n) offloaded"
    );
    for n in 14..=30 {
        let runs = if n <= 24 { 2001 } else { 101 };
        let inline = median(runs, || {
            let start = Instant::now();
            black_box(fib(black_box(n)));
            start.elapsed()
        });
        let offloaded = block_on(async {
            let mut times = Vec::new();
            for _ in 0..runs {
                let start = Instant::now();
                let value = pool
                    .run(move || fib(black_box(n)))
                    .expect("one job at a time never finds the queue full")
                    .await;
                black_box(value.expect("fib cannot panic"));
                times.push(start.elapsed());
            }
            times.sort();
            times[runs / 2]
        })?;
        let marker = if inline > hop { "  > round trip" } else { "" };
        println!("{n:>3}  {inline:>12.1?}  {offloaded:>18.1?}{marker}");
    }
    Ok(())
}
