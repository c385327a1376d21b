//! `chart.svg`: small multiples, one panel per column of the rates and costs tables, each with
//! its own scale. One shared axis hid the lesson: beside pipelined's millions, a one-client
//! column of thousands was invisible, and so were the handful of answers the fast client gets
//! beside a slow one on a single-threaded step. A panel per column shows every column's
//! differences between the steps at once. A whisker on each bar spans the rounds, from the
//! slowest to the fastest.
//!
//! In the per-core mode a last panel draws 64 fast connections against the number of CPUs the
//! servers had, for the steps that run on several threads: their scaling curve.
//!
//! Written by hand: rectangles, lines and text are all a bar chart needs, and a plotting
//! library would bring font handling and a dozen dependencies for that.

use std::fmt::Write as _;

use super::columns::{Cell, Column, Rate, Table};
use super::output::{Results, Sweep};

const PANEL_WIDTH: f64 = 240.0;
const PANELS_PER_ROW: usize = 4;
const LABEL: f64 = 58.0;
const BAR: f64 = 11.0;
const BAR_GAP: f64 = 3.0;
const PANEL_TOP: f64 = 32.0;
const PANEL_BOTTOM: f64 = 14.0;
const HEADER: f64 = 70.0;
const VALUE_ROOM: f64 = 44.0;
/// Colour-blind-safe colours (Okabe–Ito): throughput, latency and memory, counted costs.
const RATE_COLOUR: &str = "#0072B2";
const LOWER_COLOUR: &str = "#E69F00";
const COST_COLOUR: &str = "#009E73";

/// The chart of `results` as an SVG document.
pub fn svg(results: &Results) -> String {
    let Some(sweep) = results.sweeps.first() else {
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"/>\n".into();
    };
    let pinned = sweep.server_cpus.is_some();
    let columns: Vec<Column> = [Table::Rates, Table::Costs]
        .into_iter()
        .flat_map(|table| Column::of(table, pinned))
        .filter(|column| *column != Column::Rate(Rate::MixedSlow))
        .collect();
    let panels = columns.len() + usize::from(results.pinned());
    let rows = panels.div_ceil(PANELS_PER_ROW);
    let panel_height = PANEL_TOP + sweep.steps.len() as f64 * (BAR + BAR_GAP) + PANEL_BOTTOM;
    let width = PANEL_WIDTH * PANELS_PER_ROW as f64;
    let height = HEADER + rows as f64 * panel_height;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="8" y="20" font-size="15" font-weight="bold">Every step under every load: a panel per column, each with its own scale</text>"#
    );
    let _ = writeln!(
        out,
        r##"<text x="8" y="38" fill="#555">{}</text>"##,
        escape(&results.machine.summary())
    );
    let _ = writeln!(
        out,
        r##"<text x="8" y="54" fill="#555">{}; {} s per load, median of {} (whiskers: every round)</text>"##,
        escape(&capitalized(&sweep.placement())),
        results.plan.secs,
        plural_rounds(results.plan.repeat)
    );
    for (i, column) in columns.iter().enumerate() {
        let x = (i % PANELS_PER_ROW) as f64 * PANEL_WIDTH;
        let y = HEADER + (i / PANELS_PER_ROW) as f64 * panel_height;
        panel(&mut out, sweep, *column, x, y);
    }
    if results.pinned() {
        let i = columns.len();
        let x = (i % PANELS_PER_ROW) as f64 * PANEL_WIDTH;
        let y = HEADER + (i / PANELS_PER_ROW) as f64 * panel_height;
        scaling_panel(&mut out, results, x, y, panel_height);
    }
    out.push_str("</svg>\n");
    out
}

/// One column's panel at (`x`, `y`): a title, and a bar per step on the column's own scale.
fn panel(out: &mut String, sweep: &Sweep, column: Column, x: f64, y: f64) {
    let colour = match (column.table(), column.is_throughput()) {
        (Table::Rates, true) => RATE_COLOUR,
        (Table::Rates, false) => LOWER_COLOUR,
        _ => COST_COLOUR,
    };
    let better = if column.is_throughput() {
        "higher is better"
    } else {
        "lower is better"
    };
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" font-weight="bold">{}</text><text x="{:.1}" y="{:.1}" font-size="9" fill="#777">{better}</text>"##,
        x + 8.0,
        y + 13.0,
        escape(&column.header()),
        x + 8.0,
        y + 24.0,
    );
    let cells: Vec<Cell> = sweep.steps.iter().map(|step| column.cell(step)).collect();
    let top = cells
        .iter()
        .filter_map(|cell| match cell {
            Cell::Value(stat) => Some(stat.max),
            _ => None,
        })
        .fold(0.0, f64::max);
    let plot = PANEL_WIDTH - LABEL - VALUE_ROOM - 8.0;
    let scale = |value: f64| if top > 0.0 { plot * value / top } else { 0.0 };
    for (j, (step, cell)) in sweep.steps.iter().zip(&cells).enumerate() {
        let bar_y = y + PANEL_TOP + j as f64 * (BAR + BAR_GAP);
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            x + LABEL - 4.0,
            bar_y + BAR - 2.0,
            escape(&step.step)
        );
        let left = x + LABEL;
        match cell {
            Cell::Value(stat) => {
                let width = scale(stat.median);
                let _ = writeln!(
                    out,
                    r#"<rect x="{left:.1}" y="{bar_y:.1}" width="{width:.1}" height="{BAR}" fill="{colour}"/>"#
                );
                if stat.count > 1 {
                    let _ = writeln!(
                        out,
                        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
                        left + scale(stat.min),
                        bar_y + BAR / 2.0,
                        left + scale(stat.max),
                        bar_y + BAR / 2.0
                    );
                }
                let _ = writeln!(
                    out,
                    r#"<text x="{:.1}" y="{:.1}" font-size="9">{}</text>"#,
                    left + scale(stat.max.max(stat.median)) + 3.0,
                    bar_y + BAR - 2.0,
                    escape(&short(column, stat.median))
                );
            }
            other => {
                let text = if step.unavailable.is_some() {
                    "unavailable".to_string()
                } else {
                    column.format(other)
                };
                let _ = writeln!(
                    out,
                    r##"<text x="{:.1}" y="{:.1}" font-size="9" fill="#777">{}</text>"##,
                    left + 2.0,
                    bar_y + BAR - 2.0,
                    escape(&text)
                );
            }
        }
    }
}

