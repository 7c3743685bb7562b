//! The garbage collector: what an object owns (its dependents, which name
//! it in `metadata.ownerReferences`) goes when the owner goes, as
//! Kubernetes' garbage collector does.
//!
//! - **Background** (the default): the owner is deleted at once; a
//!   dependent whose owners are all gone is then deleted, and so on down
//!   (a Deployment's ReplicaSets, then their pods). An owner that is gone
//!   is checked with a read of the store before anything is deleted, so a
//!   cache that lags never costs a live object.
//! - **Orphan**: the owner carries the `orphan` finalizer; the collector
//!   takes the owner out of its dependents' references, then removes the
//!   finalizer, which deletes the owner. The dependents stay.
//! - **Foreground**: the owner carries `foregroundDeletion`; the collector
//!   deletes its dependents (those that own objects themselves go the same
//!   way, in the foreground), and only when none is left removes the
//!   finalizer.
//!
//! One [`Collector`] runs per kind in [`COLLECTED_KINDS`], and one for
//! EndpointSlices, whose owners are Services; they share one
//! [`GarbageCollector`] over the caches of every such kind.

use std::marker::PhantomData;
use std::sync::Arc;

use berth_api::objects::{
    Deployment, EndpointSlice, Kind, OwnerReference, Pod, ReplicaSet, Resource, Service,
};
use serde_json::Value;

use super::fenced::{FencedWriter, WriteError};
use super::runtime::{Action, Cache, Change, ObjectKey, Reconciler};
use crate::objects::{FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
use crate::store::{Store, StoreError};

#[cfg(doc)]
use crate::objects::COLLECTED_KINDS;

/// The index value of the objects that name `uid` as an owner.
pub fn owner_index_value(uid: &str) -> String {
    format!("owner:{uid}")
}

/// The index values every collected object carries: `owner:{uid}` for
/// each of its owners.
pub fn owner_index_values<K: Resource>(object: &K) -> impl Iterator<Item = String> + '_ {
    object
        .metadata()
        .owner_references
        .iter()
        .map(|owner| owner_index_value(&owner.uid))
}

/// Why a collection step failed.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// An object could not be written or deleted.
    #[error("{action} {kind} {key} failed: {source}")]
    WriteFailed {
        /// What was being done.
        action: &'static str,
        /// The object's kind.
        kind: &'static str,
        /// The object.
        key: ObjectKey,
        /// The write's error.
        source: WriteError,
    },
    /// An owner could not be looked up.
    #[error("looking up the owner {owner} of {key} failed: {source}")]
    OwnerLookupFailed {
        /// The dependent.
        key: ObjectKey,
        /// The owner's kind and name.
        owner: String,
        /// What the store said.
        source: StoreError,
    },
}

/// The caches of every collected kind: the graph of owners and dependents.
#[derive(Clone)]
pub struct Graph {
    /// Deployments.
    pub deployments: Cache<Deployment>,
    /// ReplicaSets, indexed by [`owner_index_values`].
    pub replica_sets: Cache<ReplicaSet>,
    /// Pods, indexed by [`owner_index_values`].
    pub pods: Cache<Pod>,
    /// Services (owners of EndpointSlices only).
    pub services: Cache<Service>,
    /// EndpointSlices, indexed by [`owner_index_values`].
    pub endpoint_slices: Cache<EndpointSlice>,
}

impl Graph {
    /// Whether the caches show `owner` (of the object at `key`), the same
    /// incarnation.
    fn shows(&self, key: &ObjectKey, owner: &OwnerReference) -> bool {
        let Some((kind, owner_key)) = owner_of(key, owner) else {
            return false;
        };
        let uid = match kind {
            Kind::Deployment => self.deployments.get(&owner_key).map(|o| uid_of(o.as_ref())),
            Kind::ReplicaSet => self
                .replica_sets
                .get(&owner_key)
                .map(|o| uid_of(o.as_ref())),
            Kind::Pod => self.pods.get(&owner_key).map(|o| uid_of(o.as_ref())),
            Kind::Service => self.services.get(&owner_key).map(|o| uid_of(o.as_ref())),
            _ => None,
        };
        uid.as_deref() == Some(owner.uid.as_str())
    }
}

