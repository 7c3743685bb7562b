//! Containers' logs, read from the agents through their tunnels
//! ([`crate::node_api::tunnels`]): one container of a pod, or every pod of
//! a Deployment at once with each line prefixed `[pod/NAME/CONTAINER] `
//! and, when following, new pods joining as they start.
//!
//! Which container, and whether it has started, is decided here from the
//! stored pod, as kubectl words it; the bytes come from the node's agent.

use std::collections::HashSet;

use berth_api::labels::Selector;
use berth_api::node::v1 as pb;
use berth_api::objects::Kind;
use berth_api::objects::pod::{ContainerStatus, Pod};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::node_api::tunnels::{TunnelError, TunnelOutput, Tunnels};
use crate::objects::{ObjectError, ObjectRef, Objects, SecretValues};

/// How many prefixed lines of a Deployment's pods wait for the reader.
const MERGED_BUFFER: usize = 256;

/// What the caller asks of a log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// The container; may be left out when the pod has one.
    pub container: Option<String>,
    /// Keep streaming new output.
    pub follow: bool,
    /// Only the last lines.
    pub tail_lines: Option<i64>,
    /// Only the output of the last seconds.
    pub since_seconds: Option<i64>,
    /// Each line starts with its time.
    pub timestamps: bool,
    /// The previous run of the container.
    pub previous: bool,
}

/// Why a log cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PodLogError {
    /// No such object, or reading it failed.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// The pod has several containers and none was named.
    #[error("a container name must be specified for pod {pod}, choose one of: [{}]", choices.join(" "))]
    ContainerRequired {
        /// The pod.
        pod: String,
        /// Its containers.
        choices: Vec<String>,
    },
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
    /// The container has not started (or the pod is not bound).
    #[error("container \"{container}\" in pod \"{pod}\" is waiting to start: {reason}")]
    Waiting {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
        /// Why, as its status says (`ContainerCreating` when it says nothing).
        reason: String,
    },
    /// `previous` for a container that has not run before.
    #[error("previous terminated container \"{container}\" in pod \"{pod}\" not found")]
    NoPrevious {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
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

/// One container of one pod, ready to be asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTarget {
    /// The node the pod is bound to.
    pub node: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's uid.
    pub uid: String,
    /// The container.
    pub container: String,
}

impl LogTarget {
    /// The container `options` names (or the pod's only one), when it has
    /// started (with `previous`: when it ran before).
    pub fn of(pod: &Pod, options: &LogOptions) -> Result<LogTarget, PodLogError> {
        let name = pod.metadata.name.clone();
        let main: Vec<String> = pod.spec.containers.iter().map(|c| c.name.clone()).collect();
        let container = match &options.container {
            Some(container) => {
                let known = main.contains(container)
                    || pod
                        .spec
                        .init_containers
                        .iter()
                        .any(|c| c.name == *container);
                if !known {
                    return Err(PodLogError::NoSuchContainer {
                        pod: name,
                        container: container.clone(),
                        choices: main,
                    });
                }
                container.clone()
            }
            None if main.len() == 1 => main[0].clone(),
            None => {
                return Err(PodLogError::ContainerRequired {
                    pod: name,
                    choices: main,
                });
            }
        };
        let waiting = |reason: Option<&str>| PodLogError::Waiting {
            pod: name.clone(),
            container: container.clone(),
            reason: reason.unwrap_or("ContainerCreating").to_owned(),
        };
        let Some(node) = pod.spec.node_name.clone().filter(|n| !n.is_empty()) else {
            return Err(waiting(None));
        };
        let status = pod.status.as_ref().and_then(|status| {
            status
                .container_statuses
                .iter()
                .chain(&status.init_container_statuses)
                .find(|s| s.name == container)
        });
        if options.previous {
            if !status.is_some_and(ran_before) {
                return Err(PodLogError::NoPrevious {
                    pod: name,
                    container,
                });
            }
        } else {
            let state = status.and_then(|s| s.state.as_ref());
            let started = state.is_some_and(|s| s.running.is_some() || s.terminated.is_some())
                || status.is_some_and(ran_before);
            if !started {
                let reason = state
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref());
                return Err(waiting(reason));
            }
        }
        Ok(LogTarget {
            node,
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            pod: name,
            container,
        })
    }

    /// The request the agent gets.
    fn request(&self, tenant: &str, options: &LogOptions) -> pb::LogRequest {
        pb::LogRequest {
            tenant: tenant.to_owned(),
            pod: self.pod.clone(),
            uid: self.uid.clone(),
            container: self.container.clone(),
            follow: options.follow,
            tail_lines: options.tail_lines,
            since_seconds: options.since_seconds,
            timestamps: options.timestamps,
            previous: options.previous,
        }
    }
}

