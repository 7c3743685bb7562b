//! Pods and everything a pod template holds: containers, probes, env,
//! volumes, scheduling constraints, and the status the agent reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::meta::{ConditionStatus, IntOrString, LabelSelector, ObjectMeta, quantity_map};
pub use super::security_context::{
    AppArmorProfile, AppArmorProfileType, Capabilities, FsGroupChangePolicy, PodSecurityContext,
    ProcMountType, SeLinuxOptions, SeccompProfile, SeccompProfileType, SecurityContext,
    SupplementalGroupsPolicy, Sysctl, WindowsSecurityContextOptions,
};

/// One or more containers that run together on one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Pod {
    /// `v1` (or `berth.dev/v1`).
    pub api_version: String,
    /// `Pod`.
    pub kind: String,
    /// Name, labels, owners.
    pub metadata: ObjectMeta,
    /// What to run.
    pub spec: PodSpec,
    /// What runs, as the agent reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<PodStatus>,
}

/// How long a pod's containers get between SIGTERM and SIGKILL when the
/// pod says nothing (`terminationGracePeriodSeconds`), as in Kubernetes.
pub const DEFAULT_TERMINATION_GRACE_SECONDS: i64 = 30;

impl Pod {
    /// The pod's own grace period: `terminationGracePeriodSeconds`, or
    /// Kubernetes' default.
    pub fn termination_grace_seconds(&self) -> i64 {
        self.spec
            .termination_grace_period_seconds
            .unwrap_or(DEFAULT_TERMINATION_GRACE_SECONDS)
            .max(0)
    }

    /// How long a deletion of this pod waits for its node to stop it, as
    /// Kubernetes decides: the grace the caller asked for (`requested`,
    /// DeleteOptions' `gracePeriodSeconds`), else the pod's own; none for a
    /// pod no node runs or that has finished, since nothing is left to
    /// stop. A pod already terminating keeps the shorter of its grace and
    /// the new one.
    pub fn deletion_grace(&self, requested: Option<i64>) -> i64 {
        let finished = matches!(
            self.status.as_ref().and_then(|s| s.phase),
            Some(PodPhase::Succeeded | PodPhase::Failed)
        );
        if self.spec.node_name.as_deref().is_none_or(str::is_empty) || finished {
            return 0;
        }
        let grace = requested
            .unwrap_or_else(|| self.termination_grace_seconds())
            .max(0);
        match self.metadata.deletion_grace_period_seconds {
            Some(current) if self.metadata.deletion_timestamp.is_some() => grace.min(current),
            _ => grace,
        }
    }

    /// Whether the pod is being deleted: its node is stopping it.
    pub fn is_terminating(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }
}

/// The pod a workload stamps out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct PodTemplateSpec {
    /// Labels (which the workload's selector must match) and annotations.
    pub metadata: ObjectMeta,
    /// The pod's spec.
    pub spec: PodSpec,
}

/// What a pod runs and where it may run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpec {
    /// The containers; at least one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
    /// Containers that run to completion, one after another, before the others start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    /// When the agent restarts a container that exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    /// The node the scheduler bound the pod to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Labels a node must carry to run the pod.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Node affinity and pod (anti-)affinity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Node taints the pod accepts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Volumes the containers may mount.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<PodVolume>,
    /// How long a container gets between SIGTERM and SIGKILL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    /// Use the node's network namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_network: Option<bool>,
    /// Use the node's process id namespace.
    #[serde(rename = "hostPID", skip_serializing_if = "Option::is_none")]
    pub host_pid: Option<bool>,
    /// Use the node's IPC namespace.
    #[serde(rename = "hostIPC", skip_serializing_if = "Option::is_none")]
    pub host_ipc: Option<bool>,
    /// How names resolve inside the pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<DnsPolicy>,
    /// Accepted and kept; Berth has no service accounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Accepted and kept (the deprecated spelling of `serviceAccountName`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Accepted and kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,
    /// Scheduling priority; higher goes first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Accepted and kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Accepted and kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    /// The pod's host name inside its containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Accepted and kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    /// Accepted and kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_service_links: Option<bool>,
    /// Registry credentials by Secret name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Who the containers run as and what they may do, unless a
    /// container says otherwise; checked against the tenant's Pod Security
    /// level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
}

