//! step03 over real TCP, in raw bytes: two states of its connection the conformance suite
//! (`tests/`, `suite!(step03: ...)`) does not reach, pausing at `OUTPUT_LIMIT` before a
//! half-close and lingering after a line too long. The protocol's framing, pipelining,
//! half-close, bad input and rude clients are checked there.

mod common;

use common::{connect, half_close, read_to_close, send, start};

#[test]
fn half_close_after_many_pipelined_requests_gets_them_all() {
    let addr = start();
    let client = connect(addr);
    // Far more answers than OUTPUT_LIMIT: the connection pauses and resumes before it sees
    // the end of input, and must still answer everything.
    send(&client, &b"20\n".repeat(100_000));
    half_close(&client);
    assert_eq!(read_to_close(&client), "6765\n".repeat(100_000));
}

#[test]
fn a_line_too_long_is_answered_then_the_server_closes() {
    let addr = start();
    let client = connect(addr);
    // The client goes on sending after the long line: the server must still let it read the
    // error (no reset destroying it) and then end the stream.
    send(&client, b"3\n");
    send(&client, &[b'7'; 200]);
    send(&client, &b"\n4\n".repeat(1000));
    assert_eq!(read_to_close(&client), "2\nerror: line too long\n");
}
