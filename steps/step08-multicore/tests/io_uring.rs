//! Loud when io_uring is refused: the conformance suite would only say that step08 "could not
//! bind"; this test says why, in a banner, and fails when `WORKBOOK_REQUIRE_IO_URING` is set
//! (CI sets it, so that a runner without io_uring cannot pass by skipping the step).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::thread;

use shared::{Config, Server};

#[test]
fn io_uring_serves_a_request() {
    let server = match step08::Server::bind(&Config::ephemeral(), &Default::default()) {
        Ok(server) => server,
        Err(error) if step08::io_uring_unavailable(&error) => {
            // Straight to the process's stderr: the test harness captures `eprintln!` of a
            // passing test, and this must be seen.
            let rule = "=".repeat(78);
            let _ = writeln!(
                std::io::stderr(),
                "\n{rule}\n  step08 NOT TESTED: {error}\n  (the conformance suite's step08:: \
                 checks fail to start for the same reason)\n{rule}\n"
            );
            if std::env::var_os("WORKBOOK_REQUIRE_IO_URING").is_some() {
                panic!("WORKBOOK_REQUIRE_IO_URING is set and io_uring is not available: {error}");
            }
            return;
        }
        Err(error) => panic!("step08 could not bind: {error}"),
    };
    let addr = server.local_addr();
    // The server serves until the test process exits.
    thread::spawn(move || server.run());
    let mut stream = TcpStream::connect(addr).expect("connecting to step08");
    stream.write_all(b"10\n").expect("sending a request");
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .expect("reading the answer");
    assert_eq!(answer, "55\n");
}
