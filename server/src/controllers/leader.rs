//! Leader election through the store, so that among several `berth server`
//! processes on one database exactly one runs the controllers.
//!
//! The leader holds one key, [`LEADER_KEY`], attached to a store lease that
//! it keeps alive. Taking the key is a transaction that succeeds only when
//! the key does not exist; the key's create revision is the leader's
//! fencing token, which every controller write compares (see
//! [`super::fenced`]). When the leader dies its lease runs out, the store
//! deletes the key, and a standby takes it within about one TTL plus one
//! retry interval.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fenced::Fence;
use super::runtime::clock::{Clock, format_time};
use crate::store::types::{
    Compare, CompareOp, CompareTarget, KeyRange, LeaseOwner, Op, OpResponse, PutRequest, TxnRequest,
};
use crate::store::{Store, StoreError};

/// The key the leader holds; outside every tenant's prefix, so only the
/// platform admin can see it through the etcd API.
pub const LEADER_KEY: &str = "/registry/leases/berth-controllers";

/// Why a leadership call failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The lease could not be granted.
    #[error("granting the leader lease failed: {0}")]
    LeaseGrantFailed(StoreError),
    /// The leader key could not be read or written.
    #[error("reading or writing the leader key failed: {0}")]
    KeyAccessFailed(StoreError),
}

/// How leadership is sought and kept.
#[derive(Clone, Debug)]
pub struct ElectionSettings {
    /// The lease's TTL: how long a dead leader blocks a takeover.
    pub lease_ttl: Duration,
    /// How often the leader renews its lease (well under the TTL).
    pub renew_every: Duration,
    /// How often a standby looks whether the key is free.
    pub retry_every: Duration,
}

impl ElectionSettings {
    /// Renewal at a third of the TTL, as Kubernetes' leader election does
    /// roughly; a standby looks every second.
    pub fn with_ttl(lease_ttl: Duration) -> ElectionSettings {
        let lease_ttl = lease_ttl.max(Duration::from_secs(2));
        ElectionSettings {
            lease_ttl,
            renew_every: lease_ttl / 3,
            retry_every: Duration::from_secs(1),
        }
    }
}

/// One term of leadership.
#[derive(Clone, Debug)]
pub struct Leadership {
    /// The fence every controller write of this term carries.
    pub fence: Fence,
    /// The store lease the key hangs on.
    pub lease: i64,
}

/// How a term ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TermEnd {
    /// The process is shutting down.
    Shutdown,
    /// Leadership was lost; the reason says how.
    Lost(String),
}

/// Seeks and holds leadership for one process.
pub struct LeaderElection {
    store: Store,
    identity: String,
    settings: ElectionSettings,
    clock: std::sync::Arc<dyn Clock>,
}

impl LeaderElection {
    /// Election for the process called `identity` (shown in the key's
    /// value, for operators).
    pub fn new(
        store: Store,
        identity: String,
        settings: ElectionSettings,
        clock: std::sync::Arc<dyn Clock>,
    ) -> LeaderElection {
        LeaderElection {
            store,
            identity,
            settings,
            clock,
        }
    }

