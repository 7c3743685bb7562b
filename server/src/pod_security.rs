//! Pod Security admission: every Pod, Deployment and ReplicaSet written
//! through [`Objects`] is checked against its tenant's level with
//! [`berth_api::pod_security`], and refused whole when it fails. Raising a
//! tenant's level leaves running workloads alone and reports those that
//! fail the new level, in the answer and as Warning events, as Kubernetes'
//! `warn` and `audit` modes do.
//!
//! Controllers create pods from templates that were admitted when they were
//! written, through their own fenced writer, so they are not checked again
//! here; the agent checks every pod once more before it runs it.

use berth_api::labels::Selector;
use berth_api::objects::Kind;
use berth_api::pod_security::{self, CHECKED_KINDS, Level, Violation};
use serde_json::Value;

use crate::events::{EventRecorder, EventType, Involved};
use crate::objects::{ObjectError, ObjectResult, Objects, SecretValues};
use crate::store::{Store, StoreError};

/// The reason of the Warning event a workload that fails its tenant's new
/// level gets.
pub const VIOLATION_EVENT_REASON: &str = "PodSecurityViolation";

/// The Pod Security level of `tenant`; the default level when the tenant
/// has no row (objects the platform admin writes outside any tenant).
pub async fn tenant_level(store: &Store, tenant: &str) -> Result<Level, StoreError> {
    match store.tenant(tenant).await? {
        None => Ok(Level::default()),
        Some(row) => Level::parse(&row.pod_security)
            .map_err(|error| StoreError::Database(format!("tenant {tenant}: {error}"))),
    }
}

/// The part of an object of `kind` the checks read: a Pod's spec and
/// annotations, a workload's pod template. An update that leaves it as it
/// was is not checked again, so a workload admitted under a lower level
/// can still be scaled, relabelled or deleted with finalizers.
pub fn checked_part(kind: Kind, object: &Value) -> Value {
    match kind {
        Kind::Pod => serde_json::json!([object["spec"], object["metadata"]["annotations"]]),
        _ => object["spec"]["template"].clone(),
    }
}

/// Admits `object` (of `kind`, named `name`) under `level`, or refuses it
/// with every violation.
pub fn admit(level: Level, kind: Kind, name: &str, object: &Value) -> ObjectResult<()> {
    let violations =
        pod_security::check_object(level, kind, object).map_err(|errors| ObjectError::Invalid {
            kind: kind.name().to_owned(),
            errors,
        })?;
    if violations.is_empty() {
        return Ok(());
    }
    Err(ObjectError::Forbidden {
        kind,
        name: name.to_owned(),
        level,
        violations,
    })
}

/// A workload that fails a tenant's new level.
#[derive(Clone, Debug)]
pub struct ViolatingWorkload {
    /// Pod, Deployment or ReplicaSet.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// Why, check by check.
    pub violations: Vec<Violation>,
}

/// Sets `tenant`'s level and answers the workloads that fail it, each of
/// which gets a Warning event from `events`. Nothing is deleted or
/// stopped. `NotFound` (as a store error) when there is no such tenant.
#[tracing::instrument(skip_all, fields(tenant, level = level.name()))]
pub async fn set_level(
    objects: &Objects,
    events: &EventRecorder,
    tenant: &str,
    level: Level,
) -> ObjectResult<Vec<ViolatingWorkload>> {
    objects
        .store()
        .set_tenant_pod_security(tenant, level.name())
        .await?;
    let mut violating = Vec::new();
    for kind in CHECKED_KINDS {
        let page = objects
            .list(
                kind,
                Some(tenant),
                &Selector::default(),
                0,
                None,
                SecretValues::Redact,
            )
            .await?;
        for object in page.items {
            // A stored object that no longer reads (an older schema) is
            // not this check's to report.
            let Ok(violations) = pod_security::check_object(level, kind, &object) else {
                continue;
            };
            if violations.is_empty() {
                continue;
            }
            let involved = Involved {
                kind: kind.name().to_owned(),
                tenant: tenant.to_owned(),
                name: object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                uid: object["metadata"]["uid"].as_str().map(str::to_owned),
            };
            let message = pod_security::warning(level, &violations);
            if let Err(error) = events
                .record(
                    &involved,
                    EventType::Warning,
                    VIOLATION_EVENT_REASON,
                    &message,
                )
                .await
            {
                tracing::warn!(object = %involved.name, %error, "recording a Pod Security event failed");
            }
            violating.push(ViolatingWorkload {
                kind,
                name: involved.name,
                violations,
            });
        }
    }
    Ok(violating)
}
