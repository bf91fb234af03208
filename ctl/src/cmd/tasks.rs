//! `batonctl tasks add|list|show|history|rm|pause|resume|run-now` (and
//! `logs`, in `logs.rs`).

use baton_proto::{AddTaskRequest, ListTasksRequest, SetTaskSecretsRequest, TaskInfo, TaskRequest, TickInfo};
use serde::Serialize;

use super::CmdError;
use crate::cli::{OutputFormat, TasksCommand};
use crate::client::ClusterClient;
use crate::output;

/// A task as `tasks list|show --output json` prints it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub name: String,
    pub module: String,
    /// The module version its owner runs.
    pub version: u32,
    /// The module version that wrote its state (differs from `version` until
    /// its first tick after a swap).
    pub state_version: u32,
    pub owner: Option<u64>,
    pub epoch: u64,
    pub tick: u64,
    pub status: String,
    pub failure: Option<String>,
    /// When its last tick committed, RFC 3339 in UTC.
    pub last_tick_at: Option<String>,
    pub last_tick_at_ms: Option<u64>,
    /// When its next tick is due, RFC 3339 in UTC.
    pub next_due: String,
    pub next_due_ms: u64,
    pub schedule: String,
    /// When `tasks run-now` asked for a tick that has not committed yet,
    /// RFC 3339 in UTC.
    pub run_requested_at: Option<String>,
    pub allow_net: Vec<String>,
    /// The HTTP servers it may call, each `scheme://host:port`.
    pub allow_http: Vec<String>,
    /// The SHA-256 of the CA its HTTPS requests trust, when it names one
    /// (else the system's roots).
    pub http_ca_sha256: Option<String>,
    /// Its secrets: names and the keys they are sealed with, never values.
    pub secrets: Vec<SecretView>,
    /// The state as JSON when it is UTF-8 JSON, a string when it is other
    /// printable text, else `{"hex": "..."}`.
    pub state: serde_json::Value,
}

/// A task's secret as shown: its name and the id of its key.
#[derive(Debug, Clone, Serialize)]
pub struct SecretView {
    pub name: String,
    pub key_id: String,
}

impl From<TaskInfo> for TaskView {
    fn from(t: TaskInfo) -> Self {
        TaskView {
            name: t.name,
            module: t.module,
            version: t.version,
            state_version: t.state_version,
            owner: (t.owner != 0).then_some(t.owner),
            epoch: t.epoch,
            tick: t.tick,
            status: t.status,
            failure: (!t.failure.is_empty()).then_some(t.failure),
            last_tick_at: t.last_tick_at_ms.map(output::rfc3339_ms),
            last_tick_at_ms: t.last_tick_at_ms,
            next_due: output::rfc3339_ms(t.next_due_ms),
            next_due_ms: t.next_due_ms,
            schedule: t.schedule,
            run_requested_at: t.run_requested_ms.map(output::rfc3339_ms),
            allow_net: t.allow_net,
            allow_http: t.allow_http,
            http_ca_sha256: (!t.http_ca_sha256.is_empty()).then_some(t.http_ca_sha256),
            secrets: t
                .secrets
                .into_iter()
                .map(|s| SecretView {
                    name: s.name,
                    key_id: s.key_id,
                })
                .collect(),
            state: state_json(&t.state),
        }
    }
}

/// A state as JSON if it is JSON, as a string if it is printable text,
/// else as hex.
pub fn state_json(state: &[u8]) -> serde_json::Value {
    if let Ok(json) = serde_json::from_slice(state) {
        return json;
    }
    match std::str::from_utf8(state) {
        Ok(text) if !text.is_empty() && !text.chars().any(char::is_control) => serde_json::json!(text),
        _ => serde_json::json!({ "hex": state.iter().map(|b| format!("{b:02x}")).collect::<String>() }),
    }
}

fn table(tasks: &[TaskView]) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let state = t.state.to_string();
            let state = if state.len() > 40 {
                format!("{}...", &state[..37])
            } else {
                state
            };
            vec![
                t.name.clone(),
                format!("{}@{}", t.module, t.version),
                t.owner.map_or("-".into(), |o| o.to_string()),
                t.epoch.to_string(),
                t.tick.to_string(),
                match (&t.failure, &t.run_requested_at) {
                    (Some(why), _) => format!("failed: {why}"),
                    (None, Some(_)) => format!("{} (run now asked)", t.status),
                    (None, None) => t.status.clone(),
                },
                t.schedule.clone(),
                state,
            ]
        })
        .collect();
    output::table(
        &[
            "NAME", "MODULE", "OWNER", "EPOCH", "TICK", "STATUS", "SCHEDULE", "STATE",
        ],
        &rows,
    )
}

