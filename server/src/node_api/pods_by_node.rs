//! The pods of every node from one store watch: an in-memory index of bound
//! pods by node, kept from a single watch on `/registry/pods/` (after an
//! initial list), fanned out to per-node subscribers.
//!
//! A thousand agents each hold a `WatchPods` stream; one store watch per
//! agent over all pods would decode every pod event a thousand times. Here
//! each event is decoded once and handed only to the node it concerns.
//!
//! A subscriber resumes from a revision when the recent-event window still
//! holds every event after it; otherwise it gets a snapshot (every pod bound
//! to the node, then a bookmark marking the end of the initial events), as a
//! fresh watch does. When the store watch fails (compaction, database
//! outage), the index lists again and turns the difference into events, so
//! subscribers see a consistent sequence without a reconnect.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_api::labels::Selector;
use berth_api::objects::Kind;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::objects::{Objects, SecretValues};
use crate::store::types::{EventKind, Revision};

/// How many recent events the index keeps for subscribers that resume.
const WINDOW: usize = 16_384;

/// How many undelivered events a subscriber may have before it is dropped
/// (it then resumes from its last revision).
const SUBSCRIBER_BUFFER: usize = 1024;

/// How long the index waits before listing again after a failure.
const RELIST_BACKOFF: Duration = Duration::from_secs(1);

/// What happened to a pod, as its node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Newly bound to the node (or first seen).
    Added,
    /// Changed, still bound to the node.
    Modified,
    /// Deleted, or bound elsewhere now.
    Deleted,
}

/// One event for one node's watcher.
#[derive(Clone, Debug)]
pub enum NodePodEvent {
    /// A pod changed.
    Change {
        /// How.
        kind: ChangeKind,
        /// The pod as of this event (its last state, for a deletion).
        pod: PodDoc,
        /// The revision of the change.
        revision: Revision,
    },
    /// Nothing for this node up to `revision`.
    Bookmark {
        /// The revision the watcher has now seen everything up to.
        revision: Revision,
        /// The events before it were a snapshot of every pod on the node.
        initial_events_end: bool,
    },
}

impl NodePodEvent {
    /// The revision this event brings its watcher to.
    pub fn revision(&self) -> Revision {
        match self {
            NodePodEvent::Change { revision, .. } | NodePodEvent::Bookmark { revision, .. } => {
                *revision
            }
        }
    }
}

/// A node's subscription: the events to send first, then the live ones.
pub struct Subscription {
    /// The snapshot or the replayed events, in order.
    pub initial: Vec<NodePodEvent>,
    /// Live events; ends when the subscriber fell too far behind (it should
    /// resume from its last revision) or the index stopped.
    pub live: mpsc::Receiver<NodePodEvent>,
}

/// Why a subscription could not start.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// The index stopped (the server is shutting down).
    #[error("the pod index has stopped")]
    Stopped,
}

/// The shared index of bound pods by node; cheap to clone.
#[derive(Clone)]
pub struct PodsByNode {
    index: Arc<Mutex<Index>>,
    ready: watch::Receiver<bool>,
}

struct Subscriber {
    id: u64,
    /// Events at or below this revision are not sent: the subscriber has
    /// them already (it resumed from a revision this index has not reached).
    /// Fixed at subscription, since one revision may carry several events.
    after: Revision,
    sender: mpsc::Sender<NodePodEvent>,
}

#[derive(Default)]
struct Index {
    /// Every event up to this revision is applied.
    revision: Revision,
    /// Pod key → the node it is bound to.
    node_of: HashMap<String, String>,
    /// Node → its pods by key.
    by_node: HashMap<String, HashMap<String, PodDoc>>,
    /// Recent events, oldest first, with the node each went to.
    window: VecDeque<(String, NodePodEvent)>,
    /// The window holds every event after this revision.
    window_floor: Revision,
    subscribers: HashMap<String, Vec<Subscriber>>,
    next_id: u64,
}

