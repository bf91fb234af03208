//! `batonctl tasks logs` and `batonctl events`: a task's lines from the node
//! that owns it, and the cluster's events from this node's log.

use std::time::Duration;

use baton_proto::{EventsReply, EventsRequest, TaskLogLine, TaskLogsReply, TaskLogsRequest};
use tonic::Status;

use super::NodeContext;
use crate::runtime::LogLine;
use crate::store::Recorded;
use crate::types::NodeId;

/// Lines or events in a reply unless the reader asks for fewer.
const DEFAULT_LIMIT: u32 = 100;
/// The most a reader may ask for at once.
const MAX_LIMIT: u32 = 1_000;
/// How long the owner may take to answer for its lines.
const OWNER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a task's earlier owner may take: it is asked at every look
/// until the new owner logs, and may be gone.
const EARLIER_OWNER_TIMEOUT: Duration = Duration::from_millis(300);

fn limit(asked: u32) -> usize {
    match asked {
        0 => DEFAULT_LIMIT as usize,
        n => n.min(MAX_LIMIT) as usize,
    }
}

/// The lines task `request.name` logged on this node after the reader's
/// cursor: after its line number if the cursor is from this node, else
/// those of a later epoch than the cursor's (the task moved here since).
pub(crate) fn task_logs_here(context: &NodeContext, request: &TaskLogsRequest) -> TaskLogsReply {
    let same_node = request.node == context.id;
    let after = if same_node { request.after_seq } else { 0 };
    let lines = context
        .engine
        .logs()
        .read(&request.name, after, limit(request.limit))
        .into_iter()
        .filter(|l| same_node || l.epoch > request.after_epoch)
        .map(|l| line(context.id, l))
        .collect();
    TaskLogsReply {
        node: context.id,
        lines,
        owner_silent: String::new(),
    }
}

/// Task `request.name`'s lines from node `node`, asked of it if it is
/// another node; why not, if it could not be asked.
async fn lines_on(
    context: &NodeContext,
    node: NodeId,
    request: &TaskLogsRequest,
    timeout: Duration,
) -> Result<TaskLogsReply, String> {
    if node == context.id {
        return Ok(task_logs_here(context, request));
    }
    let addr = crate::types::with_metrics(&context.raft, |m| {
        m.membership_config.membership().get_node(&node).map(|n| n.addr.clone())
    })
    .ok_or_else(|| format!("node {node} is not a member"))?;
    let channel = context.channels.channel(node, &addr).map_err(|e| e.to_string())?;
    let mut client = crate::raft::peer_client(channel);
    let call = client.task_logs(context.channels.request(request.clone(), Some(timeout)));
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(Ok(reply)) => Ok(reply.into_inner()),
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
            Err("it runs a release that keeps no task lines; they show once it is upgraded".to_string())
        }
        Ok(Err(status)) => Err(status.message().to_string()),
    }
}

/// The lines of task `request.name` after the reader's cursor, from the
/// node that owns it. When the task moved since the reader's last line, the
/// lines its node logged after that line come first (a tick in flight at the
/// move logs on the old owner), when that node can still be asked.
pub(crate) async fn task_logs(context: &NodeContext, request: TaskLogsRequest) -> Result<TaskLogsReply, Status> {
    let owner = context
        .state_machine
        .read(|s| s.tasks.get(&request.name).map(|t| t.owner))
        .ok_or_else(|| Status::not_found(format!("no task named {}; see `batonctl tasks list`", request.name)))?;
    let mut lines = Vec::new();
    if request.node != 0 && owner != Some(request.node) {
        // A node gone since took its lines with it.
        if let Ok(earlier) = lines_on(context, request.node, &request, EARLIER_OWNER_TIMEOUT).await {
            lines = earlier.lines;
        }
    }
    let Some(owner) = owner else {
        return Ok(TaskLogsReply {
            node: 0,
            lines,
            owner_silent: String::new(),
        });
    };
    match lines_on(context, owner, &request, OWNER_TIMEOUT).await {
        Ok(reply) => {
            lines.extend(reply.lines);
            Ok(TaskLogsReply {
                node: owner,
                lines,
                owner_silent: String::new(),
            })
        }
        Err(why) => Ok(TaskLogsReply {
            node: owner,
            lines,
            owner_silent: why,
        }),
    }
}

/// The events this node read off its log after the reader's cursor (or the
/// newest).
pub(crate) fn events(context: &NodeContext, request: &EventsRequest) -> EventsReply {
    let log = context.state_machine.events();
    let limit = limit(request.limit);
    let page = match request.newest {
        true => log.newest(limit),
        false => log.after(request.after_index, request.after_position, limit),
    };
    let missing = page.missing_through.unwrap_or_default();
    EventsReply {
        events: page.events.into_iter().map(event).collect(),
        missing_through_index: missing.0,
        missing_through_position: missing.1,
        some_missing: page.missing_through.is_some(),
        answered_by: context.id,
        told_through_index: page.told_through.unwrap_or_default(),
        has_told: page.told_through.is_some(),
    }
}

fn line(node: NodeId, l: LogLine) -> TaskLogLine {
    TaskLogLine {
        node,
        seq: l.seq,
        at_ms: l.at_ms,
        level: l.level.name().to_string(),
        tick: l.tick,
        epoch: l.epoch,
        message: l.message,
    }
}

fn event(r: Recorded) -> baton_proto::Event {
    baton_proto::Event {
        index: r.index,
        position: r.position,
        at_ms: r.event.at_ms.unwrap_or(0),
        kind: r.event.kind.name().to_string(),
        node: r.event.node.unwrap_or(0),
        subject: r.event.subject,
        text: r.event.text,
    }
}
