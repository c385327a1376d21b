//! The slides quote the workbook, and this test keeps them honest (STYLE.md, item 9).
//!
//! Two markers in `slides/*.md` (and in `README.md`, for its results table) tie a slide to the
//! files it shows. Both are presenterm *user
//! comments* (`<!-- // ... -->`), which presenterm ignores: a bare `<!-- quote: ... -->` would
//! be an unknown comment command to it, and the deck would not load.
//!
//! - `<!-- // quote: steps/step03-callbacks/src/lib.rs#event_loop -->`, right before a fenced
//!   code block (blank lines may come between): the block must equal the region `event_loop`
//!   of that file, the lines between `// ANCHOR: event_loop` and `// ANCHOR_END: event_loop`,
//!   without the marker lines of regions nested in it, and without their common indentation.
//!   Regions are named, never line numbers, so code can move and the quote still holds.
//! - `<!-- // results: step03 -->` (or several steps, `results: step01 step02`, or
//!   `results: all`), right before a Markdown table: its header must start with `step`, name
//!   columns of `results/table.md` (any of them, in any order: a terminal is too narrow for
//!   all ten), and its rows must be exactly those steps, each cell equal to that step's cell in
//!   `results/table.md` (compared trimmed: the padding of an aligned table does not matter).
//!
//! The check fails when a marker names a file or a region that does not exist, when a quote
//! differs from its region, and when a results table differs from the committed results. While
//! `results/table.md` is not committed yet, the results cells are not checked (a loud note
//! says so on the terminal): the rows must still name the marker's steps, and the headers the
//! table runner's columns (read from `clients/src/bin/table/columns.rs`).
//!
//! When a quote or a results table has drifted, this rewrites it from the source:
//!
//! ```text
//! UPDATE_SLIDES=1 cargo test -p conformance --test slides
//! git diff slides/ README.md    # then read the slide around each change: does the text still fit?
//! ```
//!
//! Two more rules hold every step deck to the workshop's format: every step of `steps/` has
//! a deck (`slides/<its folder name>.md`), and every slide of a step deck has speaker notes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// Named regions of a source file.

/// Why a region could not be quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RegionError {
    /// No `// ANCHOR: name` line.
    Missing,
    /// `// ANCHOR: name` without a matching `// ANCHOR_END: name` after it.
    Unterminated,
    /// Two regions with that name: a quote would be ambiguous.
    Duplicate,
}

/// A line that opens or closes a region.
#[derive(Debug, PartialEq, Eq)]
enum Anchor<'a> {
    Start(&'a str),
    End(&'a str),
}

/// `// ANCHOR: name` and `// ANCHOR_END: name`, at any indentation.
fn anchor(line: &str) -> Option<Anchor<'_>> {
    let comment = line.trim().strip_prefix("//")?.trim_start();
    if let Some(name) = comment.strip_prefix("ANCHOR_END:") {
        return Some(Anchor::End(name.trim()));
    }
    comment
        .strip_prefix("ANCHOR:")
        .map(|name| Anchor::Start(name.trim()))
}

/// The text of region `name` in `source`, as a slide must quote it: the lines between its
/// markers, minus the marker lines of other regions, minus their common indentation; lines
/// joined by `\n`, no newline after the last.
fn region(source: &str, name: &str) -> Result<String, RegionError> {
    let mut found = false;
    let mut inside = false;
    let mut lines = Vec::new();
    for line in source.lines() {
        match anchor(line) {
            Some(Anchor::Start(start)) if start == name => {
                if found {
                    return Err(RegionError::Duplicate);
                }
                found = true;
                inside = true;
            }
            Some(Anchor::End(end)) if end == name && inside => inside = false,
            // A nested region's markers are bookkeeping, never part of a quote.
            Some(_) => {}
            None if inside => lines.push(line),
            None => {}
        }
    }
    match (found, inside) {
        (false, _) => Err(RegionError::Missing),
        (true, true) => Err(RegionError::Unterminated),
        (true, false) => Ok(dedent(&lines)),
    }
}

