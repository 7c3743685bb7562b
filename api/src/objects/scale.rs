//! The scale subresource of Deployments and ReplicaSets: Kubernetes'
//! `autoscaling/v1` `Scale`, which shows and sets only `spec.replicas`
//! (and reports the pod count and the selector as a string, for tools
//! like autoscalers that do not know the owner's kind).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::decode::from_value;
use super::field::FieldError;
use super::meta::{LabelSelector, ObjectMeta};
use super::workloads::{Deployment, ReplicaSet};
use crate::labels::Requirement;

/// The apiVersion of [`Scale`].
pub const SCALE_API_VERSION: &str = "autoscaling/v1";
/// The kind of [`Scale`].
pub const SCALE_KIND: &str = "Scale";

/// How many pods a Deployment or ReplicaSet asks for, and has.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct Scale {
    /// `autoscaling/v1`.
    pub api_version: String,
    /// `Scale`.
    pub kind: String,
    /// The owner's name, tenant, uid, resourceVersion and creation time. A
    /// `resourceVersion` (or `uid`) in a request is a precondition.
    pub metadata: ObjectMeta,
    /// The desired pod count.
    pub spec: ScaleSpec,
    /// The observed pod count; ignored in requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ScaleStatus>,
}

/// The desired pod count.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ScaleSpec {
    /// How many pods; required in a request.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub replicas: Option<i32>,
}

/// The observed pod count.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct ScaleStatus {
    /// How many pods exist now.
    pub replicas: i32,
    /// The owner's label selector in its string form (`app=web,tier=x`), as
    /// `?labelSelector=` takes it.
    pub selector: String,
}

/// What a request to change the scale asks for, once it has been read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleChange {
    /// The new `spec.replicas`.
    pub replicas: i32,
    /// Only if the owner is still at this resourceVersion.
    pub resource_version: Option<String>,
    /// Only if the owner has this uid.
    pub uid: Option<String>,
}

impl Scale {
    /// The scale of a Deployment.
    pub fn of_deployment(deployment: &Deployment) -> Scale {
        Scale::of(
            &deployment.metadata,
            deployment.spec.replicas(),
            deployment.status.as_ref().and_then(|s| s.replicas),
            deployment.spec.selector.as_ref(),
        )
    }

    /// The scale of a ReplicaSet.
    pub fn of_replica_set(replica_set: &ReplicaSet) -> Scale {
        Scale::of(
            &replica_set.metadata,
            replica_set.spec.replicas(),
            replica_set.status.as_ref().map(|s| s.replicas),
            replica_set.spec.selector.as_ref(),
        )
    }

    fn of(
        metadata: &ObjectMeta,
        replicas: i32,
        status_replicas: Option<i32>,
        selector: Option<&LabelSelector>,
    ) -> Scale {
        Scale {
            api_version: SCALE_API_VERSION.into(),
            kind: SCALE_KIND.into(),
            metadata: ObjectMeta {
                name: metadata.name.clone(),
                tenant: metadata.tenant.clone(),
                uid: metadata.uid.clone(),
                resource_version: metadata.resource_version.clone(),
                creation_timestamp: metadata.creation_timestamp.clone(),
                ..ObjectMeta::default()
            },
            spec: ScaleSpec {
                replicas: Some(replicas),
            },
            status: Some(ScaleStatus {
                replicas: status_replicas.unwrap_or(0),
                selector: selector.map(selector_string).unwrap_or_default(),
            }),
        }
    }
}

/// A structured selector in the string form Kubernetes prints
/// (`metav1.FormatLabelSelector`): requirements sorted by key,
/// `app=web,env in (prod,staging),!canary`. A selector that does not parse
/// (validation refuses those) prints as its match labels alone.
pub fn selector_string(selector: &LabelSelector) -> String {
    let mut parsed = match selector.to_selector() {
        Ok(parsed) => parsed,
        Err(_) => LabelSelector {
            match_labels: selector.match_labels.clone(),
            match_expressions: Vec::new(),
        }
        .to_selector()
        .unwrap_or_default(),
    };
    parsed.requirements.sort_by(|a, b| key_of(a).cmp(key_of(b)));
    parsed.to_string()
}

fn key_of(requirement: &Requirement) -> &str {
    match requirement {
        Requirement::Equals(key, _)
        | Requirement::NotEquals(key, _)
        | Requirement::In(key, _)
        | Requirement::NotIn(key, _)
        | Requirement::Exists(key)
        | Requirement::DoesNotExist(key) => key,
    }
}

