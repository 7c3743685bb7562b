//! Deployments and ReplicaSets: selector against template, counts, and the
//! rollout strategy.

use super::pod::pod_spec;
use super::{NameRule, collect, label_map, non_negative, object_meta, workload_selector};
use crate::objects::field::{FieldError, FieldPath, Problems};
use crate::objects::meta::IntOrString;
use crate::objects::pod::PodTemplateSpec;
use crate::objects::workloads::{Deployment, DeploymentStrategyType, ReplicaSet, parse_percentage};

/// A Deployment.
pub fn deployment(deployment: &Deployment) -> Vec<FieldError> {
    collect(|problems| {
        object_meta(&deployment.metadata, NameRule::Subdomain, problems);
        let spec = &deployment.spec;
        let path = FieldPath::new("spec");
        non_negative(spec.replicas, &path.child("replicas"), problems);
        non_negative(
            spec.revision_history_limit,
            &path.child("revisionHistoryLimit"),
            problems,
        );
        non_negative(
            spec.min_ready_seconds,
            &path.child("minReadySeconds"),
            problems,
        );
        if let Some(deadline) = spec.progress_deadline_seconds {
            let min_ready = spec.min_ready_seconds.unwrap_or(0);
            problems.check(
                deadline > min_ready,
                &path.child("progressDeadlineSeconds"),
                format!("must be greater than minReadySeconds ({deadline} <= {min_ready})"),
            );
        }
        template(spec.selector.as_ref(), &spec.template, &path, problems);
        if let Some(strategy) = &spec.strategy {
            let at = path.child("strategy");
            let rolling_path = at.child("rollingUpdate");
            match (strategy.type_.unwrap_or_default(), &strategy.rolling_update) {
                (DeploymentStrategyType::Recreate, Some(_)) => problems.add(
                    &rolling_path,
                    "may not be specified when strategy type is Recreate",
                ),
                (DeploymentStrategyType::RollingUpdate, Some(rolling)) => {
                    let surge = rolling
                        .max_surge
                        .as_ref()
                        .map(|v| budget(v, &rolling_path.child("maxSurge"), false, problems));
                    let unavailable = rolling
                        .max_unavailable
                        .as_ref()
                        .map(|v| budget(v, &rolling_path.child("maxUnavailable"), true, problems));
                    if surge == Some(Some(0)) && unavailable == Some(Some(0)) {
                        problems.add(
                            &rolling_path.child("maxUnavailable"),
                            "may not be 0 when maxSurge is 0: the rollout could never make progress",
                        );
                    }
                }
                (_, None) => {}
            }
        }
    })
}

/// A ReplicaSet.
pub fn replica_set(replica_set: &ReplicaSet) -> Vec<FieldError> {
    collect(|problems| {
        object_meta(&replica_set.metadata, NameRule::Subdomain, problems);
        let spec = &replica_set.spec;
        let path = FieldPath::new("spec");
        non_negative(spec.replicas, &path.child("replicas"), problems);
        non_negative(
            spec.min_ready_seconds,
            &path.child("minReadySeconds"),
            problems,
        );
        template(spec.selector.as_ref(), &spec.template, &path, problems);
    })
}

/// The selector, and the template it must match.
fn template(
    selector: Option<&crate::objects::meta::LabelSelector>,
    template: &PodTemplateSpec,
    spec_path: &FieldPath,
    problems: &mut Problems,
) {
    let template_path = spec_path.child("template");
    let meta_path = template_path.child("metadata");
    label_map(
        &template.metadata.labels,
        &meta_path.child("labels"),
        problems,
    );
    workload_selector(
        selector,
        &template.metadata.labels,
        &spec_path.child("selector"),
        &meta_path.child("labels"),
        problems,
    );
    pod_spec(&template.spec, &template_path.child("spec"), true, problems);
}

/// A rollout budget: a non-negative count or a percentage (at most 100%
/// for `maxUnavailable`). Answers the value when it is an absolute count or
/// a percentage, so that "both zero" can be seen.
fn budget(
    value: &IntOrString,
    path: &FieldPath,
    at_most_all: bool,
    problems: &mut Problems,
) -> Option<i32> {
    match value {
        IntOrString::Int(n) if *n < 0 => {
            problems.add(path, format!("{n} must not be negative"));
            None
        }
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(text) => match parse_percentage(text) {
            Ok(percent) if at_most_all && percent > 100 => {
                problems.add(path, format!("{text} must not be more than 100%"));
                None
            }
            Ok(percent) => Some(percent),
            Err(reason) => {
                problems.add(path, reason);
                None
            }
        },
    }
}
