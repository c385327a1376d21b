//! The fib line protocol: framing requests out of a byte stream, parsing them, writing answers.
//!
//! A request is one line, `n` in decimal with optional blanks and an optional `\r` before the
//! `\n`; the answer is `fib(n)` in decimal and a `\n`, or `error: <reason>\n`. Every step calls
//! these same functions, so the only thing that differs between steps is how they wait for
//! bytes: the concurrency style, which is the lesson.
//!
//! ```
//! use shared::protocol::{Frame, LineBuffer, Flow, answer};
//!
//! let mut lines = LineBuffer::new();
//! let mut out = Vec::new();
//! // Pretend a socket read delivered two requests and half of a third.
//! let input = b"10\n 3 \r\n2";
//! lines.spare()[..input.len()].copy_from_slice(input);
//! lines.filled(input.len());
//! while let Some(frame) = lines.next_frame() {
//!     assert_eq!(answer(frame, 45, &mut out), Flow::Continue);
//! }
//! assert_eq!(out, b"55\n2\n");
//! ```

use std::fmt;

use crate::fib::{MAX_FIB_N, fib};

/// The longest line the server accepts, in bytes before its `\n` (a `\r` counts).
///
/// Without a bound a client could make the server buffer without end; 64 bytes is far more
/// than any valid request needs (93 has two digits) and small enough to keep per connection.
pub const MAX_LINE: usize = 64;

/// How many bytes a [`LineBuffer`] reads at a time unless told otherwise. Large enough that a
/// pipelining client's whole burst usually arrives in one read.
pub const DEFAULT_READ_CAPACITY: usize = 4096;

/// What [`LineBuffer::next_frame`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// One complete line, without its `\n` (a `\r` before it is still there).
    Line(&'a [u8]),
    /// More than [`MAX_LINE`] bytes arrived without a `\n`. The connection must be answered
    /// `error: line too long` and closed: we cannot know where the next request starts.
    TooLong,
}

/// Incremental line framing over a fixed buffer.
///
/// Bytes are read straight into [`spare`](Self::spare) (no copy through a temporary), and
/// [`next_frame`](Self::next_frame) hands out complete lines as slices of the buffer. It
/// remembers how far it has searched for `\n`, so bytes that arrive one at a time are each
/// looked at once, never rescanned. After every complete line has been taken, at most
/// [`MAX_LINE`] bytes of a partial line remain, and those are all [`spare`](Self::spare) ever
/// moves to make room.
#[derive(Debug)]
pub struct LineBuffer {
    buf: Box<[u8]>,
    /// The first byte not yet handed out in a frame.
    start: usize,
    /// One past the last byte received.
    end: usize,
    /// `start..scanned` is known to hold no `\n`.
    scanned: usize,
    /// A line was too long: the stream cannot be framed any further.
    poisoned: bool,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuffer {
    /// A buffer that reads up to [`DEFAULT_READ_CAPACITY`] bytes at a time.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_READ_CAPACITY)
    }

    /// A buffer of `capacity` bytes; it is raised to `MAX_LINE + 2` if smaller, so that a
    /// line of the longest legal length and its `\r\n` always fit.
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(MAX_LINE + 2);
        LineBuffer {
            buf: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
            scanned: 0,
            poisoned: false,
        }
    }

    /// The free space to read into; report how much was read with [`filled`](Self::filled).
    ///
    /// Call it after [`next_frame`](Self::next_frame) has returned `None`: then at most
    /// [`MAX_LINE`] unframed bytes remain, so the space is never empty.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.end == self.buf.len() && self.start > 0 {
            // Slide the partial line to the front. It is short (at most MAX_LINE bytes once
            // every complete line has been taken), so this copy is cheap, and it happens only
            // when the buffer is full, not on every read.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scanned -= self.start;
            self.start = 0;
        }
        debug_assert!(
            self.end < self.buf.len(),
            "spare() called with complete lines unread"
        );
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were written at the front of [`spare`](Self::spare).
    pub fn filled(&mut self, n: usize) {
        assert!(
            n <= self.buf.len() - self.end,
            "filled more than the spare space"
        );
        self.end += n;
    }

    /// Copies as much of `data` as fits into the spare space and returns how many bytes it
    /// took. For I/O that reads into buffers of its own (io_uring's provided buffers).
    pub fn push(&mut self, data: &[u8]) -> usize {
        let spare = self.spare();
        let n = spare.len().min(data.len());
        spare[..n].copy_from_slice(&data[..n]);
        self.filled(n);
        n
    }

    /// The next complete line, [`Frame::TooLong`] once if a line outgrew [`MAX_LINE`], or
    /// `None` when more bytes are needed (and forever after `TooLong`).
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        if self.poisoned {
            return None;
        }
        match self.buf[self.scanned..self.end]
            .iter()
            .position(|&b| b == b'\n')
        {
            Some(offset) => {
                let newline = self.scanned + offset;
                let line_start = self.start;
                self.start = newline + 1;
                self.scanned = self.start;
                if newline - line_start > MAX_LINE {
                    self.poisoned = true;
                    return Some(Frame::TooLong);
                }
                Some(Frame::Line(&self.buf[line_start..newline]))
            }
            None => {
                self.scanned = self.end;
                // Say so as soon as the line is too long, rather than buffering until a `\n`
                // that may never come.
                if self.end - self.start > MAX_LINE {
                    self.poisoned = true;
                    return Some(Frame::TooLong);
                }
                None
            }
        }
    }

    /// Whether bytes of an unfinished line are waiting for their `\n`.
    pub fn has_partial_line(&self) -> bool {
        self.end > self.start
    }
}

