//! SIGINT and SIGTERM, listened for from the very start of `server start`, so that a
//! signal that arrives while Postgres is still starting also ends in a clean stop.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// Counts the shutdown signals received so far.
#[derive(Clone)]
pub struct Shutdown {
    count: watch::Receiver<u32>,
}

impl Shutdown {
    /// Installs the handlers now (inside the runtime); from here on SIGINT and SIGTERM no
    /// longer kill the process but are counted.
    pub fn listen() -> Result<Shutdown, String> {
        let install = |kind: SignalKind| {
            signal(kind).map_err(|e| format!("could not listen for shutdown signals: {e}"))
        };
        let mut interrupt = install(SignalKind::interrupt())?;
        let mut terminate = install(SignalKind::terminate())?;
        let (tx, count) = watch::channel(0u32);
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    r = interrupt.recv() => r,
                    r = terminate.recv() => r,
                };
                if received.is_none() {
                    break;
                }
                tx.send_modify(|n| *n += 1);
            }
        });
        Ok(Shutdown { count })
    }

    /// Whether a shutdown was asked for.
    pub fn requested(&self) -> bool {
        *self.count.borrow() > 0
    }

    /// Resolves once `n` signals have arrived (1: stop gracefully, 2: stop now).
    pub async fn signalled(&self, n: u32) {
        let mut count = self.count.clone();
        if count.wait_for(|c| *c >= n).await.is_err() {
            // The listener is gone: no signal will ever come.
            std::future::pending::<()>().await;
        }
    }
}
