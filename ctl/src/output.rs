//! Printing results: aligned tables for people, JSON for scripts.

use serde::Serialize;

use crate::cli::OutputFormat;

/// Prints `value` as pretty JSON, or `table()` for the table format.
pub fn print<T: Serialize>(format: OutputFormat, value: &T, table: impl FnOnce() -> String) {
    match format {
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(value).expect("output serializes"));
        }
        OutputFormat::Table => print!("{}", table()),
    }
}

/// Renders rows under a header with columns padded to fit.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let out = table(
            &["ID", "ADDR"],
            &[vec!["1".into(), "127.0.0.1:7001".into()], vec!["10".into(), "x".into()]],
        );
        assert_eq!(out, "ID  ADDR\n1   127.0.0.1:7001\n10  x\n");
    }
}
