//! The server command line every step shares, and the `Server` trait that lets one `main`,
//! one conformance suite and one benchmark harness start any step.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser};

use crate::fib::MAX_FIB_N;
use crate::protocol::DEFAULT_MAX_N;

/// The address every step listens on unless told otherwise; the clients connect there too.
pub const DEFAULT_ADDR: &str = "127.0.0.1:25000";

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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: DEFAULT_ADDR
                .parse()
                .expect("DEFAULT_ADDR is a valid socket address"),
            max_n: DEFAULT_MAX_N,
        }
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

/// Parses the command line, binds, prints `listening on ADDR`, and serves: the whole `main`
/// of a step. `name` is the package name (`step01`) shown in `--help` and errors.
pub fn main<S: Server>(name: &'static str) -> ExitCode {
    let command = Cli::<S::Options>::command()
        .name(name)
        .about(S::ABOUT)
        .after_help(format!(
            "Try it: `cargo run -p {name}` here, then `cargo run -p clients --bin fast` \
             (or `--bin slow`) in another terminal."
        ));
    let cli = match Cli::<S::Options>::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
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
