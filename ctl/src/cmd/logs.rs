//! `batonctl tasks logs NAME [--follow]`: the lines a task's module logged,
//! from the node that owns it.

use std::time::Duration;

use baton_proto::{TaskLogLine, TaskLogsReply, TaskLogsRequest};
use serde::Serialize;

use super::CmdError;
use crate::cli::OutputFormat;
use crate::client::{ClientError, ClusterClient};
use crate::output;

/// How often `--follow` asks for new lines.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// A line as `tasks logs --output json` prints it (one JSON object a line).
#[derive(Debug, Serialize)]
pub struct LineView {
    /// When it was logged, RFC 3339 in UTC (the owner's clock).
    pub at: String,
    pub at_ms: u64,
    /// The node that ran the tick.
    pub node: u64,
    pub tick: u64,
    pub epoch: u64,
    pub level: String,
    pub message: String,
}

impl LineView {
    fn new(line: TaskLogLine) -> Self {
        LineView {
            at: output::rfc3339_ms(line.at_ms),
            at_ms: line.at_ms,
            node: line.node,
            tick: line.tick,
            epoch: line.epoch,
            level: line.level,
            message: line.message,
        }
    }

    fn render(&self, format: OutputFormat) -> String {
        match format {
            OutputFormat::Json => serde_json::to_string(self).expect("a line serializes"),
            OutputFormat::Table => format!(
                "{}  node {}  tick {}  {:<5}  {}",
                self.at,
                self.node,
                self.tick,
                output::printable(&self.level),
                output::printable(&self.message)
            ),
        }
    }
}

/// Where a reader is in a task's lines, and what it last told about the
/// task's owner.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LogCursor {
    /// The node the last line came from, its number there, and the epoch of
    /// the tick that logged it.
    node: u64,
    seq: u64,
    epoch: u64,
    /// The owner as last told (None: nothing told yet), and whether it was
    /// silent.
    told: Option<(u64, bool)>,
}

impl LogCursor {
    /// The request for the lines after this cursor.
    pub fn request(&self, name: &str, limit: u32) -> TaskLogsRequest {
        TaskLogsRequest {
            name: name.to_string(),
            node: self.node,
            after_seq: self.seq,
            after_epoch: self.epoch,
            limit,
        }
    }

    /// Takes a reply: its lines to print, and a note for the reader when
    /// the owner changed, has none, or did not answer (once per change).
    pub fn take(&mut self, name: &str, reply: TaskLogsReply) -> (Vec<LineView>, Option<String>) {
        let silent = !reply.owner_silent.is_empty();
        let owner = (reply.node, silent);
        let note = match (self.told, owner) {
            (Some(before), now) if before == now => None,
            (_, (0, _)) => Some(format!(
                "task {name} has no owner yet (not placed): no lines until it runs"
            )),
            (_, (node, true)) => Some(format!(
                "task {name}'s lines are kept by its owner, node {node}, which did not answer: {}",
                reply.owner_silent
            )),
            (Some((before, _)), (node, false)) if before != 0 && before != node => {
                Some(format!("task {name} moved to node {node}: its lines from there on"))
            }
            _ => None,
        };
        self.told = Some(owner);
        if let Some(last) = reply.lines.last() {
            (self.node, self.seq, self.epoch) = (last.node, last.seq, last.epoch);
        }
        let lines = reply.lines.into_iter().map(LineView::new).collect();
        (lines, note)
    }
}

