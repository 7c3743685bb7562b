//! The scheduler's loop: the process's pod informer (each pod decoded once,
//! shared with the controllers and the node API) and a watch over nodes
//! keep an in-memory view of every node and what is bound to it; unbound
//! pods queue up and are placed one at a time against that view (never a
//! re-list per pod), and their bindings are written concurrently through
//! [`Objects`] (fenced by the leader's term), so the store's group commit
//! carries many at once. A binding is built from the pod the informer
//! holds, compared on its revision: no read before the write.
//!
//! A placed pod is *assumed* on its node at once, so the next decision sees
//! the room it took; if its binding fails (the pod changed, or the fence
//! fell), the assumption is dropped and the pod goes back to the queue. A
//! pod that fits nowhere gets `PodScheduled=False` and a `FailedScheduling`
//! event, and waits until a node or a pod changes: no hot loop.
//!
//! A third watch follows the Volumes (claims): a pod that mounts a claim
//! whose data is on a node (`status.nodeName`) goes to that node only, and
//! the binding of the first pod of an unplaced claim records its node in
//! the Volume in the same transaction, so that the claim's later pods
//! follow it. A pod naming a claim that does not exist waits.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_api::objects::meta::ConditionStatus;
use berth_api::objects::pod::{PodCondition, PodStatus};
use berth_api::objects::{Kind, Node, Pod, Volume};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::fit::{self, BoundPod, NodeState, PodDemand};
use crate::controllers::runtime::clock::format_time;
use crate::controllers::runtime::reflector::read_revision;
use crate::controllers::runtime::{Informer, ObjectKey};
use crate::events::{EventRecorder, EventType, Involved};
use crate::objects::{ObjectError, ObjectRef, Objects, Replacement};
use crate::store::types::{Event, EventKind, KeyRange, Revision, WatchRequest};
use crate::store::{StoreError, StoreResult};

/// Every node's key starts with this.
fn nodes_prefix() -> String {
    crate::keys::collection(berth_api::objects::Kind::Node, None)
}

/// Every volume's key starts with this.
fn volumes_prefix() -> String {
    crate::keys::collection(berth_api::objects::Kind::Volume, None)
}

/// How many keys one page of the initial list reads.
const LIST_PAGE: i64 = 1000;

/// How many bindings may be in flight at once.
const MAX_BINDS_IN_FLIGHT: usize = 256;

/// Scheduling figures for `/metrics`.
#[derive(Clone)]
pub struct SchedulerMetrics {
    attempts: prometheus::IntCounterVec,
    latency: prometheus::Histogram,
    pending: prometheus::IntGauge,
}

impl SchedulerMetrics {
    /// Registers the scheduler's metrics in `registry`.
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<SchedulerMetrics> {
        let attempts = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "berth_scheduler_attempts_total",
                "Scheduling attempts by result (scheduled, unschedulable, error).",
            ),
            &["result"],
        )?;
        let latency = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "berth_scheduler_scheduling_duration_seconds",
                "From a pod's arrival in the queue to its binding being written.",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 18)?),
        )?;
        let pending =
            prometheus::IntGauge::new("berth_scheduler_pending_pods", "Pods waiting for a node.")?;
        registry.register(Box::new(attempts.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pending.clone()))?;
        Ok(SchedulerMetrics {
            attempts,
            latency,
            pending,
        })
    }
}

/// What the scheduler needs.
pub struct Scheduler {
    /// Where it reads nodes and claims and writes bindings; fenced by the
    /// leader's term when the control plane runs it.
    pub objects: Objects,
    /// The process's pods ([`crate::controllers::start_pod_informer`]).
    pub pods: Informer<Pod>,
    /// Where `Scheduled` and `FailedScheduling` go.
    pub events: EventRecorder,
    /// Its figures.
    pub metrics: SchedulerMetrics,
}

/// How a binding ended, reported back to the loop.
enum BindOutcome {
    Bound { key: String, waited: Duration },
    Retry { key: String, claims: Vec<String> },
}