/// Why a request got an `error: ...` answer instead of a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// The line held nothing but blanks.
    Empty,
    /// A minus sign before digits.
    Negative,
    /// Digits with a fractional part, like `1.5`.
    NotWhole,
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// Anything else that is not a plain decimal number (`abc`, `12abc`, `1 2`, `+4`).
    NotANumber,
    /// `n` is larger than the server's maximum (including numbers no integer type can hold).
    TooLarge { max_n: u32 },
    /// More than [`MAX_LINE`] bytes before a `\n`. The connection closes after this answer.
    LineTooLong,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Empty => f.write_str("empty request"),
            ProtocolError::Negative => f.write_str("n must not be negative"),
            ProtocolError::NotWhole => f.write_str("n must be a whole number"),
            ProtocolError::InvalidUtf8 => f.write_str("request is not valid utf-8"),
            ProtocolError::NotANumber => f.write_str("not a number"),
            ProtocolError::TooLarge { max_n } => write!(f, "n must be at most {max_n}"),
            ProtocolError::LineTooLong => f.write_str("line too long"),
        }
    }
}

impl std::error::Error for ProtocolError {}

fn is_blank(byte: &u8) -> bool {
    *byte == b' ' || *byte == b'\t'
}

/// Parses one line (without its `\n`) into `n`, checking it against `max_n`.
///
/// # Errors
///
/// A [`ProtocolError`] for every kind of bad input the protocol lists.
pub fn parse_request(line: &[u8], max_n: u32) -> Result<u32, ProtocolError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let first = line.iter().position(|b| !is_blank(b));
    let last = line.iter().rposition(|b| !is_blank(b));
    let digits = match (first, last) {
        (Some(first), Some(last)) => &line[first..=last],
        _ => return Err(ProtocolError::Empty),
    };
    if digits.iter().all(u8::is_ascii_digit) {
        // Accumulate digit by digit and stop as soon as the value passes max_n, so a number
        // of any length (even one that overflows u128) is "too large", never an overflow.
        let mut n: u32 = 0;
        for &digit in digits {
            n = n * 10 + u32::from(digit - b'0');
            if n > max_n {
                return Err(ProtocolError::TooLarge { max_n });
            }
        }
        return Ok(n);
    }
    Err(classify_bad_number(digits))
}

/// Picks the most helpful reason for a token that is not all digits.
fn classify_bad_number(token: &[u8]) -> ProtocolError {
    let Ok(text) = std::str::from_utf8(token) else {
        return ProtocolError::InvalidUtf8;
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = text.strip_prefix('-') {
        if all_digits(rest)
            || rest
                .split_once('.')
                .is_some_and(|(a, b)| all_digits(a) && all_digits(b))
        {
            return ProtocolError::Negative;
        }
    }
    if text
        .split_once('.')
        .is_some_and(|(whole, frac)| all_digits(whole) && all_digits(frac))
    {
        return ProtocolError::NotWhole;
    }
    ProtocolError::NotANumber
}

/// Appends `value` in decimal and a `\n` to `out`.
pub fn write_answer(out: &mut Vec<u8>, value: u64) {
    // Formatting by hand into a stack buffer: `write!` would go through fmt's machinery for
    // every answer, which shows up when a step serves half a million answers a second.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut rest = value;
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.push(b'\n');
}

/// Appends `error: <reason>\n` to `out`.
pub fn write_error(out: &mut Vec<u8>, error: ProtocolError) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = writeln!(out, "error: {error}");
}

