//! Starting a node and shutting it down in order.
//!
//! Start-up: load TLS material, open the store, check the data directory
//! belongs to this cluster, bind, start Raft and the gRPC server, and form
//! the cluster if this is a fresh initial member. Shutdown, on the future
//! passed in: hand leadership to a follower, stop serving, shut Raft down
//! (its store is durable at every acknowledged write); all within the
//! configured grace period.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_proto::control_server::ControlServer;
use baton_proto::peer_server::PeerServer;
use baton_proto::raft_server::RaftServer;
use openraft::async_runtime::watch::WatchReceiver;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::api::{CONTROL_MAX_MESSAGE_BYTES, ControlService, Gate, NodeContext, PeerService, RaftService};
use crate::bootstrap::{Bootstrap, ClusterMismatch, decide};
use crate::config::NodeConfig;
use crate::modules::{ModuleStore, spawn_fetcher};
use crate::raft::{
    GrpcNetwork, PeerChannels, Proposer, openraft_config, spawn_progress_watch, spawn_snapshot_schedule, start_raft,
};
use crate::rollout::spawn_rollouts;
use crate::runtime::{RuntimeLimits, TaskEngine};
use crate::state::cluster_version::{OutOfRange, VersionRange};
use crate::store::{RaftDb, StoreError};
use crate::supervision::{Supervision, spawn_heartbeat, spawn_supervisor};
use crate::tasks::{spawn_forwarder, spawn_runner};
use crate::tls::{TlsError, TlsMaterial};
use crate::types::{NodeId, Raft};
use crate::versioning::spawn_cluster_version;

/// Why a node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("tls.{0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    ClusterMismatch(#[from] ClusterMismatch),
    #[error(transparent)]
    ClusterVersion(OutOfRange),
    #[error("cannot listen on {addr}: {source}; is another process using the port? change listen_addr")]
    Bind { addr: String, source: std::io::Error },
    #[error(
        "cannot listen on {addr} for metrics: {source}; is another process (another node on this machine?) \
         using the port? change [metrics] listen, or set [metrics] enabled = false"
    )]
    MetricsBind { addr: String, source: std::io::Error },
    #[error("metrics.admin_token_file: {0}")]
    AdminToken(String),
    #[error("secrets.key_files: {0}")]
    SecretKeys(String),
    #[error(
        "metrics.tls serves the node's own certificate, and this node has none (insecure = true): configure \
         [tls], or set metrics.tls = false"
    )]
    MetricsTlsWithoutCertificate,
    #[error("raft: {0}")]
    Raft(String),
    #[error("task runtime: {0}")]
    Runtime(String),
    #[error("gRPC server failed: {0}")]
    Server(#[from] tonic::transport::Error),
    #[error(
        "raft stopped: {0}; this node can no longer keep its log, so it stops (its tasks move to other nodes \
         once its lease ends); fix the cause (a full disk? free space in data_dir) and start it again: \
         what it acknowledged is on disk"
    )]
    RaftStopped(String),
    #[error("shutdown did not finish within the {0:?} grace period")]
    ShutdownTimedOut(Duration),
}

/// How long a stopping node lets its calls in flight finish once it has
/// stopped taking connections.
const SERVE_DRAIN: Duration = Duration::from_millis(500);