/// A kind the collector looks after.
pub trait Collected: Resource + Clone + Send + Sync + 'static {
    /// Its cache in `graph`.
    fn cache(graph: &Graph) -> &Cache<Self>;
}

impl Collected for Deployment {
    fn cache(graph: &Graph) -> &Cache<Self> {
        &graph.deployments
    }
}

impl Collected for ReplicaSet {
    fn cache(graph: &Graph) -> &Cache<Self> {
        &graph.replica_sets
    }
}

impl Collected for Pod {
    fn cache(graph: &Graph) -> &Cache<Self> {
        &graph.pods
    }
}

impl Collected for EndpointSlice {
    fn cache(graph: &Graph) -> &Cache<Self> {
        &graph.endpoint_slices
    }
}

/// The collector's state and writes, shared by the [`Collector`] of each
/// kind.
pub struct GarbageCollector {
    graph: Graph,
    writer: FencedWriter,
    store: Store,
}

impl GarbageCollector {
    /// A collector over `graph`, reading owners it does not see from
    /// `store`.
    pub fn new(graph: Graph, writer: FencedWriter, store: Store) -> GarbageCollector {
        GarbageCollector {
            graph,
            writer,
            store,
        }
    }

    async fn reconcile<K: Collected>(&self, key: &ObjectKey) -> Result<Action, GcError> {
        let Some(object) = K::cache(&self.graph).get(key) else {
            return Ok(Action::Done);
        };
        if object.metadata().deletion_timestamp.is_some() {
            self.finalize(object.as_ref(), key).await
        } else {
            self.collect_if_orphaned(object.as_ref(), key).await
        }
    }

    /// An owner being deleted with a finalizer of the collector's: orphan
    /// or delete its dependents, then let it go.
    async fn finalize<K: Collected>(&self, owner: &K, key: &ObjectKey) -> Result<Action, GcError> {
        let meta = owner.metadata();
        let uid = meta.uid.as_deref().unwrap_or_default();
        let has = |finalizer: &str| meta.finalizers.iter().any(|f| f == finalizer);
        let finalizer = if has(ORPHAN_FINALIZER) {
            let touched = self.orphan::<ReplicaSet>(uid).await?
                + self.orphan::<Pod>(uid).await?
                + self.orphan::<Deployment>(uid).await?;
            // Their changes bring this owner back once the caches show them.
            if touched > 0 {
                return Ok(Action::Done);
            }
            ORPHAN_FINALIZER
        } else if has(FOREGROUND_FINALIZER) {
            let left = self.delete_dependents::<ReplicaSet>(uid).await?
                + self.delete_dependents::<Pod>(uid).await?
                + self.delete_dependents::<Deployment>(uid).await?;
            if left > 0 {
                return Ok(Action::Done);
            }
            FOREGROUND_FINALIZER
        } else {
            // Somebody else's finalizers; theirs to remove.
            return Ok(Action::Done);
        };
        let mut released = owner.clone();
        released
            .metadata_mut()
            .finalizers
            .retain(|f| f != finalizer);
        let meta = released.metadata();
        // A pod still stopping on its node stays until its node removes it.
        let result =
            if meta.finalizers.is_empty() && meta.deletion_grace_period_seconds.unwrap_or(0) == 0 {
                self.writer.delete_unchanged(&released).await
            } else {
                self.writer.replace(&released).await
            };
        result.map_err(|source| GcError::WriteFailed {
            action: "releasing",
            kind: K::KIND.name(),
            key: key.clone(),
            source,
        })?;
        tracing::info!(kind = K::KIND.name(), %key, finalizer, "dependents handled; the owner goes");
        Ok(Action::Done)
    }

    /// Takes `uid` out of the owner references of its dependents of kind
    /// `D`. Answers how many there were.
    async fn orphan<D: Collected>(&self, uid: &str) -> Result<usize, GcError> {
        let dependents = D::cache(&self.graph).indexed(&owner_index_value(uid));
        for dependent in &dependents {
            let mut orphaned = dependent.as_ref().clone();
            orphaned
                .metadata_mut()
                .owner_references
                .retain(|owner| owner.uid != uid);
            self.writer
                .replace(&orphaned)
                .await
                .map_err(|source| GcError::WriteFailed {
                    action: "orphaning",
                    kind: D::KIND.name(),
                    key: ObjectKey::of(dependent.as_ref()),
                    source,
                })?;
        }
        Ok(dependents.len())
    }

