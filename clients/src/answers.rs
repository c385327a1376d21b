//! Counting answers in a byte stream by comparing it with the one answer line expected.
//!
//! Every answer on a connection should be the same line (`1\n` for the fast client), so the
//! stream must be that line repeated. The checker walks the stream against it with slice
//! comparisons (a `memcmp` per answer), never parsing a number. Answers may arrive split
//! anywhere, so it remembers how much of the current line has matched so far.
//!
//! When a byte differs, the checker collects the whole offending line, up to its `\n`, so the
//! error can quote what the server said (`error: n must be at most 45`).

/// How much of a wrong line to keep for the error message. Protocol errors are far shorter;
/// a server sending garbage without newlines must not make the client buffer forever.
const MAX_BAD_LINE: usize = 200;

/// Streaming comparison of received bytes with a repeated answer line.
#[derive(Debug, Default)]
pub struct AnswerChecker {
    /// How many bytes of the expected line the current answer has matched.
    matched: usize,
    /// The current line stopped matching: its bytes so far, without the `\n`.
    bad_line: Option<Vec<u8>>,
}

impl AnswerChecker {
    /// A checker at the start of a line.
    pub fn new() -> AnswerChecker {
        AnswerChecker::default()
    }

    /// Checks the next `received` bytes against `expected` (an answer line, ending in `\n`)
    /// and returns how many complete answers they finished.
    ///
    /// # Errors
    ///
    /// The offending line, without its `\n`, as soon as it is complete (or too long to be
    /// worth waiting for). Until then a mismatching line is only remembered, and `Ok` counts
    /// the good answers before it.
    pub fn feed(&mut self, expected: &[u8], mut received: &[u8]) -> Result<u64, Vec<u8>> {
        debug_assert!(expected.ends_with(b"\n"), "an answer line ends in \\n");
        let mut answers = 0;
        while !received.is_empty() {
            if let Some(bad_line) = &mut self.bad_line {
                return match received.iter().position(|&byte| byte == b'\n') {
                    Some(end) => {
                        bad_line.extend_from_slice(&received[..end]);
                        Err(self.take_bad_line())
                    }
                    None => {
                        bad_line.extend_from_slice(received);
                        if bad_line.len() > MAX_BAD_LINE {
                            Err(self.take_bad_line())
                        } else {
                            Ok(answers)
                        }
                    }
                };
            }
            let wanted = &expected[self.matched..];
            let len = wanted.len().min(received.len());
            if received[..len] != wanted[..len] {
                // Start the bad line with the part that did match, which arrived earlier;
                // the next turn of the loop collects the rest up to the `\n`.
                self.bad_line = Some(expected[..self.matched].to_vec());
                self.matched = 0;
                continue;
            }
            self.matched += len;
            received = &received[len..];
            if self.matched == expected.len() {
                answers += 1;
                self.matched = 0;
            }
        }
        Ok(answers)
    }

    /// At the end of the stream: the line that had stopped matching, if one had, so that the
    /// error can say what the server sent before it closed.
    pub fn unfinished_bad_line(&mut self) -> Option<Vec<u8>> {
        self.bad_line.take()
    }

    fn take_bad_line(&mut self) -> Vec<u8> {
        let mut line = self.bad_line.take().unwrap_or_default();
        line.truncate(MAX_BAD_LINE);
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_answers_split_at_every_position() {
        let stream: &[u8] = b"55\n55\n55\n";
        for cut in 0..=stream.len() {
            let mut checker = AnswerChecker::new();
            let (head, tail) = stream.split_at(cut);
            let first = checker.feed(b"55\n", head).expect("all answers are right");
            let second = checker.feed(b"55\n", tail).expect("all answers are right");
            assert_eq!(first + second, 3, "cut at {cut}");
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let mut checker = AnswerChecker::new();
        let mut answers = 0;
        for byte in b"102334155\n102334155\n".chunks(1) {
            answers += checker.feed(b"102334155\n", byte).expect("right answers");
        }
        assert_eq!(answers, 2);
    }

    #[test]
    fn a_wrong_line_is_returned_whole_once_its_newline_arrives() {
        let mut checker = AnswerChecker::new();
        // Matches "1" of "1\n", then differs: the line is "10".
        assert_eq!(checker.feed(b"1\n", b"1\n1"), Ok(1));
        assert_eq!(
            checker.feed(b"1\n", b"0"),
            Ok(0),
            "the line is not complete"
        );
        assert_eq!(checker.feed(b"1\n", b"\n1\n"), Err(b"10".to_vec()));
    }

    #[test]
    fn a_server_error_line_is_quoted() {
        let mut checker = AnswerChecker::new();
        let result = checker.feed(b"12586269025\n", b"error: n must be at most 45\n");
        assert_eq!(result, Err(b"error: n must be at most 45".to_vec()));
    }

    #[test]
    fn a_line_without_end_is_cut_short() {
        let mut checker = AnswerChecker::new();
        let garbage = vec![b'x'; 1000];
        let line = checker.feed(b"1\n", &garbage).expect_err("not an answer");
        assert_eq!(line.len(), MAX_BAD_LINE);
    }

    #[test]
    fn an_unfinished_wrong_line_is_available_at_the_end() {
        let mut checker = AnswerChecker::new();
        assert_eq!(checker.feed(b"1\n", b"err"), Ok(0));
        assert_eq!(checker.unfinished_bad_line(), Some(b"err".to_vec()));
        assert_eq!(AnswerChecker::new().unfinished_bad_line(), None);
    }
}
