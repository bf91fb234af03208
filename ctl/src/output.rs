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

/// A time in milliseconds since the Unix epoch as RFC 3339, in UTC, to
/// the millisecond (`2026-12-04T23:10:53.123Z`).
pub fn rfc3339_ms(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
        .map_or_else(
            || format!("{ms} ms after 1970"),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`), so that
/// what a task or a module wrote cannot move the cursor, clear the screen
/// or fake a line of its own.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| match c {
            c if c.is_control() => c.escape_debug().to_string(),
            c => c.to_string(),
        })
        .collect()
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
    use super::{rfc3339_ms, table};

    #[test]
    fn times_are_rfc3339_in_utc_to_the_millisecond() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_796_425_853_123), "2026-12-04T23:10:53.123Z");
        assert_eq!(rfc3339_ms(u64::MAX), format!("{} ms after 1970", u64::MAX));
    }

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let out = table(
            &["ID", "ADDR"],
            &[vec!["1".into(), "127.0.0.1:7001".into()], vec!["10".into(), "x".into()]],
        );
        assert_eq!(out, "ID  ADDR\n1   127.0.0.1:7001\n10  x\n");
    }
}
