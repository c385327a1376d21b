//! `chart.svg`: the throughput columns as horizontal bars, a group per step, readable
//! without the table.
//!
//! Written by hand as a few dozen SVG elements: a bar chart needs rectangles, lines and
//! text, and a plotting library would bring font handling and many dependencies for that.

use std::fmt::Write as _;

use crate::columns::{Cell, Column, thousands};
use crate::output::Results;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 120.0;
const TOP: f64 = 86.0;
const BAR: f64 = 12.0;
const BAR_GAP: f64 = 2.0;
const GROUP_GAP: f64 = 18.0;
const BOTTOM: f64 = 40.0;
/// Colour-blind-safe colours (Okabe–Ito), one per throughput column.
const COLOURS: [&str; 5] = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9"];

/// The chart of `results` as an SVG document.
pub fn svg(results: &Results) -> String {
    let columns: Vec<Column> = Column::ALL
        .into_iter()
        .filter(|c| c.is_throughput())
        .collect();
    let group = columns.len() as f64 * (BAR + BAR_GAP) + GROUP_GAP;
    let height = TOP + results.steps.len() as f64 * group + BOTTOM;
    let plot = WIDTH - LEFT - RIGHT;
    let max = results
        .steps
        .iter()
        .flat_map(|step| columns.iter().map(|c| c.cell(&step.runs)))
        .filter_map(|cell| match cell {
            Cell::Value(v) => Some(v),
            _ => None,
        })
        .fold(0.0, f64::max);
    let (tick, top) = nice_axis(max);
    let x = |value: f64| LEFT + plot * value / top;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="22" font-size="16" font-weight="bold">Requests per second by step (higher is better)</text>"#
    );
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="40" fill="#555">{}; {} s per load</text>"##,
        escape(&results.machine.summary()),
        results.plan.secs
    );
    // Legend.
    let mut legend_x = LEFT;
    for (column, colour) in columns.iter().zip(COLOURS) {
        let _ = writeln!(
            out,
            r#"<rect x="{legend_x}" y="52" width="12" height="12" fill="{colour}"/><text x="{}" y="62">{}</text>"#,
            legend_x + 16.0,
            escape(column.header())
        );
        legend_x += 16.0 + 7.0 * column.header().chars().count() as f64 + 16.0;
    }
    // Grid lines and their values.
    let bottom = height - BOTTOM;
    let mut value = 0.0;
    while value <= top + tick / 2.0 {
        let _ = writeln!(
            out,
            r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{bottom}" stroke="#ddd"/><text x="{0:.1}" y="{1}" text-anchor="middle" fill="#555">{2}</text>"##,
            x(value),
            bottom + 16.0,
            thousands(value as u64)
        );
        value += tick;
    }
    // One group of bars per step.
    for (i, step) in results.steps.iter().enumerate() {
        let y0 = TOP + i as f64 * group + GROUP_GAP / 2.0;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{:.1}" text-anchor="end" font-weight="bold">{}</text>"#,
            LEFT - 8.0,
            y0 + (group - GROUP_GAP) / 2.0 + 4.0,
            escape(&step.step)
        );
        for (j, (column, colour)) in columns.iter().zip(COLOURS).enumerate() {
            let y = y0 + j as f64 * (BAR + BAR_GAP);
            let (width, label) = match (&step.unavailable, column.cell(&step.runs)) {
                (Some(_), _) => (0.0, "unavailable".to_string()),
                (None, Cell::Value(v)) => (x(v) - LEFT, thousands(v.round() as u64)),
                (None, cell) => (0.0, column.format(&cell)),
            };
            let _ = writeln!(
                out,
                r#"<rect x="{LEFT}" y="{y:.1}" width="{width:.1}" height="{BAR}" fill="{colour}"/><text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
                LEFT + width + 4.0,
                y + BAR - 2.0,
                escape(&label)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// A tick spacing of 1, 2 or 5 times a power of ten giving about five grid lines, and the
/// axis maximum (a whole number of ticks at or above `max`).
fn nice_axis(max: f64) -> (f64, f64) {
    if max <= 0.0 {
        return (1.0, 5.0);
    }
    let rough = max / 5.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let tick = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&t| t >= rough)
        .unwrap_or(10.0 * magnitude);
    (tick, (max / tick).ceil() * tick)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_round() {
        assert_eq!(nice_axis(480_000.0), (100_000.0, 500_000.0));
        assert_eq!(nice_axis(41_000.0), (10_000.0, 50_000.0));
        assert_eq!(nice_axis(7.0), (2.0, 8.0));
        assert_eq!(nice_axis(0.0), (1.0, 5.0));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b & c>"), "a&lt;b &amp; c&gt;");
    }
}