    /// Deletes the dependents of kind `D` of `uid` in the foreground: those
    /// that own objects themselves are marked to go the same way. Answers
    /// how many are left.
    async fn delete_dependents<D: Collected>(&self, uid: &str) -> Result<usize, GcError> {
        let dependents = D::cache(&self.graph).indexed(&owner_index_value(uid));
        for dependent in &dependents {
            if dependent.metadata().deletion_timestamp.is_none() {
                self.delete(dependent.as_ref(), true).await?;
            }
        }
        Ok(dependents.len())
    }

    /// Deletes `object`, as the API would: one with finalizers (or, in the
    /// `foreground`, one that owns objects itself, which gets
    /// `foregroundDeletion`) is only marked with a deletionTimestamp.
    async fn delete<D: Collected>(&self, object: &D, foreground: bool) -> Result<(), GcError> {
        let key = ObjectKey::of(object);
        let error = |action| {
            let key = key.clone();
            move |source| GcError::WriteFailed {
                action,
                kind: D::KIND.name(),
                key,
                source,
            }
        };
        let uid = object.metadata().uid.as_deref().unwrap_or_default();
        let hold = (foreground && self.owns_anything(uid)).then_some(FOREGROUND_FINALIZER);
        if let Some(created) = D::cache(&self.graph).create_revision(&key) {
            self.writer
                .delete_as_api(object, created, hold)
                .await
                .map_err(error("deleting"))?;
        }
        Ok(())
    }

    fn owns_anything(&self, uid: &str) -> bool {
        let value = owner_index_value(uid);
        !self.graph.replica_sets.indexed(&value).is_empty()
            || !self.graph.pods.indexed(&value).is_empty()
    }

    /// Deletes `object` when every owner it names is gone, or drops the
    /// references to those that are gone when some are left.
    async fn collect_if_orphaned<K: Collected>(
        &self,
        object: &K,
        key: &ObjectKey,
    ) -> Result<Action, GcError> {
        let owners = &object.metadata().owner_references;
        if owners.is_empty() {
            return Ok(Action::Done);
        }
        let mut gone = Vec::new();
        for owner in owners {
            if !self.owner_exists(key, owner).await? {
                gone.push(owner.uid.clone());
            }
        }
        if gone.is_empty() {
            return Ok(Action::Done);
        }
        let error = |action| {
            move |source| GcError::WriteFailed {
                action,
                kind: K::KIND.name(),
                key: key.clone(),
                source,
            }
        };
        if gone.len() == owners.len() {
            self.delete(object, false).await?;
            tracing::info!(kind = K::KIND.name(), %key, "deleted: its owners are gone");
        } else {
            let mut kept = object.clone();
            kept.metadata_mut()
                .owner_references
                .retain(|owner| !gone.contains(&owner.uid));
            self.writer
                .replace(&kept)
                .await
                .map_err(error("dropping owners of"))?;
        }
        Ok(Action::Done)
    }

    /// Whether the owner `owner` of the object at `key` still exists (the
    /// same incarnation: its uid). The cache answers yes; a no is checked
    /// against the store. An owner of a kind Berth does not know counts as
    /// existing.
    async fn owner_exists(&self, key: &ObjectKey, owner: &OwnerReference) -> Result<bool, GcError> {
        let Some((kind, owner_key)) = owner_of(key, owner) else {
            return Ok(true);
        };
        if self.graph.shows(key, owner) {
            return Ok(true);
        }
        let store_key = owner_key.store_key(kind);
        let stored = self
            .store
            .get(store_key.as_bytes(), 0)
            .await
            .map_err(|source| GcError::OwnerLookupFailed {
                key: key.clone(),
                owner: format!("{} {}", owner.kind, owner.name),
                source,
            })?;
        Ok(stored.is_some_and(|kv| {
            serde_json::from_slice::<Value>(&kv.value)
                .is_ok_and(|value| value["metadata"]["uid"] == owner.uid.as_str())
        }))
    }
}

