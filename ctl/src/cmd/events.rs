//! `batonctl events [--follow]`: what happened in the cluster, read off its
//! log (failovers, placements, hand-offs, drains, leaders, members, rollout
//! and upgrade steps, task changes), oldest first.

use baton_proto::{Event, EventsReply, EventsRequest};
use serde::Serialize;

use super::CmdError;
use super::logs::FOLLOW_EVERY;
use crate::cli::OutputFormat;
use crate::client::ClusterClient;
use crate::output;

/// Events asked for at once while following.
const PAGE: u32 = 1_000;

/// An event as `events --output json` prints it (one JSON object a line).
#[derive(Debug, Serialize)]
pub struct EventView {
    /// When it happened, RFC 3339 in UTC; None when the node that answered
    /// replayed its entry at start-up and the command carries no time.
    pub at: Option<String>,
    pub at_ms: Option<u64>,
    pub kind: String,
    /// The node it is about, if one.
    pub node: Option<u64>,
    /// The task or module it is about, if one.
    pub subject: Option<String>,
    pub text: String,
    /// Its log entry, and its place among the entry's events.
    pub index: u64,
    pub position: u32,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        let at_ms = (e.at_ms != 0).then_some(e.at_ms);
        EventView {
            at: at_ms.map(output::rfc3339_ms),
            at_ms,
            kind: e.kind,
            node: (e.node != 0).then_some(e.node),
            subject: (!e.subject.is_empty()).then_some(e.subject),
            text: e.text,
            index: e.index,
            position: e.position,
        }
    }
}

impl EventView {
    fn render(&self, format: OutputFormat) -> String {
        match format {
            OutputFormat::Json => serde_json::to_string(self).expect("an event serializes"),
            OutputFormat::Table => format!(
                "{:<24}  {:<16}  {}",
                self.at.as_deref().unwrap_or("(time not known)"),
                self.kind,
                output::printable(&self.text)
            ),
        }
    }
}

/// Where a reader is in the events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    index: u64,
    position: u32,
}

impl EventCursor {
    pub fn request(&self) -> EventsRequest {
        EventsRequest {
            after_index: self.index,
            after_position: self.position,
            limit: PAGE,
            newest: false,
        }
    }

    /// For a reader told nothing yet: past every entry node `reply` read
    /// events off, so that the next events are new ones, whichever node
    /// tells them. (None: the node has read none yet.)
    fn past(reply: &EventsReply) -> Option<EventCursor> {
        reply.has_told.then_some(EventCursor {
            index: reply.told_through_index,
            position: u32::MAX,
        })
    }

    /// Takes a reply: its events, and a note when the node that answered no
    /// longer keeps some events after the cursor.
    pub fn take(&mut self, reply: EventsReply) -> (Vec<EventView>, Option<String>) {
        let missing = (reply.missing_through_index, reply.missing_through_position);
        let missed = *self != EventCursor::default() && reply.some_missing && (self.index, self.position) < missing;
        let note = missed.then(|| {
            format!(
                "events after log index {} up to {} are missing: node {} no longer keeps them",
                self.index, missing.0, reply.answered_by
            )
        });
        if missed {
            // Said once: the reader goes on from what the node keeps.
            (self.index, self.position) = missing;
        }
        if let Some(last) = reply.events.last() {
            (self.index, self.position) = (last.index, last.position);
        }
        (reply.events.into_iter().map(EventView::from).collect(), note)
    }
}

pub async fn run(client: &ClusterClient, limit: u32, follow: bool, format: OutputFormat) -> Result<(), CmdError> {
    let newest = EventsRequest {
        limit,
        newest: true,
        ..EventsRequest::default()
    };
    let reply = client
        .call_with(&newest, |mut c, r| async move { c.events(r).await })
        .await?;
    // With nothing to tell yet, follow from what the node has applied (not
    // from another node's oldest).
    let mut cursor = match reply.events.is_empty() {
        true => EventCursor::past(&reply).unwrap_or_default(),
        false => EventCursor::default(),
    };
    let (events, _) = cursor.take(reply);
    for event in &events {
        println!("{}", event.render(format));
    }
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        // Page on until a reply is short: all caught up.
        loop {
            let request = cursor.request();
            let reply = client
                .call_with(&request, |mut c, r| async move { c.events(r).await })
                .await?;
            let (events, note) = cursor.take(reply);
            if let Some(note) = note {
                eprintln!("({note})");
            }
            for event in &events {
                println!("{}", event.render(format));
            }
            if events.len() < PAGE as usize {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(index: u64, position: u32, at_ms: u64) -> Event {
        Event {
            index,
            position,
            at_ms,
            kind: "failover".into(),
            node: 2,
            subject: String::new(),
            text: "node 2 lost its 3 tasks".into(),
        }
    }

    fn reply(missing: Option<(u64, u32)>, events: Vec<Event>) -> EventsReply {
        EventsReply {
            events,
            missing_through_index: missing.map_or(0, |m| m.0),
            missing_through_position: missing.map_or(0, |m| m.1),
            some_missing: missing.is_some(),
            answered_by: 1,
            told_through_index: 30,
            has_told: true,
        }
    }

    #[test]
    fn the_cursor_moves_to_the_last_event_and_notes_a_gap() {
        let mut cursor = EventCursor::default();
        let (events, note) = cursor.take(reply(None, vec![event(3, 0, 5), event(8, 1, 6)]));
        assert_eq!(events.len(), 2);
        assert_eq!(note, None);
        let request = cursor.request();
        assert_eq!((request.after_index, request.after_position), (8, 1));
        // Nothing new, nothing missed; what was pushed out before the
        // cursor is no loss.
        assert_eq!(cursor.take(reply(Some((8, 1)), vec![])).1, None);
        // The node answering now started from a snapshot at index 19.
        let (_, note) = cursor.take(reply(Some((19, u32::MAX)), vec![event(20, 0, 7)]));
        assert_eq!(
            note.as_deref(),
            Some("events after log index 8 up to 19 are missing: node 1 no longer keeps them")
        );
        assert_eq!(cursor.take(reply(Some((19, u32::MAX)), vec![])).1, None, "said once");
    }

    #[test]
    fn a_reader_told_nothing_yet_follows_from_what_was_applied() {
        let cursor = EventCursor::past(&reply(None, vec![])).unwrap();
        let request = cursor.request();
        assert_eq!((request.after_index, request.after_position), (30, u32::MAX));
        let none_yet = EventsReply {
            has_told: false,
            ..reply(None, vec![])
        };
        assert_eq!(EventCursor::past(&none_yet), None);
    }

    #[test]
    fn an_event_without_a_time_says_so() {
        let view = EventView::from(event(4, 0, 0));
        assert_eq!(view.at, None);
        assert!(view.render(OutputFormat::Table).starts_with("(time not known)"));
        let view = EventView::from(event(4, 0, 1_796_425_853_005));
        assert_eq!(
            view.render(OutputFormat::Table),
            "2026-12-04T23:10:53.005Z  failover          node 2 lost its 3 tasks"
        );
        let json: serde_json::Value = serde_json::from_str(&view.render(OutputFormat::Json)).unwrap();
        assert_eq!(json["node"], 2);
        assert_eq!(json["subject"], serde_json::Value::Null);
    }
}
