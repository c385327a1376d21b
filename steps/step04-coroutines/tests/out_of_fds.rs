//! Out of file descriptors: the server keeps serving the connections it has, does not spin
//! on the readable listener, and accepts again once descriptors are free.
//!
//! A test binary of its own, so a process of its own: it lowers the open-file limit of the
//! whole process, which would break any test running beside it.

mod common;

use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;

use common::{PATIENCE, ask, connect, expected, set_soft_fd_limit, start};
use socket2::{Domain, Socket, Type};

#[test]
fn out_of_file_descriptors_pauses_accepting_and_keeps_serving() {
    let addr = start();
    let served = connect(addr);
    assert_eq!(ask(&served, 10), expected(10));

    // A socket created now and connected later: connecting needs no new descriptor.
    let waiting = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    waiting.set_read_timeout(Some(PATIENCE)).unwrap();

    // A new descriptor always takes the lowest free number, and fails with EMFILE when that
    // number reaches the soft limit. So a limit equal to the lowest free number forbids any
    // new descriptor, in the server's `accept` as anywhere else in this process.
    let lowest_free = UdpSocket::bind("127.0.0.1:0").unwrap().as_raw_fd();
    let original = set_soft_fd_limit(lowest_free as u64);
    assert!(
        UdpSocket::bind("127.0.0.1:0").is_err(),
        "no descriptor can be created now"
    );

    // The kernel completes the handshake on its own and readies the listener; the server's
    // `accept` fails with EMFILE.
    waiting.connect(&addr.into()).unwrap();
    // Meanwhile the connection it has is served. (The listener became ready before this
    // request was sent, and the reactor reports readiness in order, so the server has tried
    // and failed to accept by the time it answers.)
    for n in 0..20 {
        assert_eq!(ask(&served, n), expected(n));
    }

    // Descriptors are available again: the server accepts on its next try.
    set_soft_fd_limit(original);
    let waiting = TcpStream::from(waiting);
    assert_eq!(ask(&waiting, 12), expected(12));
    assert_eq!(ask(&served, 13), expected(13));
}
