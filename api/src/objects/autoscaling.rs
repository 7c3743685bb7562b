//! HorizontalPodAutoscalers (`autoscaling/v2`): scale a workload's replicas
//! to hold a resource metric near a target.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::meta::{ConditionStatus, ObjectMeta, optional_quantity};

/// Scales a Deployment or ReplicaSet on its pods' CPU or memory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct HorizontalPodAutoscaler {
    /// `autoscaling/v2` (or `berth.dev/v1`).
    pub api_version: String,
    /// `HorizontalPodAutoscaler`.
    pub kind: String,
    /// Name, labels.
    pub metadata: ObjectMeta,
    /// The desired behaviour.
    pub spec: HorizontalPodAutoscalerSpec,
    /// What the autoscaler last saw and did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<HorizontalPodAutoscalerStatus>,
}

/// What to scale, between which bounds, on which metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct HorizontalPodAutoscalerSpec {
    /// The workload to scale.
    pub scale_target_ref: CrossVersionObjectReference,
    /// The fewest replicas; defaults to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    /// The most replicas.
    pub max_replicas: i32,
    /// The metrics to hold near their targets; the largest proposal wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSpec>,
    /// How fast to scale up and down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,
}

/// A workload by kind and name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct CrossVersionObjectReference {
    /// `apps/v1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `Deployment` or `ReplicaSet`.
    pub kind: String,
    /// The workload's name.
    pub name: String,
}

/// One metric the autoscaler follows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct MetricSpec {
    /// Only `Resource` is supported.
    #[serde(rename = "type")]
    pub type_: MetricSourceType,
    /// The resource and its target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetricSource>,
}

/// Where a metric comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum MetricSourceType {
    /// A resource (cpu, memory) of the pods, as the agents measure it.
    #[default]
    Resource,
}

/// A resource metric and its target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ResourceMetricSource {
    /// `cpu` or `memory`.
    pub name: String,
    /// The value to hold.
    pub target: MetricTarget,
}

/// The value a metric should hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct MetricTarget {
    /// Which of the members below is the target.
    #[serde(rename = "type")]
    pub type_: MetricTargetType,
    /// Percent of the pods' requests, averaged over the pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i32>,
    /// A quantity per pod, averaged over the pods.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_quantity"
    )]
    pub average_value: Option<String>,
}

/// The kinds of metric target Berth supports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum MetricTargetType {
    /// `averageUtilization`.
    #[default]
    Utilization,
    /// `averageValue`.
    AverageValue,
}

/// Separate rules for scaling up and down.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct HorizontalPodAutoscalerBehavior {
    /// Rules for adding replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<HpaScalingRules>,
    /// Rules for removing replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<HpaScalingRules>,
}

/// How fast replicas may change in one direction.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct HpaScalingRules {
    /// Use the most conservative proposal of this many past seconds (0–3600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stabilization_window_seconds: Option<i32>,
    /// `Max` (the default), `Min` or `Disabled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<ScalingPolicySelect>,
    /// Limits on the change per period.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<HpaScalingPolicy>,
}

/// Which policy applies when several do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ScalingPolicySelect {
    /// The one allowing the biggest change.
    #[default]
    Max,
    /// The one allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// A limit on how much replicas change per period.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct HpaScalingPolicy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    pub type_: ScalingPolicyType,
    /// How many pods, or what percent of the current replicas.
    pub value: i32,
    /// The period, 1–1800 seconds.
    pub period_seconds: i32,
}

/// The unit of a scaling policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ScalingPolicyType {
    /// A number of pods.
    #[default]
    Pods,
    /// A percentage of the current replicas.
    Percent,
}

/// What the autoscaler last saw and did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct HorizontalPodAutoscalerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the replicas last changed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub last_scale_time: Option<String>,
    /// The replicas it saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    /// The replicas it wants.
    pub desired_replicas: i32,
    /// The metric values it saw.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub current_metrics: Vec<MetricStatus>,
    /// `AbleToScale`, `ScalingActive`, `ScalingLimited`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<HorizontalPodAutoscalerCondition>,
}

/// One metric's current value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct MetricStatus {
    /// `Resource`.
    #[serde(rename = "type")]
    pub type_: MetricSourceType,
    /// The resource's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceMetricStatus>,
}

/// A resource metric's current value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ResourceMetricStatus {
    /// `cpu` or `memory`.
    pub name: String,
    /// The value.
    pub current: MetricValueStatus,
}

/// A metric value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct MetricValueStatus {
    /// Percent of the pods' requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i32>,
    /// A quantity per pod.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_quantity"
    )]
    pub average_value: Option<String>,
}

/// One condition of an autoscaler.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct HorizontalPodAutoscalerCondition {
    /// `AbleToScale`, `ScalingActive` or `ScalingLimited`.
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
