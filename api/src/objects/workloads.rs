//! Deployments and ReplicaSets, and how a rolling update's budgets
//! (`maxSurge`, `maxUnavailable`) turn into pod counts.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::defaults;
use super::meta::{ConditionStatus, IntOrString, LabelSelector, ObjectMeta};
use super::pod::PodTemplateSpec;

/// Keeps a number of pods of one template running and rolls out changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Deployment {
    /// `apps/v1` (or `berth.dev/v1`).
    pub api_version: String,
    /// `Deployment`.
    pub kind: String,
    /// Name, labels.
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: DeploymentSpec,
    /// The observed state, written by the deployment controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<DeploymentStatus>,
}

/// A Deployment's desired state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// How many pods; defaults to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Which pods belong to the Deployment; must match the template's labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The pod to run.
    pub template: PodTemplateSpec,
    /// How a new template replaces the old one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<DeploymentStrategy>,
    /// How long a new pod must be ready before it counts as available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    /// How many old ReplicaSets are kept for rollback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
    /// Stop rolling out template changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// After this long without progress the rollout is reported as failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
}

impl DeploymentSpec {
    /// The desired pod count, with the default applied.
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(defaults::DEFAULT_REPLICAS)
    }

    /// The number of old ReplicaSets to keep, with the default applied.
    pub fn revision_history_limit(&self) -> i32 {
        self.revision_history_limit
            .unwrap_or(defaults::DEFAULT_REVISION_HISTORY_LIMIT)
    }

    /// The progress deadline, with the default applied.
    pub fn progress_deadline_seconds(&self) -> i32 {
        self.progress_deadline_seconds
            .unwrap_or(defaults::DEFAULT_PROGRESS_DEADLINE_SECONDS)
    }

    /// The minimum ready time, with the default applied.
    pub fn min_ready_seconds(&self) -> i32 {
        self.min_ready_seconds
            .unwrap_or(defaults::DEFAULT_MIN_READY_SECONDS)
    }

    /// Whether the rollout is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.unwrap_or(false)
    }
}

/// How a Deployment replaces old pods with new ones.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct DeploymentStrategy {
    /// `RollingUpdate` (the default) or `Recreate`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<DeploymentStrategyType>,
    /// The budgets of a rolling update; only with `RollingUpdate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdateDeployment>,
}

/// The kinds of rollout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum DeploymentStrategyType {
    /// Replace pods a few at a time.
    #[default]
    RollingUpdate,
    /// Delete every old pod, then create the new ones.
    Recreate,
}

/// The budgets of a rolling update: numbers or percentages of `replicas`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct RollingUpdateDeployment {
    /// How many pods may exist above `replicas` (percentages round up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    /// How many pods may be unavailable (percentages round down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// A Deployment's observed state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods of every revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods of the current template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    /// Pods whose readiness probes pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pods ready for at least `minReadySeconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// Pods still missing to reach `replicas` available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable_replicas: Option<i32>,
    /// `Available`, `Progressing`, `ReplicaFailure`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<DeploymentCondition>,
    /// Bumped when template hashes collide, to make the next one unique.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
}

/// One condition of a Deployment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct DeploymentCondition {
    /// `Available`, `Progressing` or `ReplicaFailure`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// One word (`NewReplicaSetAvailable`, `ProgressDeadlineExceeded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For humans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the condition was last written (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub last_update_time: Option<String>,
    /// When `status` last changed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub last_transition_time: Option<String>,
}

/// Keeps a number of identical pods running.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ReplicaSet {
    /// `apps/v1` (or `berth.dev/v1`).
    pub api_version: String,
    /// `ReplicaSet`.
    pub kind: String,
    /// Name, labels, the owning Deployment.
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: ReplicaSetSpec,
    /// The observed state, written by the replicaset controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ReplicaSetStatus>,
}

/// A ReplicaSet's desired state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ReplicaSetSpec {
    /// How many pods; defaults to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// How long a new pod must be ready before it counts as available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    /// Which pods belong to it; must match the template's labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The pod to run.
    pub template: PodTemplateSpec,
}

impl ReplicaSetSpec {
    /// The desired pod count, with the default applied.
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(defaults::DEFAULT_REPLICAS)
    }
}

/// A ReplicaSet's observed state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ReplicaSetStatus {
    /// Pods that exist.
    pub replicas: i32,
    /// Pods whose labels match the template's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fully_labeled_replicas: Option<i32>,
    /// Pods whose readiness probes pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pods ready for at least `minReadySeconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i32>,
    /// The `metadata.generation` this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `ReplicaFailure`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ReplicaSetCondition>,
}

/// One condition of a ReplicaSet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ReplicaSetCondition {
    /// `ReplicaFailure`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// One word.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For humans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When `status` last changed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub last_transition_time: Option<String>,
}

/// The pod counts a rolling update may go above and below `replicas`, as
/// Kubernetes resolves them: a percentage of `maxSurge` rounds up, one of
/// `maxUnavailable` rounds down, and when both come out 0 one pod may be
/// unavailable so that the rollout can move at all. A `Recreate` strategy
/// gives `(0, 0)`: it does not surge, and it takes every pod down anyway.
pub fn max_surge_and_unavailable(
    replicas: i32,
    strategy: &DeploymentStrategy,
) -> Result<(i32, i32), String> {
    if strategy.type_ == Some(DeploymentStrategyType::Recreate) {
        return Ok((0, 0));
    }
    let default_budget = IntOrString::String(defaults::DEFAULT_MAX_SURGE.to_owned());
    let rolling = strategy.rolling_update.clone().unwrap_or_default();
    let surge = rolling.max_surge.unwrap_or_else(|| default_budget.clone());
    let unavailable = rolling.max_unavailable.unwrap_or(default_budget);
    let surge = scaled_value(&surge, replicas, true)?;
    let mut unavailable = scaled_value(&unavailable, replicas, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable.min(replicas.max(0))))
}

/// An int-or-percentage budget as a count of `total`.
fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) if *n >= 0 => Ok(*n),
        IntOrString::Int(n) => Err(format!("{n} is negative")),
        IntOrString::String(text) => {
            let percent = parse_percentage(text)?;
            let product = i64::from(percent) * i64::from(total.max(0));
            let scaled = if round_up {
                (product + 99) / 100
            } else {
                product / 100
            };
            i32::try_from(scaled).map_err(|_| format!("{text} of {total} is too large"))
        }
    }
}

/// `"25%"` → 25.
pub(crate) fn parse_percentage(text: &str) -> Result<i32, String> {
    text.strip_suffix('%')
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<i32>().ok())
        .ok_or_else(|| format!("{text:?} must be an integer or a percentage like \"25%\""))
}
