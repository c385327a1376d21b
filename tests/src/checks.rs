//! Every check of the suite, as a function of the server's address. `tests/conformance.rs`
//! turns each into a `#[test]` per step.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use shared::fib::OFFLOAD_FROM_N;
use shared::protocol::{MAX_LINE, ProtocolError};

use crate::child::ChildServer;
use crate::{Client, PATIENCE, expected};

/// fib(0) to fib(20), one request at a time on one connection.
pub fn values_0_to_20(addr: SocketAddr) {
    let mut client = Client::connect(addr);
    for n in 0..=20 {
        assert_eq!(client.ask(&n.to_string()), expected(n), "fib({n})");
    }
}

/// A `\r` before the `\n` is ignored.
pub fn crlf(addr: SocketAddr) {
    let mut client = Client::connect(addr);
    assert_eq!(client.ask("10\r"), "55");
    client.send(b"11\r\n12\r\n");
    assert_eq!((client.line(), client.line()), ("89".into(), "144".into()));
}

/// Spaces and tabs around the number are ignored.
pub fn blanks(addr: SocketAddr) {
    let mut client = Client::connect(addr);
    assert_eq!(client.ask("  7"), "13");
    assert_eq!(client.ask("7\t "), "13");
    assert_eq!(client.ask(" \t 7 \t \r"), "13");
}

/// 1000 requests in one write come back in order.
pub fn pipelined_1000(addr: SocketAddr) {
    let mut client = Client::connect(addr);
    let requests: String = (0..1000).map(|i| format!("{}\n", i % 23)).collect();
    client.send(requests.as_bytes());
    for i in 0..1000 {
        assert_eq!(client.line(), expected(i % 23), "answer {i}");
    }
}

