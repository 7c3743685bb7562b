//! The Deployment controller: turns a Deployment into ReplicaSets, one per
//! pod template (named `{deployment}-{hash of the template}`), and moves
//! pods from the old ones to the new one by its strategy — RollingUpdate
//! within `maxSurge`/`maxUnavailable`, or Recreate — then reports progress.
//!
//! The core, [`plan`], is a pure function of the Deployment, the
//! ReplicaSets it owns (as the cache shows them), the pods each still has,
//! and the time. It takes one step per reconcile, as Kubernetes does; the
//! ReplicaSets' changes bring the Deployment back for the next one.
//!
//! Counting is deliberately conservative because the cache lags: the pods a
//! ReplicaSet may have are `max(spec.replicas, status.replicas)` (so pods
//! being deleted still count against the surge), and the pods it has
//! available are `min(status.availableReplicas, spec.replicas)` (so a
//! scale-down already asked for is not counted on).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_api::objects::meta::ConditionStatus;
use berth_api::objects::pod::Pod;
use berth_api::objects::workloads::{
    DeploymentCondition, DeploymentStatus, DeploymentStrategyType,
};
use berth_api::objects::{
    Deployment, Kind, PodTemplateSpec, ReplicaSet, Resource, max_surge_and_unavailable,
};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::fenced::{FencedWriter, WriteError};
use super::replicaset::{controller_reference, is_active};
use super::runtime::clock::{Clock, format_time, parse_time};
use super::runtime::{Action, Cache, ObjectKey, OwnWrites, Reconciler};
use crate::events::{EventRecorder, EventType, Involved};

/// The controller's name in metrics and logs.
pub const NAME: &str = "deployment";
/// The annotation that numbers a Deployment's ReplicaSets in rollout order.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The label that ties a ReplicaSet and its pods to one template.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Why a Deployment reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// The Deployment cannot be rolled out as written (validation should
    /// have refused it).
    #[error("Deployment {key} cannot be rolled out: {reason}")]
    InvalidSpec {
        /// The Deployment.
        key: ObjectKey,
        /// Why.
        reason: String,
    },
    /// A ReplicaSet could not be created, changed or deleted.
    #[error("writing ReplicaSet {replica_set} of Deployment {key} failed: {source}")]
    ReplicaSetWriteFailed {
        /// The Deployment.
        key: ObjectKey,
        /// The ReplicaSet.
        replica_set: String,
        /// The write's error.
        source: WriteError,
    },
    /// The status could not be written.
    #[error("writing the status of Deployment {key} failed: {source}")]
    StatusUpdateFailed {
        /// The Deployment.
        key: ObjectKey,
        /// The write's error.
        source: WriteError,
    },
}

/// Why a rollback target cannot be found.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RollbackError {
    /// There is no earlier revision to go back to.
    #[error("the deployment has no previous revision to roll back to")]
    NoPreviousRevision,
    /// No ReplicaSet of the Deployment has that revision.
    #[error("revision {0} of the deployment does not exist")]
    RevisionNotFound(i64),
}

/// What one reconcile of a Deployment should do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeploymentPlan {
    /// A new ReplicaSet to create for the current template.
    pub create: Option<ReplicaSet>,
    /// ReplicaSets to write back changed (replicas, revision), each at the
    /// resourceVersion the cache showed.
    pub update: Vec<ReplicaSet>,
    /// Old ReplicaSets beyond `revisionHistoryLimit`, to delete.
    pub delete: Vec<ObjectKey>,
    /// The status to write, when it differs from the stored one.
    pub status: Option<DeploymentStatus>,
    /// When to look again even if nothing changes (the progress deadline).
    pub requeue_after: Option<Duration>,
}

/// A stable short hash of a pod template (ignoring its own hash label):
/// the first 10 hex digits of the SHA-256 of its JSON.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let template = without_hash(template);
    // Serialising plain data to a Vec cannot fail; an empty hash input
    // would still be stable.
    let bytes = serde_json::to_vec(&template).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))[..10].to_owned()
}

/// The ReplicaSet name for a Deployment's current template.
pub fn replica_set_name(deployment: &Deployment) -> String {
    format!(
        "{}-{}",
        deployment.metadata.name,
        template_hash(&deployment.spec.template)
    )
}