/// The per-core mode's last panel: 64 fast connections against the servers' CPUs, for the
/// multi-thread steps, a line per step.
fn scaling_panel(out: &mut String, results: &Results, x: f64, y: f64, height: f64) {
    const STEPS: [(&str, &str); 3] = [
        ("step06", "#0072B2"),
        ("step08", "#D55E00"),
        ("step09", "#009E73"),
    ];
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-weight="bold">64 fast (req/s) by server CPUs</text>"#,
        x + 8.0,
        y + 14.0
    );
    // Per step: its name, its colour, and its (server CPUs, req/s) points.
    type Line<'a> = (&'a str, &'a str, Vec<(usize, f64)>);
    let points: Vec<Line<'_>> = STEPS
        .iter()
        .map(|&(name, colour)| {
            let line = results
                .sweeps
                .iter()
                .filter_map(|sweep| {
                    let cpus = sweep.server_cpus.as_ref()?.len();
                    let step = sweep.steps.iter().find(|s| s.step == name)?;
                    match Column::Rate(Rate::Fast64).cell(step) {
                        Cell::Value(stat) => Some((cpus, stat.median)),
                        _ => None,
                    }
                })
                .collect();
            (name, colour, line)
        })
        .collect();
    let max_cpus = points
        .iter()
        .flat_map(|(_, _, line)| line.iter().map(|&(cpus, _)| cpus))
        .max()
        .unwrap_or(1)
        .max(2);
    let top = points
        .iter()
        .flat_map(|(_, _, line)| line.iter().map(|&(_, rate)| rate))
        .fold(0.0, f64::max);
    let (left, bottom) = (x + 40.0, y + height - PANEL_BOTTOM - 4.0);
    let (plot_width, plot_height) = (PANEL_WIDTH - 60.0, height - PANEL_TOP - PANEL_BOTTOM - 14.0);
    let px = |cpus: usize| left + plot_width * (cpus as f64 - 1.0) / (max_cpus as f64 - 1.0);
    let py = |rate: f64| {
        bottom
            - if top > 0.0 {
                plot_height * rate / top
            } else {
                0.0
            }
    };
    let _ = writeln!(
        out,
        r##"<line x1="{left:.1}" y1="{bottom:.1}" x2="{:.1}" y2="{bottom:.1}" stroke="#999"/><text x="{:.1}" y="{:.1}" font-size="9" text-anchor="end" fill="#555">CPUs</text>"##,
        left + plot_width,
        left + plot_width,
        bottom + 11.0
    );
    for (i, (name, colour, line)) in points.iter().enumerate() {
        let path: Vec<String> = line
            .iter()
            .map(|&(cpus, rate)| format!("{:.1},{:.1}", px(cpus), py(rate)))
            .collect();
        if path.len() > 1 {
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
                path.join(" ")
            );
        }
        for &(cpus, rate) in line {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                px(cpus),
                py(rate)
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="9" fill="{colour}">{name}</text>"#,
            x + 8.0,
            y + PANEL_TOP + 10.0 + i as f64 * 11.0
        );
    }
    if results.sweeps.len() < 2 {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="9" fill="#777">one point: {} CPUs leave 1 for a server</text>"##,
            x + 8.0,
            bottom - plot_height / 2.0,
            results.machine.cores
        );
    }
}

/// A value as a bar's label: `1.55M`, `38.5k`, or the column's own format.
fn short(column: Column, value: f64) -> String {
    if column.is_throughput() && value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if column.is_throughput() && value >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else {
        column.format(&Cell::Value(super::columns::Stat::one(value)))
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or(String::new(), |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

fn plural_rounds(repeat: usize) -> String {
    if repeat == 1 {
        "1 round".into()
    } else {
        format!("{repeat} rounds")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::output::tests::results;

    #[test]
    fn every_panel_is_drawn_with_its_own_scale() {
        let svg = svg(&results(40_000.0));
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        for column in Column::of(Table::Costs, false) {
            assert!(
                svg.contains(&escape(&column.header())),
                "{}",
                column.header()
            );
        }
        assert!(svg.contains("42.0k"), "the median as a short label");
        assert!(svg.contains("unavailable"));
        assert!(svg.contains("<line"), "a whisker over two rounds");
    }

    #[test]
    fn labels_are_short() {
        let fast = Column::Rate(Rate::Fast1);
        assert_eq!(short(fast, 1_550_000.0), "1.55M");
        assert_eq!(short(fast, 38_482.0), "38.5k");
        assert_eq!(short(fast, 3.0), "3");
        assert_eq!(short(Column::Rate(Rate::Slow1), 0.3541), "0.354");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b & c>"), "a&lt;b &amp; c&gt;");
    }
}
