//! The results-table runner, run as a user runs it, on one step with tiny durations.

use std::path::{Path, PathBuf};
use std::process::Command;

use clients::table::columns::{Column, Table};

fn table(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_table"))
        .args(args)
        .output()
        .expect("running the table binary")
}

/// The rows of the Markdown table that follows `title` in `text`, as trimmed cells, header
/// first.
fn table_after(text: &str, title: &str) -> Vec<Vec<String>> {
    let start = text
        .find(title)
        .unwrap_or_else(|| panic!("no {title:?} in:\n{text}"));
    text[start..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter(|line| !line.starts_with("| --"))
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_string())
                .collect()
        })
        .collect()
}

/// A number as the tables write it: `41,234`, `0.354`, `3.00`, with or without `±9%`.
fn is_number(cell: &str) -> bool {
    let value = cell.split(" ±").next().unwrap_or(cell);
    value.replace(',', "").parse::<f64>().is_ok()
        && cell
            .split_once(" ±")
            .is_none_or(|(_, spread)| spread.trim_end_matches('%').parse::<f64>().is_ok())
}

fn temp_folder(name: &str) -> PathBuf {
    let folder = std::env::temp_dir().join(format!("workbook-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    folder
}

#[test]
fn a_quick_run_on_one_step_fills_every_cell_and_writes_the_files() {
    let out = temp_folder("table-smoke");
    // `--profile dev` builds the step the way `cargo test` already has (no release build).
    let output = table(&[
        "--steps",
        "step02",
        "--secs",
        "0.3",
        "--repeat",
        "2",
        "--slow-n",
        "22",
        "--idle",
        "100",
        "--profile",
        "dev",
        "--out",
        out.to_str().expect("temp paths are UTF-8 here"),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // Not on a terminal: a progress line per load, on stderr.
    assert!(
        stderr.contains("table: round 2/2: step02: 64 fast connections: "),
        "{stderr}"
    );

    // Every column of the rates table is there, and step02 serves every load: every cell is
    // a number, with its spread over the two rounds where it was measured twice.
    let rates = table_after(&stdout, "What the clients saw");
    for column in Column::of(Table::Rates, false) {
        assert!(rates[0].contains(&column.header()), "{}", column.header());
    }
    let row = rates
        .iter()
        .find(|row| row[0] == "step02")
        .expect("a step02 row");
    assert_eq!(row.len(), rates[0].len());
    for cell in &row[1..] {
        assert!(is_number(cell), "cell {cell:?} in {row:?}");
    }
    assert!(row[1].contains('±'), "two rounds have a spread: {row:?}");

    // Every cost cell is a number, or `–` with the reason in the legend of table.md.
    let document = std::fs::read_to_string(out.join("table.md")).expect("table.md written");
    let counted = !document.contains("were not counted: ");
    for title in ["What one request costs the server", "by kind"] {
        let costs = table_after(&stdout, title);
        let row = costs.iter().find(|row| row[0] == "step02").expect("a row");
        for (header, cell) in costs[0].iter().zip(row).skip(1) {
            let counted_column = !header.contains("CPU µs");
            if counted_column && !counted {
                assert_eq!(cell, "–", "{header}: not counted, so not a number");
            } else {
                assert!(is_number(cell), "{header}: {cell:?}");
            }
        }
    }
    if !counted {
        let why = document
            .lines()
            .find(|line| line.contains("were not counted: "))
            .expect("the legend says why");
        assert!(why.contains("run") || why.contains("Linux"), "{why}");
    }

    for file in ["table.md", "results.json", "chart.svg"] {
        assert!(
            Path::new(&out).join(file).is_file(),
            "{file} was not written"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let step = &json["sweeps"][0]["steps"][0];
    assert_eq!(step["step"], "step02");
    assert_eq!(step["rounds"].as_array().map(Vec::len), Some(2));
    assert_eq!(step["idle"]["answered"], 100);
    if counted {
        let counts = &step["counts"]["fast_1"]["Ok"];
        assert!(counts["syscalls"].as_u64().unwrap() > 0, "{counts}");
        assert!(counts["by_name"].as_object().is_some_and(|m| !m.is_empty()));
    }
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    let svg = std::fs::read_to_string(out.join("chart.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("step02"));

    // Comparing a run with itself: every measured cell is a ratio.
    let compared = table(&[
        "--steps",
        "step02",
        "--secs",
        "0.2",
        "--repeat",
        "1",
        "--slow-n",
        "22",
        "--idle",
        "0",
        "--no-count",
        "--profile",
        "dev",
        "--out",
        out.to_str().unwrap(),
        "--compare",
        out.join("results.json").to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&compared.stdout);
    assert!(compared.status.success(), "{stdout}");
    assert!(stdout.contains("new / old"), "{stdout}");
    assert!(stdout.contains('×'), "{stdout}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn an_unknown_step_is_one_clear_line() {
    let output = table(&["--steps", "step99", "--profile", "dev"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("table: no step named \"step99\""),
        "{stderr}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_core_sweep_needs_a_cpu_left_for_the_clients() {
    let cpus = clients::table::pinning::allowed_cpus().expect("Linux lists CPUs");
    let too_many = cpus.len().to_string();
    let output = table(&["--pin", "--cores", &too_many, "--profile", "dev"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("leave none for the clients"), "{stderr}");
}