/// A request sent one byte per write (one TCP segment each) is still one request.
pub fn one_byte_at_a_time(addr: SocketAddr) {
    let mut client = Client::connect(addr);
    for byte in b" 20\r\n".iter().chain(b"3\n") {
        client.send(&[*byte]);
        // Give the server a chance to read each byte on its own, so it really sees them
        // split; correctness does not depend on it.
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!((client.line(), client.line()), (expected(20), expected(3)));
}

/// Every bad input of the protocol gets its error, and the same connection then answers a
/// good request.
pub fn bad_inputs_then_good(addr: SocketAddr) {
    let too_large = ProtocolError::TooLarge { max_n: 45 };
    let cases: &[(&[u8], ProtocolError)] = &[
        (b"abc", ProtocolError::NotANumber),
        (b"-3", ProtocolError::Negative),
        (b"1.5", ProtocolError::NotWhole),
        (b"12abc", ProtocolError::NotANumber),
        (b"", ProtocolError::Empty),
        (b" \t ", ProtocolError::Empty),
        (b"\xc3\x28", ProtocolError::InvalidUtf8),
        (b"46", too_large),
        (b"100000000000000000000000000000000000000000", too_large),
    ];
    let mut client = Client::connect(addr);
    for (bad, error) in cases {
        let mut request = bad.to_vec();
        request.extend_from_slice(b"\n9\n");
        client.send(&request);
        assert_eq!(
            client.line(),
            format!("error: {error}"),
            "answer to {bad:?}"
        );
        assert_eq!(client.line(), expected(9), "the request after {bad:?}");
    }
}

/// Lines of 63 and 64 bytes are served; 65 bytes get `error: line too long` and a close.
pub fn line_limit(addr: SocketAddr) {
    let padded = |len: usize| format!("{:>len$}\n", "9");
    let mut client = Client::connect(addr);
    assert_eq!(client.ask(padded(63).trim_end_matches('\n')), expected(9));
    assert_eq!(
        client.ask(padded(MAX_LINE).trim_end_matches('\n')),
        expected(9)
    );
    client.send(format!("3\n{}", padded(MAX_LINE + 1)).as_bytes());
    assert_eq!(
        client.line(),
        expected(3),
        "the request before the long line"
    );
    assert_eq!(client.line(), "error: line too long");
    assert_eq!(
        client.read_to_close(),
        "",
        "the connection closes after a line too long"
    );

    // A long line needs no newline to be refused: the server must not wait for one.
    let mut client = Client::connect(addr);
    client.send(&[b'7'; 200]);
    assert_eq!(client.line(), "error: line too long");
    assert_eq!(client.read_to_close(), "");
}

/// After a half-close, every complete line is answered, then the server closes; bytes after
/// the last `\n` are ignored.
pub fn half_close(addr: SocketAddr) {
    let mut client = Client::connect(addr);
    client.send(b"1\n2\n10\n15");
    client.half_close();
    assert_eq!(client.read_to_close(), format!("1\n1\n{}\n", expected(10)));
}

/// Answers keep the order of the requests when some are computed elsewhere (from
/// [`OFFLOAD_FROM_N`] up, the steps that offload send them to a pool), the errors of bad
/// lines included, and a half-close still gets every one of them.
pub fn in_order_across_offload(addr: SocketAddr) {
    const _: () = assert!(3 < OFFLOAD_FROM_N);
    let (big, bigger) = (OFFLOAD_FROM_N + 5, OFFLOAD_FROM_N + 10);
    let mut client = Client::connect(addr);
    client.send(format!("{big}\n3\n{bigger}\nabc\n7").as_bytes());
    client.half_close();
    assert_eq!(
        client.read_to_close(),
        format!(
            "{}\n2\n{}\nerror: not a number\n",
            expected(big),
            expected(bigger)
        )
    );
}

/// A line too long right behind a request that may be on a pool: that request is answered
/// first, then the error, then the server closes.
pub fn line_too_long_after_offloaded(addr: SocketAddr) {
    let big = OFFLOAD_FROM_N + 8;
    let mut client = Client::connect(addr);
    let mut input = format!("{big}\n").into_bytes();
    input.extend_from_slice(&[b'7'; 10_000]);
    client.send(&input);
    assert_eq!(
        client.read_to_close(),
        format!("{}\nerror: line too long\n", expected(big))
    );
}

/// 200 clients leave rudely (mid-request, by reset, before reading their answer); the
/// server still answers the next client.
pub fn vanishing_clients(addr: SocketAddr) {
    for i in 0..200 {
        let mut client = Client::connect(addr);
        match i % 4 {
            0 => client.send(b"12"),
            1 => {
                client.send(b"3");
                client.reset();
            }
            2 => {
                client.send(&b"25\n".repeat(50));
                client.reset();
            }
            _ => {
                client.send(b"5\n6\n7");
                client.half_close();
            }
        }
    }
    // Below OFFLOAD_FROM_N, so that a compute pool still busy with the vanished clients'
    // requests (or refusing them, `error: busy`) does not stand in the way.
    let mut client = Client::connect(addr);
    assert_eq!(client.ask("19"), expected(19));
}

/// `count` connections open at once, each with a request in flight, are all answered.
pub fn concurrent_connections(addr: SocketAddr, count: usize) {
    crate::raise_fd_limit();
    let mut clients: Vec<Client> = (0..count).map(|_| Client::connect(addr)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(format!("{}\n", i % 20).as_bytes());
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.line(), expected((i % 20) as u32), "connection {i}");
    }
}

/// While one connection's fib(44) computes, another connection's fib(1) is answered.
///
/// fib(44) takes about 1.7 s of CPU, while the fast round trip takes microseconds, so the
/// fast answer arriving first is what any step that keeps serving during CPU work does. A
/// step that computes on its only thread answers the slow request first. (fib(42), 0.65 s,
/// lost to three fast round trips about once in five full suites on the loaded 2-core VM.)
pub fn fast_while_slow(addr: SocketAddr) {
    let mut slow = Client::connect(addr);
    let asked = std::time::Instant::now();
    slow.send(b"44\n");
    let mut fast = Client::connect(addr);
    for _ in 0..3 {
        assert_eq!(fast.ask("1"), "1");
    }
    // (The time says whether a failure is the server's or a machine too loaded to give the
    // fast requests a turn within fib(42)'s time.)
    assert!(
        !slow.has_answer_waiting(),
        "fib(44) was answered before three fast requests on another connection \
         (the three took {:?} from the slow request)",
        asked.elapsed()
    );
    assert_eq!(slow.line(), expected(44));
}