/// A ReplicaSet's revision (0 when it has none).
pub fn revision_of(replica_set: &ReplicaSet) -> i64 {
    replica_set
        .metadata
        .annotations
        .get(REVISION_ANNOTATION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    template.metadata.labels.remove(POD_TEMPLATE_HASH_LABEL);
    template
}

/// One ReplicaSet as the plan shapes it.
struct Working {
    object: Arc<ReplicaSet>,
    /// Planned `spec.replicas`.
    replicas: i32,
    /// Planned revision.
    revision: i64,
    /// Created by this plan (not yet in the store).
    fresh: bool,
}

impl Working {
    fn status_replicas(&self) -> i32 {
        self.object.status.as_ref().map_or(0, |s| s.replicas)
    }

    /// The most pods this ReplicaSet may have, now or soon.
    fn pods_bound(&self) -> i32 {
        self.replicas.max(self.status_replicas())
    }

    /// The pods it can be counted on to keep available.
    fn available(&self) -> i32 {
        let available = self
            .object
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        available.min(self.replicas).max(0)
    }

    fn created(&self) -> (Option<DateTime<Utc>>, String) {
        (
            parse_time(self.object.metadata.creation_timestamp.as_deref()),
            self.object.metadata.name.clone(),
        )
    }
}

/// Decides the next step for `deployment` given the ReplicaSets of the
/// cache (those it does not control are ignored), the active pods each
/// ReplicaSet still has (`pods_of`, for Recreate), and the time.
pub fn plan(
    deployment: &Deployment,
    replica_sets: &[Arc<ReplicaSet>],
    pods_of: &dyn Fn(&ReplicaSet) -> usize,
    now: DateTime<Utc>,
) -> Result<DeploymentPlan, String> {
    let spec = &deployment.spec;
    let replicas = spec.replicas().max(0);
    let strategy = spec.strategy.clone().unwrap_or_default();
    let (max_surge, max_unavailable) = max_surge_and_unavailable(replicas, &strategy)?;
    let uid = deployment.metadata.uid.as_deref().unwrap_or_default();
    let mut owned: Vec<Arc<ReplicaSet>> = replica_sets
        .iter()
        .filter(|rs| rs.metadata.controller().is_some_and(|o| o.uid == uid))
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .cloned()
        .collect();
    owned.sort_by_cached_key(|rs| {
        (
            parse_time(rs.metadata.creation_timestamp.as_deref()),
            rs.metadata.name.clone(),
        )
    });
    let new_name = replica_set_name(deployment);
    let new_index = owned
        .iter()
        .position(|rs| rs.metadata.name == new_name)
        .or_else(|| {
            owned
                .iter()
                .position(|rs| without_hash(&rs.spec.template) == spec.template)
        });
    let max_old_revision = owned
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new_index)
        .map(|(_, rs)| revision_of(rs))
        .max()
        .unwrap_or(0);
    let mut work: Vec<Working> = owned
        .iter()
        .map(|rs| Working {
            object: rs.clone(),
            replicas: rs.spec.replicas(),
            revision: revision_of(rs),
            fresh: false,
        })
        .collect();
    let mut new_index = new_index;
    let paused = spec.is_paused();
    if !paused {
        if let Some(n) = new_index {
            // A template seen before (a rollback) becomes the newest revision.
            if work[n].revision <= max_old_revision {
                work[n].revision = max_old_revision + 1;
            }
        }
        let recreate = strategy.type_ == Some(DeploymentStrategyType::Recreate);
        let new_rs = |replicas| Working {
            object: Arc::new(new_replica_set(deployment, replicas, max_old_revision + 1)),
            replicas,
            revision: max_old_revision + 1,
            fresh: true,
        };
        if recreate {
            let olds_scaled = work
                .iter()
                .enumerate()
                .any(|(i, w)| Some(i) != new_index && w.replicas > 0);
            let old_pods_left = work.iter().enumerate().any(|(i, w)| {
                Some(i) != new_index && (w.status_replicas() > 0 || pods_of(&w.object) > 0)
            });
            if olds_scaled {
                for (i, w) in work.iter_mut().enumerate() {
                    if Some(i) != new_index {
                        w.replicas = 0;
                    }
                }
            } else if !old_pods_left {
                match new_index {
                    Some(n) => work[n].replicas = replicas,
                    None => {
                        work.push(new_rs(replicas));
                        new_index = Some(work.len() - 1);
                    }
                }
            }
        } else {
            let n = match new_index {
                Some(n) => n,
                None => {
                    work.push(new_rs(0));
                    work.len() - 1
                }
            };
            new_index = Some(n);
            let target = new_replicas(&work, n, replicas, max_surge);
            let scaled_up = !work[n].fresh && target > work[n].replicas;
            work[n].replicas = target;
            if !scaled_up {
                scale_down_old(&mut work, n, replicas, max_unavailable);
            }
        }
    }

    let mut result = DeploymentPlan::default();
    for w in &work {
        if w.fresh {
            let mut object = (*w.object).clone();
            object.spec.replicas = Some(w.replicas);
            result.create = Some(object);
        } else if w.replicas != w.object.spec.replicas() || w.revision != revision_of(&w.object) {
            let mut object = (*w.object).clone();
            if w.replicas != object.spec.replicas() {
                object.spec.replicas = Some(w.replicas);
                object.metadata.generation = Some(object.metadata.generation.unwrap_or(1) + 1);
            }
            object
                .metadata
                .annotations
                .insert(REVISION_ANNOTATION.into(), w.revision.to_string());
            result.update.push(object);
        }
    }

    let new_existing = new_index
        .filter(|n| !work[*n].fresh)
        .map(|n| &work[n].object);
    let mut status = counts(deployment, &owned, new_existing.map(|rs| rs.as_ref()));
    status.conditions = deployment
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    status.collision_count = deployment.status.as_ref().and_then(|s| s.collision_count);
    let complete = is_complete(deployment, &status);
    if complete && !paused {
        result.delete = history_beyond_limit(deployment, &work, new_index);
    }
    let new_name = new_index.map(|n| work[n].object.metadata.name.clone());
    let deadline = conditions(
        deployment,
        &mut status,
        Progress {
            paused,
            complete,
            created: result.create.is_some(),
            replica_set: new_name.unwrap_or_default(),
            min_available: replicas - max_unavailable,
        },
        now,
    );
    result.requeue_after = deadline;
    if deployment.status.as_ref() != Some(&status) {
        result.status = Some(status);
    }
    Ok(result)
}

