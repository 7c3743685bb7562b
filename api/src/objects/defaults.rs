//! The one place that knows each default value. Decoding applies them before
//! validation, so stored objects spell out what they get; controllers read
//! the constants instead of repeating the numbers.

use super::autoscaling::{
    HorizontalPodAutoscaler, MetricSourceType, MetricSpec, MetricTarget, MetricTargetType,
    ResourceMetricSource,
};
use super::config::Secret;
use super::meta::IntOrString;
use super::pod::{Container, DnsPolicy, PodSpec, Probe, Protocol, PullPolicy, RestartPolicy};
use super::service::{Service, ServiceType, SessionAffinity};
use super::storage::{AccessMode, Volume, VolumeMode};
use super::workloads::{
    Deployment, DeploymentStrategy, DeploymentStrategyType, ReplicaSet, RollingUpdateDeployment,
};

/// Replicas of a Deployment or ReplicaSet that does not say.
pub const DEFAULT_REPLICAS: i32 = 1;
/// Old ReplicaSets a Deployment keeps for rollback.
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
/// Seconds without progress before a rollout counts as failed.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// Seconds a new pod must be ready before it counts as available.
pub const DEFAULT_MIN_READY_SECONDS: i32 = 0;
/// Pods a rolling update may add above `replicas`.
pub const DEFAULT_MAX_SURGE: &str = "25%";
/// Pods a rolling update may take below `replicas`.
pub const DEFAULT_MAX_UNAVAILABLE: &str = "25%";
/// Seconds between SIGTERM and SIGKILL.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// Seconds between probe runs.
pub const DEFAULT_PROBE_PERIOD_SECONDS: i32 = 10;
/// Seconds a probe run may take.
pub const DEFAULT_PROBE_TIMEOUT_SECONDS: i32 = 1;
/// Successes in a row that make a probe pass again.
pub const DEFAULT_PROBE_SUCCESS_THRESHOLD: i32 = 1;
/// Failures in a row that make a probe fail.
pub const DEFAULT_PROBE_FAILURE_THRESHOLD: i32 = 3;
/// Seconds after a container's start before its first probe.
pub const DEFAULT_PROBE_INITIAL_DELAY_SECONDS: i32 = 0;
/// The fewest replicas an autoscaler keeps.
pub const DEFAULT_HPA_MIN_REPLICAS: i32 = 1;
/// The CPU utilization an autoscaler without metrics holds (percent).
pub const DEFAULT_HPA_CPU_UTILIZATION: i32 = 80;
/// The type of a Secret that does not say.
pub const DEFAULT_SECRET_TYPE: &str = "Opaque";

/// Deployment: replicas, strategy and its budgets, history, deadlines, and
/// the pod template's defaults.
pub fn deployment(deployment: &mut Deployment) {
    let spec = &mut deployment.spec;
    spec.replicas.get_or_insert(DEFAULT_REPLICAS);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    let strategy_type = *strategy
        .type_
        .get_or_insert(DeploymentStrategyType::RollingUpdate);
    // A Recreate strategy keeps whatever rollingUpdate was written, so that
    // validation can refuse it rather than it vanishing silently.
    if strategy_type == DeploymentStrategyType::RollingUpdate {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        rolling
            .max_surge
            .get_or_insert_with(|| IntOrString::String(DEFAULT_MAX_SURGE.to_owned()));
        rolling
            .max_unavailable
            .get_or_insert_with(|| IntOrString::String(DEFAULT_MAX_UNAVAILABLE.to_owned()));
    }
    spec.revision_history_limit
        .get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
    spec.progress_deadline_seconds
        .get_or_insert(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    spec.min_ready_seconds
        .get_or_insert(DEFAULT_MIN_READY_SECONDS);
    pod_spec(&mut spec.template.spec);
}

/// ReplicaSet: replicas and the pod template's defaults.
pub fn replica_set(replica_set: &mut ReplicaSet) {
    replica_set.spec.replicas.get_or_insert(DEFAULT_REPLICAS);
    pod_spec(&mut replica_set.spec.template.spec);
}

/// A pod spec: restart policy, grace period, DNS policy, and each
/// container's defaults.
pub fn pod_spec(spec: &mut PodSpec) {
    spec.restart_policy.get_or_insert(RestartPolicy::Always);
    spec.termination_grace_period_seconds
        .get_or_insert(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS);
    spec.dns_policy.get_or_insert(DnsPolicy::ClusterFirst);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut())
    {
        container(c);
    }
}