/// One greedy connection does not keep the server: another client is answered while it
/// goes on. One thread writes fib(18) requests without pause and another reads the answers,
/// so whenever the server reads this connection, more requests are waiting: a handler that
/// never has to wait never yields unless it chooses to. (fib(18) is computed inline in
/// every step that offloads: `shared::fib::OFFLOAD_FROM_N` is above it.)
pub fn greedy_client(addr: SocketAddr) {
    const _: () = assert!(18 < OFFLOAD_FROM_N);
    let greedy = Client::connect(addr);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (mut greedy, stop) = (greedy.stream().try_clone().unwrap(), Arc::clone(&stop));
        let requests = b"18\n".repeat(100);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if greedy.write_all(&requests).is_err() {
                    break;
                }
            }
        })
    };
    // Wait until the server is busy with it, answering.
    greedy.stream().read_exact(&mut [0; 10_000]).unwrap();
    let reader = {
        let greedy = greedy.stream().try_clone().unwrap();
        thread::spawn(move || io::copy(&mut &greedy, &mut io::sink()))
    };

    // Another client is still served.
    assert_eq!(Client::connect(addr).ask("1"), "1");

    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    greedy.stream().shutdown(Shutdown::Both).unwrap();
    let _ = reader.join().unwrap();
}

/// A server that runs out of file descriptors keeps serving its open connections, does not
/// spin on its readable listener, and accepts again when descriptors are free. Unix only:
/// it lowers the server's `RLIMIT_NOFILE`, which Windows does not have.
#[cfg(unix)]
pub fn out_of_fds(step: &str) {
    // With 64 descriptors a server holds a few dozen connections (the rest of its
    // descriptors are stdio, its listener, its poller). 100 clients are sure to exceed that;
    // the 30 kept at the end (plus `first`) are sure to fit.
    const LIMIT: u64 = 64;
    const CLIENTS: usize = 100;
    const KEPT: usize = 30;
    let server = ChildServer::start(step, Some(LIMIT));
    let mut first = Client::connect(server.addr);
    assert_eq!(first.ask("5"), "5", "the first connection is served");

    // More connections than the server has descriptors: the kernel completes every
    // handshake (they wait in the listen backlog), the server can accept only some.
    let mut others: Vec<Client> = (0..CLIENTS).map(|_| Client::connect(server.addr)).collect();
    for client in &mut others {
        client.send(b"6\n");
    }
    // Let the server hit the limit, then measure its CPU time for a while. Spinning on the
    // readable listener uses a whole core; backing off uses next to nothing. The bound is
    // generous (a fifth of the wall time) so a busy machine cannot make it fail; it only
    // lets a spinning server pass if that server got less than a fifth of a core.
    thread::sleep(Duration::from_millis(200));
    if let Some(before) = server.cpu_time() {
        let window = Duration::from_millis(500);
        thread::sleep(window);
        let used = server.cpu_time().expect("/proc answered a moment ago") - before;
        assert!(
            used * 5 < window,
            "the server used {used:?} of CPU in {window:?} while out of descriptors: it is \
             spinning on accept"
        );
    }
    assert_eq!(first.ask("7"), "13", "open connections are still served");

    // Free descriptors: close all but the last KEPT clients. Those must now be accepted
    // and answered.
    let survivors = others.split_off(CLIENTS - KEPT);
    drop(others);
    for (i, mut client) in survivors.into_iter().enumerate() {
        assert_eq!(
            client.line(),
            "8",
            "waiting client {i} is served once descriptors are free"
        );
    }
}