/// Removes the indentation common to the non-blank lines; blank lines become empty.
fn dedent(lines: &[&str]) -> String {
    let indent = lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|line| {
            if line.trim().is_empty() {
                ""
            } else {
                &line[indent..]
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------------
// The committed results table.

/// `results/table.md` as a table: its column headers, and each step's cells by header.
#[derive(Debug)]
struct Results {
    headers: Vec<String>,
    /// In the order of the file: `results: all` lists the steps in this order.
    rows: Vec<(String, HashMap<String, String>)>,
}

impl Results {
    /// Parses the first Markdown table whose first header is `step`, as the table runner
    /// writes it (the notes below the table are not part of it).
    fn parse(text: &str) -> Result<Results, String> {
        let lines: Vec<&str> = text.lines().collect();
        let start = lines
            .iter()
            .position(|line| {
                line.trim_start().starts_with('|')
                    && cells(line).first().is_some_and(|c| c == "step")
            })
            .ok_or("no table with a `step` column")?;
        let table =
            parse_table(&lines[start..]).map_err(|error| format!("line {}: {error}", start + 1))?;
        let rows = table
            .rows
            .into_iter()
            .map(|row| {
                let step = row[0].clone();
                let cells = table.headers.iter().cloned().zip(row).collect();
                (step, cells)
            })
            .collect();
        Ok(Results {
            headers: table.headers,
            rows,
        })
    }

    fn row(&self, step: &str) -> Option<&HashMap<String, String>> {
        self.rows
            .iter()
            .find(|(name, _)| name == step)
            .map(|(_, row)| row)
    }
}

/// A Markdown table: headers and rows of trimmed cells.
#[derive(Debug, PartialEq, Eq)]
struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    /// How many lines it spans, from its header to its last row.
    len: usize,
}

/// The cells of one `| a | b |` line, trimmed.
fn cells(line: &str) -> Vec<String> {
    let line = line.trim();
    let line = line.strip_prefix('|').unwrap_or(line);
    let line = line.strip_suffix('|').unwrap_or(line);
    line.split('|')
        .map(|cell| cell.trim().to_string())
        .collect()
}

/// Parses the table at the start of `lines`: a header, a separator, rows, until a line that
/// does not start with `|`.
fn parse_table(lines: &[&str]) -> Result<Table, String> {
    let len = lines
        .iter()
        .take_while(|line| line.trim_start().starts_with('|'))
        .count();
    if len < 2 {
        return Err("expected a Markdown table (a header row, then a separator row)".into());
    }
    let headers = cells(lines[0]);
    let separator = cells(lines[1]);
    let is_separator = separator.len() == headers.len()
        && separator.iter().all(|cell| {
            let dashes = cell.trim_start_matches(':').trim_end_matches(':');
            !dashes.is_empty() && dashes.chars().all(|c| c == '-')
        });
    if !is_separator {
        return Err("the table's second line is not a separator row like `| --- | ---: |`".into());
    }
    let mut rows = Vec::new();
    for (i, line) in lines[2..len].iter().enumerate() {
        let row = cells(line);
        if row.len() != headers.len() {
            return Err(format!(
                "row {} has {} cells for {} headers",
                i + 1,
                row.len(),
                headers.len()
            ));
        }
        rows.push(row);
    }
    Ok(Table { headers, rows, len })
}

/// An aligned Markdown table like the runner's: the step column left, numbers right.
fn render_table(headers: &[String], rows: &[Vec<String>]) -> Vec<String> {
    let width = |i: usize| {
        rows.iter()
            .map(|row| row[i].chars().count())
            .chain([headers[i].chars().count(), 3])
            .max()
            .unwrap_or(3)
    };
    let widths: Vec<usize> = (0..headers.len()).map(width).collect();
    let line = |row: &[String]| {
        let mut out = String::from("|");
        for (i, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[i] - cell.chars().count());
            let _ = if i == 0 {
                write!(out, " {cell}{pad} |")
            } else {
                write!(out, " {pad}{cell} |")
            };
        }
        out
    };
    let mut separator = String::from("|");
    for (i, width) in widths.iter().enumerate() {
        let _ = if i == 0 {
            write!(separator, " {} |", "-".repeat(*width))
        } else {
            write!(separator, " {}: |", "-".repeat(width - 1))
        };
    }
    let mut out = vec![line(headers), separator];
    out.extend(rows.iter().map(|row| line(row)));
    out
}

// ---------------------------------------------------------------------------------------------
// Checking one deck.

/// What a problem is about: the two tests report their own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Quote,
    Results,
}

/// One thing wrong with a deck, at a line of it.
#[derive(Debug, Clone)]
struct Problem {
    kind: Kind,
    /// `slides/step03-callbacks.md:42`
    at: String,
    message: String,
    /// Whether `UPDATE_SLIDES=1` rewrites it from the source.
    fixable: bool,
}

/// The result of checking one deck: its problems, and its text with every fixable one fixed.
#[derive(Debug)]
struct Checked {
    problems: Vec<Problem>,
    fixed: String,
    quotes: usize,
    results_tables: usize,
}

/// The marker of a comment line, if it is one: `quote: ...` or `results: ...`, and whether it
/// was written as a user comment (`<!-- // ... -->`), the only form presenterm accepts.
fn marker(line: &str) -> Option<(Kind, &str, bool)> {
    let inner = line
        .trim()
        .strip_prefix("<!--")?
        .strip_suffix("-->")?
        .trim();
    let (user_comment, body) = match inner.strip_prefix("//") {
        Some(body) => (true, body.trim_start()),
        None => (false, inner),
    };
    if let Some(value) = body.strip_prefix("quote:") {
        Some((Kind::Quote, value.trim(), user_comment))
    } else {
        body.strip_prefix("results:")
            .map(|value| (Kind::Results, value.trim(), user_comment))
    }
}

