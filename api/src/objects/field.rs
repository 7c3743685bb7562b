//! Field paths written the way Kubernetes writes them
//! (`spec.template.spec.containers[0].ports[1].containerPort`,
//! `metadata.labels[app.kubernetes.io/name]`) and the errors that carry them.

use serde::Serialize;
use utoipa::ToSchema;

/// One problem with one field of an object; the API's error envelope lists
/// them under `details`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Where: `spec.template.spec.containers[0].image`.
    pub field: String,
    /// What is wrong, for a human.
    pub reason: String,
}

impl FieldError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// A path being built while walking an object.
#[derive(Clone, Debug)]
pub(crate) struct FieldPath(String);

impl FieldPath {
    /// A top-level field.
    pub(crate) fn new(name: &str) -> Self {
        FieldPath(name.to_owned())
    }

    /// A field of a struct.
    pub(crate) fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            FieldPath::new(name)
        } else {
            FieldPath(format!("{}.{name}", self.0))
        }
    }

    /// An element of a list.
    pub(crate) fn index(&self, index: usize) -> Self {
        FieldPath(format!("{}[{index}]", self.0))
    }

    /// An entry of a map.
    pub(crate) fn key(&self, key: &str) -> Self {
        FieldPath(format!("{}[{key}]", self.0))
    }

    /// The path as text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Collects every problem of one object, so that a user fixes them all in
/// one round.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<FieldError>);

impl Problems {
    /// Records a problem.
    pub(crate) fn add(&mut self, path: &FieldPath, reason: impl Into<String>) {
        self.0.push(FieldError::new(path.as_str(), reason));
    }

    /// Records a problem unless `ok`.
    pub(crate) fn check(&mut self, ok: bool, path: &FieldPath, reason: impl Into<String>) {
        if !ok {
            self.add(path, reason);
        }
    }

    /// The problems found.
    pub(crate) fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}
