//! Durable Raft storage in redb: the log, the vote, the state machine and its
//! snapshots, all in one database file under the node's data directory.

mod db;
mod event_log;
mod log_store;
mod log_tail;
mod log_writer;
mod state_machine;

pub use db::{RaftDb, StoreError};
pub use event_log::{EventLog, Page, Recorded};
pub use log_store::LogStore;
pub use state_machine::StateMachineStore;

#[cfg(test)]
pub(crate) mod format_fixtures_test;
#[cfg(test)]
mod suite_test;
