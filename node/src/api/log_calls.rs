//! `batonctl tasks logs` and `batonctl events`: a task's lines from the node
//! that owns it, and the cluster's events from this node's log.

use std::time::Duration;

use baton_proto::{EventsReply, EventsRequest, TaskLogLine, TaskLogsReply, TaskLogsRequest};
use tonic::Status;

use super::NodeContext;
use crate::runtime::LogLine;
use crate::store::Recorded;

/// Lines or events in a reply unless the reader asks for fewer.
const DEFAULT_LIMIT: u32 = 100;
/// The most a reader may ask for at once.
const MAX_LIMIT: u32 = 1_000;
/// How long the owner may take to answer for its lines.
const OWNER_TIMEOUT: Duration = Duration::from_secs(2);

fn limit(asked: u32) -> usize {
    match asked {
        0 => DEFAULT_LIMIT as usize,
        n => n.min(MAX_LIMIT) as usize,
    }
}

/// The lines task `request.name` logged on this node after the reader's
/// cursor. A cursor from another node (the task moved here) starts at the
/// first line logged after the reader's last one.
pub(crate) fn task_logs_here(context: &NodeContext, request: &TaskLogsRequest) -> TaskLogsReply {
    let same_node = request.node == context.id;
    let after = if same_node { request.after_seq } else { 0 };
    let lines = context
        .engine
        .logs()
        .read(&request.name, after, limit(request.limit))
        .into_iter()
        .filter(|l| same_node || l.at_ms > request.after_ms)
        .map(line)
        .collect();
    TaskLogsReply {
        node: context.id,
        lines,
        owner_silent: String::new(),
    }
}

/// The lines of task `request.name` from its owner, asked of it if it is
/// another node.
pub(crate) async fn task_logs(context: &NodeContext, request: TaskLogsRequest) -> Result<TaskLogsReply, Status> {
    let owner = context
        .state_machine
        .read(|s| s.tasks.get(&request.name).map(|t| t.owner))
        .ok_or_else(|| Status::not_found(format!("no task named {}; see `batonctl tasks list`", request.name)))?;
    let owner = match owner {
        None => return Ok(TaskLogsReply::default()),
        Some(owner) if owner == context.id => return Ok(task_logs_here(context, &request)),
        Some(owner) => owner,
    };
    let silent = |why: String| TaskLogsReply {
        node: owner,
        lines: Vec::new(),
        owner_silent: why,
    };
    let addr = crate::types::with_metrics(&context.raft, |m| {
        m.membership_config
            .membership()
            .get_node(&owner)
            .map(|n| n.addr.clone())
    });
    let Some(addr) = addr else {
        return Ok(silent(format!("node {owner} is not a member")));
    };
    let channel = match context.channels.channel(owner, &addr) {
        Ok(channel) => channel,
        Err(e) => return Ok(silent(e.to_string())),
    };
    let mut client = crate::raft::peer_client(channel);
    let call = client.task_logs(context.channels.request(request.clone(), Some(OWNER_TIMEOUT)));
    match tokio::time::timeout(OWNER_TIMEOUT, call).await {
        Err(_) => Ok(silent(format!("no answer within {OWNER_TIMEOUT:?}"))),
        Ok(Ok(reply)) => Ok(reply.into_inner()),
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => Err(Status::failed_precondition(format!(
            "task {}'s owner, node {owner}, runs a release that keeps no task lines; they show once it is upgraded",
            request.name
        ))),
        Ok(Err(status)) => Ok(silent(status.message().to_string())),
    }
}

/// The events this node read off its log after the reader's cursor (or the
/// newest).
pub(crate) fn events(context: &NodeContext, request: &EventsRequest) -> EventsReply {
    let log = context.state_machine.events();
    let limit = limit(request.limit);
    let (recorded, oldest) = match request.newest {
        true => (log.newest(limit), log.after(u64::MAX, u32::MAX, 0).1),
        false => log.after(request.after_index, request.after_position, limit),
    };
    EventsReply {
        events: recorded.into_iter().map(event).collect(),
        oldest_index: oldest.map_or(0, |o| o.0),
        oldest_position: oldest.map_or(0, |o| o.1),
        answered_by: context.id,
    }
}

fn line(l: LogLine) -> TaskLogLine {
    TaskLogLine {
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
