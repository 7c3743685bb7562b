//! Reflectors keep an in-memory cache of one kind, for every tenant, in step
//! with the store: list everything at one revision, swap the cache in whole,
//! then watch from the next revision; when the watch falls behind a
//! compaction, list again. Controllers read the cache instead of the store,
//! and subscribe to its changes to learn which keys to reconcile.
//!
//! Each stored object is decoded once, by its reflector: the cache and
//! every subscriber share that one `Arc`. An [`Informer`] hands a running
//! reflector to consumers that come and go (the pods' one serves the node
//! API for the process's life, and each leadership term's controllers and
//! scheduler): a late subscriber first gets the cache's content, as if it
//! had been listed, then every change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use berth_api::objects::{Kind, Resource};
use tokio_util::sync::CancellationToken;

use crate::keys::collection as collection_prefix;
use crate::store::types::{EventKind, KeyRange, KeyValue, Revision, WatchRequest};
use crate::store::{Store, StoreError};

/// How many keys one list page reads.
const LIST_PAGE: i64 = 500;
/// The first wait after a failed list or watch; it doubles up to the cap.
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between retries.
const RETRY_CAP: Duration = Duration::from_secs(30);

/// Why a reflector had to start over.
#[derive(Debug, thiserror::Error)]
pub enum ReflectorError {
    /// The initial list (or a relist) failed.
    #[error("listing {kind} failed: {source}")]
    ListFailed {
        /// The kind listed.
        kind: &'static str,
        /// What the store said.
        source: StoreError,
    },
    /// The watch could not be started.
    #[error("starting the {kind} watch failed: {source}")]
    WatchStartFailed {
        /// The kind watched.
        kind: &'static str,
        /// What the store said.
        source: StoreError,
    },
    /// A running watch failed.
    #[error("the {kind} watch failed: {source}")]
    WatchFailed {
        /// The kind watched.
        kind: &'static str,
        /// What the store said.
        source: StoreError,
    },
}

/// Names one object of a kind: its tenant (none for cluster-scoped kinds)
/// and its name. The unit of work of every controller.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The tenant, for namespaced kinds.
    pub tenant: Option<String>,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// The key of a namespaced object.
    pub fn namespaced(tenant: &str, name: &str) -> ObjectKey {
        ObjectKey {
            tenant: Some(tenant.to_owned()),
            name: name.to_owned(),
        }
    }

    /// The key of `object`, from its metadata.
    pub fn of<K: Resource>(object: &K) -> ObjectKey {
        let meta = object.metadata();
        ObjectKey {
            tenant: meta.tenant.clone().filter(|_| K::KIND.namespaced()),
            name: meta.name.clone(),
        }
    }

    /// Where an object of `kind` with this key is stored.
    pub fn store_key(&self, kind: Kind) -> String {
        crate::keys::object(kind, self.tenant.as_deref(), &self.name)
    }

    /// Where the object of `kind` with this key lives, for [`crate::objects`].
    pub fn object_ref(&self, kind: Kind) -> crate::objects::ObjectRef {
        crate::objects::ObjectRef {
            kind,
            tenant: self.tenant.clone(),
            name: self.name.clone(),
        }
    }

    /// The key of the object of `kind` stored at `key`; `None` for a key
    /// outside the kind's prefix.
    pub fn from_store_key(kind: Kind, key: &[u8]) -> Option<ObjectKey> {
        crate::keys::parse(kind, key).map(|(tenant, name)| ObjectKey { tenant, name })
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tenant {
            Some(tenant) => write!(f, "{tenant}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Computes the index values of an object (say, its controller's uid), so
/// that a cache can answer "which objects have this value" without a scan.
pub type Indexer<K> = fn(&K) -> Vec<String>;

/// One change the cache went through, as its subscribers see it.
#[derive(Debug)]
pub struct Change<'a, K> {
    /// Which object.
    pub key: &'a ObjectKey,
    /// The object before, if it existed.
    pub old: Option<&'a Arc<K>>,
    /// The object after, if it exists.
    pub new: Option<&'a Arc<K>>,
    /// The revision of the change (the list's, for a change a list found).
    pub revision: Revision,
}

/// What a subscriber does with each change.
pub type Subscriber<K> = Box<dyn Fn(&Change<'_, K>) + Send + Sync>;

/// What an [`Informer`]'s subscribers hear.
#[derive(Debug)]
pub enum Notice<'a, K> {
    /// One object changed.
    Changed(Change<'a, K>),
    /// The cache holds everything up to `revision`: a full list (or, for a
    /// late subscriber, the cache's content) has just been delivered.
    Listed {
        /// The revision of the list.
        revision: Revision,
    },
}

type Listener<K> = Arc<dyn Fn(&Notice<'_, K>) + Send + Sync>;

/// Who hears a reflector's changes.
struct Listeners<K> {
    next_id: u64,
    listeners: Vec<(u64, Listener<K>)>,
}

/// A running reflector as its consumers see it: the cache, and its changes
/// from the moment they subscribe. Cheap to clone.
pub struct Informer<K> {
    cache: Cache<K>,
    listeners: Arc<Mutex<Listeners<K>>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            cache: self.cache.clone(),
            listeners: self.listeners.clone(),
        }
    }
}

/// Keeps a subscription to an [`Informer`] alive; dropping it ends it.
pub struct Subscription {
    end: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            end();
        }
    }
}

