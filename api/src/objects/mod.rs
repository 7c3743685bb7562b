//! Berth's resource kinds, shaped like Kubernetes' (same JSON field names,
//! so manifests apply unchanged), and the path from submitted JSON to a
//! stored object.
//!
//! - [`kind`]: the registry of kinds (names, plurals, apiVersions, scope).
//! - [`meta`]: `metadata`, label selectors, owner references, int-or-string.
//! - [`pod`], [`security_context`], [`workloads`], [`service`], [`discovery`], [`config`],
//!   [`storage`], [`autoscaling`], [`event`], [`node`]: the kinds' types.
//! - [`mod@decode`]: strict reading, defaults, validation, normalisation.
//! - [`defaults`]: the one place that knows each default value.
//! - [`validate`]: every rule, reporting all problems with field paths.
//! - [`resource`]: the [`Resource`] trait every kind's type implements.
//! - [`schema`]: the OpenAPI schemas, closed against unknown fields.
//! - [`scale`]: the scale subresource (`autoscaling/v1` `Scale`) of
//!   Deployments and ReplicaSets.
//! - [`rollout`]: a Deployment's revisions and the rollback request.

pub mod autoscaling;
pub mod config;
pub mod decode;
pub mod defaults;
pub mod discovery;
pub mod event;
pub(crate) mod field;
pub mod kind;
pub mod meta;
pub mod node;
pub mod pod;
pub mod resource;
pub mod rollout;
pub mod scale;
pub mod schema;
pub mod security_context;
pub mod service;
pub mod storage;
pub mod validate;
pub mod workloads;

pub use autoscaling::HorizontalPodAutoscaler;
pub use config::{ConfigMap, Secret};
pub use decode::{Decoded, decode, decode_as, from_slice, from_value};
pub use discovery::EndpointSlice;
pub use event::Event;
pub use field::FieldError;
pub use kind::Kind;
pub use meta::{IntOrString, LabelSelector, ObjectMeta, OwnerReference};
pub use node::Node;
pub use pod::{Pod, PodSpec, PodTemplateSpec};
pub use resource::Resource;
pub use service::Service;
pub use storage::Volume;
pub use workloads::{Deployment, ReplicaSet, max_surge_and_unavailable};

#[cfg(test)]
mod tests;
