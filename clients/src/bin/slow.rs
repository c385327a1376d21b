//! `cargo run -p clients --bin slow -- --help`. The client itself is the library's `slow`
//! module; this file is its command line.

use std::process::ExitCode;

use clap::Parser;
use clients::cli::{Target, fail, say, stop_on_ctrl_c};
use clients::{SlowConfig, run_slow};

/// Sends a CPU-heavy request to a fib server again and again and times each answer.
///
/// Asks for fib(--n), 40 by default: about 0.3 s of pure CPU work for the server, one
/// request in flight at a time, and prints how long each answer took. With --conns 2, two
/// such clients run side by side: on a server that computes on several cores each still
/// takes about as long as alone; on a single-threaded one they take turns.
///
/// Run it beside the fast client to see whether one client's CPU work stalls everybody
/// else. At the end (--secs, --count or Ctrl-C) it prints the mean and the longest time per
/// request and how many were answered. When the server closes a connection (it shuts down,
/// or times out an idle client), the run ends there: the summary is printed, then which
/// connection the server closed and its last line (e.g. `error: idle timeout`). An `error:
/// busy` (the server's compute pool is full) is counted, and asked again 100 ms later.
#[derive(Parser, Debug)]
#[command(
    name = "slow",
    after_help = "Try it: `cargo run -p step02` in one terminal, then \
                  `cargo run -p clients --bin slow` in another, and \
                  `cargo run -p clients --bin fast` in a third."
)]
struct Cli {
    #[command(flatten)]
    target: Target,

    /// How many slow clients at once, each on its own connection
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    conns: u32,

    /// The n of every request: fib(40) takes about 0.3 s, and each step up costs 1.6 times
    /// more; above the server's --max-n (45 by default) the answer is an error
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(0..=93))]
    n: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stop = stop_on_ctrl_c("slow");
    let config = SlowConfig {
        addr: cli.target.addr,
        // u32 -> usize is lossless on every platform this runs on (32 bits or more).
        conns: cli.conns as usize,
        n: cli.n,
        duration: cli.target.secs,
        count: cli.target.count,
    };
    let several = config.conns > 1;
    say(format_args!(
        "slow: fib({}) on {} connection{} to {}, one request at a time each; Ctrl-C stops",
        config.n,
        config.conns,
        if several { "s" } else { "" },
        config.addr,
    ));
    let print_answer = |answer: &clients::SlowAnswer| {
        if several {
            say(format_args!("[{}] {answer}", answer.connection));
        } else {
            say(answer);
        }
    };
    match run_slow(&config, &stop, &print_answer) {
        Ok(report) => {
            say(&report);
            ExitCode::SUCCESS
        }
        Err(error) => fail("slow", &error),
    }
}
