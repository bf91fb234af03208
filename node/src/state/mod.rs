//! The replicated state's vocabulary: plain data and the rules over it, with
//! no tokio, tonic, openraft or redb inside.
//!
//! - [`cluster`]: the whole state and `apply`, the one function through
//!   which a command changes it.
//! - [`cluster_version`]: what every member can read, and when it rises.
//! - [`command`]: the commands and their responses.
//! - [`events`]: what an applied entry tells an operator (`batonctl events`).
//! - [`frozen`]: the state as a snapshot takes it, records shared.
//! - [`tasks`]: the task table and its rules (ownership, epochs, ticks);
//!   [`history`]: each task's recent ticks, kept compact; [`task_index`]
//!   and [`task_changes`]: views of the table kept as it changes.
//! - [`rollouts`] and `rollout_rules`: module releases and rollouts.
//! - [`member`]: what the membership records of a member.
//! - [`rejection`]: why a command was refused.
//! - [`secrets`]: a task's secrets, sealed.
//! - [`upgrades`]: a rolling upgrade of the node binary.

pub mod cluster;
pub mod cluster_version;
pub mod command;
pub mod events;
pub mod frozen;
pub mod history;
pub mod member;
pub mod rejection;
mod rollout_rules;
pub mod rollouts;
pub mod secrets;
pub mod task_changes;
pub mod task_index;
pub mod tasks;
pub mod upgrades;
