//! Where a tick's `baton:task/secrets` calls find values: the task's
//! sealed secrets as this node last applied them, opened with this node's
//! keys at the call (so a rotation or a new value applied meanwhile is seen
//! at once), for the task the tick runs for only: one removed and added
//! again under its name with another module, config or grants is another
//! task, whose secrets this tick's module, config and grants must not get.

use std::sync::Arc;

use crate::runtime::SecretSource;
use crate::secrets::Keyring;
use crate::state::cluster::ClusterState;
use crate::state::member::NodeId;
use crate::state::secrets::SealedSecret;
use crate::state::tasks::TaskSpec;
use crate::store::StateMachineStore;

/// The secrets of one task on this node.
pub(crate) struct TaskSecrets {
    pub(crate) state_machine: StateMachineStore,
    pub(crate) keys: Arc<Keyring>,
    /// The task as the worker running the tick found it.
    pub(crate) spec: Arc<TaskSpec>,
    pub(crate) node: NodeId,
}

impl SecretSource for TaskSecrets {
    fn get(&self, name: &str) -> Result<Vec<u8>, String> {
        let sealed = self.state_machine.read(|s| find(s, &self.spec, name))?;
        self.keys
            .open(&self.spec.name, &sealed)
            .map_err(|e| format!("node {}: {e}", self.node))
    }
}

/// The secret `name` of the task `spec` describes, as sealed in `s`, or
/// why there is none (naming the secrets it has, never a value).
fn find(s: &ClusterState, spec: &TaskSpec, name: &str) -> Result<SealedSecret, String> {
    let task = &spec.name;
    let Some(record) = s.tasks.get(task).filter(|t| t.spec.same_task_as(spec)) else {
        return Err(format!(
            "task {task} is not as this tick found it (removed, or added again otherwise, since): its secrets are \
             not this tick's"
        ));
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

    #[test]
    fn a_missing_secret_names_the_ones_the_task_has() {
        let keys = Keyring::of(&[[1; KEY_BYTES]]);
        let mut s = ClusterState::default();
        let mut spec = TaskSpec::counter_every_second("sync");
        spec.secrets.push(keys.seal("sync", "API_TOKEN", b"v").unwrap());
        s.tasks.add(spec.clone());
        let bare = TaskSpec::counter_every_second("bare");
        s.tasks.add(bare.clone());
        assert_eq!(keys.open("sync", &find(&s, &spec, "API_TOKEN").unwrap()).unwrap(), b"v");
        let e = find(&s, &spec, "DB").unwrap_err();
        assert!(e.contains("no secret named DB; it has API_TOKEN"), "{e}");
        let e = find(&s, &bare, "DB").unwrap_err();
        assert!(e.contains("has no secrets"), "{e}");
        assert!(
            find(&s, &TaskSpec::counter_every_second("gone"), "DB")
                .unwrap_err()
                .contains("removed")
        );
    }

    #[test]
    fn a_task_added_again_differently_does_not_give_its_secrets_to_the_tick_of_the_one_before() {
        let keys = Keyring::of(&[[1; KEY_BYTES]]);
        let mut s = ClusterState::default();
        let mut before = TaskSpec::counter_every_second("sync");
        before.config = br#"{"url": "https://old.example"}"#.to_vec();
        before.secrets.push(keys.seal("sync", "API_TOKEN", b"old").unwrap());
        s.tasks.add(before.clone());
        // Resealed by a rotation: still the same task.
        let mut resealed = before.clone();
        resealed.secrets[0] = Keyring::of(&[[2; KEY_BYTES]])
            .seal("sync", "API_TOKEN", b"old")
            .unwrap();
        assert!(before.same_task_as(&resealed));
        // Removed, and added again with another config and value.
        s.tasks.remove("sync");
        let mut after = TaskSpec::counter_every_second("sync");
        after.config = br#"{"url": "https://new.example"}"#.to_vec();
        after.secrets.push(keys.seal("sync", "API_TOKEN", b"new").unwrap());
        s.tasks.add(after.clone());
        assert!(!before.same_task_as(&after));
        let e = find(&s, &before, "API_TOKEN").unwrap_err();
        assert!(e.contains("not as this tick found it"), "{e}");
        assert_eq!(
            keys.open("sync", &find(&s, &after, "API_TOKEN").unwrap()).unwrap(),
            b"new"
        );
    }
}
