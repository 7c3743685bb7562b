//! EndpointSlices: where a Service's pods can be reached, kept by the
//! server's endpoints controller (`discovery.k8s.io/v1` in Kubernetes).
//!
//! Berth's one addition to Kubernetes' shape is where each endpoint is
//! published on its node: a pod's containers join the tenant's bridge on
//! their node (reachable there at `addresses` and the slice's container
//! `ports`), and publish each container port on the node's address
//! (`hostIP` and `hostPorts`, reachable from every node).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::meta::ObjectMeta;
use super::pod::Protocol;

/// The label that names a slice's Service, as Kubernetes has it.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label that names who keeps a slice (`endpointslice-controller.k8s.io`
/// for the server's controller).
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The [`MANAGED_BY_LABEL`] value of the slices the server keeps.
pub const MANAGED_BY_CONTROLLER: &str = "endpointslice-controller.k8s.io";

/// A set of endpoints of one Service that share one port mapping.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointSlice {
    /// `discovery.k8s.io/v1` (or `berth.dev/v1`).
    pub api_version: String,
    /// `EndpointSlice`.
    pub kind: String,
    /// Name, the `kubernetes.io/service-name` label and the owner reference
    /// to the Service.
    pub metadata: ObjectMeta,
    /// `IPv4` (the only type Berth writes).
    pub address_type: AddressType,
    /// The pods.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
    /// The ports every endpoint of the slice serves, as container ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

/// The address family of a slice's addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum AddressType {
    /// IPv4 addresses.
    #[default]
    IPv4,
    /// IPv6 addresses.
    IPv6,
    /// Fully qualified domain names.
    #[serde(rename = "FQDN")]
    Fqdn,
}

/// One pod behind a Service.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Endpoint {
    /// The pod's address on its tenant's bridge network (its `podIP`).
    pub addresses: Vec<String>,
    /// Whether it takes traffic.
    pub conditions: EndpointConditions,
    /// The node it runs on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<EndpointReference>,
    /// The node address its ports are published on (a Berth field).
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// Where each of the slice's `ports` is published on `hostIP`, by the
    /// same name (a Berth field); a port the pod does not publish has no
    /// entry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<EndpointPort>,
}

/// Whether an endpoint takes traffic, as Kubernetes reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointConditions {
    /// Ready and not terminating: new connections go here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Ready, whether terminating or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving: Option<bool>,
    /// Being deleted (`deletionTimestamp` set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminating: Option<bool>,
}

/// The object behind an endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointReference {
    /// `Pod`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its uid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// One port of a slice (or of an endpoint's `hostPorts`).
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointPort {
    /// The Service port's name (empty for a Service's only, unnamed port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The port number.
    pub port: i32,
    /// `TCP`, `UDP` or `SCTP`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}
