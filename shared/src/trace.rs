//! Watching the loop: `--trace` prints one line per event of a hand-rolled loop as it happens
//! (a readiness event, a task woken or polled, a submission, a completion, a job for the
//! pool); `--trace-file FILE.json` writes the same as a timeline in Chrome's trace-event
//! format, one track per thread, with spans for the polls, the waits and the fib
//! computations. Open the file in <https://ui.perfetto.dev> (or `chrome://tracing`).
//!
//! The steps emit their events with the `tracing` crate's macros, and this module installs
//! what prints or records them (`tracing-subscriber`, `tracing-chrome`). Without `--trace`
//! nothing is installed, and an event costs its call site one check of a cached flag: the
//! arguments are not even evaluated.

use std::fmt;
use std::io::{self, IsTerminal};
use std::path::Path;
use std::time::Instant;

use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps the trace file being written; drop it (at the end of `main`) to write it out.
#[must_use = "the trace file is written when this is dropped"]
pub struct Tracing {
    _file: Option<tracing_chrome::FlushGuard>,
}

impl fmt::Debug for Tracing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracing")
            .field("file", &self._file.is_some())
            .finish()
    }
}

/// Installs what `--trace` (lines on stderr) and `--trace-file` (a Chrome trace) ask for,
/// for the events of the crates named in `targets` (the step's, and the library steps' own).
/// `None` when neither was asked for: then nothing is installed and tracing costs nothing.
///
/// # Errors
///
/// When the trace file cannot be created, or a subscriber is installed already.
pub fn init(targets: &[&str], lines: bool, file: Option<&Path>) -> io::Result<Option<Tracing>> {
    if !lines && file.is_none() {
        return Ok(None);
    }
    // This crate's own events too: [`traced_fib`], which the pool steps call.
    let filter = Targets::new().with_targets(
        targets
            .iter()
            .chain(&["shared"])
            .map(|target| (target.to_string(), LevelFilter::TRACE)),
    );
    let lines = lines.then(|| {
        tracing_subscriber::fmt::layer()
            .event_format(Line {
                start: Instant::now(),
            })
            .with_writer(io::stderr)
            // The libraries' events carry fields (`res=1`): colour their names only on a
            // terminal, never in a file or a pipe.
            .with_ansi(io::stderr().is_terminal())
    });
    let (chrome, guard) = match file {
        Some(path) => {
            // The builder panics on a file it cannot create: check first, for a clear error.
            std::fs::File::create(path)?;
            let (layer, guard) = tracing_chrome::ChromeLayerBuilder::new()
                .file(path)
                .include_args(true)
                // An event's name in the timeline is its message (`conn 7: read 2 bytes`),
                // not its place in the source.
                .name_fn(Box::new(|item| match item {
                    tracing_chrome::EventOrSpan::Event(event) => message(event),
                    tracing_chrome::EventOrSpan::Span(span) => span.name().to_string(),
                }))
                .build();
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(lines)
        .with(chrome)
        .with(filter)
        .try_init()
        .map_err(io::Error::other)?;
    Ok(Some(Tracing { _file: guard }))
}

/// fib(n) for a pool thread (steps 05 and 08); with `--trace`, a `fib` span (a bar on the
/// pool thread's track in the timeline) and a line saying where and how long it took:
/// `fib(40) done on pool-0 after 285.2 ms`.
pub fn traced_fib(n: u32) -> u64 {
    if !tracing::enabled!(tracing::Level::TRACE) {
        return crate::fib::fib(n);
    }
    let started = Instant::now();
    let value = tracing::trace_span!("fib", n).in_scope(|| crate::fib::fib(n));
    tracing::trace!(
        "fib({n}) done on {} after {:.1} ms",
        std::thread::current().name().unwrap_or("a pool thread"),
        started.elapsed().as_secs_f64() * 1e3
    );
    value
}

/// The `message` field of an event: what its macro's format string made.
fn message(event: &Event<'_>) -> String {
    struct Message(String);
    impl tracing::field::Visit for Message {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            }
        }
    }
    let mut visitor = Message(String::new());
    event.record(&mut visitor);
    visitor.0
}

/// How `--trace` prints an event: the time since the start, the thread, the message and its
/// fields, one line, nothing else (no level, no target, no span context: at workshop speed,
/// every column must earn its place).
struct Line {
    start: Instant,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        cx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let thread = std::thread::current();
        write!(
            writer,
            "{:>10.6} s  {:<9} ",
            self.start.elapsed().as_secs_f64(),
            thread.name().unwrap_or("thread")
        )?;
        cx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_installed_unless_asked() {
        assert!(init(&["step04"], false, None).unwrap().is_none());
    }
}