/// A container: pull policy, port protocols, probe timings.
pub fn container(container: &mut Container) {
    if container.image_pull_policy.is_none() {
        container.image_pull_policy = Some(default_pull_policy(&container.image));
    }
    for port in &mut container.ports {
        port.protocol.get_or_insert(Protocol::Tcp);
    }
    for probe in [
        &mut container.liveness_probe,
        &mut container.readiness_probe,
        &mut container.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        self::probe(probe);
    }
}

/// As Kubernetes: `Always` for `:latest` or an untagged image (which means
/// latest), otherwise `IfNotPresent`. A digest pins the image, so it is
/// never re-pulled.
pub fn default_pull_policy(image: &str) -> PullPolicy {
    if image.contains('@') {
        return PullPolicy::IfNotPresent;
    }
    // A ':' before the last '/' belongs to a registry port, not a tag.
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    match last_segment.split_once(':') {
        Some((_, tag)) if tag != "latest" => PullPolicy::IfNotPresent,
        _ => PullPolicy::Always,
    }
}

/// A probe's timings.
pub fn probe(probe: &mut Probe) {
    probe
        .initial_delay_seconds
        .get_or_insert(DEFAULT_PROBE_INITIAL_DELAY_SECONDS);
    probe
        .period_seconds
        .get_or_insert(DEFAULT_PROBE_PERIOD_SECONDS);
    probe
        .timeout_seconds
        .get_or_insert(DEFAULT_PROBE_TIMEOUT_SECONDS);
    probe
        .success_threshold
        .get_or_insert(DEFAULT_PROBE_SUCCESS_THRESHOLD);
    probe
        .failure_threshold
        .get_or_insert(DEFAULT_PROBE_FAILURE_THRESHOLD);
}

/// Service: type, session affinity, and each port's protocol and target.
pub fn service(service: &mut Service) {
    let spec = &mut service.spec;
    spec.type_.get_or_insert(ServiceType::ClusterIP);
    spec.session_affinity.get_or_insert(SessionAffinity::None);
    for port in &mut spec.ports {
        port.protocol.get_or_insert(Protocol::Tcp);
        if port.target_port.is_none() {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
}

/// Secret: its type.
pub fn secret(secret: &mut Secret) {
    secret
        .type_
        .get_or_insert_with(|| DEFAULT_SECRET_TYPE.to_owned());
}

/// HorizontalPodAutoscaler: the lower bound, and a CPU target when no
/// metric is given (as Kubernetes).
pub fn horizontal_pod_autoscaler(hpa: &mut HorizontalPodAutoscaler) {
    hpa.spec
        .min_replicas
        .get_or_insert(DEFAULT_HPA_MIN_REPLICAS);
    if hpa.spec.metrics.is_empty() {
        hpa.spec.metrics.push(MetricSpec {
            type_: MetricSourceType::Resource,
            resource: Some(ResourceMetricSource {
                name: "cpu".to_owned(),
                target: MetricTarget {
                    type_: MetricTargetType::Utilization,
                    average_utilization: Some(DEFAULT_HPA_CPU_UTILIZATION),
                    average_value: None,
                },
            }),
        });
    }
}

/// Volume: access mode and volume mode.
pub fn volume(volume: &mut Volume) {
    if volume.spec.access_modes.is_empty() {
        volume.spec.access_modes.push(AccessMode::ReadWriteOnce);
    }
    volume
        .spec
        .volume_mode
        .get_or_insert(VolumeMode::Filesystem);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged_and_latest_images_are_always_pulled_as_in_kubernetes() {
        assert_eq!(default_pull_policy("nginx"), PullPolicy::Always);
        assert_eq!(default_pull_policy("nginx:latest"), PullPolicy::Always);
        assert_eq!(default_pull_policy("nginx:1.27"), PullPolicy::IfNotPresent);
        assert_eq!(
            default_pull_policy("registry:5000/team/app"),
            PullPolicy::Always
        );
        assert_eq!(
            default_pull_policy("registry:5000/team/app:v2"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            default_pull_policy("app@sha256:abcd"),
            PullPolicy::IfNotPresent
        );
    }
}
