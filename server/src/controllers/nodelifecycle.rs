//! Node lifecycle: notices nodes whose agent has gone silent and moves
//! their pods elsewhere, as Kubernetes' node lifecycle controller and taint
//! manager do.
//!
//! - A node whose heartbeat has not moved for `--node-monitor-grace` gets
//!   Ready=Unknown and the `node.kubernetes.io/unreachable:NoExecute` taint
//!   (a node that reports Ready=False gets `node.kubernetes.io/not-ready`),
//!   and its pods are marked not ready, so that they stop counting as
//!   available.
//! - Once a pod has stood the taint for `--pod-eviction-timeout` (or its own
//!   toleration's `tolerationSeconds`), it is deleted and its ReplicaSet
//!   replaces it elsewhere. A pod that tolerates the taint without a time
//!   limit stays.
//! - A node that is Ready again loses the taint.
//! - A node whose agent reports `MemoryPressure`, `DiskPressure` or
//!   `PIDPressure` True gets `node.kubernetes.io/memory-pressure`,
//!   `disk-pressure` or `pid-pressure` with `NoSchedule` (Kubernetes'
//!   taint-nodes-by-condition) for as long as the condition is True, so the
//!   scheduler sends it no new pods; its pods stay. A node gone silent has
//!   those conditions Unknown, as Ready.
//!
//! Silence is measured from when this process last saw the heartbeat move,
//! not from the heartbeat's own timestamp: a new leader gives every node a
//! full grace period, and clocks of other processes do not matter. When no
//! node at all is Ready, nothing is evicted: that is more likely the
//! control plane's own trouble than every node's (Kubernetes' "full
//! disruption").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::objects::meta::ConditionStatus;
use berth_api::objects::node::{NodeCondition, Taint};
use berth_api::objects::pod::{PodCondition, TaintEffect};
use berth_api::objects::{Node, Pod};
use chrono::{DateTime, Utc};

use super::fenced::{FencedWriter, WriteError};
use super::runtime::clock::{Clock, format_time, parse_time};
use super::runtime::{Action, Cache, ObjectKey, Reconciler};
use crate::events::{EventRecorder, EventType, Involved};

/// The controller's name in metrics and logs.
pub const NAME: &str = "node-lifecycle";
/// The taint of a node whose agent stopped reporting.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// The taint of a node whose agent reports it not ready.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// Each pressure condition and the `NoSchedule` taint it puts on its node
/// while True.
pub const PRESSURE_TAINTS: [(&str, &str); 3] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
];
/// The index of the pods cache by node: `node:{name}`.
pub fn node_index_value(node: &str) -> String {
    format!("node:{node}")
}

/// How long silence and taints are borne.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeLifecycleSettings {
    /// Heartbeat silence after which a node is NotReady.
    pub monitor_grace: Duration,
    /// How long pods stay on a NotReady node (without a toleration saying
    /// otherwise).
    pub eviction_timeout: Duration,
}

impl Default for NodeLifecycleSettings {
    fn default() -> Self {
        NodeLifecycleSettings {
            monitor_grace: Duration::from_secs(40),
            eviction_timeout: Duration::from_secs(300),
        }
    }
}

/// A change of a node's readiness that its pods' owners should hear of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The node went silent (or reported itself not ready).
    NotReady,
    /// The node is Ready again.
    Ready,
}

/// What one reconcile of a node should do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodePlan {
    /// The node to write back (its Ready condition, its taints), at the
    /// resourceVersion the cache showed.
    pub node: Option<Node>,
    /// A readiness change to tell the node's pods about.
    pub transition: Option<Transition>,
    /// Pods to mark not ready.
    pub mark_not_ready: Vec<ObjectKey>,
    /// Pods to delete now.
    pub evict: Vec<ObjectKey>,
    /// Terminating pods whose grace period ran out while their node could
    /// not stop them: removed without waiting for the node any longer.
    pub force_delete: Vec<ObjectKey>,
    /// When to look again even if nothing changes.
    pub requeue_after: Option<Duration>,
}

