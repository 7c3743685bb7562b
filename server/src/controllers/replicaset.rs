//! The ReplicaSet controller: keeps `spec.replicas` pods of the template
//! running for each ReplicaSet, and reports how many exist, are ready and
//! are available.
//!
//! Its core, [`plan`], is a pure function of the ReplicaSet, the pods the
//! cache shows it owning and the time; [`ReplicaSetController`] feeds it
//! from the caches and carries the plan out through the fenced writer.
//! Because the cache lags the controller's own writes, it remembers the
//! creates and deletes in flight per ReplicaSet ([`Expectations`], as
//! Kubernetes does) and does not count pods again until the cache has seen
//! them all, which would otherwise create pods twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::objects::meta::ConditionStatus;
use berth_api::objects::pod::{PodPhase, PodStatus};
use berth_api::objects::workloads::ReplicaSetStatus;
use berth_api::objects::{Kind, OwnerReference, Pod, ReplicaSet, Resource};
use chrono::{DateTime, Utc};
use rand::Rng;

use super::fenced::{FencedWriter, WriteError};
use super::runtime::clock::{Clock, parse_time};
use super::runtime::{Action, Cache, ObjectKey, OwnWrites, Reconciler};
use crate::events::{EventRecorder, EventType, Involved};

/// The controller's name in metrics and logs.
pub const NAME: &str = "replicaset";

/// How long in-flight creates and deletes are waited for before the
/// controller counts again anyway (a lost watch event must not stall it).
const EXPECTATIONS_TIMEOUT: chrono::Duration = chrono::Duration::minutes(5);

/// The most pods one reconcile creates or deletes.
const BURST: usize = 500;

/// Why a ReplicaSet reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaSetError {
    /// The selector cannot be parsed (validation should have refused it).
    #[error("the selector of ReplicaSet {key} is invalid: {reason}")]
    InvalidSelector {
        /// The ReplicaSet.
        key: ObjectKey,
        /// Why.
        reason: String,
    },
    /// A pod could not be created.
    #[error("creating a pod for ReplicaSet {key} failed: {source}")]
    PodCreateFailed {
        /// The ReplicaSet.
        key: ObjectKey,
        /// The write's error.
        source: WriteError,
    },
    /// A pod could not be deleted.
    #[error("deleting pod {pod} of ReplicaSet {key} failed: {source}")]
    PodDeleteFailed {
        /// The ReplicaSet.
        key: ObjectKey,
        /// The pod.
        pod: ObjectKey,
        /// The write's error.
        source: WriteError,
    },
    /// The status could not be written.
    #[error("writing the status of ReplicaSet {key} failed: {source}")]
    StatusUpdateFailed {
        /// The ReplicaSet.
        key: ObjectKey,
        /// The write's error.
        source: WriteError,
    },
}

/// What one reconcile of a ReplicaSet should do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplicaSetPlan {
    /// How many pods to create from the template.
    pub create: usize,
    /// Which pods to delete, most expendable first.
    pub delete: Vec<ObjectKey>,
    /// The status to write, when it differs from the stored one.
    pub status: Option<ReplicaSetStatus>,
    /// When to look again even if nothing changes (a ready pod becomes
    /// available after `minReadySeconds`).
    pub requeue_after: Option<Duration>,
}

