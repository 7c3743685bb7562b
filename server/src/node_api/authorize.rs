//! The one authorization decision of the node API: what a node credential
//! may do. Every RPC but `Register` asks [`node_may`] before it acts.
//!
//! A node may report its own Node's status, watch the pods bound to it,
//! hold its own `Streams` tunnel,
//! write the status of a pod bound to it, and read the ConfigMaps and
//! Secrets that a pod bound to it references, in that pod's tenant. Every
//! node may watch every Service and EndpointSlice. Nothing else.

use berth_api::objects::Pod;
use serde::Deserialize;
use serde_json::Value;

/// Something a node asks to do.
#[derive(Clone, Copy, Debug)]
pub enum NodeAction<'a> {
    /// Write the status of the Node named `node` (heartbeat, status update).
    WriteNodeStatus {
        /// The Node.
        node: &'a str,
    },
    /// Watch the pods bound to `node`.
    WatchPodsOf {
        /// The node whose pods.
        node: &'a str,
    },
    /// Watch every Service and EndpointSlice of every tenant: a node's
    /// proxy serves every Service's node ports, as kube-proxy does.
    WatchServices,
    /// Hold the `Streams` tunnel of `node`, through which the server asks
    /// for its containers' logs.
    OpenTunnelOf {
        /// The node whose tunnel.
        node: &'a str,
    },
    /// Write the status of `pod`, as it is stored now.
    WritePodStatus {
        /// The pod.
        pod: &'a Value,
    },
    /// Read the ConfigMap or Secret `name` in `pod`'s tenant, to run `pod`.
    ReadReference {
        /// The pod, as it is stored now.
        pod: &'a Pod,
        /// ConfigMap or Secret.
        kind: ReferenceKind,
        /// Its name.
        name: &'a str,
    },
}

/// The kinds a pod references by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferenceKind {
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
}

/// Whether the holder of `node`'s credential may do `action`.
pub fn node_may(node: &str, action: NodeAction<'_>) -> bool {
    match action {
        NodeAction::WriteNodeStatus { node: target }
        | NodeAction::WatchPodsOf { node: target }
        | NodeAction::OpenTunnelOf { node: target } => target == node,
        NodeAction::WatchServices => true,
        NodeAction::WritePodStatus { pod } => node_name_of(pod) == Some(node),
        NodeAction::ReadReference { pod, kind, name } => {
            pod.spec.node_name.as_deref() == Some(node)
                && PodReferences::of_pod(pod).names(kind).any(|n| n == name)
        }
    }
}

/// `spec.nodeName` of a pod as stored, when set.
pub(crate) fn node_name_of(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

/// The ConfigMaps and Secrets a pod references by name: env
/// `valueFrom.configMapKeyRef`/`secretKeyRef`, `envFrom`, and `configMap`
/// and `secret` volumes, of containers and init containers, and the
/// `imagePullSecrets`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodReferences {
    /// ConfigMap names, sorted, without repeats.
    pub config_maps: Vec<String>,
    /// Secret names, sorted, without repeats.
    pub secrets: Vec<String>,
}

impl PodReferences {
    /// What `pod` references; nothing when it is not a pod.
    pub fn of(pod: &Value) -> PodReferences {
        match Pod::deserialize(pod) {
            Ok(pod) => PodReferences::of_pod(&pod),
            Err(_) => PodReferences::default(),
        }
    }

    /// What the decoded `pod` references.
    pub fn of_pod(pod: &Pod) -> PodReferences {
        let mut refs = PodReferences::default();
        for container in pod.spec.containers.iter().chain(&pod.spec.init_containers) {
            for env in &container.env {
                if let Some(source) = &env.value_from {
                    if let Some(key) = &source.config_map_key_ref {
                        refs.config_maps.push(key.name.clone());
                    }
                    if let Some(key) = &source.secret_key_ref {
                        refs.secrets.push(key.name.clone());
                    }
                }
            }
            for source in &container.env_from {
                if let Some(config_map) = &source.config_map_ref {
                    refs.config_maps.push(config_map.name.clone());
                }
                if let Some(secret) = &source.secret_ref {
                    refs.secrets.push(secret.name.clone());
                }
            }
        }
        // kubelet reads the pull Secrets to pull the pod's images.
        for reference in &pod.spec.image_pull_secrets {
            refs.secrets.push(reference.name.clone());
        }
        for volume in &pod.spec.volumes {
            if let Some(config_map) = &volume.config_map {
                refs.config_maps.push(config_map.name.clone());
            }
            if let Some(secret) = &volume.secret {
                refs.secrets.push(secret.secret_name.clone());
            }
        }
        for names in [&mut refs.config_maps, &mut refs.secrets] {
            names.retain(|n| !n.is_empty());
            names.sort();
            names.dedup();
        }
        refs
    }

    /// The names of one kind.
    pub fn names(&self, kind: ReferenceKind) -> impl Iterator<Item = &str> {
        match kind {
            ReferenceKind::ConfigMap => self.config_maps.iter(),
            ReferenceKind::Secret => self.secrets.iter(),
        }
        .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_on(node: &str) -> Value {
        json!({
            "metadata": {"name": "web", "tenant": "acme"},
            "spec": {
                "nodeName": node,
                "containers": [{
                    "name": "web",
                    "image": "busybox",
                    "env": [
                        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "b"}}},
                    ],
                    "envFrom": [{"secretRef": {"name": "api"}}, {"configMapRef": {"name": "env"}}],
                }],
                "imagePullSecrets": [{"name": "registry"}],
                "volumes": [
                    {"name": "certs", "secret": {"secretName": "tls"}},
                    {"name": "conf", "configMap": {"name": "files"}},
                ],
            },
        })
    }

    #[test]
    fn a_pod_references_secrets_and_config_maps_from_env_env_from_and_volumes() {
        let refs = PodReferences::of(&pod_on("a"));
        assert_eq!(refs.secrets, ["api", "db", "registry", "tls"]);
        assert_eq!(refs.config_maps, ["env", "files", "settings"]);
    }

    #[test]
    fn a_node_reads_only_what_its_own_pods_reference() {
        let pod: Pod = serde_json::from_value(pod_on("a")).unwrap();
        let read = |node, kind, name| {
            node_may(
                node,
                NodeAction::ReadReference {
                    pod: &pod,
                    kind,
                    name,
                },
            )
        };
        assert!(read("a", ReferenceKind::Secret, "db"));
        assert!(!read("a", ReferenceKind::Secret, "settings"));
        assert!(!read("a", ReferenceKind::Secret, "other"));
        assert!(!read("b", ReferenceKind::Secret, "db"));
        assert!(read("a", ReferenceKind::ConfigMap, "settings"));
    }

    #[test]
    fn a_node_writes_only_its_own_pods_and_node() {
        assert!(node_may(
            "a",
            NodeAction::WritePodStatus { pod: &pod_on("a") }
        ));
        assert!(!node_may(
            "b",
            NodeAction::WritePodStatus { pod: &pod_on("a") }
        ));
        assert!(!node_may(
            "a",
            NodeAction::WritePodStatus {
                pod: &json!({"spec": {}})
            }
        ));
        assert!(node_may("a", NodeAction::WriteNodeStatus { node: "a" }));
        assert!(!node_may("a", NodeAction::WriteNodeStatus { node: "b" }));
        assert!(!node_may("a", NodeAction::WatchPodsOf { node: "b" }));
    }

    #[test]
    fn every_node_watches_every_service() {
        for node in ["a", "b"] {
            assert!(node_may(node, NodeAction::WatchServices));
        }
    }
}
