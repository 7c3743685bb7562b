//! The labels Berth puts on its containers, networks and claim volumes: the only way the
//! agent recognises what it owns (after a restart too), and the guarantee
//! that it never touches anything else on the engine.

use std::collections::HashMap;

use super::container_spec::Incarnation;
use crate::runtime::{AssignedPod, OwnedPod, PodKey};

/// `berth-agent` on everything the agent made.
pub const MANAGED_BY: &str = "berth.dev/managed-by";
/// The value of [`MANAGED_BY`].
pub const AGENT: &str = "berth-agent";
/// The node that runs the container.
pub const NODE: &str = "berth.dev/node";
/// The pod's tenant (on networks too).
pub const TENANT: &str = "berth.dev/tenant";
/// The pod's name.
pub const POD: &str = "berth.dev/pod";
/// The pod's uid.
pub const POD_UID: &str = "berth.dev/pod-uid";
/// The container's name in the pod.
pub const CONTAINER: &str = "berth.dev/container";
/// `true` for an init container.
pub const INIT: &str = "berth.dev/init";
/// How often the container was restarted before this run.
pub const RESTART_COUNT: &str = "berth.dev/restart-count";
/// The pod's grace period, for stopping it when its pod is gone.
pub const GRACE_SECONDS: &str = "berth.dev/grace-seconds";
/// The claim (Volume) a Docker volume holds, on claim volumes.
pub const CLAIM: &str = "berth.dev/claim";

/// The labels of one container of `pod`.
pub fn of_container(
    pod: &AssignedPod,
    which: Incarnation<'_>,
    node: &str,
    grace_seconds: i64,
) -> HashMap<String, String> {
    let key = pod.key();
    [
        (MANAGED_BY, AGENT.to_owned()),
        (NODE, node.to_owned()),
        (TENANT, key.tenant),
        (POD, key.name),
        (POD_UID, pod.uid().to_owned()),
        (CONTAINER, which.container.name.clone()),
        (INIT, which.init.to_string()),
        (RESTART_COUNT, which.restart_count.to_string()),
        (GRACE_SECONDS, grace_seconds.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The pod a container's labels name, if they name one.
pub fn owner(labels: &HashMap<String, String>) -> Option<OwnedPod> {
    Some(OwnedPod {
        key: PodKey {
            tenant: labels.get(TENANT)?.clone(),
            name: labels.get(POD)?.clone(),
        },
        uid: labels.get(POD_UID)?.clone(),
    })
}

/// `label=KEY=VALUE` filters for the engine's list and event calls.
pub fn filter(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        pairs.iter().map(|(k, v)| format!("{k}={v}")).collect(),
    )])
}
