//! The slides quote the workbook, and this test keeps them honest.
//!
//! Two markers in `slides/*.md` (and in `README.md`, for its results table) tie a slide to the
//! files it shows. Both are presenterm *user comments* (`<!-- // ... -->`), which presenterm
//! ignores: a bare `<!-- quote: ... -->` would be an unknown comment command to it, and the
//! deck would not load.
//!
//! - `<!-- // quote: steps/step03-callbacks/src/lib.rs#event_loop -->`, right before a fenced
//!   code block (blank lines may come between): the block must equal the region `event_loop`
//!   of that file, the lines between `// ANCHOR: event_loop` and `// ANCHOR_END: event_loop`,
//!   without the marker lines of regions nested in it, and without their common indentation.
//!   Regions are named, never line numbers, so code can move and the quote still holds.
//! - `<!-- // results: step03 -->` (or several steps, `results: step01 step02`, or
//!   `results: all`), right before a Markdown table: its header must start with `step`, name
//!   columns of `results/table.md` (any of them, in any order: a terminal is too narrow for
//!   all), and its rows must be exactly those steps, each cell equal to that step's cell in
//!   `results/table.md` (compared trimmed: the padding of an aligned table does not matter).
//!   That file may hold several tables (rates, costs, calls by kind; more in the per-core
//!   mode), each with `step` first: a cell comes from the first table with its header.
//!
//! The decks are read as Markdown (pulldown-cmark), as presenterm reads them: a marker in a
//! code block or in inline code is an example, not a marker, and a table ends where Markdown
//! ends it (at a blank line or another block). A drifted table is rewritten with the runner's
//! own renderer (`clients::table::markdown`), so that it reads like `results/table.md`.
//!
//! The check fails when a marker names a file or a region that does not exist, when a quote
//! differs from its region, and when a results table differs from the committed results. While
//! `results/table.md` is not committed yet, the results cells are not checked (a loud note
//! says so on the terminal): the rows must still name the marker's steps, and the headers must
//! be columns of the table runner (asked of its code, `clients::table::columns::Column`).
//!
//! When a quote or a results table has drifted, this rewrites it from the source:
//!
//! ```text
//! UPDATE_SLIDES=1 cargo test -p conformance --test slides
//! git diff slides/ README.md    # then read the slide around each change: does the text still fit?
//! ```
//!
//! Three more rules: every step of `steps/` has a deck (`slides/<its folder name>.md`), every
//! slide of a step deck has speaker notes, and every region of the Rust sources is quoted (a
//! region no slide quotes is an anchor left behind, or a slide that lost its code).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clients::table::{columns::Column, markdown};
use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag};

// ---------------------------------------------------------------------------------------------
// Named regions of a source file.

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
/// joined by `\n`, no newline after the last. The error says why it cannot be quoted.
fn region(source: &str, name: &str) -> Result<String, &'static str> {
    let (mut found, mut inside, mut lines) = (false, false, Vec::new());
    for line in source.lines() {
        match anchor(line) {
            // Two regions of one name: a quote would be ambiguous.
            Some(Anchor::Start(start)) if start == name && found => {
                return Err("has two regions named");
            }
            Some(Anchor::Start(start)) if start == name => (found, inside) = (true, true),
            Some(Anchor::End(end)) if end == name && inside => inside = false,
            // A nested region's markers are bookkeeping, never part of a quote.
            Some(_) => {}
            None if inside => lines.push(line),
            None => {}
        }
    }
    match (found, inside) {
        (false, _) => Err("has no region named"),
        (true, true) => Err("never ends (no ANCHOR_END) region"),
        (true, false) => Ok(dedent(&lines)),
    }
}

/// Removes the indentation common to the non-blank lines; blank lines become empty.
fn dedent(lines: &[&str]) -> String {
    let blank = |line: &str| line.trim().is_empty();
    let indent = lines
        .iter()
        .filter(|line| !blank(line))
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let lines: Vec<&str> = lines
        .iter()
        .map(|line| if blank(line) { "" } else { &line[indent..] })
        .collect();
    lines.join("\n")
}

/// Every region of `sources` ((file, text) pairs) that no quote names, as `file#region`.
fn orphans(sources: &[(String, String)], quoted: &HashSet<String>) -> Vec<String> {
    let regions = sources.iter().flat_map(|(file, source)| {
        source.lines().filter_map(move |line| match anchor(line) {
            Some(Anchor::Start(name)) => Some(format!("{file}#{name}")),
            _ => None,
        })
    });
    regions.filter(|region| !quoted.contains(region)).collect()
}

// ---------------------------------------------------------------------------------------------
// The blocks of a Markdown document.