impl PodsByNode {
    /// Starts the index: lists every pod, then follows the store until
    /// `shutdown`. Subscriptions wait for the first list.
    pub fn start(objects: Objects, shutdown: CancellationToken) -> PodsByNode {
        let (ready_tx, ready) = watch::channel(false);
        let pods = PodsByNode {
            index: Arc::new(Mutex::new(Index::default())),
            ready,
        };
        tokio::spawn(pods.clone().run(objects, ready_tx, shutdown));
        pods
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to the pods of `node` after `resource_version` (0: a
    /// snapshot of every pod bound to it now).
    pub async fn subscribe(
        &self,
        node: &str,
        resource_version: Revision,
    ) -> Result<Subscription, SubscribeError> {
        let mut ready = self.ready.clone();
        ready
            .wait_for(|ready| *ready)
            .await
            .map_err(|_| SubscribeError::Stopped)?;
        let (sender, live) = mpsc::channel(SUBSCRIBER_BUFFER);
        let mut index = self.lock();
        let resumable = resource_version > 0 && resource_version >= index.window_floor;
        let (initial, after) = if resumable {
            let replay = index
                .window
                .iter()
                .filter(|(n, event)| n == node && event.revision() > resource_version)
                .map(|(_, event)| event.clone())
                .collect();
            (replay, resource_version.max(index.revision))
        } else {
            let mut pods: Vec<PodDoc> = index
                .by_node
                .get(node)
                .map(|pods| pods.values().cloned().collect())
                .unwrap_or_default();
            pods.sort_by_key(|pod| pod.revision);
            let mut snapshot: Vec<NodePodEvent> = pods
                .into_iter()
                .map(|pod| NodePodEvent::Change {
                    kind: ChangeKind::Added,
                    revision: pod.revision,
                    pod,
                })
                .collect();
            snapshot.push(NodePodEvent::Bookmark {
                revision: index.revision,
                initial_events_end: true,
            });
            (snapshot, index.revision)
        };
        let id = index.next_id;
        index.next_id += 1;
        index
            .subscribers
            .entry(node.to_owned())
            .or_default()
            .push(Subscriber { id, after, sender });
        Ok(Subscription { initial, live })
    }

    /// The pods bound to `node` now.
    pub fn pods_of(&self, node: &str) -> Vec<PodDoc> {
        self.lock()
            .by_node
            .get(node)
            .map(|pods| pods.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many pods are bound to `node` now.
    pub fn pod_count(&self, node: &str) -> usize {
        self.lock().by_node.get(node).map_or(0, HashMap::len)
    }

    /// Lists, then follows the watch; lists again whenever the watch fails.
    async fn run(self, objects: Objects, ready: watch::Sender<bool>, shutdown: CancellationToken) {
        let mut bookmarks = tokio::time::interval(BOOKMARK_INTERVAL);
        loop {
            let listed = tokio::select! {
                () = shutdown.cancelled() => break,
                listed = list_bound_pods(&objects) => listed,
            };
            let revision = match listed {
                Ok((revision, pods)) => {
                    self.lock().reset(revision, pods);
                    ready.send_replace(true);
                    revision
                }
                Err(error) => {
                    tracing::warn!(%error, "listing pods for the node API failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(RELIST_BACKOFF) => continue,
                    }
                }
            };
            let mut watch = match objects.watch(Kind::Pod, None, revision).await {
                Ok(watch) => watch,
                Err(error) => {
                    tracing::warn!(%error, "watching pods for the node API failed; listing again");
                    continue;
                }
            };
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => {
                        self.lock().subscribers.clear();
                        return;
                    }
                    _ = bookmarks.tick() => self.lock().bookmark_all(),
                    next = watch.next() => match next {
                        Some(Ok(events)) => {
                            let mut index = self.lock();
                            for event in events {
                                let key = String::from_utf8_lossy(&event.kv.key).into_owned();
                                let now = match event.kind {
                                    EventKind::Delete => None,
                                    EventKind::Put => bound_pod(&event.kv.value, event.kv.mod_revision),
                                };
                                index.apply(key, now, event.kv.mod_revision);
                            }
                        }
                        Some(Err(error)) => {
                            tracing::warn!(%error, "the node API's pod watch failed; listing again");
                            break;
                        }
                        None => {
                            tracing::warn!("the node API's pod watch ended; listing again");
                            break;
                        }
                    }
                }
            }
        }
        self.lock().subscribers.clear();
    }
}

/// How often every subscriber gets a bookmark with the index's revision.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

/// Every pod bound to a node, with the revision of the list.
async fn list_bound_pods(
    objects: &Objects,
) -> Result<(Revision, Vec<(String, String, PodDoc)>), crate::objects::ObjectError> {
    let page = objects
        .list(
            Kind::Pod,
            None,
            &Selector::default(),
            0,
            None,
            SecretValues::Redact,
        )
        .await?;
    let pods = page
        .items
        .into_iter()
        .filter_map(|pod| {
            let node = node_name_of(&pod)?.to_owned();
            let key = format!(
                "/registry/pods/{}/{}",
                pod["metadata"]["tenant"].as_str().unwrap_or_default(),
                pod["metadata"]["name"].as_str().unwrap_or_default()
            );
            let revision = revision_of(&pod);
            Some((key, node, PodDoc::new(&pod, revision)))
        })
        .collect();
    Ok((page.revision, pods))
}

/// The node a stored pod is bound to, and the pod as callers see it.
fn bound_pod(stored: &[u8], revision: Revision) -> Option<(String, PodDoc)> {
    let pod: Value = serde_json::from_slice(stored).ok()?;
    let node = node_name_of(&pod)?.to_owned();
    Some((node, PodDoc::new(&pod, revision)))
}

/// A bound pod as the index keeps it: the JSON callers see, as compact
/// text, with its revision. Text, because a parsed value takes about ten
/// times the memory, and the index holds every bound pod plus a window of
/// recent versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodDoc {
    /// The pod, with `metadata.resourceVersion` set to `revision`.
    pub json: Arc<str>,
    /// The revision of this version of the pod.
    pub revision: Revision,
}

impl PodDoc {
    /// `pod` as of `revision`.
    pub fn new(pod: &Value, revision: Revision) -> PodDoc {
        let mut pod = pod.clone();
        if let Some(metadata) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("resourceVersion".into(), json!(revision.to_string()));
        }
        PodDoc {
            json: pod.to_string().into(),
            revision,
        }
    }