/// A reference to an object of a known kind in the same tenant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// The object's name.
    pub name: String,
}

/// When a container that exited is started again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum RestartPolicy {
    /// Always (the only choice for Deployments and ReplicaSets).
    #[default]
    Always,
    /// Only after a non-zero exit.
    OnFailure,
    /// Never.
    Never,
}

/// How names resolve inside a pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum DnsPolicy {
    /// Service names first, then the node's resolvers.
    #[default]
    ClusterFirst,
    /// `ClusterFirst` for pods on the host network.
    ClusterFirstWithHostNet,
    /// The node's resolvers only.
    Default,
    /// No DNS configuration from Berth.
    None,
}

/// Where a pod may be placed, relative to nodes and to other pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Affinity {
    /// Constraints on the node's labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,
    /// Pods this pod wants to be near.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_affinity: Option<PodAffinity>,
    /// Pods this pod wants to be away from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_anti_affinity: Option<PodAffinity>,
}

/// Node affinity: hard and soft constraints on node labels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeAffinity {
    /// The node must match one of these terms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
    /// Nodes matching these terms score higher.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preferred_during_scheduling_ignored_during_execution: Vec<PreferredSchedulingTerm>,
}

/// Terms of which at least one must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeSelector {
    /// The terms (ORed).
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}

/// Requirements that must all hold (ANDed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeSelectorTerm {
    /// Requirements on node labels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
    /// Requirements on node fields (`metadata.name`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_fields: Vec<NodeSelectorRequirement>,
}

/// One requirement on a node label or field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeSelectorRequirement {
    /// The label key or field path.
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt` or `Lt`.
    pub operator: String,
    /// The values the operator compares with.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A weighted soft node preference.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct PreferredSchedulingTerm {
    /// 1–100.
    pub weight: i32,
    /// The term nodes are scored on.
    pub preference: NodeSelectorTerm,
}

/// Pod affinity or anti-affinity (the two have the same shape).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct PodAffinity {
    /// Hard rules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub required_during_scheduling_ignored_during_execution: Vec<PodAffinityTerm>,
    /// Soft rules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preferred_during_scheduling_ignored_during_execution: Vec<WeightedPodAffinityTerm>,
}

/// Pods matching `labelSelector`, grouped by the node label `topologyKey`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct PodAffinityTerm {
    /// Which pods the rule is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// The node label that defines "the same place" (`kubernetes.io/hostname`).
    pub topology_key: String,
    /// Accepted and kept; Berth looks in the pod's own tenant.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

/// A weighted soft pod (anti-)affinity rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct WeightedPodAffinityTerm {
    /// 1–100.
    pub weight: i32,
    /// The rule.
    pub pod_affinity_term: PodAffinityTerm,
}

/// A node taint the pod accepts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Toleration {
    /// The taint key; empty with `Exists` tolerates every taint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Equal` (the default) or `Exists`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<TolerationOperator>,
    /// The taint value, for `Equal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The taint effect; empty tolerates all effects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
    /// How long a `NoExecute` taint is tolerated before eviction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

impl Toleration {
    /// Whether this toleration accepts `taint`, by Kubernetes' rules: the
    /// effect matches (or is empty); the key matches, or is empty with
    /// `Exists`; with `Equal`, the values match.
    pub fn tolerates(&self, taint: &super::node::Taint) -> bool {
        if self.effect.is_some() && self.effect != taint.effect {
            return false;
        }
        let exists = self.operator == Some(TolerationOperator::Exists);
        match self.key.as_deref().filter(|key| !key.is_empty()) {
            None => exists,
            Some(key) if key != taint.key => false,
            Some(_) if exists => true,
            Some(_) => {
                self.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
            }
        }
    }
}

/// How a toleration compares with a taint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum TolerationOperator {
    /// Key and value must be equal.
    #[default]
    Equal,
    /// The key must exist; the value does not matter.
    Exists,
}

/// What a node taint does to pods that do not tolerate it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum TaintEffect {
    /// New pods are not scheduled there.
    NoSchedule,
    /// The scheduler avoids the node when it can.
    PreferNoSchedule,
    /// Running pods are evicted as well.
    NoExecute,
}

