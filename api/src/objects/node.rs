//! Nodes: the Docker hosts agents register, with their capacity and health.
//! Cluster-scoped: a node belongs to no tenant.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::meta::{ConditionStatus, ObjectMeta, quantity_map};
use super::pod::TaintEffect;

/// A host that runs pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Node {
    /// `v1` (or `berth.dev/v1`).
    pub api_version: String,
    /// `Node`.
    pub kind: String,
    /// Name, labels (which node selectors match).
    pub metadata: ObjectMeta,
    /// What the operator decides.
    pub spec: NodeSpec,
    /// What the agent reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
}

/// What an operator decides about a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeSpec {
    /// Cordoned: no new pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unschedulable: Option<bool>,
    /// Keep away pods that do not tolerate these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// The pod address range.
    #[serde(rename = "podCIDR", skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
}

/// A mark that repels pods without a matching toleration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Taint {
    /// A label-style key.
    pub key: String,
    /// A label-style value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// What it does; required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
    /// When it was added (RFC 3339), for `NoExecute` timing.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub time_added: Option<String>,
}

/// What the agent reports about its node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeStatus {
    /// Everything the node has, as quantities (`cpu`, `memory`, `pods`).
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "quantity_map"
    )]
    pub capacity: BTreeMap<String, String>,
    /// What pods may use of it.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "quantity_map"
    )]
    pub allocatable: BTreeMap<String, String>,
    /// How to reach the node.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    /// `Ready`, `MemoryPressure`, `DiskPressure`…
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<NodeCondition>,
    /// Versions and ids of the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_info: Option<NodeSystemInfo>,
    /// Where the agent listens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon_endpoints: Option<NodeDaemonEndpoints>,
}

/// One address of a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP` or `Hostname`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The address.
    pub address: String,
}

/// One condition of a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeCondition {
    /// `Ready`, `MemoryPressure`, `DiskPressure`, `PIDPressure`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// The last heartbeat that reported it (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub last_heartbeat_time: Option<String>,
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

/// Versions and ids of a node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeSystemInfo {
    /// `/etc/machine-id`.
    #[serde(rename = "machineID")]
    pub machine_id: String,
    /// The hardware UUID.
    #[serde(rename = "systemUUID")]
    pub system_uuid: String,
    /// Changes on every boot.
    #[serde(rename = "bootID")]
    pub boot_id: String,
    /// `uname -r`.
    pub kernel_version: String,
    /// The distribution.
    pub os_image: String,
    /// `docker://27.0.1`.
    pub container_runtime_version: String,
    /// The agent's version (Kubernetes' field name).
    pub kubelet_version: String,
    /// The proxy's version (Kubernetes' field name).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kube_proxy_version: String,
    /// `linux`.
    pub operating_system: String,
    /// `amd64`, `arm64`.
    pub architecture: String,
}

/// Ports the node's daemons listen on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeDaemonEndpoints {
    /// The agent's endpoint (Kubernetes' field name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubelet_endpoint: Option<DaemonEndpoint>,
}

/// One daemon's port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct DaemonEndpoint {
    /// The port.
    #[serde(rename = "Port")]
    pub port: i32,
}