    /// The pod, parsed.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or_default()
    }
}

/// `spec.nodeName`, when set.
pub(crate) fn node_name_of(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

fn revision_of(pod: &Value) -> Revision {
    pod["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or_default()
}

impl Index {
    /// Replaces the index with a fresh list, turning the difference into
    /// events at the list's revision.
    fn reset(&mut self, revision: Revision, pods: Vec<(String, String, PodDoc)>) {
        let first = self.revision == 0;
        let mut listed: HashMap<String, (String, PodDoc)> = pods
            .into_iter()
            .map(|(key, node, pod)| (key, (node, pod)))
            .collect();
        let known: Vec<String> = self.node_of.keys().cloned().collect();
        for key in known {
            let now = listed.remove(&key);
            let unchanged = now.as_ref().is_some_and(|(node, pod)| {
                self.node_of.get(&key) == Some(node)
                    && self
                        .by_node
                        .get(node)
                        .and_then(|pods| pods.get(&key))
                        .is_some_and(|p| p == pod)
            });
            if !unchanged {
                self.apply(key, now, revision);
            }
        }
        for (key, now) in listed {
            self.apply(key, Some(now), revision);
        }
        self.revision = revision;
        if first {
            self.window.clear();
            self.window_floor = revision;
        }
    }

    /// Applies one change to the pod at `key` (`None`: deleted or unbound).
    fn apply(&mut self, key: String, now: Option<(String, PodDoc)>, revision: Revision) {
        self.revision = self.revision.max(revision);
        let before = self.node_of.get(&key).cloned();
        match (before, now) {
            (None, None) => {}
            (Some(old), None) => {
                if let Some(last) = self.remove(&old, &key) {
                    let last = PodDoc::new(&last.value(), revision);
                    self.emit(&old, ChangeKind::Deleted, last, revision);
                }
            }
            (None, Some((node, pod))) => {
                self.insert(&node, key, pod.clone());
                self.emit(&node, ChangeKind::Added, pod, revision);
            }
            (Some(old), Some((node, pod))) if old == node => {
                self.insert(&node, key, pod.clone());
                self.emit(&node, ChangeKind::Modified, pod, revision);
            }
            (Some(old), Some((node, pod))) => {
                self.remove(&old, &key);
                self.emit(&old, ChangeKind::Deleted, pod.clone(), revision);
                self.insert(&node, key, pod.clone());
                self.emit(&node, ChangeKind::Added, pod, revision);
            }
        }
    }

    fn insert(&mut self, node: &str, key: String, pod: PodDoc) {
        self.node_of.insert(key.clone(), node.to_owned());
        self.by_node
            .entry(node.to_owned())
            .or_default()
            .insert(key, pod);
    }

    fn remove(&mut self, node: &str, key: &str) -> Option<PodDoc> {
        self.node_of.remove(key);
        let pods = self.by_node.get_mut(node)?;
        let removed = pods.remove(key);
        if pods.is_empty() {
            self.by_node.remove(node);
        }
        removed
    }

    /// Records an event in the window and hands it to the node's
    /// subscribers; a subscriber that cannot take it is dropped.
    fn emit(&mut self, node: &str, kind: ChangeKind, pod: PodDoc, revision: Revision) {
        let event = NodePodEvent::Change {
            kind,
            pod,
            revision,
        };
        if let Some(subscribers) = self.subscribers.get_mut(node) {
            deliver(subscribers, &event);
            if subscribers.is_empty() {
                self.subscribers.remove(node);
            }
        }
        self.window.push_back((node.to_owned(), event));
        while self.window.len() > WINDOW {
            if let Some((_, dropped)) = self.window.pop_front() {
                self.window_floor = self.window_floor.max(dropped.revision());
            }
        }
    }

    /// Tells every subscriber how far the index has come (and drops the
    /// ones whose stream has gone).
    fn bookmark_all(&mut self) {
        let event = NodePodEvent::Bookmark {
            revision: self.revision,
            initial_events_end: false,
        };
        self.subscribers.retain(|_, subscribers| {
            deliver(subscribers, &event);
            !subscribers.is_empty()
        });
    }
}

fn deliver(subscribers: &mut Vec<Subscriber>, event: &NodePodEvent) {
    subscribers.retain_mut(|subscriber| {
        if event.revision() <= subscriber.after {
            return !subscriber.sender.is_closed();
        }
        match subscriber.sender.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(
                    subscriber = subscriber.id,
                    "a node's pod watch fell behind; it will resume"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str, revision: Revision) -> (String, PodDoc) {
        (
            node.to_owned(),
            PodDoc::new(
                &json!({
                    "metadata": {"name": name, "tenant": "acme"},
                    "spec": {"nodeName": node},
                }),
                revision,
            ),
        )
    }

    fn subscribe(index: &mut Index, node: &str, after: Revision) -> mpsc::Receiver<NodePodEvent> {
        let (sender, receiver) = mpsc::channel(16);
        index
            .subscribers
            .entry(node.into())
            .or_default()
            .push(Subscriber {
                id: 0,
                after,
                sender,
            });
        receiver
    }

    fn kinds(receiver: &mut mpsc::Receiver<NodePodEvent>) -> Vec<(ChangeKind, String)> {
        let mut seen = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            if let NodePodEvent::Change { kind, pod, .. } = event {
                seen.push((
                    kind,
                    pod.value()["metadata"]["name"].as_str().unwrap().to_owned(),
                ));
            }
        }
        seen
    }

    #[test]
    fn a_pod_that_moves_is_deleted_from_its_old_node_and_added_to_the_new_one() {
        let mut index = Index::default();
        index.reset(10, vec![]);
        let mut a = subscribe(&mut index, "a", 10);
        let mut b = subscribe(&mut index, "b", 10);
        index.apply(
            "/registry/pods/acme/web".into(),
            Some(pod("web", "a", 11)),
            11,
        );
        index.apply(
            "/registry/pods/acme/web".into(),
            Some(pod("web", "a", 12)),
            12,
        );
        index.apply(
            "/registry/pods/acme/web".into(),
            Some(pod("web", "b", 13)),
            13,
        );
        index.apply("/registry/pods/acme/web".into(), None, 14);
        assert_eq!(
            kinds(&mut a),
            vec![
                (ChangeKind::Added, "web".into()),
                (ChangeKind::Modified, "web".into()),
                (ChangeKind::Deleted, "web".into()),
            ]
        );
        assert_eq!(
            kinds(&mut b),
            vec![
                (ChangeKind::Added, "web".into()),
                (ChangeKind::Deleted, "web".into()),
            ]
        );
        assert!(index.by_node.is_empty() && index.node_of.is_empty());
    }

    #[test]
    fn a_relist_turns_what_changed_meanwhile_into_events() {
        let mut index = Index::default();
        let (node, web) = pod("web", "a", 5);
        let (_, db) = pod("db", "a", 6);
        index.reset(
            6,
            vec![
                ("/registry/pods/acme/web".into(), node.clone(), web.clone()),
                ("/registry/pods/acme/db".into(), node.clone(), db),
            ],
        );
        let mut a = subscribe(&mut index, "a", 6);
        let (_, cache) = pod("cache", "a", 9);
        index.reset(
            9,
            vec![
                ("/registry/pods/acme/web".into(), node.clone(), web),
                ("/registry/pods/acme/cache".into(), node, cache),
            ],
        );
        let mut seen = kinds(&mut a);
        seen.sort_by(|x, y| x.1.cmp(&y.1));
        assert_eq!(
            seen,
            vec![
                (ChangeKind::Added, "cache".into()),
                (ChangeKind::Deleted, "db".into()),
            ]
        );
    }

    #[tokio::test]
    async fn a_subscriber_resumes_from_the_window_or_gets_a_snapshot() {
        let (_ready_tx, ready) = watch::channel(true);
        let pods = PodsByNode {
            index: Arc::new(Mutex::new(Index::default())),
            ready,
        };
        pods.lock().reset(10, vec![]);
        for (i, name) in ["one", "two", "three"].iter().enumerate() {
            let revision = 11 + i as Revision;
            pods.lock().apply(
                format!("/registry/pods/acme/{name}"),
                Some(pod(name, "a", revision)),
                revision,
            );
        }
        let resumed = pods.subscribe("a", 11).await.unwrap();
        let names: Vec<_> = resumed
            .initial
            .iter()
            .map(|e| match e {
                NodePodEvent::Change { pod, .. } => pod.value()["metadata"]["name"].clone(),
                NodePodEvent::Bookmark { .. } => json!("bookmark"),
            })
            .collect();
        assert_eq!(names, vec![json!("two"), json!("three")]);
        let fresh = pods.subscribe("a", 0).await.unwrap();
        assert_eq!(fresh.initial.len(), 4);
        assert!(matches!(
            fresh.initial.last(),
            Some(NodePodEvent::Bookmark {
                revision: 13,
                initial_events_end: true
            })
        ));
        assert_eq!(pods.pod_count("a"), 3);
    }
}
