//! The gRPC services a node serves, all on one mutual-TLS port: Raft and
//! Peer for other nodes, Control for `batonctl`.

mod binary_calls;
mod context;
mod control_service;
mod errors;
mod gate;
mod log_calls;
pub mod member_probe;
mod module_calls;
mod peer_service;
mod raft_service;
mod replace_node;
mod secret_calls;
mod stalls;
mod task_calls;

pub use context::NodeContext;
pub use control_service::ControlService;
#[cfg(test)]
pub(crate) use errors::propose_error;
pub use errors::{MAX_KEY_BYTES, MAX_VALUE_BYTES, rejected};
pub use gate::Gate;
pub use member_probe::{probe, probe_members};
pub use peer_service::PeerService;
pub use raft_service::RaftService;

/// Largest control request a node accepts: a module deploy is the largest,
/// a module of up to [`crate::runtime::MAX_MODULE_BYTES`] and its name and
/// signature.
pub const CONTROL_MAX_MESSAGE_BYTES: usize = crate::runtime::MAX_MODULE_BYTES + 1024 * 1024;