/// Decides what `replica_set` needs, given the pods the cache shows it
/// owning (`owned`) and the time. With `in_flight`, earlier creates or
/// deletes are not yet visible, so only the status is planned.
pub fn plan(
    replica_set: &ReplicaSet,
    owned: &[Arc<Pod>],
    now: DateTime<Utc>,
    in_flight: bool,
) -> Result<ReplicaSetPlan, String> {
    let selector = replica_set
        .spec
        .selector
        .clone()
        .unwrap_or_default()
        .to_selector()
        .map_err(|e| e.to_string())?;
    let uid = replica_set.metadata.uid.as_deref().unwrap_or_default();
    let pods: Vec<&Pod> = owned
        .iter()
        .map(|pod| pod.as_ref())
        .filter(|pod| is_controlled_by(pod, uid))
        .filter(|pod| is_active(pod))
        .filter(|pod| selector.matches(&pod.metadata.labels))
        .collect();
    let wanted = replica_set.spec.replicas().max(0) as usize;
    let mut result = ReplicaSetPlan::default();
    if !in_flight {
        if pods.len() < wanted {
            result.create = (wanted - pods.len()).min(BURST);
        } else if pods.len() > wanted {
            let excess = (pods.len() - wanted).min(BURST);
            result.delete = deletion_order(&pods)
                .into_iter()
                .take(excess)
                .map(ObjectKey::of)
                .collect();
        }
    }
    let min_ready = i64::from(replica_set.spec.min_ready_seconds.unwrap_or(0).max(0));
    let template_labels = &replica_set.spec.template.metadata.labels;
    let mut status = ReplicaSetStatus {
        replicas: pods.len() as i32,
        observed_generation: replica_set.metadata.generation,
        conditions: replica_set
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default(),
        ..ReplicaSetStatus::default()
    };
    let (mut fully_labeled, mut ready, mut available) = (0, 0, 0);
    for pod in &pods {
        if template_labels
            .iter()
            .all(|(k, v)| pod.metadata.labels.get(k) == Some(v))
        {
            fully_labeled += 1;
        }
        match availability(pod, min_ready, now) {
            Availability::NotReady => {}
            Availability::Available => {
                ready += 1;
                available += 1;
            }
            Availability::ReadyUntil(at) => {
                ready += 1;
                let wait = (at - now).to_std().unwrap_or_default();
                result.requeue_after = Some(result.requeue_after.map_or(wait, |w| w.min(wait)));
            }
        }
    }
    status.fully_labeled_replicas = Some(fully_labeled);
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    if replica_set.status.as_ref() != Some(&status) {
        result.status = Some(status);
    }
    Ok(result)
}

/// Whether a pod counts: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase);
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(phase, Some(PodPhase::Succeeded | PodPhase::Failed))
}

fn is_controlled_by(pod: &Pod, uid: &str) -> bool {
    pod.metadata
        .controller()
        .is_some_and(|owner| owner.uid == uid)
}

/// When the pod's `Ready` condition last turned true, if it is true now.
pub fn ready_since(pod: &Pod) -> Option<Option<DateTime<Utc>>> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (condition.status == ConditionStatus::True)
        .then(|| parse_time(condition.last_transition_time.as_deref()))
}

/// Where a pod stands on the way to available.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// Not ready.
    NotReady,
    /// Ready, and not yet for `minReadySeconds`: available from then on.
    ReadyUntil(DateTime<Utc>),
    /// Ready for at least `minReadySeconds`.
    Available,
}

/// A pod's availability at `now` with `min_ready_seconds`, as Kubernetes
/// counts it: ready, and ready since at least that long ago. With a
/// minimum, a ready pod whose transition time is unknown is not yet
/// available.
pub fn availability(pod: &Pod, min_ready_seconds: i64, now: DateTime<Utc>) -> Availability {
    match ready_since(pod) {
        None => Availability::NotReady,
        Some(_) if min_ready_seconds == 0 => Availability::Available,
        Some(None) => Availability::NotReady,
        Some(Some(since)) => {
            let at = since + chrono::Duration::seconds(min_ready_seconds);
            if at <= now {
                Availability::Available
            } else {
                Availability::ReadyUntil(at)
            }
        }
    }
}

/// The pods in the order Kubernetes deletes them when scaling down:
/// unscheduled before scheduled, pending before unknown before running,
/// not ready before ready, ready for less time before more, more restarts
/// before fewer, younger before older.
pub fn deletion_order<'a>(pods: &[&'a Pod]) -> Vec<&'a Pod> {
    let mut ordered = pods.to_vec();
    ordered.sort_by_cached_key(|pod| {
        let status = pod.status.clone().unwrap_or_default();
        let ready = ready_since(pod);
        (
            pod.spec.node_name.is_some(),
            phase_rank(&status),
            ready.is_some(),
            std::cmp::Reverse(ready.flatten()),
            std::cmp::Reverse(restarts(&status)),
            std::cmp::Reverse(parse_time(pod.metadata.creation_timestamp.as_deref())),
            pod.metadata.name.clone(),
        )
    });
    ordered
}

