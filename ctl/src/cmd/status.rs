//! `batonctl status`: the cluster at a glance.

use baton_node::api::member_probe::LOST_DATA;
use baton_proto::{MemberStatus, Stall, StatusReply, StatusRequest, TickTimeliness};
use serde::{Deserialize, Serialize};

use super::CmdError;
use crate::cli::OutputFormat;
use crate::client::{ClientError, ClusterClient};
use crate::output;

/// The cluster as `status --output json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    pub cluster_id: String,
    /// The leader's id; null while there is none.
    pub leader: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub last_applied_index: u64,
    /// The node that answered.
    pub answered_by: u64,
    pub members: Vec<MemberView>,
    pub tasks: TasksSummary,
    /// The longest a task of a lost node waits before it runs elsewhere.
    pub failover_bound_ms: u64,
    pub lease_ms: u64,
    /// What should move and has stood still for seconds; empty when all is
    /// well (at most 20 tasks listed, `tasks.overdue` counts them all).
    pub stalls: Vec<StallView>,
    /// What every member can read; 0 from a release before cluster
    /// versions.
    pub cluster_version: u32,
    /// Members whose release does not support the next cluster version
    /// while another's does: upgrading them lets the version rise.
    pub version_held_by: Vec<u64>,
    /// How on time ticks are, as the answering node saw their commits;
    /// absent from a release before it.
    pub ticks: Option<TicksView>,
}

/// Ticks committed against those the schedules ask for, over the last
/// seconds, and how late past their due times their commits were.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicksView {
    pub window_ms: u64,
    pub committed_per_second: f64,
    /// What the running interval tasks ask for (cron tasks not counted).
    pub due_per_second: f64,
    pub late_p50_ms: u64,
    pub late_p99_ms: u64,
    pub late_max_ms: u64,
}

impl From<TickTimeliness> for TicksView {
    fn from(t: TickTimeliness) -> Self {
        TicksView {
            window_ms: t.window_ms,
            committed_per_second: t.committed_per_second,
            due_per_second: t.due_per_second,
            late_p50_ms: t.late_p50_ms,
            late_p99_ms: t.late_p99_ms,
            late_max_ms: t.late_max_ms,
        }
    }
}

impl TicksView {
    /// Below this share of the demand, over a window this long, the
    /// cluster is behind its schedules.
    const BEHIND_SHARE: f64 = 0.95;
    const BEHIND_WINDOW_MS: u64 = 5_000;

    /// `status`'s line for it.
    fn line(&self) -> String {
        let mut line = format!(
            "ticks: {:.0}/s committed of {:.0}/s due (last {:.0} s); late p50 {} ms, p99 {} ms, max {} ms",
            self.committed_per_second,
            self.due_per_second,
            self.window_ms as f64 / 1000.0,
            self.late_p50_ms,
            self.late_p99_ms,
            self.late_max_ms
        );
        if self.window_ms >= Self::BEHIND_WINDOW_MS
            && self.due_per_second >= 1.0
            && self.committed_per_second < Self::BEHIND_SHARE * self.due_per_second
        {
            line.push_str(&format!(
                "\nBEHIND: the cluster commits {:.0} % of the ticks its tasks ask for",
                100.0 * self.committed_per_second / self.due_per_second
            ));
        }
        line.push('\n');
        line
    }
}

/// Something that should move and does not.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StallView {
    /// commits, apply, replication or task.
    pub kind: String,
    /// The member's id or the task's name; empty for commits and apply.
    pub subject: String,
    /// How long it has stood still (a task: how late it is).
    pub for_ms: u64,
    pub summary: String,
}

impl From<Stall> for StallView {
    fn from(s: Stall) -> Self {
        StallView {
            kind: s.kind,
            subject: s.subject,
            for_ms: s.for_ms,
            summary: s.summary,
        }
    }
}

/// How the cluster's tasks are doing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TasksSummary {
    pub running: u64,
    pub paused: u64,
    /// Names of the tasks marked failed.
    pub failed: Vec<String>,
    /// Running tasks whose next tick is long overdue.
    pub overdue: u64,
}

/// One member, as `status` and `nodes list` print it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberView {
    pub id: u64,
    pub addr: String,
    /// voter or worker.
    pub role: String,
    /// From the leader's leases: up, suspect, down or draining (unreachable
    /// when no leader answered); lagging when its replication stands still;
    /// lost-data when it answers from a new data_dir (`nodes replace`).
    pub state: String,
    /// Running tasks it owns.
    pub tasks: u64,
    /// Drained by an operator.
    pub drained: bool,
    pub version: String,
    /// The binary it runs: a hash from its heart's store, "installed", or
    /// empty without a heart.
    pub binary: String,
    /// The highest cluster version its release supports; 0 when unknown.
    pub max_cluster_version: u32,
    pub raft_state: String,
    pub last_contact_ms: Option<u64>,
    pub matched_index: Option<u64>,
}

