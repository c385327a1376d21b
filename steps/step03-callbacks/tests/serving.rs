//! step03 over real TCP, in raw bytes: two states of its connection the conformance suite
//! (`tests/`, `suite!(step03: ...)`) does not reach, pausing at `OUTPUT_LIMIT` before a
//! half-close and lingering after a line too long. The protocol's framing, pipelining,
//! half-close, bad input and rude clients are checked there.

use std::net::SocketAddr;

use conformance::{Client, PATIENCE};

/// Starts step03 on a free loopback port, serving on its own thread until the test ends.
fn start() -> SocketAddr {
    conformance::start::<step03::Server>()
}

#[test]
fn half_close_after_many_pipelined_requests_gets_them_all() {
    let addr = start();
    let mut client = Client::connect(addr);
    // We write all 300 KB before reading an answer: a server that stops reading for good
    // fails the test at this write instead of hanging it.
    client
        .stream()
        .set_write_timeout(Some(PATIENCE))
        .expect("a timeout of 60 s is valid");
    // Far more answers than OUTPUT_LIMIT: the connection pauses and resumes before it sees
    // the end of input, and must still answer everything.
    client.send(&b"20\n".repeat(100_000));
    client.half_close();
    assert_eq!(client.read_to_close(), "6765\n".repeat(100_000));
}

#[test]
fn a_line_too_long_is_answered_then_the_server_closes() {
    let addr = start();
    let mut client = Client::connect(addr);
    // The client goes on sending after the long line: the server must still let it read the
    // error (no reset destroying it) and then end the stream.
    client.send(b"3\n");
    client.send(&[b'7'; 200]);
    client.send(&b"\n4\n".repeat(1000));
    assert_eq!(client.read_to_close(), "2\nerror: line too long\n");
}