/// How many replicas the new ReplicaSet may have now: up to `replicas`,
/// while every ReplicaSet's pods stay within `replicas + max_surge`.
fn new_replicas(work: &[Working], n: usize, replicas: i32, max_surge: i32) -> i32 {
    let current = work[n].replicas;
    if current >= replicas {
        return replicas;
    }
    let max_total = replicas + max_surge;
    let total: i32 = work.iter().map(Working::pods_bound).sum();
    if total >= max_total {
        return current;
    }
    current + (max_total - total).min(replicas - current)
}

/// Scales old ReplicaSets down, oldest first, as far as availability
/// allows: first pods that are not available anyway, then available ones
/// while at least `replicas - max_unavailable` stay available.
fn scale_down_old(work: &mut [Working], n: usize, replicas: i32, max_unavailable: i32) {
    let olds: Vec<usize> = {
        let mut olds: Vec<usize> = (0..work.len()).filter(|i| *i != n).collect();
        olds.sort_by_key(|i| work[*i].created());
        olds
    };
    let old_pods: i32 = olds.iter().map(|i| work[*i].replicas).sum();
    if old_pods == 0 {
        return;
    }
    let min_available = replicas - max_unavailable;
    let all_pods: i32 = work.iter().map(|w| w.replicas).sum();
    let new_unavailable = work[n].replicas - work[n].available();
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return;
    }
    // Unavailable old pods cost no availability: remove them first.
    let mut cleaned = 0;
    for &i in &olds {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = work[i].replicas - work[i].available();
        if unhealthy <= 0 {
            continue;
        }
        let down = unhealthy.min(max_scaled_down - cleaned);
        work[i].replicas -= down;
        cleaned += down;
    }
    let available: i32 = work.iter().map(Working::available).sum();
    if available <= min_available {
        return;
    }
    let mut budget = available - min_available;
    for &i in &olds {
        if budget <= 0 {
            break;
        }
        let down = work[i].replicas.min(budget);
        work[i].replicas -= down;
        budget -= down;
    }
}

/// The Deployment's ReplicaSet for its current template: the template with
/// the hash label, a selector narrowed by it, `revision`, owned by the
/// Deployment as controller.
pub fn new_replica_set(deployment: &Deployment, replicas: i32, revision: i64) -> ReplicaSet {
    let hash = template_hash(&deployment.spec.template);
    let mut template = deployment.spec.template.clone();
    template
        .metadata
        .labels
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    let mut selector = deployment.spec.selector.clone().unwrap_or_default();
    selector
        .match_labels
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash);
    let mut replica_set = ReplicaSet::named(&replica_set_name(deployment));
    replica_set.metadata.tenant = deployment.metadata.tenant.clone();
    replica_set.metadata.labels = template.metadata.labels.clone();
    replica_set.metadata.annotations =
        BTreeMap::from([(REVISION_ANNOTATION.to_owned(), revision.to_string())]);
    replica_set.metadata.owner_references = vec![controller_reference(
        Kind::Deployment,
        &deployment.api_version,
        &deployment.metadata,
    )];
    replica_set.spec.replicas = Some(replicas);
    replica_set.spec.min_ready_seconds = deployment.spec.min_ready_seconds;
    replica_set.spec.selector = Some(selector);
    replica_set.spec.template = template;
    replica_set
}

/// The pod counts of the status, summed from the ReplicaSets' statuses.
fn counts(
    deployment: &Deployment,
    owned: &[Arc<ReplicaSet>],
    new: Option<&ReplicaSet>,
) -> DeploymentStatus {
    let replicas = deployment.spec.replicas().max(0);
    let sum = |field: fn(&ReplicaSet) -> i32| owned.iter().map(|rs| field(rs)).sum::<i32>();
    let status_replicas = |rs: &ReplicaSet| rs.status.as_ref().map_or(0, |s| s.replicas);
    let ready = |rs: &ReplicaSet| {
        rs.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    };
    let available = |rs: &ReplicaSet| {
        rs.status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
    };
    let available_total = sum(available);
    DeploymentStatus {
        observed_generation: deployment.metadata.generation,
        replicas: Some(sum(status_replicas)),
        updated_replicas: Some(new.map_or(0, status_replicas)),
        ready_replicas: Some(sum(ready)),
        available_replicas: Some(available_total),
        unavailable_replicas: Some((replicas - available_total).max(0)),
        ..DeploymentStatus::default()
    }
}

/// Every pod runs the current template and is available, and no old pod
/// is left.
fn is_complete(deployment: &Deployment, status: &DeploymentStatus) -> bool {
    let replicas = deployment.spec.replicas().max(0);
    status.updated_replicas == Some(replicas)
        && status.replicas == Some(replicas)
        && status.available_replicas == Some(replicas)
}