/// The decision for `node`, whose heartbeat this process last saw move at
/// `last_seen`, with `pods` bound to it, at `now`. `may_evict` is false
/// while no node at all is Ready.
pub fn plan(
    node: &Node,
    last_seen: DateTime<Utc>,
    pods: &[Arc<Pod>],
    may_evict: bool,
    settings: &NodeLifecycleSettings,
    now: DateTime<Utc>,
) -> NodePlan {
    let mut plan = NodePlan::default();
    let mut updated = node.clone();
    let grace =
        chrono::Duration::from_std(settings.monitor_grace).unwrap_or(chrono::TimeDelta::MAX);
    let silent_since = last_seen + grace;
    let silent = now >= silent_since;
    let mut status_changed = false;
    if silent && ready_status(node) != Some(ConditionStatus::Unknown) {
        mark_unknown(&mut updated, now);
        status_changed = true;
        plan.transition = Some(Transition::NotReady);
    } else if !silent {
        plan.requeue_after = (silent_since - now).to_std().ok();
    }

    let wanted = match ready_status(&updated) {
        Some(ConditionStatus::True) => None,
        Some(ConditionStatus::False) => Some(NOT_READY_TAINT),
        Some(ConditionStatus::Unknown) => Some(UNREACHABLE_TAINT),
        None if silent => Some(UNREACHABLE_TAINT),
        None => None,
    };
    let ours = |taint: &Taint| {
        taint.effect == Some(TaintEffect::NoExecute)
            && (taint.key == UNREACHABLE_TAINT || taint.key == NOT_READY_TAINT)
    };
    let before = updated.spec.taints.len();
    updated
        .spec
        .taints
        .retain(|taint| !ours(taint) || Some(taint.key.as_str()) == wanted);
    let removed = updated.spec.taints.len() < before;
    if let Some(key) = wanted
        && !updated.spec.taints.iter().any(|t| ours(t) && t.key == key)
    {
        updated.spec.taints.push(Taint {
            key: key.to_owned(),
            value: None,
            effect: Some(TaintEffect::NoExecute),
            time_added: Some(format_time(now)),
        });
    }
    let readiness_taints_changed = updated.spec.taints != node.spec.taints;
    if readiness_taints_changed && removed && wanted.is_none() {
        plan.transition = Some(Transition::Ready);
    }
    if wanted.is_some() && plan.transition.is_none() && readiness_taints_changed {
        // An agent that reports Ready=False itself.
        plan.transition = Some(Transition::NotReady);
    }
    set_pressure_taints(&mut updated, now);
    let taints_changed = updated.spec.taints != node.spec.taints;
    if taints_changed {
        let meta = &mut updated.metadata;
        meta.generation = Some(meta.generation.unwrap_or(1) + 1);
    }
    if status_changed || taints_changed {
        plan.node = Some(updated.clone());
    }

    let Some(taint) = updated
        .spec
        .taints
        .iter()
        .find(|t| ours(t) && Some(t.key.as_str()) == wanted)
    else {
        return plan;
    };
    let tainted_at = parse_time(taint.time_added.as_deref()).unwrap_or(now);
    let look_again = |plan: &mut NodePlan, wait: Duration| {
        plan.requeue_after = Some(plan.requeue_after.map_or(wait, |w| w.min(wait)));
    };
    for pod in pods.iter().filter(|pod| pod.is_terminating()) {
        // Its node cannot stop it: once its grace period is over the pod
        // goes without the node, so that it stops holding its name and
        // its place in the workload's history.
        let deadline = parse_time(pod.metadata.deletion_timestamp.as_deref()).unwrap_or(now);
        if deadline <= now && may_evict {
            plan.force_delete.push(ObjectKey::of(pod.as_ref()));
        } else {
            look_again(
                &mut plan,
                (deadline - now).to_std().unwrap_or(settings.monitor_grace),
            );
        }
    }
    for pod in pods.iter().filter(|pod| !pod.is_terminating()) {
        let key = ObjectKey::of(pod.as_ref());
        if pod_ready(pod) {
            plan.mark_not_ready.push(key.clone());
        }
        let Some(due) = eviction_due(pod, taint, tainted_at, settings) else {
            continue;
        };
        if due <= now && may_evict {
            plan.evict.push(key);
            // Marked with its grace period: look again when it is over.
            let grace = Duration::from_secs(pod.deletion_grace(None).unsigned_abs());
            look_again(&mut plan, grace);
        } else {
            // Not yet due, or held back while every node is down: look
            // again then (or after a grace period).
            look_again(
                &mut plan,
                (due - now).to_std().unwrap_or(settings.monitor_grace),
            );
        }
    }
    plan
}

