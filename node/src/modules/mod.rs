//! Task module bytes on each node: a content-addressed store, the task that
//! fetches from peers the modules the cluster has deployed, and module
//! signatures.

mod fetcher;
pub mod signing;
pub(crate) mod store;

pub use fetcher::spawn_fetcher;
pub use store::{ModuleStore, is_hash};