/// A named volume; exactly one source is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct PodVolume {
    /// What `volumeMounts` refer to.
    pub name: String,
    /// Files from a ConfigMap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
    /// Files from a Secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    /// A Berth Volume (claim).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    /// Scratch space that lives as long as the pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
    /// A directory of the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolumeSource>,
}

/// A ConfigMap's keys as files.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ConfigMapVolumeSource {
    /// The ConfigMap.
    pub name: String,
    /// Which keys, under which paths; empty means every key under its own name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    /// File mode bits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i32>,
    /// Start the pod even when the ConfigMap is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// A Secret's keys as files.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct SecretVolumeSource {
    /// The Secret.
    pub secret_name: String,
    /// Which keys, under which paths; empty means every key under its own name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    /// File mode bits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i32>,
    /// Start the pod even when the Secret is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// One key projected to one file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct KeyToPath {
    /// The key.
    pub key: String,
    /// The relative file path.
    pub path: String,
    /// File mode bits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<i32>,
}

/// A claim on a Berth Volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct PersistentVolumeClaimVolumeSource {
    /// The Volume's name.
    pub claim_name: String,
    /// Mount read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// Scratch space.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct EmptyDirVolumeSource {
    /// `""` (disk) or `Memory` (tmpfs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    /// A quantity.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::meta::optional_quantity"
    )]
    pub size_limit: Option<String>,
}

/// A directory of the node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct HostPathVolumeSource {
    /// The absolute path on the node.
    pub path: String,
    /// Kubernetes' `type` check (`Directory`, `DirectoryOrCreate`, …).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

/// One container of a pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Container {
    /// Unique within the pod; a DNS label.
    pub name: String,
    /// The image reference (`busybox:1.36`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// Replaces the image's entrypoint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Replaces the image's arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Environment variables, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Whole ConfigMaps or Secrets as environment variables.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// Ports the container listens on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Requests (for scheduling) and limits (enforced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Restart the container when this fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Send traffic only while this succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Hold the other probes until this succeeds once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// Volumes mounted into the container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// When the agent pulls the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Accepted and kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_message_path: Option<String>,
    /// Accepted and kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_message_policy: Option<String>,
    /// Keep stdin open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<bool>,
    /// Allocate a TTY.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    /// Who the container runs as and what it may do; checked against the
    /// tenant's Pod Security level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Accepted and kept as written (postStart/preStop hooks).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub lifecycle: Option<Value>,
}

/// When the agent pulls an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PullPolicy {
    /// On every start.
    Always,
    /// Only when the node lacks it.
    IfNotPresent,
    /// Never; the image must be on the node.
    Never,
}

/// One environment variable: a literal or a reference.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct EnvVar {
    /// The variable's name.
    pub name: String,
    /// A literal value (`$(OTHER)` expands earlier variables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where the value comes from instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// The source of an environment variable's value; exactly one is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct EnvVarSource {
    /// A key of a Secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeySelector>,
    /// A key of a ConfigMap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeySelector>,
    /// A field of the pod (`metadata.name`, `status.podIP`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<ObjectFieldSelector>,
}

/// A key of a named ConfigMap or Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct KeySelector {
    /// The ConfigMap or Secret.
    pub name: String,
    /// The key.
    pub key: String,
    /// Start the container even when the key is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// A field of the pod itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectFieldSelector {
    /// The field path (`metadata.name`).
    pub field_path: String,
    /// The schema version the path is written in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

/// All keys of a ConfigMap or Secret as environment variables.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct EnvFromSource {
    /// Prepended to every key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// A ConfigMap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<EnvSourceReference>,
    /// A Secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<EnvSourceReference>,
}

/// A ConfigMap or Secret whose keys become variables.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct EnvSourceReference {
    /// Its name.
    pub name: String,
    /// Start the container even when it is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// A port a container listens on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerPort {
    /// A name Services can target (IANA style, ≤ 15 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The port inside the container.
    pub container_port: i32,
    /// Also publish it on the node at this port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    /// `TCP`, `UDP` or `SCTP`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// The node address the host port binds to.
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// A transport protocol.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
)]
pub enum Protocol {
    /// TCP.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

/// Requests and limits, as quantities by resource name (`cpu`, `memory`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ResourceRequirements {
    /// What the scheduler reserves.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "quantity_map"
    )]
    pub requests: BTreeMap<String, String>,
    /// What the runtime enforces.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "quantity_map"
    )]
    pub limits: BTreeMap<String, String>,
}

