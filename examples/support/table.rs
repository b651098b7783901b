//! A table of text cells, printed as aligned columns or as markdown: the
//! first `text_columns` columns left-aligned (names), the others
//! right-aligned (figures).

use std::fmt::Write as _;

/// Prints `rows` under `headers`: as a markdown table with `markdown`,
/// else as columns two spaces apart, each as wide as its widest cell.
pub fn print<R: AsRef<[String]>>(
    headers: &[String],
    rows: &[R],
    text_columns: usize,
    markdown: bool,
) {
    if markdown {
        println!("| {} |", headers.join(" | "));
        println!(
            "|{}{}",
            "---|".repeat(text_columns),
            "---:|".repeat(headers.len() - text_columns)
        );
        for row in rows {
            println!("| {} |", row.as_ref().join(" | "));
        }
        return;
    }
    let widths: Vec<usize> = (0..headers.len())
        .map(|c| {
            rows.iter()
                .map(|r| r.as_ref()[c].chars().count())
                .chain([headers[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (c, cell) in cells.iter().enumerate() {
            let pad = " ".repeat(widths[c] - cell.chars().count());
            let gap = if c == 0 { "" } else { "  " };
            if c < text_columns {
                let _ = write!(out, "{gap}{cell}{pad}");
            } else {
                let _ = write!(out, "{gap}{pad}{cell}");
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers);
    for row in rows {
        line(row.as_ref());
    }
}