/// When `pod` is to be evicted for `taint`, added at `tainted_at`: after
/// its toleration's `tolerationSeconds`, never if it tolerates the taint
/// without a limit, else after the eviction timeout.
fn eviction_due(
    pod: &Pod,
    taint: &Taint,
    tainted_at: DateTime<Utc>,
    settings: &NodeLifecycleSettings,
) -> Option<DateTime<Utc>> {
    let tolerated = match pod.spec.tolerations.iter().find(|t| t.tolerates(taint)) {
        Some(toleration) => chrono::Duration::seconds(toleration.toleration_seconds?.max(0)),
        None => chrono::Duration::from_std(settings.eviction_timeout).ok()?,
    };
    Some(tainted_at + tolerated)
}

/// `node` with a pressure taint for each pressure condition that is True,
/// and none for the others.
fn set_pressure_taints(node: &mut Node, now: DateTime<Utc>) {
    for (condition, key) in PRESSURE_TAINTS {
        let pressed = condition_status(node, condition) == Some(ConditionStatus::True);
        let ours =
            |taint: &Taint| taint.key == key && taint.effect == Some(TaintEffect::NoSchedule);
        let tainted = node.spec.taints.iter().any(ours);
        if pressed && !tainted {
            node.spec.taints.push(Taint {
                key: key.to_owned(),
                value: None,
                effect: Some(TaintEffect::NoSchedule),
                time_added: Some(format_time(now)),
            });
        } else if !pressed && tainted {
            node.spec.taints.retain(|taint| !ours(taint));
        }
    }
}

/// The status of the node's condition of type `type_`, if it has one.
fn condition_status(node: &Node, type_: &str) -> Option<ConditionStatus> {
    node.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status)
}

/// The status of the node's Ready condition, if it has one.
pub fn ready_status(node: &Node) -> Option<ConditionStatus> {
    condition_status(node, "Ready")
}

/// The node's last heartbeat, as its Ready condition carries it.
fn heartbeat(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")?
        .last_heartbeat_time
        .as_deref()
}

fn mark_unknown(node: &mut Node, now: DateTime<Utc>) {
    let conditions = &mut node.status.get_or_insert_with(Default::default).conditions;
    let message = "Berth agent stopped posting node status.".to_owned();
    // What the agent last said of pressure is as stale as its Ready.
    for condition in conditions.iter_mut().filter(|c| {
        c.status != ConditionStatus::Unknown
            && PRESSURE_TAINTS.iter().any(|(type_, _)| c.type_ == *type_)
    }) {
        condition.status = ConditionStatus::Unknown;
        condition.reason = Some("NodeStatusUnknown".into());
        condition.message = Some(message.clone());
        condition.last_transition_time = Some(format_time(now));
    }
    match conditions.iter_mut().find(|c| c.type_ == "Ready") {
        Some(ready) => {
            ready.status = ConditionStatus::Unknown;
            ready.reason = Some("NodeStatusUnknown".into());
            ready.message = Some(message);
            ready.last_transition_time = Some(format_time(now));
        }
        None => conditions.push(NodeCondition {
            type_: "Ready".into(),
            status: ConditionStatus::Unknown,
            last_heartbeat_time: None,
            last_transition_time: Some(format_time(now)),
            reason: Some("NodeStatusUnknown".into()),
            message: Some(message),
        }),
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|status| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True)
    })
}

/// `pod` with its Ready condition False because its node is not ready.
fn not_ready(pod: &Pod, now: DateTime<Utc>) -> Pod {
    let mut pod = pod.clone();
    let status = pod.status.get_or_insert_with(Default::default);
    let condition = PodCondition {
        type_: "Ready".into(),
        status: ConditionStatus::False,
        last_transition_time: Some(format_time(now)),
        reason: Some("NodeNotReady".into()),
        message: Some("the pod's node is not ready".into()),
        ..PodCondition::default()
    };
    status.conditions.retain(|c| c.type_ != "Ready");
    status.conditions.push(condition);
    pod
}

