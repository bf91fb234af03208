//! Raft over gRPC: the peer channels, the openraft network, and building the
//! `Raft` handle from a node's config.

mod builder;
mod network;
mod peer_channels;
mod proposer;

pub use builder::{openraft_config, start_raft};
pub use network::GrpcNetwork;
pub use peer_channels::{PEER_MAX_MESSAGE_BYTES, PeerChannels};
pub use proposer::{Committed, ProposeError, Proposer};
