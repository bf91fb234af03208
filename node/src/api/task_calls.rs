//! The control calls about tasks: add, list, show, history, remove, pause,
//! resume. Writes go through Raft; reads answer from this node's state.

use std::collections::BTreeMap;

use baton_proto::{
    AddTaskRequest, ListTasksReply, SecretInfo, SetTaskSecretsRequest, TaskHistoryReply, TaskInfo, TaskReply, TickInfo,
};
use tonic::Status;

use super::NodeContext;
use super::errors::propose_error;
use crate::config::check_host_port;
use crate::runtime::{HttpAccess, canonical_ca};
use crate::secrets::Keyring;
use crate::state::cluster::ClusterState;
use crate::state::cluster_version::{BelowVersion, ClusterVersion, HTTP_GRANTS, RUN_NOW, SECRETS};
use crate::state::secrets::{MAX_SECRET_BYTES, MAX_SECRETS, SealedSecret};
use crate::state::tasks::{CatchUp, RestartPolicy, Schedule, TaskRecord, TaskSpec, TaskStatus};
use crate::tasks::schedule::parse_cron;
use crate::types::{Command, CommandResponse};

/// Longest task name.
const MAX_NAME_BYTES: usize = 128;
/// Shortest interval.
const MIN_EVERY_MS: u64 = 10;

fn check_name(name: &str) -> Result<(), Status> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "task name {name:?} must be 1 to {MAX_NAME_BYTES} characters: letters, digits, '-', '_' and '.'"
        )))
    }
}

/// The HTTP grants of `request` in their one written form
/// (`scheme://host:port`, each once) and its CA as it is kept
/// ([`canonical_ca`]), checked by the rule the runner builds the task's
/// access by; refused below [`HTTP_GRANTS`].
fn http_grants(request: &AddTaskRequest, cluster_version: ClusterVersion) -> Result<(Vec<String>, Vec<u8>), Status> {
    if request.allow_http.is_empty() && request.http_ca.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    BelowVersion::check(cluster_version, HTTP_GRANTS, "`tasks add --allow-http`")
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
    let refused = |why: String| Status::invalid_argument(format!("--allow-http/--http-ca: {why}"));
    let ca = match request.http_ca.is_empty() {
        true => Vec::new(),
        false => canonical_ca(&request.http_ca).map_err(refused)?,
    };
    let access = HttpAccess::of_task(&request.allow_http, &ca).map_err(refused)?;
    let mut grants: Vec<String> = access.grants.iter().map(|g| g.to_string()).collect();
    grants.sort();
    grants.dedup();
    Ok((grants, ca))
}

/// Task `task`'s secrets, given in plain text, sealed with `keys`' first
/// key in the order of their names; refused below [`SECRETS`], and past
/// the limits, saying which secret (by name, never by value).
fn sealed_secrets(
    task: &str,
    given: BTreeMap<String, Vec<u8>>,
    cluster_version: ClusterVersion,
    keys: &Keyring,
) -> Result<Vec<SealedSecret>, Status> {
    if given.is_empty() {
        return Ok(Vec::new());
    }
    BelowVersion::check(cluster_version, SECRETS, "`tasks add --secret`")
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
    if given.len() > MAX_SECRETS {
        return Err(Status::invalid_argument(format!(
            "{} secrets given; a task may have at most {MAX_SECRETS}",
            given.len()
        )));
    }
    let mut sealed = Vec::with_capacity(given.len());
    for (name, value) in given {
        crate::state::secrets::check_name(&name).map_err(|why| Status::invalid_argument(format!("--secret: {why}")))?;
        if value.len() > MAX_SECRET_BYTES {
            return Err(Status::invalid_argument(format!(
                "--secret {name}: the value is {} bytes; a secret is at most {MAX_SECRET_BYTES} bytes",
                value.len()
            )));
        }
        let secret = keys.seal(task, &name, &value).map_err(|e| match e {
            crate::secrets::SecretError::NoKeys => Status::failed_precondition(e.to_string()),
            _ => Status::internal(e.to_string()),
        })?;
        sealed.push(secret);
    }
    Ok(sealed)
}

