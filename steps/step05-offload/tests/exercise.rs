//! The coding exercise of step05 (`slides/step05-offload.md`, "Exercise: change the code"):
//! `--offload-from N` chooses, on the command line, from which n fib goes to the pool.
//!
//! The verdict is read from `--trace-file`: a fib computed on a pool thread leaves a
//! `fib(n) done on pool-K` event on that thread's track (`shared::trace::traced_fib`), one
//! computed on the loop leaves none. The trace is complete once the server has stopped, so
//! nothing here depends on timing.

use conformance::exercise::{missing, require, start_binary_with_args};
use conformance::trace::{TraceEvent, parse};
use conformance::{Client, PATIENCE, expected};
use shared::fib::OFFLOAD_FROM_N;

#[test]
#[ignore = "exercise: see slides/step05-offload.md, Exercise: change the code"]
fn offload_from() {
    let with_30 = Traced::run(Some(30), &[25, 30, 32]);
    if with_30.on_pool(25) {
        missing(
            "fib(25) went to a pool thread with `--offload-from 30`: in `Offloaded::answer` \
             (src/lib.rs), compare n with the option's value, not with `OFFLOAD_FROM_N`",
        );
    }
    for n in [30, 32] {
        require(
            with_30.on_pool(n),
            format_args!(
                "fib({n}) was computed on the loop with `--offload-from 30`: every n at or \
                 above the option's value (n >= 30) goes to the pool"
            ),
        );
    }

    let with_0 = Traced::run(Some(0), &[1, 10]);
    for n in [1, 10] {
        require(
            with_0.on_pool(n),
            format_args!(
                "fib({n}) was computed on the loop with `--offload-from 0`: 0 sends every fib \
                 to the pool"
            ),
        );
    }

    let by_default = Traced::run(None, &[OFFLOAD_FROM_N - 1, OFFLOAD_FROM_N]);
    require(
        !by_default.on_pool(OFFLOAD_FROM_N - 1) && by_default.on_pool(OFFLOAD_FROM_N),
        format_args!(
            "without `--offload-from`, fib must go to the pool from `OFFLOAD_FROM_N` \
             ({OFFLOAD_FROM_N}) on, as before: make it the option's default"
        ),
    );
}

/// What one run of step05 recorded in its trace file.
struct Traced {
    events: Vec<TraceEvent>,
}

impl Traced {
    /// Starts step05's binary with `--offload-from {from}` (when given) and a trace file, asks
    /// each of `ns` on one connection, stops the server with SIGTERM, and reads its trace.
    fn run(from: Option<u32>, ns: &[u32]) -> Traced {
        let file = std::env::temp_dir().join(format!(
            "workbook-exercise-step05-{}-{}.json",
            std::process::id(),
            from.map_or("default".to_string(), |from| from.to_string())
        ));
        let file_arg = file
            .to_str()
            .expect("the temporary folder has a UTF-8 path");
        let from_arg = from.map(|from| from.to_string());
        let mut args = vec!["--trace-file", file_arg];
        if let Some(from) = &from_arg {
            args.extend(["--offload-from", from]);
        }
        let mut server = start_binary_with_args(
            env!("CARGO_BIN_EXE_step05"),
            &args,
            "`--offload-from N` is not an option of step05 yet: give step05 an `Options` struct \
             of its own in src/lib.rs (today it has `type Options = NoOptions`)",
        );
        let mut client = Client::connect(server.addr);
        for &n in ns {
            assert_eq!(client.ask(&n.to_string()), expected(n), "the answer to {n}");
        }
        drop(client);
        // The trace file is written out when the server stops.
        server.terminate();
        let status = server.wait_exit(PATIENCE);
        assert!(
            status.is_some_and(|status| status.success()),
            "step05 did not stop cleanly on SIGTERM ({status:?}): {}",
            server.stderr_so_far()
        );
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|error| panic!("reading the trace file {}: {error}", file.display()));
        let _ = std::fs::remove_file(&file);
        Traced {
            events: parse(&text),
        }
    }

    /// Whether fib(n) was computed on a pool thread.
    fn on_pool(&self, n: u32) -> bool {
        let done = format!("fib({n}) done on ");
        self.events
            .iter()
            .any(|event| event.thread.starts_with("pool-") && event.name.starts_with(&done))
    }
}