/// Whether the connection goes on after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading requests.
    Continue,
    /// The line was too long: send what is in the output buffer, then close.
    Close,
}

/// What a frame asks of the server, once its errors are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Compute fib(n) and write it with [`write_answer`].
    Fib(u32),
    /// Nothing more: the frame was bad and its error is written already. The flow says
    /// whether the connection goes on.
    Answered(Flow),
}

/// Turns a frame into what it asks for: fib(n), or (for a bad line) its error, written to
/// `out` at once. Where fib is computed is each step's business; this is the part every step
/// shares.
pub fn request(frame: Frame<'_>, max_n: u32, out: &mut Vec<u8>) -> Request {
    match frame {
        Frame::Line(line) => match parse_request(line, max_n) {
            Ok(n) => Request::Fib(n),
            Err(error) => {
                write_error(out, error);
                Request::Answered(Flow::Continue)
            }
        },
        Frame::TooLong => {
            write_error(out, ProtocolError::LineTooLong);
            Request::Answered(Flow::Close)
        }
    }
}

/// Answers one frame on the calling thread: parse, compute fib, append the answer to `out`.
///
/// Steps that keep CPU work on the I/O thread use this; steps that offload fib call
/// [`request`] and compute the [`Request::Fib`] elsewhere.
pub fn answer(frame: Frame<'_>, max_n: u32, out: &mut Vec<u8>) -> Flow {
    match request(frame, max_n, out) {
        Request::Fib(n) => {
            write_answer(out, fib(n));
            Flow::Continue
        }
        Request::Answered(flow) => flow,
    }
}

/// The answer a connection gets when it has been idle for the server's `--idle-timeout`:
/// no answer outstanding and no complete line received for that long. The connection is
/// closed after it.
pub const IDLE_TIMEOUT_ANSWER: &[u8] = b"error: idle timeout\n";

/// The answer to a CPU-heavy request that finds the compute pool's queue full (`--queue`):
/// shedding load at once beats making it wait behind minutes of queued work. The connection
/// goes on.
pub const BUSY_ANSWER: &[u8] = b"error: busy\n";

