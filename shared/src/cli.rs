//! The server command line every step shares, and the `Server` trait that lets one `main`,
//! one conformance suite and one benchmark harness start any step.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser};

use crate::fib::MAX_FIB_N;
use crate::protocol::DEFAULT_MAX_N;

/// The address every step listens on unless told otherwise; the clients connect there too.
pub const DEFAULT_ADDR: &str = "127.0.0.1:25000";

/// How long a connection may stay idle by default (`--idle-timeout`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a graceful shutdown waits for the connections to finish by default (`--grace`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// How many jobs a compute pool queues per thread by default (`--queue`): enough that a few
/// slow clients per core wait their turn, few enough that the last one is not kept waiting
/// for minutes.
pub const DEFAULT_QUEUE_PER_THREAD: usize = 4;

/// What every step is configured with.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on; port 0 asks the OS for a free port
    #[arg(long, default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,

    /// Largest n to compute fib(n) for; larger requests get an error (at most 93, so that
    /// fib(n) fits in 64 bits)
    #[arg(long, default_value_t = DEFAULT_MAX_N,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_FIB_N)))]
    pub max_n: u32,

    /// Close a connection that has no answer outstanding and sends no complete line for
    /// this long, after answering `error: idle timeout`; 0 never does. Fractions allowed
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_seconds)]
    pub idle_timeout: Duration,

    /// On Ctrl-C or SIGTERM: how long to let the connections finish (every request received
    /// is answered, then each closes cleanly) before exiting anyway; a second signal exits
    /// at once
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_seconds)]
    pub grace: Duration,

    /// Jobs the compute pool may queue; a CPU-heavy request that finds it full is answered
    /// `error: busy` at once [default: 4 per pool thread]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub queue: Option<u64>,

    /// Print every event of the loop as it happens, one line each, on stderr (slows the
    /// server: for watching a few requests, with `fast --rate 2`)
    #[arg(long)]
    pub trace: bool,

    /// Write the loop's events as a Chrome trace (one track per thread; open it in
    /// https://ui.perfetto.dev or chrome://tracing), written out when the server stops
    #[arg(long, value_name = "FILE.json")]
    pub trace_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: DEFAULT_ADDR
                .parse()
                .expect("DEFAULT_ADDR is a valid socket address"),
            max_n: DEFAULT_MAX_N,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            grace: DEFAULT_GRACE,
            queue: None,
            trace: false,
            trace_file: None,
        }
    }
}