impl From<MemberStatus> for MemberView {
    fn from(m: MemberStatus) -> Self {
        MemberView {
            id: m.id,
            addr: m.addr,
            role: m.role,
            state: m.state,
            tasks: m.tasks,
            drained: m.drained,
            version: m.version,
            binary: m.binary,
            max_cluster_version: m.max_cluster_version,
            raft_state: m.raft_state,
            last_contact_ms: m.last_contact_ms,
            matched_index: m.matched_index,
        }
    }
}

impl From<StatusReply> for StatusView {
    fn from(s: StatusReply) -> Self {
        StatusView {
            cluster_id: s.cluster_id,
            leader: (s.leader_id != 0).then_some(s.leader_id),
            term: s.term,
            commit_index: s.commit_index,
            last_applied_index: s.last_applied_index,
            answered_by: s.answered_by,
            members: s.members.into_iter().map(MemberView::from).collect(),
            tasks: TasksSummary {
                running: s.tasks_running,
                paused: s.tasks_paused,
                failed: s.failed_tasks,
                overdue: s.overdue_tasks,
            },
            failover_bound_ms: s.failover_bound_ms,
            lease_ms: s.lease_ms,
            stalls: s.stalls.into_iter().map(StallView::from).collect(),
            cluster_version: s.cluster_version,
            version_held_by: s.version_held_by,
            ticks: s.ticks.map(TicksView::from),
        }
    }
}

/// Asks the cluster for its status.
pub async fn fetch(client: &ClusterClient) -> Result<StatusView, ClientError> {
    let reply = client
        .call(|mut c| async move { c.status(StatusRequest {}).await })
        .await?;
    Ok(reply.into())
}

pub async fn run(client: &ClusterClient, format: OutputFormat) -> Result<(), CmdError> {
    let view = fetch(client).await?;
    output::print(format, &view, || render(&view));
    Ok(())
}

/// `status` for people.
pub fn render(view: &StatusView) -> String {
    let leader = view.leader.map_or("none".to_string(), |l| l.to_string());
    let failed = match view.tasks.failed.as_slice() {
        [] => String::new(),
        names => format!("; FAILED: {} (see `batonctl tasks show NAME`)", names.join(", ")),
    };
    let overdue = match view.tasks.overdue {
        0 => String::new(),
        n => format!(" ({n} overdue)"),
    };
    let mut out = format!(
        "cluster {}  leader {}  term {}  commit {}  (answered by node {})\ntasks: {} running{}, {} paused, {} failed{}\nfailover bound: {} ms (lease {} ms)\n",
        view.cluster_id,
        leader,
        view.term,
        view.commit_index,
        view.answered_by,
        view.tasks.running,
        overdue,
        view.tasks.paused,
        view.tasks.failed.len(),
        failed,
        view.failover_bound_ms,
        view.lease_ms,
    );
    out.push_str(&cluster_version_line(view));
    if let Some(ticks) = &view.ticks {
        out.push_str(&ticks.line());
    }
    if !view.stalls.is_empty() {
        out.push_str("\nSTALLED:\n");
        for stall in &view.stalls {
            out.push_str(&format!("  {}\n", stall.summary));
        }
        let listed = view.stalls.iter().filter(|s| s.kind == "task").count() as u64;
        if view.tasks.overdue > listed {
            out.push_str(&format!(
                "  and {} more overdue tasks (see `batonctl tasks list`)\n",
                view.tasks.overdue - listed
            ));
        }
    }
    out.push('\n');
    out.push_str(&members_table(&view.members));
    out
}