/// The default and the ceiling of `--max-n`.
pub const DEFAULT_MAX_N: u32 = 45;
const _: () = assert!(DEFAULT_MAX_N <= MAX_FIB_N);

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` through a LineBuffer in chunks of the given sizes and answers every frame.
    fn serve_chunks(chunks: &[&[u8]]) -> (Vec<u8>, Flow) {
        let mut lines = LineBuffer::with_capacity(128);
        let mut out = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            while !rest.is_empty() {
                let taken = lines.push(rest);
                rest = &rest[taken..];
                while let Some(frame) = lines.next_frame() {
                    if answer(frame, DEFAULT_MAX_N, &mut out) == Flow::Close {
                        return (out, Flow::Close);
                    }
                }
            }
        }
        (out, Flow::Continue)
    }

    fn serve(input: &[u8]) -> (Vec<u8>, Flow) {
        serve_chunks(&[input])
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn good_requests() {
        assert_eq!(text(&serve(b"0\n1\n10\n").0), "0\n1\n55\n");
        assert_eq!(
            text(&serve(b"  7\t \n").0),
            "13\n",
            "blanks around the number"
        );
        assert_eq!(text(&serve(b"\t12\r\n").0), "144\n", "CRLF and a tab");
        assert_eq!(
            text(&serve(b"007\n").0),
            "13\n",
            "leading zeros are decimal digits"
        );
    }

    #[test]
    fn every_bad_input_of_the_protocol_gets_an_error_and_the_connection_goes_on() {
        let cases: &[(&[u8], &str)] = &[
            (b"abc", "error: not a number"),
            (b"-3", "error: n must not be negative"),
            (b"1.5", "error: n must be a whole number"),
            (b"12abc", "error: not a number"),
            (b"", "error: empty request"),
            (b"   \t", "error: empty request"),
            (b"\r", "error: empty request"),
            (b"\xff\xfe", "error: request is not valid utf-8"),
            (b"1 2", "error: not a number"),
            (b"+4", "error: not a number"),
            (b"46", "error: n must be at most 45"),
            (b"93", "error: n must be at most 45"),
            (
                b"99999999999999999999999999999999999999999999",
                "error: n must be at most 45",
            ),
            (b"5\r\r", "error: not a number"),
        ];
        for (bad, want) in cases {
            let mut input = bad.to_vec();
            input.extend_from_slice(b"\n6\n");
            let (out, flow) = serve(&input);
            assert_eq!(flow, Flow::Continue, "input {bad:?}");
            assert_eq!(text(&out), format!("{want}\n8\n"), "input {bad:?}");
        }
    }

    #[test]
    fn max_n_is_configurable_up_to_93() {
        assert_eq!(parse_request(b"93", 93), Ok(93));
        assert_eq!(
            parse_request(b"94", 93),
            Err(ProtocolError::TooLarge { max_n: 93 })
        );
        assert_eq!(
            parse_request(b"3", 2),
            Err(ProtocolError::TooLarge { max_n: 2 })
        );
        let mut out = Vec::new();
        write_answer(&mut out, fib_93());
        assert_eq!(text(&out), "12200160415121876738\n");
    }

    fn fib_93() -> u64 {
        // fib(93) by iteration: recursion would take years.
        let (mut a, mut b) = (0u64, 1u64);
        for _ in 0..93 {
            (a, b) = (b, a.wrapping_add(b));
        }
        a
    }

    #[test]
    fn a_request_split_at_every_byte_position() {
        let input: &[u8] = b" 20\r\n3\n";
        for cut in 0..=input.len() {
            let (head, tail) = input.split_at(cut);
            let (out, _) = serve_chunks(&[head, tail]);
            assert_eq!(text(&out), "6765\n2\n", "cut at {cut}");
        }
        // And one byte per read.
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(text(&serve_chunks(&bytes).0), "6765\n2\n");
    }

    #[test]
    fn pipelined_requests_in_one_read_are_answered_in_order() {
        let mut input = Vec::new();
        let mut want = String::new();
        for i in 0..1000u32 {
            let n = i % 25;
            input.extend_from_slice(format!("{n}\n").as_bytes());
            want.push_str(&format!("{}\n", fib(n)));
        }
        assert_eq!(text(&serve(&input).0), want);
    }

    #[test]
    fn line_limit_at_63_64_and_65_bytes() {
        for (len, ok) in [(63, true), (64, true), (65, false)] {
            // A number padded with blanks to exactly `len` bytes before the `\n`.
            let mut line = vec![b' '; len - 1];
            line.push(b'9');
            line.extend_from_slice(b"\n2\n");
            let (out, flow) = serve(&line);
            if ok {
                assert_eq!(
                    (text(&out), flow),
                    ("34\n1\n", Flow::Continue),
                    "{len} bytes"
                );
            } else {
                assert_eq!(
                    (text(&out), flow),
                    ("error: line too long\n", Flow::Close),
                    "{len} bytes"
                );
            }
        }
    }

    #[test]
    fn a_carriage_return_counts_towards_the_limit() {
        let mut line = vec![b' '; 63];
        line.extend_from_slice(b"9\r\n");
        assert_eq!(serve(&line).1, Flow::Close);
    }

    #[test]
    fn too_long_is_reported_before_the_newline_arrives() {
        let mut lines = LineBuffer::new();
        assert_eq!(lines.push(&[b'1'; 65]), 65);
        assert_eq!(lines.next_frame(), Some(Frame::TooLong));
        assert_eq!(
            lines.next_frame(),
            None,
            "nothing is framed after a line too long"
        );
    }

    #[test]
    fn requests_before_a_long_line_are_answered() {
        let mut input = b"3\n4\n".to_vec();
        input.extend_from_slice(&[b'7'; 100]);
        let (out, flow) = serve(&input);
        assert_eq!(
            (text(&out), flow),
            ("2\n3\nerror: line too long\n", Flow::Close)
        );
    }

    #[test]
    fn the_buffer_compacts_only_the_partial_tail() {
        // 128-byte buffer, many short lines: the stream goes on far past the capacity.
        let mut lines = LineBuffer::with_capacity(128);
        let mut answered = 0;
        for _ in 0..10_000 {
            lines.push(b"1\n22");
            lines.push(b"\n");
            while let Some(frame) = lines.next_frame() {
                assert!(matches!(frame, Frame::Line(_)));
                answered += 1;
            }
            assert!(!lines.has_partial_line());
        }
        assert_eq!(answered, 20_000);
    }

    #[test]
    fn answers_format_every_digit_count() {
        for value in [0, 9, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            write_answer(&mut out, value);
            assert_eq!(text(&out), format!("{value}\n"));
        }
    }
}