/// The fence that opens a fenced code block on this line: its character and length.
fn fence_open(line: &str) -> Option<(char, usize)> {
    let line = line.trim_start();
    let first = line.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = line.chars().take_while(|c| *c == first).count();
    (len >= 3).then_some((first, len))
}

/// Whether this line closes a block opened by `fence`.
fn fence_closes(line: &str, (ch, len): (char, usize)) -> bool {
    let line = line.trim();
    line.chars().take_while(|c| *c == ch).count() >= len && line.chars().all(|c| c == ch)
}

/// Checks one deck. `read` gives the text of a workbook file by its path relative to the
/// workspace (None: no such file); `results` is the parsed `results/table.md`, if committed;
/// `columns` the table runner's column headers, which results tables are held to while it is
/// not (None: unknown, not checked).
fn check_deck(
    deck: &str,
    text: &str,
    read: &dyn Fn(&str) -> Option<String>,
    results: Option<&Results>,
    columns: Option<&[String]>,
) -> Checked {
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    // (first line, number of lines, replacement): applied at the end, back to front.
    let mut fixes: Vec<(usize, usize, Vec<String>)> = Vec::new();
    let (mut quotes, mut results_tables) = (0, 0);
    let mut problem = |kind, line: usize, message: String, fixable| {
        problems.push(Problem {
            kind,
            at: format!("{deck}:{}", line + 1),
            message,
            fixable,
        });
    };

    let mut i = 0;
    while i < lines.len() {
        // Markers inside code blocks are examples, not markers.
        if let Some(fence) = fence_open(lines[i]) {
            i += 1;
            while i < lines.len() && !fence_closes(lines[i], fence) {
                i += 1;
            }
            i += 1;
            continue;
        }
        let Some((kind, value, user_comment)) = marker(lines[i]) else {
            i += 1;
            continue;
        };
        let at = i;
        i += 1;
        if !user_comment {
            problem(
                kind,
                at,
                format!(
                    "presenterm rejects unknown comment commands: write this marker as a user \
                     comment, `<!-- // {} -->`",
                    lines[at]
                        .trim()
                        .trim_start_matches("<!--")
                        .trim_end_matches("-->")
                        .trim()
                ),
                false,
            );
        }
        // The block or table belongs to the marker: blank lines may come between.
        while i < lines.len() && lines[i].trim().is_empty() {
            i += 1;
        }
        match kind {
            Kind::Quote => {
                quotes += 1;
                let Some(fence) = lines.get(i).and_then(|line| fence_open(line)) else {
                    problem(
                        kind,
                        at,
                        format!("`quote: {value}` is not followed by a fenced code block"),
                        false,
                    );
                    continue;
                };
                let open = i;
                let mut close = open + 1;
                while close < lines.len() && !fence_closes(lines[close], fence) {
                    close += 1;
                }
                i = close + 1;
                if close == lines.len() {
                    problem(kind, open, "this code block is never closed".into(), false);
                    continue;
                }
                let Some((file, name)) = value.split_once('#') else {
                    problem(
                        kind,
                        at,
                        format!("`quote: {value}`: expected `path/to/file.rs#region`"),
                        false,
                    );
                    continue;
                };
                let Some(source) = read(file) else {
                    problem(
                        kind,
                        at,
                        format!("quotes `{file}`, which does not exist"),
                        false,
                    );
                    continue;
                };
                let expected = match region(&source, name) {
                    Ok(expected) => expected,
                    Err(error) => {
                        let why = match error {
                            RegionError::Missing => "has no region named",
                            RegionError::Unterminated => "never ends (no ANCHOR_END) region",
                            RegionError::Duplicate => "has two regions named",
                        };
                        problem(kind, at, format!("`{file}` {why} `{name}`"), false);
                        continue;
                    }
                };
                let actual = lines[open + 1..close].join("\n");
                if actual != expected {
                    problem(
                        kind,
                        open + 1,
                        format!(
                            "the quote of `{value}` differs from the source\n{}",
                            first_difference(&actual, &expected)
                        ),
                        true,
                    );
                    fixes.push((
                        open,
                        close + 1 - open,
                        fenced(lines[open], fence, &expected),
                    ));
                }
            }
            Kind::Results => {
                results_tables += 1;
                let table_lines = &lines[i.min(lines.len())..];
                let table = match parse_table(table_lines) {
                    Ok(table) => table,
                    Err(error) => {
                        problem(kind, at, format!("`results: {value}`: {error}"), false);
                        continue;
                    }
                };
                let start = i;
                i += table.len;
                if table.headers.first().map(String::as_str) != Some("step") {
                    problem(
                        kind,
                        start,
                        "the first column of a results table must be `step`".into(),
                        false,
                    );
                    continue;
                }
                let wanted: Vec<String> = if value == "all" {
                    match results {
                        Some(results) => results.rows.iter().map(|(s, _)| s.clone()).collect(),
                        // Without the results, `all` means whatever rows the slide has.
                        None => table.rows.iter().map(|row| row[0].clone()).collect(),
                    }
                } else {
                    value
                        .split([' ', ','])
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                };
                if wanted.is_empty() {
                    problem(kind, at, "`results:` names no step".into(), false);
                    continue;
                }
                let Some(results) = results else {
                    // Not committed yet: the cells cannot be checked, the rows' steps can, and
                    // the headers against the runner's own column names.
                    let steps: Vec<String> = table.rows.iter().map(|row| row[0].clone()).collect();
                    if steps != wanted {
                        problem(
                            kind,
                            start,
                            format!("the table's rows are {steps:?}, the marker says {wanted:?}"),
                            false,
                        );
                    }
                    let unknown: Vec<&String> = table.headers[1..]
                        .iter()
                        .filter(|header| columns.is_some_and(|known| !known.contains(header)))
                        .collect();
                    if !unknown.is_empty() {
                        problem(
                            kind,
                            start,
                            format!(
                                "columns {unknown:?} are not columns of the table runner, whose \
                                 columns are {columns:?}"
                            ),
                            false,
                        );
                    }
                    continue;
                };
                let unknown: Vec<&String> = table.headers[1..]
                    .iter()
                    .filter(|header| !results.headers.contains(header))
                    .collect();
                if !unknown.is_empty() {
                    problem(
                        kind,
                        start,
                        format!(
                            "columns {unknown:?} are not in results/table.md, whose columns are \
                             {:?}",
                            results.headers
                        ),
                        false,
                    );
                    continue;
                }
                let mut expected = Vec::new();
                let mut missing = Vec::new();
                for step in &wanted {
                    match results.row(step) {
                        Some(row) => expected.push(
                            table
                                .headers
                                .iter()
                                .map(|header| row[header].clone())
                                .collect::<Vec<_>>(),
                        ),
                        None => missing.push(step.as_str()),
                    }
                }
                if !missing.is_empty() {
                    problem(
                        kind,
                        at,
                        format!("results/table.md has no row for {missing:?}"),
                        false,
                    );
                    continue;
                }
                if table.rows != expected {
                    let mut message = format!(
                        "the results table for `{value}` differs from results/table.md\n  slide:"
                    );
                    for row in &table.rows {
                        let _ = write!(message, "\n    {}", row.join(" | "));
                    }
                    message.push_str("\n  results/table.md:");
                    for row in &expected {
                        let _ = write!(message, "\n    {}", row.join(" | "));
                    }
                    problem(kind, start, message, true);
                    fixes.push((start, table.len, render_table(&table.headers, &expected)));
                }
            }
        }
    }

    let mut fixed: Vec<String> = lines.iter().map(|line| line.to_string()).collect();
    fixes.sort_by_key(|(start, _, _)| std::cmp::Reverse(*start));
    for (start, len, replacement) in fixes {
        fixed.splice(start..start + len, replacement);
    }
    let mut fixed = fixed.join("\n");
    if text.ends_with('\n') {
        fixed.push('\n');
    }
    Checked {
        problems,
        fixed,
        quotes,
        results_tables,
    }
}

