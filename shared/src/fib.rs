//! The deliberate CPU work: the naive recursive Fibonacci function.
//!
//! `fib(n)` makes about `1.6^n` calls, so its cost grows quickly: fib(30) takes milliseconds,
//! fib(40) roughly half a second on one core. That is the point. The workshop needs a request
//! whose cost is pure CPU and easy to dial up, so it can show what CPU work does to each
//! concurrency style. Never memoise it or replace it with the closed form or a loop.

/// The largest `n` whose `fib(n)` fits in a `u64`: fib(93) = 12200160415121876738.
pub const MAX_FIB_N: u32 = 93;

// ANCHOR: threshold
/// fib(n) for `n` at least this goes to a compute pool, below it is computed where the
/// request was read: the steps with a pool (05, 06, 08, 09) all decide with `n >=
/// OFFLOAD_FROM_N`.
///
/// The hop to a pool thread and back is not free: the job is queued and a sleeping thread
/// woken (a futex call; the scheduler finds it a core), the answer comes back the same way,
/// and the loop is woken to send it. Measured with `cargo run --release -p step05 --example
/// threshold` on the 2-core machine of the results (other work running beside it): the round
/// trip of an empty job through step05's pool, awaited from a task, took 16 µs (median of
/// 20,000); fib(19) took 12 µs inline, fib(20) 19 µs, fib(21) 31 µs, fib(25) 0.2 ms.
/// (`blocking`'s and tokio's pools measured about 20 µs.) So 20 is the first n whose fib
/// costs more than the hop: offloaded, it waits at most about twice as long as inline, and
/// from there on the stall that inline would cause the loop grows 1.6 times per n while the
/// hop stays the same. Other machines give other numbers (a 5 µs hop would put the crossover
/// at 17 or 18); the example prints yours.
pub const OFFLOAD_FROM_N: u32 = 20;
// ANCHOR_END: threshold

/// `fib(0) = 0`, `fib(1) = 1`, `fib(n) = fib(n - 1) + fib(n - 2)`, by plain recursion.
///
/// Callers keep `n <= MAX_FIB_N` (the protocol layer enforces it), so the sum cannot overflow.
/// Benchmarks wrap the argument in [`std::hint::black_box`] so the compiler cannot fold a
/// constant call away.
pub fn fib(n: u32) -> u64 {
    if n < 2 {
        u64::from(n)
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_values() {
        let expected = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610];
        for (n, want) in expected.into_iter().enumerate() {
            assert_eq!(fib(n as u32), want, "fib({n})");
        }
    }

    #[test]
    fn matches_the_iterative_definition_up_to_30() {
        let (mut a, mut b) = (0u64, 1u64);
        for n in 0..=30 {
            assert_eq!(fib(n), a, "fib({n})");
            (a, b) = (b, a + b);
        }
    }
}
