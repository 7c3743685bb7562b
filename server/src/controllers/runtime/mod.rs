//! The controller runtime, in the shape of kube-rs's: reflectors keep caches
//! of each kind ([`reflector`]); their changes become keys in a
//! deduplicating work queue ([`queue`]); workers run
//! `reconcile(key) -> Action` and requeue on the answer, with capped
//! exponential back-off on errors. A reconcile never learns why it was
//! called, so it must read the whole desired state from the caches and be
//! idempotent. Nothing reconciles before every cache it reads has loaded.
//!
//! - [`clock`]: the injectable clock.
//! - [`queue`]: the work queue.
//! - [`reflector`]: caches, reflectors and object keys.
//! - [`metrics`]: the Prometheus figures.

pub mod clock;
pub mod metrics;
pub mod queue;
pub mod reflector;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_api::objects::{Kind, Resource};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::store::types::Revision;

pub use clock::{Clock, FakeClock, SystemClock};
pub use metrics::ControllerMetrics;
pub use queue::WorkQueue;
pub use reflector::{Cache, Change, Informer, Notice, ObjectKey, Reflector, Subscription};

/// The first back-off after a failed reconcile; it doubles per failure in a
/// row, up to [`BACKOFF_CAP`].
pub const BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// The longest back-off after failed reconciles.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// What to do with a key after reconciling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing until something changes.
    Done,
    /// Reconcile again after this long, even if nothing changes (for
    /// decisions that depend on time).
    RequeueAfter(Duration),
}

impl Action {
    /// The sooner of two actions: `RequeueAfter` wins over `Done`.
    pub fn sooner(self, other: Action) -> Action {
        match (self, other) {
            (Action::RequeueAfter(a), Action::RequeueAfter(b)) => Action::RequeueAfter(a.min(b)),
            (Action::RequeueAfter(a), Action::Done) | (Action::Done, Action::RequeueAfter(a)) => {
                Action::RequeueAfter(a)
            }
            (Action::Done, Action::Done) => Action::Done,
        }
    }
}

/// A controller's decision logic over one key.
pub trait Reconciler: Send + Sync + 'static {
    /// Why a reconcile failed.
    type Error: std::error::Error + Send + 'static;

    /// Brings the object at `key` (which may no longer exist) to its
    /// desired state.
    fn reconcile(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send;
}

type ReadyWait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs one [`Reconciler`] over the keys its watches produce.
pub struct Controller<R> {
    name: &'static str,
    reconciler: Arc<R>,
    queue: Arc<WorkQueue<ObjectKey>>,
    waits_for: Vec<ReadyWait>,
    /// What the controller hears; they end when it stops.
    subscriptions: Vec<reflector::Subscription>,
    workers: usize,
    metrics: ControllerMetrics,
    failures: Mutex<HashMap<ObjectKey, u32>>,
}

impl<R: Reconciler> Controller<R> {
    /// A controller named `name` (the metrics' label) running `reconciler`
    /// on `workers` keys at once.
    pub fn new(
        name: &'static str,
        reconciler: Arc<R>,
        workers: usize,
        metrics: &ControllerMetrics,
    ) -> Controller<R> {
        let depth = metrics.queue_depth.with_label_values(&[name]);
        Controller {
            name,
            reconciler,
            queue: Arc::new(WorkQueue::new(Some(depth))),
            waits_for: Vec::new(),
            subscriptions: Vec::new(),
            workers: workers.max(1),
            metrics: metrics.clone(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The controller's queue (to enqueue keys from elsewhere).
    pub fn queue(&self) -> Arc<WorkQueue<ObjectKey>> {
        self.queue.clone()
    }

    /// Reconciles the keys `map` derives from each change of `reflector`'s
    /// kind, and waits for its cache before the first reconcile.
    pub fn watches<K: Resource + Send + Sync + 'static>(
        &mut self,
        reflector: &mut Reflector<K>,
        map: impl Fn(&Change<'_, K>) -> Vec<ObjectKey> + Send + Sync + 'static,
    ) {
        self.watches_informer(&reflector.informer(), map);
    }

    /// Like [`Controller::watches`], over a reflector that is running
    /// already and outlives the controller (the process's pods): the
    /// controller first hears of every object in its cache.
    pub fn watches_informer<K: Resource + Send + Sync + 'static>(
        &mut self,
        informer: &Informer<K>,
        map: impl Fn(&Change<'_, K>) -> Vec<ObjectKey> + Send + Sync + 'static,
    ) {
        let queue = self.queue.clone();
        self.subscriptions
            .push(informer.subscribe_changes(Box::new(move |change| {
                for key in map(change) {
                    queue.add(key);
                }
            })));
        let cache = informer.cache().clone();
        self.waits_for
            .push(Box::pin(async move { cache.ready().await }));
    }

    /// Runs workers until `cancel` fires, then waits for them. A reconcile
    /// in flight is dropped at cancellation: its writes are fenced, so one
    /// that lands late is refused.
    pub async fn run(self, cancel: CancellationToken) {
        let name = self.name;
        let waits = futures::future::join_all(self.waits_for);
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = waits => {}
        }
        tracing::info!(controller = name, "caches loaded; reconciling");
        let _subscriptions = self.subscriptions;
        let shared = Arc::new(Worker {
            name,
            reconciler: self.reconciler,
            queue: self.queue,
            metrics: self.metrics,
            failures: self.failures,
        });
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..self.workers {
            workers.spawn(shared.clone().run(cancel.clone()));
        }
        while workers.join_next().await.is_some() {}
        tracing::info!(controller = name, "stopped");
    }
}

struct Worker<R> {
    name: &'static str,
    reconciler: Arc<R>,
    queue: Arc<WorkQueue<ObjectKey>>,
    metrics: ControllerMetrics,
    failures: Mutex<HashMap<ObjectKey, u32>>,
}

impl<R: Reconciler> Worker<R> {
    async fn run(self: Arc<Self>, cancel: CancellationToken) {
        while let Some(key) = self.queue.next(&cancel).await {
            let span = tracing::info_span!("reconcile", controller = self.name, key = %key);
            let started = Instant::now();
            let result = tokio::select! {
                () = cancel.cancelled() => None,
                result = self.reconciler.reconcile(&key).instrument(span.clone()) => Some(result),
            };
            let Some(result) = result else {
                self.queue.done(&key);
                break;
            };
            let labels = &[self.name];
            self.metrics
                .duration
                .with_label_values(labels)
                .observe(started.elapsed().as_secs_f64());
            self.metrics.reconciles.with_label_values(labels).inc();
            match result {
                Ok(action) => {
                    self.forget_failures(&key);
                    if let Action::RequeueAfter(delay) = action {
                        self.queue.add_after(key.clone(), delay);
                    }
                }
                Err(error) => {
                    self.metrics.errors.with_label_values(labels).inc();
                    let delay = self.backoff(&key);
                    span.in_scope(|| tracing::warn!(%error, ?delay, "reconcile failed; retrying"));
                    self.queue.add_after(key.clone(), delay);
                }
            }
            self.queue.done(&key);
        }
    }

    fn backoff(&self, key: &ObjectKey) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key.clone()).or_insert(0);
        *count = count.saturating_add(1);
        backoff_delay(*count)
    }