/// The block again, with `content` in it, and a longer fence if the content needs one (a
/// quoted doc comment may hold a ``` fence of its own).
fn fenced(open_line: &str, (ch, len): (char, usize), content: &str) -> Vec<String> {
    let longest_inner = content
        .lines()
        .filter_map(fence_open)
        .filter(|(inner, _)| *inner == ch)
        .map(|(_, inner_len)| inner_len)
        .max()
        .unwrap_or(0);
    let fence_len = len.max(longest_inner + 1);
    let info = open_line.trim_start().trim_start_matches(ch);
    let fence = ch.to_string().repeat(fence_len);
    let mut out = vec![format!("{fence}{info}")];
    out.extend(content.lines().map(str::to_string));
    out.push(fence);
    out
}

/// Where two texts first differ, line by line, for a failure message.
fn first_difference(actual: &str, expected: &str) -> String {
    let (actual, expected): (Vec<&str>, Vec<&str>) =
        (actual.lines().collect(), expected.lines().collect());
    let at = (0..actual.len().max(expected.len()))
        .find(|&i| actual.get(i) != expected.get(i))
        .unwrap_or(0);
    let show = |line: Option<&&str>| line.map_or("(no line)".to_string(), |l| format!("`{l}`"));
    format!(
        "  line {} of the block:\n    slide:  {}\n    source: {}\n  ({} lines on the slide, {} \
         in the region)",
        at + 1,
        show(actual.get(at)),
        show(expected.get(at)),
        actual.len(),
        expected.len()
    )
}

// ---------------------------------------------------------------------------------------------
// The workbook's decks.

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the conformance crate lives in a folder of the workspace")
        .to_path_buf()
}

/// Every `*.md` under `slides/`, and `README.md` (whose results table is marked the same
/// way), as (path relative to the workspace, text).
fn decks() -> Vec<(String, String)> {
    fn walk(folder: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(folder) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let root = workspace();
    let mut paths = Vec::new();
    walk(&root.join("slides"), &mut paths);
    paths.sort();
    paths.push(root.join("README.md"));
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let name = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .display()
                .to_string();
            (name, text)
        })
        .collect()
}

