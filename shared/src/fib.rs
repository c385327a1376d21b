//! The deliberate CPU work: the naive recursive Fibonacci function.
//!
//! `fib(n)` makes about `1.6^n` calls, so its cost grows quickly: fib(30) takes milliseconds,
//! fib(40) roughly half a second on one core. That is the point. The workshop needs a request
//! whose cost is pure CPU and easy to dial up, so it can show what CPU work does to each
//! concurrency style. Never memoise it or replace it with the closed form or a loop.

/// The largest `n` whose `fib(n)` fits in a `u64`: fib(93) = 12200160415121876738.
pub const MAX_FIB_N: u32 = 93;

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