/// Whether a container has a run behind it.
fn ran_before(status: &ContainerStatus) -> bool {
    status
        .last_state
        .as_ref()
        .is_some_and(|s| s.terminated.is_some())
}

/// Reads the stored pod at `at` as a typed pod.
fn typed_pod(value: Value, at: &ObjectRef) -> Result<Pod, PodLogError> {
    serde_json::from_value(value).map_err(|e| PodLogError::Unreadable {
        pod: at.name.clone(),
        reason: e.to_string(),
    })
}

/// One container's log, as its agent streams it.
#[tracing::instrument(skip_all, fields(tenant = at.tenant, pod = at.name))]
pub async fn pod_log(
    objects: &Objects,
    tunnels: &Tunnels,
    at: &ObjectRef,
    options: &LogOptions,
) -> Result<TunnelOutput, PodLogError> {
    let pod = typed_pod(objects.get(at, SecretValues::Redact).await?, at)?;
    let target = LogTarget::of(&pod, options)?;
    let tenant = at.tenant.as_deref().unwrap_or_default();
    Ok(tunnels
        .logs(&target.node, target.request(tenant, options))
        .await?)
}

/// Every started pod of the Deployment at `at`, each line prefixed with
/// its pod and container; with `follow`, pods that start later join. Pods
/// whose node cannot be asked fail the whole request while it opens; a
/// pod that joins later and fails says so in one prefixed line.
#[tracing::instrument(skip_all, fields(tenant = at.tenant, deployment = at.name))]
pub async fn deployment_log(
    objects: &Objects,
    tunnels: &Tunnels,
    at: &ObjectRef,
    options: &LogOptions,
) -> Result<BoxStream<'static, Vec<u8>>, PodLogError> {
    let deployment = objects.get(at, SecretValues::Redact).await?;
    let uid = deployment["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let tenant = at.tenant.clone().unwrap_or_default();
    let mut members = Members {
        objects: objects.clone(),
        tenant: tenant.clone(),
        deployment_uid: uid,
        replica_sets: HashSet::new(),
        foreign: HashSet::new(),
        streaming: HashSet::new(),
    };
    members.refresh_replica_sets().await?;
    let pods = objects
        .list(
            Kind::Pod,
            Some(&tenant),
            &Selector::default(),
            0,
            None,
            SecretValues::Redact,
        )
        .await?;
    let (lines, merged) = mpsc::channel(MERGED_BUFFER);
    for value in pods.items {
        let Ok(pod) = serde_json::from_value::<Pod>(value) else {
            continue;
        };
        for target in members.new_targets(&pod, options) {
            let output = tunnels
                .logs(&target.node, target.request(&tenant, options))
                .await?;
            tokio::spawn(prefix_lines(target, output, lines.clone()));
        }
    }
    if options.follow {
        let watch = objects
            .watch(Kind::Pod, Some(&tenant), pods.revision)
            .await?;
        // A pod that joins later shows all it wrote, not only the tail.
        let joining = LogOptions {
            tail_lines: None,
            ..options.clone()
        };
        tokio::spawn(follow_new_pods(
            members,
            tunnels.clone(),
            watch,
            joining,
            lines,
        ));
    }
    let merged = futures::stream::unfold(merged, |mut merged| async move {
        merged.recv().await.map(|line| (line, merged))
    });
    Ok(merged.boxed())
}

/// Which pods belong to a Deployment, and which of their containers are
/// streamed already.
struct Members {
    objects: Objects,
    tenant: String,
    deployment_uid: String,
    replica_sets: HashSet<String>,
    /// Owner uids known not to be the Deployment's ReplicaSets.
    foreign: HashSet<String>,
    /// (pod uid, container) pairs already streamed.
    streaming: HashSet<(String, String)>,
}

