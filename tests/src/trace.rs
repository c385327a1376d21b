//! Checking what `--trace` and `--trace-file` show: a scripted session against a step's real
//! binary, with both on, and helpers to check the events it recorded.
//!
//! The session: one connection asks `1`, then `40`, then half-closes and reads to the end;
//! then the server gets SIGTERM and shuts down (which writes the trace file out). Each
//! hand-rolled step's `tests/trace.rs` says which events must appear, in which order, on
//! which threads, and keeps the excerpt its slides show up to date.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::PATIENCE;

/// One event of a Chrome trace, as `--trace-file` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// The thread's name (`main`, `pool-0`, `ring-1`).
    pub thread: String,
    /// `i` for an event, `B` and `E` for the start and the end of a span.
    pub phase: String,
    /// An event's message, or a span's name.
    pub name: String,
}

/// What one traced session recorded.
#[derive(Debug)]
pub struct Session {
    /// The `--trace-file` events, in the order they were written.
    pub events: Vec<TraceEvent>,
    /// The `--trace` lines the server printed on stderr.
    pub lines: Vec<String>,
}

/// Runs the scripted session against the step binary `binary` (`env!("CARGO_BIN_EXE_step05")`
/// in the step's own tests), with `--trace` and `--trace-file`.
///
/// # Panics
///
/// When the server does not start, answer, stop or write a valid trace.
pub fn session(binary: &str) -> Session {
    let file = std::env::temp_dir().join(format!(
        "workbook-trace-{}-{}.json",
        Path::new(binary)
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("step"),
        std::process::id()
    ));
    let mut child = Command::new(binary)
        .args(["--addr", "127.0.0.1:0", "--idle-timeout", "0", "--trace"])
        .arg("--trace-file")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
    let stdout = child.stdout.take().expect("stdout was piped");
    let mut stderr = child.stderr.take().expect("stderr was piped");
    let (lines_out, lines) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = lines_out.send(text);
    });
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("reading the first line");
    let addr = clients::table::process::parse_listening_line(&first)
        .unwrap_or_else(|| panic!("{binary} printed {first:?}, not `listening on ADDR`"));

    let mut stream = TcpStream::connect(addr).expect("connecting to the traced step");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("a valid timeout");
    let mut ask = |request: &[u8], answer: &str| {
        stream.write_all(request).expect("sending a request");
        let mut got = vec![0u8; answer.len()];
        stream.read_exact(&mut got).expect("reading an answer");
        assert_eq!(String::from_utf8_lossy(&got), answer);
    };
    // A pause before each step of the session, so that the server has gone back to waiting:
    // the trace then shows whole turns of its loop, in the same order every run (without it,
    // a client quicker than a traced server would find it still busy with the last request).
    let pause = || thread::sleep(Duration::from_millis(100));
    pause();
    ask(b"1\n", "1\n");
    pause();
    ask(b"40\n", "102334155\n");
    pause();
    stream.shutdown(Shutdown::Write).expect("half-closing");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("reading to the end");
    assert!(rest.is_empty(), "nothing after the answers: {rest:?}");

    terminate(child.id());
    let status = child.wait().expect("waiting for the step");
    let stderr = lines.recv_timeout(PATIENCE).unwrap_or_default();
    assert!(status.success(), "the step exited with {status}: {stderr}");
    let text = std::fs::read_to_string(&file).expect("the trace file was written");
    let _ = std::fs::remove_file(&file);
    Session {
        events: parse(&text),
        lines: stderr
            .lines()
            .filter(|line| line.contains(" s  "))
            .map(String::from)
            .collect(),
    }
}

#[cfg(unix)]
fn terminate(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("process ids fit in pid_t");
    // SAFETY: kill sends a signal to the process we started; it touches no memory.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    // Give the server a moment to exit by itself before `wait` (which does not kill).
    thread::sleep(Duration::from_millis(10));
}

#[cfg(not(unix))]
fn terminate(_: u32) {
    panic!("the traced session sends SIGTERM: Unix only");
}