/// A block, in document order. A block the checks do not read is `Other`, so that "the block
/// after a marker" is the next block, whatever it is.
#[derive(Debug)]
enum Block<'a> {
    /// An HTML comment on lines of its own, inside `<!--` and `-->`, trimmed: a marker, a
    /// speaker note, a slide's end.
    Comment(&'a str),
    /// A fenced code block's text, fences included.
    Code(&'a str),
    /// A table's rows, the header row first; each cell as written, trimmed (not as rendered:
    /// `**3**` is not `3` to a reader of the deck), and a short row filled with empty cells.
    Table(Vec<Vec<String>>),
    /// A heading's first line without its `#`s: the title of its slide.
    Heading(&'a str),
    Other,
}

/// The blocks of `text`, each with its byte range.
fn blocks(text: &str) -> Vec<(Block<'_>, Range<usize>)> {
    // Tables; and front matter, so that presenterm's `---` block of settings is no block.
    let options = Options::ENABLE_TABLES | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS;
    let mut events = Parser::new_ext(text, options).into_offset_iter();
    let mut blocks = Vec::new();
    while let Some((event, range)) = events.next() {
        let raw = text[range.clone()].trim();
        let block = match event {
            // Lists, their items and quotes hold blocks, which come next.
            Event::Start(Tag::List(_) | Tag::Item | Tag::BlockQuote(_)) | Event::Rule => {
                Block::Other
            }
            Event::Start(tag) => {
                let rows = rows_inside(text, &mut events);
                match tag {
                    Tag::HtmlBlock => comment(raw).map_or(Block::Other, Block::Comment),
                    Tag::CodeBlock(CodeBlockKind::Fenced(_)) => Block::Code(raw),
                    Tag::Table(_) => Block::Table(rows),
                    Tag::Heading { .. } => {
                        Block::Heading(raw.lines().next().unwrap_or("").trim_matches('#').trim())
                    }
                    Tag::MetadataBlock(_) => continue,
                    _ => Block::Other,
                }
            }
            _ => continue,
        };
        blocks.push((block, range));
    }
    blocks
}

/// The text of an HTML comment, `<!-- text -->`, trimmed.
fn comment(html: &str) -> Option<&str> {
    Some(html.strip_prefix("<!--")?.strip_suffix("-->")?.trim())
}

/// Consumes the events of the element just started, up to its end; returns the rows of cells
/// among them (a table's, the header row first; none in other blocks).
fn rows_inside<'a>(
    text: &str,
    events: &mut impl Iterator<Item = (Event<'a>, Range<usize>)>,
) -> Vec<Vec<String>> {
    let (mut depth, mut rows) = (1, Vec::<Vec<String>>::new());
    for (event, range) in events {
        match event {
            Event::End(_) if depth == 1 => break,
            Event::End(_) => depth -= 1,
            Event::Start(tag) => {
                depth += 1;
                match (tag, rows.last_mut()) {
                    (Tag::TableHead | Tag::TableRow, _) => rows.push(Vec::new()),
                    (Tag::TableCell, Some(row)) => row.push(text[range].trim().to_string()),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    rows
}

/// The fence a line opens a code block with, if it could: its character and length.
fn fence(line: &str) -> Option<(char, usize)> {
    let line = line.trim_start();
    let ch = line.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = line.chars().take_while(|c| *c == ch).count();
    (len >= 3).then_some((ch, len))
}

/// The line of a byte offset, from 1, for a message an editor can jump to.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

// ---------------------------------------------------------------------------------------------
// The committed results.

/// `results/table.md`: every table of it whose first header is `step`, merged.
#[derive(Debug, Default)]
struct Results {
    /// Every header once, in the order of the file.
    headers: Vec<String>,
    /// Every step once, in the order of the file: what `results: all` stands for.
    steps: Vec<String>,
    /// (step, header) -> cell, from the first table with that header: in the per-core mode,
    /// each placement repeats the tables, and the first is the one slides show.
    cells: HashMap<(String, String), String>,
}

impl Results {
    fn parse(text: &str) -> Result<Results, String> {
        let mut results = Results::default();
        for (block, _) in blocks(text) {
            let Block::Table(table) = block else { continue };
            let Some((headers, rows)) = table.split_first() else {
                continue;
            };
            if headers[0] != "step" {
                continue;
            }
            for header in headers {
                if !results.headers.contains(header) {
                    results.headers.push(header.clone());
                }
            }
            for row in rows {
                if !results.steps.contains(&row[0]) {
                    results.steps.push(row[0].clone());
                }
                for (header, cell) in headers.iter().zip(row) {
                    let key = (row[0].clone(), header.clone());
                    results.cells.entry(key).or_insert_with(|| cell.clone());
                }
            }
        }
        if results.headers.is_empty() {
            return Err("no table with a `step` column".into());
        }
        Ok(results)
    }

    /// The rows of `steps` under `headers`, or what is missing for them.
    fn rows(&self, steps: &[&str], headers: &[String]) -> Result<Vec<Vec<String>>, String> {
        let cell = |step: &str, header: &String| {
            let key = (step.to_string(), header.clone());
            match self.cells.get(&key) {
                Some(cell) => Ok(cell.clone()),
                None if self.steps.contains(&key.0) => Err(format!("`{header}` for {step}")),
                None => Err(format!("row for {step}")),
            }
        };
        let row = |step: &&str| headers.iter().map(|header| cell(step, header)).collect();
        steps.iter().map(row).collect()
    }
}

/// The runner's headers, `step` first: what a results table may show while `results/table.md`
/// is not committed.
fn runner_columns() -> Vec<String> {
    let headers = Column::every(true).into_iter().map(Column::header);
    std::iter::once("step".to_string()).chain(headers).collect()
}

// ---------------------------------------------------------------------------------------------
// Checking one deck.

/// What a problem is about: each test reports its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Quote,
    Results,
}

/// One thing wrong with a deck, at a byte offset of it; and, when the source says what the
/// block should be, the text to put in place of a range of the deck (`UPDATE_SLIDES=1`).
#[derive(Debug)]
struct Problem {
    kind: Kind,
    at: usize,
    message: String,
    fix: Option<(Range<usize>, String)>,
}

/// A problem that only a person can fix.
fn unfixable(kind: Kind, at: usize, message: String) -> Result<(), Problem> {
    let fix = None;
    Err(Problem {
        kind,
        at,
        message,
        fix,
    })
}

/// A deck's problems, and what its markers name.
#[derive(Debug, Default)]
struct Checked {
    problems: Vec<Problem>,
    /// The `file#region` of every quote.
    quoted: Vec<String>,
    results_tables: usize,
}

/// What a deck is checked against.
struct Context<'a> {
    /// The text of a workbook file, by its path relative to the workspace (None: no such file).
    read: &'a dyn Fn(&str) -> Option<String>,
    /// `results/table.md`, if committed.
    results: Option<&'a Results>,
    /// The runner's headers, which results tables are held to while the results are not.
    columns: &'a [String],
}

/// The marker in a comment, if it is one: `quote: ...` or `results: ...`, and whether it was
/// written as a user comment (`<!-- // ... -->`), the only form presenterm accepts.
fn marker(comment: &str) -> Option<(Kind, &str, bool)> {
    let (user_comment, body) = match comment.strip_prefix("//") {
        Some(body) => (true, body.trim_start()),
        None => (false, comment),
    };
    if let Some(value) = body.strip_prefix("quote:") {
        return Some((Kind::Quote, value.trim(), user_comment));
    }
    let value = body.strip_prefix("results:")?;
    Some((Kind::Results, value.trim(), user_comment))
}

fn check_deck(text: &str, context: &Context) -> Checked {
    let blocks = blocks(text);
    let mut checked = Checked::default();
    for (i, (block, range)) in blocks.iter().enumerate() {
        let Block::Comment(comment) = block else {
            continue;
        };
        let Some((kind, value, user_comment)) = marker(comment) else {
            continue;
        };
        if !user_comment {
            let message = format!(
                "presenterm rejects unknown comment commands: write this marker as a user \
                 comment, `<!-- // {comment} -->`"
            );
            checked
                .problems
                .extend(unfixable(kind, range.start, message).err());
        }
        let next = blocks.get(i + 1);
        let result = match kind {
            Kind::Quote => {
                checked.quoted.push(value.to_string());
                check_quote(value, range.start, next, context.read)
            }
            Kind::Results => {
                checked.results_tables += 1;
                check_results(value, range.start, next, context)
            }
        };
        checked.problems.extend(result.err());
    }
    checked
}

/// A quote: the next block is a fenced code block equal to the region it names.
fn check_quote(
    value: &str,
    marker: usize,
    next: Option<&(Block, Range<usize>)>,
    read: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Problem> {
    let fail = |at, message| unfixable(Kind::Quote, at, message);
    let Some((Block::Code(code), range)) = next else {
        let message = format!("`quote: {value}` is not followed by a fenced code block");
        return fail(marker, message);
    };
    let lines: Vec<&str> = code.lines().collect();
    let (ch, len) = fence(lines[0]).expect("a fenced code block opens with a fence");
    let last = lines[lines.len() - 1].trim();
    // Markdown ends an unclosed block with the document: rewriting it would eat the deck.
    if lines.len() < 2 || last.len() < len || last.chars().any(|c| c != ch) {
        return fail(range.start, "this code block is never closed".into());
    }
    let Some((file, name)) = value.split_once('#') else {
        let message = format!("`quote: {value}`: expected `path/to/file.rs#region`");
        return fail(marker, message);
    };
    let Some(source) = read(file) else {
        return fail(marker, format!("quotes `{file}`, which does not exist"));
    };
    let expected = match region(&source, name) {
        Ok(expected) => expected,
        Err(why) => return fail(marker, format!("`{file}` {why} `{name}`")),
    };
    let actual = lines[1..lines.len() - 1].join("\n");
    if actual == expected {
        return Ok(());
    }
    Err(Problem {
        kind: Kind::Quote,
        // The block's first line.
        at: range.start + lines[0].len() + 1,
        message: format!(
            "the quote of `{value}` differs from the source\n{}",
            first_difference(&actual, &expected)
        ),
        fix: Some((range.clone(), fenced(lines[0], (ch, len), &expected))),
    })
}

/// The block again with `content` in it, and a longer fence if a line of the content could
/// close it (a quoted raw string may hold a ``` line; a doc comment's ``` starts with `///`).
fn fenced(open_line: &str, (ch, len): (char, usize), content: &str) -> String {
    let inner = content.lines().filter_map(fence).filter(|(c, _)| *c == ch);
    let longest_inner = inner.map(|(_, len)| len).max().unwrap_or(0);
    let fence = ch.to_string().repeat(len.max(longest_inner + 1));
    let info = open_line.trim_start().trim_start_matches(ch);
    let lines: String = content.lines().map(|line| format!("{line}\n")).collect();
    format!("{fence}{info}\n{lines}{fence}")
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

/// A results table: the next block is a table of the marker's steps, under known headers,
/// with the cells of the committed results.
fn check_results(
    value: &str,
    marker: usize,
    next: Option<&(Block, Range<usize>)>,
    context: &Context,
) -> Result<(), Problem> {
    let fail = |at, message| unfixable(Kind::Results, at, message);
    let Some((Block::Table(table), range)) = next else {
        let message = format!(
            "`results: {value}`: expected a Markdown table (a header row, then a separator row)"
        );
        return fail(marker, message);
    };
    let (headers, rows) = table.split_first().expect("a table has a header row");
    if headers[0] != "step" {
        let message = "the first column of a results table must be `step`";
        return fail(range.start, message.into());
    }
    let steps: Vec<&str> = rows.iter().map(|row| row[0].as_str()).collect();
    let wanted: Vec<&str> = match (value, context.results) {
        ("all", Some(results)) => results.steps.iter().map(String::as_str).collect(),
        // Without the results, `all` means whatever rows the slide has.
        ("all", None) => steps.clone(),
        _ => value.split([' ', ',']).filter(|s| !s.is_empty()).collect(),
    };
    if wanted.is_empty() {
        return fail(marker, "`results:` names no step".into());
    }
    let (known, known_as) = match context.results {
        Some(results) => (&results.headers[..], "in results/table.md"),
        None => (context.columns, "columns of the table runner"),
    };
    let unknown: Vec<&String> = headers.iter().filter(|h| !known.contains(h)).collect();
    if !unknown.is_empty() {
        let message =
            format!("columns {unknown:?} are not {known_as}, whose columns are {known:?}");
        return fail(range.start, message);
    }
    let Some(results) = context.results else {
        // Not committed yet: the cells cannot be checked, the rows' steps can.
        if steps == wanted {
            return Ok(());
        }
        let message = format!("the table's rows are {steps:?}, the marker says {wanted:?}");
        return fail(range.start, message);
    };
    let expected = match results.rows(&wanted, headers) {
        Ok(expected) => expected,
        Err(missing) => return fail(marker, format!("results/table.md has no {missing}")),
    };
    if rows == expected {
        return Ok(());
    }
    let show = |rows: &[Vec<String>]| -> String {
        let rows = rows.iter().map(|row| format!("\n    {}", row.join(" | ")));
        rows.collect()
    };
    let message = format!(
        "the results table for `{value}` differs from results/table.md\n  slide:{}\n  \
         results/table.md:{}",
        show(rows),
        show(&expected)
    );
    Err(Problem {
        kind: Kind::Results,
        at: range.start,
        message,
        fix: Some((range.clone(), markdown::table(headers, &expected))),
    })
}

/// `text` with every fix of `problems` made.
fn fixed(text: &str, problems: &[Problem]) -> String {
    let mut fixes: Vec<_> = problems.iter().filter_map(|p| p.fix.as_ref()).collect();
    // Back to front, so that each range still holds when its turn comes.
    fixes.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut fixed = text.to_string();
    for (range, replacement) in fixes {
        // A table's range ends after its last newline if it has one, a rendered table too.
        let end = if text[range.clone()].ends_with('\n') {
            replacement.len()
        } else {
            replacement.trim_end_matches('\n').len()
        };
        fixed.replace_range(range.clone(), &replacement[..end]);
    }
    fixed
}

// ---------------------------------------------------------------------------------------------
// The workbook.

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the conformance crate lives in a folder of the workspace")
        .to_path_buf()
}

/// The files under `folder` (of the workspace) named `*.{extension}`, as (path relative to the
/// workspace, text), sorted. Build output (`target/`) is not the workbook's.
fn files(folder: &str, extension: &str) -> Vec<(String, String)> {
    fn walk(folder: &Path, extension: &str, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.ends_with("target") {
                walk(&path, extension, out);
            } else if path.extension().is_some_and(|e| e == extension) {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&workspace().join(folder), extension, &mut paths);
    paths.sort();
    paths.iter().map(|path| read(path)).collect()
}

/// A file of the workspace, as (path relative to the workspace, text).
fn read(path: &Path) -> (String, String) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let root = workspace();
    let name = path.strip_prefix(&root).unwrap_or(path);
    (name.display().to_string(), text)
}

/// Every `*.md` under `slides/`, and `README.md` (whose results table is marked the same way).
fn decks() -> Vec<(String, String)> {
    let mut decks = files("slides", "md");
    decks.push(read(&workspace().join("README.md")));
    decks
}

/// Every deck checked once per test run; with `UPDATE_SLIDES` set, the fixable problems are
/// fixed in the decks here, once, and not reported.
struct Report {
    /// Each at its `deck:line`.
    problems: Vec<(String, Problem)>,
    quoted: HashSet<String>,
    results_tables: usize,
    results_committed: bool,
}

fn report() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(|| {
        let root = workspace();
        let results = std::fs::read_to_string(root.join("results/table.md")).ok();
        let results = results.map(|text| {
            Results::parse(&text)
                .unwrap_or_else(|error| panic!("results/table.md cannot be read: {error}"))
        });
        let context = Context {
            read: &|file: &str| std::fs::read_to_string(root.join(file)).ok(),
            results: results.as_ref(),
            columns: &runner_columns(),
        };
        let update = std::env::var_os("UPDATE_SLIDES").is_some_and(|v| !v.is_empty() && v != "0");
        let mut report = Report {
            problems: Vec::new(),
            quoted: HashSet::new(),
            results_tables: 0,
            results_committed: results.is_some(),
        };
        let mut rewritten = Vec::new();
        for (deck, text) in decks() {
            let mut checked = check_deck(&text, &context);
            let fixed = fixed(&text, &checked.problems);
            if update && fixed != text {
                std::fs::write(root.join(&deck), &fixed)
                    .unwrap_or_else(|e| panic!("cannot rewrite {deck}: {e}"));
                checked.problems.retain(|p| p.fix.is_none());
                rewritten.push(deck.clone());
            }
            let at = |p: &Problem| format!("{deck}:{}", line_of(&text, p.at));
            report
                .problems
                .extend(checked.problems.into_iter().map(|p| (at(&p), p)));
            report.quoted.extend(checked.quoted);
            report.results_tables += checked.results_tables;
        }
        if !rewritten.is_empty() {
            // Past the test harness's capture: this must be seen even when the tests pass.
            let _ = writeln!(
                std::io::stderr(),
                "\nUPDATE_SLIDES: rewrote {} from the sources and results; review `git diff \
                 slides/ README.md`\n",
                rewritten.join(", ")
            );
        }
        report
    })
}

/// Fails with every problem of `kind`, each at its deck and line.
fn assert_no_problems(kind: Kind) {
    let problems: Vec<_> = report()
        .problems
        .iter()
        .filter(|(_, p)| p.kind == kind)
        .collect();
    if problems.is_empty() {
        return;
    }
    let mut message = format!("{} problem(s) in the decks:\n", problems.len());
    for (at, problem) in &problems {
        let _ = writeln!(message, "\n{at}: {}", problem.message);
    }
    if problems.iter().any(|(_, p)| p.fix.is_some()) {
        message.push_str(
            "\nTo rewrite drifted quotes and results tables from the sources:\n  \
             UPDATE_SLIDES=1 cargo test -p conformance --test slides\nthen review `git diff \
             slides/ README.md`.\n",
        );
    }
    panic!("{message}");
}

/// The slides of a deck, as (title, whether it has speaker notes): its blocks split at
/// `<!-- end_slide -->`, without the front matter, without empty slides.
fn slides_of(text: &str) -> Vec<(Option<&str>, bool)> {
    let mut slides = Vec::new();
    let mut slide = None;
    for (block, _) in blocks(text) {
        if matches!(block, Block::Comment("end_slide")) {
            slides.extend(slide.take());
            continue;
        }
        let (title, notes) = slide.get_or_insert((None, false));
        match block {
            Block::Heading(heading) => *title = title.or(Some(heading)),
            Block::Comment(comment) => *notes |= comment.starts_with("speaker_note:"),
            _ => {}
        }
    }
    slides.extend(slide);
    slides
}

// ---------------------------------------------------------------------------------------------
// The checks, on the workbook.

#[test]
fn every_quote_equals_its_region() {
    assert!(
        !report().quoted.is_empty(),
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
    let mut steps: Vec<String> = std::fs::read_dir(workspace().join("steps"))
        .expect("the workspace has a steps/ folder")
        .flatten()
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.starts_with("step"))
        .collect();
    steps.sort();
    let mut problems = Vec::new();
    for folder in steps {
        let deck = format!("slides/{folder}.md");
        let Some(text) = decks.get(&deck) else {
            problems.push(format!("steps/{folder} has no deck: expected {deck}"));
            continue;
        };
        for (index, (title, notes)) in slides_of(text).into_iter().enumerate() {
            if !notes {
                let title = title.unwrap_or("no title");
                let number = index + 1;
                problems.push(format!(
                    "{deck}, slide {number} ({title}): no `<!-- speaker_note: ... -->`"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_region_is_quoted() {
    let folders = ["steps", "shared", "clients", "tests/src"];
    let sources: Vec<_> = folders.iter().flat_map(|f| files(f, "rs")).collect();
    let orphans = orphans(&sources, &report().quoted);
    assert!(
        orphans.is_empty(),
        "{} region(s) that no slide quotes: quote each (`<!-- // quote: FILE#REGION -->` before \
         a fenced code block), or remove its ANCHOR lines\n{}",
        orphans.len(),
        orphans.join("\n")
    );
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
fn a_region_leaves_out_nested_markers_and_its_common_indentation() {
    let outer = "fn outer() {\n    let x = 1;\n\n    x\n}";
    assert_eq!(region(SOURCE, "outer").unwrap(), outer);
    assert_eq!(region(SOURCE, "inner").unwrap(), "let x = 1;");
    let method = "fn method(&self) {\n    body();\n}";
    assert_eq!(region(SOURCE, "method").unwrap(), method);
}

#[test]
fn a_missing_unterminated_or_duplicate_region_is_an_error() {
    assert_eq!(region(SOURCE, "nothing"), Err("has no region named"));
    assert_eq!(
        region(SOURCE, "open"),
        Err("never ends (no ANCHOR_END) region")
    );
    let twice = "// ANCHOR: a\nx\n// ANCHOR_END: a\n// ANCHOR: a\ny\n// ANCHOR_END: a\n";
    assert_eq!(region(twice, "a"), Err("has two regions named"));
    // A name is a whole name: `out` is not `outer`.
    assert_eq!(region(SOURCE, "out"), Err("has no region named"));
}

#[test]
fn a_region_no_quote_names_is_an_orphan() {
    let sources = [("src/thing.rs".to_string(), SOURCE.to_string())];
    let quoted = HashSet::from(["src/thing.rs#outer".into(), "src/thing.rs#open".into()]);
    let orphans = orphans(&sources, &quoted);
    assert_eq!(orphans, ["src/thing.rs#inner", "src/thing.rs#method"]);
}

/// Checks a deck whose only source file is `src/thing.rs`, `SOURCE`; returns its problems as
/// `line: message`, and its text with the fixable ones fixed.
fn check_fixture(deck: &str, results: Option<&str>) -> (Checked, Vec<String>, String) {
    let results = results.map(|text| Results::parse(text).unwrap());
    let context = Context {
        read: &|file: &str| (file == "src/thing.rs").then(|| SOURCE.to_string()),
        results: results.as_ref(),
        columns: &["step", "1 fast (req/s)", "2 fast (req/s)"].map(String::from),
    };
    let checked = check_deck(deck, &context);
    let problems = checked.problems.iter();
    let messages = problems
        .map(|p| format!("{}: {}", line_of(deck, p.at), p.message))
        .collect();
    let fixed = fixed(deck, &checked.problems);
    (checked, messages, fixed)
}

#[test]
fn a_quote_equal_to_its_region_passes() {
    let deck = "# Slide\n\n<!-- // quote: src/thing.rs#method -->\n\n```rust +line_numbers\nfn \
                method(&self) {\n    body();\n}\n```\n";
    let (checked, messages, _) = check_fixture(deck, None);
    assert!(messages.is_empty(), "{messages:?}");
    assert_eq!(checked.quoted, ["src/thing.rs#method"]);
}

#[test]
fn a_quote_that_differs_fails_and_is_rewritten() {
    let deck = "<!-- // quote: src/thing.rs#method -->\n```rust\nfn method(&self) {\n    \
                old_body();\n}\n```\nafter\n";
    let (_, messages, fixed) = check_fixture(deck, None);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].starts_with("3: "), "{messages:?}");
    assert!(messages[0].contains("line 2 of the block"), "{messages:?}");
    assert_eq!(fixed, deck.replace("old_body", "body"));
}

#[test]
fn a_quote_of_a_missing_file_or_region_fails() {
    let deck = "<!-- // quote: src/gone.rs#method -->\n```rust\n```\n\n<!-- // quote: \
                src/thing.rs#gone -->\n```rust\n```\n\n<!-- // quote: src/thing.rs#open \
                -->\n```rust\n```\n";
    let (checked, messages, _) = check_fixture(deck, None);
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[0].contains("`src/gone.rs`, which does not exist"));
    assert!(messages[1].contains("has no region named `gone`"));
    assert!(messages[2].contains("never ends"));
    assert!(checked.problems.iter().all(|p| p.fix.is_none()));
}

#[test]
fn a_marker_must_be_a_user_comment_and_precede_its_block() {
    let deck = "<!-- quote: src/thing.rs#inner -->\n```rust\nlet x = 1;\n```\n<!-- // quote: \
                src/thing.rs#inner -->\nsome text\n<!-- // quote: src/thing.rs -->\n```\n```\n";
    let (_, messages, _) = check_fixture(deck, None);
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[0].contains("`<!-- // quote: src/thing.rs#inner -->`"));
    assert!(messages[1].contains("not followed by a fenced code block"));
    assert!(messages[2].contains("expected `path/to/file.rs#region`"));
}

#[test]
fn an_unclosed_quote_fails_and_is_not_rewritten() {
    let deck = "<!-- // quote: src/thing.rs#inner -->\n```rust\nlet x = 2;\n\n# Next slide\n";
    let (_, messages, fixed) = check_fixture(deck, None);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].contains("never closed"), "{messages:?}");
    assert_eq!(fixed, deck);
}

#[test]
fn markers_in_code_are_examples() {
    let deck = "````markdown\n<!-- // quote: src/gone.rs#x -->\n```rust\n```\n````\n\nMark it \
                `<!-- // results: step09 -->`.\n";
    let (checked, messages, _) = check_fixture(deck, None);
    assert!(messages.is_empty(), "{messages:?}");
    assert!(checked.quoted.is_empty() && checked.results_tables == 0);
}

#[test]
fn a_quote_holding_a_fence_gets_a_longer_one() {
    // A doc comment's fence starts with `///`: it cannot close the slide's block.
    let doc = "// ANCHOR: doc\n/// ```text\n/// cargo run\n/// ```\n// ANCHOR_END: doc\n";
    let block = fenced("```rust", ('`', 3), &region(doc, "doc").unwrap());
    assert!(block.starts_with("```rust\n/// ```text\n"), "{block}");
    // A line of a raw string can.
    let raw = "// ANCHOR: raw\nlet md = r\"\n```text\n\";\n// ANCHOR_END: raw\n";
    let block = fenced("```rust", ('`', 3), &region(raw, "raw").unwrap());
    assert!(
        block.starts_with("````rust\n") && block.ends_with("\n````"),
        "{block}"
    );
}

/// What the table runner wrote before it had several tables, cut to three columns.
const TABLE_MD: &str = "\
# Results

Made by `cargo run --release -p clients --bin table`
on 2 cores, Some CPU, Linux 6.8.0, rustc 1.90.0, 2025-01-01 12:00 UTC.

| step   | 1 fast (req/s) | 2 fast (req/s) | idle (KiB/conn) |
| ------ | -------------: | -------------: | --------------: |
| step01 |         41,234 |        starved |           error |
| step02 |         40,001 |         75,310 |            78.2 |
| step07 | unavailable    | unavailable    |     unavailable |

- step01 idle connections: the server stopped answering
- step07: unavailable: io_uring is refused here
";

/// What it writes now, cut: a table per kind of measurement, one step missing from one of
/// them, and (as in the per-core mode) a second placement repeating a table.
const TABLES_MD: &str = "\
# Results

## What the clients saw

| step   | 1 fast (req/s) | idle (KiB/conn) |
| ------ | -------------: | --------------: |
| step01 |     38,482 ±9% |         starved |
| step02 |     40,001 ±2% |            17.5 |

## What one request costs the server

| step   | 1 fast: calls/req |
| ------ | ----------------: |
| step02 |              3.00 |
| step03 |              2.00 |

- step01 1 fast: calls/req: perf_event_open refused

## Each server on CPU 1

| step   | 1 fast (req/s) |
| ------ | -------------: |
| step01 |         99,999 |
";

#[test]
fn the_results_file_parses_into_rows_by_step() {
    let results = Results::parse(TABLE_MD).unwrap();
    let headers = [
        "step",
        "1 fast (req/s)",
        "2 fast (req/s)",
        "idle (KiB/conn)",
    ];
    assert_eq!(results.headers, headers);
    assert_eq!(results.steps, ["step01", "step02", "step07"]);
    let idle = ["idle (KiB/conn)".to_string()];
    assert_eq!(results.rows(&["step02"], &idle).unwrap(), [["78.2"]]);
    assert!(Results::parse("# Results\n\nnot measured yet\n").is_err());
}

#[test]
fn several_results_tables_merge_by_header_and_the_first_wins() {
    let results = Results::parse(TABLES_MD).unwrap();
    let headers = [
        "step",
        "1 fast (req/s)",
        "idle (KiB/conn)",
        "1 fast: calls/req",
    ];
    assert_eq!(results.headers, headers);
    assert_eq!(results.steps, ["step01", "step02", "step03"]);
    let headers = headers.map(String::from);
    let step02 = ["step02", "40,001 ±2%", "17.5", "3.00"];
    assert_eq!(results.rows(&["step02"], &headers).unwrap(), [step02]);
    let step01 = results.rows(&["step01"], &headers[..2]).unwrap();
    assert_eq!(step01, [["step01", "38,482 ±9%"]]);
    let missing = results.rows(&["step03"], &headers).unwrap_err();
    assert_eq!(missing, "`1 fast (req/s)` for step03");
}

#[test]
fn a_results_table_equal_to_the_results_passes_whatever_its_padding() {
    let deck = "<!-- // results: step01 -->\n| step | 2 fast (req/s) | 1 fast (req/s) \
                |\n|---|--:|--:|\n| step01 | starved | 41,234 |\n";
    let (checked, messages, _) = check_fixture(deck, Some(TABLE_MD));
    assert!(messages.is_empty(), "{messages:?}");
    assert_eq!(checked.results_tables, 1);
}

#[test]
fn a_results_table_that_differs_fails_and_is_rewritten() {
    let deck = "<!-- // results: step02 -->\n\n| step | 1 fast (req/s) |\n| --- | ---: |\n| \
                step02 | 39,999 |\n\nafter\n";
    let (_, messages, fixed) = check_fixture(deck, Some(TABLE_MD));
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].starts_with("3: "), "{messages:?}");
    assert!(messages[0].contains("step02 | 39,999"), "{messages:?}");
    assert!(messages[0].contains("step02 | 40,001"), "{messages:?}");
    let table = "| step   | 1 fast (req/s) |\n| ------ | -------------: |\n| step02 |         \
                 40,001 |\n";
    assert_eq!(
        fixed,
        format!("<!-- // results: step02 -->\n\n{table}\nafter\n")
    );
    // At the very end of a deck without a last newline, none is added.
    let last = "<!-- // results: step02 -->\n| step | 1 fast (req/s) |\n|--|--|\n| step02 | 1 |";
    let (_, _, fixed) = check_fixture(last, Some(TABLE_MD));
    assert_eq!(
        fixed,
        format!("<!-- // results: step02 -->\n{}", table.trim_end())
    );
}

#[test]
fn a_results_table_with_unknown_columns_or_steps_fails() {
    for (deck, expected) in [
        (
            "<!-- // results: step01 -->\n| step | 3 fast |\n|---|---|\n| step01 | 1 |\n",
            "[\"3 fast\"] are not in results/table.md",
        ),
        (
            "<!-- // results: step08 -->\n| step | 1 fast (req/s) |\n|---|---|\n| step08 | 1 |\n",
            "results/table.md has no row for step08",
        ),
        (
            "<!-- // results: step01 step02 -->\n| step | 1 fast (req/s) |\n|---|---|\n| step01 \
             | 41,234 |\n",
            "differs",
        ),
        (
            "<!-- // results: step01 -->\n\ntext\n",
            "expected a Markdown table",
        ),
        (
            "<!-- // results: step01 -->\n| 1 fast (req/s) |\n|---|\n| 41,234 |\n",
            "must be `step`",
        ),
    ] {
        let (_, messages, _) = check_fixture(deck, Some(TABLE_MD));
        assert!(
            messages.len() == 1 && messages[0].contains(expected),
            "{messages:?}"
        );
    }
}

#[test]
fn results_all_means_every_row_in_order() {
    let deck = "<!-- // results: all -->\n| step | 1 fast (req/s) |\n|---|---|\n| step01 | 41,234 \
                |\n| step02 | 40,001 |\n| step07 | unavailable |\n";
    let (_, messages, _) = check_fixture(deck, Some(TABLE_MD));
    assert!(messages.is_empty(), "{messages:?}");
    let missing_one = deck.replace("| step07 | unavailable |\n", "");
    let (_, messages, _) = check_fixture(&missing_one, Some(TABLE_MD));
    assert_eq!(messages.len(), 1, "{messages:?}");
}

#[test]
fn without_committed_results_the_steps_and_headers_are_checked_against_the_runner() {
    let deck =
        "<!-- // results: step03 -->\n| step | 1 fast (req/s) |\n|---|---|\n| step03 | – |\n";
    let (_, messages, _) = check_fixture(deck, None);
    assert!(messages.is_empty(), "{messages:?}");
    let (_, messages, _) = check_fixture(&deck.replace("| step03", "| step04"), None);
    assert!(
        messages[0].contains("the marker says [\"step03\"]"),
        "{messages:?}"
    );
    let (_, messages, _) = check_fixture(&deck.replace("1 fast", "3 fast"), None);
    assert!(
        messages[0].contains("not columns of the table runner"),
        "{messages:?}"
    );
}

#[test]
fn the_runner_columns_are_every_header_of_every_table() {
    let columns = runner_columns();
    assert_eq!(columns[0], "step");
    for header in [
        "1 fast, same CPU (req/s)",
        "idle (KiB/conn)",
        "64 fast: calls/req",
    ] {
        assert!(columns.contains(&header.to_string()), "{columns:?}");
    }
}

#[test]
fn slides_split_at_end_slide_outside_code_blocks_and_the_front_matter_is_none() {
    let deck = "---\ntheme:\n  name: dark\n---\n\n# One\n<!-- speaker_note: hi -->\n<!-- \
                end_slide -->\nTwo\n===\n```markdown\n<!-- end_slide -->\n```\n<!-- end_slide \
                -->\n\n<!-- end_slide -->\n";
    assert_eq!(slides_of(deck), [(Some("One"), true), (Some("Two"), false)]);
}