impl Members {
    /// Reads again which ReplicaSets the Deployment owns.
    async fn refresh_replica_sets(&mut self) -> Result<(), ObjectError> {
        let page = self
            .objects
            .list(
                Kind::ReplicaSet,
                Some(&self.tenant),
                &Selector::default(),
                0,
                None,
                SecretValues::Redact,
            )
            .await?;
        self.replica_sets = page
            .items
            .iter()
            .filter(|rs| owner_uids(rs).any(|uid| uid == self.deployment_uid))
            .filter_map(|rs| rs["metadata"]["uid"].as_str().map(str::to_owned))
            .collect();
        Ok(())
    }

    /// Reads the ReplicaSets again when `pod` has an owner not seen
    /// before: perhaps one the Deployment made since (a rollout).
    async fn learn_owners(&mut self, pod: &Pod) {
        let unknown: Vec<String> = pod
            .metadata
            .owner_references
            .iter()
            .map(|owner| owner.uid.clone())
            .filter(|uid| !self.replica_sets.contains(uid) && !self.foreign.contains(uid))
            .collect();
        if unknown.is_empty() {
            return;
        }
        if let Err(error) = self.refresh_replica_sets().await {
            tracing::warn!(%error, "reading the Deployment's ReplicaSets failed");
            return;
        }
        for uid in unknown {
            if !self.replica_sets.contains(&uid) {
                self.foreign.insert(uid);
            }
        }
    }

    /// Whether `pod` is owned by one of the Deployment's ReplicaSets.
    fn owns(&self, pod: &Pod) -> bool {
        pod.metadata
            .owner_references
            .iter()
            .any(|owner| self.replica_sets.contains(&owner.uid))
    }

    /// The started containers of `pod` not streamed yet, when the pod is
    /// the Deployment's; marks them streamed.
    fn new_targets(&mut self, pod: &Pod, options: &LogOptions) -> Vec<LogTarget> {
        if !self.owns(pod) || pod.metadata.deletion_timestamp.is_some() {
            return Vec::new();
        }
        let containers: Vec<String> = match &options.container {
            Some(container) => vec![container.clone()],
            None => pod.spec.containers.iter().map(|c| c.name.clone()).collect(),
        };
        let mut targets = Vec::new();
        for container in containers {
            let one = LogOptions {
                container: Some(container),
                ..options.clone()
            };
            let Ok(target) = LogTarget::of(pod, &one) else {
                continue;
            };
            if self
                .streaming
                .insert((target.uid.clone(), target.container.clone()))
            {
                targets.push(target);
            }
        }
        targets
    }
}

/// The uids of an object's owners.
fn owner_uids(object: &Value) -> impl Iterator<Item = &str> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|owner| owner["uid"].as_str())
}