/// The step folders of `steps/` (`step03-callbacks`, ...), sorted.
fn step_folders() -> Vec<String> {
    let mut folders: Vec<String> = std::fs::read_dir(workspace().join("steps"))
        .expect("the workspace has a steps/ folder")
        .flatten()
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.starts_with("step"))
        .collect();
    folders.sort();
    folders
}

/// The runner's column headers, read from its source (`Column::header` in
/// `clients/src/bin/table/columns.rs`): what the headers of a results table on a slide may be
/// while `results/table.md` is not committed. None if that source has changed shape.
fn runner_columns(source: &str) -> Option<Vec<String>> {
    let body = source.split_once("fn header(")?.1;
    let body = body.split_once("\n    }\n")?.0;
    let mut columns = vec!["step".to_string()];
    for line in body.lines() {
        if let Some((_, literal)) = line.split_once("=> \"") {
            columns.push(literal.split_once('"')?.0.to_string());
        }
    }
    (columns.len() > 1).then_some(columns)
}

/// Every deck checked once per test run; with `UPDATE_SLIDES` set, the fixable problems are
/// written back to the decks here, once, and not reported.
struct Report {
    problems: Vec<Problem>,
    quotes: usize,
    results_tables: usize,
    results_committed: bool,
    rewritten: Vec<String>,
}

fn report() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(|| {
        let root = workspace();
        let results_text = std::fs::read_to_string(root.join("results/table.md")).ok();
        let results = results_text.as_deref().map(|text| {
            Results::parse(text)
                .unwrap_or_else(|error| panic!("results/table.md cannot be read: {error}"))
        });
        let read = |file: &str| std::fs::read_to_string(root.join(file)).ok();
        let columns = read("clients/src/bin/table/columns.rs")
            .as_deref()
            .and_then(runner_columns);
        let update = std::env::var_os("UPDATE_SLIDES").is_some_and(|v| !v.is_empty() && v != "0");
        let mut report = Report {
            problems: Vec::new(),
            quotes: 0,
            results_tables: 0,
            results_committed: results.is_some(),
            rewritten: Vec::new(),
        };
        for (deck, text) in decks() {
            let checked = check_deck(&deck, &text, &read, results.as_ref(), columns.as_deref());
            report.quotes += checked.quotes;
            report.results_tables += checked.results_tables;
            if update && checked.fixed != text {
                std::fs::write(root.join(&deck), &checked.fixed)
                    .unwrap_or_else(|e| panic!("cannot rewrite {deck}: {e}"));
                report.rewritten.push(deck);
                report
                    .problems
                    .extend(checked.problems.into_iter().filter(|p| !p.fixable));
            } else {
                report.problems.extend(checked.problems);
            }
        }
        if !report.rewritten.is_empty() {
            // Past the test harness's capture: this must be seen even when the tests pass.
            let _ = writeln!(
                std::io::stderr(),
                "\nUPDATE_SLIDES: rewrote {} from the sources and results; review `git diff \
                 slides/`\n",
                report.rewritten.join(", ")
            );
        }
        report
    })
}

/// Fails with every problem of `kind`, each at its deck and line.
fn assert_no_problems(kind: Kind) {
    let problems: Vec<&Problem> = report()
        .problems
        .iter()
        .filter(|p| p.kind == kind)
        .collect();
    if problems.is_empty() {
        return;
    }
    let mut message = format!("{} problem(s) in slides/:\n", problems.len());
    for problem in &problems {
        let _ = writeln!(message, "\n{}: {}", problem.at, problem.message);
    }
    if problems.iter().any(|p| p.fixable) {
        message.push_str(
            "\nTo rewrite drifted quotes and results tables from the sources:\n  \
             UPDATE_SLIDES=1 cargo test -p conformance --test slides\nthen review `git diff \
             slides/`.\n",
        );
    }
    panic!("{message}");
}

#[test]
fn every_quote_equals_its_region() {
    assert!(
        report().quotes > 0,
        "no `<!-- // quote: file#region -->` marker found under slides/: is the folder there?"
    );
    assert_no_problems(Kind::Quote);
}

#[test]
fn every_results_table_equals_the_committed_results() {
    let report = report();
    if !report.results_committed && report.results_tables > 0 {
        // Past the test harness's capture, so that it shows even though the test passes.
        let _ = writeln!(
            std::io::stderr(),
            "\n{bar}\nNOTE: results/table.md is not committed: the {} results table(s) on the \
             slides are\nNOT checked against measured numbers (only their shape is). Commit a \
             real run\n(cargo run --release -p clients --bin table), then run\n  UPDATE_SLIDES=1 \
             cargo test -p conformance --test slides\nto fill them in, and commit slides/ \
             too.\n{bar}\n",
            report.results_tables,
            bar = "!".repeat(78)
        );
    }
    assert_no_problems(Kind::Results);
}

