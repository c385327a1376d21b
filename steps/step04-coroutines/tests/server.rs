//! step04 over real TCP: what the conformance suite (`tests/`, `suite!(step04: ...)`) does
//! not check, draining unread input when closing after a line too long. The protocol's
//! framing, pipelining, half-close, bad input, vanishing clients, one greedy connection not
//! keeping the only thread, 2,000 and 10,000 connections and running out of descriptors are
//! checked there.

use std::net::SocketAddr;

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
