//! What the `fast`, `slow` and `talk` binaries share: the address and stop flags, Ctrl-C,
//! and printing.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;
use shared::cli::DEFAULT_ADDR;

use crate::error::ClientError;

/// Where to connect and when to stop.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Address of the server to load (a running step): HOST:PORT, where HOST is an IP
    /// address or a name such as localhost
    #[arg(long, default_value = DEFAULT_ADDR, value_parser = parse_addr)]
    pub addr: SocketAddr,

    /// Stop after S seconds (fractions allowed, e.g. 0.5). Without --secs or --count, run
    /// until Ctrl-C. Either way the summary is printed at the end
    #[arg(long, value_name = "S", value_parser = parse_secs)]
    pub secs: Option<Duration>,

    /// Stop after C answers in total, over all connections
    #[arg(long, value_name = "C", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

/// [`DEFAULT_ADDR`] as an address.
pub fn default_addr() -> SocketAddr {
    DEFAULT_ADDR
        .parse()
        .expect("DEFAULT_ADDR is a valid socket address")
}

/// Parses `--addr`: `HOST:PORT`, where `HOST` is an IP address (`127.0.0.1`, `[::1]`) or a
/// name (`localhost`), resolved here, once.
///
/// A name may resolve to several addresses; this takes the first IPv4 one if there is one,
/// else the first. That is what `localhost` should mean here: it often resolves to `::1`
/// first, but the steps listen on `127.0.0.1` by default, where `::1` would be refused.
/// (A server listening on IPv6 is reached with `--addr [::1]:PORT`.)
///
/// # Errors
///
/// A message for clap when there is no port, or the name does not resolve:
/// `cannot resolve "nosuchhost:25000": ...`.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    // An IP address and port need no lookup.
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    match text.rsplit_once(':') {
        None => {
            return Err(format!(
                "\"{text}\" has no port: write HOST:PORT, e.g. localhost:25000"
            ));
        }
        Some((_, port)) if port.parse::<u16>().is_err() => {
            return Err(format!(
                "\"{text}\": the port must be a number from 0 to 65535"
            ));
        }
        Some(_) => {}
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|error| {
            // The resolver's message is one line already on the systems this runs on; make
            // sure of it.
            let reason = error.to_string().replace('\n', " ");
            format!("cannot resolve \"{text}\": {reason}")
        })?
        .collect();
    addrs
        .iter()
        .find(|addr| addr.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("cannot resolve \"{text}\": the name has no address"))
}

/// Parses `--rate`: a positive number of requests per second, fractions allowed.
///
/// # Errors
///
/// A message for clap when the text is not a positive, finite number.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of requests per second"))?;
    // NaN and the infinities are not finite.
    if !rate.is_finite() || rate <= 0.0 {
        return Err("must be a positive number of requests per second (e.g. 2 or 0.5)".into());
    }
    Ok(rate)
}

/// Parses `--secs`: a positive number of seconds, fractions allowed.
///
/// # Errors
///
/// A message for clap when the text is not a positive, finite number.
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    // NaN compares false with everything, so it is refused here too.
    if secs.is_nan() || secs <= 0.0 {
        return Err("must be more than 0 seconds".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` seconds is too long"))
}

/// A stop flag that Ctrl-C sets, so the client stops and prints its summary. A second
/// Ctrl-C exits at once, for when the first seems not to work.
///
/// If the handler cannot be installed the client still runs; it says so on stderr, and Ctrl-C
/// then ends it without a summary.
pub fn stop_on_ctrl_c(program: &str) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let installed = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::Relaxed) {
            // 128 + SIGINT, what a shell reports for a process ended by Ctrl-C.
            std::process::exit(130);
        }
    });
    if let Err(error) = installed {
        eprintln!("{program}: Ctrl-C will not print a summary: {error}");
    }
    stop
}

/// Prints `line` on stdout. When stdout is a pipe whose reader has gone (`fast | head -1`),
/// the client has no one left to report to: it exits at once and quietly, with success, as
/// Unix tools do, instead of panicking as `println!` would.
pub fn say(line: impl std::fmt::Display) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// Prints `program: error` as one line on stderr and returns the failure exit code.
pub fn fail(program: &str, error: &ClientError) -> ExitCode {
    eprintln!("{program}: {error}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_may_be_fractional() {
        assert_eq!(parse_secs("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn nonsense_seconds_are_refused() {
        for bad in ["0", "-1", "abc", "NaN", "inf", "1e300"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_address_parses() {
        assert_eq!(default_addr().port(), 25000);
        assert_eq!(parse_addr(DEFAULT_ADDR), Ok(default_addr()));
    }

    #[test]
    fn addresses_need_no_lookup_when_they_are_numbers() {
        assert_eq!(
            parse_addr("[::1]:7"),
            Ok(SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 7)))
        );
    }

    #[test]
    fn localhost_resolves_to_the_ipv4_loopback() {
        // /etc/hosts (or its equivalent) has localhost everywhere; no DNS is asked.
        assert_eq!(
            parse_addr("localhost:25000"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 25000)))
        );
    }

    #[test]
    fn a_name_that_does_not_resolve_is_a_clear_error() {
        // `.invalid` is reserved never to resolve (RFC 2606).
        let error = parse_addr("nosuchhost.invalid:25000").expect_err("no such host");
        assert!(
            error.starts_with("cannot resolve \"nosuchhost.invalid:25000\": "),
            "{error}"
        );
        assert!(!error.contains('\n'));
    }

    #[test]
    fn an_address_without_a_port_says_how_to_write_one() {
        assert_eq!(
            parse_addr("localhost"),
            Err("\"localhost\" has no port: write HOST:PORT, e.g. localhost:25000".into())
        );
        assert!(parse_addr("localhost:http").is_err());
        assert!(parse_addr("localhost:65536").is_err());
    }

    #[test]
    fn rates_may_be_fractional() {
        assert_eq!(parse_rate("2"), Ok(2.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in ["0", "-1", "abc", "NaN", "inf"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
