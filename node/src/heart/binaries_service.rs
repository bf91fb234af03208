//! The heart's `HeartBinaries` gRPC service: staging a signed node binary,
//! trying it, making it permanent, and saying what runs. Only the heart's
//! own node and the admin may call it (see [`only_own_node_or_admin`]).

use std::sync::Arc;
use std::time::Duration;

use baton_proto::heart_binaries_server::HeartBinaries;
use baton_proto::{
    HeartBinary, HeartStatusReply, HeartStatusRequest, MakePermanentReply, MakePermanentRequest, StageBinaryChunk,
    StageBinaryReply, TryBinaryReply, TryBinaryRequest,
};
use tonic::{Request, Response, Status, Streaming};

use super::binaries::{Binaries, BinariesError};
use super::binary_store::{SignedBinary, StoreError};
use super::slots::BinaryId;
use crate::modules::signing::SigningError;
use crate::tls::{IdentityCache, PeerIdentity};
use crate::types::{NodeId, now_ms};

/// See the module docs.
pub struct BinariesService {
    binaries: Arc<Binaries>,
}

impl BinariesService {
    pub fn new(binaries: Arc<Binaries>) -> Self {
        BinariesService { binaries }
    }
}

/// The interceptor of the service: with TLS, the caller's certificate must
/// name this heart's node or the admin.
pub fn only_own_node_or_admin(
    node: NodeId,
    tls: bool,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    let identities = Arc::new(IdentityCache::default());
    move |request: Request<()>| {
        if !tls {
            return Ok(request);
        }
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("a client certificate from the cluster CA is required"))?;
        match identities.identify(&certs) {
            Some(PeerIdentity::Admin) => Ok(request),
            Some(PeerIdentity::Node(id)) if id == node => Ok(request),
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
        let mut chunks = request.into_inner();
        let first = chunks
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("no chunk was sent; the first carries the binary's header"))?;
        let header = first
            .header
            .ok_or_else(|| Status::invalid_argument("the first chunk must carry the binary's header"))?;
        let header = SignedBinary {
            hash: header.hash,
            version: header.version,
            signer: header.signer,
            signature: header.signature,
            size: header.size,
        };
        let binaries = self.binaries.clone();
        let staging = blocking(move || Ok(binaries.store().stage(header, binaries.trusted())?)).await?;
        let Some(mut staging) = staging else {
            return Ok(Response::new(StageBinaryReply { stored: false }));
        };
        staging
            .write(&first.data)
            .map_err(|e| status_of(BinariesError::Store(e)))?;
        while let Some(chunk) = chunks.message().await? {
            if chunk.header.is_some() {
                return Err(Status::invalid_argument("only the first chunk may carry a header"));
            }
            staging
                .write(&chunk.data)
                .map_err(|e| status_of(BinariesError::Store(e)))?;
        }
        let id = blocking(move || Ok(staging.finish()?)).await?;
        tracing::info!("staged node binary {id}");
        Ok(Response::new(StageBinaryReply { stored: true }))
    }

    async fn try_binary(&self, request: Request<TryBinaryRequest>) -> Result<Response<TryBinaryReply>, Status> {
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
        let request = request.into_inner();
        let binaries = self.binaries.clone();
        blocking(move || binaries.make_permanent(&request.hash)).await?;
        Ok(Response::new(MakePermanentReply {}))
    }

    async fn status(&self, _request: Request<HeartStatusRequest>) -> Result<Response<HeartStatusReply>, Status> {
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
        }))
    }
}
