//! step03 over real TCP, in raw bytes: framing, pipelining, half-close, bad input and rude
//! clients.

mod common;

use std::io::Read;

use common::{ask, connect, fib, half_close, read_exactly, read_to_close, send, start};

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let addr = start();
    let mut requests = String::new();
    let mut expected = String::new();
    for i in 0..1000 {
        let n = i % 30;
        requests.push_str(&format!("{n}\n"));
        expected.push_str(&format!("{}\n", fib(n)));
    }
    let client = connect(addr);
    send(&client, requests.as_bytes());
    assert_eq!(read_exactly(&client, expected.len()), expected);
}

#[test]
fn a_request_one_byte_at_a_time() {
    let addr = start();
    let client = connect(addr);
    // No Nagle: each byte leaves in a packet of its own, so the server reads pieces.
    client
        .set_nodelay(true)
        .expect("setting TCP_NODELAY on a connected socket");
    for byte in b" 20\r\n3\n" {
        send(&client, &[*byte]);
    }
    assert_eq!(read_exactly(&client, 7), "6765\n2\n");
}

#[test]
fn half_close_gets_every_answer_then_the_close() {
    let addr = start();
    let client = connect(addr);
    send(&client, b"1\n2\n10\n15");
    half_close(&client);
    // `15` has no newline: ignored, as the protocol says.
    assert_eq!(read_to_close(&client), "1\n1\n55\n");
}

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
fn bad_requests_get_errors_and_the_connection_goes_on() {
    let addr = start();
    let client = connect(addr);
    send(&client, b"abc\n-3\n46\n\n7\n");
    let expected = "error: not a number\nerror: n must not be negative\n\
                    error: n must be at most 45\nerror: empty request\n13\n";
    assert_eq!(read_exactly(&client, expected.len()), expected);
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

#[test]
fn rude_clients_end_only_their_own_connection() {
    let addr = start();
    for i in 0..200 {
        let client = connect(addr);
        match i % 3 {
            // Vanishes mid-request.
            0 => send(&client, b"12"),
            // Waits for the first answer byte, then closes with the rest unread: the kernel
            // resets the connection, and the server's reads or writes on it fail.
            1 => {
                send(&client, &b"25\n".repeat(50));
                let _ = (&client).read(&mut [0u8; 1]);
            }
            // Half-closes and leaves without reading.
            _ => {
                send(&client, b"5\n6\n7");
                half_close(&client);
            }
        }
    }
    let client = connect(addr);
    assert_eq!(ask(&client, 20), "6765");
}
