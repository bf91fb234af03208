//! The status page's views, each the part of a page that live updates
//! replace, rendered from plain data: the replies `batonctl` shows (so the
//! page and the CLI never disagree) and the task table's rows. Pure
//! functions, tested here without a node.

use std::fmt::Write;

use baton_proto::{
    ListModulesReply, MemberStatus, RolloutInfo, RolloutStatusReply, StatusReply, TaskInfo, TaskLogsReply,
    UpgradeStatusReply,
};

use super::html::{escape, step_button, time, time_tag};
use super::task_rows::{Mark, TaskFilter, TaskPage, TaskRow};
use crate::state::history::TickRecord;

/// What every view needs besides its data.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub now_ms: u64,
    /// The reader may take manual steps (signed in).
    pub can_act: bool,
    /// The cluster runs at a version that knows "run now".
    pub run_now: bool,
    /// This page's own address, for the steps to come back to.
    pub back: &'a str,
}

fn strip_html(marks: &[Mark]) -> String {
    let mut out = String::from("<span class=\"strip\">");
    for mark in marks {
        let _ = write!(out, "<i class=\"{}\"></i>", mark.class());
    }
    out.push_str("</span>");
    out
}

fn status_cell(status: &str) -> String {
    format!("<span class=\"{0}\">{0}</span>", escape(status))
}

fn owner_cell(owner: Option<u64>) -> String {
    match owner {
        Some(id) => format!("<a href=\"/tasks?owner={id}\">node {id}</a>"),
        None => "<span class=\"muted\">none</span>".into(),
    }
}

/// The overview: leader, the figures an operator looks at first, members,
/// live rollouts and the node upgrade.
pub fn overview(
    status: &StatusReply,
    rollouts: &RolloutStatusReply,
    upgrade: &UpgradeStatusReply,
    cx: Context<'_>,
) -> String {
    let mut out = String::new();
    let leader = match status.leader_id {
        0 => "<span class=\"down\">none known</span>".to_string(),
        id => format!("node {id}"),
    };
    let ticks = status.ticks.unwrap_or_default();
    let failed = status.failed_tasks.len();
    let _ = write!(
        out,
        "<h1>Overview</h1><div class=\"cards\">\
         <div class=\"card\">leader<b id=\"leader\">{leader}</b>term {term}</div>\
         <div class=\"card\">tasks running<b id=\"tasks-running\">{running}</b>{paused} paused</div>\
         <div class=\"card\">failed tasks<b id=\"tasks-failed\" class=\"{failed_class}\">{failed}</b>\
           <a href=\"/tasks?status=failed\">see them</a></div>\
         <div class=\"card\">ticks per minute<b id=\"ticks-per-minute\">{per_minute:.0}</b>of {due:.0} due</div>\
         <div class=\"card\">lateness p99<b>{p99} ms</b>p50 {p50} ms, max {max} ms</div>\
         <div class=\"card\">overdue tasks<b>{overdue}</b>failover bound {bound} ms</div>\
         <div class=\"card\">cluster version<b>{version}</b>commit index {commit}</div></div>",
        term = status.term,
        running = status.tasks_running,
        paused = status.tasks_paused,
        failed_class = if failed > 0 { "failed" } else { "" },
        per_minute = ticks.committed_per_second * 60.0,
        due = ticks.due_per_second * 60.0,
        p99 = ticks.late_p99_ms,
        p50 = ticks.late_p50_ms,
        max = ticks.late_max_ms,
        overdue = status.overdue_tasks,
        bound = status.failover_bound_ms,
        version = status.cluster_version,
        commit = status.commit_index,
    );
    if status.leader_id != status.answered_by && status.leader_id != 0 {
        let _ = write!(
            out,
            "<p class=\"muted\">Node {} answers here; members' states are what it can probe. The leader, node {}, \
             sees their leases, and takes manual steps.</p>",
            status.answered_by, status.leader_id
        );
    }
    out.push_str("<h2>Members</h2>");
    out.push_str(&members(&status.members, cx));
    let live: Vec<&RolloutInfo> = rollouts
        .rollouts
        .iter()
        .filter(|r| matches!(r.state.as_str(), "running" | "paused" | "halted"))
        .collect();
    out.push_str("<h2>Live rollouts</h2>");
    match live.is_empty() {
        true => out.push_str("<p class=\"muted\">None.</p>"),
        false => out.push_str(&rollout_table(&live, cx)),
    }
    if upgrade.exists && matches!(upgrade.state.as_str(), "running" | "paused" | "halted") {
        out.push_str("<h2>Node upgrade</h2>");
        out.push_str(&upgrade_section(upgrade, cx));
    }
    if failed > 0 {
        out.push_str("<h2>Failed tasks</h2><ul>");
        for name in status.failed_tasks.iter().take(20) {
            let _ = write!(out, "<li><a href=\"/tasks/{0}\">{0}</a></li>", escape(name));
        }
        out.push_str("</ul>");
    }
    out
}

