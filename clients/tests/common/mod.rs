//! Servers for the clients to talk to: a real step, and stand-ins that misbehave on purpose.

// Each test binary uses some of these helpers, not all.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;

use shared::Server as _;

/// Starts step02 (a thread per connection) on a free port, in this process.
pub fn start_step02() -> SocketAddr {
    let server = step02::Server::bind(&shared::Config::ephemeral(), &Default::default())
        .expect("binding port 0 on loopback");
    let addr = server.local_addr();
    thread::spawn(move || server.run());
    addr
}

/// An address where nothing listens: a port the OS just handed out and took back.
pub fn closed_port() -> SocketAddr {
    let listener = loopback_listener();
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    drop(listener);
    addr
}

/// A server that accepts every connection and never answers: the view a client has of a
/// step busy serving somebody else.
pub fn silent_server() -> SocketAddr {
    serve_each(|stream| {
        // Hold the connection open, reading and discarding, until the client leaves.
        let mut sink = [0u8; 1024];
        let mut stream = stream;
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    })
}

/// A listener that never accepts: connections wait in its backlog. Keep it alive for as long
/// as the test needs the address.
pub fn never_accepting_listener() -> (TcpListener, SocketAddr) {
    let listener = loopback_listener();
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    (listener, addr)
}

/// A server that closes every connection as soon as it has accepted it.
pub fn closing_server() -> SocketAddr {
    serve_each(drop)
}

/// A server that answers every request line with `reply` instead of fib(n).
pub fn lying_server(reply: &'static [u8]) -> SocketAddr {
    serve_each(move |mut stream| {
        let mut buffer = [0u8; 1024];
        while let Ok(received) = stream.read(&mut buffer) {
            if received == 0 {
                return;
            }
            for _ in buffer[..received].iter().filter(|&&byte| byte == b'\n') {
                if stream.write_all(reply).is_err() {
                    return;
                }
            }
        }
    })
}

/// A server that answers the first `answers` requests of each connection, then sends
/// `last_words` (maybe nothing) at once and closes cleanly: what a client sees of a server
/// that times it out (`error: idle timeout\n`) or shuts down after its last answers (`b""`).
///
/// The last words and the end of stream go out right after the last answer, so that they
/// can reach the client together with it. After closing its side, the server reads (and
/// drops) what the client still sends until the client leaves, so that the close is an end
/// of stream and never a reset.
pub fn closing_after(answers: usize, last_words: &'static [u8]) -> SocketAddr {
    serve_each(move |stream| {
        let mut writer = &stream;
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        for _ in 0..answers {
            line.clear();
            if !matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                return;
            }
            let n: u32 = line.trim().parse().expect("the clients send numbers");
            let answer = format!("{}\n", shared::fib::fib(n));
            if writer.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
        if writer.write_all(last_words).is_err() || stream.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let _ = io::copy(&mut reader, &mut io::sink());
    })
}

/// A server whose compute pool is full at first: it answers the first `busy` requests of
/// each connection `error: busy` (keeping the connection open, as the steps do), then fib(n).
pub fn busy_at_first(busy: usize) -> SocketAddr {
    serve_each(move |stream| {
        let mut writer = &stream;
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        for asked in 0.. {
            line.clear();
            if !matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                return;
            }
            let n: u32 = line.trim().parse().expect("the clients send numbers");
            let answer = if asked < busy {
                "error: busy\n".to_string()
            } else {
                format!("{}\n", shared::fib::fib(n))
            };
            if writer.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    })
}

/// Accepts connections forever on a free port, each handled by `handle` on its own thread.
fn serve_each(handle: impl Fn(TcpStream) + Send + Sync + Copy + 'static) -> SocketAddr {
    let listener = loopback_listener();
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || handle(stream));
        }
    });
    addr
}

fn loopback_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("binding port 0 on loopback")
}
