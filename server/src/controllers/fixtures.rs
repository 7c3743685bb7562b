//! Objects for the controllers' unit tests: ReplicaSets, pods and
//! Deployments in the states the decisions depend on, at fixed times.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::objects::meta::ConditionStatus;
use berth_api::objects::pod::{Container, PodCondition, PodPhase, PodStatus};
use berth_api::objects::workloads::ReplicaSetStatus;
use berth_api::objects::{
    Deployment, LabelSelector, Pod, PodTemplateSpec, ReplicaSet, Resource, defaults,
};
use chrono::{DateTime, TimeZone, Utc};

use super::deployment::new_replica_set;
use super::replicaset::pod_from_template;
use super::runtime::clock::format_time;

/// `secs` seconds after the fixtures' epoch.
pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

/// A pod template labelled `app: {app}` running `image`.
pub fn template(app: &str, image: &str) -> PodTemplateSpec {
    let mut template = PodTemplateSpec::default();
    template.metadata.labels = BTreeMap::from([("app".to_owned(), app.to_owned())]);
    template.spec.containers = vec![Container {
        name: "main".into(),
        image: image.into(),
        ..Container::default()
    }];
    defaults::pod_spec(&mut template.spec);
    template
}

fn selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: BTreeMap::from([("app".to_owned(), app.to_owned())]),
        ..LabelSelector::default()
    }
}

fn stored<K: Resource>(object: &mut K, created: i64) {
    let meta = object.metadata_mut();
    meta.tenant = Some("acme".into());
    meta.uid = Some(format!("uid-{}", meta.name));
    meta.generation = Some(1);
    meta.resource_version = Some("7".into());
    meta.creation_timestamp = Some(format_time(at(created)));
}

/// A stored ReplicaSet in tenant `acme` selecting `app: {name}`.
pub fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    let mut rs = ReplicaSet::named(name);
    stored(&mut rs, 0);
    rs.spec.replicas = Some(replicas);
    rs.spec.selector = Some(selector(name));
    rs.spec.template = template(name, "busybox:1");
    rs
}

/// A pod's state, for [`pod_of`].
#[derive(Clone, Debug, Default)]
pub struct PodState {
    /// The node it is bound to.
    pub node: Option<String>,
    /// Its phase.
    pub phase: Option<PodPhase>,
    /// Since when it has been ready, if it is.
    pub ready_since: Option<DateTime<Utc>>,
    /// When it was created (the epoch when not given).
    pub created: Option<DateTime<Utc>>,
}

impl PodState {
    /// The same, created at `time`.
    pub fn created(mut self, time: DateTime<Utc>) -> PodState {
        self.created = Some(time);
        self
    }
}

/// Bound, running, ready since `since`.
pub fn running_ready(since: DateTime<Utc>) -> PodState {
    PodState {
        node: Some("node-1".into()),
        phase: Some(PodPhase::Running),
        ready_since: Some(since),
        created: None,
    }
}

/// Bound and running, not ready.
pub fn running_not_ready() -> PodState {
    PodState {
        node: Some("node-1".into()),
        phase: Some(PodPhase::Running),
        ready_since: None,
        created: None,
    }
}

/// A pod of `rs` named `name` in `state`.
pub fn pod_of(rs: &ReplicaSet, name: &str, state: PodState) -> Arc<Pod> {
    let mut pod = pod_from_template(rs, name);
    pod.metadata.uid = Some(format!("uid-{name}"));
    pod.metadata.creation_timestamp = Some(format_time(state.created.unwrap_or(at(0))));
    pod.spec.node_name = state.node;
    let ready = PodCondition {
        type_: "Ready".into(),
        status: if state.ready_since.is_some() {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        last_transition_time: state.ready_since.map(format_time),
        ..PodCondition::default()
    };
    pod.status = Some(PodStatus {
        phase: state.phase,
        conditions: vec![ready],
        ..PodStatus::default()
    });
    Arc::new(pod)
}

/// A stored Deployment in tenant `acme` of `replicas` pods of
/// `app: {name}` running `web:1`, with every default applied.
pub fn deployment(name: &str, replicas: i32) -> Deployment {
    let mut deployment = Deployment::named(name);
    stored(&mut deployment, 0);
    deployment.spec.replicas = Some(replicas);
    deployment.spec.selector = Some(selector(name));
    deployment.spec.template = template(name, "web:1");
    defaults::deployment(&mut deployment);
    deployment
}

/// `deployment` with its template's image changed to `image`.
pub fn with_image(deployment: &Deployment, image: &str) -> Deployment {
    let mut changed = deployment.clone();
    changed.spec.template.spec.containers[0].image = image.into();
    changed
}

/// A stored ReplicaSet of `deployment`'s template at `revision`, created
/// at `created` seconds, wanting `replicas` and with `pods` pods of which
/// `available` are available.
pub fn owned_replica_set(
    deployment: &Deployment,
    revision: i64,
    replicas: i32,
    pods: i32,
    available: i32,
    created: i64,
) -> Arc<ReplicaSet> {
    let mut rs = new_replica_set(deployment, replicas, revision);
    stored(&mut rs, created);
    rs.status = Some(ReplicaSetStatus {
        replicas: pods,
        ready_replicas: Some(available),
        available_replicas: Some(available),
        fully_labeled_replicas: Some(pods),
        observed_generation: Some(1),
        conditions: Vec::new(),
    });
    Arc::new(rs)
}
