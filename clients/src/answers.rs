//! Counting answers in a byte stream by comparing it with the one answer line expected.
//!
//! Every answer on a connection should be the same line (`1\n` for the fast client), so the
//! stream must be that line repeated. The checker walks the stream against it with slice
//! comparisons (a `memcmp` per answer), never parsing a number. Answers may arrive split
//! anywhere, so it remembers how much of the current line has matched so far.
//!
//! When a byte differs, the checker collects the whole offending line, up to its `\n`, so the
//! error can quote what the server said (`error: n must be at most 45`). It also says how many
//! good answers came before that line and whether anything came after it: an `error: ` line
//! that is the last thing the server sends before closing (`error: idle timeout`) ends a run
//! with a report, while one followed by more lines is an answer, and an error.

/// How much of a wrong line to keep for the error message. Protocol errors are far shorter;
/// a server sending garbage without newlines must not make the client buffer forever.
const MAX_BAD_LINE: usize = 200;

/// A line that is not the expected answer, and where it was in the bytes fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// Good answers that came before the line in the same call: they count.
    pub answers: u64,
    /// The line, without its `\n`, cut at 200 bytes.
    pub line: Vec<u8>,
    /// Bytes that came after the line's `\n` in the same call (not checked).
    pub trailing: usize,
}

impl BadLine {
    /// Whether the server said `error: <reason>` (rather than a wrong number).
    pub fn is_error(&self) -> bool {
        is_error_line(&self.line)
    }
}

/// Whether `line` is the protocol's `error: <reason>`.
pub fn is_error_line(line: &[u8]) -> bool {
    line.starts_with(b"error: ")
}

/// At the end of the stream: the server's last line, if it was not an answer.
///
/// That is `error_line` (an `error: ` line already complete, that was waiting to see whether
/// the server closes after it) or a line the close cut short. An `error: ` line is the
/// server's reason for closing (`error: idle timeout`), returned as text (invalid UTF-8
/// replaced); any other line is a wrong answer even when the server closes after it, and is
/// returned as the error.
///
/// # Errors
///
/// The line, when it is not an `error: ` line.
pub fn last_words(
    error_line: Option<Vec<u8>>,
    checker: &mut AnswerChecker,
) -> Result<Option<String>, Vec<u8>> {
    let line = match error_line {
        Some(line) => line,
        None => match checker.unfinished_bad_line() {
            Some(line) if is_error_line(&line) => line,
            Some(line) => return Err(line),
            None => return Ok(None),
        },
    };
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

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
    /// The offending line as soon as it is complete (or too long to be worth waiting for),
    /// with the good answers before it. Until then a mismatching line is only remembered, and
    /// `Ok` counts the good answers before it.
    pub fn feed(&mut self, expected: &[u8], mut received: &[u8]) -> Result<u64, BadLine> {
        debug_assert!(expected.ends_with(b"\n"), "an answer line ends in \\n");
        let mut answers = 0;
        while !received.is_empty() {
            if let Some(bad_line) = &mut self.bad_line {
                return match received.iter().position(|&byte| byte == b'\n') {
                    Some(end) => {
                        bad_line.extend_from_slice(&received[..end]);
                        Err(self.take_bad_line(answers, received.len() - end - 1))
                    }
                    None => {
                        bad_line.extend_from_slice(received);
                        if bad_line.len() > MAX_BAD_LINE {
                            Err(self.take_bad_line(answers, 0))
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

    fn take_bad_line(&mut self, answers: u64, trailing: usize) -> BadLine {
        let mut line = self.bad_line.take().unwrap_or_default();
        line.truncate(MAX_BAD_LINE);
        BadLine {
            answers,
            line,
            trailing,
        }
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
        let bad = checker.feed(b"1\n", b"\n1\n").expect_err("10 is not 1");
        assert_eq!(
            (bad.answers, bad.line, bad.trailing),
            (0, b"10".to_vec(), 2)
        );
    }

    #[test]
    fn a_server_error_line_is_quoted() {
        let mut checker = AnswerChecker::new();
        let bad = checker
            .feed(b"12586269025\n", b"error: n must be at most 45\n")
            .expect_err("an error is not an answer");
        assert_eq!(bad.line, b"error: n must be at most 45");
        assert!(bad.is_error());
        assert_eq!(bad.trailing, 0, "nothing came after it");
    }

    #[test]
    fn the_answers_before_a_bad_line_still_count() {
        let mut checker = AnswerChecker::new();
        let bad = checker
            .feed(b"55\n", b"55\n55\n55\nerror: idle timeout\n")
            .expect_err("the last line is not an answer");
        assert_eq!(bad.answers, 3);
        assert_eq!(bad.line, b"error: idle timeout");
        let wrong = checker.feed(b"55\n", b"56\n").expect_err("56 is not 55");
        assert!(!wrong.is_error());
    }

    #[test]
    fn a_line_without_end_is_cut_short() {
        let mut checker = AnswerChecker::new();
        let garbage = vec![b'x'; 1000];
        let bad = checker.feed(b"1\n", &garbage).expect_err("not an answer");
        assert_eq!(bad.line.len(), MAX_BAD_LINE);
    }

    #[test]
    fn last_words_are_an_error_line_or_nothing() {
        let mut checker = AnswerChecker::new();
        assert_eq!(last_words(None, &mut checker), Ok(None));
        let line = b"error: idle timeout".to_vec();
        assert_eq!(
            last_words(Some(line), &mut checker),
            Ok(Some("error: idle timeout".into()))
        );
        assert_eq!(checker.feed(b"1\n", b"error: line too"), Ok(0));
        assert_eq!(
            last_words(None, &mut checker),
            Ok(Some("error: line too".into())),
            "cut short by the close"
        );
        assert_eq!(checker.feed(b"1\n", b"2"), Ok(0));
        assert_eq!(last_words(None, &mut checker), Err(b"2".to_vec()));
    }

    #[test]
    fn an_unfinished_wrong_line_is_available_at_the_end() {
        let mut checker = AnswerChecker::new();
        assert_eq!(checker.feed(b"1\n", b"err"), Ok(0));
        assert_eq!(checker.unfinished_bad_line(), Some(b"err".to_vec()));
        assert_eq!(AnswerChecker::new().unfinished_bad_line(), None);
    }
}
