//! Backpressure: a client that sends requests but does not read its answers must not make
//! the server block, buffer without bound, or lose anybody's answers.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

#[cfg(target_os = "linux")]
use common::ChildServer;
use common::{ask, connect, fib, start};

const CHUNK: usize = 64 * 1024;

/// A client sending `1\n` requests from a thread of its own, without reading the answers.
struct Flood {
    stream: TcpStream,
    requests: usize,
    writer: JoinHandle<()>,
    /// Bytes the socket has taken so far.
    sent: Arc<AtomicUsize>,
}

impl Flood {
    fn start(addr: SocketAddr, requests: usize) -> Flood {
        let stream = connect(addr);
        let sent = Arc::new(AtomicUsize::new(0));
        let writer = {
            let mut stream = stream.try_clone().expect("duplicating a socket descriptor");
            let sent = Arc::clone(&sent);
            thread::spawn(move || {
                // Once the server stops reading (because nobody reads its answers), this
                // write blocks: that is backpressure reaching the client.
                for chunk in b"1\n".repeat(requests).chunks(CHUNK) {
                    stream
                        .write_all(chunk)
                        .expect("the server takes our requests");
                    sent.fetch_add(chunk.len(), Ordering::Relaxed);
                }
            })
        };
        Flood {
            stream,
            requests,
            writer,
            sent,
        }
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until the writer is under way.
    fn wait_until_started(&self) {
        while self.sent() == 0 {
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Starts reading: every answer must arrive, in order.
    fn read_every_answer(self) {
        let Flood {
            mut stream,
            requests,
            writer,
            ..
        } = self;
        let mut buffer = vec![0u8; CHUNK];
        let mut received = 0;
        while received < 2 * requests {
            let n = stream.read(&mut buffer).expect("the server answers");
            assert_ne!(n, 0, "the server closed after {received} bytes");
            // The answers are `1\n` pairs; `received` tells where this read starts in them.
            for (offset, byte) in buffer[..n].iter().enumerate() {
                let position = received + offset;
                let expected = if position % 2 == 0 { b'1' } else { b'\n' };
                assert_eq!(*byte, expected, "byte {position} of the answers");
            }
            received += n;
        }
        writer.join().expect("the writing thread panicked");
    }
}

#[test]
fn a_client_that_does_not_read_holds_up_nobody_and_loses_nothing() {
    let addr = start();
    let flood = Flood::start(addr, 5_000_000); // 10 MB of requests
    flood.wait_until_started();

    let other = connect(addr);
    for n in 0..200 {
        assert_eq!(ask(&other, n % 30), fib(n % 30).to_string());
    }

    flood.read_every_answer();
}

// Linux only: it reads the server's resident memory from /proc, which other systems lack.
#[cfg(target_os = "linux")]
#[test]
fn a_client_that_does_not_read_costs_the_server_bounded_memory() {
    // 32 MB of requests, 32 MB of answers: far more than the kernel buffers on the way, so
    // a server without a bound would hold most of the answers itself.
    let server = ChildServer::start();
    let before = server.resident_kib();
    let flood = Flood::start(server.addr, 16 << 20);

    // Wait until the client's writes stop making progress (the server stopped reading) or
    // the client has sent everything (it never did). Only *when* we look depends on timing:
    // a server with a bound passes whenever we look.
    let mut last = flood.sent();
    let mut still = 0;
    while still < 5 && last < 2 * flood.requests {
        thread::sleep(Duration::from_millis(100));
        let now = flood.sent();
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    if let (Some(before), Some(after)) = (before, server.resident_kib()) {
        let grown = after.saturating_sub(before);
        assert!(
            grown < 8 * 1024,
            "the server grew by {grown} KiB for a client that does not read"
        );
    }
    assert_eq!(ask(&connect(server.addr), 20), "6765");

    flood.read_every_answer();
}
