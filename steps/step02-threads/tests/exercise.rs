//! The coding exercise of step02 (slides/step02-threads.md, "Exercise: change the code"):
//! `--threads N`. Its reference solution is slides/solutions/step02-threads.patch.

use std::thread;
use std::time::{Duration, Instant};

use conformance::Client;
use conformance::exercise::{missing, require, start_binary_with_args, try_line};

/// The pool the test asks for, and how many connections it opens.
const THREADS: usize = 3;
const CONNECTIONS: usize = 10;

/// How long the test watches the server for what must not happen while the pool is busy
/// (more threads, an answer to a connection beyond the pool). A correct pool never does
/// either, however long one watches; a thread per connection does both in microseconds.
const WATCH: Duration = Duration::from_secs(1);

/// How long a waiting connection may take to be served once the ones before it have
/// closed: a safety net.
const TURN: Duration = Duration::from_secs(20);

#[test]
#[ignore = "exercise: see slides/step02-threads.md, Exercise: change the code"]
fn threads() {
    let server = start_binary_with_args(
        env!("CARGO_BIN_EXE_step02"),
        &["--threads", "3"],
        "`--threads` is not an option of step02 yet: add it to an `Options` struct in \
         src/lib.rs (with `clap.workspace = true` in the step's Cargo.toml) and make it the \
         step's `type Options`",
    );
    let addr = server.addr;

    // As many connections as threads: each is served, and stays open.
    let mut clients: Vec<Client> = (0..CONNECTIONS).map(|_| Client::connect(addr)).collect();
    for (i, client) in clients.iter_mut().take(THREADS).enumerate() {
        client.send(b"10\n");
        require(
            try_line(client, TURN).as_deref() == Ok("55"),
            format_args!(
                "with --threads {THREADS}, connection {} of the first {THREADS} was not \
                 answered: each thread of the pool must accept a connection and serve it",
                i + 1
            ),
        );
    }
    // The others ask too; their requests wait in the kernel until a thread is free.
    for client in &mut clients[THREADS..] {
        client.send(b"10\n");
    }

    // While the first ones are open, the pool is busy: no more threads, no more answers.
    let watch_until = Instant::now() + WATCH;
    while Instant::now() < watch_until {
        if let Some(count) = server.threads() {
            // The pool, and the main thread if it only waits for the pool.
            require(
                count <= THREADS + 1,
                format_args!(
                    "with --threads {THREADS} and {CONNECTIONS} connections the server has \
                     {count} threads: start the {THREADS} threads once, in `run`, each \
                     looping on `accept` and `serve_connection`, instead of a thread per \
                     connection"
                ),
            );
        }
        if let Some(k) = (THREADS..CONNECTIONS).find(|&k| clients[k].has_answer_waiting()) {
            missing(format_args!(
                "connection {} was answered while the first {THREADS} were still open: with \
                 --threads {THREADS} at most {THREADS} connections are served at once (a \
                 thread serves its connection to the end before it accepts the next)",
                k + 1
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }

    // The first ones close: every other connection is served in turn, as threads are freed.
    let waiting = clients.split_off(THREADS);
    drop(clients);
    for (i, mut client) in waiting.into_iter().enumerate() {
        let got = try_line(&mut client, TURN);
        require(
            got.as_deref() == Ok("55"),
            format_args!(
                "once the first {THREADS} connections had closed, connection {} was not \
                 answered (it got {got:?}): after serving a connection, each thread of the \
                 pool must go back to `accept` for the next one",
                THREADS + 1 + i
            ),
        );
    }
    drop(server);
}