impl<K: Resource + 'static> Informer<K> {
    /// The cache the reflector fills.
    pub fn cache(&self) -> &Cache<K> {
        &self.cache
    }

    /// Calls `listener` with every change from now on. When the cache has
    /// loaded already, `listener` first gets each object it holds (as a
    /// change from nothing) and a [`Notice::Listed`] at the cache's
    /// revision, so it starts from the same view a list would give it. A
    /// change being delivered as it subscribes may reach it twice.
    ///
    /// `listener` runs on the reflector's task: it must be quick, and must
    /// not subscribe.
    pub fn subscribe(
        &self,
        listener: impl Fn(&Notice<'_, K>) + Send + Sync + 'static,
    ) -> Subscription {
        let listener: Listener<K> = Arc::new(listener);
        let mut listeners = lock(&self.listeners);
        if self.cache.is_ready() {
            let (objects, revision) = self.cache.snapshot();
            for (key, object) in &objects {
                listener(&Notice::Changed(Change {
                    key,
                    old: None,
                    new: Some(object),
                    revision,
                }));
            }
            listener(&Notice::Listed { revision });
        }
        let id = listeners.next_id;
        listeners.next_id += 1;
        listeners.listeners.push((id, listener));
        drop(listeners);
        let weak = Arc::downgrade(&self.listeners);
        Subscription {
            end: Some(Box::new(move || {
                if let Some(listeners) = weak.upgrade() {
                    lock(&listeners).listeners.retain(|(other, _)| *other != id);
                }
            })),
        }
    }

    /// Calls `subscriber` with every change from now on, as
    /// [`Informer::subscribe`] does, leaving out the list notices.
    pub fn subscribe_changes(&self, subscriber: Subscriber<K>) -> Subscription {
        self.subscribe(move |notice| {
            if let Notice::Changed(change) = notice {
                subscriber(change);
            }
        })
    }

    fn notify(&self, notice: &Notice<'_, K>) {
        for (_, listener) in &lock(&self.listeners).listeners {
            listener(notice);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A change as the cache reports it: the key, the object before (if any)
/// and after (if any).
pub type Replaced<K> = (ObjectKey, Option<Arc<K>>, Option<Arc<K>>);

/// The in-memory copy of one kind; cheap to clone, shared by the reflector
/// that fills it and the controllers that read it.
pub struct Cache<K> {
    inner: Arc<CacheInner<K>>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

struct CacheInner<K> {
    state: RwLock<CacheState<K>>,
    ready: tokio::sync::watch::Sender<bool>,
    indexer: Option<Indexer<K>>,
}

struct CacheState<K> {
    objects: BTreeMap<ObjectKey, Entry<K>>,
    index: HashMap<String, BTreeSet<ObjectKey>>,
    revision: Revision,
}

struct Entry<K> {
    object: Arc<K>,
    create_revision: Revision,
}

impl<K: Resource> Cache<K> {
    /// An empty cache, not ready until its first full list; with an
    /// indexer, [`Cache::indexed`] answers by index value.
    pub fn new(indexer: Option<Indexer<K>>) -> Cache<K> {
        Cache {
            inner: Arc::new(CacheInner {
                state: RwLock::new(CacheState {
                    objects: BTreeMap::new(),
                    index: HashMap::new(),
                    revision: 0,
                }),
                ready: tokio::sync::watch::channel(false).0,
                indexer,
            }),
        }
    }

    /// The object at `key`, if the cache holds it.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().objects.get(key).map(|e| e.object.clone())
    }

    /// The revision at which the object at `key` was created: tells this
    /// incarnation of a name from a later one, for guarded deletes.
    pub fn create_revision(&self, key: &ObjectKey) -> Option<Revision> {
        self.read().objects.get(key).map(|e| e.create_revision)
    }

    /// Every object, in key order.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read()
            .objects
            .values()
            .map(|e| e.object.clone())
            .collect()
    }

    /// The objects whose index values include `value`, in key order.
    pub fn indexed(&self, value: &str) -> Vec<Arc<K>> {
        let state = self.read();
        state
            .index
            .get(value)
            .into_iter()
            .flatten()
            .filter_map(|key| state.objects.get(key).map(|e| e.object.clone()))
            .collect()
    }

    /// Every object with its key, and the revision the cache reflects,
    /// read at one moment.
    pub fn snapshot(&self) -> (Vec<(ObjectKey, Arc<K>)>, Revision) {
        let state = self.read();
        let objects = state
            .objects
            .iter()
            .map(|(key, entry)| (key.clone(), entry.object.clone()))
            .collect();
        (objects, state.revision)
    }

    /// How many objects the cache holds.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    /// Whether the cache holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The store revision the cache reflects.
    pub fn revision(&self) -> Revision {
        self.read().revision
    }

    /// Whether the first full list has been loaded.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Waits until the first full list has been loaded.
    pub async fn ready(&self) {
        let mut ready = self.inner.ready.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    /// Replaces the whole content with `objects` (read at `revision`) and
    /// marks the cache ready. Answers what changed, old and new.
    pub(crate) fn replace(
        &self,
        objects: Vec<(ObjectKey, K, Revision)>,
        revision: Revision,
    ) -> Vec<Replaced<K>> {
        let mut fresh = CacheState {
            objects: BTreeMap::new(),
            index: HashMap::new(),
            revision,
        };
        for (key, object, create_revision) in objects {
            self.insert_into(&mut fresh, key, Arc::new(object), create_revision);
        }
        let mut state = self.write();
        let old = std::mem::replace(&mut *state, fresh);
        let mut changes: Vec<_> = state
            .objects
            .iter()
            .map(|(key, entry)| {
                let before = old.objects.get(key).map(|e| e.object.clone());
                (key.clone(), before, Some(entry.object.clone()))
            })
            .collect();
        changes.extend(
            old.objects
                .into_iter()
                .filter(|(key, _)| !state.objects.contains_key(key))
                .map(|(key, entry)| (key, Some(entry.object), None)),
        );
        drop(state);
        self.inner.ready.send_replace(true);
        changes
    }

    /// Puts `object` in (a create or change at `revision`). Answers the
    /// object it replaced.
    pub(crate) fn upsert(
        &self,
        key: ObjectKey,
        object: K,
        create_revision: Revision,
        revision: Revision,
    ) -> (ObjectKey, Option<Arc<K>>, Arc<K>) {
        let object = Arc::new(object);
        let mut state = self.write();
        let old = self.remove_from(&mut state, &key);
        self.insert_into(&mut state, key.clone(), object.clone(), create_revision);
        state.revision = state.revision.max(revision);
        (key, old, object)
    }

    /// Takes the object at `key` out (a delete at `revision`). Answers it.
    pub(crate) fn remove(&self, key: &ObjectKey, revision: Revision) -> Option<Arc<K>> {
        let mut state = self.write();
        state.revision = state.revision.max(revision);
        self.remove_from(&mut state, key)
    }

    fn insert_into(
        &self,
        state: &mut CacheState<K>,
        key: ObjectKey,
        object: Arc<K>,
        create_revision: Revision,
    ) {
        if let Some(indexer) = self.inner.indexer {
            for value in indexer(&object) {
                state.index.entry(value).or_default().insert(key.clone());
            }
        }
        state.objects.insert(
            key,
            Entry {
                object,
                create_revision,
            },
        );
    }

    fn remove_from(&self, state: &mut CacheState<K>, key: &ObjectKey) -> Option<Arc<K>> {
        let entry = state.objects.remove(key)?;
        if let Some(indexer) = self.inner.indexer {
            for value in indexer(&entry.object) {
                if let Some(keys) = state.index.get_mut(&value) {
                    keys.remove(key);
                    if keys.is_empty() {
                        state.index.remove(&value);
                    }
                }
            }
        }
        Some(entry.object)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, CacheState<K>> {
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, CacheState<K>> {
        self.inner.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The revision an object was read at: its `resourceVersion`, which
/// [`decode_stored`] fills in; `None` when it has none.
pub fn read_revision<K: Resource>(object: &K) -> Option<Revision> {
    object
        .metadata()
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
}

/// Reads a stored object of kind `K`, with its `resourceVersion` filled in
/// from the key's mod revision, as every reader of the store sees it.
pub fn decode_stored<K: Resource>(kv: &KeyValue) -> Result<K, String> {
    let mut object: K = berth_api::objects::from_slice(&kv.value).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let metadata = object.metadata_mut();
    if metadata.name.is_empty() {
        return Err("no metadata.name".into());
    }
    metadata.resource_version = Some(kv.mod_revision.to_string());
    Ok(object)
}

/// Fills one [`Cache`] from the store and tells subscribers of each change.
pub struct Reflector<K> {
    store: Store,
    informer: Informer<K>,
    /// Subscriptions made before the reflector runs, for its whole life.
    subscriptions: Vec<Subscription>,
}

/// How a watch ended.
enum WatchEnd {
    /// Shutdown.
    Cancelled,
    /// The watch fell behind a compaction: list again.
    Relist,
    /// The watch broke: watch again from where it stopped.
    Rewatch(ReflectorError),
}

impl<K: Resource + 'static> Reflector<K> {
    /// A reflector that fills `cache` from `store`.
    pub fn new(store: Store, cache: Cache<K>) -> Reflector<K> {
        Reflector {
            store,
            informer: Informer {
                cache,
                listeners: Arc::new(Mutex::new(Listeners {
                    next_id: 0,
                    listeners: Vec::new(),
                })),
            },
            subscriptions: Vec::new(),
        }
    }

    /// The cache this reflector fills.
    pub fn cache(&self) -> &Cache<K> {
        &self.informer.cache
    }

    /// The cache and its changes, for consumers that come and go while the
    /// reflector runs.
    pub fn informer(&self) -> Informer<K> {
        self.informer.clone()
    }

    /// Calls `subscriber` with every change from now on, including every
    /// object of each full list (so a relist reconciles everything), for as
    /// long as the reflector lives.
    pub fn subscribe(&mut self, subscriber: Subscriber<K>) {
        let subscription = self.informer.subscribe_changes(subscriber);
        self.subscriptions.push(subscription);
    }

    /// Lists and watches until `cancel` fires. Failures are logged and
    /// retried with back-off; they never end the reflector.
    #[tracing::instrument(skip_all, fields(kind = K::KIND.name()))]
    pub async fn run(self, cancel: CancellationToken) {
        let mut retry = RETRY_FIRST;
        'list: loop {
            let listed = tokio::select! {
                () = cancel.cancelled() => return,
                listed = self.list() => listed,
            };
            let mut revision = match listed {
                Ok(revision) => revision,
                Err(error) => {
                    tracing::warn!(%error, ?retry, "relisting after a failure");
                    if !pause(&cancel, &mut retry).await {
                        return;
                    }
                    continue;
                }
            };
            loop {
                match self.watch(revision, &cancel).await {
                    (_, WatchEnd::Cancelled) => return,
                    (_, WatchEnd::Relist) => {
                        tracing::info!("the watch fell behind a compaction; listing again");
                        continue 'list;
                    }
                    (reached, WatchEnd::Rewatch(error)) => {
                        if reached > revision {
                            retry = RETRY_FIRST;
                        }
                        revision = reached;
                        tracing::warn!(%error, ?retry, revision, "watching again");
                        if !pause(&cancel, &mut retry).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Reads every object at one revision and swaps the cache. Answers the
    /// revision.
    async fn list(&self) -> Result<Revision, ReflectorError> {
        let kind = K::KIND;
        let prefix = collection_prefix(kind, None);
        let mut objects = Vec::new();
        let revision = self
            .store
            .range_prefix(prefix.as_bytes(), 0, LIST_PAGE, |kv| {
                let key = ObjectKey::from_store_key(kind, &kv.key);
                if let (Some(key), Some(object)) = (key, parse::<K>(&kv)) {
                    objects.push((key, object, kv.create_revision));
                }
            })
            .await
            .map_err(|source| ReflectorError::ListFailed {
                kind: kind.name(),
                source,
            })?;
        tracing::debug!(count = objects.len(), revision, "listed");
        let changes = self.informer.cache.replace(objects, revision);
        for (key, old, new) in &changes {
            self.notify(key, old.as_ref(), new.as_ref(), revision);
        }
        self.informer.notify(&Notice::Listed { revision });
        Ok(revision)
    }

    /// Applies the watch's events after `revision` until it ends. Answers
    /// the last revision applied and why it ended.
    async fn watch(&self, revision: Revision, cancel: &CancellationToken) -> (Revision, WatchEnd) {
        let kind = K::KIND;
        let request = WatchRequest {
            range: KeyRange::prefix(collection_prefix(kind, None)),
            start_revision: revision + 1,
            prev_kv: true,
        };
        let mut watch = match self.store.watch(request).await {
            Ok(watch) => watch,
            Err(StoreError::Compacted { .. }) => return (revision, WatchEnd::Relist),
            Err(source) => {
                let error = ReflectorError::WatchStartFailed {
                    kind: kind.name(),
                    source,
                };
                return (revision, WatchEnd::Rewatch(error));
            }
        };
        let mut reached = revision;
        loop {
            let batch = tokio::select! {
                () = cancel.cancelled() => return (reached, WatchEnd::Cancelled),
                batch = watch.next() => batch,
            };
            let events = match batch {
                None => {
                    let error = ReflectorError::WatchFailed {
                        kind: kind.name(),
                        source: StoreError::WatchCancelled("the watch ended".into()),
                    };
                    return (reached, WatchEnd::Rewatch(error));
                }
                Some(Err(StoreError::Compacted { .. })) => return (reached, WatchEnd::Relist),
                Some(Err(source)) => {
                    let error = ReflectorError::WatchFailed {
                        kind: kind.name(),
                        source,
                    };
                    return (reached, WatchEnd::Rewatch(error));
                }
                Some(Ok(events)) => events,
            };
            for event in events {
                let at = event.revision();
                reached = reached.max(at);
                let Some(key) = ObjectKey::from_store_key(kind, &event.kv.key) else {
                    continue;
                };
                let parsed = match event.kind {
                    EventKind::Put => parse::<K>(&event.kv),
                    EventKind::Delete => None,
                };
                match parsed {
                    Some(object) => {
                        let (key, old, new) =
                            self.informer
                                .cache
                                .upsert(key, object, event.kv.create_revision, at);
                        self.notify(&key, old.as_ref(), Some(&new), at);
                    }
                    // A delete, or an object that cannot be read: either
                    // way the controllers must not act on the old copy.
                    _ => {
                        let old = self.informer.cache.remove(&key, at);
                        if old.is_some() {
                            self.notify(&key, old.as_ref(), None, at);
                        }
                    }
                }
            }
        }
    }

    fn notify(
        &self,
        key: &ObjectKey,
        old: Option<&Arc<K>>,
        new: Option<&Arc<K>>,
        revision: Revision,
    ) {
        self.informer.notify(&Notice::Changed(Change {
            key,
            old,
            new,
            revision,
        }));
    }
}

/// An object of the watched kind, or `None` (logged) when it cannot be read.
fn parse<K: Resource>(kv: &KeyValue) -> Option<K> {
    match decode_stored::<K>(kv) {
        Ok(object) => Some(object),
        Err(error) => {
            tracing::warn!(
                key = %String::from_utf8_lossy(&kv.key),
                %error,
                "skipping an object that cannot be read"
            );
            None
        }
    }
}

/// Waits `retry` (then doubles it, up to the cap); false when cancelled.
async fn pause(cancel: &CancellationToken, retry: &mut Duration) -> bool {
    let wait = *retry;
    *retry = (*retry * 2).min(RETRY_CAP);
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use berth_api::objects::Pod;

    use super::*;
    use crate::store::types::{DeleteRequest, PutRequest};

    fn pod_json(tenant: &str, name: &str, owner: &str) -> Vec<u8> {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "tenant": tenant,
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                    "uid": format!("uid-{owner}"), "controller": true
                }]
            },
            "spec": {"containers": [{"name": "main", "image": "busybox:1"}]}
        })
        .to_string()
        .into_bytes()
    }

    async fn put(store: &Store, key: &str, value: Vec<u8>) {
        store
            .put(PutRequest {
                key: key.into(),
                value,
                ..PutRequest::default()
            })
            .await
            .unwrap();
    }

    #[test]
    fn keys_of_namespaced_and_cluster_kinds_are_read_from_store_keys() {
        assert_eq!(
            ObjectKey::from_store_key(Kind::Pod, b"/registry/pods/acme/web-1"),
            Some(ObjectKey::namespaced("acme", "web-1"))
        );
        assert_eq!(
            ObjectKey::from_store_key(Kind::Node, b"/registry/nodes/node-1").map(|k| k.name),
            Some("node-1".to_owned())
        );
        assert_eq!(
            ObjectKey::from_store_key(Kind::Pod, b"/registry/pods/acme"),
            None
        );
        assert_eq!(
            ObjectKey::namespaced("acme", "web").store_key(Kind::ReplicaSet),
            "/registry/replicasets/acme/web"
        );
    }

    #[tokio::test]
    async fn a_reflector_loads_every_tenant_then_follows_changes_and_skips_unreadable_objects() {
        let (_dir, store) = crate::store::temporary().await;
        put(
            &store,
            "/registry/pods/acme/a",
            pod_json("acme", "a", "web"),
        )
        .await;
        put(
            &store,
            "/registry/pods/globex/b",
            pod_json("globex", "b", "web"),
        )
        .await;
        put(
            &store,
            "/registry/pods/acme/broken",
            b"{\"metadata\":{}, \"bogus\": 1}".to_vec(),
        )
        .await;

        let cache: Cache<Pod> = Cache::new(Some(|pod: &Pod| {
            pod.metadata
                .controller()
                .map(|o| vec![o.uid.clone()])
                .unwrap_or_default()
        }));
        let mut reflector = Reflector::new(store.clone(), cache.clone());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel();
        let record = seen.clone();
        reflector.subscribe(Box::new(move |change| {
            record.lock().unwrap().push(change.key.to_string());
            let _ = changed.send(());
        }));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(reflector.run(cancel.clone()));
        cache.ready().await;
        assert_eq!(cache.len(), 2, "the unreadable object is skipped");
        assert_eq!(cache.indexed("uid-web").len(), 2);
        assert!(cache.get(&ObjectKey::namespaced("globex", "b")).is_some());

        store
            .delete(DeleteRequest {
                range: KeyRange::single("/registry/pods/globex/b"),
                prev_kv: false,
            })
            .await
            .unwrap();
        put(
            &store,
            "/registry/pods/acme/c",
            pod_json("acme", "c", "api"),
        )
        .await;
        while cache.len() != 2 || cache.get(&ObjectKey::namespaced("acme", "c")).is_none() {
            changes.recv().await.unwrap();
        }
        assert!(cache.get(&ObjectKey::namespaced("globex", "b")).is_none());
        assert_eq!(cache.indexed("uid-web").len(), 1);
        assert_eq!(cache.indexed("uid-api").len(), 1);
        assert_eq!(
            *seen.lock().unwrap(),
            ["acme/a", "globex/b", "globex/b", "acme/c"]
        );
        cancel.cancel();
        task.await.unwrap();
        store.close().await;
    }
}
