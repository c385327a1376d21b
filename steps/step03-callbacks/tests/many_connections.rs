//! Many connections open at once on the one thread: each is answered.

mod common;

use std::net::SocketAddr;

use common::{ChildServer, connect, fib, raise_fd_limit, read_exactly, send, start};

/// Opens `count` connections to `addr`, then sends a request on each, then reads each
/// answer: all of them are open at the same time.
fn every_connection_is_answered(addr: SocketAddr, count: usize) {
    let clients: Vec<_> = (0..count).map(|_| connect(addr)).collect();
    for (i, client) in clients.iter().enumerate() {
        send(client, format!("{}\n", i % 20).as_bytes());
    }
    for (i, client) in clients.iter().enumerate() {
        let expected = format!("{}\n", fib((i % 20) as u32));
        assert_eq!(
            read_exactly(client, expected.len()),
            expected,
            "connection {i}"
        );
    }
}

#[test]
fn two_thousand_concurrent_connections() {
    // Client and server share this process: 4,000 descriptors, beyond a default soft
    // limit of 1,024.
    let limit = raise_fd_limit();
    assert!(
        limit > 4_100,
        "this test needs 4,100 open files; the hard limit is {limit}"
    );
    every_connection_is_answered(start(), 2_000);
}

#[test]
#[ignore = "opens 10,000 connections: run with `cargo test -p step03 -- --ignored`"]
fn ten_thousand_idle_connections() {
    // The server runs as a child process (it inherits the raised limit): each side needs
    // 10,000 descriptors, and one process holding both would need 20,000.
    let limit = raise_fd_limit();
    assert!(
        limit > 10_100,
        "this test needs 10,100 open files; the hard limit is {limit}"
    );
    let server = ChildServer::start(None);
    every_connection_is_answered(server.addr, 10_000);
}
