//! Events: what controllers and agents report about objects
//! (`core/v1` Event shape, as `kubectl describe` shows them).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::meta::ObjectMeta;

/// Something that happened to an object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Event {
    /// `v1` (or `berth.dev/v1`).
    pub api_version: String,
    /// `Event`.
    pub kind: String,
    /// Name, labels.
    pub metadata: ObjectMeta,
    /// The object it happened to.
    pub involved_object: ObjectReference,
    /// One word (`Scheduled`, `BackOff`, `ScalingReplicaSet`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For humans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Normal` or `Warning`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<EventType>,
    /// How often it happened (repeats are folded into one Event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// When it first happened (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub first_timestamp: Option<String>,
    /// When it last happened (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub last_timestamp: Option<String>,
    /// Who reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<EventSource>,
    /// The controller that reported it (`berth.dev/scheduler`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporting_component: Option<String>,
    /// Which replica of that controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporting_instance: Option<String>,
}

/// Whether an event is routine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    /// Routine.
    #[default]
    Normal,
    /// Something a human may want to look at.
    Warning,
}

/// An object an event is about.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectReference {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its uid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Its `apiVersion`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Its `resourceVersion` when the event happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// The part of it (`spec.containers{web}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
}

/// The component and host that reported an event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct EventSource {
    /// The component (`scheduler`, `agent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}