fn phase_rank(status: &PodStatus) -> u8 {
    match status.phase.unwrap_or_default() {
        PodPhase::Pending => 0,
        PodPhase::Unknown => 1,
        PodPhase::Running => 2,
        PodPhase::Succeeded | PodPhase::Failed => 3,
    }
}

fn restarts(status: &PodStatus) -> i64 {
    status
        .container_statuses
        .iter()
        .map(|c| i64::from(c.restart_count))
        .sum()
}

/// A new pod for `replica_set`: its template's labels, annotations and
/// spec, owned by the ReplicaSet as controller.
pub fn pod_from_template(replica_set: &ReplicaSet, name: &str) -> Pod {
    let template = &replica_set.spec.template;
    let mut pod = Pod::named(name);
    pod.metadata.tenant = replica_set.metadata.tenant.clone();
    pod.metadata.labels = template.metadata.labels.clone();
    pod.metadata.annotations = template.metadata.annotations.clone();
    pod.metadata.owner_references = vec![controller_reference(
        Kind::ReplicaSet,
        &replica_set.api_version,
        &replica_set.metadata,
    )];
    pod.spec = template.spec.clone();
    pod
}

/// An owner reference to `owner` as the controller.
pub fn controller_reference(
    kind: Kind,
    api_version: &str,
    owner: &berth_api::objects::ObjectMeta,
) -> OwnerReference {
    OwnerReference {
        api_version: if api_version.is_empty() {
            kind.api_version().to_owned()
        } else {
            api_version.to_owned()
        },
        kind: kind.name().to_owned(),
        name: owner.name.clone(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// `{owner}-{5 random characters}`, from the alphabet Kubernetes uses for
/// generated names (no vowels, no look-alikes).
pub fn generated_name(owner: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{owner}-{suffix}")
}

/// The index value of the pods (or ReplicaSets) a controller owns: its uid.
pub fn controller_uid<K: Resource>(object: &K) -> Vec<String> {
    object
        .metadata()
        .controller()
        .map(|owner| vec![owner.uid.clone()])
        .unwrap_or_default()
}

/// Creates and deletes in flight, per owner, until the cache shows them.
#[derive(Debug, Default)]
pub struct Expectations {
    pending: Mutex<HashMap<ObjectKey, Pending>>,
}

#[derive(Debug)]
struct Pending {
    creates: HashSet<ObjectKey>,
    deletes: HashSet<ObjectKey>,
    since: DateTime<Utc>,
}

impl Expectations {
    /// Whether every create and delete in flight for `owner` is visible in
    /// `pods` (or has waited too long); forgets those that are.
    pub fn settled(&self, owner: &ObjectKey, pods: &Cache<Pod>, now: DateTime<Utc>) -> bool {
        let mut pending = self.lock();
        let Some(entry) = pending.get_mut(owner) else {
            return true;
        };
        entry.creates.retain(|pod| pods.get(pod).is_none());
        // A pod marked for deletion (held by a finalizer) counts as gone.
        entry.deletes.retain(|pod| {
            pods.get(pod)
                .is_some_and(|pod| pod.metadata.deletion_timestamp.is_none())
        });
        let timed_out = now - entry.since > EXPECTATIONS_TIMEOUT;
        if timed_out {
            tracing::warn!(%owner, "in-flight pod changes never showed in the cache; counting again");
        }
        if timed_out || (entry.creates.is_empty() && entry.deletes.is_empty()) {
            pending.remove(owner);
            return true;
        }
        false
    }

    /// Records creates about to be sent.
    pub fn expect_creates(&self, owner: &ObjectKey, pods: &[ObjectKey], now: DateTime<Utc>) {
        self.entry(owner, now, |e| e.creates.extend(pods.iter().cloned()));
    }

    /// Records deletes about to be sent.
    pub fn expect_deletes(&self, owner: &ObjectKey, pods: &[ObjectKey], now: DateTime<Utc>) {
        self.entry(owner, now, |e| e.deletes.extend(pods.iter().cloned()));
    }

    /// A create or delete that failed will never show; stop waiting for it.
    pub fn failed(&self, owner: &ObjectKey, pod: &ObjectKey) {
        if let Some(entry) = self.lock().get_mut(owner) {
            entry.creates.remove(pod);
            entry.deletes.remove(pod);
        }
    }

    /// Forgets `owner` (it was deleted).
    pub fn forget(&self, owner: &ObjectKey) {
        self.lock().remove(owner);
    }

    fn entry(&self, owner: &ObjectKey, now: DateTime<Utc>, change: impl FnOnce(&mut Pending)) {
        let mut pending = self.lock();
        let entry = pending.entry(owner.clone()).or_insert_with(|| Pending {
            creates: HashSet::new(),
            deletes: HashSet::new(),
            since: now,
        });
        entry.since = now;
        change(entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs [`plan`] for each ReplicaSet key and carries the plan out.
pub struct ReplicaSetController {
    replica_sets: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    writer: FencedWriter,
    clock: Arc<dyn Clock>,
    expectations: Expectations,
    own_writes: OwnWrites,
    events: EventRecorder,
    /// When each ReplicaSet's status was last written.
    status_written: Mutex<HashMap<ObjectKey, DateTime<Utc>>>,
}

/// The least time between two status writes of one ReplicaSet that only
/// count pods (no new generation observed): while hundreds of its pods
/// start, their changes share a write instead of taking one each.
pub const STATUS_PACE: Duration = Duration::from_millis(500);

impl ReplicaSetController {
    /// A controller over these caches (pods indexed by [`controller_uid`]),
    /// telling users what it does through `events`.
    pub fn new(
        replica_sets: Cache<ReplicaSet>,
        pods: Cache<Pod>,
        writer: FencedWriter,
        clock: Arc<dyn Clock>,
        events: EventRecorder,
    ) -> ReplicaSetController {
        ReplicaSetController {
            replica_sets,
            pods,
            writer,
            clock,
            expectations: Expectations::default(),
            own_writes: OwnWrites::default(),
            events,
            status_written: Mutex::new(HashMap::new()),
        }
    }

    /// How long a counts-only status write of `key` must wait, if at all.
    fn status_wait(&self, key: &ObjectKey, now: DateTime<Utc>) -> Option<Duration> {
        let written = self
            .status_written
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let since = (now - *written.get(key)?).to_std().unwrap_or_default();
        STATUS_PACE
            .checked_sub(since)
            .filter(|wait| !wait.is_zero())
    }

    fn tell(&self, replica_set: &ReplicaSet, kind: EventType, reason: &str, message: String) {
        self.events
            .emit(Involved::of(replica_set), kind, reason, message);
    }

    async fn create_pods(
        &self,
        key: &ObjectKey,
        replica_set: &ReplicaSet,
        count: usize,
    ) -> Result<(), ReplicaSetError> {
        // Slow start, as Kubernetes: batches of 1, 2, 4, … so that a
        // template every create refuses costs one write, not hundreds.
        let mut remaining = count;
        let mut batch = 1;
        while remaining > 0 {
            let size = batch.min(remaining);
            let pods: Vec<Pod> = (0..size)
                .map(|_| pod_from_template(replica_set, &generated_name(&key.name)))
                .collect();
            let keys: Vec<ObjectKey> = pods.iter().map(ObjectKey::of).collect();
            self.expectations
                .expect_creates(key, &keys, self.clock.now());
            let results =
                futures::future::join_all(pods.iter().map(|pod| self.writer.create(pod))).await;
            let mut first_error = None;
            for (pod, result) in keys.iter().zip(results) {
                match result {
                    Ok(_) => self.tell(
                        replica_set,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", pod.name),
                    ),
                    Err(source) => {
                        self.expectations.failed(key, pod);
                        first_error.get_or_insert(source);
                    }
                }
            }
            if let Some(source) = first_error {
                self.tell(
                    replica_set,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {source}"),
                );
                return Err(ReplicaSetError::PodCreateFailed {
                    key: key.clone(),
                    source,
                });
            }
            remaining -= size;
            batch *= 2;
        }
        tracing::info!(count, "created pods");
        Ok(())
    }

    async fn delete_pods(
        &self,
        key: &ObjectKey,
        replica_set: &ReplicaSet,
        pods: &[ObjectKey],
    ) -> Result<(), ReplicaSetError> {
        self.expectations
            .expect_deletes(key, pods, self.clock.now());
        let deletes = pods.iter().map(|pod| async move {
            let (Some(object), Some(create_revision)) =
                (self.pods.get(pod), self.pods.create_revision(pod))
            else {
                return (pod, Ok(()));
            };
            (
                pod,
                self.writer
                    .delete_as_api(object.as_ref(), create_revision, None)
                    .await
                    .map(drop),
            )
        });
        let mut first_error = None;
        for (pod, result) in futures::future::join_all(deletes).await {
            match result {
                Ok(()) => self.tell(
                    replica_set,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", pod.name),
                ),
                Err(source) => {
                    self.expectations.failed(key, pod);
                    first_error.get_or_insert((pod.clone(), source));
                }
            }
        }
        if let Some((pod, source)) = first_error {
            self.tell(
                replica_set,
                EventType::Warning,
                "FailedDelete",
                format!("Error deleting pod {}: {source}", pod.name),
            );
            return Err(ReplicaSetError::PodDeleteFailed {
                key: key.clone(),
                pod,
                source,
            });
        }
        tracing::info!(count = pods.len(), "deleted pods");
        Ok(())
    }
}

impl Reconciler for ReplicaSetController {
    type Error = ReplicaSetError;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, ReplicaSetError> {
        // The cache has not seen this controller's last status write; its
        // event will bring the key back. Checked before the object is read,
        // so that the object read is at least as new as the check.
        if !self
            .own_writes
            .caught_up(key, |_| self.replica_sets.revision())
        {
            return Ok(Action::Done);
        }
        let Some(replica_set) = self.replica_sets.get(key) else {
            self.expectations.forget(key);
            self.status_written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key);
            return Ok(Action::Done);
        };
        if replica_set.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let uid = replica_set.metadata.uid.clone().unwrap_or_default();
        let owned = self.pods.indexed(&uid);
        let now = self.clock.now();
        let settled = self.expectations.settled(key, &self.pods, now);
        let plan = plan(&replica_set, &owned, now, !settled).map_err(|reason| {
            ReplicaSetError::InvalidSelector {
                key: key.clone(),
                reason,
            }
        })?;
        if plan.create > 0 {
            self.create_pods(key, &replica_set, plan.create).await?;
        }
        if !plan.delete.is_empty() {
            self.delete_pods(key, &replica_set, &plan.delete).await?;
        }
        let requeue = plan
            .requeue_after
            .map(Action::RequeueAfter)
            .unwrap_or(Action::Done);
        if let Some(status) = plan.status {
            let counts_only = plan.create == 0
                && plan.delete.is_empty()
                && replica_set
                    .status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    == status.observed_generation;
            if counts_only && let Some(wait) = self.status_wait(key, now) {
                return Ok(requeue.sooner(Action::RequeueAfter(wait)));
            }
            let mut updated = (*replica_set).clone();
            updated.status = Some(status);
            let revision = self.writer.replace(&updated).await.map_err(|source| {
                ReplicaSetError::StatusUpdateFailed {
                    key: key.clone(),
                    source,
                }
            })?;
            self.own_writes.record(key, Kind::ReplicaSet, revision);
            self.status_written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), now);
        }
        Ok(requeue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::fixtures::*;

    #[test]
    fn a_short_replica_set_creates_the_missing_pods() {
        let rs = replica_set("web", 3);
        let pods = vec![pod_of(&rs, "web-a", running_ready(at(0)))];
        let plan = plan(&rs, &pods, at(100), false).unwrap();
        assert_eq!(plan.create, 2);
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn nothing_is_created_or_deleted_while_earlier_changes_are_in_flight() {
        let rs = replica_set("web", 3);
        let plan = plan(&rs, &[], at(100), true).unwrap();
        assert_eq!(plan.create, 0);
        assert_eq!(plan.status.unwrap().replicas, 0);
    }

    #[test]
    fn scaling_down_removes_unscheduled_then_not_ready_then_youngest_pods() {
        let rs = replica_set("web", 2);
        let mut unscheduled = pod_of(&rs, "web-unscheduled", PodState::default());
        Arc::make_mut(&mut unscheduled).spec.node_name = None;
        let pods = vec![
            pod_of(&rs, "web-old", running_ready(at(0)).created(at(0))),
            pod_of(&rs, "web-young", running_ready(at(0)).created(at(50))),
            pod_of(&rs, "web-not-ready", running_not_ready().created(at(0))),
            pod_of(&rs, "web-middle", running_ready(at(0)).created(at(20))),
            unscheduled,
        ];
        let plan = plan(&rs, &pods, at(100), false).unwrap();
        let names: Vec<&str> = plan.delete.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["web-unscheduled", "web-not-ready", "web-young"]);
    }

    #[test]
    fn pods_of_another_owner_finished_or_outside_the_selector_do_not_count() {
        let rs = replica_set("web", 2);
        let other = replica_set("other", 1);
        let mut relabeled = pod_of(&rs, "web-relabeled", running_ready(at(0)));
        Arc::make_mut(&mut relabeled).metadata.labels.clear();
        let mut finished = pod_of(&rs, "web-finished", running_ready(at(0)));
        Arc::make_mut(&mut finished).status.as_mut().unwrap().phase = Some(PodPhase::Succeeded);
        let pods = vec![
            pod_of(&other, "other-a", running_ready(at(0))),
            relabeled,
            finished,
            pod_of(&rs, "web-a", running_ready(at(0))),
        ];
        let plan = plan(&rs, &pods, at(100), false).unwrap();
        assert_eq!(plan.create, 1);
        assert_eq!(plan.status.unwrap().replicas, 1);
    }

    #[test]
    fn a_pod_counts_as_available_only_after_min_ready_seconds() {
        let mut rs = replica_set("web", 3);
        rs.spec.min_ready_seconds = Some(30);
        let pods = vec![
            pod_of(&rs, "web-a", running_ready(at(0))),
            pod_of(&rs, "web-b", running_ready(at(90))),
            pod_of(&rs, "web-c", running_not_ready()),
        ];
        let plan = plan(&rs, &pods, at(100), false).unwrap();
        let status = plan.status.unwrap();
        assert_eq!(status.replicas, 3);
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.fully_labeled_replicas, Some(3));
        assert_eq!(status.observed_generation, Some(1));
        // web-b becomes available at 120 s: look again then.
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(20)));

        let later = super::plan(&rs, &pods, at(120), false).unwrap();
        assert_eq!(later.status.unwrap().available_replicas, Some(2));
        assert_eq!(later.requeue_after, None);
    }

    #[test]
    fn an_unchanged_status_is_not_written_again() {
        let mut rs = replica_set("web", 1);
        let pods = vec![pod_of(&rs, "web-a", running_ready(at(0)))];
        rs.status = plan(&rs, &pods, at(10), false).unwrap().status;
        let again = plan(&rs, &pods, at(10), false).unwrap();
        assert_eq!(again, ReplicaSetPlan::default());
    }

    #[test]
    fn a_pod_from_the_template_is_owned_by_the_replica_set() {
        let rs = replica_set("web", 1);
        let name = generated_name("web");
        assert!(name.starts_with("web-") && name.len() == "web-".len() + 5);
        let pod = pod_from_template(&rs, &name);
        let owner = pod.metadata.controller().unwrap();
        assert_eq!(owner.kind, "ReplicaSet");
        assert_eq!(owner.uid, rs.metadata.uid.clone().unwrap());
        assert_eq!(pod.metadata.labels, rs.spec.template.metadata.labels);
        assert_eq!(pod.metadata.tenant.as_deref(), Some("acme"));
        // The controller's own pods must pass the checks a user's would.
        berth_api::objects::decode_as::<Pod>(serde_json::to_value(&pod).unwrap()).unwrap();
    }
}
