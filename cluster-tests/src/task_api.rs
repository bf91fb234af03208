//! Task calls the cluster tests share: deploy an example module, add
//! interval tasks, read tasks and their histories. They panic on errors, as
//! tests want.

use baton_proto::{AddTaskRequest, DrainNodeRequest, ListTasksRequest, TaskInfo, TaskRequest, TickInfo};
use batonctl::ClusterClient;
use batonctl::cmd::modules::signed_deploy;
use batonctl::cmd::rollout::RolloutView;

use crate::{TestCluster, example_module};

/// Wall-clock milliseconds since the Unix epoch, as tick times are kept.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

/// Drains node `id` (its tasks move off, it gets none) or undrains it.
pub async fn set_drained(client: &ClusterClient, id: u64, drain: bool) {
    let request = DrainNodeRequest { id, drain };
    client
        .call_with(&request, |mut c, r| async move { c.drain_node(r).await })
        .await
        .expect("drain");
}

/// Deploys example module `name`, signed with the cluster's key, waiting
/// as `batonctl modules deploy` does (`TestCluster::deploy_client`; the
/// client argument is not used).
pub async fn deploy(cluster: &TestCluster, _client: &ClusterClient, name: &str) {
    let key = cluster.local.signing_key().expect("the cluster's signing key");
    let request = signed_deploy(name.into(), example_module(name), &key);
    cluster
        .deploy_client()
        .call_long(|mut c| {
            let request = request.clone();
            async move { c.deploy_module(request).await }
        })
        .await
        .unwrap();
}

pub fn every(name: &str, module: &str, ms: u64, config: &str) -> AddTaskRequest {
    batonctl::cmd::tasks::every_request(name, module, ms, config)
}

pub async fn add(client: &ClusterClient, request: AddTaskRequest) {
    client
        .call_with(&request, |mut c, r| async move { c.add_task(r).await })
        .await
        .unwrap();
}

pub async fn tasks(client: &ClusterClient) -> Vec<TaskInfo> {
    client
        .call(|mut c| async move { c.list_tasks(ListTasksRequest {}).await })
        .await
        .unwrap()
        .tasks
}

pub async fn task(client: &ClusterClient, name: &str) -> TaskInfo {
    let request = TaskRequest { name: name.into() };
    let reply = client
        .call_with(&request, |mut c, r| async move { c.show_task(r).await })
        .await
        .unwrap();
    reply.task.unwrap()
}

pub async fn history(client: &ClusterClient, name: &str) -> Vec<TickInfo> {
    let request = TaskRequest { name: name.into() };
    client
        .call_with(&request, |mut c, r| async move { c.task_history(r).await })
        .await
        .unwrap()
        .ticks
}

/// Waits (up to 30 s) until every task named in `names` is owned by a node
/// other than `from` and has committed a tick after `since_ms`.
pub async fn await_ticking_elsewhere(client: &ClusterClient, names: &[&str], from: u64, since_ms: u64) {
    crate::poll_async(
        std::time::Duration::from_secs(30),
        &format!("node {from}'s {} tasks to tick elsewhere", names.len()),
        || async {
            tasks(client)
                .await
                .iter()
                .filter(|t| names.contains(&t.name.as_str()))
                .all(|t| t.owner != from && t.last_tick_at_ms.is_some_and(|at| at > since_ms))
                .then_some(())
        },
    )
    .await;
}