/// Runs a node until `shutdown` resolves, then shuts it down in order.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    let started_at = Instant::now();
    let cluster_id = config.cluster_id();
    let tls = match &config.tls {
        Some(paths) if !config.insecure => Some(TlsMaterial::load(paths)?),
        _ => None,
    };
    if tls.is_none() {
        tracing::warn!(
            "INSECURE: insecure = true, TLS is off; any process that reaches {} can control this cluster",
            config.listen_addr
        );
    }

    if config.testing.unsafe_disable_fencing {
        crate::fencing::disable_for_testing();
        tracing::error!(
            "UNSAFE: testing.unsafe_disable_fencing = true: tasks tick without a lease and stale commits are \
             accepted; a task will run twice after a partition. For Baton's own chaos tests only"
        );
    }
    if let Some(file) = &config.testing.stall_hand_offs_file {
        tracing::warn!(
            "testing.stall_hand_offs_file is set: while {} exists, this node's workers ignore hand-offs, so \
             the leader forces each after its patience. For Baton's own chaos tests only",
            file.display()
        );
    }
    let db = RaftDb::open(&config.data_dir)?;
    let stored = db.cluster_id().map_err(StoreError::Io)?;
    decide(stored.as_deref(), &cluster_id, config.is_initial_member(), false)?;
    if stored.is_none() {
        db.set_cluster_id(&cluster_id).map_err(StoreError::Io)?;
    }
    let versions = VersionRange::supported(config.testing.max_cluster_version);
    if let Some(refused) = versions.refuse(db.cluster_version().map_err(StoreError::Io)?, "data_dir") {
        return Err(NodeError::ClusterVersion(refused));
    }
    if config.testing.max_cluster_version.is_some() {
        tracing::warn!(
            "testing.max_cluster_version is set: this node supports {versions} only, as an older release \
             would. For Baton's own tests only"
        );
    }
    let modules = ModuleStore::open(&config.data_dir.join("modules")).map_err(StoreError::Io)?;
    let limits = RuntimeLimits {
        max_state_bytes: config.limits.max_state_bytes,
        ..RuntimeLimits::default()
    };
    let engine = TaskEngine::new(limits, Some(&config.data_dir.join("wasm-cache"))).map_err(NodeError::Runtime)?;

    // Read before anything binds, as the token file below: keys the node
    // cannot use stop it here, with what to do.
    let secret_keys =
        Arc::new(crate::secrets::Keyring::load(&config.secrets.key_files).map_err(NodeError::SecretKeys)?);
    // Read before anything binds: a config that names a token file the
    // node cannot use stops it here, with what to do.
    let (metrics_config, _) = config.metrics();
    let status_page = match (
        metrics_config.enabled && metrics_config.status_page,
        &metrics_config.admin_token_file,
    ) {
        (false, _) => None,
        (true, None) => Some(None),
        (true, Some(file)) => Some(Some(crate::web::AdminToken::load(file).map_err(NodeError::AdminToken)?)),
    };
    // `[metrics] tls`: the node's own certificate (validation refuses the
    // setting without one; so does this, for a config it never saw).
    let metrics_tls = match (&tls, metrics_config.enabled && metrics_config.tls) {
        (Some(material), true) => Some(Arc::new(material.metrics_server_config()?)),
        (None, true) => return Err(NodeError::MetricsTlsWithoutCertificate),
        (_, false) => None,
    };
    let listener = TcpListener::bind(&config.listen_addr)
        .await
        .map_err(|source| NodeError::Bind {
            addr: config.listen_addr.clone(),
            source,
        })?;
    let metrics_listener = match config.metrics() {
        (metrics, _) if !metrics.enabled => None,
        (metrics, chosen) => match TcpListener::bind(&metrics.listen).await {
            Ok(listener) => Some(listener),
            Err(source) if chosen => {
                return Err(NodeError::MetricsBind {
                    addr: metrics.listen,
                    source,
                });
            }
            Err(e) => {
                tracing::warn!(
                    "no metrics: cannot listen on {} (the default, as the config has no [metrics] table): {e}; \
                     give this node a port of its own with [metrics] listen (see docs/metrics.md)",
                    metrics.listen
                );
                None
            }
        },
    };
    let metrics = Arc::new(crate::metrics::Metrics::default());

    let channels = PeerChannels::new(config.id, cluster_id.clone(), tls.clone());
    let raft_config = openraft_config(&config).map_err(|e| NodeError::Raft(e.to_string()))?;
    let (raft, state_machine) = start_raft(
        config.id,
        raft_config,
        db.clone(),
        GrpcNetwork::new(channels.clone(), db.applied_version()),
        versions,
        &metrics,
    )
    .await?;

    let (incarnation, heart_addr) = crate::heart::incarnation_and_heart(&config);
    match &heart_addr {
        Some(heart) => tracing::info!("started by the heart at {heart} as incarnation {incarnation}"),
        None => tracing::info!(
            "no heart started this process (incarnation {incarnation}): if it dies, its tasks move when its \
             lease ends; run it under baton-heart to move them at once"
        ),
    }
    let binary = crate::heart::running_binary(&heart_addr);
    let heart = match (&heart_addr, &config.heart) {
        (Some(addr), Some(table)) => Some(crate::upgrade::HeartLink::new(
            config.id,
            addr.clone(),
            table.state_dir(&config.data_dir),
            table.trusted(),
            channels.clone(),
        )),
        _ => None,
    };
    let context = Arc::new(NodeContext {
        id: config.id,
        cluster_id: cluster_id.clone(),
        version: crate::VERSION.to_string(),
        versions,
        incarnation,
        heart_addr,
        binary,
        heart,
        started_at,
        storage: db.identity().clone(),
        refusals: Default::default(),
        raft: raft.clone(),
        proposer: Proposer::start(
            raft.clone(),
            metrics.proposal_duration.clone(),
            metrics.writes_abandoned.clone(),
        ),
        metrics,
        forwards: Default::default(),
        state_machine,
        channels,
        progress: Default::default(),
        engine,
        modules,
        last_contact: Mutex::new(Default::default()),
        supervision: Supervision::new(&config.timing, config.failover_bound_ms()),
        tick_health: Default::default(),
        observed: Default::default(),
        testing: config.testing.clone(),
        limits: config.limits.clone(),
        secret_keys,
        trusted_keys: config
            .modules
            .trusted_keys
            .iter()
            .filter_map(|k| crate::modules::signing::parse_public_key(k).ok())
            .collect(),
    });
    let fetcher = spawn_fetcher(context.clone());
    let heartbeat = spawn_heartbeat(context.clone());
    let supervisor = spawn_supervisor(context.clone());
    let runner = spawn_runner(context.clone());
    let forwarder = spawn_forwarder(context.clone());
    let rollouts = spawn_rollouts(context.clone());
    let upgrades = crate::upgrade::spawn_upgrades(context.clone());
    let prefetch = crate::upgrade::spawn_prefetch(context.clone());
    let cluster_version = spawn_cluster_version(context.clone());
    let progress = spawn_progress_watch(raft.clone(), context.progress.clone());
    let snapshots = spawn_snapshot_schedule(raft.clone(), config.id, config.timing.snapshot_after_entries);
    let gate = Gate::new(cluster_id.clone(), tls.is_none(), raft.clone());
    let (stop_serving_tx, stop_serving_rx) = tokio::sync::oneshot::channel::<()>();
    let server = serve(listener, tls.as_ref(), gate, context.clone(), stop_serving_rx)?;
    let server = tokio::spawn(server);
    let (stop_metrics_tx, stop_metrics_rx) = tokio::sync::oneshot::channel::<()>();
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    let metrics_server = metrics_listener.map(|l| {
        tokio::spawn(crate::metrics::http::serve(
            l,
            context.clone(),
            status_page,
            metrics_tls,
            stop_metrics_rx,
        ))
    });
    let leader_watch = crate::metrics::spawn_leader_watch(raft.clone(), context.metrics.clone());

    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    let mut formation = None;
    match decide(stored.as_deref(), &cluster_id, config.is_initial_member(), initialized)? {
        Bootstrap::Form => {
            let initial = config
                .cluster
                .initial_members
                .iter()
                .map(|m| (m.id, m.addr.clone()))
                .collect();
            // Longer than a grown cluster's leader, or its candidates, take
            // to call this node (see `formation::form`).
            let settle = Duration::from_millis(2 * config.timing.election_timeout_max_ms + config.timing.lease_ms);
            formation = Some(tokio::spawn(crate::formation::form(context.clone(), initial, settle)));
        }
        Bootstrap::Resume => {
            tracing::info!(node = config.id, cluster = %cluster_id, "resuming from {}", config.data_dir.display())
        }
        Bootstrap::AwaitJoin => tracing::info!(
            node = config.id, cluster = %cluster_id,
            "not an initial member; waiting to be added with `batonctl nodes add {} {}` (or, if it was a member \
             and its disk was lost, to be replaced with `batonctl nodes replace {}`)",
            config.id, config.advertised(), config.id
        ),
    }
    let transport = if tls.is_some() {
        "mutual TLS"
    } else {
        "INSECURE plain TCP, no authentication"
    };
    let scheme = if metrics_config.tls { "https" } else { "http" };
    let metrics_at = metrics_addr.map_or("off".to_string(), |a| format!("{scheme}://{a}/metrics"));
    tracing::info!(node = config.id, addr = %config.advertised(), version = crate::VERSION, transport, metrics = %metrics_at, "serving");

    let stopped = tokio::select! {
        _ = shutdown => None,
        why = raft_stopped(&raft) => Some(why),
    };
    if let Some(why) = stopped {
        // Fail-stop: nothing may tick or renew a lease on a node whose Raft
        // is gone, and nothing can be handed off through it.
        tracing::error!(node = config.id, "raft stopped: {why}; stopping this node");
        for task in [
            &fetcher,
            &supervisor,
            &runner,
            &rollouts,
            &upgrades,
            &prefetch,
            &cluster_version,
            &heartbeat,
            &progress,
            &snapshots,
            &leader_watch,
        ] {
            task.abort();
        }
        if let Some(formation) = &formation {
            formation.abort();
        }
        stop_ticks(&context).await;
        forwarder.abort();
        let _ = stop_serving_tx.send(());
        let _ = tokio::time::timeout(config.shutdown_grace(), server).await;
        if let Some(metrics_server) = &metrics_server {
            metrics_server.abort();
        }
        return Err(NodeError::RaftStopped(why));
    }
    let grace = config.shutdown_grace();
    tracing::info!(node = config.id, "shutting down (grace {grace:?})");
    let ordered = async {
        if let Some(formation) = &formation {
            formation.abort();
        }
        drain_for_shutdown(&context, grace / 3).await;
        fetcher.abort();
        supervisor.abort();
        runner.abort();
        rollouts.abort();
        upgrades.abort();
        prefetch.abort();
        cluster_version.abort();
        heartbeat.abort();
        progress.abort();
        snapshots.abort();
        leader_watch.abort();
        stop_ticks(&context).await;
        forwarder.abort();
        hand_off_leadership(&raft, config.id, grace / 3).await;
        let _ = stop_serving_tx.send(());
        // The server stops taking connections and lets the calls in flight
        // finish, but long-lived streams (a follower's renewals, a client's
        // watch) end only when their callers notice. After a moment the
        // node stops waiting for them rather than stay half-stopped
        // (refusing new calls) for seconds; they end with the process, and
        // their callers go elsewhere. Nothing in them needs finishing: a
        // write is acknowledged only once committed, and a renewal counts
        // only once a quorum confirms it.
        let mut server = server;
        match tokio::time::timeout(SERVE_DRAIN, &mut server).await {
            Ok(Ok(result)) => result?,
            Ok(Err(e)) => tracing::warn!("server task failed: {e}"),
            Err(_) => {
                tracing::info!("calls still open after {SERVE_DRAIN:?} are cut");
                server.abort();
            }
        }
        // Raft's storage fsyncs every write it acknowledges, so once Raft
        // has stopped there is nothing left to flush.
        raft.shutdown().await.map_err(|e| NodeError::Raft(e.to_string()))?;
        // Last, so that /readyz said "shutting down" throughout.
        let _ = stop_metrics_tx.send(());
        if let Some(mut metrics_server) = metrics_server
            && tokio::time::timeout(SERVE_DRAIN, &mut metrics_server).await.is_err()
        {
            metrics_server.abort();
        }
        Ok::<(), NodeError>(())
    };
    match tokio::time::timeout(grace, ordered).await {
        Ok(result) => {
            result?;
            tracing::info!(node = config.id, "stopped cleanly");
            Ok(())
        }
        Err(_) => Err(NodeError::ShutdownTimedOut(grace)),
    }
}