fn name_request(name: &str) -> TaskRequest {
    TaskRequest { name: name.to_string() }
}

/// A task that runs `module` every `every_ms` with `config`, and the
/// defaults for everything else (catch-up, restart intensity, no network).
pub fn every_request(name: &str, module: &str, every_ms: u64, config: &str) -> AddTaskRequest {
    AddTaskRequest {
        name: name.into(),
        module: module.into(),
        every_ms: Some(every_ms),
        cron: None,
        config: config.as_bytes().to_vec(),
        skip_missed: false,
        max_restarts: 0,
        restart_window_ms: 0,
        allow_net: Vec::new(),
        allow_http: Vec::new(),
        http_ca: Vec::new(),
        secrets: Default::default(),
    }
}

/// `tasks new`: writes a project for module `name` under `dir`.
pub fn new_project(
    dir: &std::path::Path,
    name: &str,
    lang: super::scaffold::Lang,
    format: OutputFormat,
) -> Result<(), CmdError> {
    #[derive(Serialize)]
    struct Written {
        project: String,
        build: String,
        module: String,
    }
    let root = super::scaffold::write_project(dir, name, lang)?;
    let written = Written {
        project: root.display().to_string(),
        build: root.join("build.sh").display().to_string(),
        module: root.join(format!("{name}.wasm")).display().to_string(),
    };
    output::print(format, &written, || {
        format!(
            "wrote {}
build it:   {}
deploy it:  batonctl modules deploy {name} {}
run it:     batonctl tasks add {name}-1 --module {name} --every 10s
",
            written.project, written.build, written.module
        )
    });
    Ok(())
}

pub async fn run(client: &ClusterClient, command: TasksCommand, format: OutputFormat) -> Result<(), CmdError> {
    let task = match command {
        TasksCommand::Add {
            name,
            module,
            every,
            cron,
            config,
            skip_missed,
            max_restarts,
            restart_window,
            allow_net,
            allow_http,
            http_ca,
            secrets,
        } => {
            let secrets = secrets.read(|name| std::env::var_os(name))?;
            let http_ca = match http_ca {
                Some(path) => std::fs::read(&path).map_err(|source| CmdError::File { path, source })?,
                None => Vec::new(),
            };
            let request = AddTaskRequest {
                name,
                module,
                every_ms: every,
                cron,
                config: config.into_bytes(),
                skip_missed,
                max_restarts,
                restart_window_ms: restart_window,
                allow_net,
                allow_http,
                http_ca,
                secrets,
            };
            client
                .call_with(&request, |mut c, r| async move { c.add_task(r).await })
                .await?
        }
        TasksCommand::List => {
            let reply = client
                .call(|mut c| async move { c.list_tasks(ListTasksRequest {}).await })
                .await?;
            let tasks: Vec<TaskView> = reply.tasks.into_iter().map(TaskView::from).collect();
            output::print(format, &tasks, || table(&tasks));
            return Ok(());
        }
        TasksCommand::History { name, limit } => {
            let request = name_request(&name);
            let reply = client
                .call_with(&request, |mut c, r| async move { c.task_history(r).await })
                .await?;
            let views = history_views(reply.ticks, limit);
            output::print(format, &views, || history_table(&views));
            return Ok(());
        }
        TasksCommand::Logs { name, follow, limit } => {
            return super::logs::run(client, name, limit, follow, format).await;
        }
        TasksCommand::Show { name } => call_named(client, &name, Named::Show).await?,
        TasksCommand::Rm { name } => call_named(client, &name, Named::Remove).await?,
        TasksCommand::Pause { name } => call_named(client, &name, Named::Pause).await?,
        TasksCommand::RunNow { name } => call_named(client, &name, Named::RunNow).await?,
        TasksCommand::SetSecrets { name, secrets, remove } => {
            let request = SetTaskSecretsRequest {
                name,
                set: secrets.read(|name| std::env::var_os(name))?,
                remove,
            };
            client
                .call_with(&request, |mut c, r| async move { c.set_task_secrets(r).await })
                .await?
        }
        TasksCommand::Resume { name } => call_named(client, &name, Named::Resume).await?,
        // Needs no cluster (`cmd::run` calls it without a client).
        TasksCommand::New { name, lang, dir } => return new_project(&dir, &name, lang, format),
    };
    let tasks: Vec<TaskView> = task.task.into_iter().map(TaskView::from).collect();
    output::print(format, &tasks.first(), || table(&tasks) + &grants(tasks.first()));
    Ok(())
}

