//! The heart's gRPC service: vouching for a node process's exit.

use std::sync::Arc;
use std::time::Duration;

use baton_proto::heart_server::Heart;
use baton_proto::{AwaitExitReply, AwaitExitRequest};
use tonic::{Request, Response, Status};

use super::ledger::Fate;
use super::shared::SharedLedger;

/// The longest a caller may be held waiting for an exit.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// Answers `AwaitExit` from the heart's ledger.
pub struct HeartService {
    ledger: Arc<SharedLedger>,
}

impl HeartService {
    pub fn new(ledger: Arc<SharedLedger>) -> Self {
        HeartService { ledger }
    }
}

#[tonic::async_trait]
impl Heart for HeartService {
    async fn await_exit(&self, request: Request<AwaitExitRequest>) -> Result<Response<AwaitExitReply>, Status> {
        let request = request.into_inner();
        if request.incarnation.is_empty() || request.incarnation.len() > 64 {
            return Err(Status::invalid_argument(
                "incarnation must be 1 to 64 characters: the one a heartbeat carried",
            ));
        }
        let wait = Duration::from_millis(u64::from(request.wait_ms)).min(MAX_WAIT);
        let reply = match self.ledger.await_exit(&request.incarnation, wait).await {
            Fate::Exited(how) => AwaitExitReply {
                exited: true,
                detail: how,
            },
            Fate::Running => AwaitExitReply {
                exited: false,
                detail: "still running".into(),
            },
            Fate::Unknown => AwaitExitReply {
                exited: false,
                detail: "not started by this heart".into(),
            },
        };
        Ok(Response::new(reply))
    }
}
