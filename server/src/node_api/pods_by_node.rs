//! The pods of every node from the process's pod informer: an in-memory
//! index of bound pods by node, fanned out to per-node subscribers.
//!
//! A thousand agents each hold a `WatchPods` stream; one store watch per
//! agent over all pods would decode every pod event a thousand times. Here
//! each event is decoded once, by the informer (the controllers and the
//! scheduler share the same decoded pod), and handed only to the node it
//! concerns. The index holds the informer's `Arc<Pod>`s, so a bound pod
//! costs a pointer beside the informer's cache, not a copy.
//!
//! A subscriber resumes from a revision when the recent-event window still
//! holds every event after it; otherwise it gets a snapshot (every pod bound
//! to the node, then a bookmark marking the end of the initial events), as a
//! fresh watch does. When the informer lists again (compaction, database
//! outage), the difference reaches the index as changes, so subscribers see
//! a consistent sequence without a reconnect.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_api::objects::Pod;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::controllers::runtime::reflector::read_revision;
use crate::controllers::runtime::{Informer, Notice};
use crate::store::types::Revision;

/// How many recent events the index keeps for subscribers that resume.
const WINDOW: usize = 16_384;

/// How many undelivered events a subscriber may have before it is dropped
/// (it then resumes from its last revision).
const SUBSCRIBER_BUFFER: usize = 1024;

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

/// A recent event as the window keeps it for subscribers that resume: the
/// pod as the JSON its node got, not the decoded pod, so that the window
/// does not keep every old version of a pod alive (text takes a fraction
/// of the memory).
struct Recent {
    node: String,
    kind: ChangeKind,
    json: Arc<str>,
    revision: Revision,
}

impl Recent {
    /// The event again, decoded; `None` (logged) if its text is not a pod.
    fn event(&self) -> Option<NodePodEvent> {
        match berth_api::objects::from_slice::<Pod>(self.json.as_bytes()) {
            Ok(pod) => Some(NodePodEvent::Change {
                kind: self.kind,
                pod: PodDoc {
                    pod: Arc::new(pod),
                    revision: self.revision,
                    json: Some(self.json.clone()),
                },
                revision: self.revision,
            }),
            Err(errors) => {
                tracing::warn!(?errors, "a recent pod event cannot be read again");
                None
            }
        }
    }
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
    window: VecDeque<Recent>,
    /// The window holds every event after this revision.
    window_floor: Revision,
    subscribers: HashMap<String, Vec<Subscriber>>,
    next_id: u64,
}

impl PodsByNode {
    /// Starts the index over the process's pod informer; it follows it
    /// until `shutdown`. Subscriptions wait for the informer's first list.
    pub fn start(pods: &Informer<Pod>, shutdown: CancellationToken) -> PodsByNode {
        let (ready_tx, ready) = watch::channel(false);
        let index = Arc::new(Mutex::new(Index::default()));
        let fed = index.clone();
        let subscription = pods.subscribe(move |notice| {
            let mut index = fed.lock().unwrap_or_else(|e| e.into_inner());
            match notice {
                Notice::Changed(change) => {
                    let now = change.new.and_then(bound_pod);
                    index.apply(change.key.to_string(), now, change.revision);
                }
                Notice::Listed { revision } => {
                    index.listed(*revision);
                    ready_tx.send_replace(true);
                }
            }
        });
        let pods = PodsByNode { index, ready };
        tokio::spawn(pods.clone().run(subscription, shutdown));
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
                .filter(|recent| recent.node == node && recent.revision > resource_version)
                .filter_map(Recent::event)
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

    /// Sends bookmarks until `shutdown`, then stops following the informer
    /// and ends every subscriber's stream.
    async fn run(
        self,
        subscription: crate::controllers::runtime::Subscription,
        shutdown: CancellationToken,
    ) {
        let mut bookmarks = tokio::time::interval(BOOKMARK_INTERVAL);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = bookmarks.tick() => self.lock().bookmark_all(),
            }
        }
        drop(subscription);
        self.lock().subscribers.clear();
    }
}

/// How often every subscriber gets a bookmark with the index's revision.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);

/// The node `pod` is bound to, and the pod as the index keeps it; `None`
/// when it is bound to none.
fn bound_pod(pod: &Arc<Pod>) -> Option<(String, PodDoc)> {
    let node = pod.spec.node_name.as_deref().filter(|n| !n.is_empty())?;
    Some((node.to_owned(), PodDoc::of(pod.clone())))
}

/// A bound pod as the index keeps it: the informer's decoded pod (shared,
/// not copied), with the revision of this version of it.
#[derive(Clone, Debug)]
pub struct PodDoc {
    /// The pod.
    pub pod: Arc<Pod>,
    /// The revision of this version of the pod (of its deletion, for a
    /// pod that is gone).
    pub revision: Revision,
    /// Its JSON, once printed for an event (kept with the event, not in
    /// the index).
    json: Option<Arc<str>>,
}

impl PartialEq for PodDoc {
    fn eq(&self, other: &PodDoc) -> bool {
        self.revision == other.revision
            && (Arc::ptr_eq(&self.pod, &other.pod) || self.pod == other.pod)
    }
}

impl PodDoc {
    /// `pod` at the revision its `resourceVersion` names.
    pub fn of(pod: Arc<Pod>) -> PodDoc {
        let revision = read_revision(&*pod).unwrap_or_default();
        PodDoc {
            pod,
            revision,
            json: None,
        }
    }

