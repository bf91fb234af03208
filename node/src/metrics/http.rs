//! The node's plain-HTTP listener (`[metrics] listen`): `/metrics` for
//! Prometheus, `/healthz` (the process serves and its Raft runs), `/readyz`
//! (it may run tasks: see [`Readiness`]) and the status page (every other
//! address, see [`crate::web`]).
//!
//! It is off the mutual-TLS port so that a scraper or a load balancer's
//! probe needs no client certificate. With `[metrics] tls = true` it
//! serves HTTPS with the node's certificate instead, and takes a client
//! certificate of the cluster CA when one is shown. It changes nothing in
//! the cluster but for the status page's manual steps, which need the
//! admin token (or over TLS the admin certificate), and by default listens
//! on loopback only.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::api::NodeContext;
use crate::metrics::Readiness;
use crate::metrics::scrape::Scrape;
use crate::metrics::tls_listener::{Client, TlsListener};
use crate::types::with_metrics;

/// The exposition format: OpenMetrics text (Prometheus reads it, and it
/// carries `info` metrics such as `baton_build_info`).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct Served {
    registry: Registry,
    context: Arc<NodeContext>,
}

/// Serves `/metrics`, `/healthz`, `/readyz` and, if `status_page` is some,
/// the status page (its manual steps unlocked by the token, if any) on
/// `listener` until `stop` fires (or is dropped); over TLS with `tls`
/// (see [`TlsListener`]), where the admin certificate unlocks the steps
/// too.
pub async fn serve(
    listener: TcpListener,
    context: Arc<NodeContext>,
    status_page: Option<Option<crate::web::AdminToken>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let mut registry = Registry::with_prefix("baton");
    context.metrics.register(&mut registry);
    registry.register(
        "raft_replication_failures",
        "Replication calls from this node as leader that failed or were given up, by peer and what they carried: append (entries; a stream given up counts once), heartbeat, stream_open, snapshot",
        context.channels.replication_failures(),
    );
    registry.register_collector(Box::new(Scrape::new(context.clone())));
    let port = listener.local_addr()?.port();
    let site = status_page.map(|token| crate::web::router(context.clone(), token, tls.is_some(), port));
    let served = Arc::new(Served { registry, context });
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(served);
    if let Some(site) = site {
        app = app.merge(site);
    }
    let app = app.into_make_service_with_connect_info::<Client>();
    let stopped = async {
        let _ = stop.await;
    };
    match tls {
        Some(config) => {
            axum::serve(TlsListener::new(listener, config)?, app)
                .with_graceful_shutdown(stopped)
                .await
        }
        None => axum::serve(listener, app).with_graceful_shutdown(stopped).await,
    }
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
