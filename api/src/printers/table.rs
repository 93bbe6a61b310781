//! Column layout as kubectl prints it: Go's `text/tabwriter` with minwidth 6 and padding 3 for
//! `get` tables, and a general elastic-tabstop writer (padding 2) for `describe`.

/// A `get` table: a header row and data rows, every row with the same number of cells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// kubectl's `get` tabwriter settings.
const MIN_WIDTH: usize = 6;
const PADDING: usize = 3;

fn text_width(s: &str) -> usize {
    s.chars().count()
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Column widths (cell width including padding); the last column is never padded.
    pub fn widths(&self, with_header: bool) -> Widths {
        let mut widths = Widths::default();
        if with_header {
            widths.fit(&self.header);
        }
        for row in &self.rows {
            widths.fit(row);
        }
        widths
    }

    /// Renders the table, one line per row, each ending in a newline.
    pub fn render(&self, with_header: bool) -> String {
        let mut widths = self.widths(with_header);
        let mut out = String::new();
        if with_header {
            out.push_str(&widths.line(&self.header));
        }
        for row in &self.rows {
            out.push_str(&widths.line(row));
        }
        out
    }
}

/// Remembered column widths, so that rows printed later (watch events) line up with the table
/// printed first, widening a column only when a new cell does not fit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Widths(Vec<usize>);

impl Widths {
    /// Widens the columns to fit `row` (all cells but the last are padded).
    pub fn fit(&mut self, row: &[String]) {
        let padded = row.len().saturating_sub(1);
        if self.0.len() < padded {
            self.0.resize(padded, MIN_WIDTH);
        }
        for (i, cell) in row.iter().take(padded).enumerate() {
            self.0[i] = self.0[i].max(text_width(cell) + PADDING);
        }
    }

    /// Formats one row with these widths, widening them first if the row needs it.
    pub fn line(&mut self, row: &[String]) -> String {
        self.fit(row);
        let mut out = String::new();
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let pad = self.0[i] - text_width(cell);
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
        out
    }
}

/// Go's `text/tabwriter` semantics (left-aligned, space padding): cells end with `\t`; the text
/// after the last tab of a line is not part of any column. A column block is a run of adjacent
/// lines that all have a cell in that column, and it is aligned on its own, which is what gives
/// `kubectl describe` its nested alignment.
pub fn elastic(text: &str, min_width: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_inclusive('\n')
        .map(|l| l.strip_suffix('\n').unwrap_or(l).split('\t').collect())
        .collect();
    let ends_with_newline = text.ends_with('\n');
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(
        &lines,
        0,
        lines.len(),
        &mut widths,
        min_width,
        padding,
        &mut out,
    );
    if !ends_with_newline && out.ends_with('\n') {
        out.pop();
    }
    out
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    min_width: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        // A line with a cell in this column (a tab-terminated cell) starts a block.
        if column >= lines[this].len() - 1 {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = min_width;
        while this < line1 && column < lines[this].len() - 1 {
            width = width.max(text_width(lines[this][column]) + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, min_width, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j < widths.len() && j + 1 < line.len() {
                let pad = widths[j].saturating_sub(text_width(cell));
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn columns_are_three_spaces_apart_and_the_last_is_not_padded() {
        let mut t = Table::new(["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
        t.rows.push(row(&["mi-pod", "1/1", "Running", "0", "84m"]));
        assert_eq!(
            t.render(true),
            "NAME     READY   STATUS    RESTARTS   AGE\n\
             mi-pod   1/1     Running   0          84m\n"
        );
    }

    #[test]
    fn narrow_columns_get_kubectls_minimum_width() {
        let mut t = Table::new(["A", "B"]);
        t.rows.push(row(&["x", "y"]));
        assert_eq!(t.render(true), "A     B\nx     y\n");
    }

    #[test]
    fn later_rows_keep_the_first_tables_widths_and_widen_when_needed() {
        let mut t = Table::new(["NAME", "STATUS", "AGE"]);
        t.rows.push(row(&["a", "Running", "1s"]));
        let mut w = t.widths(true);
        assert_eq!(
            w.line(&row(&["b", "Pending", "0s"])),
            "b      Pending   0s\n"
        );
        assert_eq!(
            w.line(&row(&["c", "ContainerCreating", "0s"])),
            "c      ContainerCreating   0s\n"
        );
    }

    #[test]
    fn elastic_blocks_align_separately_like_go_tabwriter() {
        let text = "Name:\tmi-pod\nNamespace:\tdefault\nContainers:\n  c:\n    Image:\tnginx\n    Restart Count:\t0\n";
        assert_eq!(
            elastic(text, 0, 2),
            "Name:       mi-pod\nNamespace:  default\nContainers:\n  c:\n    Image:          nginx\n    Restart Count:  0\n"
        );
    }
}