/// What one task may reach, as lines under its row (nothing when it may
/// reach nothing).
fn grants(task: Option<&TaskView>) -> String {
    let Some(task) = task else { return String::new() };
    let mut lines = String::new();
    if !task.allow_net.is_empty() {
        lines += &format!("allow-net:  {}\n", task.allow_net.join(" "));
    }
    if !task.allow_http.is_empty() {
        lines += &format!("allow-http: {}\n", task.allow_http.join(" "));
        let trust = match &task.http_ca_sha256 {
            Some(sha) => format!("its own CA (sha256 {sha})"),
            None => "the system's roots".to_string(),
        };
        lines += &format!("https trusts: {trust}\n");
    }
    if !task.secrets.is_empty() {
        let named: Vec<String> = task
            .secrets
            .iter()
            .map(|s| format!("{} (key {})", s.name, s.key_id))
            .collect();
        lines += &format!("secrets:    {}\n", named.join(", "));
    }
    lines
}

enum Named {
    Show,
    Remove,
    Pause,
    Resume,
    RunNow,
}

async fn call_named(client: &ClusterClient, name: &str, what: Named) -> Result<baton_proto::TaskReply, CmdError> {
    let request = name_request(name);
    let what = &what;
    Ok(client
        .call_with(&request, |mut c, r| async move {
            match what {
                Named::Show => c.show_task(r).await,
                Named::Remove => c.remove_task(r).await,
                Named::Pause => c.pause_task(r).await,
                Named::Resume => c.resume_task(r).await,
                Named::RunNow => c.run_task_now(r).await,
            }
        })
        .await?)
}

/// A committed tick as `tasks history` prints it.
#[derive(Debug, Serialize)]
pub struct TickView {
    pub tick: u64,
    pub epoch: u64,
    pub node: u64,
    /// The module version that ran it.
    pub version: u32,
    /// When it committed, RFC 3339 in UTC.
    pub committed_at: String,
    /// The same, in milliseconds since the Unix epoch.
    pub committed_at_ms: u64,
}

/// `ticks` (oldest first, as the cluster keeps them) newest first, at
/// most `limit` of them.
pub fn history_views(ticks: Vec<TickInfo>, limit: Option<usize>) -> Vec<TickView> {
    ticks
        .into_iter()
        .rev()
        .take(limit.unwrap_or(usize::MAX))
        .map(|t| TickView {
            tick: t.tick,
            epoch: t.epoch,
            node: t.node,
            version: t.version,
            committed_at: output::rfc3339_ms(t.committed_at_ms),
            committed_at_ms: t.committed_at_ms,
        })
        .collect()
}

fn history_table(views: &[TickView]) -> String {
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|t| {
            vec![
                t.tick.to_string(),
                t.epoch.to_string(),
                t.node.to_string(),
                t.version.to_string(),
                t.committed_at.clone(),
            ]
        })
        .collect();
    output::table(&["TICK", "EPOCH", "NODE", "VERSION", "COMMITTED AT"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(tick: u64) -> TickInfo {
        TickInfo {
            tick,
            epoch: 1,
            node: 2,
            committed_at_ms: 1_796_425_853_000 + tick,
            version: 3,
        }
    }

    #[test]
    fn history_is_newest_first_and_limited() {
        let views = history_views((1..=5).map(tick).collect(), Some(2));
        assert_eq!(views.iter().map(|v| v.tick).collect::<Vec<_>>(), [5, 4]);
        assert_eq!(views[0].committed_at, "2026-12-04T23:10:53.005Z");
        assert_eq!(history_views((1..=5).map(tick).collect(), None).len(), 5);
        let table = history_table(&views);
        assert!(
            table.starts_with("TICK  EPOCH  NODE  VERSION  COMMITTED AT\n5 "),
            "{table}"
        );
    }
}
