//! A Deployment's rollout history as the API shows it: its revisions (one
//! per ReplicaSet it owns) and the request to roll back to one of them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::decode::from_value;
use super::field::FieldError;
use super::pod::PodTemplateSpec;

/// `POST .../deployments/{name}/rollback`'s body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct RollbackRequest {
    /// The revision to go back to; absent or 0: the one before the current.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub revision: Option<i64>,
}

impl RollbackRequest {
    /// Reads a body strictly (unknown fields and wrong types are errors
    /// with their paths): the revision asked for, `None` for the previous
    /// one.
    pub fn decode(value: Value) -> Result<Option<i64>, Vec<FieldError>> {
        let request: RollbackRequest = from_value(value)?;
        match request.revision {
            Some(revision) if revision < 0 => Err(vec![FieldError::new(
                "revision",
                format!("{revision} is negative; name a revision, or 0 for the previous one"),
            )]),
            Some(0) | None => Ok(None),
            Some(revision) => Ok(Some(revision)),
        }
    }
}

/// One revision of a Deployment: a ReplicaSet it owns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRevision {
    /// The revision (the ReplicaSet's `deployment.kubernetes.io/revision`).
    pub revision: i64,
    /// The ReplicaSet's name.
    pub replica_set: String,
    /// When the ReplicaSet was created (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// How many pods the ReplicaSet is asked to run now.
    pub replicas: i32,
    /// How many of its pods are available.
    pub available_replicas: i32,
    /// Whether this is the Deployment's current template.
    pub current: bool,
    /// The pod template of this revision, as a rollback would restore it.
    pub template: PodTemplateSpec,
}

/// A Deployment's revisions, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentRevisionList {
    /// Ascending by revision.
    pub items: Vec<DeploymentRevision>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_rollback_without_a_revision_or_with_zero_goes_to_the_previous_one() {
        assert_eq!(RollbackRequest::decode(json!({})), Ok(None));
        assert_eq!(RollbackRequest::decode(json!({"revision": 0})), Ok(None));
        assert_eq!(RollbackRequest::decode(json!({"revision": 3})), Ok(Some(3)));
    }

    #[test]
    fn a_bad_rollback_request_names_the_field() {
        for body in [
            json!({"revision": -1}),
            json!({"revision": "two"}),
            json!({"revision": 1.5}),
        ] {
            let errors = RollbackRequest::decode(body.clone()).expect_err("refused");
            assert_eq!(errors.len(), 1, "{body}: {errors:?}");
            assert_eq!(errors[0].field, "revision", "{body}");
        }
        let errors = RollbackRequest::decode(json!({"rollbackTo": {"revision": 1}})).unwrap_err();
        assert_eq!(errors[0].field, "rollbackTo");
    }
}
