#![cfg(target_os = "linux")]
//! The coding exercise of step08 (slides/step08-multicore.md, "Exercise: change the code"),
//! ignored in the normal suite: `cargo test -p step08 --test exercise -- --ignored`.

use conformance::exercise::{missing, require, start_binary_with_args};
use conformance::{Client, PATIENCE, expected};

/// Requests sent in all, over [`CONNECTIONS`] connections.
const REQUESTS: usize = 200;
const CONNECTIONS: usize = 8;

/// Each ring counts the requests it answers, and says so when a graceful shutdown is over:
/// `step08 ring-0: 117 requests` on stderr, one line per ring, summing to what was sent.
#[test]
#[ignore = "exercise: see slides/step08-multicore.md, Exercise: change the code"]
fn ring_counters() {
    let mut server = start_binary_with_args(
        env!("CARGO_BIN_EXE_step08"),
        &["--threads", "2"],
        "step08 does not take `--threads 2`",
    );

    // Eight connections, spread over the two rings by the kernel's SO_REUSEPORT hash. Half
    // ask one request at a time; the other half pipeline theirs, many lines in one receive:
    // a ring counts requests, not receives.
    let per_connection = REQUESTS / CONNECTIONS;
    for c in 0..CONNECTIONS {
        let mut client = Client::connect(server.addr);
        let ns: Vec<u32> = (0..per_connection).map(|i| ((c + i) % 30) as u32).collect();
        if c % 2 == 0 {
            for &n in &ns {
                assert_eq!(client.ask(&n.to_string()), expected(n), "fib({n})");
            }
        } else {
            let lines: String = ns.iter().map(|n| format!("{n}\n")).collect();
            client.send(lines.as_bytes());
            for &n in &ns {
                assert_eq!(client.line(), expected(n), "fib({n}), pipelined");
            }
        }
        // Our side ends, and the server closes its own once it has seen that.
        client.half_close();
        assert_eq!(client.read_to_close(), "", "nothing after the answers");
    }

    server.terminate();
    let status = server.wait_exit(PATIENCE);
    require(
        status.is_some_and(|status| status.success()),
        format_args!(
            "step08 did not exit 0 after SIGTERM ({status:?}): the shutdown must still end"
        ),
    );
    // The child has exited: its stderr ends, and waiting for a line that never comes returns
    // as soon as every line it wrote has been read.
    let _ = server.wait_stderr("\0", PATIENCE);
    let stderr = server.stderr_so_far();

    let counts: Vec<(&str, &str)> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("step08 ring-")?.strip_suffix(" requests"))
        .filter_map(|line| line.split_once(": "))
        .collect();
    if counts.is_empty() {
        missing(format_args!(
            "no `step08 ring-N: K requests` line on stderr after SIGTERM: count the requests \
             each ring answers, and print the count in `serve` (src/event_loop.rs) once its \
             loop is over\n(stderr was:\n{stderr})"
        ));
    }
    let mut rings: Vec<usize> = Vec::new();
    let mut total = 0;
    for (ring, count) in &counts {
        let (Ok(ring), Ok(count)) = (ring.parse::<usize>(), count.parse::<usize>()) else {
            missing(format_args!(
                "`step08 ring-{ring}: {count} requests` is not a ring number and a count: \
                 print `step08 ring-N: K requests`, N and K numbers"
            ));
        };
        rings.push(ring);
        total += count;
    }
    rings.sort_unstable();
    require(
        rings == [0, 1],
        format_args!(
            "with --threads 2, stderr must have one count line for ring 0 and one for ring 1; \
             it has them for rings {rings:?}: every ring prints its own, once, after its loop"
        ),
    );
    require(
        total == REQUESTS,
        format_args!(
            "the rings' counts sum to {total}, not the {REQUESTS} requests sent (half of them \
             pipelined, many lines in one receive): count each request line a ring answers, \
             on that ring only"
        ),
    );
}