#[test]
fn every_step_has_a_deck_with_speaker_notes_on_every_slide() {
    let decks: HashMap<String, String> = decks().into_iter().collect();
    let mut problems = Vec::new();
    for folder in step_folders() {
        let deck = format!("slides/{folder}.md");
        let Some(text) = decks.get(&deck) else {
            problems.push(format!("steps/{folder} has no deck: expected {deck}"));
            continue;
        };
        for (index, slide) in slides_of(text).iter().enumerate() {
            if !slide.contains("speaker_note") {
                let title = slide
                    .lines()
                    .find(|line| line.starts_with('#') || line.ends_with("==="))
                    .or_else(|| slide.lines().find(|line| !line.trim().is_empty()))
                    .unwrap_or("");
                problems.push(format!(
                    "{deck}, slide {} ({}): no `<!-- speaker_note: ... -->`",
                    index + 1,
                    title.trim()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The slides of a deck: its text split at `<!-- end_slide -->` (outside code blocks),
/// without its front matter (the `---` block that sets the theme) and the empty ones.
fn slides_of(text: &str) -> Vec<String> {
    let body = text
        .strip_prefix("---\n")
        .and_then(|rest| rest.split_once("\n---\n"))
        .map_or(text, |(_, body)| body);
    let mut slides = vec![String::new()];
    let mut fence = None;
    for line in body.lines() {
        match fence {
            Some(open) if fence_closes(line, open) => fence = None,
            Some(_) => {}
            None => fence = fence_open(line),
        }
        if fence.is_none() && line.trim() == "<!-- end_slide -->" {
            slides.push(String::new());
        } else if let Some(slide) = slides.last_mut() {
            slide.push_str(line);
            slide.push('\n');
        }
    }
    slides.retain(|slide| !slide.trim().is_empty());
    slides
}

// ---------------------------------------------------------------------------------------------
// The checks themselves, on fixtures.

const SOURCE: &str = "\
fn outside() {}

// ANCHOR: outer
fn outer() {
    // ANCHOR: inner
    let x = 1;
    // ANCHOR_END: inner

    x
}
// ANCHOR_END: outer

impl Thing {
    // ANCHOR: method
    fn method(&self) {
        body();
    }
    // ANCHOR_END: method
}

// ANCHOR: open
fn never_closed() {}
";

#[test]
fn a_region_leaves_out_nested_markers() {
    assert_eq!(
        region(SOURCE, "outer").unwrap(),
        "fn outer() {\n    let x = 1;\n\n    x\n}"
    );
}

#[test]
fn a_region_loses_its_common_indentation() {
    assert_eq!(region(SOURCE, "inner").unwrap(), "let x = 1;");
    assert_eq!(
        region(SOURCE, "method").unwrap(),
        "fn method(&self) {\n    body();\n}"
    );
}

#[test]
fn a_missing_unterminated_or_duplicate_region_is_an_error() {
    assert_eq!(region(SOURCE, "nothing"), Err(RegionError::Missing));
    assert_eq!(region(SOURCE, "open"), Err(RegionError::Unterminated));
    let twice = "// ANCHOR: a\nx\n// ANCHOR_END: a\n// ANCHOR: a\ny\n// ANCHOR_END: a\n";
    assert_eq!(region(twice, "a"), Err(RegionError::Duplicate));
    // A name is a whole name: `out` is not `outer`.
    assert_eq!(region(SOURCE, "out"), Err(RegionError::Missing));
}

/// `src/thing.rs` is `SOURCE`; no other file exists.
fn fixture_files(file: &str) -> Option<String> {
    (file == "src/thing.rs").then(|| SOURCE.to_string())
}

fn check_fixture(deck: &str, results: Option<&Results>) -> Checked {
    let columns = ["step", "1 fast (req/s)", "2 fast (req/s)"].map(String::from);
    check_deck(
        "slides/fixture.md",
        deck,
        &fixture_files,
        results,
        Some(&columns),
    )
}

fn messages(checked: &Checked) -> Vec<String> {
    checked
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.at, p.message))
        .collect()
}

#[test]
fn a_quote_equal_to_its_region_passes() {
    let deck = "# Slide\n\n<!-- // quote: src/thing.rs#method -->\n\n```rust +line_numbers\nfn \
                method(&self) {\n    body();\n}\n```\n";
    let checked = check_fixture(deck, None);
    assert!(checked.problems.is_empty(), "{:?}", messages(&checked));
    assert_eq!(checked.quotes, 1);
    assert_eq!(checked.fixed, deck);
}

#[test]
fn a_quote_that_differs_fails_and_is_rewritten() {
    let deck = "<!-- // quote: src/thing.rs#method -->\n```rust\nfn method(&self) {\n    \
                old_body();\n}\n```\nafter\n";
    let checked = check_fixture(deck, None);
    let messages = messages(&checked);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].starts_with("slides/fixture.md:3: "),
        "{messages:?}"
    );
    assert!(messages[0].contains("line 2 of the block"), "{messages:?}");
    assert!(checked.problems[0].fixable);
    assert_eq!(
        checked.fixed,
        "<!-- // quote: src/thing.rs#method -->\n```rust\nfn method(&self) {\n    body();\n}\n```\nafter\n"
    );
}

#[test]
fn a_quote_of_a_missing_file_or_region_fails() {
    let deck = "<!-- // quote: src/gone.rs#method -->\n```rust\n```\n\n<!-- // quote: \
                src/thing.rs#gone -->\n```rust\n```\n\n<!-- // quote: src/thing.rs#open \
                -->\n```rust\n```\n";
    let checked = check_fixture(deck, None);
    let messages = messages(&checked);
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[0].contains("`src/gone.rs`, which does not exist"));
    assert!(messages[1].contains("has no region named `gone`"));
    assert!(messages[2].contains("never ends"));
    assert!(checked.problems.iter().all(|p| !p.fixable));
}

#[test]
fn a_marker_must_be_a_user_comment_and_precede_its_block() {
    let deck = "<!-- quote: src/thing.rs#inner -->\n```rust\nlet x = 1;\n```\n<!-- // quote: \
                src/thing.rs#inner -->\nsome text\n<!-- // quote: src/thing.rs -->\n```\n```\n";
    let messages = messages(&check_fixture(deck, None));
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[0].contains("`<!-- // quote: src/thing.rs#inner -->`"));
    assert!(messages[1].contains("not followed by a fenced code block"));
    assert!(messages[2].contains("expected `path/to/file.rs#region`"));
}

