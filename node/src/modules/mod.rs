//! Task module bytes on each node: a content-addressed store, and the task
//! that fetches from peers the modules the cluster has deployed.

mod fetcher;
mod store;

pub use fetcher::spawn_fetcher;
pub use store::{ModuleStore, is_hash};
