//! `cargo run -p clients --bin talk`: type requests at a server and read its answers, for
//! machines without `nc`.
//!
//! Two threads, because the two directions are independent: the main thread sends every line
//! typed on stdin as it is, and a reader thread prints every line the server sends the
//! moment it arrives. The server may speak while nobody types (`error: idle timeout`, then
//! it closes) or close the connection after a line that was too long, and that must show at
//! once, not after the next line typed.
//!
//! The reader thread ends the process: when the server closes, the main thread may be blocked
//! reading the terminal, and there is no portable way to interrupt that read.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use clap::Parser;
use clients::cli::{fail, parse_addr, say};
use clients::connect::connect;
use shared::cli::DEFAULT_ADDR;

/// Connects to a fib server and lets you type requests at it.
///
/// Every line typed is sent as it is, followed by a newline: a number asks for its fib
/// (`40` takes the server about 0.3 s), anything else gets the server's error
/// (`error: not a number`). Every line the server sends is printed as it arrives, also
/// while you are not typing. Ctrl-D (end of input) quits, once the server has answered
/// what was sent. When the server closes the connection, talk says so, with the server's
/// reason if it gave one, and exits.
#[derive(Parser, Debug)]
#[command(
    name = "talk",
    after_help = "Try it: `cargo run -p step02` in one terminal, then \
                  `cargo run -p clients --bin talk` in another, and type 10."
)]
struct Cli {
    /// Address of the server (a running step): HOST:PORT, where HOST is an IP address or a
    /// name such as localhost
    #[arg(long, default_value = DEFAULT_ADDR, value_parser = parse_addr)]
    addr: SocketAddr,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stream = match connect(cli.addr) {
        Ok(stream) => stream,
        Err(error) => return fail("talk", &error),
    };
    let reading = match stream.try_clone() {
        Ok(reading) => reading,
        Err(error) => {
            eprintln!("talk: cannot read and write the connection at once: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "talk: connected to {}; type a number and Enter (the server answers its fib), \
         Ctrl-D to quit",
        cli.addr
    );
    let quitting = Arc::new(AtomicBool::new(false));
    let reader = {
        let quitting = Arc::clone(&quitting);
        thread::spawn(move || std::process::exit(print_answers(reading, &quitting)))
    };
    send_lines(io::stdin().lock(), &stream);
    // End of input (Ctrl-D), or the connection broke. Shutting down the sending side tells
    // the server there is nothing more: it answers every line it has, then closes, and the
    // reader prints those answers and ends the process.
    quitting.store(true, Ordering::Relaxed);
    let _ = stream.shutdown(Shutdown::Write);
    // The reader ends the process; `join` returns only if it panicked.
    let _ = reader.join();
    ExitCode::FAILURE
}

/// Sends every line of `input` to the server, with its `\n` (added to a last line that has
/// none), until the input ends or the connection breaks (the reader says why).
fn send_lines(mut input: impl BufRead, mut stream: &TcpStream) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                eprintln!("talk: cannot read the input: {error}");
                return;
            }
        }
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        if stream.write_all(&line).is_err() {
            return;
        }
    }
}

/// Prints every line the server sends until it closes the connection; says so (with the
/// server's reason, an `error: ` last line) unless the user was quitting. Returns the
/// process's exit status: 0 when the server closed, 1 when the connection failed.
fn print_answers(stream: TcpStream, quitting: &AtomicBool) -> i32 {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut last_line = None;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            // The end of the stream: the server closed the connection.
            Ok(0) => break,
            Ok(_) => {
                // A line cut short by the close is printed too: it may be the server's
                // reason for closing.
                let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line));
                say(&text);
                last_line = Some(text.into_owned());
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {
                eprintln!("talk: the server reset the connection");
                return 0;
            }
            Err(error) => {
                eprintln!("talk: reading the connection failed: {error}");
                return 1;
            }
        }
    }
    if !quitting.load(Ordering::Relaxed) {
        match last_line.filter(|line| line.starts_with("error: ")) {
            Some(reason) => {
                eprintln!("talk: server closed the connection (its last line: {reason})");
            }
            None => eprintln!("talk: server closed the connection"),
        }
    }
    0
}