fn spec(request: AddTaskRequest, max_config_bytes: usize, cluster_version: ClusterVersion) -> Result<TaskSpec, Status> {
    check_name(&request.name)?;
    let (allow_http, http_ca) = http_grants(&request, cluster_version)?;
    let schedule = match (request.every_ms, request.cron) {
        (Some(ms), None) if ms >= MIN_EVERY_MS => Schedule::EveryMs(ms),
        (Some(ms), None) => {
            return Err(Status::invalid_argument(format!(
                "--every must be at least {MIN_EVERY_MS} ms; got {ms} ms"
            )));
        }
        (None, Some(expr)) => {
            parse_cron(&expr).map_err(Status::invalid_argument)?;
            Schedule::Cron(expr)
        }
        _ => {
            return Err(Status::invalid_argument(
                "give exactly one schedule: --every DURATION or --cron EXPR",
            ));
        }
    };
    if request.config.len() > max_config_bytes {
        return Err(Status::invalid_argument(format!(
            "the config of task {} is {} bytes; a task config is at most {max_config_bytes} bytes \
             ([limits] max_config_bytes)",
            request.name,
            request.config.len()
        )));
    }
    for addr in &request.allow_net {
        check_host_port(addr).map_err(|why| Status::invalid_argument(format!("--allow-net: {why}")))?;
    }
    let defaults = RestartPolicy::default();
    Ok(TaskSpec {
        name: request.name,
        module: request.module,
        schedule,
        catch_up: if request.skip_missed {
            CatchUp::Skip
        } else {
            CatchUp::RunOnce
        },
        restart: RestartPolicy {
            max_restarts: if request.max_restarts == 0 {
                defaults.max_restarts
            } else {
                request.max_restarts
            },
            window_ms: if request.restart_window_ms == 0 {
                defaults.window_ms
            } else {
                request.restart_window_ms
            },
        },
        config: request.config,
        allow_net: request.allow_net,
        allow_http,
        http_ca,
        secrets: Vec::new(),
    })
}

/// The module version task `task`'s owner runs for it (the current version
/// when nobody owns it).
fn running_version(s: &ClusterState, task: &TaskRecord) -> u32 {
    let module = &task.spec.module;
    let release = match task.owner {
        Some(owner) => s.version_for(module, owner),
        None => s.modules.get(module),
    };
    release.map_or(0, |m| m.version)
}

fn info(task: &TaskRecord, module_version: u32) -> TaskInfo {
    let (status, failure) = match &task.status {
        TaskStatus::Running => ("running", String::new()),
        TaskStatus::Paused => ("paused", String::new()),
        TaskStatus::Failed { reason } => ("failed", reason.clone()),
    };
    TaskInfo {
        name: task.spec.name.clone(),
        module: task.spec.module.clone(),
        version: module_version,
        owner: task.owner.unwrap_or(0),
        epoch: task.epoch,
        tick: task.tick,
        status: status.into(),
        failure,
        last_tick_at_ms: task.last_tick_at_ms,
        next_due_ms: task.next_due_ms,
        state: task.state.clone(),
        schedule: match &task.spec.schedule {
            Schedule::EveryMs(ms) => format!("every {ms}ms"),
            Schedule::Cron(expr) => format!("cron {expr}"),
        },
        config: task.spec.config.clone(),
        allow_net: task.spec.allow_net.clone(),
        allow_http: task.spec.allow_http.clone(),
        http_ca_sha256: match task.spec.http_ca.is_empty() {
            true => String::new(),
            false => crate::runtime::content_hash(&task.spec.http_ca),
        },
        state_version: task.state_version,
        run_requested_ms: task.run_requested_ms,
        secrets: task
            .spec
            .secrets
            .iter()
            .map(|s| SecretInfo {
                name: s.name.clone(),
                key_id: s.key_id.clone(),
            })
            .collect(),
    }
}

fn find(context: &NodeContext, name: &str) -> Result<TaskInfo, Status> {
    context
        .state_machine
        .read(|s| {
            let task = s.tasks.get(name)?;
            Some(info(task, running_version(s, task)))
        })
        .ok_or_else(|| Status::not_found(format!("no task named {name}; see `batonctl tasks list`")))
}

/// Proposes `command` and answers with the task as it then stands.
async fn write(context: &NodeContext, name: &str, command: Command) -> Result<TaskReply, Status> {
    let committed = context.proposer.propose(command).await.map_err(propose_error)?;
    answer(context, name, committed)
}

fn answer(context: &NodeContext, name: &str, committed: crate::raft::Committed) -> Result<TaskReply, Status> {
    if let CommandResponse::Rejected(why) = committed.response {
        return Err(super::errors::rejected(&why));
    }
    let task = find(context, name).ok();
    Ok(TaskReply {
        task,
        log_index: committed.log_index,
    })
}

pub(crate) async fn add(context: &NodeContext, mut request: AddTaskRequest) -> Result<TaskReply, Status> {
    // This node's view of the version lags the leader's, never leads it.
    let version = context.state_machine.read(|s| s.cluster_version);
    let given = std::mem::take(&mut request.secrets);
    let mut spec = spec(request, context.limits.max_config_bytes, version)?;
    if !given.is_empty() {
        // The leader seals, with its first key: a follower sends the client
        // there before it touches a value (peers may not propose tasks).
        super::errors::ensure_leader(context)?;
        spec.secrets = sealed_secrets(&spec.name, given, version, &context.secret_keys)?;
    }
    let name = spec.name.clone();
    write(context, &name, Command::AddTask(spec)).await
}

