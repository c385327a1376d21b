//! The slow client: one CPU-heavy request at a time, timed.
//!
//! ```text
//! cargo run -p step02                                 # in one terminal
//! cargo run -p clients --bin slow -- --conns 2        # in another
//! ```
//!
//! **What it measures:** how long the server takes to answer fib(40), about 0.3 s of pure CPU
//! work. Alone, that is the cost of the work. Two slow clients at once show whether the
//! server computes on several cores (each still takes 0.3 s) or on one (0.6 s, or one waits
//! for the other). Beside a fast client, they show whether CPU work in one connection stalls
//! everyone else.
//!
//! **Why it is written this way:** it sends a request every half second, not thousands, so
//! its own efficiency does not matter and it uses the simplest thing: a blocking socket on a
//! thread per connection. The threads sleep in `read` while the server computes. A read
//! timeout wakes them regularly to look at the stop flag and the deadline, so a run against
//! a server that never answers still ends on time.
//!
//! **How a run ends:** as the fast client's does ([`Ended`]): at `--secs` or `--count`, on
//! Ctrl-C, or when the server closes a connection, which stops the other clients too.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::answers::{AnswerChecker, last_words};
use crate::connect::{connect, ensure_file_limit};
use crate::error::{ClientError, closed_by_peer};
use crate::fast::connection::LAST_WORDS_PATIENCE;
use crate::report::{Ended, SlowAnswer, SlowReport};
use crate::request::Request;
use shared::protocol::BUSY_ANSWER;

/// How long a blocked read or write waits before looking at the stop flag and the deadline.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// How long a slow client waits after `error: busy` (the server's compute pool was full)
/// before it asks again: long enough not to hammer a server that said "not now", short
/// against the fib(40) it waits for.
pub const BUSY_PAUSE: Duration = Duration::from_millis(100);

/// What a slow run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowConfig {
    /// The server's address.
    pub addr: SocketAddr,
    /// How many slow clients at once, each on its own connection and thread.
    pub conns: usize,
    /// The `n` of every request.
    pub n: u32,
    /// Stop after this long (measured after connecting); a request still being computed
    /// then is abandoned and not counted.
    pub duration: Option<Duration>,
    /// Stop after this many answers in total.
    pub count: Option<u64>,
}

impl Default for SlowConfig {
    /// One connection asking for fib(40) to the default address, no limit.
    fn default() -> Self {
        SlowConfig {
            addr: crate::cli::default_addr(),
            conns: 1,
            n: 40,
            duration: None,
            count: None,
        }
    }
}

