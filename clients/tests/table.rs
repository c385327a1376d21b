//! The results-table runner, run as a user runs it, on one step with tiny durations.

use std::path::PathBuf;
use std::process::Command;

fn table(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_table"))
        .args(args)
        .output()
        .expect("running the table binary")
}

#[test]
fn a_quick_run_on_one_step_prints_every_column_and_writes_the_files() {
    let out = std::env::temp_dir().join(format!("workbook-table-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    // `--profile dev` builds the step the way `cargo test` already has (no release build).
    let output = table(&[
        "--steps",
        "step02",
        "--secs",
        "0.3",
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
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let header = stdout.lines().next().expect("a table header");
    for column in [
        "1 fast (req/s)",
        "2 fast (req/s)",
        "64 fast (req/s)",
        "pipelined 8×16 (req/s)",
        "1 slow (s/req)",
        "2 slow (s/req)",
        "fast+slow: fast (req/s)",
        "fast+slow: slow (s/req)",
        "1 fast p99 (µs)",
        "idle (KiB/conn)",
    ] {
        assert!(header.contains(column), "no column {column:?} in {header}");
    }
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| step02"))
        .expect("a row for step02");
    let cells: Vec<&str> = row
        .split('|')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells.len(), 11, "{row}");
    // step02 serves every load: every cell is a number (no starved, error or missing cell).
    for cell in &cells[1..] {
        assert!(
            cell.replace(',', "").parse::<f64>().is_ok(),
            "cell {cell:?} in {row}"
        );
    }

    for file in ["table.md", "results.json", "chart.svg"] {
        assert!(
            PathBuf::from(&out).join(file).is_file(),
            "{file} was not written"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["steps"][0]["step"], "step02");
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    assert_eq!(json["steps"][0]["runs"]["idle"]["answered"], 100);
    let svg = std::fs::read_to_string(out.join("chart.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("step02"));

    // Comparing a run with itself: every measured cell is a ratio.
    let compared = table(&[
        "--steps",
        "step02",
        "--secs",
        "0.2",
        "--slow-n",
        "22",
        "--idle",
        "0",
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