/// Reads a request body as a change of scale for the object named `name`:
/// strictly (unknown fields and wrong types are errors with their paths),
/// `apiVersion` and `kind` as Kubernetes writes them when given,
/// `metadata.name` matching `name` when given, and `spec.replicas`
/// present and not negative. Every problem is reported at once.
pub fn decode_scale_change(name: &str, value: Value) -> Result<ScaleChange, Vec<FieldError>> {
    let scale: Scale = from_value(value)?;
    let mut errors = Vec::new();
    if !scale.api_version.is_empty() && scale.api_version != SCALE_API_VERSION {
        errors.push(FieldError::new(
            "apiVersion",
            format!(
                "{:?} is not the apiVersion of a Scale: use {SCALE_API_VERSION}",
                scale.api_version
            ),
        ));
    }
    if !scale.kind.is_empty() && scale.kind != SCALE_KIND {
        errors.push(FieldError::new(
            "kind",
            format!("is {:?}, but this endpoint takes {SCALE_KIND}", scale.kind),
        ));
    }
    if !scale.metadata.name.is_empty() && scale.metadata.name != name {
        errors.push(FieldError::new(
            "metadata.name",
            format!(
                "{:?} does not match the name in the path, {name:?}",
                scale.metadata.name
            ),
        ));
    }
    match scale.spec.replicas {
        None => errors.push(FieldError::new("spec.replicas", "required")),
        Some(replicas) if replicas < 0 => errors.push(FieldError::new(
            "spec.replicas",
            format!("{replicas} is negative; the pod count must be 0 or more"),
        )),
        Some(_) => {}
    }
    match (errors.is_empty(), scale.spec.replicas) {
        (true, Some(replicas)) => Ok(ScaleChange {
            replicas,
            resource_version: scale.metadata.resource_version.filter(|rv| !rv.is_empty()),
            uid: scale.metadata.uid.filter(|uid| !uid.is_empty()),
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::objects::meta::LabelSelectorRequirement;
    use crate::objects::workloads::{DeploymentStatus, ReplicaSetStatus};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_selector_prints_as_kubernetes_prints_it_sorted_by_key() {
        let selector = LabelSelector {
            match_labels: labels(&[("tier", "x"), ("app", "web")]),
            match_expressions: vec![
                LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "In".into(),
                    values: vec!["staging".into(), "prod".into()],
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: vec![],
                },
            ],
        };
        assert_eq!(
            selector_string(&selector),
            "app=web,!canary,env in (prod,staging),tier=x"
        );
        assert_eq!(
            selector_string(&LabelSelector {
                match_labels: labels(&[("app", "web"), ("tier", "x")]),
                match_expressions: vec![],
            }),
            "app=web,tier=x"
        );
        assert_eq!(selector_string(&LabelSelector::default()), "");
    }

    #[test]
    fn a_deployments_scale_has_its_replicas_pod_count_and_selector() {
        let mut deployment = Deployment::default();
        deployment.metadata.name = "web".into();
        deployment.metadata.tenant = Some("acme".into());
        deployment.metadata.uid = Some("u-1".into());
        deployment.metadata.resource_version = Some("42".into());
        deployment.metadata.generation = Some(3);
        deployment.metadata.labels = labels(&[("team", "a")]);
        deployment.spec.replicas = Some(5);
        deployment.spec.selector = Some(LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![],
        });
        deployment.status = Some(DeploymentStatus {
            replicas: Some(4),
            ..DeploymentStatus::default()
        });
        let scale = serde_json::to_value(Scale::of_deployment(&deployment)).unwrap();
        assert_eq!(
            scale,
            json!({
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {"name": "web", "tenant": "acme", "uid": "u-1", "resourceVersion": "42"},
                "spec": {"replicas": 5},
                "status": {"replicas": 4, "selector": "app=web"},
            })
        );
    }

    #[test]
    fn a_replica_set_without_status_or_replicas_scales_at_the_defaults() {
        let mut replica_set = ReplicaSet::default();
        replica_set.metadata.name = "web-abc".into();
        let scale = Scale::of_replica_set(&replica_set);
        assert_eq!(scale.spec.replicas, Some(1));
        assert_eq!(
            scale.status,
            Some(ScaleStatus {
                replicas: 0,
                selector: String::new()
            })
        );
        replica_set.status = Some(ReplicaSetStatus {
            replicas: 2,
            ..ReplicaSetStatus::default()
        });
        assert_eq!(
            Scale::of_replica_set(&replica_set).status.unwrap().replicas,
            2
        );
    }

    #[test]
    fn a_scale_change_keeps_its_preconditions_and_ignores_the_status() {
        let change = decode_scale_change(
            "web",
            json!({
                "apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": "web", "resourceVersion": "7", "uid": "u-1"},
                "spec": {"replicas": 0},
                "status": {"replicas": 3, "selector": "app=web"},
            }),
        )
        .unwrap();
        assert_eq!(
            change,
            ScaleChange {
                replicas: 0,
                resource_version: Some("7".into()),
                uid: Some("u-1".into()),
            }
        );
        let bare = decode_scale_change("web", json!({"spec": {"replicas": 2}})).unwrap();
        assert_eq!(bare.replicas, 2);
        assert_eq!(bare.resource_version, None);
    }

    fn fields(result: Result<ScaleChange, Vec<FieldError>>) -> Vec<String> {
        result
            .expect_err("the change is refused")
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_bad_scale_change_names_every_field_that_is_wrong() {
        assert_eq!(
            fields(decode_scale_change(
                "web",
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "api"}, "spec": {"replicas": -1}}),
            )),
            ["apiVersion", "kind", "metadata.name", "spec.replicas"]
        );
        assert_eq!(
            fields(decode_scale_change("web", json!({"spec": {}}))),
            ["spec.replicas"]
        );
        assert_eq!(
            fields(decode_scale_change(
                "web",
                json!({"spec": {"replicas": 1.5}})
            )),
            ["spec.replicas"]
        );
        assert_eq!(
            fields(decode_scale_change(
                "web",
                json!({"spec": {"replicas": "3"}})
            )),
            ["spec.replicas"]
        );
        assert_eq!(
            fields(decode_scale_change(
                "web",
                json!({"spec": {"replicas": 3, "paused": true}, "colour": "blue"})
            )),
            ["colour", "spec.paused"]
        );
    }
}