/// Watches the tenant's pods and streams each container of the
/// Deployment's that starts, until the reader goes away.
async fn follow_new_pods(
    mut members: Members,
    tunnels: Tunnels,
    mut watch: crate::store::Watch,
    options: LogOptions,
    lines: mpsc::Sender<Vec<u8>>,
) {
    let objects = members.objects.clone();
    let tenant = members.tenant.clone();
    loop {
        let events = tokio::select! {
            () = lines.closed() => return,
            events = watch.next() => events,
        };
        let Some(Ok(events)) = events else {
            let _ = lines
                .send(b"[berth] the watch of new pods ended\n".to_vec())
                .await;
            return;
        };
        for event in events {
            let Ok(Some((_, value))) = objects.watch_event(
                Kind::Pod,
                Some(&tenant),
                &Selector::default(),
                &event,
                SecretValues::Redact,
            ) else {
                continue;
            };
            let Ok(pod) = serde_json::from_value::<Pod>(value) else {
                continue;
            };
            members.learn_owners(&pod).await;
            for target in members.new_targets(&pod, &options) {
                match tunnels
                    .logs(&target.node, target.request(&tenant, &options))
                    .await
                {
                    Ok(output) => {
                        tokio::spawn(prefix_lines(target, output, lines.clone()));
                    }
                    Err(error) => {
                        let line = format!(
                            "{}berth: cannot read this container's log: {error}\n",
                            prefix(&target)
                        );
                        if lines.send(line.into_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// `[pod/NAME/CONTAINER] `.
fn prefix(target: &LogTarget) -> String {
    format!("[pod/{}/{}] ", target.pod, target.container)
}

/// Sends `output` as whole lines, each with the target's prefix, until it
/// ends or the reader goes away.
async fn prefix_lines(target: LogTarget, mut output: TunnelOutput, lines: mpsc::Sender<Vec<u8>>) {
    let mut splitter = LineSplitter::new(prefix(&target));
    loop {
        let chunk = tokio::select! {
            () = lines.closed() => return,
            chunk = output.next() => chunk,
        };
        let complete = match chunk {
            Some(Ok(data)) => splitter.push(&data),
            Some(Err(error)) => {
                let mut rest = splitter.finish();
                rest.extend(format!("{}berth: {error}\n", splitter.prefix).into_bytes());
                let _ = lines.send(rest).await;
                return;
            }
            None => {
                let rest = splitter.finish();
                if !rest.is_empty() {
                    let _ = lines.send(rest).await;
                }
                return;
            }
        };
        if !complete.is_empty() && lines.send(complete).await.is_err() {
            return;
        }
    }
}

/// Cuts a byte stream into lines and puts a prefix before each.
struct LineSplitter {
    prefix: String,
    partial: Vec<u8>,
}

impl LineSplitter {
    fn new(prefix: String) -> LineSplitter {
        LineSplitter {
            prefix,
            partial: Vec::new(),
        }
    }

    /// The complete lines `data` finishes, prefixed; keeps the rest.
    fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.partial.extend_from_slice(data);
        let Some(last) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        let mut out = Vec::with_capacity(complete.len() + self.prefix.len() * 4);
        for line in complete.split_inclusive(|b| *b == b'\n') {
            out.extend_from_slice(self.prefix.as_bytes());
            out.extend_from_slice(line);
        }
        out
    }

    /// The unfinished last line, prefixed and ended; nothing when none.
    fn finish(&mut self) -> Vec<u8> {
        if self.partial.is_empty() {
            return Vec::new();
        }
        let mut out = self.prefix.clone().into_bytes();
        out.append(&mut self.partial);
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn two_containers(status: Value) -> Pod {
        pod(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "tenant": "t", "uid": "u1"},
            "spec": {"nodeName": "n1", "containers": [
                {"name": "app", "image": "busybox"}, {"name": "side", "image": "busybox"}]},
            "status": status,
        }))
    }

    #[test]
    fn a_pod_with_several_containers_needs_one_named_and_the_error_lists_them() {
        let error = LogTarget::of(&two_containers(json!({})), &LogOptions::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "a container name must be specified for pod web-1, choose one of: [app side]"
        );
    }

    #[test]
    fn a_container_not_started_is_waiting_with_its_reason() {
        let pod = two_containers(json!({"containerStatuses": [
            {"name": "app", "ready": false, "restartCount": 0, "image": "busybox",
             "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}));
        let options = LogOptions {
            container: Some("app".into()),
            ..LogOptions::default()
        };
        assert_eq!(
            LogTarget::of(&pod, &options).unwrap_err().to_string(),
            "container \"app\" in pod \"web-1\" is waiting to start: ImagePullBackOff"
        );
        let side = LogOptions {
            container: Some("side".into()),
            ..LogOptions::default()
        };
        assert_eq!(
            LogTarget::of(&pod, &side).unwrap_err().to_string(),
            "container \"side\" in pod \"web-1\" is waiting to start: ContainerCreating"
        );
    }

    #[test]
    fn a_running_container_is_asked_of_its_node() {
        let pod = two_containers(json!({"containerStatuses": [
            {"name": "app", "ready": true, "restartCount": 0, "image": "busybox",
             "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}));
        let options = LogOptions {
            container: Some("app".into()),
            ..LogOptions::default()
        };
        let target = LogTarget::of(&pod, &options).unwrap();
        assert_eq!(target.node, "n1");
        assert_eq!(target.uid, "u1");
        let previous = LogOptions {
            previous: true,
            ..options
        };
        assert!(matches!(
            LogTarget::of(&pod, &previous),
            Err(PodLogError::NoPrevious { .. })
        ));
    }

    #[test]
    fn lines_split_across_chunks_get_one_prefix_each() {
        let mut splitter = LineSplitter::new("[pod/a/c] ".into());
        assert_eq!(splitter.push(b"one\ntw"), b"[pod/a/c] one\n");
        assert_eq!(
            splitter.push(b"o\nthree\nfo"),
            b"[pod/a/c] two\n[pod/a/c] three\n"
        );
        assert_eq!(splitter.finish(), b"[pod/a/c] fo\n");
        assert!(splitter.finish().is_empty());
    }
}