pub(crate) async fn remove(context: &NodeContext, name: String) -> Result<TaskReply, Status> {
    let task = find(context, &name)?;
    let mut reply = write(context, &name, Command::RemoveTask { name: name.clone() }).await?;
    reply.task = Some(task);
    Ok(reply)
}

pub(crate) async fn set_status(context: &NodeContext, name: String, status: TaskStatus) -> Result<TaskReply, Status> {
    find(context, &name)?;
    write(context, &name.clone(), Command::SetTaskStatus { name, status }).await
}

/// Asks the task's owner for one tick now (`batonctl tasks run-now`). The
/// leader takes it, once the cluster runs at the version whose nodes all
/// know the request ([`RUN_NOW`]).
pub(crate) async fn run_now(context: &NodeContext, name: String) -> Result<TaskReply, Status> {
    match crate::types::leader(&context.raft) {
        (Some(leader), _) if leader == context.id => {}
        (leader, addr) => return Err(super::errors::not_leader(leader, addr.as_deref())),
    }
    find(context, &name)?;
    let version = context.state_machine.read(|s| s.cluster_version);
    BelowVersion::check(version, RUN_NOW, "`tasks run-now`").map_err(|e| Status::failed_precondition(e.to_string()))?;
    let now_ms = crate::types::now_ms();
    write(context, &name.clone(), Command::RunNow { name, now_ms }).await
}

/// `tasks set-secrets`: new values for a task's secrets, new secrets, and
/// secrets removed; sealed by the leader, as `add` seals them.
pub(crate) async fn set_secrets(context: &NodeContext, request: SetTaskSecretsRequest) -> Result<TaskReply, Status> {
    let SetTaskSecretsRequest { name, set, mut remove } = request;
    remove.sort();
    remove.dedup();
    if set.is_empty() && remove.is_empty() {
        return Err(Status::invalid_argument(
            "give a secret to set (--secret, --secret-file, --secret-env) or one to --remove",
        ));
    }
    super::errors::ensure_leader(context)?;
    let version = context.state_machine.read(|s| s.cluster_version);
    BelowVersion::check(version, SECRETS, "`tasks set-secrets`")
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
    let names: Vec<String> = context
        .state_machine
        .read(|s| {
            s.tasks
                .get(&name)
                .map(|t| t.spec.secrets.iter().map(|s| s.name.clone()).collect())
        })
        .ok_or_else(|| Status::not_found(format!("no task named {name}; see `batonctl tasks list`")))?;
    if let Some(both) = remove.iter().find(|r| set.contains_key(*r)) {
        return Err(Status::invalid_argument(format!(
            "secret {both} is both set and removed; give it once"
        )));
    }
    if let Some(missing) = remove.iter().find(|r| !names.contains(*r)) {
        return Err(Status::not_found(format!(
            "task {name} has no secret named {missing}; see `batonctl tasks show {name}`"
        )));
    }
    let after = names
        .iter()
        .filter(|n| !remove.contains(*n))
        .chain(set.keys().filter(|n| !names.contains(*n)))
        .count();
    if after > MAX_SECRETS {
        return Err(Status::invalid_argument(format!(
            "task {name} would have {after} secrets; a task may have at most {MAX_SECRETS}"
        )));
    }
    let set = sealed_secrets(&name, set, version, &context.secret_keys)?;
    let command = Command::SetSecrets {
        task: name.clone(),
        set,
        remove,
    };
    let committed = context.proposer.propose(command).await.map_err(propose_error)?;
    if committed.response == CommandResponse::Count(0) {
        return Err(Status::aborted(format!(
            "nothing changed: task {name}'s secrets changed while this call ran, and the change would have given \
             it more than {MAX_SECRETS} secrets or its secrets to remove were gone; see `batonctl tasks show {name}` \
             and try again"
        )));
    }
    answer(context, &name, committed)
}

pub(crate) fn show(context: &NodeContext, name: &str) -> Result<TaskReply, Status> {
    Ok(TaskReply {
        task: Some(find(context, name)?),
        log_index: 0,
    })
}

pub(crate) fn list(context: &NodeContext) -> ListTasksReply {
    let tasks = context
        .state_machine
        .read(|s| s.tasks.values().map(|t| info(t, running_version(s, t))).collect());
    ListTasksReply { tasks }
}