    /// This process's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this process is leader; `None` if `cancel` fires first.
    pub async fn acquire(&self, cancel: &CancellationToken) -> Option<Leadership> {
        loop {
            match self.try_acquire().await {
                Ok(Some(leadership)) => return Some(leadership),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "seeking leadership failed; retrying"),
            }
            tokio::select! {
                () = cancel.cancelled() => return None,
                () = tokio::time::sleep(self.settings.retry_every) => {}
            }
        }
    }

    /// Takes the leader key if it is free.
    pub async fn try_acquire(&self) -> Result<Option<Leadership>, LeaderError> {
        let held = self
            .store
            .get(LEADER_KEY.as_bytes(), 0)
            .await
            .map_err(LeaderError::KeyAccessFailed)?;
        if held.is_some() {
            return Ok(None);
        }
        let ttl = self.settings.lease_ttl.as_secs().max(1) as i64;
        let lease = self
            .store
            .lease_grant(0, ttl, LeaseOwner::Platform)
            .await
            .map_err(LeaderError::LeaseGrantFailed)?
            .id;
        let now = format_time(self.clock.now());
        let value = json!({"holder": self.identity, "acquireTime": now, "renewTime": now});
        let response = self
            .store
            .txn(TxnRequest {
                compares: vec![Compare {
                    range: KeyRange::single(LEADER_KEY),
                    op: CompareOp::Equal,
                    target: CompareTarget::CreateRevision(0),
                }],
                success: vec![Op::Put(PutRequest {
                    key: LEADER_KEY.into(),
                    value: value.to_string().into_bytes(),
                    lease,
                    ..PutRequest::default()
                })],
                failure: vec![],
            })
            .await;
        match response {
            Ok(response) if response.succeeded => {
                let create_revision = match response.responses.first() {
                    Some(OpResponse::Put(put)) => put.revision,
                    _ => response.revision,
                };
                Ok(Some(Leadership {
                    fence: Fence {
                        key: LEADER_KEY.to_owned(),
                        create_revision,
                    },
                    lease,
                }))
            }
            other => {
                // Someone else won the race; the unused lease would only
                // linger until its TTL.
                let _ = self.store.lease_revoke(lease, None).await;
                other.map(|_| None).map_err(LeaderError::KeyAccessFailed)
            }
        }
    }

    /// Keeps `leadership` alive until `cancel` fires or it is lost. It
    /// counts as lost as soon as the lease or the key is gone, or when no
    /// renewal succeeded for longer than the TTL less one renewal interval
    /// (the store may expire the lease any moment after that).
    pub async fn hold(&self, leadership: &Leadership, cancel: &CancellationToken) -> TermEnd {
        let mut last_renewed = Instant::now();
        let give_up_after = self
            .settings
            .lease_ttl
            .saturating_sub(self.settings.renew_every);
        let mut tick = tokio::time::interval(self.settings.renew_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return TermEnd::Shutdown,
                _ = tick.tick() => {}
            }
            match self.renew(leadership).await {
                Ok(()) => last_renewed = Instant::now(),
                Err(Renewal::Lost(reason)) => return TermEnd::Lost(reason),
                Err(Renewal::Failed(error)) => {
                    if last_renewed.elapsed() >= give_up_after {
                        return TermEnd::Lost(format!(
                            "no renewal succeeded for {:?}; last error: {error}",
                            last_renewed.elapsed()
                        ));
                    }
                    tracing::warn!(%error, "renewing leadership failed; retrying");
                }
            }
        }
    }

    /// Gives leadership up at once (revoking the lease deletes the key), so
    /// that a standby need not wait for the TTL.
    pub async fn release(&self, leadership: &Leadership) {
        if let Err(error) = self.store.lease_revoke(leadership.lease, None).await {
            tracing::warn!(%error, "releasing leadership failed; it ends with the lease's TTL");
        }
    }

    async fn renew(&self, leadership: &Leadership) -> Result<(), Renewal> {
        match self.store.lease_keep_alive(leadership.lease, None).await {
            Ok(_) => {}
            Err(StoreError::LeaseNotFound(_)) => {
                return Err(Renewal::Lost("the leader lease expired".into()));
            }
            Err(error) => return Err(Renewal::Failed(error)),
        }
        let value = json!({
            "holder": self.identity,
            "renewTime": format_time(self.clock.now()),
        });
        // Writing renewTime only while the key is still ours doubles as the
        // check that nobody deleted or replaced it.
        let response = self
            .store
            .txn(TxnRequest {
                compares: vec![Compare {
                    range: KeyRange::single(LEADER_KEY),
                    op: CompareOp::Equal,
                    target: CompareTarget::CreateRevision(leadership.fence.create_revision),
                }],
                success: vec![Op::Put(PutRequest {
                    key: LEADER_KEY.into(),
                    value: value.to_string().into_bytes(),
                    ignore_lease: true,
                    ..PutRequest::default()
                })],
                failure: vec![],
            })
            .await
            .map_err(Renewal::Failed)?;
        if response.succeeded {
            Ok(())
        } else {
            Err(Renewal::Lost(
                "the leader key was deleted or taken by another process".into(),
            ))
        }
    }
}

enum Renewal {
    Lost(String),
    Failed(StoreError),
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::controllers::runtime::clock::SystemClock;

    fn election(store: &Store, name: &str) -> LeaderElection {
        LeaderElection::new(
            store.clone(),
            name.into(),
            ElectionSettings::with_ttl(Duration::from_secs(10)),
            Arc::new(SystemClock),
        )
    }

    #[tokio::test]
    async fn only_one_process_holds_leadership_and_a_release_lets_another_take_it() {
        let (_dir, store) = crate::store::temporary().await;
        let first = election(&store, "first");
        let second = election(&store, "second");
        let term = first.try_acquire().await.unwrap().expect("the key is free");
        assert!(second.try_acquire().await.unwrap().is_none());
        first.release(&term).await;
        let next = second
            .try_acquire()
            .await
            .unwrap()
            .expect("the key was released");
        assert!(next.fence.create_revision > term.fence.create_revision);
        store.close().await;
    }

    #[tokio::test]
    async fn a_leader_whose_key_is_deleted_learns_it_has_lost() {
        let (_dir, store) = crate::store::temporary().await;
        let mut settings = ElectionSettings::with_ttl(Duration::from_secs(10));
        settings.renew_every = Duration::from_millis(20);
        let first = LeaderElection::new(
            store.clone(),
            "first".into(),
            settings,
            Arc::new(SystemClock),
        );
        let term = first.try_acquire().await.unwrap().unwrap();
        store
            .delete(crate::store::types::DeleteRequest {
                range: KeyRange::single(LEADER_KEY),
                prev_kv: false,
            })
            .await
            .unwrap();
        let end = tokio::time::timeout(
            Duration::from_secs(10),
            first.hold(&term, &CancellationToken::new()),
        )
        .await
        .unwrap();
        assert!(matches!(end, TermEnd::Lost(_)), "{end:?}");
        store.close().await;
    }
}