/// A claim (Volume) as the scheduler sees it.
struct ClaimView {
    /// The Volume's revision, which a binding that places it compares.
    revision: Revision,
    /// The node its data is on, as stored.
    node: Option<String>,
    /// The node a binding in flight is placing it on.
    assumed: Option<String>,
}

/// A pod waiting for a node.
struct Waiting {
    pod: Arc<Pod>,
    revision: Revision,
    since: Instant,
}

#[derive(Default)]
struct State {
    nodes: HashMap<String, NodeState>,
    /// Where each bound (or assumed) pod is, by `tenant/name`.
    placed: HashMap<String, String>,
    /// Unbound pods by `tenant/name`.
    waiting: HashMap<String, Waiting>,
    /// Keys in arrival order (a key may be stale: check `waiting`).
    queue: VecDeque<String>,
    /// Pods that fit nowhere, until something changes.
    parked: BTreeSet<String>,
    /// Pods whose binding is being written.
    binding: BTreeSet<String>,
    /// The last FailedScheduling message per pod, to write it once.
    told: HashMap<String, String>,
    /// Where the next pod's search through the nodes starts, so that
    /// searches that stop early still cover every node in turn.
    next_start: usize,
    /// Every claim by `tenant/name`.
    claims: HashMap<String, ClaimView>,
}

fn split_key(key: &[u8], prefix: &str) -> Option<String> {
    std::str::from_utf8(key)
        .ok()?
        .strip_prefix(prefix)
        .map(str::to_owned)
}

fn tenant_of(key: &str) -> &str {
    key.split_once('/').map_or("", |(tenant, _)| tenant)
}

fn is_terminal(pod: &Pod) -> bool {
    use berth_api::objects::pod::PodPhase;
    pod.status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|phase| matches!(phase, PodPhase::Succeeded | PodPhase::Failed))
}

impl State {
    fn bound_pod(key: &str, pod: &Pod) -> BoundPod {
        let demand = PodDemand::of(tenant_of(key), pod);
        BoundPod {
            tenant: demand.tenant,
            labels: demand.labels,
            owner: demand.owner,
            requests: demand.requests,
            host_ports: demand.host_ports,
        }
    }

    fn unplace(&mut self, key: &str) {
        if let Some(node) = self.placed.remove(key)
            && let Some(state) = self.nodes.get_mut(&node)
        {
            state.remove_pod(key);
        }
    }

    fn place(&mut self, key: &str, node: &str, pod: &Pod) {
        self.unplace(key);
        if let Some(state) = self.nodes.get_mut(node) {
            state.add_pod(key.to_owned(), State::bound_pod(key, pod));
        }
        self.placed.insert(key.to_owned(), node.to_owned());
    }

    /// Something changed that may let parked pods fit.
    fn unpark(&mut self) {
        for key in std::mem::take(&mut self.parked) {
            self.queue.push_back(key);
        }
    }

    fn pod_changed(&mut self, key: String, pod: Option<(Arc<Pod>, Revision)>) {
        match pod {
            Some((pod, revision)) if !is_terminal(&pod) => match pod.spec.node_name.clone() {
                Some(node) if !node.is_empty() => {
                    self.waiting.remove(&key);
                    self.parked.remove(&key);
                    self.place(&key, &node, &pod);
                }
                _ if self.binding.contains(&key) => {
                    // Our own binding is in flight; its answer decides.
                    if let Some(waiting) = self.waiting.get_mut(&key) {
                        waiting.pod = pod;
                        waiting.revision = revision;
                    }
                }
                _ => {
                    self.unplace(&key);
                    let fresh = !self.waiting.contains_key(&key);
                    let since = self
                        .waiting
                        .get(&key)
                        .map_or_else(Instant::now, |w| w.since);
                    self.waiting.insert(
                        key.clone(),
                        Waiting {
                            pod,
                            revision,
                            since,
                        },
                    );
                    if fresh || self.parked.remove(&key) {
                        self.queue.push_back(key);
                    }
                }
            },
            // Gone, or finished: its room is free again.
            _ => {
                self.waiting.remove(&key);
                self.parked.remove(&key);
                self.told.remove(&key);
                if self.placed.contains_key(&key) {
                    self.unplace(&key);
                    self.unpark();
                }
            }
        }
    }

