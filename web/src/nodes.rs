//! `/nodes`, the platform admin's: each node's readiness, what it offers
//! against what the pods bound to it ask for (counted as the scheduler
//! counts them: [`NodeState`], [`PodDemand`]), its conditions, taints and
//! labels, and cordoning (a merge-patch of `spec.unschedulable` through the
//! REST API).

use actix_web::{HttpResponse, web};
use askama::Template;
use berth_api::objects::pod::PodPhase;
use berth_api::objects::{Kind, Node, Pod};
use berth_server::authz::{Target, Verb};
use berth_server::scheduler::fit::{NodeState, PodDemand};
use serde_json::Value;

use crate::page::{self, Chrome, PageError, Permission, Viewer};
use crate::view;

/// Mounts `/nodes`.
pub fn configure(config: &mut web::ServiceConfig) {
    config.route("/nodes", web::get().to(list));
}

/// One resource of a node: asked for against offered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    /// What the bound pods ask for, in the resource's unit (millicores,
    /// bytes, pods).
    pub requested: i64,
    /// What the node offers to pods.
    pub allocatable: i64,
    /// `1.5 / 4 cores`, `512Mi / 8Gi`, `3 / 110`.
    pub text: String,
}

impl Usage {
    fn new(requested: i64, allocatable: i64, show: fn(i64) -> String) -> Usage {
        Usage {
            text: format!("{} / {}", show(requested), show(allocatable)),
            requested,
            allocatable,
        }
    }

    /// The meter's maximum (at least 1, so an empty node still draws).
    pub fn max(&self) -> i64 {
        self.allocatable.max(self.requested).max(1)
    }

    /// Where the meter turns amber: 80 % of what the node offers.
    pub fn high(&self) -> i64 {
        self.allocatable * 4 / 5
    }

    /// The share asked for, in percent.
    pub fn percent(&self) -> i64 {
        if self.allocatable <= 0 {
            0
        } else {
            self.requested * 100 / self.allocatable
        }
    }
}

/// Millicores as people write CPU: `250m`, `2`, `1.5`.
pub fn cpu(milli: i64) -> String {
    if milli % 1000 == 0 {
        format!("{}", milli / 1000)
    } else if milli > 1000 && milli % 100 == 0 {
        format!("{}.{}", milli / 1000, milli % 1000 / 100)
    } else {
        format!("{milli}m")
    }
}

/// Bytes in the largest binary unit that keeps one decimal: `512Mi`,
/// `7.8Gi`.
pub fn bytes(bytes: i64) -> String {
    const UNITS: [(&str, i64); 4] = [
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes >= size {
            let tenths = bytes * 10 / size;
            return if tenths % 10 == 0 {
                format!("{}{unit}", tenths / 10)
            } else {
                format!("{}.{}{unit}", tenths / 10, tenths % 10)
            };
        }
    }
    bytes.to_string()
}

fn count(n: i64) -> String {
    n.to_string()
}

/// What the scheduler sees of every node: what it offers, and the
/// requests of the pods bound to it and not finished.
pub fn node_states(nodes: &[Node], pods: &[Pod]) -> Vec<NodeState> {
    let mut states: Vec<NodeState> = nodes.iter().map(NodeState::from_node).collect();
    for pod in pods {
        let finished = pod
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|phase| matches!(phase, PodPhase::Succeeded | PodPhase::Failed));
        let node = pod.spec.node_name.as_deref();
        let Some(state) = states.iter_mut().find(|s| Some(s.name.as_str()) == node) else {
            continue;
        };
        if finished {
            continue;
        }
        let tenant = pod.metadata.namespace.as_deref().unwrap_or_default();
        let requests = PodDemand::of(tenant, pod).requests;
        state.requested.cpu_milli += requests.cpu_milli;
        state.requested.memory += requests.memory;
        state.requested.pods += requests.pods;
    }
    states
}

/// A node condition, toned by what it means: `Ready` is good when True,
/// the pressure conditions when False.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCondition {
    /// `Ready`, `MemoryPressure`…
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// `ok`, `warn` or `bad`.
    pub tone: &'static str,
    /// Why, when it is not good.
    pub message: String,
}

/// A node's conditions, toned.
pub fn node_conditions(node: &Value) -> Vec<NodeCondition> {
    view::conditions(node)
        .into_iter()
        .map(|c| {
            let good = if c.kind == "Ready" { "True" } else { "False" };
            let tone = view::tone(c.status == good, c.status != good && c.status != "Unknown");
            NodeCondition {
                message: if tone == "ok" {
                    String::new()
                } else if c.message.is_empty() {
                    c.reason
                } else {
                    c.message
                },
                kind: c.kind,
                status: c.status,
                tone,
            }
        })
        .collect()
}

/// One node as the page shows it.
struct NodeRow {
    name: String,
    ready: String,
    tone: &'static str,
    unschedulable: bool,
    cpu: Usage,
    memory: Usage,
    pods: Usage,
    conditions: Vec<NodeCondition>,
    taints: Vec<String>,
    labels: String,
    addresses: String,
    info: String,
    heartbeat: String,
    age: String,
}

