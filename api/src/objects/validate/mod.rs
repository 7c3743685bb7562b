//! Validation of every kind: each function walks one object and reports
//! every problem with its field path, all at once. Runs after defaults, so
//! it sees what will be stored.

mod cluster;
mod config;
mod pod;
mod security_context;
mod service;
mod workloads;

use std::collections::BTreeMap;

use super::field::{FieldError, FieldPath, Problems};
use super::meta::{IntOrString, LabelSelector, ObjectMeta};
use crate::labels;
use crate::quantity::Quantity;

pub use cluster::{event, horizontal_pod_autoscaler, node};
pub use config::{config_map, secret, volume};
pub use pod::pod;
pub use service::{endpoint_slice, service};
pub use workloads::{deployment, replica_set};

/// The most a name may have (a DNS subdomain).
const MAX_NAME_LENGTH: usize = 253;
/// The most all annotations of one object may take together.
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Which rule an object's name follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// Dot-separated DNS labels, ≤ 253 characters (most kinds).
    Subdomain,
    /// One DNS label, ≤ 63 characters (Services, whose names are host names).
    Label,
}

/// `metadata`: the name, labels, annotations and owner references.
pub(crate) fn object_meta(meta: &ObjectMeta, rule: NameRule, problems: &mut Problems) {
    let path = FieldPath::new("metadata");
    if meta.name.is_empty() {
        match &meta.generate_name {
            Some(prefix) if !prefix.is_empty() => {
                // The server appends five characters; the result must be a name.
                let example = format!("{prefix}abcde");
                problems.check(
                    name_is_valid(&example, rule),
                    &path.child("generateName"),
                    name_reason(rule),
                );
            }
            _ => problems.add(&path.child("name"), "required"),
        }
    } else {
        problems.check(
            name_is_valid(&meta.name, rule),
            &path.child("name"),
            name_reason(rule),
        );
    }
    if let Some(tenant) = &meta.tenant {
        problems.check(
            labels::is_dns_label(tenant),
            &path.child("tenant"),
            name_reason(NameRule::Label),
        );
    }
    label_map(&meta.labels, &path.child("labels"), problems);
    annotations(&meta.annotations, &path.child("annotations"), problems);
    let owners = path.child("ownerReferences");
    let mut controllers = 0;
    for (i, owner) in meta.owner_references.iter().enumerate() {
        let at = owners.index(i);
        for (field, value) in [
            ("apiVersion", &owner.api_version),
            ("kind", &owner.kind),
            ("name", &owner.name),
            ("uid", &owner.uid),
        ] {
            problems.check(!value.is_empty(), &at.child(field), "required");
        }
        if owner.controller == Some(true) {
            controllers += 1;
        }
    }
    problems.check(
        controllers <= 1,
        &owners,
        "only one owner reference may be the controller",
    );
}

fn name_is_valid(name: &str, rule: NameRule) -> bool {
    match rule {
        NameRule::Subdomain => name.len() <= MAX_NAME_LENGTH && labels::is_dns_subdomain(name),
        NameRule::Label => labels::is_dns_label(name),
    }
}

fn name_reason(rule: NameRule) -> &'static str {
    match rule {
        NameRule::Subdomain => {
            "must be a DNS subdomain: at most 253 lower-case letters, digits, '-' or '.', starting and ending with a letter or digit"
        }
        NameRule::Label => {
            "must be a DNS label: at most 63 lower-case letters, digits or '-', starting and ending with a letter or digit"
        }
    }
}

/// A map of labels (object labels, node selectors, service selectors).
pub(crate) fn label_map(map: &BTreeMap<String, String>, path: &FieldPath, problems: &mut Problems) {
    for (key, value) in map {
        let at = path.key(key);
        if let Err(reason) = labels::validate_key(key) {
            problems.add(&at, reason);
        }
        if let Err(reason) = labels::validate_value(value) {
            problems.add(&at, reason);
        }
    }
}

fn annotations(map: &BTreeMap<String, String>, path: &FieldPath, problems: &mut Problems) {
    let mut total = 0;
    for (key, value) in map {
        if let Err(reason) = labels::validate_key(key) {
            problems.add(
                &path.key(key),
                reason.replace("label key", "annotation key"),
            );
        }
        total += key.len() + value.len();
    }
    problems.check(
        total <= MAX_ANNOTATIONS_BYTES,
        path,
        format!("annotations take {total} bytes; at most {MAX_ANNOTATIONS_BYTES} are allowed"),
    );
}

/// A structured selector that must select something and match `labels`.
pub(crate) fn workload_selector(
    selector: Option<&LabelSelector>,
    template_labels: &BTreeMap<String, String>,
    selector_path: &FieldPath,
    labels_path: &FieldPath,
    problems: &mut Problems,
) {
    let Some(selector) = selector else {
        problems.add(selector_path, "required");
        return;
    };
    if selector.is_empty() {
        problems.add(
            selector_path,
            "must not be empty: an empty selector would adopt every pod",
        );
        return;
    }
    match selector.to_selector() {
        Ok(parsed) => problems.check(
            parsed.matches(template_labels),
            labels_path,
            format!("selector does not match template labels (selector: {parsed})"),
        ),
        Err(error) => problems.add(selector_path, error.reason),
    }
}

/// A port number, 1–65535.
pub(crate) fn port_number(port: i32, path: &FieldPath, problems: &mut Problems) {
    problems.check(
        (1..=65535).contains(&port),
        path,
        format!("{port} is not a port: must be between 1 and 65535"),
    );
}

/// A port given as a number or as the name of a container port.
pub(crate) fn port_reference(port: &IntOrString, path: &FieldPath, problems: &mut Problems) {
    match port {
        IntOrString::Int(n) => port_number(*n, path, problems),
        IntOrString::String(name) => problems.check(
            is_port_name(name),
            path,
            format!("{name:?} is neither a port number nor a port name {PORT_NAME_RULE}"),
        ),
    }
}

/// What [`is_port_name`] accepts, for messages.
pub(crate) const PORT_NAME_RULE: &str = "(at most 15 lower-case letters, digits or '-', with at least one letter, not starting or ending with '-', no \"--\")";

/// An IANA service name, as Kubernetes requires of port names.
pub(crate) fn is_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// A quantity; `None` (after recording why) when it does not parse.
pub(crate) fn quantity(text: &str, path: &FieldPath, problems: &mut Problems) -> Option<Quantity> {
    match Quantity::parse(text) {
        Ok(q) => Some(q),
        Err(error) => {
            problems.add(path, error.to_string());
            None
        }
    }
}

/// A number that must not be negative, when given.
pub(crate) fn non_negative<T>(value: Option<T>, path: &FieldPath, problems: &mut Problems)
where
    T: Into<i64> + Copy,
{
    if let Some(value) = value {
        let value: i64 = value.into();
        problems.check(value >= 0, path, format!("{value} must not be negative"));
    }
}

/// A number that must be at least 1, when given.
pub(crate) fn positive<T>(value: Option<T>, path: &FieldPath, problems: &mut Problems)
where
    T: Into<i64> + Copy,
{
    if let Some(value) = value {
        let value: i64 = value.into();
        problems.check(value >= 1, path, format!("{value} must be at least 1"));
    }
}

/// Runs one kind's validation and hands back what it found.
pub(crate) fn collect(run: impl FnOnce(&mut Problems)) -> Vec<FieldError> {
    let mut problems = Problems::default();
    run(&mut problems);
    problems.into_vec()
}