/// 10,000 idle connections, then every one of them is answered. The server runs in a child
/// process so that each side has its own descriptor table.
pub fn ten_thousand_idle(step: &str) {
    const IDLE: usize = 10_000;
    // One at a time: the test harness runs checks in parallel, and two of these in this
    // process would need 20,000 descriptors for their clients alone (over the usual hard limit).
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let limit = crate::raise_fd_limit();
    assert!(
        limit as usize > IDLE + 100,
        "this check needs an open-file limit above {IDLE}; the hard limit is {limit}"
    );
    let server = ChildServer::start(step, Some(limit));
    let mut clients: Vec<Client> = (0..IDLE).map(|_| Client::connect(server.addr)).collect();
    for client in &mut clients {
        client.send(b"1\n");
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.line(), "1", "idle connection {i}");
    }
}

// ---------------------------------------------------------------------------------------------
// Stopping work: idle timeouts, graceful shutdown, load shedding. The server is started with
// the options each check names.

/// The arguments [`idle_timeout`] expects the server to be started with.
pub const IDLE_ARGS: &[&str] = &["--idle-timeout", "0.3"];

/// With `--idle-timeout 0.3`: a connection that sends nothing, one that goes quiet after an
/// answer, and one that trickles bytes that never make a complete line each get
/// `error: idle timeout` and are closed.
pub fn idle_timeout(addr: SocketAddr) {
    let mut silent = Client::connect(addr);
    assert_eq!(
        silent.line(),
        "error: idle timeout",
        "a connection that sent nothing"
    );
    assert_eq!(silent.read_to_close(), "", "closed after the idle timeout");

    let mut quiet = Client::connect(addr);
    assert_eq!(quiet.ask("7"), "13");
    assert_eq!(quiet.line(), "error: idle timeout", "quiet after an answer");
    assert_eq!(quiet.read_to_close(), "");

    // Bytes that never complete a line do not keep a connection alive: only a complete line
    // counts. The trickle goes on for ten times the timeout; the error must come first.
    let mut trickling = Client::connect(addr);
    let writer = trickling
        .stream()
        .try_clone()
        .expect("cloning a socket handle");
    let trickle = thread::spawn(move || {
        let mut writer = writer;
        for _ in 0..60 {
            if std::io::Write::write_all(&mut writer, b"1").is_err() {
                return false; // the server closed: stopped early, as it should
            }
            thread::sleep(Duration::from_millis(50));
        }
        true
    });
    assert_eq!(
        trickling.line(),
        "error: idle timeout",
        "a line that never completes"
    );
    let trickled_to_the_end = trickle.join().expect("the trickle thread does not panic");
    assert!(
        !trickled_to_the_end,
        "the connection stayed open while bytes trickled in without a newline"
    );
}

/// The arguments [`not_idle_while_computing`] expects the server to be started with.
pub const COMPUTING_ARGS: &[&str] = &["--idle-timeout", "0.5"];

/// With `--idle-timeout 0.5`: a connection waiting for its own fib(43), more than a second of
/// CPU, is not idle; its idle time starts when the answer is written, so the idle timeout
/// comes a timeout after the answer, not at once. (Only a lower bound on the time is checked:
/// a busy machine can make the error come later, never sooner.)
pub fn not_idle_while_computing(addr: SocketAddr) {
    // Computed first: the check's own fib(43) takes as long as the server's.
    let want = expected(43);
    let mut client = Client::connect(addr);
    assert_eq!(client.ask("43"), want, "waiting for its own fib");
    let answered = std::time::Instant::now();
    assert_eq!(client.line(), "error: idle timeout");
    let after = answered.elapsed();
    assert!(
        after >= Duration::from_millis(400),
        "the idle timeout came {after:?} after the answer: the idle time must start when the \
         answer is written, not when its request arrived"
    );
}

/// The arguments [`busy_when_the_queue_is_full`] expects the server to be started with.
pub const BUSY_ARGS: &[&str] = &["--queue", "1"];

