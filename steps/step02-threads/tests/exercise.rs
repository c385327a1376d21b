//! The coding exercise of step02 (slides/step02-threads.md, "Exercise: change the code"):
//! `--threads N`. Its reference solution is slides/solutions/step02-threads.patch.

use std::io::{BufRead, ErrorKind};
use std::thread;
use std::time::{Duration, Instant};

use conformance::Client;
use conformance::exercise::{missing, require, start_binary_with_args};

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

/// Reads one answer line from `client` within [`TURN`]; `Err` with what came instead.
fn answer(client: &mut Client) -> Result<String, String> {
    client
        .stream()
        .set_read_timeout(Some(TURN))
        .expect("setting a timeout on an open socket");
    let mut line = String::new();
    match client.reader_mut().read_line(&mut line) {
        Ok(0) => Err("a close".into()),
        Ok(_) => Ok(line.trim_end().to_string()),
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err(format!("nothing in {} s", TURN.as_secs()))
        }
        Err(error) => Err(error.to_string()),
    }
}

/// How many threads the step02 process that this test started has, where `/proc` tells
/// (elsewhere `None`): it is the child of this process whose name is `step02`.
/// (`ChildServer` does not give out its process id.)
#[cfg(target_os = "linux")]
fn server_threads() -> Option<usize> {
    let me = std::process::id().to_string();
    let proc = std::fs::read_dir("/proc").expect("Linux has /proc");
    for entry in proc.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `PID (COMM) STATE PPID ...`; COMM may hold spaces, so split after its `)`.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let parent = tail.split_whitespace().nth(1);
        if head.ends_with("(step02") && parent == Some(me.as_str()) {
            let tasks = std::fs::read_dir(entry.path().join("task"))
                .expect("a running process has a task folder");
            return Some(tasks.count());
        }
    }
    panic!("the step02 server started by this test is not among this process's children")
}

#[cfg(not(target_os = "linux"))]
fn server_threads() -> Option<usize> {
    None
}

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
            answer(client).as_deref() == Ok("55"),
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
        if let Some(count) = server_threads() {
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
        let got = answer(&mut client);
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