    fn forget_failures(&self, key: &ObjectKey) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// A controller's own writes, per key it reconciles, until its caches have
/// seen them. A reconcile that ran on a cache older than its own last write
/// would decide from stale state and lose a conflict (or worse, repeat the
/// write); since the watch event of that write enqueues the key again, a
/// reconcile that finds the cache behind can simply stop.
#[derive(Debug, Default)]
pub struct OwnWrites {
    written: Mutex<HashMap<ObjectKey, Vec<(Kind, Revision)>>>,
}

impl OwnWrites {
    /// Records that reconciling `key` wrote an object of `kind` at
    /// `revision`.
    pub fn record(&self, key: &ObjectKey, kind: Kind, revision: Revision) {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let writes = written.entry(key.clone()).or_default();
        match writes.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, at)) => *at = (*at).max(revision),
            None => writes.push((kind, revision)),
        }
    }

    /// Whether every cache (its revision per kind from `cache_revision`)
    /// has seen the writes made for `key`; forgets those seen.
    pub fn caught_up(&self, key: &ObjectKey, cache_revision: impl Fn(Kind) -> Revision) -> bool {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let Some(writes) = written.get_mut(key) else {
            return true;
        };
        writes.retain(|(kind, revision)| cache_revision(*kind) < *revision);
        if writes.is_empty() {
            written.remove(key);
            return true;
        }
        false
    }
}

/// The wait after `failures` failed reconciles in a row.
pub fn backoff_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(20);
    BACKOFF_FIRST.saturating_mul(1 << exponent).min(BACKOFF_CAP)
}

/// Maps a change of a primary object to its own key.
pub fn own_key<K>(change: &Change<'_, K>) -> Vec<ObjectKey> {
    vec![change.key.clone()]
}

/// Maps a change of an owned object to the key of its controlling owner of
/// `owner_kind` (before and after the change, in case the owner changed).
pub fn controller_owner_key<K: Resource>(
    owner_kind: Kind,
) -> impl Fn(&Change<'_, K>) -> Vec<ObjectKey> + Send + Sync + 'static {
    move |change| {
        let mut keys: Vec<ObjectKey> = change
            .old
            .into_iter()
            .chain(change.new)
            .filter_map(|object| {
                let owner = object.metadata().controller()?;
                (owner.kind == owner_kind.name()).then(|| ObjectKey {
                    tenant: change.key.tenant.clone(),
                    name: owner.name.clone(),
                })
            })
            .collect();
        keys.dedup();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_per_failure_and_is_capped() {
        assert_eq!(backoff_delay(1), BACKOFF_FIRST);
        assert_eq!(backoff_delay(2), BACKOFF_FIRST * 2);
        assert_eq!(backoff_delay(4), BACKOFF_FIRST * 8);
        assert_eq!(backoff_delay(100), BACKOFF_CAP);
    }

    #[test]
    fn own_writes_hold_a_key_back_until_every_cache_has_seen_them() {
        let writes = OwnWrites::default();
        let key = ObjectKey::namespaced("acme", "web");
        assert!(writes.caught_up(&key, |_| 0));
        writes.record(&key, Kind::ReplicaSet, 10);
        writes.record(&key, Kind::Deployment, 12);
        let revisions = |rs: Revision, deployments: Revision| {
            move |kind: Kind| match kind {
                Kind::Deployment => deployments,
                _ => rs,
            }
        };
        assert!(!writes.caught_up(&key, revisions(9, 11)));
        assert!(
            !writes.caught_up(&key, revisions(10, 11)),
            "one unseen write is enough"
        );
        // The ReplicaSet write was seen and forgotten; only the other counts.
        assert!(writes.caught_up(&key, revisions(0, 12)));
        assert!(writes.caught_up(&key, revisions(0, 0)));
    }

    #[test]
    fn the_sooner_action_wins() {
        let soon = Action::RequeueAfter(Duration::from_secs(1));
        let late = Action::RequeueAfter(Duration::from_secs(9));
        assert_eq!(soon.sooner(late), soon);
        assert_eq!(Action::Done.sooner(late), late);
        assert_eq!(Action::Done.sooner(Action::Done), Action::Done);
    }
}