/// `--grace` and the like: a number of seconds, fractions allowed, 0 included.
///
/// # Errors
///
/// A message for clap when the text is not a finite number of seconds at or above 0.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if secs.is_nan() || secs < 0.0 {
        return Err("must be 0 seconds or more".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` seconds is too long"))
}

impl Config {
    /// `--idle-timeout`, or `None` where it is 0: no idle timeout at all.
    pub fn idle(&self) -> Option<Duration> {
        (!self.idle_timeout.is_zero()).then_some(self.idle_timeout)
    }

    /// How many jobs a pool of `threads` threads queues: `--queue`, or
    /// [`DEFAULT_QUEUE_PER_THREAD`] per thread.
    pub fn queue_for(&self, threads: usize) -> usize {
        self.queue
            .map_or(DEFAULT_QUEUE_PER_THREAD * threads.max(1), |queue| {
                usize::try_from(queue).unwrap_or(usize::MAX)
            })
    }
}

impl Config {
    /// Loopback, port 0 (a free port the OS picks), the default `--max-n`: what tests and
    /// benchmarks start a step with.
    pub fn ephemeral() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        }
    }
}

/// For steps with no options beyond [`Config`].
#[derive(Args, Debug, Clone, Default)]
pub struct NoOptions {}

/// One step of the workbook, as `main`, the conformance suite and the benchmarks see it.
///
/// `bind` and `run` are separate so the caller learns the bound address (port 0 resolved)
/// before the server starts serving, and can print it or connect to it.
pub trait Server: Sized {
    /// Command-line options of this step beyond [`Config`] ([`NoOptions`] for most steps).
    type Options: Args + Default + Clone + Send + Sync + 'static;

    /// One paragraph for `--help`: the style of this step.
    const ABOUT: &'static str;

    /// Whether Ctrl-C and SIGTERM stop the step gracefully, within `--grace` (steps 03 to
    /// 09). Where not, `--grace` is hidden and refused: the step's header says why.
    const GRACEFUL_SHUTDOWN: bool = true;

    /// Whether the step has a compute pool whose queue `--queue` bounds (steps 05, 06, 08,
    /// 09). Where not, `--queue` is hidden and refused.
    const COMPUTE_POOL: bool = false;

    /// The crates whose events `--trace` and `--trace-file` show: the step's own (a
    /// hand-rolled loop), or the libraries' it runs on. Empty: the step has no loop of its own
    /// to watch, and the options are refused with a pointer to its header.
    const TRACE_TARGETS: &'static [&'static str] = &[];

    /// Opens the listening socket(s).
    ///
    /// # Errors
    ///
    /// When the address cannot be bound (in use, not local, no permission) or the step's
    /// machinery cannot be set up.
    fn bind(config: &Config, options: &Self::Options) -> io::Result<Self>;

    /// The address actually bound.
    fn local_addr(&self) -> SocketAddr;

    /// Serves until the process ends (or, for steps that handle Ctrl-C, until asked to stop).
    ///
    /// # Errors
    ///
    /// Only for failures that leave the server unable to go on (the listener itself breaks);
    /// nothing a client does makes `run` return.
    fn run(self) -> io::Result<()>;
}

#[derive(Parser, Debug)]
struct Cli<O: Args> {
    #[command(flatten)]
    config: Config,
    #[command(flatten)]
    options: O,
}

/// Parses `args` (without the program's name) as step `S`'s command line would: for tests
/// that start a step with options, and for child processes started with them.
///
/// # Errors
///
/// clap's error, which says what is wrong with the arguments.
pub fn parse<S: Server>(
    args: impl IntoIterator<Item = String>,
) -> Result<(Config, S::Options), clap::Error> {
    let cli = Cli::<S::Options>::try_parse_from(std::iter::once("step".to_string()).chain(args))?;
    Ok((cli.config, cli.options))
}

/// Installs what `--trace` and `--trace-file` ask for, for a step tracing `targets`: the
/// guard to keep until the server stops, or `None`.
///
/// # Errors
///
/// When the trace file cannot be created.
pub fn trace(targets: &[&str], config: &Config) -> io::Result<Option<crate::trace::Tracing>> {
    crate::trace::init(targets, config.trace, config.trace_file.as_deref())
}

/// Parses the command line, binds, prints `listening on ADDR`, and serves: the whole `main`
/// of a step. `name` is the package name (`step01`) shown in `--help` and errors.
pub fn main<S: Server>(name: &'static str) -> ExitCode {
    let mut command = Cli::<S::Options>::command()
        .name(name)
        .about(S::ABOUT)
        .after_help(format!(
            "Try it: `cargo run -p {name}` here, then `cargo run -p clients --bin fast` \
             (or `--bin slow`) in another terminal."
        ));
    // Options that mean nothing for this step are left out of --help, and refused with a
    // reason rather than silently ignored.
    let unsupported: Vec<(&str, &str)> = [
        (
            !S::GRACEFUL_SHUTDOWN,
            "grace",
            "has no graceful shutdown (its header says why): Ctrl-C ends it at once",
        ),
        (
            !S::COMPUTE_POOL,
            "queue",
            "has no compute pool to queue for",
        ),
        (
            S::TRACE_TARGETS.is_empty(),
            "trace",
            "does not trace its loop (its header says how to watch it)",
        ),
        (
            S::TRACE_TARGETS.is_empty(),
            "trace_file",
            "does not trace its loop (its header says how to watch it)",
        ),
    ]
    .into_iter()
    .filter_map(|(unsupported, arg, why)| unsupported.then_some((arg, why)))
    .collect();
    for (arg, _) in &unsupported {
        command = command.mut_arg(*arg, |a| a.hide(true));
    }
    let matches = command.get_matches();
    for (arg, why) in &unsupported {
        if matches.value_source(arg) == Some(ValueSource::CommandLine) {
            eprintln!("{name}: --{}: {name} {why}", arg.replace('_', "-"));
            return ExitCode::from(2);
        }
    }
    let cli = match Cli::<S::Options>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    // Kept until `main` returns: dropping it writes the trace file out.
    let _tracing = match trace(S::TRACE_TARGETS, &cli.config) {
        Ok(tracing) => tracing,
        Err(error) => {
            eprintln!("{name}: cannot trace: {error}");
            return ExitCode::FAILURE;
        }
    };
    let server = match S::bind(&cli.config, &cli.options) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("{name}: cannot listen on {}: {error}", cli.config.addr);
            if error.kind() == io::ErrorKind::AddrInUse {
                eprintln!(
                    "{name}: is another step still running? Stop it, or pick another port with \
                     --addr 127.0.0.1:PORT (0 for any free one)."
                );
            }
            return ExitCode::FAILURE;
        }
    };
    // The first line of output, always: the results runner and scripts read the port here.
    println!("listening on {}", server.local_addr());
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{name}: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Cli::<NoOptions>::try_parse_from(["step"].iter().chain(args)).map(|cli| cli.config)
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = parse(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.idle(), Some(Duration::from_secs(60)));
        assert_eq!(config.grace, Duration::from_secs(10));
        assert_eq!(config.queue_for(2), 8, "4 per pool thread");
    }

    #[test]
    fn an_idle_timeout_of_zero_is_none_and_fractions_are_fine() {
        assert_eq!(parse(&["--idle-timeout", "0"]).unwrap().idle(), None);
        assert_eq!(
            parse(&["--idle-timeout", "0.25"]).unwrap().idle(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse(&["--grace", "1.5"]).unwrap().grace,
            Duration::from_millis(1500)
        );
        assert_eq!(parse(&["--queue", "3"]).unwrap().queue_for(2), 3);
    }

    #[test]
    fn nonsense_durations_and_queues_are_refused() {
        for args in [
            &["--idle-timeout", "-1"][..],
            &["--idle-timeout", "soon"],
            &["--grace", "NaN"],
            &["--grace", "1e300"],
            &["--queue", "0"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