/// The kind and key of `owner`, named by the object at `key`; `None` for a
/// kind Berth does not know.
fn owner_of(key: &ObjectKey, owner: &OwnerReference) -> Option<(Kind, ObjectKey)> {
    let kind = Kind::from_kind_name(&owner.kind)?;
    let owner_key = ObjectKey {
        tenant: key.tenant.clone().filter(|_| kind.namespaced()),
        name: owner.name.clone(),
    };
    Some((kind, owner_key))
}

fn uid_of<K: Resource>(object: &K) -> String {
    object.metadata().uid.clone().unwrap_or_default()
}

/// The collector's reconciler for objects of kind `K`.
pub struct Collector<K> {
    gc: Arc<GarbageCollector>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Collector<K> {
    /// The reconciler for `K` over the shared collector.
    pub fn new(gc: Arc<GarbageCollector>) -> Collector<K> {
        Collector {
            gc,
            kind: PhantomData,
        }
    }
}

impl<K: Collected> Reconciler for Collector<K> {
    type Error = GcError;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, GcError> {
        self.gc.reconcile::<K>(key).await
    }
}

/// The controller name of the collector of `kind`.
pub fn name(kind: Kind) -> &'static str {
    match kind {
        Kind::Deployment => "gc-deployments",
        Kind::ReplicaSet => "gc-replicasets",
        Kind::EndpointSlice => "gc-endpointslices",
        _ => "gc-pods",
    }
}

/// Maps a change of an object to its own key when the collector has
/// something to look at: it is being deleted, or it names an owner the
/// caches do not show (new to the cache, or with changed owner references).
/// Pods created by a ReplicaSet the cache holds cost nothing.
pub fn needs_collection<K: Resource>(
    graph: Graph,
) -> impl Fn(&Change<'_, K>) -> Vec<ObjectKey> + Send + Sync + 'static {
    move |change| {
        let Some(new) = change.new else {
            return Vec::new();
        };
        let meta = new.metadata();
        let owners_changed = change
            .old
            .is_none_or(|old| old.metadata().owner_references != meta.owner_references);
        let relevant = meta.deletion_timestamp.is_some()
            || (owners_changed
                && meta
                    .owner_references
                    .iter()
                    .any(|owner| !graph.shows(change.key, owner)));
        if relevant {
            vec![change.key.clone()]
        } else {
            Vec::new()
        }
    }
}

/// Maps a change of a dependent to the keys of its owners of kind `owner`
/// that it stopped naming (it was deleted, or orphaned): an owner waiting
/// for its dependents looks again.
pub fn released_owners<D: Resource>(
    owner: Kind,
) -> impl Fn(&Change<'_, D>) -> Vec<ObjectKey> + Send + Sync + 'static {
    move |change| {
        let Some(old) = change.old else {
            return Vec::new();
        };
        let still = |uid: &str| {
            change
                .new
                .is_some_and(|new| new.metadata().owner_references.iter().any(|o| o.uid == uid))
        };
        old.metadata()
            .owner_references
            .iter()
            .filter(|o| o.kind == owner.name() && !still(&o.uid))
            .map(|o| ObjectKey {
                tenant: change.key.tenant.clone().filter(|_| owner.namespaced()),
                name: o.name.clone(),
            })
            .collect()
    }
}

/// Maps the deletion of an owner to the keys of its dependents of kind `D`
/// in `cache`, which may now be orphans.
pub fn dependents_of_deleted<O: Resource, D: Resource + Send + Sync + 'static>(
    cache: Cache<D>,
) -> impl Fn(&Change<'_, O>) -> Vec<ObjectKey> + Send + Sync + 'static {
    move |change| {
        if change.new.is_some() {
            return Vec::new();
        }
        let Some(uid) = change.old.and_then(|old| old.metadata().uid.clone()) else {
            return Vec::new();
        };
        cache
            .indexed(&owner_index_value(&uid))
            .iter()
            .map(|dependent| ObjectKey::of(dependent.as_ref()))
            .collect()
    }
}
