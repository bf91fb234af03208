//! The node's plain-HTTP listener (`[metrics] listen`): `/metrics` for
//! Prometheus, `/healthz` (the process serves and its Raft runs) and
//! `/readyz` (it may run tasks: see [`Readiness`]).
//!
//! It is off the mutual-TLS port so that a scraper or a load balancer's
//! probe needs no client certificate; it serves nothing that changes the
//! cluster, and by default listens on loopback only.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::api::NodeContext;
use crate::metrics::scrape::Scrape;
use crate::types::{NodeId, with_metrics};

/// The exposition format: OpenMetrics text (Prometheus reads it, and it
/// carries `info` metrics such as `baton_build_info`).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long the epoch thread, which beats every 10 ms and ends ticks at
/// their budgets, may go quiet before the node is not ready.
const ENGINE_QUIET: Duration = Duration::from_secs(1);

struct Served {
    registry: Registry,
    context: Arc<NodeContext>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `stop`
/// fires (or is dropped).
pub async fn serve(
    listener: TcpListener,
    context: Arc<NodeContext>,
    stop: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let mut registry = Registry::with_prefix("baton");
    context.metrics.register(&mut registry);
    registry.register_collector(Box::new(Scrape::new(context.clone())));
    let served = Arc::new(Served { registry, context });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(served);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = stop.await;
        })
        .await
}

async fn metrics(State(served): State<Arc<Served>>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &served.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn healthz(State(served): State<Arc<Served>>) -> Response {
    match with_metrics(&served.context.raft, |m| m.running_state.clone()) {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("raft has stopped: {e}\n")).into_response(),
    }
}

async fn readyz(State(served): State<Arc<Served>>) -> Response {
    let readiness = Readiness::of(&served.context);
    match readiness.is_ready() {
        true => (StatusCode::OK, "ready\n").into_response(),
        false => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", readiness.reasons.join("; ")),
        )
            .into_response(),
    }
}

/// What readiness is decided from, read from the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessInputs {
    pub raft_running: bool,
    pub leader: Option<NodeId>,
    /// The commit index the leader gave with this node's last lease
    /// renewal (0: none yet).
    pub required_index: u64,
    pub applied_index: u64,
    /// Since the task engine's epoch thread last beat.
    pub engine_quiet: Duration,
    /// The node is shutting down (drained, handing leadership off).
    pub stopping: bool,
}

/// Whether the node may run tasks: it has a leader, has applied the log up
/// to the commit index it last heard from it (the rule its own lease uses
/// before a tick; see `supervision::heartbeat`), its task engine runs, and
/// it is not shutting down. Ready is what a load balancer or a rolling
/// restart waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Why it is not ready; empty when it is.
    pub reasons: Vec<String>,
}

impl Readiness {
    pub fn of(context: &NodeContext) -> Readiness {
        let (raft_running, leader) = with_metrics(&context.raft, |m| (m.running_state.is_ok(), m.current_leader));
        Readiness::decide(&ReadinessInputs {
            raft_running,
            leader,
            required_index: context.supervision.lease.required_index(),
            applied_index: context.state_machine.last_applied_index(),
            engine_quiet: context.engine.since_epoch_beat(),
            stopping: context.supervision.is_leaving() || context.supervision.is_stopping(),
        })
    }

    pub fn decide(inputs: &ReadinessInputs) -> Readiness {
        let mut reasons = Vec::new();
        if !inputs.raft_running {
            reasons.push("raft has stopped".to_string());
        }
        if inputs.stopping {
            reasons.push("the node is shutting down".to_string());
        }
        match (inputs.leader, inputs.required_index) {
            (None, _) => reasons.push("no leader is known".to_string()),
            (Some(leader), 0) => reasons.push(format!(
                "node {leader} leads, but has not renewed this node's lease yet"
            )),
            (Some(_), required) if inputs.applied_index < required => reasons.push(format!(
                "catching up: applied index {}, the leader's commit index was {required}",
                inputs.applied_index
            )),
            _ => {}
        }
        if inputs.engine_quiet > ENGINE_QUIET {
            reasons.push(format!(
                "the task engine's epoch thread has not run for {} ms",
                inputs.engine_quiet.as_millis()
            ));
        }
        Readiness { reasons }
    }

    pub fn is_ready(&self) -> bool {
        self.reasons.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> ReadinessInputs {
        ReadinessInputs {
            raft_running: true,
            leader: Some(1),
            required_index: 40,
            applied_index: 41,
            engine_quiet: Duration::from_millis(10),
            stopping: false,
        }
    }

    #[test]
    fn a_node_with_a_leader_caught_up_and_a_running_engine_is_ready() {
        assert!(Readiness::decide(&ready()).is_ready());
        let exactly = ReadinessInputs {
            applied_index: 40,
            ..ready()
        };
        assert!(Readiness::decide(&exactly).is_ready());
    }

    #[test]
    fn each_missing_condition_is_named() {
        let cases = [
            (
                ReadinessInputs {
                    leader: None,
                    ..ready()
                },
                "no leader is known",
            ),
            (
                ReadinessInputs {
                    required_index: 0,
                    ..ready()
                },
                "has not renewed this node's lease yet",
            ),
            (
                ReadinessInputs {
                    applied_index: 39,
                    ..ready()
                },
                "catching up: applied index 39, the leader's commit index was 40",
            ),
            (
                ReadinessInputs {
                    engine_quiet: Duration::from_secs(2),
                    ..ready()
                },
                "epoch thread has not run for 2000 ms",
            ),
            (
                ReadinessInputs {
                    stopping: true,
                    ..ready()
                },
                "shutting down",
            ),
            (
                ReadinessInputs {
                    raft_running: false,
                    ..ready()
                },
                "raft has stopped",
            ),
        ];
        for (inputs, reason) in cases {
            let readiness = Readiness::decide(&inputs);
            assert!(!readiness.is_ready(), "{inputs:?}");
            assert!(
                readiness.reasons.len() == 1 && readiness.reasons[0].contains(reason),
                "{:?}",
                readiness.reasons
            );
        }
    }
}