    fn claim_changed(&mut self, key: String, volume: Option<(Volume, Revision)>) {
        match volume {
            Some((volume, revision)) => {
                let node = volume
                    .status
                    .and_then(|status| status.node_name)
                    .filter(|node| !node.is_empty());
                let fresh = !self.claims.contains_key(&key);
                let view = self.claims.entry(key).or_insert(ClaimView {
                    revision,
                    node: None,
                    assumed: None,
                });
                let moved = view.node != node;
                view.revision = revision;
                if node.is_some() {
                    view.assumed = None;
                }
                view.node = node;
                // A claim that appears, or lands on a node, may let
                // waiting pods fit.
                if fresh || moved {
                    self.unpark();
                }
            }
            None => {
                self.claims.remove(&key);
                self.unpark();
            }
        }
    }

    /// The claims of a pod that are on no node yet (as stored), with the
    /// revisions a binding compares.
    fn unplaced_claims(&self, tenant: &str, demand: &PodDemand) -> Vec<(String, Revision)> {
        demand
            .claims
            .iter()
            .filter_map(|claim| {
                let key = format!("{tenant}/{claim}");
                let view = self.claims.get(&key)?;
                view.node.is_none().then_some((key, view.revision))
            })
            .collect()
    }

    fn node_changed(&mut self, name: String, node: Option<Node>) {
        let matters = match node {
            Some(node) => {
                let mut state = NodeState::from_node(&node);
                let changed = match self.nodes.remove(&name) {
                    Some(old) => {
                        // A heartbeat changes nothing the filters look at;
                        // only a real change wakes parked pods.
                        let changed = old.ready != state.ready
                            || old.unschedulable != state.unschedulable
                            || old.labels != state.labels
                            || old.taints != state.taints
                            || old.allocatable != state.allocatable;
                        for (key, pod) in old.pods {
                            state.add_pod(key, pod);
                        }
                        changed
                    }
                    None => true,
                };
                self.nodes.insert(name, state);
                changed
            }
            None => self.nodes.remove(&name).is_some(),
        };
        if matters {
            self.unpark();
        }
    }
}

