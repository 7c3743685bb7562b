//! Volumes: Berth's claims on storage, shaped like Kubernetes'
//! PersistentVolumeClaim (whose kind name is accepted as an alias).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::meta::{LabelSelector, ObjectMeta, quantity_map};

/// A claim on storage that pods mount through `persistentVolumeClaim`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Volume {
    /// `v1` (or `berth.dev/v1`).
    pub api_version: String,
    /// `Volume`; `PersistentVolumeClaim` is accepted and stored as `Volume`.
    pub kind: String,
    /// Name, labels.
    pub metadata: ObjectMeta,
    /// What storage is wanted.
    pub spec: VolumeSpec,
    /// What storage was provided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<VolumeStatus>,
}

/// What storage a Volume asks for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct VolumeSpec {
    /// How pods may mount it; defaults to `[ReadWriteOnce]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<AccessMode>,
    /// `requests.storage` is the size.
    pub resources: VolumeResourceRequirements,
    /// The kind of storage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// A file system (the default) or a raw block device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<VolumeMode>,
    /// Bind to this existing volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
    /// Accepted and kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// How a Volume may be mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum AccessMode {
    /// Read-write by the pods of one node.
    ReadWriteOnce,
    /// Read-only by many nodes.
    ReadOnlyMany,
    /// Read-write by many nodes.
    ReadWriteMany,
    /// Read-write by one pod.
    ReadWriteOncePod,
}

/// A file system or a raw block device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum VolumeMode {
    /// A mounted file system.
    #[default]
    Filesystem,
    /// A raw block device.
    Block,
}

/// The size of a Volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct VolumeResourceRequirements {
    /// `storage`: the size asked for (required).
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "quantity_map"
    )]
    pub requests: BTreeMap<String, String>,
    /// `storage`: the most it may grow to.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "quantity_map"
    )]
    pub limits: BTreeMap<String, String>,
}

/// What storage a Volume got.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct VolumeStatus {
    /// `Pending`, `Bound` or `Lost`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The access modes provided.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<AccessMode>,
    /// The size provided.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "quantity_map"
    )]
    pub capacity: BTreeMap<String, String>,
    /// The node that holds the volume's data: set by the scheduler when it
    /// binds the first pod that uses the claim; later pods of the claim
    /// go to that node only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}
