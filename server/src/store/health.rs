//! Whether PostgreSQL answers. Without this, every request during an
//! outage would wait for the pool to give up connecting (its acquire
//! timeout) before failing. A monitor keeps one connection of its own and
//! pings it four times a second; when the ping fails the store is marked
//! down and every call fails at once with `Unavailable` (REST 503, etcd
//! UNAVAILABLE, `/readyz` 503), until a new connection succeeds, which is
//! tried four times a second. The pool itself replaces its dead
//! connections as they are next used (each is pinged before use).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use super::error::StoreError;

/// How often the database is pinged, and tried again while down.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long a ping or a connection attempt may take before the database
/// counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Whether the database answers.
#[derive(Debug, Default)]
pub(crate) struct Health {
    down: AtomicBool,
    /// Woken when the database goes down, so that requests already
    /// waiting for it give up at once.
    went_down: tokio::sync::Notify,
}

impl Health {
    /// `Unavailable` while the database is down.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(
                "the database does not answer; retrying".into(),
            ));
        }
        Ok(())
    }

    /// Waits until the database is seen to go down (for a request already
    /// on its way to it).
    pub(crate) async fn gone(&self) -> StoreError {
        let notified = self.went_down.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Err(down) = self.check() {
            return down;
        }
        notified.await;
        StoreError::Unavailable("the database stopped answering".into())
    }
}

async fn connect(url: &str) -> Option<sqlx::PgConnection> {
    match tokio::time::timeout(PROBE_TIMEOUT, sqlx::PgConnection::connect(url)).await {
        Ok(Ok(connection)) => Some(connection),
        _ => None,
    }
}

/// Follows the database at `url` until `shutdown`.
pub(crate) async fn run_monitor(
    url: String,
    health: std::sync::Arc<Health>,
    shutdown: CancellationToken,
) {
    let mut connection: Option<sqlx::PgConnection> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(PROBE_EVERY) => {}
        }
        let alive = match connection.as_mut() {
            Some(open) => matches!(
                tokio::time::timeout(PROBE_TIMEOUT, open.ping()).await,
                Ok(Ok(()))
            ),
            None => false,
        };
        if alive {
            if health.down.swap(false, Ordering::AcqRel) {
                tracing::info!("the database answers again");
            }
            continue;
        }
        connection = connect(&url).await;
        match connection {
            Some(_) => {
                if health.down.swap(false, Ordering::AcqRel) {
                    tracing::info!("the database answers again");
                }
            }
            None => {
                if !health.down.swap(true, Ordering::AcqRel) {
                    health.went_down.notify_waiters();
                    tracing::warn!("the database does not answer; failing requests until it does");
                }
            }
        }
    }
    if let Some(connection) = connection {
        let _ = connection.close().await;
    }
}