/// Old ReplicaSets that are scaled to zero and empty, oldest revision
/// first, beyond `revisionHistoryLimit`.
fn history_beyond_limit(
    deployment: &Deployment,
    work: &[Working],
    new_index: Option<usize>,
) -> Vec<ObjectKey> {
    let limit = deployment.spec.revision_history_limit().max(0) as usize;
    let mut spent: Vec<&Working> = work
        .iter()
        .enumerate()
        .filter(|(i, w)| Some(*i) != new_index && !w.fresh)
        .map(|(_, w)| w)
        .filter(|w| w.replicas == 0 && w.object.spec.replicas() == 0 && w.status_replicas() == 0)
        .collect();
    if spent.len() <= limit {
        return Vec::new();
    }
    spent.sort_by_key(|w| (w.revision, w.created()));
    let excess = spent.len() - limit;
    spent
        .into_iter()
        .take(excess)
        .map(|w| ObjectKey::of(w.object.as_ref()))
        .collect()
}

/// What the conditions are decided from.
struct Progress {
    paused: bool,
    complete: bool,
    created: bool,
    replica_set: String,
    min_available: i32,
}

/// Sets `Available` and `Progressing` as Kubernetes does. Answers how long
/// until the progress deadline passes, when the rollout is under way.
fn conditions(
    deployment: &Deployment,
    status: &mut DeploymentStatus,
    progress: Progress,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let available = status.available_replicas.unwrap_or(0) >= progress.min_available;
    let (available_status, available_reason, available_message) = if available {
        (
            ConditionStatus::True,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        (
            ConditionStatus::False,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    set_condition(
        &mut status.conditions,
        condition(
            "Available",
            available_status,
            available_reason,
            available_message,
        ),
        now,
        false,
    );

    let rs = &progress.replica_set;
    let current = find(&status.conditions, "Progressing").cloned();
    if progress.paused {
        set_condition(
            &mut status.conditions,
            condition(
                "Progressing",
                ConditionStatus::Unknown,
                "DeploymentPaused",
                "Deployment is paused",
            ),
            now,
            false,
        );
        return None;
    }
    let old = deployment.status.clone().unwrap_or_default();
    let deadline = chrono::Duration::seconds(i64::from(
        deployment.spec.progress_deadline_seconds().max(0),
    ));
    let already_complete = current
        .as_ref()
        .is_some_and(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"))
        && status.replicas == status.updated_replicas;
    if already_complete {
        return None;
    }
    if progress.complete {
        set_condition(
            &mut status.conditions,
            condition(
                "Progressing",
                ConditionStatus::True,
                "NewReplicaSetAvailable",
                &format!("ReplicaSet {rs:?} has successfully progressed."),
            ),
            now,
            false,
        );
        return None;
    }
    let resumed = current
        .as_ref()
        .is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"));
    if progress.created || resumed || current.is_none() || made_progress(&old, status) {
        let (reason, message) = if progress.created {
            (
                "NewReplicaSetCreated",
                format!("Created new replica set {rs:?}"),
            )
        } else if resumed {
            ("DeploymentResumed", "Deployment is resumed".to_owned())
        } else {
            (
                "ReplicaSetUpdated",
                format!("ReplicaSet {rs:?} is progressing."),
            )
        };
        set_condition(
            &mut status.conditions,
            condition("Progressing", ConditionStatus::True, reason, &message),
            now,
            true,
        );
        return deadline.to_std().ok();
    }
    let current = current?;
    if current.reason.as_deref() == Some("ProgressDeadlineExceeded") {
        return None;
    }
    let last_update = parse_time(current.last_update_time.as_deref()).unwrap_or(now);
    let expires = last_update + deadline;
    if expires <= now {
        set_condition(
            &mut status.conditions,
            condition(
                "Progressing",
                ConditionStatus::False,
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet {rs:?} has timed out progressing."),
            ),
            now,
            false,
        );
        return None;
    }
    (expires - now).to_std().ok()
}

/// Whether the rollout moved since the stored status: more updated,
/// ready or available pods, or fewer old ones.
fn made_progress(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let get = |v: Option<i32>| v.unwrap_or(0);
    let old_pods = |s: &DeploymentStatus| get(s.replicas) - get(s.updated_replicas);
    get(new.updated_replicas) > get(old.updated_replicas)
        || old_pods(new) < old_pods(old)
        || get(new.ready_replicas) > get(old.ready_replicas)
        || get(new.available_replicas) > get(old.available_replicas)
}

fn condition(
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status,
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..DeploymentCondition::default()
    }
}

fn find<'a>(conditions: &'a [DeploymentCondition], type_: &str) -> Option<&'a DeploymentCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Puts `new` in place of the condition of its type. An unchanged status
/// and reason leave it as it is, unless `touch` (progress was made, which
/// moves `lastUpdateTime`); `lastTransitionTime` moves only when the
/// status changes.
fn set_condition(
    conditions: &mut Vec<DeploymentCondition>,
    mut new: DeploymentCondition,
    now: DateTime<Utc>,
    touch: bool,
) {
    let current = find(conditions, &new.type_);
    if let Some(current) = current
        && current.status == new.status
        && current.reason == new.reason
        && !touch
    {
        return;
    }
    let now = format_time(now);
    new.last_update_time = Some(now.clone());
    new.last_transition_time = match current {
        Some(current) if current.status == new.status => current.last_transition_time.clone(),
        _ => Some(now),
    };
    conditions.retain(|c| c.type_ != new.type_);
    conditions.push(new);
}

/// The template of the Deployment's ReplicaSet at `revision` (`None`: the
/// one before the current), without its hash label, for a rollback to copy
/// into the Deployment.
pub fn rollback_template(
    deployment: &Deployment,
    revision: Option<i64>,
    replica_sets: &[Arc<ReplicaSet>],
) -> Result<PodTemplateSpec, RollbackError> {
    let uid = deployment.metadata.uid.as_deref().unwrap_or_default();
    let mut owned: Vec<(i64, &ReplicaSet)> = replica_sets
        .iter()
        .filter(|rs| rs.metadata.controller().is_some_and(|o| o.uid == uid))
        .map(|rs| (revision_of(rs), rs.as_ref()))
        .collect();
    owned.sort_by_key(|(revision, _)| std::cmp::Reverse(*revision));
    let target = match revision {
        Some(wanted) => owned
            .iter()
            .find(|(r, _)| *r == wanted)
            .ok_or(RollbackError::RevisionNotFound(wanted))?,
        None => owned.get(1).ok_or(RollbackError::NoPreviousRevision)?,
    };
    Ok(without_hash(&target.1.spec.template))
}

/// Runs [`plan`] for each Deployment key and carries the plan out.
pub struct DeploymentController {
    deployments: Cache<Deployment>,
    replica_sets: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    writer: FencedWriter,
    clock: Arc<dyn Clock>,
    own_writes: OwnWrites,
    events: EventRecorder,
}

impl DeploymentController {
    /// A controller over these caches (ReplicaSets and pods indexed by
    /// their controller's uid), telling users what it does through
    /// `events`.
    pub fn new(
        deployments: Cache<Deployment>,
        replica_sets: Cache<ReplicaSet>,
        pods: Cache<Pod>,
        writer: FencedWriter,
        clock: Arc<dyn Clock>,
        events: EventRecorder,
    ) -> DeploymentController {
        DeploymentController {
            deployments,
            replica_sets,
            pods,
            writer,
            clock,
            own_writes: OwnWrites::default(),
            events,
        }
    }

    /// `ScalingReplicaSet` on the Deployment, as Kubernetes words it.
    fn scaled(&self, deployment: &Deployment, replica_set: &str, from: i32, to: i32) {
        let message = if to > from {
            format!("Scaled up replica set {replica_set} to {to}")
        } else {
            format!("Scaled down replica set {replica_set} to {to} from {from}")
        };
        self.events.emit(
            Involved::of(deployment),
            EventType::Normal,
            "ScalingReplicaSet",
            message,
        );
    }

    fn rs_error(key: &ObjectKey, name: &str, source: WriteError) -> DeploymentError {
        DeploymentError::ReplicaSetWriteFailed {
            key: key.clone(),
            replica_set: name.to_owned(),
            source,
        }
    }
}

impl Reconciler for DeploymentController {
    type Error = DeploymentError;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, DeploymentError> {
        // Deciding before the caches show this controller's own last writes
        // would repeat them; their events bring the key back. Checked before
        // anything is read, so that what is read is at least as new.
        let caught_up = self.own_writes.caught_up(key, |kind| match kind {
            Kind::Deployment => self.deployments.revision(),
            _ => self.replica_sets.revision(),
        });
        if !caught_up {
            return Ok(Action::Done);
        }
        let Some(deployment) = self.deployments.get(key) else {
            return Ok(Action::Done);
        };
        if deployment.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let uid = deployment.metadata.uid.clone().unwrap_or_default();
        let owned = self.replica_sets.indexed(&uid);
        let pods_of = |rs: &ReplicaSet| {
            let uid = rs.metadata.uid.as_deref().unwrap_or_default();
            self.pods
                .indexed(uid)
                .iter()
                .filter(|pod| is_active(pod))
                .count()
        };
        let plan = plan(&deployment, &owned, &pods_of, self.clock.now()).map_err(|reason| {
            DeploymentError::InvalidSpec {
                key: key.clone(),
                reason,
            }
        })?;
        if let Some(replica_set) = &plan.create {
            let name = &replica_set.metadata.name;
            let created = self
                .writer
                .create(replica_set)
                .await
                .map_err(|e| Self::rs_error(key, name, e))?;
            let revision = created
                .metadata
                .resource_version
                .and_then(|rv| rv.parse().ok())
                .unwrap_or(0);
            self.own_writes.record(key, Kind::ReplicaSet, revision);
            tracing::info!(replica_set = %name, replicas = replica_set.spec.replicas(), "created ReplicaSet");
            if replica_set.spec.replicas() > 0 {
                self.scaled(&deployment, name, 0, replica_set.spec.replicas());
            }
        }
        for replica_set in &plan.update {
            let name = &replica_set.metadata.name;
            let before = self
                .replica_sets
                .get(&ObjectKey::of(replica_set))
                .map_or(0, |old| old.spec.replicas());
            let revision = self
                .writer
                .replace(replica_set)
                .await
                .map_err(|e| Self::rs_error(key, name, e))?;
            self.own_writes.record(key, Kind::ReplicaSet, revision);
            tracing::info!(replica_set = %name, replicas = replica_set.spec.replicas(), "scaled ReplicaSet");
            if before != replica_set.spec.replicas() {
                self.scaled(&deployment, name, before, replica_set.spec.replicas());
            }
        }
        for old in &plan.delete {
            let Some(create_revision) = self.replica_sets.create_revision(old) else {
                continue;
            };
            let revision = self
                .writer
                .delete::<ReplicaSet>(old, create_revision)
                .await
                .map_err(|e| Self::rs_error(key, &old.name, e))?;
            self.own_writes.record(key, Kind::ReplicaSet, revision);
            tracing::info!(replica_set = %old.name, "deleted ReplicaSet beyond the revision history limit");
        }
        if let Some(status) = plan.status {
            let mut updated = (*deployment).clone();
            updated.status = Some(status);
            let revision = self.writer.replace(&updated).await.map_err(|source| {
                DeploymentError::StatusUpdateFailed {
                    key: key.clone(),
                    source,
                }
            })?;
            self.own_writes.record(key, Kind::Deployment, revision);
        }
        Ok(match plan.requeue_after {
            // A second past the deadline, so that it has surely passed.
            Some(delay) => Action::RequeueAfter(delay + Duration::from_secs(1)),
            None => Action::Done,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use berth_api::objects::workloads::{DeploymentStrategy, ReplicaSetStatus};

    use super::*;
    use crate::controllers::fixtures::*;

    fn no_pods(_: &ReplicaSet) -> usize {
        0
    }

    fn condition_of<'a>(status: &'a DeploymentStatus, type_: &str) -> &'a DeploymentCondition {
        find(&status.conditions, type_).expect("the condition is set")
    }

    #[test]
    fn a_new_deployment_gets_a_replica_set_named_by_its_template_hash() {
        let web = deployment("web", 10);
        let plan = plan(&web, &[], &no_pods, at(0)).unwrap();
        let rs = plan.create.expect("a ReplicaSet is created");
        let hash = template_hash(&web.spec.template);
        assert_eq!(hash.len(), 10);
        assert_eq!(rs.metadata.name, format!("web-{hash}"));
        assert_eq!(rs.spec.replicas, Some(10));
        assert_eq!(rs.metadata.annotations[REVISION_ANNOTATION], "1");
        assert_eq!(rs.metadata.labels[POD_TEMPLATE_HASH_LABEL], hash);
        assert_eq!(
            rs.spec.template.metadata.labels[POD_TEMPLATE_HASH_LABEL],
            hash
        );
        let selector = rs.spec.selector.as_ref().unwrap();
        assert_eq!(selector.match_labels[POD_TEMPLATE_HASH_LABEL], hash);
        assert_eq!(rs.metadata.controller().unwrap().uid, "uid-web");
        // Changing the template changes the name; the same template does not.
        assert_ne!(
            replica_set_name(&with_image(&web, "web:2")),
            rs.metadata.name
        );
        assert_eq!(replica_set_name(&web), rs.metadata.name);
        let status = plan.status.unwrap();
        assert_eq!(
            condition_of(&status, "Progressing").reason.as_deref(),
            Some("NewReplicaSetCreated")
        );
        // What the controller creates passes the checks a user's would.
        berth_api::objects::decode_as::<ReplicaSet>(serde_json::to_value(&rs).unwrap()).unwrap();
    }

    /// ReplicaSets and their pods as a test world sees them; pods are
    /// created and deleted at once, and become available one step later.
    struct World {
        deployment: Deployment,
        replica_sets: Vec<Arc<ReplicaSet>>,
        /// Per ReplicaSet name: (pods, available pods).
        pods: BTreeMap<String, (i32, i32)>,
        max_pods: i32,
        min_available: i32,
    }

    impl World {
        fn total(&self) -> (i32, i32) {
            self.pods
                .values()
                .fold((0, 0), |(p, a), (pods, avail)| (p + pods, a + avail))
        }

        fn record(&mut self) {
            let (pods, available) = self.total();
            self.max_pods = self.max_pods.max(pods);
            self.min_available = self.min_available.min(available);
        }

        /// One reconcile of the Deployment, then the ReplicaSet controller,
        /// then the pods get ready.
        fn step(&mut self, now: DateTime<Utc>) -> DeploymentPlan {
            let plan = plan(&self.deployment, &self.replica_sets, &no_pods, now).unwrap();
            if let Some(created) = &plan.create {
                let mut created = created.clone();
                created.metadata.uid = Some(format!("uid-{}", created.metadata.name));
                created.metadata.creation_timestamp = Some(format_time(now));
                self.replica_sets.push(Arc::new(created));
            }
            for updated in &plan.update {
                let at = self
                    .replica_sets
                    .iter()
                    .position(|rs| rs.metadata.name == updated.metadata.name)
                    .unwrap();
                self.replica_sets[at] = Arc::new(updated.clone());
            }
            if let Some(status) = &plan.status {
                self.deployment.status = Some(status.clone());
            }
            // The ReplicaSet controller: unavailable pods go first.
            for rs in &self.replica_sets {
                let (pods, available) = self.pods.entry(rs.metadata.name.clone()).or_default();
                let wanted = rs.spec.replicas();
                if *pods > wanted {
                    let unavailable = *pods - *available;
                    *available -= (*pods - wanted - unavailable).max(0);
                    *pods = wanted;
                } else {
                    *pods = wanted;
                }
            }
            self.record();
            for (pods, available) in self.pods.values_mut() {
                *available = *pods;
            }
            self.record();
            self.refresh_statuses();
            plan
        }

        fn refresh_statuses(&mut self) {
            for rs in &mut self.replica_sets {
                let (pods, available) = self.pods[&rs.metadata.name];
                let rs = Arc::make_mut(rs);
                rs.status = Some(ReplicaSetStatus {
                    replicas: pods,
                    ready_replicas: Some(available),
                    available_replicas: Some(available),
                    ..ReplicaSetStatus::default()
                });
            }
        }
    }

    #[test]
    fn a_rolling_update_of_ten_stays_within_surge_and_unavailability() {
        let old = deployment("web", 10);
        let old_rs = owned_replica_set(&old, 1, 10, 10, 10, 0);
        let mut world = World {
            deployment: with_image(&old, "web:2"),
            pods: BTreeMap::from([(old_rs.metadata.name.clone(), (10, 10))]),
            replica_sets: vec![old_rs.clone()],
            max_pods: 10,
            min_available: 10,
        };
        // The first step: a new ReplicaSet of maxSurge (3) pods, and the
        // old one down by maxUnavailable (2).
        let first = world.step(at(1));
        assert_eq!(first.create.as_ref().unwrap().spec.replicas, Some(3));
        assert_eq!(first.update.len(), 1);
        assert_eq!(first.update[0].spec.replicas, Some(8));
        let mut steps = 1;
        loop {
            let status = world.deployment.status.clone().unwrap();
            if is_complete(&world.deployment, &status) {
                break;
            }
            assert!(steps < 30, "the rollout never finished: {status:?}");
            world.step(at(1 + steps));
            steps += 1;
        }
        assert!(world.max_pods <= 13, "{} pods at once", world.max_pods);
        assert!(
            world.min_available >= 8,
            "{} available",
            world.min_available
        );
        let new_name = replica_set_name(&world.deployment);
        assert_eq!(world.pods[&new_name], (10, 10));
        assert_eq!(world.pods[&old_rs.metadata.name], (0, 0));
        // One more reconcile reports the rollout as done.
        world.step(at(100));
        let status = world.deployment.status.clone().unwrap();
        assert_eq!(status.updated_replicas, Some(10));
        assert_eq!(status.available_replicas, Some(10));
        assert_eq!(status.unavailable_replicas, Some(0));
        assert_eq!(
            condition_of(&status, "Progressing").reason.as_deref(),
            Some("NewReplicaSetAvailable")
        );
        assert_eq!(
            condition_of(&status, "Available").status,
            ConditionStatus::True
        );
    }

    #[test]
    fn a_stale_scale_down_is_not_counted_on_for_availability() {
        // The old ReplicaSet was just scaled to 8 but its status still says
        // 10 available; the new one has nothing available yet. Taking more
        // pods away would go below 8 available.
        let old = deployment("web", 10);
        let web = with_image(&old, "web:2");
        let old_rs = owned_replica_set(&old, 1, 8, 10, 10, 0);
        let new_rs = owned_replica_set(&web, 2, 3, 3, 0, 5);
        let plan = plan(&web, &[old_rs, new_rs], &no_pods, at(10)).unwrap();
        assert!(plan.create.is_none());
        assert!(plan.update.is_empty(), "{:?}", plan.update);
    }

    #[test]
    fn recreate_scales_old_pods_away_then_waits_for_them_before_the_new_ones() {
        let mut old = deployment("web", 3);
        old.spec.strategy = Some(DeploymentStrategy {
            type_: Some(DeploymentStrategyType::Recreate),
            rolling_update: None,
        });
        let web = with_image(&old, "web:2");
        let running = owned_replica_set(&old, 1, 3, 3, 3, 0);
        let first = plan(&web, &[running], &no_pods, at(1)).unwrap();
        assert!(first.create.is_none());
        assert_eq!(first.update[0].spec.replicas, Some(0));

        let draining = owned_replica_set(&old, 1, 0, 2, 2, 0);
        let two_left = |_: &ReplicaSet| 2;
        let waiting = plan(&web, &[draining], &two_left, at(2)).unwrap();
        assert!(waiting.create.is_none() && waiting.update.is_empty());

        let gone = owned_replica_set(&old, 1, 0, 0, 0, 0);
        let last = plan(&web, &[gone], &no_pods, at(3)).unwrap();
        let created = last
            .create
            .expect("the new pods come once the old are gone");
        assert_eq!(created.spec.replicas, Some(3));
        assert_eq!(created.metadata.annotations[REVISION_ANNOTATION], "2");
    }

    #[test]
    fn a_paused_deployment_does_not_roll_out() {
        let old = deployment("web", 3);
        let mut web = with_image(&old, "web:2");
        web.spec.paused = Some(true);
        let running = owned_replica_set(&old, 1, 3, 3, 3, 0);
        let plan = plan(&web, &[running], &no_pods, at(1)).unwrap();
        assert!(plan.create.is_none());
        assert!(plan.update.is_empty());
        let status = plan.status.unwrap();
        assert_eq!(
            condition_of(&status, "Progressing").reason.as_deref(),
            Some("DeploymentPaused")
        );
        assert_eq!(plan.requeue_after, None);
    }

    #[test]
    fn old_replica_sets_beyond_the_history_limit_are_deleted_oldest_first() {
        let mut web = deployment("web", 2);
        web.spec.revision_history_limit = Some(2);
        let mut replica_sets: Vec<Arc<ReplicaSet>> = (1..=4)
            .map(|revision| {
                let old = with_image(&web, &format!("web:old-{revision}"));
                owned_replica_set(&old, revision, 0, 0, 0, revision)
            })
            .collect();
        replica_sets.push(owned_replica_set(&web, 5, 2, 2, 2, 10));
        let plan = plan(&web, &replica_sets, &no_pods, at(20)).unwrap();
        let deleted: Vec<&str> = plan.delete.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(
            deleted,
            [
                replica_sets[0].metadata.name.as_str(),
                replica_sets[1].metadata.name.as_str()
            ]
        );
    }

    #[test]
    fn a_rollout_without_progress_past_its_deadline_is_reported_as_failed() {
        let old = deployment("web", 3);
        let mut web = with_image(&old, "web:2");
        let replica_sets = vec![
            owned_replica_set(&old, 1, 2, 2, 2, 0),
            owned_replica_set(&web, 2, 2, 2, 0, 1),
        ];
        let started = plan(&web, &replica_sets, &no_pods, at(0)).unwrap();
        web.status = started.status;
        assert_eq!(
            condition_of(web.status.as_ref().unwrap(), "Progressing")
                .reason
                .as_deref(),
            Some("ReplicaSetUpdated")
        );

        let midway = plan(&web, &replica_sets, &no_pods, at(300)).unwrap();
        assert_eq!(midway.status, None, "nothing changed");
        assert_eq!(midway.requeue_after, Some(Duration::from_secs(300)));

        let late = plan(&web, &replica_sets, &no_pods, at(601)).unwrap();
        let status = late.status.unwrap();
        let progressing = condition_of(&status, "Progressing");
        assert_eq!(progressing.status, ConditionStatus::False);
        assert_eq!(
            progressing.reason.as_deref(),
            Some("ProgressDeadlineExceeded")
        );
    }

    #[test]
    fn a_rollback_takes_the_previous_revision_or_the_one_named() {
        let web = deployment("web", 1);
        let v1 = with_image(&web, "web:1");
        let v2 = with_image(&web, "web:2");
        let v3 = with_image(&web, "web:3");
        let replica_sets = vec![
            owned_replica_set(&v1, 1, 0, 0, 0, 0),
            owned_replica_set(&v3, 3, 1, 1, 1, 2),
            owned_replica_set(&v2, 2, 0, 0, 0, 1),
        ];
        let previous = rollback_template(&v3, None, &replica_sets).unwrap();
        assert_eq!(previous, v2.spec.template);
        assert!(
            !previous
                .metadata
                .labels
                .contains_key(POD_TEMPLATE_HASH_LABEL)
        );
        assert_eq!(
            rollback_template(&v3, Some(1), &replica_sets).unwrap(),
            v1.spec.template
        );
        assert_eq!(
            rollback_template(&v3, Some(9), &replica_sets),
            Err(RollbackError::RevisionNotFound(9))
        );
        assert_eq!(
            rollback_template(&v3, None, &replica_sets[1..2]),
            Err(RollbackError::NoPreviousRevision)
        );
    }

    #[test]
    fn rolling_back_reuses_the_old_replica_set_as_the_newest_revision() {
        let web = deployment("web", 2);
        let v2 = with_image(&web, "web:2");
        let replica_sets = vec![
            owned_replica_set(&web, 1, 0, 0, 0, 0),
            owned_replica_set(&v2, 2, 2, 2, 2, 1),
        ];
        // The Deployment's template is back at revision 1's.
        let plan = plan(&web, &replica_sets, &no_pods, at(5)).unwrap();
        assert!(plan.create.is_none());
        let revived = plan
            .update
            .iter()
            .find(|rs| rs.metadata.name == replica_sets[0].metadata.name)
            .expect("the old ReplicaSet scales up again");
        assert_eq!(revived.metadata.annotations[REVISION_ANNOTATION], "3");
        assert!(revived.spec.replicas() > 0);
    }
}
