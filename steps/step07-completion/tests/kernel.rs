#![cfg(target_os = "linux")]
//! What step07 counts on the kernel for, checked on the kernel at hand: the behaviour of
//! linked operations, link timeouts and cancellations that its comments describe. Each test
//! is one experiment on a connected pair of loopback sockets and a ring of its own.
//!
//! Where io_uring is refused, these tests say so and pass (tests/io_uring.rs fails loudly
//! where io_uring is required).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, opcode, squeue};

/// A ring, and a connected pair: the server's end, and the client's.
fn setup() -> Option<(IoUring, TcpStream, TcpStream)> {
    let ring = match IoUring::new(16) {
        Ok(ring) => ring,
        Err(error) => {
            eprintln!("io_uring is not available here ({error}): not tested");
            return None;
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding");
    let client = TcpStream::connect(listener.local_addr().expect("an address")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    Some((ring, server, client))
}

/// Submits what is queued and returns the completions that come within `patience`, as
/// (user_data, result), once `want` have come or the patience is over. The patience is a
/// safety net, never what a test checks.
fn completions(ring: &mut IoUring, want: usize, patience: Duration) -> Vec<(u64, i32)> {
    let patience = Timespec::from(patience);
    let args = SubmitArgs::new().timespec(&patience);
    let mut seen = Vec::new();
    while seen.len() < want {
        match ring.submitter().submit_with_args(want - seen.len(), &args) {
            Err(error) if error.raw_os_error() == Some(libc::ETIME) => break,
            Err(error) if error.raw_os_error() == Some(libc::EINTR) => continue,
            Err(error) => panic!("io_uring_enter: {error}"),
            Ok(_) => {}
        }
        seen.extend(ring.completion().map(|c| (c.user_data(), c.result())));
    }
    seen.extend(ring.completion().map(|c| (c.user_data(), c.result())));
    seen
}

const SEND: u64 = 1;
const RECV: u64 = 2;
const TIMEOUT: u64 = 3;
const CANCEL: u64 = 4;

/// The chain a step07 connection submits: send → receive → link timeout, the send and the
/// timeout with `IOSQE_CQE_SKIP_SUCCESS`.
fn push_exchange(
    ring: &mut IoUring,
    socket: &TcpStream,
    answer: &[u8],
    buffer: &mut [u8],
    timeout: &Timespec,
) {
    let send = opcode::Send::new(Fd(socket.as_raw_fd()), answer.as_ptr(), answer.len() as u32)
        .flags(libc::MSG_WAITALL)
        .build()
        .flags(squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS)
        .user_data(SEND);
    let receive = opcode::Recv::new(
        Fd(socket.as_raw_fd()),
        buffer.as_mut_ptr(),
        buffer.len() as u32,
    )
    .build()
    .flags(squeue::Flags::IO_LINK)
    .user_data(RECV);
    let timeout = opcode::LinkTimeout::new(timeout)
        .build()
        .flags(squeue::Flags::SKIP_SUCCESS)
        .user_data(TIMEOUT);
    // SAFETY: every test waits for the chain's completions before its buffers drop.
    unsafe { ring.submission().push_multiple(&[send, receive, timeout]) }.expect("room");
}

#[test]
fn a_request_before_the_deadline_costs_one_completion() {
    let Some((mut ring, server, mut client)) = setup() else {
        return;
    };
    let mut buffer = [0u8; 64];
    let deadline = Timespec::from(Duration::from_secs(30));
    push_exchange(&mut ring, &server, b"1\n", &mut buffer, &deadline);
    ring.submit().expect("submitting");
    client.write_all(b"2\n").expect("writing");
    assert_eq!(
        completions(&mut ring, 2, Duration::from_millis(200)),
        [(RECV, 2)],
        "the receive's completion only: neither the send's nor the timeout's"
    );
}

#[test]
fn a_deadline_cancels_the_receive_and_posts_nothing_itself() {
    let Some((mut ring, server, _client)) = setup() else {
        return;
    };
    let mut buffer = [0u8; 64];
    let deadline = Timespec::from(Duration::from_millis(20));
    push_exchange(&mut ring, &server, b"1\n", &mut buffer, &deadline);
    assert_eq!(
        completions(&mut ring, 2, Duration::from_millis(500)),
        [(RECV, -libc::ECANCELED)]
    );
}

#[test]
fn the_kernel_copies_a_timeout_when_it_takes_the_submission() {
    let Some((mut ring, server, _client)) = setup() else {
        return;
    };
    let mut buffer = [0u8; 64];
    let mut deadline = Timespec::from(Duration::from_millis(20));
    push_exchange(&mut ring, &server, b"1\n", &mut buffer, &deadline);
    ring.submit().expect("submitting");
    // Too late to matter: the kernel read the 20 ms when it took the submission.
    deadline = Timespec::from(Duration::from_secs(3600));
    let _ = &deadline;
    assert_eq!(
        completions(&mut ring, 1, Duration::from_secs(10)),
        [(RECV, -libc::ECANCELED)]
    );
}

#[test]
fn cancelling_by_socket_stops_a_blocked_send_which_reports_its_progress() {
    let Some((mut ring, server, _client)) = setup() else {
        return;
    };
    // More than the socket buffers hold: the send blocks, the receive waits behind it.
    let answers = vec![b'1'; 64 << 20];
    let mut buffer = [0u8; 64];
    let deadline = Timespec::from(Duration::from_secs(30));
    push_exchange(&mut ring, &server, &answers, &mut buffer, &deadline);
    ring.submit().expect("submitting");
    std::thread::sleep(Duration::from_millis(50));

    // By user_data, the receive is not found: it has not started.
    let by_data = opcode::AsyncCancel::new(RECV).build().user_data(CANCEL);
    // SAFETY: a cancellation points to no memory.
    unsafe { ring.submission().push(&by_data) }.expect("room");
    assert_eq!(
        completions(&mut ring, 1, Duration::from_secs(10)),
        [(CANCEL, -libc::ENOENT)]
    );

    // By socket, the send is: it completes with the bytes it got out, and the receive and
    // the timeout behind it end without completions of their own.
    let by_socket = opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(server.as_raw_fd())).all())
        .build()
        .user_data(CANCEL);
    // SAFETY: as above.
    unsafe { ring.submission().push(&by_socket) }.expect("room");
    let seen = completions(&mut ring, 3, Duration::from_millis(500));
    assert!(
        seen.contains(&(CANCEL, 1)),
        "one operation cancelled: {seen:?}"
    );
    let sent = seen
        .iter()
        .find(|(user_data, _)| *user_data == SEND)
        .map(|(_, result)| *result);
    assert!(
        sent.is_some_and(|sent| sent > 0 && (sent as usize) < answers.len()),
        "the send reports how far it got: {seen:?}"
    );
    assert_eq!(
        seen.len(),
        2,
        "nothing from the receive or the timeout: {seen:?}"
    );
}
