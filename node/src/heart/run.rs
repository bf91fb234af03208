//! Running a heart: bind its port, serve its word on exits, and supervise
//! the node until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use baton_proto::heart_binaries_server::HeartBinariesServer;
use baton_proto::heart_server::HeartServer;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use super::binaries::Binaries;
use super::binaries_service::BinariesService;
use super::binary_store::StoreError;
use super::launcher::{LaunchOptions, supervise};
use super::service::HeartService;
use super::shared::SharedLedger;
use crate::config::NodeConfig;
use crate::tls::{TlsError, TlsMaterial};

/// Why a heart could not start.
#[derive(Debug, thiserror::Error)]
pub enum HeartError {
    #[error(
        "{0} has no [heart] table; add one with the heart's own port, like\n  [heart]\n  listen_addr = \"127.0.0.1:7101\""
    )]
    NoHeartTable(String),
    #[error("tls.{0}")]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}; is another heart running? change heart.listen_addr")]
    Bind { addr: String, source: std::io::Error },
    #[error("the heart's gRPC server failed: {0}")]
    Server(#[from] tonic::transport::Error),
    #[error("the heart's binaries: {0}")]
    Binaries(#[from] StoreError),
}

/// Runs the heart of the node configured by `config` until `shutdown`, then
/// stops the node. Returns the exit code the heart should exit with (the
/// node's, if it stopped a running one; see `launcher::supervise`).
pub async fn run(
    config: &NodeConfig,
    mut options: LaunchOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<i32, HeartError> {
    let heart = config
        .heart
        .as_ref()
        .ok_or_else(|| HeartError::NoHeartTable(options.config_path.display().to_string()))?;
    let tls = match &config.tls {
        Some(paths) if !config.insecure => Some(TlsMaterial::load(paths)?),
        _ => None,
    };
    let state_dir = heart.state_dir(&config.data_dir);
    let binaries = Arc::new(Binaries::open(
        &state_dir,
        heart.trusted(),
        options.node_binary.clone(),
    )?);
    let listener = TcpListener::bind(&heart.listen_addr)
        .await
        .map_err(|source| HeartError::Bind {
            addr: heart.listen_addr.clone(),
            source,
        })?;
    // Port 0 binds a free port (tests); the node learns the real one.
    options.heart_addr = match (&heart.advertise_addr, listener.local_addr()) {
        (Some(advertised), _) => advertised.clone(),
        (None, Ok(bound)) => bound.to_string(),
        (None, Err(_)) => heart.listen_addr.clone(),
    };
    let ledger = Arc::new(SharedLedger::default());
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)));
    if let Some(tls) = &tls {
        builder = builder.tls_config(tls.server_config())?;
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let router = builder
        .add_service(HeartServer::new(HeartService::new(ledger.clone())))
        .add_service(HeartBinariesServer::new(BinariesService::new(
            binaries.clone(),
            config.id,
            tls.is_some(),
        )));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rx.await;
    }));
    tracing::info!(
        node = config.id,
        addr = %options.heart_addr,
        restart = options.restart,
        binaries = %state_dir.display(),
        "heart serving"
    );
    let code = supervise(&options, ledger, binaries, shutdown).await;
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(result)) => result?,
        Ok(Err(e)) => tracing::warn!("heart server task failed: {e}"),
        Err(_) => tracing::warn!("heart server did not stop within 5 s"),
    }
    Ok(code)
}
