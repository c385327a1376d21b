//! `cargo run -p clients --bin fast -- --help`. The client itself is the library's `fast`
//! module (and `idle` for `--idle`); this file is its command line.

use std::process::ExitCode;

use clap::Parser;
use clients::cli::{Target, fail, parse_rate, say, stop_on_ctrl_c};
use clients::{FastConfig, IdleConfig, run_fast_with_answers, run_idle};

/// Loads a fib server with tiny requests and measures how many it answers per second.
///
/// Opens --conns connections and sends each one small request (`1\n`: fib(1) costs the
/// server nothing, so what is measured is its cost per request: system calls, wake-ups,
/// scheduling). Each connection keeps --depth requests in flight: it writes them in one
/// write and sends the next batch when all their answers are in. Every answer is checked.
///
/// Prints the requests per second every second and, at the end (--secs, --count or
/// Ctrl-C), the total rate, the latency percentiles (p50, p99, p99.9 and max, from the
/// write of a batch to the read of each answer; in µs below 10 ms, in ms above) and how
/// many connections were "starved": got no answer at all, as with a server that serves one
/// connection at a time. When the server closes a connection (it shuts down, or times out
/// an idle client), the run ends there: the summary is printed, then which connection the
/// server closed and its last line (e.g. `error: idle timeout`).
///
/// With --rate R, each connection sends at most R requests per second (0.5: one every two
/// seconds), slow enough to follow each request in a server's trace; with one connection,
/// each answer is printed with its latency as it arrives instead of the per-second lines.
///
/// With --idle, the connections send one request each at the start and then nothing: they
/// are held open until --secs or Ctrl-C, to watch what idle connections cost a server
/// (`ps -o nlwp,rss` or `top`: a thread each for step02, almost nothing for step03). It
/// prints how many are open every second and, at the end, asks one more request on each
/// and counts the answers. The open-file limit is raised as far as allowed.
///
/// All connections are driven by one thread with a readiness loop, to leave the CPU to the
/// server being measured.
#[derive(Parser, Debug)]
#[command(
    name = "fast",
    after_help = "Try it: `cargo run -p step02` in one terminal, then \
                  `cargo run -p clients --bin fast -- --conns 64 --secs 5` in another. \
                  Idle connections: `... --bin fast -- --idle --conns 1000 --secs 30`. \
                  One request at a time: `... --bin fast -- --rate 2`."
)]
struct Cli {
    #[command(flatten)]
    target: Target,

    /// How many connections to open
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    conns: u32,

    /// Requests in flight per connection, written in one write (16: "pipelined" in the
    /// results table)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    depth: u32,

    /// The n of every request; above the server's --max-n (45 by default) every answer is
    /// an error, and the client stops with the server's message
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=93))]
    n: u32,

    /// At most R requests per second on each connection (fractions allowed, e.g. 2 or
    /// 0.5); with one connection, every answer is printed with its latency
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    rate: Option<f64>,

    /// Hold the connections open and idle (one request each at the start and at the end)
    /// until --secs or Ctrl-C, printing how many are open every second
    #[arg(long, conflicts_with_all = ["depth", "n", "rate", "count"])]
    idle: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stop = stop_on_ctrl_c("fast");
    if cli.idle {
        return idle(&cli, &stop);
    }
    let config = FastConfig {
        addr: cli.target.addr,
        // u32 -> usize is lossless on every platform this runs on (32 bits or more).
        conns: cli.conns as usize,
        depth: cli.depth as usize,
        n: cli.n,
        duration: cli.target.secs,
        count: cli.target.count,
        rate: cli.rate,
    };
    let pace = match config.rate {
        Some(rate) => format!(", at most {rate} per second"),
        None => String::new(),
    };
    say(format_args!(
        "fast: fib({}) on {} connection{} to {}, {} in flight each{pace}; Ctrl-C stops",
        config.n,
        config.conns,
        if config.conns == 1 { "" } else { "s" },
        config.addr,
        config.depth,
    ));
    // A paced run on one connection is slow enough to follow answer by answer, and its
    // per-second line would say "2 req/s" and nothing else.
    let each_answer = config.rate.is_some() && config.conns == 1;
    let mut print_answer = |answer: &clients::FastAnswer| say(answer);
    let result = run_fast_with_answers(
        &config,
        &stop,
        &mut |second| {
            if !each_answer {
                say(second);
            }
        },
        each_answer.then_some(&mut print_answer as &mut dyn FnMut(&clients::FastAnswer)),
    );
    match result {
        Ok(report) => {
            say(&report);
            ExitCode::SUCCESS
        }
        Err(error) => fail("fast", &error),
    }
}

/// `fast --idle`: hold the connections open and idle.
fn idle(cli: &Cli, stop: &std::sync::atomic::AtomicBool) -> ExitCode {
    let config = IdleConfig {
        addr: cli.target.addr,
        // u32 -> usize is lossless on every platform this runs on (32 bits or more).
        conns: cli.conns as usize,
        duration: cli.target.secs,
    };
    say(format_args!(
        "fast: holding {} idle connection{} to {} (one request each at the start and at the \
         end); Ctrl-C stops",
        config.conns,
        if config.conns == 1 { "" } else { "s" },
        config.addr,
    ));
    match run_idle(&config, stop, &mut |second| say(second)) {
        Ok(report) => {
            say(&report);
            ExitCode::SUCCESS
        }
        Err(error) => fail("fast", &error),
    }
}
