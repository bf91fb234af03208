//! The heart's `HeartBinaries` gRPC service: staging a signed node binary,
//! trying it, making it permanent or reverting it, and saying what runs.
//! Only the heart's own node and the admin may stage, try or make a binary
//! permanent; any member may ask for the status (the leader reads why a
//! trial was reverted) or revert a trial (the safe direction, for when the
//! node itself does not answer).

use std::sync::Arc;
use std::time::Duration;

use baton_proto::heart_binaries_server::HeartBinaries;
use baton_proto::{
    HeartBinary, HeartStatusReply, HeartStatusRequest, MakePermanentReply, MakePermanentRequest, RevertTrialReply,
    RevertTrialRequest, StageBinaryChunk, StageBinaryReply, TryBinaryReply, TryBinaryRequest,
};
use tonic::{Request, Response, Status, Streaming};

use super::binaries::{Binaries, BinariesError};
use super::binary_store::{SignedBinary, Staging, StoreError};
use super::slots::BinaryId;
use crate::modules::signing::SigningError;
use crate::tls::{IdentityCache, PeerIdentity};
use crate::types::{NodeId, now_ms};

/// See the module docs.
pub struct BinariesService {
    binaries: Arc<Binaries>,
    /// The heart's node.
    node: NodeId,
    /// Callers are checked by their certificates (else anyone may call).
    tls: bool,
    identities: IdentityCache,
}

impl BinariesService {
    pub fn new(binaries: Arc<Binaries>, node: NodeId, tls: bool) -> Self {
        BinariesService {
            binaries,
            node,
            tls,
            identities: IdentityCache::default(),
        }
    }

    /// With TLS, the caller's certificate must name this heart's node or the
    /// admin; with `any_member`, any node of the cluster CA will do.
    fn check<T>(&self, request: &Request<T>, any_member: bool) -> Result<(), Status> {
        if !self.tls {
            return Ok(());
        }
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("a client certificate from the cluster CA is required"))?;
        let node = self.node;
        match self.identities.identify(&certs) {
            Some(PeerIdentity::Admin) => Ok(()),
            Some(PeerIdentity::Node(id)) if id == node || any_member => Ok(()),
            Some(PeerIdentity::Node(id)) => Err(Status::permission_denied(format!(
                "node {id} cannot change the binaries of node {node}'s heart; only node {node} or the admin can"
            ))),
            None => Err(Status::permission_denied(
                "the client certificate names neither a node nor the admin; use a certificate from `batonctl certs init`",
            )),
        }
    }
}

fn status_of(error: BinariesError) -> Status {
    let message = error.to_string();
    match error {
        BinariesError::Store(StoreError::Signing(SigningError::NoTrustedKeys(..))) => {
            Status::failed_precondition(message)
        }
        BinariesError::Store(StoreError::Signing(_)) => Status::permission_denied(message),
        BinariesError::Store(StoreError::Missing(_)) => Status::not_found(message),
        BinariesError::Store(
            StoreError::BadHash(_)
            | StoreError::BadVersion(_)
            | StoreError::Size { .. }
            | StoreError::Length { .. }
            | StoreError::Hash { .. },
        )
        | BinariesError::Deadline => Status::invalid_argument(message),
        BinariesError::Store(StoreError::Io { .. } | StoreError::NewerFormat { .. } | StoreError::Corrupt { .. }) => {
            Status::internal(message)
        }
        BinariesError::Slot(_) | BinariesError::NotRunning(_) => Status::failed_precondition(message),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BinariesError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(status_of),
        Err(e) => Err(Status::internal(format!("the heart's worker failed: {e}"))),
    }
}

fn binary(id: &BinaryId) -> HeartBinary {
    HeartBinary {
        hash: id.hash.clone(),
        version: id.version.clone(),
    }
}