/// The members' table, with drain and undrain for a signed-in reader.
pub fn members(members: &[MemberStatus], cx: Context<'_>) -> String {
    let mut out = String::from(
        "<table id=\"members\"><tr><th>node</th><th>address</th><th>role</th><th>state</th><th>version</th>\
         <th>binary</th><th class=\"num\">tasks</th><th>last heard</th><th>raft</th>",
    );
    if cx.can_act {
        out.push_str("<th>steps</th>");
    }
    out.push_str("</tr>");
    for m in members {
        let binary = match m.binary.len() {
            0 => "<span class=\"muted\">?</span>".to_string(),
            n if n > 12 => escape(&m.binary[..12]),
            _ => escape(&m.binary),
        };
        // In whole seconds, so that a live page changes when something
        // does, not every time it is rendered.
        let heard = match m.last_contact_ms {
            Some(0..1_000) => "within 1 s".to_string(),
            Some(ms) => format!("{} s ago", ms / 1_000),
            None => "<span class=\"muted\">never</span>".into(),
        };
        let state = match m.drained && m.state != "draining" {
            true => format!("{} (drained)", m.state),
            false => m.state.clone(),
        };
        let _ = write!(
            out,
            "<tr data-node=\"{id}\"><td>{id}</td><td>{addr}</td><td>{role}</td><td>{state}</td><td>{version}</td>\
             <td>{binary}</td><td class=\"num\"><a href=\"/tasks?owner={id}&amp;status=running\">{tasks}</a></td><td>{heard}</td>\
             <td>{raft}</td>",
            id = m.id,
            addr = escape(&m.addr),
            role = escape(&m.role),
            state = status_cell(&state),
            version = escape(&m.version),
            tasks = m.tasks,
            raft = escape(&m.raft_state),
        );
        if cx.can_act {
            let id = m.id.to_string();
            let button = match m.drained {
                true => step_button("Undrain", "undrain", &[("node", &id)], cx.back),
                false => step_button("Drain", "drain", &[("node", &id)], cx.back),
            };
            let _ = write!(out, "<td>{button}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

/// The nodes page.
pub fn nodes(status: &StatusReply, cx: Context<'_>) -> String {
    let mut out = String::from("<h1>Nodes</h1>");
    out.push_str(&members(&status.members, cx));
    if !status.stalls.is_empty() {
        out.push_str("<h2>Stalls</h2><table><tr><th>what</th><th>since</th></tr>");
        for stall in &status.stalls {
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"num\">{} ms</td></tr>",
                escape(&stall.summary),
                stall.for_ms
            );
        }
        out.push_str("</table>");
    }
    if !status.version_held_by.is_empty() {
        let _ = write!(
            out,
            "<p>The cluster version is held at {} by nodes {:?}, whose release supports no higher.</p>",
            status.cluster_version, status.version_held_by
        );
    }
    out
}

fn rollout_table(rollouts: &[&RolloutInfo], cx: Context<'_>) -> String {
    let mut out = String::from(
        "<table id=\"rollouts\"><tr><th>module</th><th>versions</th><th>state</th><th>progress</th>\
         <th>this step: new ok / failed</th><th>old ok / failed</th><th>started</th>",
    );
    if cx.can_act {
        out.push_str("<th>steps</th>");
    }
    out.push_str("</tr>");
    for r in rollouts {
        let total = r.eligible.len().max(1);
        let done = r.switched.len().min(total);
        let state = match r.reason.is_empty() {
            true => status_cell(&r.state),
            false => format!(
                "{} <span class=\"muted\">{}</span>",
                status_cell(&r.state),
                escape(&r.reason)
            ),
        };
        let _ = write!(
            out,
            "<tr data-module=\"{module}\"><td>{module}</td><td>v{from} → v{to}</td><td>{state}</td>\
             <td><span class=\"bar\"><span style=\"width:{pct}%\"></span></span> {done} of {total} nodes</td>\
             <td class=\"num\">{new_ok} / {new_failed}</td><td class=\"num\">{old_ok} / {old_failed}</td>\
             <td>{started}</td>",
            module = escape(&r.module),
            from = r.from_version,
            to = r.to_version,
            pct = done * 100 / total,
            new_ok = r.new_ok,
            new_failed = r.new_failed,
            old_ok = r.old_ok,
            old_failed = r.old_failed,
            started = time_tag(r.started_at_ms, cx.now_ms),
        );
        if cx.can_act {
            out.push_str("<td>");
            let fields = [("module", r.module.as_str())];
            match r.state.as_str() {
                "running" => out.push_str(&step_button("Pause", "pause-rollout", &fields, cx.back)),
                "paused" | "halted" => out.push_str(&step_button("Resume", "resume-rollout", &fields, cx.back)),
                _ => {}
            }
            if matches!(r.state.as_str(), "running" | "paused" | "halted") {
                out.push_str(&step_button("Abort", "abort-rollout", &fields, cx.back));
            }
            out.push_str("</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

fn upgrade_section(upgrade: &UpgradeStatusReply, cx: Context<'_>) -> String {
    let mut out = format!(
        "<p>To baton-node {} ({}): {}{}</p><table id=\"upgrade\"><tr><th>node</th><th>phase</th><th>binary</th>\
         <th>version</th></tr>",
        escape(&upgrade.version),
        escape(upgrade.hash.get(..12).unwrap_or(&upgrade.hash)),
        status_cell(&upgrade.state),
        match upgrade.reason.is_empty() {
            true => String::new(),
            false => format!(": {}", escape(&upgrade.reason)),
        }
    );
    for node in &upgrade.nodes {
        let phase = match node.reason.is_empty() {
            true => escape(&node.phase),
            false => format!("{} ({})", escape(&node.phase), escape(&node.reason)),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{phase}</td><td>{}</td><td>{}</td></tr>",
            node.id,
            escape(node.binary.get(..12).unwrap_or(&node.binary)),
            escape(&node.version)
        );
    }
    out.push_str("</table>");
    let live = matches!(upgrade.state.as_str(), "running" | "paused" | "halted");
    if cx.can_act && live {
        match upgrade.state.as_str() {
            "running" => out.push_str(&step_button("Pause the upgrade", "pause-upgrade", &[], cx.back)),
            _ => out.push_str(&step_button("Resume the upgrade", "resume-upgrade", &[], cx.back)),
        }
        out.push_str(&step_button("Abort the upgrade", "abort-upgrade", &[], cx.back));
    }
    out
}

/// The modules page: each module's current version, its rollouts and the
/// node upgrade.
pub fn modules(
    modules: &ListModulesReply,
    rollouts: &RolloutStatusReply,
    upgrade: &UpgradeStatusReply,
    cx: Context<'_>,
) -> String {
    let mut out = String::from(
        "<h1>Modules and rollouts</h1><table id=\"modules\"><tr><th>module</th><th>version</th><th>sha256</th>\
         <th class=\"num\">size</th><th>deployed</th><th>migrate</th><th>tasks</th></tr>",
    );
    for m in &modules.modules {
        let _ = write!(
            out,
            "<tr><td>{name}</td><td>v{version}</td><td><code>{hash}</code></td><td class=\"num\">{kib} KiB</td>\
             <td>{deployed}</td><td>{migrates}</td><td><a href=\"/tasks?module={name}\">tasks</a></td></tr>",
            name = escape(&m.name),
            version = m.version,
            hash = escape(m.hash.get(..12).unwrap_or(&m.hash)),
            kib = m.size / 1024,
            deployed = time_tag(m.deployed_at_ms, cx.now_ms),
            migrates = if m.migrates { "yes" } else { "no" },
        );
    }
    out.push_str("</table><h2>Rollouts</h2>");
    let all: Vec<&RolloutInfo> = rollouts.rollouts.iter().collect();
    match all.is_empty() {
        true => out.push_str("<p class=\"muted\">None yet: deploying a new version of a module starts one.</p>"),
        false => out.push_str(&rollout_table(&all, cx)),
    }
    out.push_str("<h2>Node binary upgrade</h2>");
    match upgrade.exists {
        true => out.push_str(&upgrade_section(upgrade, cx)),
        false => out.push_str("<p class=\"muted\">None yet (<code>batonctl upgrade BINARY</code>).</p>"),
    }
    out
}

/// The filter form above the task table (it stays put while the table
/// updates).
pub fn task_filter_form(filter: &TaskFilter, modules: &[String]) -> String {
    let mut out = format!(
        "<form method=\"get\" action=\"/tasks\" id=\"filter\">name <input name=\"name\" value=\"{}\" size=\"16\"> \
         module <select name=\"module\"><option value=\"\">any</option>",
        escape(&filter.name)
    );
    for module in modules {
        let selected = if *module == filter.module { " selected" } else { "" };
        let _ = write!(out, "<option{selected}>{}</option>", escape(module));
    }
    out.push_str("</select> status <select name=\"status\"><option value=\"\">any</option>");
    for status in ["running", "paused", "failed"] {
        let selected = if status == filter.status { " selected" } else { "" };
        let _ = write!(out, "<option{selected}>{status}</option>");
    }
    let _ = write!(
        out,
        "</select> owner <input name=\"owner\" value=\"{}\" size=\"4\" placeholder=\"id\"> \
         <button>Filter</button> <a href=\"/tasks\">clear</a></form>",
        escape(&filter.owner)
    );
    out
}

fn task_steps(row_status: &str, name: &str, cx: Context<'_>) -> String {
    let fields = [("task", name)];
    match row_status {
        "running" if cx.run_now => {
            step_button("Run now", "run-now", &fields, cx.back) + &step_button("Pause", "pause-task", &fields, cx.back)
        }
        "running" => step_button("Pause", "pause-task", &fields, cx.back),
        _ => step_button("Resume", "resume-task", &fields, cx.back),
    }
}

/// The task table: one page of the filter's tasks.
pub fn tasks(page: &TaskPage, filter: &TaskFilter, cx: Context<'_>) -> String {
    let mut out = format!(
        "<h1>Tasks</h1><p id=\"task-count\">{} of {} tasks{}</p>",
        page.matched,
        page.total,
        match page.pages {
            1 => String::new(),
            n => format!(", page {} of {n}", page.page),
        }
    );
    out.push_str(
        "<table id=\"tasks\"><tr><th>task</th><th>module</th><th>status</th><th>owner</th><th>schedule</th>\
         <th class=\"num\">tick</th><th>last run</th><th>next run</th><th>last ticks</th>",
    );
    if cx.can_act {
        out.push_str("<th>steps</th>");
    }
    out.push_str("</tr>");
    for row in &page.rows {
        out.push_str(&task_row(row, cx));
    }
    out.push_str("</table>");
    if page.pages > 1 {
        out.push_str("<p>");
        if page.page > 1 {
            let _ = write!(
                out,
                "<a href=\"/tasks?{}\">← previous</a> ",
                escape(&filter.query(page.page - 1))
            );
        }
        if page.page < page.pages {
            let _ = write!(
                out,
                "<a href=\"/tasks?{}\">next →</a>",
                escape(&filter.query(page.page + 1))
            );
        }
        out.push_str("</p>");
    }
    out.push_str(LEGEND);
    out
}

const LEGEND: &str = "<p class=\"muted\">Last ticks, oldest first: <span class=\"strip\"><i class=\"ok\"></i></span> on \
     time, <span class=\"strip\"><i class=\"late\"></i></span> late (more than 50 ms past its period after the one \
     before), <span class=\"strip\"><i class=\"moved\"></i></span> run by another node (a failover or hand-off), \
     <span class=\"strip\"><i class=\"version\"></i></span> a new module version. Only committed ticks are \
     replicated: a failed tick shows in the metrics and, when its restarts run out, as the task's failure.</p>";

fn task_row(row: &TaskRow, cx: Context<'_>) -> String {
    let last = match row.last_tick_at_ms {
        Some(ms) => time_tag(ms, cx.now_ms),
        None => "<span class=\"muted\">never</span>".into(),
    };
    let next = match row.status {
        "running" => time_tag(row.next_due_ms, cx.now_ms),
        _ => "<span class=\"muted\">-</span>".into(),
    };
    let status = match row.failure.is_empty() {
        true => status_cell(row.status),
        false => format!(
            "<span class=\"failed\" title=\"{}\">failed</span>",
            escape(&row.failure)
        ),
    };
    let mut out = format!(
        "<tr data-task=\"{name}\"><td><a href=\"/tasks/{name}\">{name}</a></td><td>{module}</td>\
         <td class=\"status\">{status}</td><td>{owner}</td><td>{schedule}</td><td class=\"num\">{tick}</td>\
         <td>{last}</td><td>{next}</td><td>{strip}</td>",
        name = escape(&row.name),
        module = escape(&row.module),
        owner = owner_cell(row.owner),
        schedule = escape(&row.schedule),
        tick = row.tick,
        strip = strip_html(&row.strip),
    );
    if cx.can_act {
        let _ = write!(out, "<td>{}</td>", task_steps(row.status, &row.name, cx));
    }
    out.push_str("</tr>");
    out
}

/// Log lines a task's page shows, the newest.
pub const LOG_LINES_SHOWN: u32 = 20;

/// The lines a task's page shows.
pub enum TaskLines<'a> {
    /// Only to the signed in: what a module logs may be private.
    SignInFirst,
    /// Nobody may sign in on this node's page.
    ReadOnly,
    /// They could not be read just now.
    Unread,
    Read(&'a TaskLogsReply),
}

/// One task's page: what `batonctl tasks show` says, its strip, the newest
/// lines it logged (`None`: they could not be read), and its history,
/// newest first.
pub fn task(info: &TaskInfo, row: &TaskRow, history: &[TickRecord], logs: TaskLines<'_>, cx: Context<'_>) -> String {
    let mut out = format!(
        "<h1>Task {name}</h1><p>{status} · module <a href=\"/tasks?module={module}\">{module}</a> v{version} · \
         {owner} · epoch {epoch} · {schedule}</p>",
        name = escape(&info.name),
        status = status_cell(row.status),
        module = escape(&info.module),
        version = info.version,
        owner = owner_cell(row.owner),
        epoch = info.epoch,
        schedule = escape(&row.schedule),
    );
    if cx.can_act {
        out.push_str(&task_steps(row.status, &info.name, cx));
    }
    if !info.failure.is_empty() {
        let _ = write!(
            out,
            "<h2>Last error</h2><pre class=\"failed\">{}</pre>",
            escape(&info.failure)
        );
    }
    if let Some(asked) = info.run_requested_ms {
        let _ = write!(
            out,
            "<p id=\"run-requested\">Run now asked {}: its owner ticks it at once.</p>",
            time_tag(asked, cx.now_ms)
        );
    }
    let _ = write!(
        out,
        "<p>Tick {tick}; last run {last}; next {next}. State: {bytes} bytes (written by v{state_version}).</p>\
         <p>Last ticks: {strip}</p>",
        tick = info.tick,
        last = info
            .last_tick_at_ms
            .map_or("never".to_string(), |ms| time_tag(ms, cx.now_ms)),
        next = match row.status {
            "running" => time_tag(info.next_due_ms, cx.now_ms),
            _ => "not while it is not running".to_string(),
        },
        bytes = info.state.len(),
        state_version = info.state_version,
        strip = strip_html(&row.strip),
    );
    out.push_str(&reach(info));
    out.push_str(&secrets(info));
    out.push_str(&log_lines(&info.name, logs));
    out.push_str(
        "<h2>History</h2><table id=\"history\"><tr><th class=\"num\">tick</th><th>committed</th><th>node</th>\
         <th class=\"num\">epoch</th><th>version</th></tr>",
    );
    for t in history.iter().rev() {
        let _ = write!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>v{}</td></tr>",
            t.tick,
            time(t.committed_at_ms),
            t.node,
            t.epoch,
            t.version
        );
    }
    out.push_str("</table>");
    out.push_str(LEGEND);
    out
}

/// What a task may reach: the addresses and HTTP servers it was granted,
/// and what its HTTPS requests trust. Nothing when it may reach nothing.
fn reach(info: &TaskInfo) -> String {
    if info.allow_net.is_empty() && info.allow_http.is_empty() {
        return String::new();
    }
    let list = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("<code>{}</code>", escape(i)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::from("<p id=\"reach\">May reach:");
    if !info.allow_http.is_empty() {
        let trust = match info.http_ca_sha256.is_empty() {
            true => "the system's roots".to_string(),
            false => format!("its own CA (sha256 <code>{}</code>)", escape(&info.http_ca_sha256)),
        };
        let _ = write!(out, " HTTP {} (HTTPS trusts {trust});", list(&info.allow_http));
    }
    if !info.allow_net.is_empty() {
        let _ = write!(out, " TCP {};", list(&info.allow_net));
    }
    out.pop();
    out.push_str(".</p>");
    out
}

/// A task's secrets: their names and the keys they are sealed with, never
/// a value. Nothing when it has none.
fn secrets(info: &TaskInfo) -> String {
    if info.secrets.is_empty() {
        return String::new();
    }
    let named: Vec<String> = info
        .secrets
        .iter()
        .map(|s| {
            format!(
                "<code>{}</code> (key <code>{}</code>)",
                escape(&s.name),
                escape(&s.key_id)
            )
        })
        .collect();
    format!("<p id=\"secrets\">Secrets: {}.</p>", named.join(", "))
}

/// The "Recent log lines" section of a task's page.
fn log_lines(name: &str, logs: TaskLines<'_>) -> String {
    let mut out = String::from("<h2>Recent log lines</h2>");
    let lines = match logs {
        TaskLines::SignInFirst => {
            out.push_str(
                "<p class=\"muted\" id=\"log-lines\">Sign in to see what its module logged (it may be private).</p>",
            );
            return out;
        }
        TaskLines::ReadOnly => {
            let _ = write!(
                out,
                "<p class=\"muted\" id=\"log-lines\">This page shows what a module logged only to the signed in, \
                 and this node's page is read-only: <code>batonctl tasks logs {}</code> shows them.</p>",
                escape(name)
            );
            return out;
        }
        TaskLines::Unread => {
            out.push_str("<p class=\"muted\" id=\"log-lines\">Its lines could not be read just now.</p>");
            return out;
        }
        TaskLines::Read(reply) if !reply.owner_silent.is_empty() => {
            let _ = write!(
                out,
                "<p class=\"muted\" id=\"log-lines\">Its lines are kept by its owner, node {}, which did not \
                 answer: {}</p>",
                reply.node,
                escape(&reply.owner_silent)
            );
            return out;
        }
        TaskLines::Read(reply) if reply.node == 0 => {
            out.push_str("<p class=\"muted\" id=\"log-lines\">No owner now, so no lines.</p>");
            return out;
        }
        TaskLines::Read(reply) if reply.lines.is_empty() => {
            let _ = write!(
                out,
                "<p class=\"muted\" id=\"log-lines\">Nothing logged on node {} (its owner) yet.</p>",
                reply.node
            );
            return out;
        }
        TaskLines::Read(reply) => reply,
    };
    let _ = write!(
        out,
        "<p class=\"muted\">From node {}, its owner, newest last (<code>batonctl tasks logs {} -f</code> \
         follows them).</p><table id=\"log-lines\"><tr><th>logged</th><th class=\"num\">tick</th><th>level</th>\
         <th>message</th></tr>",
        lines.node,
        escape(name)
    );
    for line in &lines.lines {
        let class = match line.level.as_str() {
            "error" => " class=\"failed\"",
            "warn" => " class=\"paused\"",
            _ => "",
        };
        let _ = write!(
            out,
            "<tr{class}><td>{}</td><td class=\"num\">{}</td><td>{}</td><td><code>{}</code></td></tr>",
            time(line.at_ms),
            line.tick,
            escape(&line.level),
            escape(&line.message)
        );
    }
    out.push_str("</table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::task_rows::PAGE_ROWS;

    const NOW: u64 = 1_700_000_000_000;

    fn cx(can_act: bool) -> Context<'static> {
        Context {
            now_ms: NOW,
            can_act,
            run_now: true,
            back: "/tasks",
        }
    }

    fn row(name: &str, status: &'static str) -> TaskRow {
        TaskRow {
            name: name.into(),
            module: "counter".into(),
            status,
            failure: String::new(),
            owner: Some(2),
            schedule: "every 1s".into(),
            tick: 7,
            last_tick_at_ms: Some(NOW - 400),
            next_due_ms: NOW + 600,
            strip: vec![Mark::OnTime, Mark::Moved],
        }
    }

    fn page(rows: Vec<TaskRow>) -> TaskPage {
        TaskPage {
            total: rows.len() + 5,
            matched: rows.len(),
            rows,
            page: 1,
            pages: 1,
            modules: vec!["counter".into()],
        }
    }

    #[test]
    fn the_task_table_shows_rows_strips_and_steps_only_to_a_signed_in_reader() {
        let rows = vec![row("a<b>", "running"), row("b", "paused")];
        let read = tasks(&page(rows.clone()), &TaskFilter::default(), cx(false));
        assert!(read.contains("2 of 7 tasks"));
        assert!(read.contains("<a href=\"/tasks/a&lt;b&gt;\">a&lt;b&gt;</a>"));
        assert!(read.contains("<i class=\"ok\"></i><i class=\"moved\"></i>"));
        assert!(read.contains("(400 ms ago)") && read.contains("(in 600 ms)"));
        assert!(!read.contains("<form"));
        let signed_in = tasks(&page(rows), &TaskFilter::default(), cx(true));
        assert!(signed_in.contains("value=\"pause-task\"") && signed_in.contains("value=\"resume-task\""));
        assert!(signed_in.contains("value=\"run-now\""));
        let older = Context {
            run_now: false,
            ..cx(true)
        };
        let below = tasks(&page(vec![row("a", "running")]), &TaskFilter::default(), older);
        assert!(
            !below.contains("run-now"),
            "no Run now below the cluster version that knows it"
        );
    }

    #[test]
    fn a_tasks_lines_are_offered_where_a_reader_can_sign_in_and_named_elsewhere() {
        let sign_in = log_lines("a<b", TaskLines::SignInFirst);
        assert!(sign_in.contains("Sign in to see"), "{sign_in}");
        let read_only = log_lines("a<b", TaskLines::ReadOnly);
        assert!(
            !read_only.contains("Sign in") && read_only.contains("<code>batonctl tasks logs a&lt;b</code>"),
            "{read_only}"
        );
    }

    #[test]
    fn a_tasks_page_says_what_it_may_reach_and_what_its_https_trusts() {
        let mut info = TaskInfo::default();
        assert_eq!(reach(&info), "", "nothing granted, nothing said");
        info.allow_http = vec!["https://api.example.com:443".into()];
        let system = reach(&info);
        assert!(
            system.contains("HTTP <code>https://api.example.com:443</code> (HTTPS trusts the system's roots)."),
            "{system}"
        );
        info.http_ca_sha256 = "ab".repeat(32);
        info.allow_net = vec!["10.0.0.5:<9>".into()];
        let own = reach(&info);
        assert!(
            own.contains(&format!("its own CA (sha256 <code>{}</code>)", "ab".repeat(32))),
            "{own}"
        );
        assert!(own.ends_with(" TCP <code>10.0.0.5:&lt;9&gt;</code>.</p>"), "{own}");
    }

    #[test]
    fn a_tasks_page_names_its_secrets_and_their_keys() {
        let mut info = TaskInfo::default();
        assert_eq!(secrets(&info), "");
        info.secrets = vec![baton_proto::SecretInfo {
            name: "API_<TOKEN>".into(),
            key_id: "0011223344556677".into(),
        }];
        assert_eq!(
            secrets(&info),
            "<p id=\"secrets\">Secrets: <code>API_&lt;TOKEN&gt;</code> (key <code>0011223344556677</code>).</p>"
        );
    }

    #[test]
    fn a_long_table_links_its_pages_with_the_filter() {
        let mut long = page(vec![row("a", "running")]);
        long.matched = 3 * PAGE_ROWS;
        long.pages = 3;
        long.page = 2;
        let filter = TaskFilter {
            module: "counter".into(),
            ..TaskFilter::default()
        };
        let html = tasks(&long, &filter, cx(false));
        assert!(html.contains("page 2 of 3"));
        assert!(html.contains("href=\"/tasks?module=counter\">← previous"));
        assert!(html.contains("href=\"/tasks?module=counter&amp;page=3\">next"));
    }

    #[test]
    fn the_overview_names_the_leader_and_counts_and_offers_drain_when_signed_in() {
        let status = StatusReply {
            cluster_id: "c".into(),
            leader_id: 1,
            answered_by: 2,
            tasks_running: 12,
            failed_tasks: vec!["bad".into()],
            members: vec![MemberStatus {
                id: 1,
                addr: "127.0.0.1:7001".into(),
                role: "voter".into(),
                state: "up".into(),
                ..MemberStatus::default()
            }],
            ..StatusReply::default()
        };
        let none = RolloutStatusReply::default();
        let upgrade = UpgradeStatusReply::default();
        let html = overview(&status, &none, &upgrade, cx(false));
        assert!(html.contains("<b id=\"leader\">node 1</b>"));
        assert!(html.contains("<b id=\"tasks-running\">12</b>"));
        assert!(html.contains("The leader, node 1"));
        assert!(html.contains("<a href=\"/tasks/bad\">bad</a>"));
        assert!(!html.contains("value=\"drain\""));
        assert!(overview(&status, &none, &upgrade, cx(true)).contains("value=\"drain\""));
    }

    #[test]
    fn rollouts_show_progress_gate_counts_and_the_steps_their_state_allows() {
        let rollouts = RolloutStatusReply {
            rollouts: vec![RolloutInfo {
                module: "counter".into(),
                from_version: 1,
                to_version: 2,
                state: "paused".into(),
                switched: vec![1],
                eligible: vec![1, 2, 3, 4],
                new_ok: 40,
                new_failed: 1,
                ..RolloutInfo::default()
            }],
        };
        let html = modules(
            &ListModulesReply::default(),
            &rollouts,
            &UpgradeStatusReply::default(),
            cx(true),
        );
        assert!(html.contains("v1 → v2") && html.contains("1 of 4 nodes") && html.contains("width:25%"));
        assert!(html.contains("40 / 1"));
        assert!(html.contains("value=\"resume-rollout\"") && html.contains("value=\"abort-rollout\""));
        assert!(!html.contains("value=\"pause-rollout\""));
    }
}
