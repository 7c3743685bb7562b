//! The etcd API's callers, cached: loading a user and their memberships
//! for every call costs two queries, and etcd clients make many small
//! calls. An entry lives until the accounts change: every change of a
//! membership, a user or a tenant bumps the store's accounts key
//! ([`crate::store::ACCOUNTS_KEY`]), and a watch on it empties the cache,
//! so that a revoked member is refused within one watch round trip, on
//! every server process of a database. While the watch is down (starting,
//! or the store failing) nothing is cached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::auth::{AuthError, Subject};
use crate::store::Store;
use crate::store::types::{KeyRange, WatchRequest};

/// The cache, shared by every etcd service of a process.
#[derive(Clone, Default)]
pub(crate) struct Callers {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: Mutex<HashMap<i64, Subject>>,
    /// Bumped whenever the cache is emptied, so that a load that began
    /// before a change does not store what it read after the change was
    /// announced.
    generation: AtomicU64,
    /// Whether the watch is running (only then may entries be kept).
    live: AtomicBool,
}

impl Callers {
    /// The subject of `user_id`, from the cache or the store.
    pub(crate) async fn subject(&self, store: &Store, user_id: i64) -> Result<Subject, AuthError> {
        if let Some(subject) = self.lookup(user_id) {
            return Ok(subject);
        }
        let generation = self.inner.generation.load(Ordering::Acquire);
        let subject = Subject::load(store, user_id).await?;
        if self.inner.live.load(Ordering::Acquire) {
            let mut entries = self.entries();
            // Under the lock, so that no emptying slips in between.
            if self.inner.generation.load(Ordering::Acquire) == generation {
                entries.insert(user_id, subject.clone());
            }
        }
        Ok(subject)
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Subject>> {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lookup(&self, user_id: i64) -> Option<Subject> {
        if !self.inner.live.load(Ordering::Acquire) {
            return None;
        }
        self.entries().get(&user_id).cloned()
    }

    fn empty(&self) {
        let mut entries = self.entries();
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// Follows the accounts key until `shutdown`, emptying the cache on
    /// every change; when the watch fails, caching stops until it runs
    /// again.
    pub(crate) async fn follow(self, store: Store, shutdown: CancellationToken) {
        loop {
            let watch = store
                .watch(WatchRequest {
                    range: KeyRange::single(crate::store::ACCOUNTS_KEY),
                    start_revision: 0,
                    prev_kv: false,
                })
                .await;
            if let Ok(mut watch) = watch {
                self.empty();
                self.inner.live.store(true, Ordering::Release);
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        event = watch.next() => match event {
                            Some(Ok(_)) => self.empty(),
                            Some(Err(error)) => {
                                tracing::warn!(%error, "the watch on accounts failed; caching no callers until it is back");
                                break;
                            }
                            None => break,
                        },
                    }
                }
            }
            self.inner.live.store(false, Ordering::Release);
            self.empty();
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}
