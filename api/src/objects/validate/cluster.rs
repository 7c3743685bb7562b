//! HorizontalPodAutoscalers, Events and Nodes.

use std::collections::BTreeSet;

use super::{NameRule, collect, non_negative, object_meta, quantity};
use crate::labels;
use crate::objects::autoscaling::{HorizontalPodAutoscaler, HpaScalingRules, MetricTargetType};
use crate::objects::event::Event;
use crate::objects::field::{FieldError, FieldPath, Problems};
use crate::objects::node::Node;

/// The longest stabilization window Kubernetes allows (one hour).
const MAX_STABILIZATION_WINDOW_SECONDS: i32 = 3600;
/// The longest scaling policy period Kubernetes allows (30 minutes).
const MAX_POLICY_PERIOD_SECONDS: i32 = 1800;

/// A HorizontalPodAutoscaler.
pub fn horizontal_pod_autoscaler(hpa: &HorizontalPodAutoscaler) -> Vec<FieldError> {
    collect(|problems| {
        object_meta(&hpa.metadata, NameRule::Subdomain, problems);
        let spec = &hpa.spec;
        let path = FieldPath::new("spec");
        let target = path.child("scaleTargetRef");
        problems.check(
            matches!(
                spec.scale_target_ref.kind.as_str(),
                "Deployment" | "ReplicaSet"
            ),
            &target.child("kind"),
            format!(
                "{:?} cannot be scaled: use Deployment or ReplicaSet",
                spec.scale_target_ref.kind
            ),
        );
        problems.check(
            !spec.scale_target_ref.name.is_empty(),
            &target.child("name"),
            "required",
        );
        let min = spec.min_replicas.unwrap_or(1);
        problems.check(
            min >= 1,
            &path.child("minReplicas"),
            format!("{min} must be at least 1"),
        );
        problems.check(
            spec.max_replicas >= 1 && spec.max_replicas >= min,
            &path.child("maxReplicas"),
            format!(
                "{} must be at least 1 and at least minReplicas ({min})",
                spec.max_replicas
            ),
        );
        for (i, metric) in spec.metrics.iter().enumerate() {
            let at = path.child("metrics").index(i);
            let Some(resource) = &metric.resource else {
                problems.add(&at.child("resource"), "required when type is Resource");
                continue;
            };
            let at = at.child("resource");
            problems.check(
                matches!(resource.name.as_str(), "cpu" | "memory"),
                &at.child("name"),
                format!(
                    "{:?} is not a metric Berth measures: use cpu or memory",
                    resource.name
                ),
            );
            let target = at.child("target");
            match resource.target.type_ {
                MetricTargetType::Utilization => match resource.target.average_utilization {
                    None => problems.add(
                        &target.child("averageUtilization"),
                        "required when target type is Utilization",
                    ),
                    Some(n) => problems.check(
                        n >= 1,
                        &target.child("averageUtilization"),
                        format!("{n} must be at least 1"),
                    ),
                },
                MetricTargetType::AverageValue => match &resource.target.average_value {
                    None => problems.add(
                        &target.child("averageValue"),
                        "required when target type is AverageValue",
                    ),
                    Some(text) => {
                        if let Some(q) = quantity(text, &target.child("averageValue"), problems) {
                            problems.check(
                                q.nano_value() > 0,
                                &target.child("averageValue"),
                                "must be greater than zero",
                            );
                        }
                    }
                },
            }
        }
        if let Some(behavior) = &spec.behavior {
            let at = path.child("behavior");
            for (field, rules) in [
                ("scaleUp", &behavior.scale_up),
                ("scaleDown", &behavior.scale_down),
            ] {
                if let Some(rules) = rules {
                    scaling_rules(rules, &at.child(field), problems);
                }
            }
        }
    })
}

fn scaling_rules(rules: &HpaScalingRules, path: &FieldPath, problems: &mut Problems) {
    if let Some(window) = rules.stabilization_window_seconds {
        problems.check(
            (0..=MAX_STABILIZATION_WINDOW_SECONDS).contains(&window),
            &path.child("stabilizationWindowSeconds"),
            format!("{window} must be between 0 and {MAX_STABILIZATION_WINDOW_SECONDS}"),
        );
    }
    for (i, policy) in rules.policies.iter().enumerate() {
        let at = path.child("policies").index(i);
        problems.check(
            policy.value >= 1,
            &at.child("value"),
            format!("{} must be at least 1", policy.value),
        );
        problems.check(
            (1..=MAX_POLICY_PERIOD_SECONDS).contains(&policy.period_seconds),
            &at.child("periodSeconds"),
            format!(
                "{} must be between 1 and {MAX_POLICY_PERIOD_SECONDS}",
                policy.period_seconds
            ),
        );
    }
}

/// An Event.
pub fn event(event: &Event) -> Vec<FieldError> {
    collect(|problems| {
        object_meta(&event.metadata, NameRule::Subdomain, problems);
        let involved = FieldPath::new("involvedObject");
        problems.check(
            !event.involved_object.kind.is_empty(),
            &involved.child("kind"),
            "required",
        );
        problems.check(
            !event.involved_object.name.is_empty(),
            &involved.child("name"),
            "required",
        );
        non_negative(event.count, &FieldPath::new("count"), problems);
    })
}

/// A Node.
pub fn node(node: &Node) -> Vec<FieldError> {
    collect(|problems| {
        object_meta(&node.metadata, NameRule::Subdomain, problems);
        let taints = FieldPath::new("spec").child("taints");
        let mut seen = BTreeSet::new();
        for (i, taint) in node.spec.taints.iter().enumerate() {
            let at = taints.index(i);
            if let Err(reason) = labels::validate_key(&taint.key) {
                problems.add(&at.child("key"), reason);
            }
            if let Some(value) = &taint.value
                && let Err(reason) = labels::validate_value(value)
            {
                problems.add(&at.child("value"), reason);
            }
            match taint.effect {
                None => problems.add(&at.child("effect"), "required"),
                Some(effect) => problems.check(
                    seen.insert((taint.key.as_str(), effect)),
                    &at,
                    format!(
                        "a taint with key {:?} and effect {effect:?} is given twice",
                        taint.key
                    ),
                ),
            }
        }
    })
}