    /// The pod as its node gets it: JSON, with `metadata.resourceVersion`
    /// set to `revision`.
    pub fn json(&self) -> Arc<str> {
        match &self.json {
            Some(json) => json.clone(),
            None => self.print().into(),
        }
    }

    fn print(&self) -> String {
        let revision = self.revision.to_string();
        let text = if self.pod.metadata.resource_version.as_deref() == Some(revision.as_str()) {
            serde_json::to_string(&*self.pod)
        } else {
            let mut pod = (*self.pod).clone();
            pod.metadata.resource_version = Some(revision);
            serde_json::to_string(&pod)
        };
        // A typed pod always serialises.
        text.unwrap_or_default()
    }
}

impl Index {
    /// The informer has delivered everything up to `revision` (its first
    /// list, or a relist).
    fn listed(&mut self, revision: Revision) {
        let first = self.revision == 0 && self.window_floor == 0;
        self.revision = self.revision.max(revision);
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
                    let last = PodDoc {
                        pod: last.pod,
                        revision,
                        json: None,
                    };
                    self.emit(&old, ChangeKind::Deleted, last, revision);
                }
            }
            (None, Some((node, pod))) => {
                self.insert(&node, key, pod.clone());
                self.emit(&node, ChangeKind::Added, pod, revision);
            }
            (Some(old), Some((node, pod))) if old == node => {
                let known = self
                    .by_node
                    .get(&node)
                    .and_then(|pods| pods.get(&key))
                    .map(|known| known.revision);
                if known == Some(pod.revision) {
                    // Told twice (a relist, or a change delivered as the
                    // index subscribed): nothing new for the node.
                    return;
                }
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
        // Printed once, for the node and for the window.
        let json = pod.json();
        let event = NodePodEvent::Change {
            kind,
            pod: PodDoc {
                json: Some(json.clone()),
                ..pod
            },
            revision,
        };
        if let Some(subscribers) = self.subscribers.get_mut(node) {
            deliver(subscribers, &event);
            if subscribers.is_empty() {
                self.subscribers.remove(node);
            }
        }
        self.window.push_back(Recent {
            node: node.to_owned(),
            kind,
            json,
            revision,
        });
        while self.window.len() > WINDOW {
            if let Some(dropped) = self.window.pop_front() {
                self.window_floor = self.window_floor.max(dropped.revision);
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
        let mut pod = Pod::default();
        pod.metadata.name = name.to_owned();
        pod.metadata.tenant = Some("acme".to_owned());
        pod.metadata.resource_version = Some(revision.to_string());
        pod.spec.node_name = Some(node.to_owned());
        (node.to_owned(), PodDoc::of(Arc::new(pod)))
    }

    /// What the informer tells the index of a list at `revision`: every
    /// object listed, each one gone since, then the end of the list.
    fn relist(index: &mut Index, revision: Revision, listed: Vec<(&str, (String, PodDoc))>) {
        let listed: HashMap<String, (String, PodDoc)> = listed
            .into_iter()
            .map(|(key, pod)| (key.to_owned(), pod))
            .collect();
        let gone: Vec<String> = index
            .node_of
            .keys()
            .filter(|key| !listed.contains_key(*key))
            .cloned()
            .collect();
        for (key, pod) in listed {
            index.apply(key, Some(pod), revision);
        }
        for key in gone {
            index.apply(key, None, revision);
        }
        index.listed(revision);
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
                seen.push((kind, pod.pod.metadata.name.clone()));
            }
        }
        seen
    }

    #[test]
    fn a_pod_that_moves_is_deleted_from_its_old_node_and_added_to_the_new_one() {
        let mut index = Index::default();
        index.listed(10);
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
        relist(
            &mut index,
            6,
            vec![
                ("/registry/pods/acme/web", pod("web", "a", 5)),
                ("/registry/pods/acme/db", pod("db", "a", 6)),
            ],
        );
        let mut a = subscribe(&mut index, "a", 6);
        relist(
            &mut index,
            9,
            vec![
                ("/registry/pods/acme/web", pod("web", "a", 5)),
                ("/registry/pods/acme/cache", pod("cache", "a", 9)),
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
        pods.lock().listed(10);
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
                NodePodEvent::Change { pod, .. } => pod.pod.metadata.name.clone(),
                NodePodEvent::Bookmark { .. } => "bookmark".to_owned(),
            })
            .collect();
        assert_eq!(names, ["two", "three"]);
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

    #[test]
    fn a_deleted_pod_reaches_its_node_at_the_revision_of_its_deletion() {
        let mut index = Index::default();
        index.listed(10);
        let mut a = subscribe(&mut index, "a", 10);
        index.apply("acme/web".into(), Some(pod("web", "a", 11)), 11);
        index.apply("acme/web".into(), None, 12);
        let mut sent = Vec::new();
        while let Ok(NodePodEvent::Change { pod, revision, .. }) = a.try_recv() {
            let json: serde_json::Value = serde_json::from_str(&pod.json()).unwrap();
            sent.push((revision, json["metadata"]["resourceVersion"].clone()));
        }
        assert_eq!(
            sent,
            [(11, serde_json::json!("11")), (12, serde_json::json!("12"))]
        );
    }
}
