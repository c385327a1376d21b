//! Backpressure: a client that sends requests but does not read its answers must not make
//! the server block, buffer without bound, or lose anybody's answers.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

#[cfg(target_os = "linux")]
use conformance::child::ChildServer;
use conformance::{Client, expected};

const CHUNK: usize = 64 * 1024;

/// Starts step03 on a free loopback port, serving on its own thread until the test ends.
fn start() -> SocketAddr {
    conformance::start::<::step03::Server>()
}

/// Not a test: the entry point of the child process that `ChildServer::start("step03", ..)`
/// starts (see `conformance::child`). It returns at once unless this process was started as
/// that child.
#[cfg(target_os = "linux")]
mod step03 {
    #[test]
    #[ignore = "entry point of a child server process, started by another test"]
    fn child_process_entry() {
        conformance::child::child_entry::<::step03::Server>("step03");
    }
}

/// A client sending `1\n` requests from a thread of its own, without reading the answers.
struct Flood {
    client: Client,
    requests: usize,
    writer: JoinHandle<()>,
    /// Bytes the socket has taken so far.
    sent: Arc<AtomicUsize>,
}

impl Flood {
    fn start(addr: SocketAddr, requests: usize) -> Flood {
        let client = Client::connect(addr);
        let sent = Arc::new(AtomicUsize::new(0));
        let writer = {
            let mut stream = client
                .stream()
                .try_clone()
                .expect("duplicating a socket descriptor");
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
            client,
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
            client,
            requests,
            writer,
            ..
        } = self;
        let mut buffer = vec![0u8; CHUNK];
        let mut received = 0;
        while received < 2 * requests {
            let n = client
                .stream()
                .read(&mut buffer)
                .expect("the server answers");
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

    let mut other = Client::connect(addr);
    for n in 0..200 {
        assert_eq!(other.ask(&(n % 30).to_string()), expected(n % 30));
    }

    flood.read_every_answer();
}

// Linux only: it reads the server's resident memory from /proc, which other systems lack.
#[cfg(target_os = "linux")]
#[test]
fn a_client_that_does_not_read_costs_the_server_bounded_memory() {
    // 32 MB of requests, 32 MB of answers: far more than the kernel buffers on the way, so
    // a server without a bound would hold most of the answers itself.
    let server = ChildServer::start("step03", None);
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
    assert_eq!(Client::connect(server.addr).ask("20"), "6765");

    flood.read_every_answer();
}
