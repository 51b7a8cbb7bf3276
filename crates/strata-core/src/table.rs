//! Plain-text tables for the terminal (`strata events`, `strata up`'s banner): each column as
//! wide as its widest cell, so no value, however long, pushes the columns out of line.

use std::fmt::Write as _;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table: a header row, then rows of cells; rendered with two spaces between columns.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
    indent: usize,
}

impl Table {
    /// A table with these column headers and alignments.
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Self {
            columns: columns
                .iter()
                .map(|(name, align)| ((*name).to_owned(), *align))
                .collect(),
            rows: Vec::new(),
            indent: 0,
        }
    }

    /// Every line starts with `spaces` spaces.
    #[must_use]
    pub fn indent(mut self, spaces: usize) -> Self {
        self.indent = spaces;
        self
    }

    /// Adds a row; missing cells are empty, extra ones are dropped.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        let mut row: Vec<String> = cells.into_iter().map(|c| c.to_string()).collect();
        row.resize(self.columns.len(), String::new());
        self.rows.push(row);
    }

    /// The table, one line per row, header first; no trailing blanks.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                self.rows
                    .iter()
                    .map(|row| row[i].chars().count())
                    .chain([name.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let header: Vec<String> = self.columns.iter().map(|(name, _)| name.clone()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = " ".repeat(self.indent);
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let width = widths[i];
                let _ = match self.columns[i].1 {
                    Align::Left => write!(line, "{cell:<width$}"),
                    Align::Right => write!(line, "{cell:>width$}"),
                };
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&[
            ("id", Align::Right),
            ("subject", Align::Left),
            ("n", Align::Right),
        ]);
        table.row(["7", "order.payment_failed.with.a.long.name", "5"]);
        table.row(["1234", "x", "12"]);
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        let subject = "order.payment_failed.with.a.long.name";
        assert_eq!(lines[0], format!("  id  {:<37}   n", "subject"));
        assert_eq!(lines[1], format!("   7  {subject}   5"));
        assert_eq!(lines[2], format!("1234  {:<37}  12", "x"));
        // Every column starts at the same place on every line.
        let start = |line: &str, word: &str| line.find(word).unwrap();
        assert_eq!(start(lines[0], "subject"), start(lines[1], "order"));
        assert_eq!(start(lines[1], "order"), start(lines[2], "x"));
    }
}
