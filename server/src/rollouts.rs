//! Scaling and rolling back workloads, between the REST routes and
//! [`Objects`]: the scale subresource of Deployments and ReplicaSets, a
//! Deployment's revisions (the ReplicaSets it owns), and rollback to one of
//! them. Every change is an ordinary write through [`Objects`], so
//! generation, resourceVersion and preconditions behave as for a PATCH,
//! and the Deployment controller carries the change out as for any other.

use std::sync::Arc;

use berth_api::objects::rollout::{DeploymentRevision, DeploymentRevisionList};
use berth_api::objects::scale::{Scale, ScaleChange};
use berth_api::objects::{Deployment, Kind, ReplicaSet, from_value};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::controllers::deployment::{
    POD_TEMPLATE_HASH_LABEL, RollbackError, revision_of, rollback_template, template_hash,
};
use crate::objects::{ObjectError, ObjectRef, Objects, Outcome, SecretValues};

/// How often a rollback is tried again when the Deployment changed between
/// reading it and writing it (its status changes often during a rollout).
const ROLLBACK_ATTEMPTS: usize = 16;

/// Why scaling, listing revisions or rolling back failed.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// Reading or writing the object failed (not found, invalid, stale…).
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// The object has another uid than the request's precondition.
    #[error(
        "{kind} {name:?} has uid {actual}, not {expected}: it was deleted and made again; read it again"
    )]
    UidMismatch {
        /// The kind.
        kind: &'static str,
        /// The name.
        name: String,
        /// The uid the request named.
        expected: String,
        /// The object's uid.
        actual: String,
    },
    /// No ReplicaSet of the Deployment has that revision.
    #[error("revision {revision} of deployment {deployment:?} does not exist")]
    RevisionNotFound {
        /// The Deployment.
        deployment: String,
        /// The revision asked for.
        revision: i64,
    },
    /// The Deployment has one revision or none.
    #[error("deployment {deployment:?} has no previous revision to roll back to")]
    NoPreviousRevision {
        /// The Deployment.
        deployment: String,
    },
    /// A paused Deployment does not roll out, so it is not rolled back.
    #[error(
        "deployment {deployment:?} is paused; resume it (spec.paused: false) before rolling back"
    )]
    Paused {
        /// The Deployment.
        deployment: String,
    },
    /// A stored object does not read as its kind.
    #[error("the stored {kind} {name:?} cannot be read: {reason}")]
    Unreadable {
        /// The kind.
        kind: &'static str,
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// Shorthand.
pub type RolloutResult<T> = Result<T, RolloutError>;

/// The scale of the Deployment or ReplicaSet at `at`.
#[tracing::instrument(skip_all, fields(kind = at.kind.name(), name = at.name))]
pub async fn scale(objects: &Objects, at: &ObjectRef) -> RolloutResult<Scale> {
    let object = objects.get(at, SecretValues::Redact).await?;
    scale_of(at, object)
}

/// Sets `spec.replicas` of the Deployment or ReplicaSet at `at`, under the
/// change's preconditions; answers the new scale.
#[tracing::instrument(skip_all, fields(kind = at.kind.name(), name = at.name, replicas = change.replicas))]
pub async fn set_scale(
    objects: &Objects,
    at: &ObjectRef,
    change: ScaleChange,
) -> RolloutResult<(Scale, Outcome)> {
    if let Some(expected) = change.uid {
        let current = objects.get(at, SecretValues::Redact).await?;
        let actual = current["metadata"]["uid"].as_str().unwrap_or_default();
        if actual != expected {
            return Err(RolloutError::UidMismatch {
                kind: at.kind.name(),
                name: at.name.clone(),
                expected,
                actual: actual.to_owned(),
            });
        }
    }
    let mut patch = json!({"spec": {"replicas": change.replicas}});
    if let Some(resource_version) = change.resource_version {
        patch["metadata"] = json!({"resourceVersion": resource_version});
    }
    let (object, outcome) = objects.patch(at, patch, SecretValues::Redact).await?;
    Ok((scale_of(at, object)?, outcome))
}

/// The revisions of the Deployment at `at`, oldest first.
#[tracing::instrument(skip_all, fields(name = at.name))]
pub async fn revisions(objects: &Objects, at: &ObjectRef) -> RolloutResult<DeploymentRevisionList> {
    let deployment: Deployment = typed(at, objects.get(at, SecretValues::Redact).await?)?;
    let current = template_hash(&deployment.spec.template);
    let mut items: Vec<DeploymentRevision> = owned_replica_sets(objects, at, &deployment)
        .await?
        .iter()
        .map(|replica_set| {
            let mut template = replica_set.spec.template.clone();
            template.metadata.labels.remove(POD_TEMPLATE_HASH_LABEL);
            DeploymentRevision {
                revision: revision_of(replica_set),
                replica_set: replica_set.metadata.name.clone(),
                created_at: replica_set.metadata.creation_timestamp.clone(),
                replicas: replica_set.spec.replicas(),
                available_replicas: replica_set
                    .status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .unwrap_or(0),
                current: template_hash(&replica_set.spec.template) == current,
                template,
            }
        })
        .collect();
    items.sort_by(|a, b| (a.revision, &a.replica_set).cmp(&(b.revision, &b.replica_set)));
    Ok(DeploymentRevisionList { items })
}

/// Writes the template of `revision` (`None`: the one before the current)
/// into the Deployment at `at`, which starts a rollout back to it; the
/// controller revives that revision's ReplicaSet as the newest revision.
/// An unknown revision, or no previous one, writes nothing.
#[tracing::instrument(skip_all, fields(name = at.name, revision))]
pub async fn rollback(
    objects: &Objects,
    at: &ObjectRef,
    revision: Option<i64>,
) -> RolloutResult<(Value, Outcome)> {
    for _ in 0..ROLLBACK_ATTEMPTS {
        let current = objects.get(at, SecretValues::Redact).await?;
        let resource_version = current["metadata"]["resourceVersion"].clone();
        let mut deployment: Deployment = typed(at, current)?;
        if deployment.spec.is_paused() {
            return Err(RolloutError::Paused {
                deployment: at.name.clone(),
            });
        }
        let owned = owned_replica_sets(objects, at, &deployment).await?;
        deployment.spec.template =
            rollback_template(&deployment, revision, &owned).map_err(|error| match error {
                RollbackError::NoPreviousRevision => RolloutError::NoPreviousRevision {
                    deployment: at.name.clone(),
                },
                RollbackError::RevisionNotFound(revision) => RolloutError::RevisionNotFound {
                    deployment: at.name.clone(),
                    revision,
                },
            })?;
        let value = serde_json::to_value(&deployment).map_err(|e| unreadable(at, e))?;
        let (_, mut decoded) = objects.decode(Some(Kind::Deployment), value)?;
        // The Deployment as it was read is the precondition: a change made
        // meanwhile is read again rather than overwritten.
        decoded["metadata"]["resourceVersion"] = resource_version;
        match objects.update(at, decoded, SecretValues::Redact).await {
            Err(ObjectError::Conflict(_)) => continue,
            other => return Ok(other?),
        }
    }
    Err(ObjectError::Conflict(format!(
        "deployment {:?} kept changing while it was rolled back; try again",
        at.name
    ))
    .into())
}

/// The ReplicaSets the Deployment controls (by the uid in their controller
/// reference), among those its selector selects.
async fn owned_replica_sets(
    objects: &Objects,
    at: &ObjectRef,
    deployment: &Deployment,
) -> RolloutResult<Vec<Arc<ReplicaSet>>> {
    // The controller labels its ReplicaSets with the template's labels,
    // which the selector matches; the uid decides.
    let selector = deployment
        .spec
        .selector
        .as_ref()
        .and_then(|s| s.to_selector().ok())
        .unwrap_or_default();
    let uid = deployment.metadata.uid.as_deref().unwrap_or_default();
    let page = objects
        .list(
            Kind::ReplicaSet,
            at.tenant.as_deref(),
            &selector,
            0,
            None,
            SecretValues::Redact,
        )
        .await?;
    let mut owned = Vec::new();
    for item in page.items {
        let name = item["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let replica_set: ReplicaSet = typed(
            &ObjectRef {
                kind: Kind::ReplicaSet,
                tenant: at.tenant.clone(),
                name,
            },
            item,
        )?;
        if replica_set
            .metadata
            .controller()
            .is_some_and(|owner| owner.uid == uid)
        {
            owned.push(Arc::new(replica_set));
        }
    }
    Ok(owned)
}

/// The scale of a stored Deployment or ReplicaSet.
fn scale_of(at: &ObjectRef, object: Value) -> RolloutResult<Scale> {
    match at.kind {
        Kind::ReplicaSet => Ok(Scale::of_replica_set(&typed(at, object)?)),
        _ => Ok(Scale::of_deployment(&typed(at, object)?)),
    }
}

/// A stored object as its type.
fn typed<T: DeserializeOwned>(at: &ObjectRef, object: Value) -> RolloutResult<T> {
    from_value(object).map_err(|errors| {
        unreadable(
            at,
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

fn unreadable(at: &ObjectRef, reason: impl ToString) -> RolloutError {
    RolloutError::Unreadable {
        kind: at.kind.name(),
        name: at.name.clone(),
        reason: reason.to_string(),
    }
}
