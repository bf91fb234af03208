//! Task calls the cluster tests share: deploy an example module, add
//! interval tasks, read tasks and their histories. They panic on errors, as
//! tests want.

use baton_proto::{AddTaskRequest, ListTasksRequest, TaskInfo, TaskRequest, TickInfo};
use batonctl::ClusterClient;
use batonctl::cmd::modules::signed_deploy;

use crate::{TestCluster, example_module};

/// Deploys example module `name`, signed with the cluster's key.
pub async fn deploy(cluster: &TestCluster, client: &ClusterClient, name: &str) {
    let key = cluster.local.signing_key().expect("the cluster's signing key");
    let request = signed_deploy(name.into(), example_module(name), &key);
    client
        .call_with(&request, |mut c, r| async move { c.deploy_module(r).await })
        .await
        .unwrap();
}

pub fn every(name: &str, module: &str, ms: u64, config: &str) -> AddTaskRequest {
    AddTaskRequest {
        name: name.into(),
        module: module.into(),
        every_ms: Some(ms),
        cron: None,
        config: config.as_bytes().to_vec(),
        skip_missed: false,
        max_restarts: 0,
        restart_window_ms: 0,
        allow_net: Vec::new(),
    }
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