#[tonic::async_trait]
impl HeartBinaries for BinariesService {
    async fn stage_binary(
        &self,
        request: Request<Streaming<StageBinaryChunk>>,
    ) -> Result<Response<StageBinaryReply>, Status> {
        self.check(&request, false)?;
        let mut chunks = request.into_inner();
        let first = chunks
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("no chunk was sent; the first carries the binary's header"))?;
        let header = first
            .header
            .ok_or_else(|| Status::invalid_argument("the first chunk must carry the binary's header"))?;
        let header = SignedBinary::from(header);
        let binaries = self.binaries.clone();
        let staging = blocking(move || Ok(binaries.store().stage(header, binaries.trusted())?)).await?;
        let Some(staging) = staging else {
            return Ok(Response::new(StageBinaryReply { stored: false }));
        };
        // Writes (and the syncs among them) off the async threads, which
        // answer status, try and revert meanwhile.
        let write = |mut staging: Staging, data: Vec<u8>| {
            blocking(move || {
                staging.write(&data)?;
                Ok(staging)
            })
        };
        let mut staging = write(staging, first.data).await?;
        while let Some(chunk) = chunks.message().await? {
            if chunk.header.is_some() {
                return Err(Status::invalid_argument("only the first chunk may carry a header"));
            }
            staging = write(staging, chunk.data).await?;
        }
        let id = blocking(move || Ok(staging.finish()?)).await?;
        tracing::info!("staged node binary {id}");
        Ok(Response::new(StageBinaryReply { stored: true }))
    }

    async fn try_binary(&self, request: Request<TryBinaryRequest>) -> Result<Response<TryBinaryReply>, Status> {
        self.check(&request, false)?;
        let request = request.into_inner();
        let binaries = self.binaries.clone();
        let deadline = Duration::from_millis(request.deadline_ms);
        blocking(move || binaries.try_binary(&request.hash, deadline)).await?;
        Ok(Response::new(TryBinaryReply {}))
    }

    async fn make_permanent(
        &self,
        request: Request<MakePermanentRequest>,
    ) -> Result<Response<MakePermanentReply>, Status> {
        self.check(&request, false)?;
        let request = request.into_inner();
        let binaries = self.binaries.clone();
        blocking(move || binaries.make_permanent(&request.hash)).await?;
        Ok(Response::new(MakePermanentReply {}))
    }

    async fn revert_trial(&self, request: Request<RevertTrialRequest>) -> Result<Response<RevertTrialReply>, Status> {
        self.check(&request, true)?;
        let request = request.into_inner();
        let reason = match request.reason.trim() {
            "" => "reverted on request".to_string(),
            reason => reason.chars().take(1000).collect(),
        };
        let binaries = self.binaries.clone();
        let reverted = blocking(move || Ok(binaries.revert_trial(&request.hash, reason).is_some())).await?;
        Ok(Response::new(RevertTrialReply { reverted }))
    }

    async fn status(&self, request: Request<HeartStatusRequest>) -> Result<Response<HeartStatusReply>, Status> {
        self.check(&request, true)?;
        let status = self.binaries.status();
        let slots = &status.slots;
        let (running_hash, running_incarnation) = match &status.running {
            Some(running) => (running.boot.label().to_string(), running.incarnation.clone()),
            None => (String::new(), String::new()),
        };
        Ok(Response::new(HeartStatusReply {
            permanent: slots.permanent.as_ref().map(binary),
            trial: slots.trial.as_ref().map(|t| binary(&t.binary)),
            trial_ms_left: slots
                .trial
                .as_ref()
                .map(|t| t.deadline_unix_ms.saturating_sub(now_ms()))
                .unwrap_or(0),
            running_hash,
            running_incarnation,
            last_revert: slots
                .last_revert
                .as_ref()
                .map(|r| format!("{}: {}", r.binary, r.reason))
                .unwrap_or_default(),
            installed: status.installed.display().to_string(),
            last_revert_hash: slots
                .last_revert
                .as_ref()
                .map(|r| r.binary.hash.clone())
                .unwrap_or_default(),
            last_revert_at_ms: slots.last_revert.as_ref().map_or(0, |r| r.at_unix_ms),
            now_ms: now_ms(),
            held: self.binaries.store().held(),
            lists_held: true,
        }))
    }
}
