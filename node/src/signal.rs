//! Waiting for the signals that ask a process to stop.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGTERM and SIGINT (Ctrl-C), caught from the moment this is installed:
/// a signal that arrives before anyone waits is not lost.
pub struct ShutdownSignal {
    term: Signal,
    interrupt: Signal,
}

impl ShutdownSignal {
    /// Starts catching SIGTERM and SIGINT.
    pub fn install() -> std::io::Result<Self> {
        Ok(ShutdownSignal {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves on the first SIGTERM or SIGINT.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// Resolves on the first SIGTERM or Ctrl-C after the call.
pub async fn shutdown_signal() {
    match ShutdownSignal::install() {
        Ok(mut signals) => signals.recv().await,
        Err(e) => {
            tracing::warn!("cannot catch SIGTERM ({e}); only Ctrl-C stops this process cleanly");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
