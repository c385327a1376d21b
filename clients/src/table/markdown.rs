//! Aligned Markdown tables: the one renderer the results runner writes with and the slides
//! test rewrites drifted slides with, so that both produce the same bytes.

/// An aligned Markdown table: the first column (the step) left-aligned, every other column
/// (numbers) right-aligned, each column as wide as its widest cell (at least 3). One line per
/// row, each ending in `\n`.
pub fn table(headers: &[String], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .filter_map(|row| row.get(i))
            .map(|cell| cell.chars().count())
            .chain([headers[i].chars().count(), 3])
            .max()
            .unwrap_or(3)
    };
    let widths: Vec<usize> = (0..headers.len()).map(width).collect();
    let line = |cells: &[String]| {
        let mut out = String::from("|");
        for (i, width) in widths.iter().enumerate() {
            let cell = cells.get(i).map_or("", String::as_str);
            let pad = " ".repeat(width - cell.chars().count());
            if i == 0 {
                out.push_str(&format!(" {cell}{pad} |"));
            } else {
                out.push_str(&format!(" {pad}{cell} |"));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(headers);
    out.push('|');
    for (i, width) in widths.iter().enumerate() {
        if i == 0 {
            out.push_str(&format!(" {} |", "-".repeat(*width)));
        } else {
            out.push_str(&format!(" {}: |", "-".repeat(width - 1)));
        }
    }
    out.push('\n');
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn columns_are_aligned_step_left_numbers_right() {
        let text = table(
            &strings(&["step", "1 fast (req/s)"]),
            &[strings(&["step01", "41,234"]), strings(&["step10", "7"])],
        );
        assert_eq!(
            text,
            "| step   | 1 fast (req/s) |\n\
             | ------ | -------------: |\n\
             | step01 |         41,234 |\n\
             | step10 |              7 |\n"
        );
    }

    #[test]
    fn narrow_columns_are_three_wide_and_missing_cells_blank() {
        let text = table(&strings(&["a", "b"]), &[strings(&["x"])]);
        assert_eq!(text, "| a   |   b |\n| --- | --: |\n| x   |     |\n");
    }
}