/// Resolves when Raft has stopped on its own, with why: a storage error (a
/// full or failing disk) is fatal to openraft. It waits on the server's
/// metrics (leader, vote, membership), which end with the core, and not on
/// all of them, which change with every write.
async fn raft_stopped(raft: &Raft) -> String {
    let mut server = raft.server_metrics();
    loop {
        let ended = server.changed().await.is_err();
        if let Err(fatal) = &crate::types::with_metrics(raft, |m| m.running_state.clone()) {
            return fatal.to_string();
        }
        if ended {
            return "its core ended".into();
        }
    }
}

/// Builds the gRPC server future on an already-bound listener.
fn serve(
    listener: TcpListener,
    tls: Option<&TlsMaterial>,
    gate: Gate,
    context: Arc<NodeContext>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<impl Future<Output = Result<(), NodeError>> + use<>, NodeError> {
    // HTTP/2 only (no `accept_http1`): the server then sends its settings
    // first, which batonctl waits for to know a connection took
    // (`ctl/src/connect.rs`; `cluster-tests/tests/cli.rs` checks it).
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.server_config())?;
    }
    let mut builder = builder.layer(crate::metrics::grpc::GrpcCounting::new(context.metrics.grpc.clone()));
    let max = crate::raft::PEER_MAX_MESSAGE_BYTES;
    let (peer_gate, raft_gate, admin_gate) = (gate.clone(), gate.clone(), gate);
    let raft_service = RaftServer::new(RaftService::new(
        context.raft.clone(),
        context.storage.clone(),
        context.refusals.clone(),
    ))
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let peer_service = PeerServer::new(PeerService::new(context.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let control_service =
        ControlServer::new(ControlService::new(context)).max_decoding_message_size(CONTROL_MAX_MESSAGE_BYTES);
    let router = builder
        .add_service(InterceptedService::new(raft_service, move |r: tonic::Request<()>| {
            raft_gate.check_raft(r)
        }))
        .add_service(InterceptedService::new(peer_service, move |r: tonic::Request<()>| {
            peer_gate.check_peer(r)
        }))
        .add_service(InterceptedService::new(control_service, move |r: tonic::Request<()>| {
            admin_gate.check_admin(r)
        }));
    // Our own listener (bound before Raft starts), so the server's
    // tcp_nodelay does not reach it: set it here, or Nagle's algorithm and
    // delayed ACKs add ~40 ms to small replies.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Ok(async move {
        router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop.await;
            })
            .await?;
        Ok(())
    })
}