impl Scheduler {
    /// Runs until `shutdown`; answers why it stopped when it fails.
    pub async fn run(self, shutdown: CancellationToken) -> StoreResult<()> {
        let store = self.objects.store().clone();
        let mut state = State::default();
        let revision = self.load(&mut state).await?;
        let mut nodes = store
            .watch(WatchRequest {
                range: KeyRange::prefix(nodes_prefix()),
                start_revision: revision + 1,
                prev_kv: false,
            })
            .await?;
        let mut volumes = store
            .watch(WatchRequest {
                range: KeyRange::prefix(volumes_prefix()),
                start_revision: revision + 1,
                prev_kv: false,
            })
            .await?;
        // Nothing is placed before every bound pod is known.
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            () = self.pods.cache().ready() => {}
        }
        let (changed, mut pods) = mpsc::unbounded_channel();
        // The informer hands over every pod it holds first, then changes.
        let _subscription = self.pods.subscribe_changes(Box::new(move |change| {
            let _ = changed.send((change.key.clone(), change.new.cloned()));
        }));
        while let Ok((key, pod)) = pods.try_recv() {
            apply_pod_change(&mut state, &key, pod);
        }
        let this = Arc::new(self);
        let (outcomes, mut outcome_rx) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(MAX_BINDS_IN_FLIGHT));
        loop {
            this.schedule_queued(&mut state, &slots, &outcomes).await;
            this.metrics.pending.set(state.waiting.len() as i64);
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                change = pods.recv() => match change {
                    Some((key, pod)) => {
                        apply_pod_change(&mut state, &key, pod);
                        while let Ok((key, pod)) = pods.try_recv() {
                            apply_pod_change(&mut state, &key, pod);
                        }
                    }
                    None => return Err(StoreError::Unavailable("the pod informer stopped".into())),
                },
                batch = nodes.next() => match batch {
                    Some(Ok(events)) => for event in events { apply_node_event(&mut state, &event) },
                    Some(Err(error)) => return Err(error),
                    None => return Err(StoreError::Unavailable("the node watch ended".into())),
                },
                batch = volumes.next() => match batch {
                    Some(Ok(events)) => for event in events { apply_volume_event(&mut state, &event) },
                    Some(Err(error)) => return Err(error),
                    None => return Err(StoreError::Unavailable("the volume watch ended".into())),
                },
                Some(outcome) = outcome_rx.recv() => this.settle(&mut state, outcome),
            }
            // Take whatever else is ready before deciding again.
            while let Ok(outcome) = outcome_rx.try_recv() {
                this.settle(&mut state, outcome);
            }
        }
    }

    fn settle(&self, state: &mut State, outcome: BindOutcome) {
        match outcome {
            BindOutcome::Bound { key, waited } => {
                state.binding.remove(&key);
                state.waiting.remove(&key);
                self.metrics.latency.observe(waited.as_secs_f64());
                self.metrics
                    .attempts
                    .with_label_values(&["scheduled"])
                    .inc();
            }
            BindOutcome::Retry { key, claims } => {
                state.binding.remove(&key);
                state.unplace(&key);
                for claim in claims {
                    if let Some(view) = state.claims.get_mut(&claim) {
                        view.assumed = None;
                    }
                }
                self.metrics.attempts.with_label_values(&["error"]).inc();
                if state.waiting.contains_key(&key) {
                    state.queue.push_back(key);
                }
            }
        }
    }

    /// Lists nodes and claims at one revision.
    async fn load(&self, state: &mut State) -> StoreResult<Revision> {
        let store = self.objects.store();
        let mut nodes = Vec::new();
        let revision = store
            .range_prefix(nodes_prefix().as_bytes(), 0, LIST_PAGE, |kv| nodes.push(kv))
            .await?;
        for kv in nodes {
            if let (Some(name), Ok(node)) = (
                split_key(&kv.key, &nodes_prefix()),
                serde_json::from_slice::<Node>(&kv.value),
            ) {
                state.node_changed(name, Some(node));
            }
        }
        store
            .range_prefix(volumes_prefix().as_bytes(), revision, LIST_PAGE, |kv| {
                if let (Some(key), Ok(volume)) = (
                    split_key(&kv.key, &volumes_prefix()),
                    serde_json::from_slice::<Volume>(&kv.value),
                ) {
                    state.claim_changed(key, Some((volume, kv.mod_revision)));
                }
            })
            .await?;
        Ok(revision)
    }

    /// Places every queued pod it can, and starts their bindings.
    async fn schedule_queued(
        self: &Arc<Self>,
        state: &mut State,
        slots: &Arc<Semaphore>,
        outcomes: &mpsc::UnboundedSender<BindOutcome>,
    ) {
        while let Some(key) = state.queue.pop_front() {
            if state.binding.contains(&key) || state.parked.contains(&key) {
                continue;
            }
            let Some(waiting) = state.waiting.get(&key) else {
                continue;
            };
            let (pod, revision, since) = (waiting.pod.clone(), waiting.revision, waiting.since);
            let tenant = tenant_of(&key).to_owned();
            let mut demand = PodDemand::of(&tenant, &pod);
            demand.resolve_claims(|claim| {
                let view = state.claims.get(&format!("{tenant}/{claim}"))?;
                Some(view.node.clone().or_else(|| view.assumed.clone()))
            });
            let total = state.nodes.len();
            let enough = fit::enough_fitting(total);
            let start = state.next_start % total.max(1);
            state.next_start = start + enough;
            let nodes = state.nodes.values();
            let in_turn = nodes.clone().skip(start).chain(nodes.take(start));
            match fit::choose(&demand, in_turn, enough) {
                Ok(node) => {
                    state.place(&key, &node, &pod);
                    state.binding.insert(key.clone());
                    state.told.remove(&key);
                    // The pod's unplaced claims go with it: later pods of
                    // them are placed beside it before its binding lands.
                    let claims = state.unplaced_claims(&tenant, &demand);
                    for (claim, _) in &claims {
                        if let Some(view) = state.claims.get_mut(claim) {
                            view.assumed = Some(node.clone());
                        }
                    }
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let this = self.clone();
                    let outcomes = outcomes.clone();
                    tokio::spawn(async move {
                        let outcome = match this.bind(&key, &pod, revision, &node, &claims).await {
                            Ok(true) => BindOutcome::Bound {
                                key,
                                waited: since.elapsed(),
                            },
                            Ok(false) | Err(_) => BindOutcome::Retry {
                                key,
                                claims: claims.into_iter().map(|(claim, _)| claim).collect(),
                            },
                        };
                        drop(permit);
                        let _ = outcomes.send(outcome);
                    });
                }
                Err(unschedulable) => {
                    self.metrics
                        .attempts
                        .with_label_values(&["unschedulable"])
                        .inc();
                    state.parked.insert(key.clone());
                    let message = unschedulable.to_string();
                    if state.told.get(&key) != Some(&message) {
                        state.told.insert(key.clone(), message.clone());
                        let this = self.clone();
                        tokio::spawn(async move {
                            if let Err(error) = this
                                .report_unschedulable(&key, &pod, revision, &message)
                                .await
                            {
                                tracing::warn!(%key, %error, "recording FailedScheduling failed");
                            }
                        });
                    }
                }
            }
        }
    }

    /// Writes `spec.nodeName` if the pod is still the version placed, and
    /// in the same transaction `status.nodeName` of each claim in `claims`
    /// (`tenant/name` and the revision placed against) that is still that
    /// version; false when anything changed (or the fence fell).
    async fn bind(
        &self,
        key: &str,
        pod: &Pod,
        revision: Revision,
        node: &str,
        claims: &[(String, Revision)],
    ) -> Result<bool, ObjectError> {
        let mut bound = pod.clone();
        bound.spec.node_name = Some(node.to_owned());
        let now = format_time(self.objects.now());
        set_condition(
            bound.status.get_or_insert_with(PodStatus::default),
            "PodScheduled",
            ConditionStatus::True,
            None,
            &now,
        );
        let mut writes = vec![Replacement {
            at: object_ref(Kind::Pod, key),
            object: to_value(&bound)?,
            expected: revision,
            lease: None,
        }];
        for (claim, claim_revision) in claims {
            let at = object_ref(Kind::Volume, claim);
            let Some(current) = self.objects.store().get(at.key().as_bytes(), 0).await? else {
                return Ok(false);
            };
            if current.mod_revision != *claim_revision {
                return Ok(false);
            }
            let mut volume: Value = serde_json::from_slice(&current.value)
                .map_err(|e| StoreError::Database(format!("volume {claim} is not JSON: {e}")))?;
            if !volume["status"].is_object() {
                volume["status"] = json!({});
            }
            volume["status"]["nodeName"] = json!(node);
            volume["status"]["phase"] = json!("Bound");
            writes.push(Replacement {
                at,
                object: volume,
                expected: *claim_revision,
                lease: None,
            });
        }
        match self.objects.replace_all(writes).await {
            Ok(_) => {}
            Err(ObjectError::Conflict(_)) => return Ok(false),
            Err(error) => return Err(error),
        }
        let involved = Involved {
            kind: "Pod".into(),
            tenant: tenant_of(key).to_owned(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
        };
        // Written in the background: the next binding need not wait for it.
        let message = format!("Successfully assigned {key} to {node}");
        self.events
            .emit(involved, EventType::Normal, "Scheduled", message);
        Ok(true)
    }

    async fn report_unschedulable(
        &self,
        key: &str,
        pod: &Pod,
        revision: Revision,
        message: &str,
    ) -> Result<(), ObjectError> {
        let mut told = pod.clone();
        let now = format_time(self.objects.now());
        let status = told.status.get_or_insert_with(PodStatus::default);
        set_condition(
            status,
            "PodScheduled",
            ConditionStatus::False,
            Some(("Unschedulable", message)),
            &now,
        );
        status.phase.get_or_insert_default();
        let written = self
            .objects
            .replace_all(vec![Replacement {
                at: object_ref(Kind::Pod, key),
                object: to_value(&told)?,
                expected: revision,
                lease: None,
            }])
            .await;
        match written {
            // Losing this race only means the pod changed: it is queued again.
            Ok(_) | Err(ObjectError::Conflict(_)) => {}
            Err(error) => return Err(error),
        }
        let involved = Involved {
            kind: "Pod".into(),
            tenant: tenant_of(key).to_owned(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
        };
        Ok(self
            .events
            .record(&involved, EventType::Warning, "FailedScheduling", message)
            .await?)
    }
}

/// Where the object of `kind` at `tenant/name` lives.
fn object_ref(kind: Kind, key: &str) -> ObjectRef {
    let (tenant, name) = key.split_once('/').unwrap_or(("", key));
    ObjectKey::namespaced(tenant, name).object_ref(kind)
}

fn to_value(pod: &Pod) -> Result<Value, ObjectError> {
    serde_json::to_value(pod).map_err(|e| {
        ObjectError::Store(StoreError::Database(format!(
            "pod {:?} cannot be written: {e}",
            pod.metadata.name
        )))
    })
}

/// Sets one condition of `status.conditions` (with its reason and
/// message, if any), keeping its transition time when its status does not
/// change.
fn set_condition(
    status: &mut PodStatus,
    kind: &str,
    value: ConditionStatus,
    why: Option<(&str, &str)>,
    now: &str,
) {
    let previous = status.conditions.iter().position(|c| c.type_ == kind);
    let last_transition_time = match previous {
        Some(i) if status.conditions[i].status == value => {
            status.conditions[i].last_transition_time.clone()
        }
        _ => Some(now.to_owned()),
    };
    let condition = PodCondition {
        type_: kind.to_owned(),
        status: value,
        last_transition_time,
        reason: why.map(|(reason, _)| reason.to_owned()),
        message: why.map(|(_, message)| message.to_owned()),
        ..PodCondition::default()
    };
    match previous {
        Some(i) => status.conditions[i] = condition,
        None => status.conditions.push(condition),
    }
}

/// A change the pod informer reported.
fn apply_pod_change(state: &mut State, key: &ObjectKey, pod: Option<Arc<Pod>>) {
    let pod = pod.map(|pod| {
        let revision = read_revision(&*pod).unwrap_or_default();
        (pod, revision)
    });
    state.pod_changed(key.to_string(), pod);
}

fn apply_volume_event(state: &mut State, event: &Event) {
    let Some(key) = split_key(&event.kv.key, &volumes_prefix()) else {
        return;
    };
    let volume = match event.kind {
        EventKind::Put => serde_json::from_slice::<Volume>(&event.kv.value)
            .ok()
            .map(|volume| (volume, event.kv.mod_revision)),
        EventKind::Delete => None,
    };
    state.claim_changed(key, volume);
}

fn apply_node_event(state: &mut State, event: &Event) {
    let Some(name) = split_key(&event.kv.key, &nodes_prefix()) else {
        return;
    };
    let node = match event.kind {
        EventKind::Put => serde_json::from_slice::<Node>(&event.kv.value).ok(),
        EventKind::Delete => None,
    };
    state.node_changed(name, node);
}