/// With `--queue 1`: more CPU-heavy requests at once than the pool has threads plus one
/// queued job; the ones that find the queue full are answered `error: busy` at once, the
/// others get fib, and a connection told `busy` goes on.
pub fn busy_when_the_queue_is_full(addr: SocketAddr) {
    let threads = thread::available_parallelism().map_or(1, usize::from);
    // Every request is written before the first fib(38) (a tenth of a second) can finish.
    let extra = 3;
    let mut clients: Vec<Client> = (0..threads + 1 + extra)
        .map(|_| Client::connect(addr))
        .collect();
    for client in &mut clients {
        client.send(b"38\n");
    }
    let mut busy = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        match client.line() {
            line if line == "error: busy" => busy.push(i),
            line => assert_eq!(line, expected(38), "connection {i}"),
        }
    }
    assert!(
        busy.len() >= extra,
        "{} of {} fib(38) requests were refused with `error: busy`, expected at least {extra} \
         (a pool of {threads} threads and a queue of 1)",
        busy.len(),
        clients.len()
    );
    for i in busy {
        assert_eq!(
            clients[i].ask("5"),
            "5",
            "connection {i} goes on after `busy`"
        );
    }
}

/// Ctrl-C or SIGTERM with a client still pipelining: every request the server had received
/// is answered, the client then reads the end of the stream (not a reset), an idle client's
/// connection closes too, and the server exits with status 0, saying what it did.
#[cfg(unix)]
pub fn graceful_shutdown(step: &str) {
    use std::io::Write as _;
    let mut server = ChildServer::start_args(step, None, &["--grace", "5", "--idle-timeout", "0"]);
    let mut idle = Client::connect(server.addr);
    let mut busy = Client::connect(server.addr);
    const FIRST: usize = 300;
    busy.send(&b"1\n".repeat(FIRST));
    assert_eq!(busy.line(), "1", "served before the signal");

    server.terminate();
    // The client goes on sending while the server shuts down: requests that arrive after
    // the signal may go unanswered, but they must not make the server reset the connection
    // (closing a socket with unread input does) before the client has read every answer.
    let writer = busy.stream().try_clone().expect("cloning a socket handle");
    let stop_writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pipelining = {
        let stop = std::sync::Arc::clone(&stop_writing);
        thread::spawn(move || {
            let mut writer = writer;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if writer.write_all(&b"1\n".repeat(64)).is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let rest = crate::child::read_to_end(busy.reader_mut())
        .unwrap_or_else(|e| panic!("the pipelining client's connection ended with {e}"));
    stop_writing.store(true, std::sync::atomic::Ordering::Relaxed);
    pipelining.join().expect("the writer does not panic");
    let rest = String::from_utf8(rest).expect("answers are text");
    let answers = 1 + rest.lines().count();
    assert!(
        answers >= FIRST,
        "{answers} answers for the {FIRST} requests sent before the signal"
    );
    assert!(
        rest.lines().all(|line| line == "1"),
        "every answer is fib(1): {rest:?}"
    );
    busy.half_close();
    assert_eq!(
        crate::child::read_to_end(idle.reader_mut())
            .map(|b| b.len())
            .ok(),
        Some(0),
        "the idle connection is closed cleanly"
    );
    let status = server
        .wait_exit(PATIENCE)
        .unwrap_or_else(|| panic!("the server did not exit: {}", server.stderr_so_far()));
    let said = server.stderr_so_far();
    assert!(status.success(), "exit status {status}: {said}");
    assert!(said.contains("draining"), "it says it drains: {said}");
    assert!(
        said.contains(" closed, "),
        "it says how many closed: {said}"
    );
}

/// A second Ctrl-C or SIGTERM during a graceful shutdown ends the server at once, with the
/// status of an interrupted process (130), however long `--grace` is.
#[cfg(unix)]
pub fn second_signal(step: &str) {
    let mut server =
        ChildServer::start_args(step, None, &["--grace", "120", "--idle-timeout", "0"]);
    // A client that never closes holds the graceful shutdown up until the end of --grace.
    let mut client = Client::connect(server.addr);
    assert_eq!(client.ask("3"), "2");
    server.terminate();
    assert!(
        server.wait_stderr("draining", PATIENCE).is_some(),
        "the server says it drains: {}",
        server.stderr_so_far()
    );
    server.terminate();
    let status = server
        .wait_exit(PATIENCE)
        .expect("the second signal ends the server at once");
    assert_eq!(status.code(), Some(130), "{}", server.stderr_so_far());
}