pub(crate) fn history(context: &NodeContext, name: &str) -> Result<TaskHistoryReply, Status> {
    let ticks = context.state_machine.read(|s| {
        s.tasks.get(name).map(|t| {
            t.history
                .iter()
                .map(|h| TickInfo {
                    tick: h.tick,
                    epoch: h.epoch,
                    node: h.node,
                    committed_at_ms: h.committed_at_ms,
                    version: h.version,
                })
                .collect()
        })
    });
    let ticks = ticks.ok_or_else(|| Status::not_found(format!("no task named {name}; see `batonctl tasks list`")))?;
    Ok(TaskHistoryReply { ticks })
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn request(allow_http: &[&str]) -> AddTaskRequest {
        AddTaskRequest {
            name: "watch".into(),
            module: "webwatch".into(),
            every_ms: Some(1000),
            allow_http: allow_http.iter().map(|g| g.to_string()).collect(),
            ..AddTaskRequest::default()
        }
    }

    #[test]
    fn grants_are_kept_in_one_form_each_once() {
        let given = request(&[
            "https://API.example.com/",
            "https://api.example.com:443",
            "http://[::1]:8080",
        ]);
        let spec = spec(given, 1024, HTTP_GRANTS).unwrap();
        assert_eq!(spec.allow_http, ["http://[::1]:8080", "https://api.example.com:443"]);
        assert!(spec.http_ca.is_empty());
    }

    #[test]
    fn grants_wait_for_the_cluster_version_and_bad_ones_are_refused() {
        let below = spec(request(&["https://api.example.com"]), 1024, HTTP_GRANTS - 1).unwrap_err();
        assert_eq!(below.code(), Code::FailedPrecondition);
        assert!(
            below.message().contains("`tasks add --allow-http`"),
            "{}",
            below.message()
        );
        let mut ca_only = request(&[]);
        ca_only.http_ca = b"x".to_vec();
        let below = spec(ca_only, 1024, HTTP_GRANTS - 1).unwrap_err();
        assert_eq!(below.code(), Code::FailedPrecondition);
        // A task without grants is the same at every version.
        assert!(spec(request(&[]), 1024, 1).unwrap().allow_http.is_empty());
        let bad = spec(request(&["api.example.com"]), 1024, HTTP_GRANTS).unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert!(
            bad.message().starts_with("--allow-http/--http-ca: "),
            "{}",
            bad.message()
        );
    }

    fn secrets(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect()
    }

    #[test]
    fn secrets_are_sealed_in_name_order_and_checked_by_name_only() {
        let keys = Keyring::of(&[[3; crate::secrets::KEY_BYTES]]);
        let given = secrets(&[("TOKEN", b"t0ps3cret"), ("DB_PASSWORD", b"pw")]);
        let sealed = sealed_secrets("sync", given, SECRETS, &keys).unwrap();
        let names: Vec<&str> = sealed.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["DB_PASSWORD", "TOKEN"]);
        assert_eq!(keys.open("sync", &sealed[1]).unwrap(), b"t0ps3cret");
        // None: the same at every version, with or without keys.
        assert!(
            sealed_secrets("sync", BTreeMap::new(), 1, &Keyring::default())
                .unwrap()
                .is_empty()
        );

        let below = sealed_secrets("sync", secrets(&[("TOKEN", b"t0ps3cret")]), SECRETS - 1, &keys).unwrap_err();
        assert_eq!(below.code(), Code::FailedPrecondition);
        assert!(below.message().contains("`tasks add --secret`"), "{}", below.message());
        let keyless = sealed_secrets(
            "sync",
            secrets(&[("TOKEN", b"t0ps3cret")]),
            SECRETS,
            &Keyring::default(),
        );
        let keyless = keyless.unwrap_err();
        assert_eq!(keyless.code(), Code::FailedPrecondition);
        assert!(
            keyless.message().contains("[secrets] key_files"),
            "{}",
            keyless.message()
        );
        let large = vec![b'x'; MAX_SECRET_BYTES + 1];
        let e = sealed_secrets("sync", secrets(&[("BIG", &large)]), SECRETS, &keys).unwrap_err();
        assert!(
            e.message().contains("--secret BIG") && e.message().contains("at most"),
            "{}",
            e.message()
        );
        let e = sealed_secrets("sync", secrets(&[("no good", b"t0ps3cret")]), SECRETS, &keys).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let many: Vec<(String, Vec<u8>)> = (0..=MAX_SECRETS).map(|i| (format!("S{i}"), vec![1])).collect();
        let e = sealed_secrets("sync", many.into_iter().collect(), SECRETS, &keys).unwrap_err();
        assert!(e.message().contains("at most 16"), "{}", e.message());
        for e in [below, keyless] {
            assert!(!e.message().contains("t0ps3cret"));
        }
    }
}
