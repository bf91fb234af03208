//! Raft over gRPC: the peer channels, the openraft network, and building the
//! `Raft` handle from a node's config.

pub mod append_stream;
pub(crate) mod batching;
mod builder;
pub mod identity;
pub mod message_limits;
mod network;
mod peer_channels;
mod progress;
mod proposer;
pub mod snapshot_schedule;
pub mod snapshot_stream;

pub use builder::{openraft_config, start_raft};
pub use identity::{Misaddressed, Refusals, StorageIdentity};
pub use message_limits::{MAX_BATCH_BYTES, MAX_COMMAND_BYTES, PEER_MAX_MESSAGE_BYTES, encoded_len};
pub use network::GrpcNetwork;
pub use peer_channels::{PeerChannels, peer_client};
pub use progress::{Progress, RaftStall, STALL_AFTER_MS, spawn_progress_watch};
pub use proposer::{Committed, ProposeError, Proposer};
pub use snapshot_schedule::spawn_snapshot_schedule;