/// Waits (up to 30 s) until every task named in `names` last committed a
/// tick on a node other than `from`, after `since_ms`. For hand-offs: the
/// old owner may commit the tick in flight after the hand-off starts, so
/// ownership alone does not say the task has ticked elsewhere.
pub async fn await_handed_off(client: &ClusterClient, names: &[&str], from: u64, since_ms: u64) {
    crate::poll_async(
        std::time::Duration::from_secs(30),
        &format!("node {from}'s {} handed-off tasks to tick elsewhere", names.len()),
        || async {
            for name in names {
                let ticks = history(client, name).await;
                if !ticks
                    .last()
                    .is_some_and(|t| t.node != from && t.committed_at_ms > since_ms)
                {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

/// Deploys example module `file` as a new version of module `name`, rolled
/// out with `settings`; returns the version recorded.
pub async fn release(
    cluster: &TestCluster,
    client: &ClusterClient,
    name: &str,
    file: &str,
    settings: baton_proto::RolloutSettings,
) -> u32 {
    release_bytes(cluster, client, name, example_module(file), settings).await
}

/// Deploys `component` as a new version of module `name`, rolled out with
/// `settings`, waiting as `batonctl modules deploy` does (the client
/// argument is not used); returns the version recorded.
pub async fn release_bytes(
    cluster: &TestCluster,
    _client: &ClusterClient,
    name: &str,
    component: Vec<u8>,
    settings: baton_proto::RolloutSettings,
) -> u32 {
    let key = cluster.local.signing_key().expect("the cluster's signing key");
    release_signed(&cluster.deploy_client(), &key, name, component, settings).await
}

/// Deploys `component`, signed with `key`, as a new version of module
/// `name`, rolled out with `settings`; returns the version recorded.
pub async fn release_signed(
    client: &ClusterClient,
    key: &baton_node::modules::signing::SigningKey,
    name: &str,
    component: Vec<u8>,
    settings: baton_proto::RolloutSettings,
) -> u32 {
    let request = baton_proto::DeployModuleRequest {
        rollout: Some(settings),
        ..signed_deploy(name.into(), component, key)
    };
    // The leader compiles the module before it answers, as `batonctl
    // modules deploy` waits for.
    let reply = client
        .call_long(|mut c| {
            let request = request.clone();
            async move { c.deploy_module(request).await }
        })
        .await
        .unwrap();
    assert!(reply.rollout_started, "deploying over {name} started no rollout");
    reply.module.unwrap().version
}

/// Pauses, resumes or aborts module `name`'s rollout.
pub async fn control_rollout(
    client: &ClusterClient,
    name: &str,
    action: baton_proto::RolloutAction,
) -> Result<(), batonctl::ClientError> {
    let request = baton_proto::ControlRolloutRequest {
        module: name.into(),
        action: action as i32,
    };
    client
        .call_with(&request, |mut c, r| async move { c.control_rollout(r).await })
        .await
        .map(|_| ())
}

/// Module `name`'s latest rollout, as `batonctl rollout status` sees it.
pub async fn rollout(client: &ClusterClient, name: &str) -> RolloutView {
    batonctl::cmd::rollout::status(client, name)
        .await
        .unwrap()
        .into_iter()
        .next()
        .expect("a rollout")
}

/// Waits (up to `timeout`) until module `name`'s rollout has ended.
pub async fn await_rollout_end(client: &ClusterClient, name: &str, timeout: std::time::Duration) -> RolloutView {
    crate::poll_async(timeout, &format!("the rollout of {name} to end"), || async {
        let view = rollout(client, name).await;
        (!view.is_live()).then_some(view)
    })
    .await
}

/// Waits (up to 30 s) until every task runs module version `version` and
/// has committed a tick with it.
pub async fn await_all_on_version(client: &ClusterClient, version: u32) {
    crate::poll_async(
        std::time::Duration::from_secs(30),
        &format!("every task to tick on version {version}"),
        || async {
            tasks(client)
                .await
                .iter()
                .all(|t| t.version == version && t.state_version == version && t.status == "running")
                .then_some(())
        },
    )
    .await;
}

/// Deploys `counter`, adds `n` counter tasks (`c000`, `c001`, ...) every
/// `period_ms`, and waits (up to 60 s) until every one has ticked twice and
/// every node of a 3-node cluster owns some; returns their names.
pub async fn start_counters(
    cluster: &TestCluster,
    client: &ClusterClient,
    n: usize,
    period_ms: u64,
) -> std::collections::BTreeSet<String> {
    use std::collections::BTreeSet;
    deploy(cluster, client, "counter").await;
    let names: BTreeSet<String> = (0..n).map(|i| format!("c{i:03}")).collect();
    for name in &names {
        add(client, every(name, "counter", period_ms, "")).await;
    }
    crate::poll_async(
        std::time::Duration::from_secs(60),
        "every counter ticking on every node",
        || async {
            let all = tasks(client).await;
            let owners: BTreeSet<u64> = all.iter().map(|t| t.owner).collect();
            (all.iter().all(|t| t.tick >= 2) && owners == BTreeSet::from([1, 2, 3])).then_some(())
        },
    )
    .await;
    names
}

/// Deploys `witnessed` and adds `n` tasks (`w00`, `w01`, ...) every
/// `period_ms` that call `witness` on every tick (granted its address), and
/// waits (up to 60 s) until every one has ticked twice; returns their names.
pub async fn start_witnessed(
    cluster: &TestCluster,
    client: &ClusterClient,
    witness: &crate::witness::Witness,
    n: usize,
    period_ms: u64,
) -> std::collections::BTreeSet<String> {
    use std::collections::BTreeSet;
    deploy(cluster, client, "witnessed").await;
    let addr = witness.addr().to_string();
    let names: BTreeSet<String> = (0..n).map(|i| format!("w{i:02}")).collect();
    for name in &names {
        let mut request = every(name, "witnessed", period_ms, &addr);
        request.allow_net = vec![addr.clone()];
        add(client, request).await;
    }
    crate::poll_async(
        std::time::Duration::from_secs(60),
        "every witnessed task ticking",
        || async {
            let all = tasks(client).await;
            let witnessed: Vec<&TaskInfo> = all.iter().filter(|t| names.contains(&t.name)).collect();
            (witnessed.len() == n && witnessed.iter().all(|t| t.tick >= 2)).then_some(())
        },
    )
    .await;
    names
}

/// What the witness saw of the tasks in `names`, checked against what the
/// cluster committed for them.
pub async fn witness_report(
    client: &ClusterClient,
    witness: &crate::witness::Witness,
    names: &std::collections::BTreeSet<String>,
) -> crate::witness_check::WitnessReport {
    let histories = crate::history::collect(client).await.expect("the committed histories");
    let witnessed: Vec<_> = histories.into_iter().filter(|h| names.contains(&h.name)).collect();
    crate::witness_check::check(&witness.runs(), &witnessed)
}
