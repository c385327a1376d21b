//! The one request a client sends again and again, and the exact answer line it expects.
//!
//! Both are built once, before the run: the fast client then writes the same bytes for every
//! request and checks every answer with a byte comparison, never formatting or parsing a
//! number on the hot path.

use crate::error::ClientError;
use shared::fib::MAX_FIB_N;

/// A request line (`40\n`) and the answer line it must get back (`102334155\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    n: u32,
    value: u64,
    line: Vec<u8>,
    answer: Vec<u8>,
}

impl Request {
    /// The request for `fib(n)`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Config`] when `n` is above 93: fib(94) does not fit in 64 bits, so no
    /// server of this protocol can answer it. (Anything from the server's `--max-n` up to 93
    /// is a valid request that gets `error: n must be at most ...`: a way to test errors.)
    pub fn new(n: u32) -> Result<Request, ClientError> {
        if n > MAX_FIB_N {
            return Err(ClientError::Config(format!(
                "n must be at most {MAX_FIB_N} (fib({n}) does not fit in 64 bits)"
            )));
        }
        let value = fib_by_iteration(n);
        Ok(Request {
            n,
            value,
            line: format!("{n}\n").into_bytes(),
            answer: format!("{value}\n").into_bytes(),
        })
    }

    /// The `n` asked for.
    pub fn n(&self) -> u32 {
        self.n
    }

    /// `fib(n)`, the value the server must answer.
    pub fn value(&self) -> u64 {
        self.value
    }

    /// The bytes to send: `n` in decimal and `\n`.
    pub fn line(&self) -> &[u8] {
        &self.line
    }

    /// The bytes to expect back: `fib(n)` in decimal and `\n`.
    pub fn answer(&self) -> &[u8] {
        &self.answer
    }
}

/// `fib(n)` by a loop, for `n <= 93`.
///
/// The server computes fib by recursion on purpose: that is the CPU work being measured. The
/// client only needs the value to check the answer, and must not spend half a second of the
/// CPU it shares with the server to know that fib(40) is 102334155.
fn fib_by_iteration(n: u32) -> u64 {
    let (mut current, mut next) = (0u64, 1u64);
    for _ in 0..n {
        // `wrapping_add` because the last step computes fib(n + 1), which overflows for
        // n = 93; that value is never used.
        (current, next) = (next, current.wrapping_add(next));
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_agrees_with_the_servers_recursion() {
        for n in 0..=25 {
            assert_eq!(fib_by_iteration(n), shared::fib::fib(n), "fib({n})");
        }
    }

    #[test]
    fn lines_are_built_once_in_decimal() {
        let request = Request::new(40).expect("40 <= 93");
        assert_eq!(request.line(), b"40\n");
        assert_eq!(request.answer(), b"102334155\n");
        assert_eq!(request.value(), 102334155);
    }

    #[test]
    fn the_largest_n_fits_and_the_next_is_refused() {
        let request = Request::new(93).expect("93 is the largest n");
        assert_eq!(request.value(), 12200160415121876738);
        let error = Request::new(94).expect_err("fib(94) overflows u64");
        assert_eq!(
            error.to_string(),
            "n must be at most 93 (fib(94) does not fit in 64 bits)"
        );
    }
}
