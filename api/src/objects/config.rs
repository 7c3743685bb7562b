//! ConfigMaps and Secrets: named bags of keys that pods read as environment
//! variables or files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::meta::ObjectMeta;

/// Plain configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ConfigMap {
    /// `v1` (or `berth.dev/v1`).
    pub api_version: String,
    /// `ConfigMap`.
    pub kind: String,
    /// Name, labels.
    pub metadata: ObjectMeta,
    /// UTF-8 values by key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Base64 values by key, for bytes that are not UTF-8.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub binary_data: BTreeMap<String, String>,
    /// When true, the data can no longer change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

/// Sensitive configuration; encrypted at rest by the server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Secret {
    /// `v1` (or `berth.dev/v1`).
    pub api_version: String,
    /// `Secret`.
    pub kind: String,
    /// Name, labels.
    pub metadata: ObjectMeta,
    /// `Opaque` (the default) or a Kubernetes type such as `kubernetes.io/tls`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Base64 (standard alphabet, padded) values by key.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Plain values by key, for writing only: decoding merges them into
    /// `data` (winning over the same key there), as Kubernetes does.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    /// When true, the data can no longer change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl Secret {
    /// Moves `stringData` into `data`, base64-encoded, winning over the same
    /// key there: Kubernetes treats `stringData` as write-only, and readers
    /// (the agent) then need to look only at `data`.
    pub fn merge_string_data(&mut self) {
        use base64::Engine;
        for (key, value) in std::mem::take(&mut self.string_data) {
            let encoded = base64::engine::general_purpose::STANDARD.encode(value);
            self.data.insert(key, encoded);
        }
    }

    /// The decoded values of `data` (with `stringData` merged over them).
    pub fn decoded_data(&self) -> Result<BTreeMap<String, Vec<u8>>, String> {
        use base64::Engine;
        let mut decoded = BTreeMap::new();
        for (key, value) in &self.data {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value)
                .map_err(|error| format!("data[{key}] is not valid base64: {error}"))?;
            decoded.insert(key.clone(), bytes);
        }
        for (key, value) in &self.string_data {
            decoded.insert(key.clone(), value.as_bytes().to_vec());
        }
        Ok(decoded)
    }
}