/// The events of a Chrome trace file, with their thread names.
///
/// # Panics
///
/// When the text is not a trace-event array.
pub fn parse(text: &str) -> Vec<TraceEvent> {
    let value: serde_json::Value = serde_json::from_str(text).expect("the trace is JSON");
    let entries = value.as_array().expect("the trace is an array of events");
    let mut threads = std::collections::HashMap::new();
    for entry in entries {
        if entry["ph"] == "M" && entry["name"] == "thread_name" {
            threads.insert(
                entry["tid"].to_string(),
                entry["args"]["name"].as_str().unwrap_or("?").to_string(),
            );
        }
    }
    entries
        .iter()
        .filter(|entry| entry["ph"] != "M")
        .map(|entry| TraceEvent {
            thread: threads
                .get(&entry["tid"].to_string())
                .cloned()
                .unwrap_or_else(|| entry["tid"].to_string()),
            phase: entry["ph"].as_str().unwrap_or("?").to_string(),
            name: entry["name"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}

/// One expected event: on a thread whose name starts with `thread`, an event (or the start of
/// a span) whose name contains `text`.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub thread: &'static str,
    pub text: &'static str,
}

/// `Expect` on a thread named `thread...`, an event or span containing `text`.
pub const fn on(thread: &'static str, text: &'static str) -> Expect {
    Expect { thread, text }
}

impl Session {
    /// Checks that every `expected` event is there, in this order (others may come between).
    ///
    /// # Panics
    ///
    /// With the first expected event that is missing, and the events around where it was
    /// looked for.
    pub fn assert_in_order(&self, expected: &[Expect]) {
        let mut from = 0;
        for want in expected {
            let found = self.events[from..].iter().position(|event| {
                event.thread.starts_with(want.thread)
                    && event.phase != "E"
                    && event.name.contains(want.text)
            });
            match found {
                Some(offset) => from += offset + 1,
                None => {
                    let near: Vec<String> = self.events[from..]
                        .iter()
                        .take(30)
                        .map(|e| format!("  {} {} {}", e.thread, e.phase, e.name))
                        .collect();
                    panic!(
                        "no event containing {:?} on thread {}* after the ones before it; the \
                         events from there on:\n{}",
                        want.text,
                        want.thread,
                        near.join("\n")
                    );
                }
            }
        }
    }

    /// The `--trace` lines of one request: from the last line containing `start` before the
    /// first containing `around`, to the first line from there containing `end`.
    ///
    /// # Panics
    ///
    /// When one of them is missing.
    pub fn excerpt(&self, start: &str, around: &str, end: &str) -> Vec<String> {
        let missing = |text: &str| -> ! {
            panic!(
                "no trace line contains {text:?} where expected: {:#?}",
                self.lines
            )
        };
        let middle = self
            .lines
            .iter()
            .position(|line| line.contains(around))
            .unwrap_or_else(|| missing(around));
        let first = self.lines[..=middle]
            .iter()
            .rposition(|line| line.contains(start))
            .unwrap_or_else(|| missing(start));
        let last = middle
            + self.lines[middle..]
                .iter()
                .position(|line| line.contains(end))
                .unwrap_or_else(|| missing(end));
        self.lines[first..=last].to_vec()
    }
}

/// Keeps the trace excerpt a slide quotes in step with what the step prints now.
///
/// The excerpt lives in `slides/traces/<name>.txt`, between `// ANCHOR: one_request` and
/// `// ANCHOR_END: one_request`, where the deck quotes it like code. It holds the lines of
/// one real run. The check compares them with `lines` with every number masked (times and
/// byte counts vary from run to run, the events do not): a different sequence of events
/// fails, and `UPDATE_TRACES=1` writes the new run's lines instead.
///
/// # Panics
///
/// When the excerpt differs (and `UPDATE_TRACES` is not set).
pub fn check_excerpt(name: &str, lines: &[String]) {
    let path = workspace()
        .join("slides/traces")
        .join(format!("{name}.txt"));
    let fresh = format!(
        "// ANCHOR: one_request\n{}\n// ANCHOR_END: one_request\n",
        lines.join("\n")
    );
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if masked(&committed) == masked(&fresh) {
        return;
    }
    if std::env::var_os("UPDATE_TRACES").is_some() {
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("creating slides/traces");
        std::fs::write(&path, fresh).expect("writing the excerpt");
        return;
    }
    panic!(
        "{} no longer matches what the step traces:\n--- committed\n{committed}\n--- now\n{fresh}\n\
         Rewrite it with `UPDATE_TRACES=1 cargo test -p {name} --test trace`, then \
         `UPDATE_SLIDES=1 cargo test -p conformance --test slides`.",
        path.display()
    );
}

/// `text` with every run of digits (and the spaces padding them) turned into `#`.
fn masked(text: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() || (in_number && c == '.') {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    // Times are right-aligned: their padding changes with their width.
    out.lines()
        .map(|line| line.trim_start())
        .collect::<Vec<_>>()
        .join("\n")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the workspace")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_masked_events_are_not() {
        assert_eq!(
            masked("  0.307348 s  main  conn 1: read 2 bytes"),
            masked("12.000001 s  main  conn 4: read 20 bytes")
        );
        assert_ne!(
            masked("0.3 s  main  conn 1: read 2 bytes"),
            masked("0.3 s  main  conn 1: write 2 bytes")
        );
    }

    #[test]
    fn events_are_read_with_their_threads() {
        let text = r#"[
{"ph":"M","pid":1,"name":"thread_name","tid":0,"args":{"name":"main"}},
{"ph":"i","pid":1,"tid":0,"name":"conn 1: read 2 bytes","ts":1.0},
{"ph":"M","pid":1,"name":"thread_name","tid":1,"args":{"name":"pool-0"}},
{"ph":"B","pid":1,"tid":1,"name":"fib","ts":2.0},
{"ph":"E","pid":1,"tid":1,"name":"fib","ts":3.0}
]"#;
        let events = parse(text);
        assert_eq!(events.len(), 3);
        assert_eq!(events[1].thread, "pool-0");
        let session = Session {
            events,
            lines: vec![],
        };
        session.assert_in_order(&[on("main", "read 2 bytes"), on("pool", "fib")]);
    }

    #[test]
    #[should_panic(expected = "no event containing")]
    fn a_missing_or_misplaced_event_fails() {
        let session = Session {
            events: parse(
                r#"[{"ph":"i","pid":1,"tid":0,"name":"b","ts":1.0},{"ph":"i","pid":1,"tid":0,"name":"a","ts":2.0}]"#,
            ),
            lines: vec![],
        };
        session.assert_in_order(&[on("", "a"), on("", "b")]);
    }
}