/// Runs a slow load until `config.duration` or `config.count` is reached, `stop` is set, or
/// the server closes a connection; the report's [`ended`](SlowReport::ended) says which.
///
/// `on_answer` is called, from the connection's thread, for every answer as it arrives.
///
/// # Errors
///
/// As for [`run_fast`](crate::run_fast): an invalid configuration, too low an open-file
/// limit, a failed connect, or a server that misbehaves. The first error on any connection
/// stops the others.
pub fn run_slow(
    config: &SlowConfig,
    stop: &AtomicBool,
    on_answer: &(dyn Fn(&SlowAnswer) + Sync),
) -> Result<SlowReport, ClientError> {
    if config.conns == 0 {
        return Err(ClientError::Config(
            "the slow client needs at least one connection".into(),
        ));
    }
    let request = Request::new(config.n)?;
    ensure_file_limit(config.conns)?;
    // Connect every client before starting any, so that a server which is not there is one
    // clear error rather than a race between threads.
    let streams = (0..config.conns)
        .map(|_| open(config.addr))
        .collect::<Result<Vec<_>, _>>()?;

    let start = Instant::now();
    let run = SlowRun {
        request,
        deadline: config.duration.map(|duration| start + duration),
        unsent: config.count.map(AtomicU64::new),
        stop,
        failed: AtomicBool::new(false),
        server_closed: Mutex::new(None),
        times: Mutex::new(Vec::new()),
        busy: AtomicU64::new(0),
        on_answer,
    };
    let results: Vec<Result<u64, ClientError>> = thread::scope(|scope| {
        let handles: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(index, stream)| {
                let run = &run;
                scope.spawn(move || run.client(stream, index + 1))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| match handle.join() {
                Ok(result) => result,
                // A panic in a client thread is a bug: let it surface as one.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    let end = Instant::now();

    let per_connection = results.into_iter().collect::<Result<Vec<u64>, _>>()?;
    let ended = match into_inner(run.server_closed) {
        Some(closed) => closed,
        None if stop.load(Ordering::Relaxed) => Ended::Stopped,
        None if run.deadline.is_some_and(|deadline| end >= deadline) => Ended::Deadline,
        // No thread stops for another reason: the server did not close, nobody asked to
        // stop, and the time was not up, so the count ran out.
        None => Ended::Count,
    };
    Ok(SlowReport {
        n: config.n,
        elapsed: end - start,
        times: into_inner(run.times),
        per_connection,
        busy: run.busy.into_inner(),
        ended,
    })
}

/// What a mutex held once the threads have ended. Nobody else holds the lock then; a
/// poisoned lock would mean a thread panicked while holding it, and that panic was resumed
/// already.
fn into_inner<T>(mutex: Mutex<T>) -> T {
    mutex
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Connects one slow client: blocking, with timeouts so that no call waits for long.
fn open(addr: SocketAddr) -> Result<TcpStream, ClientError> {
    let stream = connect(addr)?;
    stream
        .set_read_timeout(Some(STOP_CHECK_INTERVAL))
        .and_then(|()| stream.set_write_timeout(Some(STOP_CHECK_INTERVAL)))
        .map_err(|error| ClientError::Connect { addr, error })?;
    Ok(stream)
}

/// What the client threads of one run share.
struct SlowRun<'a> {
    request: Request,
    deadline: Option<Instant>,
    /// Requests that `--count` still allows, taken one at a time by whichever thread is
    /// ready first; `None` for no limit.
    unsent: Option<AtomicU64>,
    stop: &'a AtomicBool,
    /// Set by the first thread that fails, so that the others stop too.
    failed: AtomicBool,
    /// How the server ended the run, set by the first thread that saw it close its
    /// connection; the others then stop too.
    server_closed: Mutex<Option<Ended>>,
    times: Mutex<Vec<Duration>>,
    /// Requests answered `error: busy`, over all connections.
    busy: AtomicU64,
    on_answer: &'a (dyn Fn(&SlowAnswer) + Sync),
}

/// How a wait on the socket ended.
enum Wait<T> {
    Done(T),
    Stopped,
}

/// How waiting for an answer ended.
enum Received {
    /// The answer arrived, then.
    Answer(Instant),
    /// The server's pool was full: `error: busy`, and the connection stays open.
    Busy,
    /// The run is over (deadline, Ctrl-C, another connection ended it).
    Stopped,
    /// The server closed the connection, maybe right after the answer (when it arrived).
    Closed {
        answer: Option<Instant>,
        last_line: Option<String>,
        reset: bool,
    },
}

impl SlowRun<'_> {
    /// One slow client: request, wait, time, repeat. Returns how many answers it got.
    fn client(&self, stream: TcpStream, connection: usize) -> Result<u64, ClientError> {
        let result = self.requests(stream, connection);
        if result.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        result
    }

    fn requests(&self, mut stream: TcpStream, connection: usize) -> Result<u64, ClientError> {
        let mut checker = AnswerChecker::new();
        let mut answered = 0;
        while !self.should_stop() && self.take_request() {
            let sent_at = Instant::now();
            match self.send(&mut stream) {
                Ok(Wait::Done(())) => {}
                Ok(Wait::Stopped) => break,
                // The server has closed the connection: reading tells how (its last line,
                // an end of stream, a reset).
                Err(error) if closed_by_peer(&error) => {}
                Err(error) => return Err(ClientError::io(error, connection)),
            }
            let received = self.receive(&mut stream, &mut checker, connection)?;
            let answer_at = match &received {
                Received::Stopped => break,
                // Not an answer, not an error of the server's: ask again in a moment (the
                // request given back, so that `--count` still counts answers).
                Received::Busy => {
                    self.busy.fetch_add(1, Ordering::Relaxed);
                    if let Some(unsent) = &self.unsent {
                        unsent.fetch_add(1, Ordering::Relaxed);
                    }
                    thread::sleep(BUSY_PAUSE);
                    continue;
                }
                Received::Answer(at) => Some(*at),
                Received::Closed { answer, .. } => *answer,
            };
            // An answer that arrives after the run has ended is not counted, like a request
            // still in flight: the run measures what the server did in its time. (A server
            // that serves one connection at a time answers a waiting client the moment the
            // other one leaves at the deadline; counting that would hide the starvation.)
            if self.past_deadline() {
                break;
            }
            if let Some(at) = answer_at {
                answered += 1;
                self.record(connection, at - sent_at);
            }
            if let Received::Closed {
                last_line, reset, ..
            } = received
            {
                self.server_ended(Ended::ServerClosed {
                    connection,
                    answered,
                    last_line,
                    reset,
                });
                break;
            }
        }
        Ok(answered)
    }

    /// Reports and keeps one answer's time.
    fn record(&self, connection: usize, time: Duration) {
        (self.on_answer)(&SlowAnswer {
            connection,
            n: self.request.n(),
            value: self.request.value(),
            time,
        });
        self.times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(time);
    }

    /// Records how the server ended the run, unless another connection saw it first.
    fn server_ended(&self, ended: Ended) {
        self.server_closed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get_or_insert(ended);
    }

    /// Writes the request line, in pieces if the socket takes only part of it.
    fn send(&self, stream: &mut TcpStream) -> io::Result<Wait<()>> {
        let mut line = self.request.line();
        while !line.is_empty() {
            match stream.write(line) {
                Ok(0) => return Err(io::ErrorKind::BrokenPipe.into()),
                Ok(written) => line = &line[written..],
                Err(error) if is_timeout(&error) => {
                    if self.should_stop() {
                        return Ok(Wait::Stopped);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(Wait::Done(()))
    }

    /// Reads until one complete answer has arrived and checked out, or the server closes.
    ///
    /// An `error: ` line instead of the answer may be the server's last words
    /// (`error: idle timeout`, then the end of the stream) or its answer to the request
    /// (`error: n must be at most 45`, and the connection stays open): it waits up to
    /// [`LAST_WORDS_PATIENCE`] for the end of the stream to tell them apart.
    fn receive(
        &self,
        stream: &mut TcpStream,
        checker: &mut AnswerChecker,
        connection: usize,
    ) -> Result<Received, ClientError> {
        let expected = self.request.answer();
        let bad_answer = |line: &[u8]| {
            ClientError::from_bad_answer(self.request.n(), self.request.value(), line)
        };
        let closed = |answer, error_line, checker: &mut AnswerChecker, reset| {
            let last_line = last_words(error_line, checker).map_err(|line| bad_answer(&line))?;
            Ok(Received::Closed {
                answer,
                last_line,
                reset,
            })
        };
        // An answer is at most 21 bytes, and one request is in flight, so a read never
        // brings more than one (and maybe the server's last words after it).
        let mut buffer = [0u8; 64];
        let mut answer = None;
        let mut error_line: Option<(Vec<u8>, Instant)> = None;
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => return closed(answer, error_line.map(|(line, _)| line), checker, false),
                Ok(received) => {
                    if let Some((line, _)) = &error_line {
                        // More came after the error line: it was not the server's last words.
                        return Err(bad_answer(line));
                    }
                    match checker.feed(expected, &buffer[..received]) {
                        Ok(0) => {}
                        Ok(1) => return Ok(Received::Answer(Instant::now())),
                        Ok(_) => return Err(ClientError::ExtraAnswer { connection }),
                        Err(bad) => {
                            if bad.answers > 1 {
                                return Err(ClientError::ExtraAnswer { connection });
                            }
                            if bad.answers == 1 {
                                answer = Some(Instant::now());
                            }
                            if !bad.is_error() || bad.trailing > 0 {
                                return Err(bad_answer(&bad.line));
                            }
                            if bad.answers == 0 && bad.line == BUSY_ANSWER.trim_ascii_end() {
                                return Ok(Received::Busy);
                            }
                            error_line = Some((bad.line, Instant::now()));
                        }
                    }
                }
                Err(error) if is_timeout(&error) => match &error_line {
                    // No end of stream after the error line: it answered the request.
                    Some((line, since)) if since.elapsed() >= LAST_WORDS_PATIENCE => {
                        return Err(bad_answer(line));
                    }
                    // Waiting for what follows the error line decides how the run ends,
                    // within a moment: the stop flag can wait.
                    Some(_) => {}
                    // The server is still computing: a chance to notice the end of the run.
                    None if self.should_stop() => return Ok(Received::Stopped),
                    None => {}
                },
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if closed_by_peer(&error) => {
                    return closed(answer, error_line.map(|(line, _)| line), checker, true);
                }
                Err(error) => return Err(ClientError::io(error, connection)),
            }
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self.failed.load(Ordering::Relaxed)
            || self.past_deadline()
            || self
                .server_closed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .is_some()
    }

    fn past_deadline(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Takes one request from the `--count` budget; false when it is used up.
    fn take_request(&self) -> bool {
        match &self.unsent {
            None => true,
            Some(unsent) => unsent
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// A blocking call ran into its timeout. Linux reports `WouldBlock` (EAGAIN), other
/// systems `TimedOut`.
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