/// Asks the leader to hand this node's tasks to others (each after its
/// current tick) and waits, up to `wait`, until it owns none. The node keeps
/// ticking and serving meanwhile: nothing is lost if the wait runs out, as
/// the tasks then move when the leader finds this process gone.
async fn drain_for_shutdown(context: &NodeContext, wait: Duration) {
    context.supervision.set_leaving();
    context.supervision.wake.notify_one();
    let owned = || {
        context
            .state_machine
            .read(|s| s.tasks.index().running_on(Some(context.id)).count())
    };
    let before = owned();
    if before == 0 {
        return;
    }
    tracing::info!("handing off {before} task(s) before shutting down");
    let deadline = Instant::now() + wait;
    let mut changes = context.state_machine.subscribe();
    while owned() > 0 && Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_millis(50), changes.changed()).await;
    }
    match owned() {
        0 => tracing::info!("handed off all {before} task(s)"),
        left => tracing::warn!("{left} task(s) not handed off within {wait:?}; they move when this node is gone"),
    }
}

/// Stops every tick in flight (their fences refuse, and the engine
/// interrupts them within an epoch) and waits until none runs: a tick must
/// not act on the world after this node's listener has closed, which peers
/// may take as a sign that the process is gone.
async fn stop_ticks(context: &NodeContext) {
    context.supervision.stop_ticking();
    if !context.supervision.ticks_stopped(Duration::from_secs(2)).await {
        tracing::warn!("a tick is still running 2 s after it was told to stop");
    }
}

/// If this node leads, hands leadership to the most caught-up voter and
/// waits (up to `wait`) for it to take over, so the cluster does not sit
/// through an election timeout when a leader stops on purpose.
async fn hand_off_leadership(raft: &Raft, self_id: NodeId, wait: Duration) {
    let metrics = crate::types::metrics(raft);
    if metrics.current_leader != Some(self_id) {
        return;
    }
    let voters = metrics
        .membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != self_id);
    let matched = |id: &NodeId| {
        metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(id))
            .and_then(|l| l.as_ref())
            .map(|l| l.index)
    };
    let Some(successor) = voters.max_by_key(|id| matched(id)) else {
        return;
    };
    if raft.trigger().transfer_leader(successor).await.is_err() {
        return;
    }
    let mut watch = raft.metrics();
    let _ = tokio::time::timeout(wait, async {
        loop {
            if watch.borrow_watched().current_leader.is_some_and(|l| l != self_id) {
                tracing::info!("handed leadership to node {successor}");
                return;
            }
            if watch.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
}
