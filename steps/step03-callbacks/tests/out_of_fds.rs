//! Running out of file descriptors: the server keeps serving its connections, does not
//! spin, and accepts again once descriptors are free.

mod common;

use std::thread;
use std::time::Duration;

use common::{ChildServer, ask, connect, read_exactly, send};

#[test]
fn out_of_descriptors_the_server_pauses_accepting_and_serves_on() {
    // With 64 descriptors the server holds a few dozen connections (stdio, the listener and
    // the poll take some); 100 clients are sure to exceed that, and 30 are sure to fit.
    const CLIENTS: usize = 100;
    const KEPT: usize = 30;
    let server = ChildServer::start(Some(64));
    let first = connect(server.addr);
    assert_eq!(ask(&first, 5), "5");

    // Every handshake completes (the kernel queues them in the listen backlog); the server
    // can accept only some of them.
    let mut others: Vec<_> = (0..CLIENTS).map(|_| connect(server.addr)).collect();
    for client in &others {
        send(client, b"6\n");
    }

    // A server spinning on its readable listener burns a whole core; one that backs off
    // uses next to nothing. The bound is a fifth of the wall time, so a busy machine cannot
    // fail a server that backs off. (Linux counts CPU time in ticks of 10 ms.)
    if let Some(before) = server.cpu_ticks() {
        thread::sleep(Duration::from_millis(500));
        let used = server.cpu_ticks().expect("/proc answered a moment ago") - before;
        assert!(
            used < 10,
            "{used} ticks of CPU in 500 ms while out of descriptors"
        );
    }
    assert_eq!(ask(&first, 7), "13", "open connections are still served");

    // Close all but the last few: they wait in the backlog and must now be served.
    let kept = others.split_off(CLIENTS - KEPT);
    drop(others);
    for (i, client) in kept.iter().enumerate() {
        assert_eq!(read_exactly(client, 2), "8\n", "waiting client {i}");
    }
}