/// Why a node reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeLifecycleError {
    /// The node could not be written.
    #[error("writing node {node} failed: {source}")]
    NodeWriteFailed {
        /// The node.
        node: String,
        /// The write's error.
        source: WriteError,
    },
    /// A pod could not be marked not ready or evicted.
    #[error("{action} pod {pod} of node {node} failed: {source}")]
    PodWriteFailed {
        /// `marking` or `evicting`.
        action: &'static str,
        /// The node.
        node: String,
        /// The pod.
        pod: ObjectKey,
        /// The write's error.
        source: WriteError,
    },
}

/// A node's heartbeat as last seen, and when this process saw it change.
type Sighting = (Option<String>, DateTime<Utc>);

/// Runs [`plan`] for each node and carries it out.
pub struct NodeLifecycleController {
    nodes: Cache<Node>,
    pods: Cache<Pod>,
    writer: FencedWriter,
    clock: Arc<dyn Clock>,
    settings: NodeLifecycleSettings,
    events: EventRecorder,
    /// Per node: the heartbeat last seen, and when this process saw it.
    seen: Mutex<HashMap<String, Sighting>>,
}

impl NodeLifecycleController {
    /// A controller over the nodes and the pods (indexed by
    /// [`node_index_value`]).
    pub fn new(
        nodes: Cache<Node>,
        pods: Cache<Pod>,
        writer: FencedWriter,
        clock: Arc<dyn Clock>,
        settings: NodeLifecycleSettings,
        events: EventRecorder,
    ) -> NodeLifecycleController {
        NodeLifecycleController {
            nodes,
            pods,
            writer,
            clock,
            settings,
            events,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// When the heartbeat of `node` last moved, as far as this process saw.
    fn last_seen(&self, node: &Node, now: DateTime<Utc>) -> DateTime<Utc> {
        let beat = heartbeat(node).map(str::to_owned);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = seen
            .entry(node.metadata.name.clone())
            .or_insert_with(|| (beat.clone(), now));
        if entry.0 != beat {
            *entry = (beat, now);
        }
        entry.1
    }

    /// Whether any node is Ready (else evictions wait).
    fn any_node_ready(&self) -> bool {
        self.nodes
            .list()
            .iter()
            .any(|node| ready_status(node) == Some(ConditionStatus::True))
    }

    fn tell_pods(&self, node: &str, pods: &[Arc<Pod>], transition: Transition) {
        let (kind, reason, message) = match transition {
            Transition::NotReady => (
                EventType::Warning,
                "NodeNotReady",
                format!("Node {node} is not ready: its agent stopped reporting"),
            ),
            Transition::Ready => (
                EventType::Normal,
                "NodeReady",
                format!("Node {node} is ready again"),
            ),
        };
        for pod in pods {
            self.events
                .emit(Involved::of(pod.as_ref()), kind, reason, message.clone());
        }
    }
}

impl Reconciler for NodeLifecycleController {
    type Error = NodeLifecycleError;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, NodeLifecycleError> {
        let Some(node) = self.nodes.get(key) else {
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key.name);
            return Ok(Action::Done);
        };
        let now = self.clock.now();
        let last_seen = self.last_seen(&node, now);
        let pods = self.pods.indexed(&node_index_value(&key.name));
        let mut result = plan(&node, last_seen, &pods, true, &self.settings, now);
        if (!result.evict.is_empty() || !result.force_delete.is_empty()) && !self.any_node_ready() {
            tracing::warn!(node = %key, "no node is Ready; holding evictions back");
            result = plan(&node, last_seen, &pods, false, &self.settings, now);
        }
        let node_error = |source| NodeLifecycleError::NodeWriteFailed {
            node: key.name.clone(),
            source,
        };
        if let Some(updated) = &result.node {
            self.writer.replace(updated).await.map_err(node_error)?;
            tracing::info!(node = %key, transition = ?result.transition, "node conditions or taints changed");
        }
        if let Some(transition) = result.transition {
            self.tell_pods(&key.name, &pods, transition);
        }
        let pod_error = |action, pod: &ObjectKey, source| NodeLifecycleError::PodWriteFailed {
            action,
            node: key.name.clone(),
            pod: pod.clone(),
            source,
        };
        for pod_key in &result.mark_not_ready {
            let Some(pod) = self.pods.get(pod_key) else {
                continue;
            };
            self.writer
                .replace(&not_ready(&pod, now))
                .await
                .map_err(|e| pod_error("marking", pod_key, e))?;
        }
        for pod_key in &result.evict {
            let (Some(pod), Some(created)) =
                (self.pods.get(pod_key), self.pods.create_revision(pod_key))
            else {
                continue;
            };
            self.writer
                .delete_as_api(pod.as_ref(), created, None)
                .await
                .map_err(|e| pod_error("evicting", pod_key, e))?;
            tracing::info!(node = %key, pod = %pod_key, "evicted a pod from a node that is not ready");
            self.events.emit(
                Involved::of(pod.as_ref()),
                EventType::Normal,
                "TaintManagerEviction",
                format!("Marking for deletion Pod {pod_key}"),
            );
        }
        for pod_key in &result.force_delete {
            let (Some(pod), Some(created)) =
                (self.pods.get(pod_key), self.pods.create_revision(pod_key))
            else {
                continue;
            };
            let written = if pod.metadata.finalizers.is_empty() {
                self.writer.delete::<Pod>(pod_key, created).await
            } else {
                // Finalizers still hold it: it goes when they are removed.
                let mut released = pod.as_ref().clone();
                released.metadata.deletion_grace_period_seconds = Some(0);
                self.writer.replace(&released).await
            };
            written.map_err(|e| pod_error("force-deleting", pod_key, e))?;
            tracing::info!(node = %key, pod = %pod_key, "removed a terminating pod that its node could not stop");
        }
        Ok(match result.requeue_after {
            // A little late rather than early: a reconcile just before the
            // deadline would find nothing due and wait a full round again.
            Some(delay) => Action::RequeueAfter(delay + Duration::from_millis(50)),
            None => Action::Done,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::fixtures::*;
    use berth_api::objects::Resource;
    use berth_api::objects::pod::{Toleration, TolerationOperator};

    fn settings() -> NodeLifecycleSettings {
        NodeLifecycleSettings {
            monitor_grace: Duration::from_secs(40),
            eviction_timeout: Duration::from_secs(300),
        }
    }

    fn node(ready: ConditionStatus) -> Node {
        let mut node = Node::named("n1");
        node.metadata.uid = Some("uid-n1".into());
        node.metadata.generation = Some(1);
        node.metadata.resource_version = Some("5".into());
        node.status = Some(berth_api::objects::node::NodeStatus {
            conditions: vec![NodeCondition {
                type_: "Ready".into(),
                status: ready,
                last_heartbeat_time: Some(format_time(at(0))),
                last_transition_time: Some(format_time(at(0))),
                reason: None,
                message: None,
            }],
            ..Default::default()
        });
        node
    }

    fn pods_on_n1() -> Vec<Arc<Pod>> {
        let rs = replica_set("web", 2);
        let on = |name: &str| {
            let mut pod = pod_of(&rs, name, running_ready(at(0)));
            Arc::make_mut(&mut pod).spec.node_name = Some("n1".into());
            pod
        };
        vec![on("web-a"), on("web-b")]
    }

    fn unreachable_since(secs: i64) -> Taint {
        Taint {
            key: UNREACHABLE_TAINT.into(),
            value: None,
            effect: Some(TaintEffect::NoExecute),
            time_added: Some(format_time(at(secs))),
        }
    }

    /// The plan for n1, last heard from at 0 s with Ready `ready` and two
    /// ready pods, at `now` seconds.
    fn plan_at(ready: ConditionStatus, now: i64) -> NodePlan {
        plan(
            &node(ready),
            at(0),
            &pods_on_n1(),
            true,
            &settings(),
            at(now),
        )
    }

    fn names(keys: &[ObjectKey]) -> Vec<&str> {
        keys.iter().map(|k| k.name.as_str()).collect()
    }

    #[test]
    fn a_node_heard_from_within_the_grace_period_is_left_alone() {
        let plan = plan_at(ConditionStatus::True, 30);
        assert_eq!(plan.node, None);
        assert!(plan.mark_not_ready.is_empty() && plan.evict.is_empty());
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_silent_node_turns_unknown_is_tainted_and_its_pods_turn_not_ready() {
        let plan = plan_at(ConditionStatus::True, 40);
        let node = plan.node.expect("the node is written");
        let ready = &node.status.as_ref().unwrap().conditions[0];
        assert_eq!(ready.status, ConditionStatus::Unknown);
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(ready.last_heartbeat_time, Some(format_time(at(0))));
        assert_eq!(node.spec.taints, vec![unreachable_since(40)]);
        assert_eq!(node.metadata.generation, Some(2));
        assert_eq!(plan.transition, Some(Transition::NotReady));
        assert_eq!(names(&plan.mark_not_ready), ["web-a", "web-b"]);
        assert!(plan.evict.is_empty());
        // The pods are due at 40 + 300 s.
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(300)));
    }

    #[test]
    fn pods_are_evicted_after_the_timeout_or_their_own_toleration() {
        let mut tainted = node(ConditionStatus::True);
        mark_unknown(&mut tainted, at(40));
        tainted.spec.taints.push(unreachable_since(40));
        let mut pods = pods_on_n1();
        // web-b tolerates the taint for 60 s only; a third pod for ever.
        Arc::make_mut(&mut pods[1]).spec.tolerations = vec![Toleration {
            key: Some(UNREACHABLE_TAINT.into()),
            operator: Some(TolerationOperator::Exists),
            effect: Some(TaintEffect::NoExecute),
            toleration_seconds: Some(60),
            ..Toleration::default()
        }];
        let mut forever = pods[0].clone();
        let forever_pod = Arc::make_mut(&mut forever);
        forever_pod.metadata.name = "web-forever".into();
        forever_pod.spec.tolerations = vec![Toleration {
            operator: Some(TolerationOperator::Exists),
            ..Toleration::default()
        }];
        pods.push(forever);

        let early = plan(&tainted, at(0), &pods, true, &settings(), at(100));
        assert_eq!(early.node, None, "already Unknown and tainted");
        assert_eq!(names(&early.evict), ["web-b"]);
        assert_eq!(
            early.requeue_after,
            Some(Duration::from_secs(30)),
            "web-b's grace period is over before web-a is due"
        );

        let late = plan(&tainted, at(0), &pods, true, &settings(), at(340));
        assert_eq!(names(&late.evict), ["web-a", "web-b"]);

        let disrupted = plan(&tainted, at(0), &pods, false, &settings(), at(340));
        assert!(disrupted.evict.is_empty(), "no node is Ready: nobody moves");
        assert!(disrupted.requeue_after.is_some());
    }

    #[test]
    fn a_terminating_pod_its_node_cannot_stop_goes_once_its_grace_is_over() {
        let mut tainted = node(ConditionStatus::True);
        mark_unknown(&mut tainted, at(40));
        tainted.spec.taints.push(unreachable_since(40));
        let mut pods = pods_on_n1();
        // Evicted at 340 s with 30 s of grace: due at 370 s.
        let evicted = Arc::make_mut(&mut pods[0]);
        evicted.metadata.deletion_timestamp = Some(format_time(at(370)));
        evicted.metadata.deletion_grace_period_seconds = Some(30);

        let waiting = plan(&tainted, at(0), &pods, true, &settings(), at(350));
        assert!(waiting.force_delete.is_empty());
        assert_eq!(
            names(&waiting.evict),
            ["web-b"],
            "web-a is being deleted already"
        );
        assert_eq!(waiting.requeue_after, Some(Duration::from_secs(20)));

        let over = plan(&tainted, at(0), &pods, true, &settings(), at(370));
        assert_eq!(names(&over.force_delete), ["web-a"]);
        assert_eq!(names(&over.evict), ["web-b"]);

        let disrupted = plan(&tainted, at(0), &pods, false, &settings(), at(370));
        assert!(
            disrupted.force_delete.is_empty(),
            "no node is Ready: nobody moves"
        );

        let ready = plan(
            &node(ConditionStatus::True),
            at(360),
            &pods,
            true,
            &settings(),
            at(370),
        );
        assert!(
            ready.force_delete.is_empty(),
            "a Ready node stops its own pods"
        );
    }

    #[test]
    fn a_node_that_reports_again_loses_the_taint() {
        let mut back = node(ConditionStatus::True);
        back.spec.taints = vec![
            unreachable_since(40),
            Taint {
                key: "gpu".into(),
                value: Some("yes".into()),
                effect: Some(TaintEffect::NoSchedule),
                time_added: None,
            },
        ];
        let plan = plan(&back, at(100), &[], true, &settings(), at(101));
        let node = plan.node.expect("the taint is removed");
        assert_eq!(node.spec.taints.len(), 1);
        assert_eq!(node.spec.taints[0].key, "gpu", "other taints stay");
        assert_eq!(plan.transition, Some(Transition::Ready));
    }

    fn with_condition(mut node: Node, type_: &str, status: ConditionStatus) -> Node {
        let conditions = &mut node.status.as_mut().unwrap().conditions;
        conditions.retain(|c| c.type_ != type_);
        conditions.push(NodeCondition {
            type_: type_.into(),
            status,
            last_heartbeat_time: Some(format_time(at(0))),
            last_transition_time: Some(format_time(at(0))),
            reason: None,
            message: None,
        });
        node
    }

    fn memory_pressure_since(secs: i64) -> Taint {
        Taint {
            key: "node.kubernetes.io/memory-pressure".into(),
            value: None,
            effect: Some(TaintEffect::NoSchedule),
            time_added: Some(format_time(at(secs))),
        }
    }

    #[test]
    fn a_node_under_pressure_is_tainted_no_schedule_while_it_lasts_and_its_pods_stay() {
        let pressed = with_condition(
            node(ConditionStatus::True),
            "MemoryPressure",
            ConditionStatus::True,
        );
        let pressed = with_condition(pressed, "DiskPressure", ConditionStatus::False);
        let plan = plan(&pressed, at(0), &pods_on_n1(), true, &settings(), at(5));
        let tainted = plan.node.expect("tainted");
        assert_eq!(tainted.spec.taints, vec![memory_pressure_since(5)]);
        assert_eq!(tainted.metadata.generation, Some(2));
        assert_eq!(plan.transition, None, "the node is still Ready");
        assert!(plan.mark_not_ready.is_empty() && plan.evict.is_empty());

        // Still under pressure: nothing to write.
        let again = super::plan(&tainted, at(0), &pods_on_n1(), true, &settings(), at(15));
        assert_eq!(again.node, None);

        // Relieved: the taint goes, and nobody hears of readiness.
        let relieved = with_condition(tainted, "MemoryPressure", ConditionStatus::False);
        let plan = super::plan(&relieved, at(0), &pods_on_n1(), true, &settings(), at(20));
        assert!(plan.node.expect("untainted").spec.taints.is_empty());
        assert_eq!(plan.transition, None);
    }

    #[test]
    fn a_silent_node_under_pressure_has_its_pressure_unknown_and_untainted() {
        let mut pressed = with_condition(
            node(ConditionStatus::True),
            "MemoryPressure",
            ConditionStatus::True,
        );
        pressed.spec.taints = vec![memory_pressure_since(0)];
        let plan = plan(&pressed, at(0), &pods_on_n1(), true, &settings(), at(40));
        let node = plan.node.expect("written");
        let memory = node
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == "MemoryPressure")
            .unwrap();
        assert_eq!(memory.status, ConditionStatus::Unknown);
        assert_eq!(memory.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(node.spec.taints, vec![unreachable_since(40)]);
        assert_eq!(plan.transition, Some(Transition::NotReady));
    }

    #[test]
    fn a_node_reporting_not_ready_gets_the_not_ready_taint() {
        let plan = plan_at(ConditionStatus::False, 5);
        let node = plan.node.expect("tainted");
        assert_eq!(node.spec.taints[0].key, NOT_READY_TAINT);
        assert_eq!(plan.transition, Some(Transition::NotReady));
        assert_eq!(plan.mark_not_ready.len(), 2);
    }
}