#[test]
fn markers_inside_code_blocks_are_examples() {
    let deck = "````markdown\n<!-- // quote: src/gone.rs#x -->\n```rust\n```\n````\n";
    let checked = check_fixture(deck, None);
    assert!(checked.problems.is_empty(), "{:?}", messages(&checked));
    assert_eq!(checked.quotes, 0);
}

#[test]
fn a_quote_holding_a_fence_gets_a_longer_one() {
    // A doc comment's fence starts with `///`: it cannot close the slide's block.
    let doc = "// ANCHOR: doc\n/// ```text\n/// cargo run\n/// ```\n// ANCHOR_END: doc\n";
    let block = fenced("```rust", ('`', 3), &region(doc, "doc").unwrap());
    assert_eq!(block.first().unwrap(), "```rust");
    // A line of a raw string can.
    let raw = "// ANCHOR: raw\nlet md = r\"\n```text\n\";\n// ANCHOR_END: raw\n";
    let block = fenced("```rust", ('`', 3), &region(raw, "raw").unwrap());
    assert_eq!(block.first().unwrap(), "````rust");
    assert_eq!(block.last().unwrap(), "````");
}

/// What the table runner writes (`Results::document`), cut to three columns.
const TABLE_MD: &str = "\
# Results

Made by `cargo run --release -p clients --bin table`
on 2 cores, Some CPU, Linux 6.8.0, rustc 1.90.0, 2025-01-01 12:00 UTC.

Each load ran 5 s; slow requests are fib(40); the idle column opens 10,000 connections.
req/s: higher is better; s/req, µs and KiB: lower is better. \"starved\": a client got
no answer at all while the load ran.

| step   | 1 fast (req/s) | 2 fast (req/s) | idle (KiB/conn) |
| ------ | -------------: | -------------: | --------------: |
| step01 |         41,234 |        starved |           error |
| step02 |         40,001 |         75,310 |            78.2 |
| step07 | unavailable    | unavailable    |     unavailable |

- step01 idle connections: the server stopped answering
- step07: unavailable: io_uring is refused here
";

fn fixture_results() -> Results {
    Results::parse(TABLE_MD).unwrap()
}

#[test]
fn the_results_file_parses_into_rows_by_step() {
    let results = fixture_results();
    assert_eq!(
        results.headers,
        [
            "step",
            "1 fast (req/s)",
            "2 fast (req/s)",
            "idle (KiB/conn)"
        ]
    );
    let steps: Vec<&str> = results.rows.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(steps, ["step01", "step02", "step07"]);
    assert_eq!(results.row("step02").unwrap()["idle (KiB/conn)"], "78.2");
}

#[test]
fn a_results_table_equal_to_the_results_passes_whatever_its_padding() {
    let deck = "<!-- // results: step01 -->\n| step | 2 fast (req/s) | 1 fast (req/s) |\n|---|--:|--:|\n| step01 | starved | 41,234 |\n";
    let checked = check_fixture(deck, Some(&fixture_results()));
    assert!(checked.problems.is_empty(), "{:?}", messages(&checked));
    assert_eq!(checked.results_tables, 1);
}

