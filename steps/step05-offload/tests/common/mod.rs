//! What the integration tests share: start the server in-process, connect, ask. Timeouts
//! are safety nets for a stuck server, never assertions.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use shared::Server as _;

/// How long a test waits for an answer that should come in microseconds.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Starts step05 on a free loopback port, serving on its own thread until the test ends.
pub fn start() -> SocketAddr {
    let server = step05::Server::bind(&shared::Config::ephemeral(), &Default::default())
        .expect("binding port 0 on loopback");
    let addr = shared::Server::local_addr(&server);
    thread::spawn(move || server.run());
    addr
}

/// A blocking connection with a safety-net read timeout.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connecting to the server under test");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("setting a timeout on a fresh socket");
    stream
}

/// Reads one line, without its `\n`.
pub fn read_line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    let read = reader.read_line(&mut line).expect("reading an answer");
    assert!(
        read > 0,
        "the server closed the connection instead of answering"
    );
    assert_eq!(line.pop(), Some('\n'), "an answer ends with a newline");
    line
}

/// Sends `n` and reads its answer, on a connection with no other answer pending.
pub fn ask(mut stream: &TcpStream, n: u32) -> String {
    stream
        .write_all(format!("{n}\n").as_bytes())
        .expect("writing a request");
    // Nothing else is in flight, so this reader cannot read past the answer and lose bytes.
    read_line(&mut BufReader::new(stream))
}

/// The answer the protocol expects for `n`.
pub fn expected(n: u32) -> String {
    shared::fib::fib(n).to_string()
}
