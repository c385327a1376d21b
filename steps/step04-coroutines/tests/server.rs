//! step04 over real TCP: what the conformance suite (`tests/`, `suite!(step04: ...)`) does
//! not check, draining unread input when closing after a line too long, and one greedy
//! connection not keeping the only thread. The protocol's framing, pipelining, half-close,
//! bad input, vanishing clients, 2,000 and 10,000 connections and running out of descriptors
//! are checked there.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use conformance::Client;

/// Starts step04 on a free loopback port, serving on its own thread until the test ends.
fn start() -> SocketAddr {
    conformance::start::<step04::Server>()
}

#[test]
fn a_line_too_long_gets_an_error_then_a_close() {
    let addr = start();
    let mut client = Client::connect(addr);
    // No newline at all: the server must not wait for one. And more bytes than it reads
    // before answering, so it has unread input to drain when it closes.
    client.send(&[b'7'; 10_000]);
    assert_eq!(client.read_to_close(), "error: line too long\n");
}

#[test]
fn a_client_that_always_has_a_request_waiting_does_not_keep_the_thread() {
    let addr = start();
    // A greedy client: one thread writes requests without pause, another reads the answers,
    // so whenever the server reads this connection, more requests are waiting. A handler
    // that never has to wait never yields unless it chooses to.
    let greedy = Client::connect(addr);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (mut greedy, stop) = (greedy.stream().try_clone().unwrap(), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if greedy.write_all(&b"18\n".repeat(100)).is_err() {
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
