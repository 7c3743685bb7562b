//! ConfigMaps, Secrets and Volumes: keys, sizes, encodings.

use std::collections::BTreeMap;

use base64::Engine;

use super::{NameRule, collect, object_meta, quantity};
use crate::objects::config::{ConfigMap, Secret};
use crate::objects::field::{FieldError, FieldPath, Problems};
use crate::objects::storage::Volume;

/// The most a ConfigMap's or Secret's data may take, as in Kubernetes.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// A ConfigMap.
pub fn config_map(config_map: &ConfigMap) -> Vec<FieldError> {
    collect(|problems| {
        object_meta(&config_map.metadata, NameRule::Subdomain, problems);
        let data = FieldPath::new("data");
        let binary = FieldPath::new("binaryData");
        let mut total = 0;
        for (key, value) in &config_map.data {
            data_key(key, &data.key(key), problems);
            total += value.len();
        }
        for (key, value) in &config_map.binary_data {
            let at = binary.key(key);
            data_key(key, &at, problems);
            if config_map.data.contains_key(key) {
                problems.add(&at, "is also a key of data");
            }
            total += decoded(value, &at, problems).map_or(0, |bytes| bytes.len());
        }
        too_large(total, &data, problems);
    })
}

/// A Secret. `stringData` is checked as written, before it is merged.
pub fn secret(secret: &Secret) -> Vec<FieldError> {
    collect(|problems| {
        object_meta(&secret.metadata, NameRule::Subdomain, problems);
        if secret.type_.as_deref().is_some_and(str::is_empty) {
            problems.add(&FieldPath::new("type"), "must not be empty");
        }
        let data = FieldPath::new("data");
        let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
        for (key, value) in &secret.data {
            let at = data.key(key);
            data_key(key, &at, problems);
            sizes.insert(key, decoded(value, &at, problems).map_or(0, |b| b.len()));
        }
        let string_data = FieldPath::new("stringData");
        for (key, value) in &secret.string_data {
            data_key(key, &string_data.key(key), problems);
            sizes.insert(key, value.len());
        }
        too_large(sizes.values().sum(), &data, problems);
    })
}

/// A Volume (claim).
pub fn volume(volume: &Volume) -> Vec<FieldError> {
    collect(|problems| {
        object_meta(&volume.metadata, NameRule::Subdomain, problems);
        let path = FieldPath::new("spec");
        problems.check(
            !volume.spec.access_modes.is_empty(),
            &path.child("accessModes"),
            "at least one access mode is required",
        );
        let requests = path.child("resources").child("requests");
        match volume.spec.resources.requests.get("storage") {
            None => problems.add(&requests.key("storage"), "required"),
            Some(size) => {
                if let Some(q) = quantity(size, &requests.key("storage"), problems) {
                    problems.check(
                        q.nano_value() > 0,
                        &requests.key("storage"),
                        "must be greater than zero",
                    );
                }
            }
        }
        for (field, list) in [
            ("requests", &volume.spec.resources.requests),
            ("limits", &volume.spec.resources.limits),
        ] {
            for (name, text) in list {
                let at = path.child("resources").child(field).key(name);
                if name != "storage" {
                    problems.add(&at, "only storage can be requested for a volume");
                } else if field == "limits" {
                    quantity(text, &at, problems);
                }
            }
        }
        if let Some(class) = &volume.spec.storage_class_name {
            problems.check(
                class.is_empty() || crate::labels::is_dns_subdomain(class),
                &path.child("storageClassName"),
                "must be a DNS subdomain",
            );
        }
    })
}

/// As Kubernetes: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
fn data_key(key: &str, path: &FieldPath, problems: &mut Problems) {
    let valid = !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    problems.check(
        valid,
        path,
        "a key must be at most 253 letters, digits, '-', '_' or '.', and not '.' or '..'",
    );
}

fn decoded(value: &str, path: &FieldPath, problems: &mut Problems) -> Option<Vec<u8>> {
    match base64::engine::general_purpose::STANDARD.decode(value) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            problems.add(path, format!("is not valid base64: {error}"));
            None
        }
    }
}

fn too_large(total: usize, path: &FieldPath, problems: &mut Problems) {
    problems.check(
        total <= MAX_DATA_BYTES,
        path,
        format!("the data takes {total} bytes; at most {MAX_DATA_BYTES} are allowed"),
    );
}
