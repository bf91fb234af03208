//! The status page, served by every node on its plain-HTTP listener beside
//! `/metrics` (see `docs/status-page.md`): an overview, the tasks (filtered,
//! a page at a time, each with its last ticks as a strip), a task's page,
//! the nodes, and the modules with their rollouts and the node upgrade.
//!
//! - Server-rendered HTML with its style inline: no JavaScript framework,
//!   nothing fetched from elsewhere, readable without JavaScript.
//! - Live: a page follows server-sent events (`/live`) that carry its
//!   changing part whenever it changes.
//! - Read-only by default. With `[metrics] admin_token_file` set, a reader
//!   who signs in with that token may take manual steps (pause or resume a
//!   task, drain or undrain a node, pause, resume or abort a rollout or the
//!   node upgrade), through the same Control calls `batonctl` makes.

mod admin_token;
mod html;
mod pages;
mod site;
mod task_rows;

pub use admin_token::AdminToken;
pub use site::router;
pub use task_rows::{TaskFilter, TaskPage, task_page};
