//! Where a tick's `baton:task/secrets` calls find values: the task's
//! sealed secrets as this node last applied them, opened with this node's
//! keys at the call (so a rotation applied meanwhile is seen at once).

use std::sync::Arc;

use crate::runtime::SecretSource;
use crate::secrets::Keyring;
use crate::state::cluster::ClusterState;
use crate::state::member::NodeId;
use crate::store::StateMachineStore;

/// The secrets of one task on this node.
pub(crate) struct TaskSecrets {
    pub(crate) state_machine: StateMachineStore,
    pub(crate) keys: Arc<Keyring>,
    pub(crate) task: String,
    pub(crate) node: NodeId,
}

impl SecretSource for TaskSecrets {
    fn get(&self, name: &str) -> Result<Vec<u8>, String> {
        let sealed = self.state_machine.read(|s| find(s, &self.task, name))?;
        self.keys
            .open(&self.task, &sealed)
            .map_err(|e| format!("node {}: {e}", self.node))
    }
}

/// Task `task`'s secret `name` as sealed in `s`, or why there is none
/// (naming the secrets it has, never a value).
fn find(s: &ClusterState, task: &str, name: &str) -> Result<crate::state::secrets::SealedSecret, String> {
    let Some(record) = s.tasks.get(task) else {
        return Err(format!("task {task} is gone"));
    };
    let secrets = &record.spec.secrets;
    if let Some(secret) = secrets.iter().find(|s| s.name == name) {
        return Ok(secret.clone());
    }
    let names: Vec<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
    Err(match names.is_empty() {
        true => format!("task {task} has no secrets; give it one with `batonctl tasks add --secret {name}=...`"),
        false => format!("task {task} has no secret named {name}; it has {}", names.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::KEY_BYTES;
    use crate::state::tasks::TaskSpec;

    #[test]
    fn a_missing_secret_names_the_ones_the_task_has() {
        let keys = Keyring::of(&[[1; KEY_BYTES]]);
        let mut s = ClusterState::default();
        let mut spec = TaskSpec::counter_every_second("sync");
        spec.secrets.push(keys.seal("sync", "API_TOKEN", b"v").unwrap());
        s.tasks.add(spec);
        s.tasks.add(TaskSpec::counter_every_second("bare"));
        assert_eq!(
            keys.open("sync", &find(&s, "sync", "API_TOKEN").unwrap()).unwrap(),
            b"v"
        );
        let e = find(&s, "sync", "DB").unwrap_err();
        assert!(e.contains("no secret named DB; it has API_TOKEN"), "{e}");
        let e = find(&s, "bare", "DB").unwrap_err();
        assert!(e.contains("has no secrets"), "{e}");
        assert!(find(&s, "gone", "DB").unwrap_err().contains("gone"));
    }
}