pub async fn run(
    client: &ClusterClient,
    name: String,
    limit: u32,
    follow: bool,
    format: OutputFormat,
) -> Result<(), CmdError> {
    let mut cursor = LogCursor::default();
    let mut first = true;
    loop {
        let request = cursor.request(&name, if first { limit } else { 1_000 });
        let reply = match client
            .call_with(&request, |mut c, r| async move { c.task_logs(r).await })
            .await
        {
            Ok(reply) => reply,
            Err(ClientError::Refused(status)) if status.code() == tonic::Code::NotFound && !first => {
                return Err(CmdError::NotFound(format!("task {name} was removed")));
            }
            Err(e) => return Err(e.into()),
        };
        let silent = (!reply.owner_silent.is_empty()).then(|| (reply.node, reply.owner_silent.clone()));
        let (lines, note) = cursor.take(&name, reply);
        for line in &lines {
            println!("{}", line.render(format));
        }
        if !follow {
            if let Some((node, why)) = silent {
                return Err(CmdError::Failed(format!(
                    "task {name}'s lines are kept by its owner, node {node}, which did not answer: {why}"
                )));
            }
            if let Some(note) = note.filter(|_| lines.is_empty()) {
                eprintln!("{note}");
            }
            return Ok(());
        }
        if let Some(note) = note {
            eprintln!("({note})");
        }
        first = false;
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(node: u64, seq: u64, epoch: u64) -> TaskLogLine {
        TaskLogLine {
            seq,
            at_ms: 1_796_425_853_000 + seq,
            level: "info".into(),
            tick: seq,
            epoch,
            message: format!("line {seq}"),
            node,
        }
    }

    fn reply(node: u64, lines: Vec<TaskLogLine>) -> TaskLogsReply {
        TaskLogsReply {
            node,
            lines,
            owner_silent: String::new(),
        }
    }

    #[test]
    fn the_cursor_follows_the_lines_and_says_when_the_owner_changes() {
        let mut cursor = LogCursor::default();
        let (lines, note) = cursor.take("t", reply(2, vec![line(2, 7, 1), line(2, 9, 1)]));
        assert_eq!(lines.len(), 2);
        assert_eq!(note, None, "the first owner needs no note");
        let request = cursor.request("t", 5);
        assert_eq!((request.node, request.after_seq, request.after_epoch), (2, 9, 1));

        // Nothing new: the cursor stays.
        let (lines, note) = cursor.take("t", reply(2, vec![]));
        assert!(lines.is_empty() && note.is_none());
        assert_eq!(cursor.request("t", 5).after_seq, 9);

        // The owner did not answer: told once.
        let silent = TaskLogsReply {
            owner_silent: "no answer within 2s".into(),
            ..reply(2, vec![])
        };
        let (_, note) = cursor.take("t", silent.clone());
        assert!(
            note.unwrap()
                .contains("node 2, which did not answer: no answer within 2s")
        );
        assert_eq!(cursor.take("t", silent).1, None);

        // The task moved: the old owner's last line, then the new one's.
        let (lines, note) = cursor.take("t", reply(3, vec![line(2, 10, 1), line(3, 1, 2)]));
        assert_eq!(note.as_deref(), Some("task t moved to node 3: its lines from there on"));
        assert_eq!((lines[0].node, lines[1].node), (2, 3));
        let request = cursor.request("t", 5);
        assert_eq!((request.node, request.after_seq, request.after_epoch), (3, 1, 2));

        // Not placed.
        let (_, note) = cursor.take("t", reply(0, vec![]));
        assert!(note.unwrap().starts_with("task t has no owner yet"));
    }

    #[test]
    fn lines_render_as_text_or_one_json_object() {
        let view = LineView::new(line(2, 4, 1));
        assert_eq!(
            view.render(OutputFormat::Table),
            "2026-12-04T23:10:53.004Z  node 2  tick 4  info   line 4"
        );
        let mut sly = line(2, 5, 1);
        sly.message = "ok\r\u{1b}[2Kfaked\nline".into();
        assert_eq!(
            LineView::new(sly).render(OutputFormat::Table),
            "2026-12-04T23:10:53.005Z  node 2  tick 5  info   ok\\r\\u{1b}[2Kfaked\\nline",
            "control characters are shown, not obeyed"
        );
        let json: serde_json::Value = serde_json::from_str(&view.render(OutputFormat::Json)).unwrap();
        assert_eq!(json["message"], "line 4");
        assert_eq!(json["at_ms"], 1_796_425_853_004u64);
    }
}