/// The cluster version, and who holds it back.
fn cluster_version_line(view: &StatusView) -> String {
    let held = view.version_held_by.iter().map(|id| {
        match view.members.iter().find(|m| m.id == *id).map(|m| m.max_cluster_version) {
            Some(max) if max > 0 && max <= view.cluster_version => format!("node {id} (supports up to {max})"),
            // Its release would do, but the leader has not heard it report.
            _ => format!("node {id} (not up)"),
        }
    });
    match (view.cluster_version, view.version_held_by.is_empty()) {
        (0, _) => "cluster version: - (the answering node's release predates cluster versions)\n".into(),
        (version, true) => format!("cluster version: {version}\n"),
        (version, false) => format!(
            "cluster version: {version}, held back by {}: upgrade them and it rises by itself\n",
            held.collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The members as a table.
pub fn members_table(members: &[MemberView]) -> String {
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.addr.clone(),
                m.role.clone(),
                m.state.clone(),
                m.tasks.to_string(),
                match (m.version.as_str(), m.binary.as_str()) {
                    ("", _) => "-".into(),
                    (version, "" | "installed") => version.to_string(),
                    (version, hash) => format!("{version} ({})", &hash[..hash.len().min(12)]),
                },
                if m.raft_state.is_empty() {
                    "-".into()
                } else {
                    m.raft_state.clone()
                },
                m.matched_index.map_or("-".into(), |i| i.to_string()),
                m.last_contact_ms.map_or("never".into(), |ms| format!("{ms}ms ago")),
            ]
        })
        .collect();
    let mut out = output::table(
        &[
            "ID",
            "ADDR",
            "ROLE",
            "STATE",
            "TASKS",
            "VERSION",
            "RAFT",
            "MATCHED",
            "LAST CONTACT",
        ],
        &rows,
    );
    for m in members.iter().filter(|m| m.state == LOST_DATA) {
        out.push_str(&format!(
            "node {} runs on a new data_dir (its disk was lost or replaced) and takes no part until it is \
             replaced: run `batonctl nodes replace {}`\n",
            m.id, m.id
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(stalls: Vec<StallView>, overdue: u64) -> StatusView {
        StatusView {
            cluster_id: "dev-1".into(),
            leader: Some(1),
            term: 2,
            commit_index: 49,
            last_applied_index: 49,
            answered_by: 1,
            members: vec![],
            tasks: TasksSummary {
                running: 9,
                paused: 0,
                failed: vec![],
                overdue,
            },
            failover_bound_ms: 1_950,
            lease_ms: 1_000,
            stalls,
            cluster_version: 2,
            version_held_by: vec![],
            ticks: None,
        }
    }

    fn ticks(committed: f64, due: f64, window_ms: u64) -> TicksView {
        TicksView {
            window_ms,
            committed_per_second: committed,
            due_per_second: due,
            late_p50_ms: 3,
            late_p99_ms: 41,
            late_max_ms: 120,
        }
    }

    #[test]
    fn tick_timeliness_is_shown_and_a_cluster_behind_its_schedules_says_so() {
        let mut status = view(vec![], 0);
        status.ticks = Some(ticks(9_990.0, 10_000.0, 10_000));
        let text = render(&status);
        assert!(
            text.contains(
                "\nticks: 9990/s committed of 10000/s due (last 10 s); late p50 3 ms, p99 41 ms, max 120 ms\n"
            ),
            "{text}"
        );
        assert!(!text.contains("BEHIND"), "{text}");
        status.ticks = Some(ticks(6_278.0, 10_000.0, 10_000));
        let text = render(&status);
        assert!(
            text.contains("\nBEHIND: the cluster commits 63 % of the ticks its tasks ask for\n"),
            "{text}"
        );
        // Just after start the window is too short to judge.
        status.ticks = Some(ticks(10.0, 10_000.0, 1_000));
        assert!(!render(&status).contains("BEHIND"));
    }

    fn stall(kind: &str, summary: &str) -> StallView {
        StallView {
            kind: kind.into(),
            subject: String::new(),
            for_ms: 6_000,
            summary: summary.into(),
        }
    }

    #[test]
    fn a_healthy_cluster_shows_no_stall_section() {
        let text = render(&view(vec![], 0));
        assert!(text.contains("tasks: 9 running, 0 paused, 0 failed\n"), "{text}");
        assert!(!text.contains("STALLED"), "{text}");
    }

    #[test]
    fn stalls_are_listed_with_the_overdue_count_and_what_was_not_listed() {
        let stalls = vec![
            stall("commits", "commits stalled for 6.0 s: ..."),
            stall("task", "task a (running on node 2) is 9.0 s past its next tick"),
        ];
        let text = render(&view(stalls, 7));
        assert!(text.contains("tasks: 9 running (7 overdue), 0 paused"), "{text}");
        assert!(
            text.contains(
                "\nSTALLED:\n  commits stalled for 6.0 s: ...\n  task a (running on node 2) is 9.0 s past its next \
                 tick\n  and 6 more overdue tasks"
            ),
            "{text}"
        );
    }

    fn member(id: u64, state: &str) -> MemberView {
        MemberView {
            id,
            addr: format!("127.0.0.1:700{id}"),
            role: "voter".into(),
            state: state.into(),
            tasks: 0,
            drained: false,
            version: "0.2.0".into(),
            binary: String::new(),
            max_cluster_version: 2,
            raft_state: "learner".into(),
            last_contact_ms: Some(5),
            matched_index: None,
        }
    }

    #[test]
    fn the_cluster_version_is_shown_with_the_members_that_hold_it_back() {
        let mut status = view(vec![], 0);
        assert!(
            render(&status).contains("\ncluster version: 2\n"),
            "{}",
            render(&status)
        );
        let mut old = member(3, "up");
        old.max_cluster_version = 1;
        status.members = vec![member(1, "up"), member(2, "down"), old];
        status.cluster_version = 1;
        status.version_held_by = vec![2, 3];
        let text = render(&status);
        assert!(
            text.contains(
                "cluster version: 1, held back by node 2 (not up), node 3 (supports up to 1): upgrade \
                 them"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_member_that_lost_its_data_is_shown_with_the_command_that_brings_it_back() {
        let text = members_table(&[member(1, "up"), member(3, LOST_DATA)]);
        assert!(text.contains("lost-data"), "{text}");
        assert!(text.contains("run `batonctl nodes replace 3`"), "{text}");
        assert!(!text.contains("nodes replace 1"), "{text}");
    }
}
