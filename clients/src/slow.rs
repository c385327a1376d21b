//! The slow client: one CPU-heavy request at a time, timed.
//!
//! ```text
//! cargo run -p step02                                 # in one terminal
//! cargo run -p clients --bin slow -- --conns 2        # in another
//! ```
//!
//! **What it measures:** how long the server takes to answer fib(40), about 0.4 s of pure CPU
//! work. Alone, that is the cost of the work. Two slow clients at once show whether the
//! server computes on several cores (each still takes 0.4 s) or on one (0.8 s, or one waits
//! for the other). Beside a fast client, they show whether CPU work in one connection stalls
//! everyone else.
//!
//! **Why it is written this way:** it sends a request every half second, not thousands, so
//! its own efficiency does not matter and it uses the simplest thing: a blocking socket on a
//! thread per connection. The threads sleep in `read` while the server computes. A read
//! timeout wakes them regularly to look at the stop flag and the deadline, so a run against
//! a server that never answers still ends on time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::answers::AnswerChecker;
use crate::connect::connect;
use crate::error::ClientError;
use crate::report::{SlowAnswer, SlowReport};
use crate::request::Request;

/// How long a blocked read or write waits before looking at the stop flag and the deadline.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

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

/// Runs a slow load until `config.duration` or `config.count` is reached, or `stop` is set.
///
/// `on_answer` is called, from the connection's thread, for every answer as it arrives.
///
/// # Errors
///
/// As for [`run_fast`](crate::run_fast): an invalid configuration, a failed connect, or a
/// server that misbehaves. The first error on any connection stops the others.
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
        times: Mutex::new(Vec::new()),
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
    // The threads have ended, so nobody else holds the lock; a poisoned lock would mean a
    // thread panicked while pushing, and that panic was resumed above.
    let times = run
        .times
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok(SlowReport {
        n: config.n,
        elapsed: end - start,
        times,
        per_connection,
    })
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
    times: Mutex<Vec<Duration>>,
    on_answer: &'a (dyn Fn(&SlowAnswer) + Sync),
}

/// How a wait on the socket ended.
enum Wait<T> {
    Done(T),
    Stopped,
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
            let io_error = |error| ClientError::from_io(error, connection, answered);
            if let Wait::Stopped = self.send(&mut stream).map_err(io_error)? {
                break;
            }
            match self.receive(&mut stream, &mut checker, connection, answered)? {
                Wait::Stopped => break,
                Wait::Done(()) => {}
            }
            // An answer that arrives after the run has ended is not counted, like a request
            // still in flight: the run measures what the server did in its time. (A server
            // that serves one connection at a time answers a waiting client the moment the
            // other one leaves at the deadline; counting that would hide the starvation.)
            if self.past_deadline() {
                break;
            }
            let time = sent_at.elapsed();
            answered += 1;
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
        Ok(answered)
    }

    /// Writes the request line, in pieces if the socket takes only part of it.
    fn send(&self, stream: &mut TcpStream) -> io::Result<Wait<()>> {
        let mut line = self.request.line();
        while !line.is_empty() {
            match stream.write(line) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
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

    /// Reads until one complete answer has arrived and checked out.
    fn receive(
        &self,
        stream: &mut TcpStream,
        checker: &mut AnswerChecker,
        connection: usize,
        answered: u64,
    ) -> Result<Wait<()>, ClientError> {
        let expected = self.request.answer();
        let bad_answer = |line: Vec<u8>| {
            ClientError::from_bad_answer(self.request.n(), self.request.value(), &line)
        };
        // An answer is at most 21 bytes, and one request is in flight, so a read never
        // brings more than one.
        let mut buffer = [0u8; 64];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => {
                    return Err(match checker.unfinished_bad_line() {
                        Some(line) => bad_answer(line),
                        None => ClientError::Closed {
                            connection,
                            answered,
                        },
                    });
                }
                Ok(received) => match checker.feed(expected, &buffer[..received]) {
                    Ok(0) => {}
                    Ok(1) => return Ok(Wait::Done(())),
                    Ok(_) => return Err(ClientError::ExtraAnswer { connection }),
                    Err(line) => return Err(bad_answer(line)),
                },
                // The server is still computing: a chance to notice the end of the run.
                Err(error) if is_timeout(&error) => {
                    if self.should_stop() {
                        return Ok(Wait::Stopped);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(ClientError::from_io(error, connection, answered)),
            }
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self.failed.load(Ordering::Relaxed)
            || self.past_deadline()
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