fn node_row(node: &Value, state: Option<&NodeState>) -> NodeRow {
    let conditions = node_conditions(node);
    let ready = conditions
        .iter()
        .find(|c| c.kind == "Ready")
        .map(|c| c.status.clone())
        .unwrap_or_default();
    let (ready, tone) = match ready.as_str() {
        "True" => ("Ready", "ok"),
        "False" => ("NotReady", "bad"),
        _ => ("Unknown", "warn"),
    };
    let now = chrono::Utc::now();
    let heartbeat = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|list| list.iter().find(|c| view::text(c, "/type") == "Ready"))
        .map(|c| view::age_since(&view::text(c, "/lastHeartbeatTime"), now))
        .unwrap_or_default();
    let default = NodeState::default();
    let state = state.unwrap_or(&default);
    let taints = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|t| {
                    let value = view::text(t, "/value");
                    let effect = view::text(t, "/effect");
                    let key = view::text(t, "/key");
                    match (value.is_empty(), effect.is_empty()) {
                        (true, true) => key,
                        (true, false) => format!("{key}:{effect}"),
                        (false, true) => format!("{key}={value}"),
                        (false, false) => format!("{key}={value}:{effect}"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|a| format!("{} {}", view::text(a, "/type"), view::text(a, "/address")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let info = [
        "/status/nodeInfo/osImage",
        "/status/nodeInfo/architecture",
        "/status/nodeInfo/kernelVersion",
        "/status/nodeInfo/containerRuntimeVersion",
        "/status/nodeInfo/kubeletVersion",
    ]
    .iter()
    .map(|p| view::text(node, p))
    .filter(|t| !t.is_empty())
    .collect::<Vec<_>>()
    .join(" · ");
    NodeRow {
        name: view::name(node),
        ready: ready.into(),
        tone,
        unschedulable: node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true),
        cpu: Usage::new(state.requested.cpu_milli, state.allocatable.cpu_milli, cpu),
        memory: Usage::new(state.requested.memory, state.allocatable.memory, bytes),
        pods: Usage::new(state.requested.pods, state.allocatable.pods, count),
        conditions,
        taints,
        labels: view::pairs(node, "/metadata/labels").join(", "),
        addresses,
        info,
        heartbeat,
        age: view::age(node),
    }
}

#[derive(Template)]
#[template(path = "nodes.html")]
struct NodesPage {
    chrome: Chrome,
    live: String,
    rv: i64,
    nodes: Vec<NodeRow>,
    ready: usize,
    cordon: Permission,
}

async fn list(viewer: Viewer) -> Result<HttpResponse, PageError> {
    if !viewer.subject().platform_admin {
        return Err(PageError::Forbidden(
            "the nodes page is the platform admin's".into(),
        ));
    }
    let (nodes, rv) = viewer.list(Kind::Node, None).await?;
    // Every tenant's pods: what each node holds.
    let (pods, _) = viewer.list(Kind::Pod, None).await?;
    let typed_nodes: Vec<Node> = nodes
        .iter()
        .filter_map(|n| serde_json::from_value(n.clone()).ok())
        .collect();
    let typed_pods: Vec<Pod> = pods
        .iter()
        .filter_map(|p| serde_json::from_value(p.clone()).ok())
        .collect();
    let states = node_states(&typed_nodes, &typed_pods);
    let mut rows: Vec<NodeRow> = nodes
        .iter()
        .map(|node| {
            let name = view::name(node);
            node_row(node, states.iter().find(|s| s.name == name))
        })
        .collect();
    rows.sort_by(|a, b| (a.tone != "bad", &a.name).cmp(&(b.tone != "bad", &b.name)));
    page::render(&NodesPage {
        chrome: viewer.chrome(None, "nodes", "Nodes").await?,
        live: "/live?kinds=nodes,pods".into(),
        rv,
        ready: rows.iter().filter(|r| r.tone == "ok").count(),
        nodes: rows,
        cordon: viewer.permission(
            None,
            Target::Object(Kind::Node),
            Verb::Patch,
            "cordon nodes",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_read_as_people_write_them() {
        assert_eq!(cpu(250), "250m");
        assert_eq!(cpu(2000), "2");
        assert_eq!(cpu(1500), "1.5");
        assert_eq!(bytes(512 << 20), "512Mi");
        assert_eq!(bytes(8 << 30), "8Gi");
        assert_eq!(bytes((7 << 30) + (800 << 20)), "7.7Gi");
        assert_eq!(bytes(100), "100");
    }

    #[test]
    fn a_node_holds_the_requests_of_its_running_pods_not_of_finished_ones() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let pod = |name: &str, node: &str, phase: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "acme", "uid": name},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x",
                    "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]},
                "status": {"phase": phase}
            }))
            .unwrap()
        };
        let pods = [
            pod("a", "n1", "Running"),
            pod("b", "n1", "Pending"),
            pod("c", "n1", "Succeeded"),
            pod("d", "n2", "Running"),
        ];
        let states = node_states(&[node], &pods);
        let usage = Usage::new(
            states[0].requested.cpu_milli,
            states[0].allocatable.cpu_milli,
            cpu,
        );
        assert_eq!(usage.text, "1 / 4");
        assert_eq!(usage.percent(), 25);
        assert_eq!(states[0].requested.memory, 512 << 20);
        assert_eq!(states[0].requested.pods, 2);
    }

    #[test]
    fn memory_pressure_is_bad_when_true_and_ready_when_true_is_good() {
        let node = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "MemoryPressure", "status": "True", "reason": "LowMemory", "message": "only 80Mi left"},
            {"type": "DiskPressure", "status": "False"}
        ]}});
        let tones: Vec<(String, &str, String)> = node_conditions(&node)
            .into_iter()
            .map(|c| (c.kind, c.tone, c.message))
            .collect();
        assert_eq!(
            tones,
            [
                ("Ready".to_owned(), "ok", String::new()),
                (
                    "MemoryPressure".to_owned(),
                    "bad",
                    "only 80Mi left".to_owned()
                ),
                ("DiskPressure".to_owned(), "ok", String::new()),
            ]
        );
    }
}
