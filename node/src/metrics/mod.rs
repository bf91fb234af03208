//! What a node counts, for Prometheus: `/metrics` on the node's plain-HTTP
//! listener (`[metrics] listen`, default `127.0.0.1:9464`), with `/healthz`
//! and `/readyz` beside it (see [`http`]).
//!
//! Two kinds of figures:
//! - events, counted where they happen through the handles of [`Metrics`]
//!   (ticks, proposals, storage commits, failovers, leader changes);
//! - state, read from the node's replicated state and Raft at each scrape
//!   ([`scrape::Scrape`]): tasks by status, rollouts, Raft's term, indexes
//!   and replication lag.
//!
//! Names follow Prometheus' rules: the `baton_` prefix, base units
//! (seconds), `_total` counters, histograms with buckets, and no label per
//! task (module names and peers are few). The exposition format is
//! OpenMetrics text; `docs/metrics.md` lists every metric.

mod events;
pub mod grpc;
pub mod http;
mod readiness;
pub mod scrape;
pub mod tls_listener;

pub use events::{
    FailoverReason, Metrics, ModuleMetrics, ReplicationCall, ReplicationFailures, ReplicationLabels, TickOutcome,
    spawn_leader_watch,
};
pub use readiness::{Readiness, ReadinessInputs};
