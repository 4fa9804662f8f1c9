//! Text for people: the aligned tables every command prints (data-quality summaries, run
//! state, publish counts, topic manifests, scheduler jobs), built one way.

/// An aligned table: the header, then one line per row; the first column left-aligned, the
/// others right-aligned, each as wide as its widest cell, separated by two spaces.
pub fn aligned(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells = row.iter().zip(&widths).enumerate().map(|(i, (cell, &width))| {
            if i == 0 {
                format!("{cell:<width$}")
            } else {
                format!("{cell:>width$}")
            }
        });
        out.push_str(cells.collect::<Vec<_>>().join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up_whatever_the_cell_widths() {
        let text = super::aligned(
            &["table", "rows"],
            vec![vec!["clients".into(), "5".into()], vec!["x".into(), "12345".into()]],
        );
        assert_eq!(text, "table     rows\nclients      5\nx        12345\n");
    }
}