#[test]
fn a_results_table_that_differs_fails_and_is_rewritten() {
    let deck = "<!-- // results: step02 -->\n\n| step | 1 fast (req/s) |\n| --- | ---: |\n| step02 | 39,999 |\nafter\n";
    let checked = check_fixture(deck, Some(&fixture_results()));
    let messages = messages(&checked);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].starts_with("slides/fixture.md:3: "),
        "{messages:?}"
    );
    assert!(messages[0].contains("step02 | 39,999"), "{messages:?}");
    assert!(messages[0].contains("step02 | 40,001"), "{messages:?}");
    assert_eq!(
        checked.fixed,
        "<!-- // results: step02 -->\n\n| step   | 1 fast (req/s) |\n| ------ | -------------: |\n| step02 |         40,001 |\nafter\n"
    );
}

#[test]
fn a_results_table_with_unknown_columns_or_steps_fails() {
    let results = fixture_results();
    let unknown_column =
        "<!-- // results: step01 -->\n| step | 3 fast |\n|---|---|\n| step01 | 1 |\n";
    let messages_1 = messages(&check_fixture(unknown_column, Some(&results)));
    assert!(messages_1[0].contains("[\"3 fast\"] are not in results/table.md"));
    let unknown_step =
        "<!-- // results: step08 -->\n| step | 1 fast (req/s) |\n|---|---|\n| step08 | 1 |\n";
    let messages_2 = messages(&check_fixture(unknown_step, Some(&results)));
    assert!(messages_2[0].contains("no row for [\"step08\"]"));
    let wrong_rows = "<!-- // results: step01 step02 -->\n| step | 1 fast (req/s) |\n|---|---|\n| step01 | 41,234 |\n";
    let messages_3 = messages(&check_fixture(wrong_rows, Some(&results)));
    assert!(messages_3[0].contains("differs"), "{messages_3:?}");
    let no_table = "<!-- // results: step01 -->\n\ntext\n";
    let messages_4 = messages(&check_fixture(no_table, Some(&results)));
    assert!(messages_4[0].contains("expected a Markdown table"));
}

#[test]
fn results_all_means_every_row_in_order() {
    let deck = "<!-- // results: all -->\n| step | 1 fast (req/s) |\n|---|---|\n| step01 | 41,234 \
                |\n| step02 | 40,001 |\n| step07 | unavailable |\n";
    let checked = check_fixture(deck, Some(&fixture_results()));
    assert!(checked.problems.is_empty(), "{:?}", messages(&checked));
    let missing_one = "<!-- // results: all -->\n| step | 1 fast (req/s) |\n|---|---|\n| step01 | \
                       41,234 |\n";
    assert_eq!(
        check_fixture(missing_one, Some(&fixture_results()))
            .problems
            .len(),
        1
    );
}

#[test]
fn without_committed_results_only_the_shape_is_checked() {
    let deck =
        "<!-- // results: step03 -->\n| step | 1 fast (req/s) |\n|---|---|\n| step03 | – |\n";
    let checked = check_fixture(deck, None);
    assert!(checked.problems.is_empty(), "{:?}", messages(&checked));
    let wrong_step = "<!-- // results: step03 -->\n| step | 1 fast (req/s) |\n|---|---|\n| step04 | – \
                      |\n";
    assert_eq!(check_fixture(wrong_step, None).problems.len(), 1);
}

#[test]
fn the_front_matter_is_not_a_slide() {
    let deck = "---\ntheme:\n  name: dark\n---\n\n# One\n<!-- end_slide -->\n# Two\n";
    assert_eq!(slides_of(deck), ["\n# One\n", "# Two\n"]);
}

#[test]
fn without_committed_results_headers_are_checked_against_the_runner() {
    let deck =
        "<!-- // results: step03 -->\n| step | 3 fast (req/s) |\n|---|---|\n| step03 | – |\n";
    let messages = messages(&check_fixture(deck, None));
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].contains("not columns of the table runner"));
}

#[test]
fn the_runner_columns_are_read_from_its_source() {
    let source = "impl Column {\n    pub fn header(self) -> &'static str {\n        match self \
                  {\n            Column::Fast1 => \"1 fast (req/s)\",\n            \
                  Column::P99 => \"1 fast p99 (µs)\",\n        }\n    }\n\n    pub fn \
                  better(self) {}\n}\n";
    assert_eq!(
        runner_columns(source).unwrap(),
        ["step", "1 fast (req/s)", "1 fast p99 (µs)"]
    );
    let real = std::fs::read_to_string(workspace().join("clients/src/bin/table/columns.rs"))
        .expect("the table runner's columns.rs exists");
    let columns = runner_columns(&real).expect("Column::header still reads as before");
    assert!(
        columns.contains(&"idle (KiB/conn)".to_string()),
        "{columns:?}"
    );
}

#[test]
fn slides_split_at_end_slide_outside_code_blocks() {
    let deck = "# One\n<!-- end_slide -->\n```markdown\n<!-- end_slide -->\n```\n<!-- end_slide \
                -->\n\n<!-- end_slide -->\n";
    let slides = slides_of(deck);
    assert_eq!(slides.len(), 2, "{slides:?}");
    assert!(slides[1].contains("```markdown"));
}
