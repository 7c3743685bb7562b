//! A command in a container, attached, as `kubectl exec` runs it: which
//! container (the one named, or the pod's first), whether it runs, and
//! the request to its node's agent through the tunnel
//! ([`crate::node_api::tunnels`]). The bytes and the exit code come back
//! from the agent; the REST layer carries them over a WebSocket.

use berth_api::node::v1 as pb;
use berth_api::objects::pod::{Pod, PodPhase};

use crate::node_api::tunnels::{TunnelError, TunnelOutput, Tunnels};
use crate::objects::{ObjectError, ObjectRef, Objects, SecretValues};

/// What the caller asks to run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// The container; the pod's first when left out.
    pub container: Option<String>,
    /// The command and its arguments; never empty.
    pub command: Vec<String>,
    /// Attach the command's standard input.
    pub stdin: bool,
    /// Give it a terminal.
    pub tty: bool,
}

/// Why a command cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum PodExecError {
    /// No such pod, or reading it failed.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// The pod has no container of that name.
    #[error("container {container} is not valid for pod {pod}, choose one of: [{}]", choices.join(" "))]
    NoSuchContainer {
        /// The pod.
        pod: String,
        /// The name asked for.
        container: String,
        /// Its containers.
        choices: Vec<String>,
    },
    /// The pod is not running (not bound, not started, or ended).
    #[error("pod {pod} is not running; its phase is {phase}")]
    PodNotRunning {
        /// The pod.
        pod: String,
        /// Its phase.
        phase: String,
    },
    /// The container is not running.
    #[error("container {container} in pod {pod} is not running: {state}")]
    ContainerNotRunning {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
        /// What it does instead, as its status says.
        state: String,
    },
    /// The stored pod is not a pod this server can read.
    #[error("pod {pod} cannot be read: {reason}")]
    Unreadable {
        /// The pod.
        pod: String,
        /// Why.
        reason: String,
    },
    /// The node's agent could not be asked, or refused.
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
}

/// A running container, ready to run a command in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecTarget {
    /// The node the pod runs on.
    pub node: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's uid.
    pub uid: String,
    /// The container.
    pub container: String,
}

impl ExecTarget {
    /// The container `container` names (or the pod's first), when the pod
    /// and the container run.
    pub fn of(pod: &Pod, container: Option<&str>) -> Result<ExecTarget, PodExecError> {
        let name = pod.metadata.name.clone();
        let choices: Vec<String> = pod.spec.containers.iter().map(|c| c.name.clone()).collect();
        let container = match container {
            Some(container) if choices.iter().any(|c| c == container) => container.to_owned(),
            Some(container) => {
                return Err(PodExecError::NoSuchContainer {
                    pod: name,
                    container: container.to_owned(),
                    choices,
                });
            }
            None => choices
                .first()
                .cloned()
                .ok_or_else(|| PodExecError::NoSuchContainer {
                    pod: name.clone(),
                    container: String::new(),
                    choices: Vec::new(),
                })?,
        };
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase).unwrap_or_default();
        let node = pod.spec.node_name.clone().filter(|n| !n.is_empty());
        let (Some(node), PodPhase::Running) = (node, phase) else {
            return Err(PodExecError::PodNotRunning {
                pod: name,
                phase: format!("{phase:?}"),
            });
        };
        let state = status
            .and_then(|s| s.container_statuses.iter().find(|c| c.name == container))
            .and_then(|c| c.state.as_ref());
        if state.is_none_or(|s| s.running.is_none()) {
            let described = match state {
                Some(s) if s.terminated.is_some() => "terminated".to_owned(),
                Some(s) => s
                    .waiting
                    .as_ref()
                    .and_then(|w| w.reason.clone())
                    .map_or_else(|| "waiting".to_owned(), |r| format!("waiting ({r})")),
                None => "not started".to_owned(),
            };
            return Err(PodExecError::ContainerNotRunning {
                pod: name,
                container,
                state: described,
            });
        }
        Ok(ExecTarget {
            node,
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            pod: name,
            container,
        })
    }
}

/// Finds the container to run in for `options` in the pod at `at`.
#[tracing::instrument(skip_all, fields(tenant = at.tenant, pod = at.name))]
pub async fn target(
    objects: &Objects,
    at: &ObjectRef,
    options: &ExecOptions,
) -> Result<ExecTarget, PodExecError> {
    let value = objects.get(at, SecretValues::Redact).await?;
    let pod: Pod = serde_json::from_value(value).map_err(|e| PodExecError::Unreadable {
        pod: at.name.clone(),
        reason: e.to_string(),
    })?;
    ExecTarget::of(&pod, options.container.as_deref())
}

/// Starts the command in `target` through its node's agent; answers once
/// the agent started it.
#[tracing::instrument(skip_all, fields(tenant, pod = target.pod, container = target.container))]
pub async fn start(
    tunnels: &Tunnels,
    tenant: &str,
    target: &ExecTarget,
    options: &ExecOptions,
) -> Result<TunnelOutput, PodExecError> {
    let request = pb::ExecRequest {
        tenant: tenant.to_owned(),
        pod: target.pod.clone(),
        uid: target.uid.clone(),
        container: target.container.clone(),
        command: options.command.clone(),
        stdin: options.stdin,
        tty: options.tty,
    };
    Ok(tunnels.exec(&target.node, request).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "uid": "u1"},
            "spec": {"nodeName": "n1", "containers": [
                {"name": "app", "image": "busybox"}, {"name": "side", "image": "busybox"}]},
            "status": status,
        }))
        .expect("a pod")
    }

    fn running() -> serde_json::Value {
        serde_json::json!({"phase": "Running", "containerStatuses": [
            {"name": "app", "ready": true, "restartCount": 0, "image": "busybox", "imageID": "",
             "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}},
            {"name": "side", "ready": false, "restartCount": 1, "image": "busybox", "imageID": "",
             "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})
    }

    #[test]
    fn the_first_container_is_the_default_and_an_unknown_one_names_the_choices() {
        let pod = pod(running());
        let target = ExecTarget::of(&pod, None).expect("a target");
        assert_eq!(target.container, "app");
        assert_eq!(target.node, "n1");
        let error = ExecTarget::of(&pod, Some("db")).expect_err("no such container");
        assert_eq!(
            error.to_string(),
            "container db is not valid for pod web, choose one of: [app side]"
        );
    }

    #[test]
    fn a_pending_pod_or_a_waiting_container_is_refused_with_why() {
        let error = ExecTarget::of(&pod(serde_json::json!({"phase": "Pending"})), None)
            .expect_err("not running");
        assert_eq!(
            error.to_string(),
            "pod web is not running; its phase is Pending"
        );
        let error = ExecTarget::of(&pod(running()), Some("side")).expect_err("crash looping");
        assert_eq!(
            error.to_string(),
            "container side in pod web is not running: waiting (CrashLoopBackOff)"
        );
    }
}
