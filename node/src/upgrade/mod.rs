//! The rolling upgrade of the node binary, the node's side: the link to its
//! own heart (`heart_link`), and the leader's driver that moves one node at
//! a time through the phases the replicated state records
//! ([`crate::state::upgrades`]): drain, swap through the node's heart,
//! come back caught up, stay healthy, make permanent.

pub mod decide;
mod driver;
pub(crate) mod heart_link;

pub use driver::spawn_upgrades;
pub use heart_link::{HeartLink, spawn_prefetch, swap};