/// A health check; exactly one handler is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Probe {
    /// An HTTP GET that must answer 200–399.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    /// A TCP connect that must succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    /// A command that must exit 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    /// Wait this long after the start before the first check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i32>,
    /// Check this often.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i32>,
    /// A check slower than this fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    /// Successes in a row that count as healthy again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i32>,
    /// Failures in a row that count as unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i32>,
    /// The grace period of a container this (liveness or startup) probe
    /// kills, instead of the pod's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
}

/// An HTTP probe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpGetAction {
    /// The path (`/healthz`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A port number or the name of a container port.
    pub port: IntOrString,
    /// The host to connect to; the pod's address when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `HTTP` or `HTTPS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Extra request headers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

/// One HTTP header.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpHeader {
    /// The header name.
    pub name: String,
    /// The header value.
    pub value: String,
}

/// A TCP probe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct TcpSocketAction {
    /// A port number or the name of a container port.
    pub port: IntOrString,
    /// The host to connect to; the pod's address when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A command probe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ExecAction {
    /// The command and its arguments (no shell).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

/// A volume mounted into a container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct VolumeMount {
    /// The pod volume's name.
    pub name: String,
    /// Where in the container.
    pub mount_path: String,
    /// Mount read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// A path inside the volume to mount instead of its root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// What the agent reports about a pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct PodStatus {
    /// Where the pod is in its life.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<PodPhase>,
    /// `PodScheduled`, `Initialized`, `ContainersReady`, `Ready`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<PodCondition>,
    /// Why the pod is in this phase, for humans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why the pod is in this phase, one word (`Evicted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The node's address.
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// The pod's address.
    #[serde(rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    /// When the agent accepted the pod (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub start_time: Option<String>,
    /// One per container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub container_statuses: Vec<ContainerStatus>,
    /// One per init container.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init_container_statuses: Vec<ContainerStatus>,
}

/// A pod's phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PodPhase {
    /// Accepted, not all containers running yet.
    #[default]
    Pending,
    /// Bound and at least one container running.
    Running,
    /// Every container exited 0 and will not restart.
    Succeeded,
    /// Every container exited, at least one with a failure.
    Failed,
    /// The node stopped reporting.
    Unknown,
}

/// One condition of a pod.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct PodCondition {
    /// `PodScheduled`, `Initialized`, `ContainersReady` or `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// When it was last checked (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub last_probe_time: Option<String>,
    /// When `status` last changed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub last_transition_time: Option<String>,
    /// One word.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For humans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What the agent reports about one container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerStatus {
    /// The container's name in the spec.
    pub name: String,
    /// Whether its readiness probe passes.
    pub ready: bool,
    /// How often it was restarted.
    pub restart_count: i32,
    /// The image as the spec names it.
    pub image: String,
    /// The image the runtime resolved.
    #[serde(rename = "imageID")]
    pub image_id: String,
    /// The runtime's id (`docker://…`).
    #[serde(rename = "containerID", skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Whether it started and passed its startup probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
    /// What it is doing now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
    /// How its previous run ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_state: Option<ContainerState>,
    /// Where its `containerPort`s are published on the node (a Berth
    /// field; Kubernetes has no status for host ports).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub port_bindings: Vec<PortBindingStatus>,
}

/// A container port as published on the node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct PortBindingStatus {
    /// The port inside the container.
    pub container_port: i32,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: Protocol,
    /// The node address it is published on.
    #[serde(rename = "hostIP")]
    pub host_ip: String,
    /// The node port (the given `hostPort`, or one the node chose).
    pub host_port: i32,
}

/// A container's state; at most one member is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerState {
    /// Not running yet (`ContainerCreating`, `CrashLoopBackOff`, `ErrImagePull`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<ContainerStateWaiting>,
    /// Running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<ContainerStateRunning>,
    /// Exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminated: Option<ContainerStateTerminated>,
}

/// Why a container is not running yet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerStateWaiting {
    /// One word.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For humans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Since when a container runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerStateRunning {
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
}

/// How a container ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerStateTerminated {
    /// The exit code.
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// One word (`Completed`, `Error`, `OOMKilled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For humans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// The runtime's id.
    #[serde(rename = "containerID", skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}
