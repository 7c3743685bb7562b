//! What `berth get` shows of each kind: kubectl's columns, worded as
//! kubectl words them (a pod's STATUS is `CrashLoopBackOff`, not its
//! phase), with `-o wide` adding what kubectl's wide output adds.

use berth_api::objects::Kind;
use berth_web::view::{self, number, text};
use serde_json::Value;

/// The header of a kind's table.
pub fn header(kind: Kind, wide: bool) -> Vec<&'static str> {
    let (mut columns, extra): (Vec<&str>, &[&str]) = match kind {
        Kind::Deployment => (
            vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        Kind::ReplicaSet => (
            vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        Kind::Pod => (
            vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            &["IP", "NODE"],
        ),
        Kind::Service => (
            vec!["NAME", "TYPE", "VIRTUAL-IP", "PORT(S)", "AGE"],
            &["EXTERNAL-IP", "SELECTOR"],
        ),
        Kind::EndpointSlice => (
            vec!["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
            &[],
        ),
        Kind::ConfigMap => (vec!["NAME", "DATA", "AGE"], &[]),
        Kind::Secret => (vec!["NAME", "TYPE", "DATA", "AGE"], &[]),
        Kind::Volume => (
            vec!["NAME", "STATUS", "CAPACITY", "ACCESS MODES", "AGE"],
            &["NODE"],
        ),
        Kind::HorizontalPodAutoscaler => (
            vec![
                "NAME",
                "REFERENCE",
                "TARGETS",
                "MINPODS",
                "MAXPODS",
                "REPLICAS",
                "AGE",
            ],
            &[],
        ),
        Kind::Event => (
            vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
            &[],
        ),
        Kind::Node => (
            vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
            &[
                "INTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME",
            ],
        ),
    };
    if wide {
        columns.extend_from_slice(extra);
    }
    columns
}

/// `<none>` for an empty cell, as kubectl shows it.
fn or_none(text: String) -> String {
    if text.is_empty() {
        "<none>".into()
    } else {
        text
    }
}

/// A label selector's `matchLabels` as `k=v,k=v`.
fn selector(object: &Value, path: &str) -> String {
    or_none(view::pairs(object, path).join(","))
}

fn container_names(object: &Value) -> String {
    object
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|c| text(c, "/name"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn count(object: &Value, path: &str) -> usize {
    object
        .pointer(path)
        .and_then(Value::as_object)
        .map_or(0, serde_json::Map::len)
}

/// A Service's ports as kubectl prints them: `80/TCP`, `80:30080/TCP`.
pub fn service_ports(service: &Value) -> String {
    let ports: Vec<String> = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|p| {
                    let protocol = Some(text(p, "/protocol"))
                        .filter(|p| !p.is_empty())
                        .unwrap_or_else(|| "TCP".into());
                    match p.get("nodePort").and_then(Value::as_i64) {
                        Some(node_port) => {
                            format!("{}:{node_port}/{protocol}", number(p, "/port"))
                        }
                        None => format!("{}/{protocol}", number(p, "/port")),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    or_none(ports.join(","))
}

/// A Service's addresses outside: a LoadBalancer's ingress.
fn external_ips(service: &Value) -> String {
    let ingress: Vec<String> = service
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|i| text(i, "/ip"))
                .filter(|ip| !ip.is_empty())
                .collect()
        })
        .unwrap_or_default();
    match (ingress.is_empty(), text(service, "/spec/type").as_str()) {
        (false, _) => ingress.join(","),
        (true, "LoadBalancer") => "<pending>".into(),
        _ => "<none>".into(),
    }
}

/// A node's `Ready`, `NotReady` or `Unknown`, with
/// `,SchedulingDisabled` when it is cordoned.
pub fn node_status(node: &Value) -> String {
    let ready = view::conditions(node)
        .into_iter()
        .find(|c| c.kind == "Ready")
        .map(|c| match c.status.as_str() {
            "True" => "Ready",
            "False" => "NotReady",
            _ => "Unknown",
        })
        .unwrap_or("Unknown");
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        format!("{ready},SchedulingDisabled")
    } else {
        ready.into()
    }
}

fn node_roles(node: &Value) -> String {
    let roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .collect()
        })
        .unwrap_or_default();
    or_none(roles.join(","))
}

fn node_address(node: &Value) -> String {
    node.pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|list| list.iter().find(|a| text(a, "/type") == "InternalIP"))
        .map(|a| text(a, "/address"))
        .unwrap_or_else(|| "<none>".into())
}

fn access_modes(volume: &Value) -> String {
    let modes = volume
        .pointer("/status/accessModes")
        .or_else(|| volume.pointer("/spec/accessModes"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|m| match m.as_str().unwrap_or_default() {
                    "ReadWriteOnce" => "RWO".to_owned(),
                    "ReadOnlyMany" => "ROX".to_owned(),
                    "ReadWriteMany" => "RWX".to_owned(),
                    "ReadWriteOncePod" => "RWOP".to_owned(),
                    other => other.to_owned(),
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    or_none(modes)
}

/// An autoscaler's TARGETS: `<current>/<target>` per metric, as kubectl
/// prints them (`cpu: 40%/80%`, `<unknown>` before the first reading).
fn autoscaler_targets(hpa: &Value) -> String {
    let current = hpa
        .pointer("/status/currentMetrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let targets: Vec<String> = hpa
        .pointer("/spec/metrics")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|metric| {
                    let name = text(metric, "/resource/name");
                    let now = current
                        .iter()
                        .find(|c| text(c, "/resource/name") == name)
                        .map(|c| {
                            let utilization = text(c, "/resource/current/averageUtilization");
                            if utilization.is_empty() {
                                text(c, "/resource/current/averageValue")
                            } else {
                                format!("{utilization}%")
                            }
                        })
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| "<unknown>".into());
                    let utilization = text(metric, "/resource/target/averageUtilization");
                    let target = if utilization.is_empty() {
                        text(metric, "/resource/target/averageValue")
                    } else {
                        format!("{utilization}%")
                    };
                    format!("{name}: {now}/{target}")
                })
                .collect()
        })
        .unwrap_or_default();
    or_none(targets.join(", "))
}

fn endpoint_addresses(slice: &Value) -> String {
    let addresses: Vec<String> = slice
        .pointer("/endpoints")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .flat_map(|e| {
                    e.get("addresses")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if addresses.len() > 3 {
        format!(
            "{} + {} more...",
            addresses[..3].join(","),
            addresses.len() - 3
        )
    } else {
        or_none(addresses.join(","))
    }
}

fn slice_ports(slice: &Value) -> String {
    let ports: Vec<String> = slice
        .pointer("/ports")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|p| number(p, "/port").to_string())
                .collect()
        })
        .unwrap_or_default();
    or_none(ports.join(","))
}

/// One object's row under [`header`].
pub fn row(kind: Kind, object: &Value, wide: bool) -> Vec<String> {
    let name = view::name(object);
    let age = view::age(object);
    let mut cells = match kind {
        Kind::Deployment => {
            let d = view::deployment_row(object);
            vec![
                name,
                d.ready,
                d.up_to_date.to_string(),
                d.available.to_string(),
                age,
            ]
        }
        Kind::ReplicaSet => vec![
            name,
            number(object, "/spec/replicas").to_string(),
            number(object, "/status/replicas").to_string(),
            number(object, "/status/readyReplicas").to_string(),
            age,
        ],
        Kind::Pod => {
            let p = view::pod_row(object);
            let restarts = p.restarts.to_string();
            vec![name, p.ready, p.status, restarts, age]
        }
        Kind::Service => {
            let address = text(object, "/spec/clusterIP");
            vec![
                name,
                Some(text(object, "/spec/type"))
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| "ClusterIP".into()),
                or_none(address),
                service_ports(object),
                age,
            ]
        }
        Kind::EndpointSlice => vec![
            name,
            text(object, "/addressType"),
            slice_ports(object),
            endpoint_addresses(object),
            age,
        ],
        Kind::ConfigMap => vec![
            name,
            (count(object, "/data") + count(object, "/binaryData")).to_string(),
            age,
        ],
        Kind::Secret => vec![
            name,
            Some(text(object, "/type"))
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "Opaque".into()),
            (count(object, "/data") + count(object, "/stringData")).to_string(),
            age,
        ],
        Kind::Volume => vec![
            name,
            or_none(text(object, "/status/phase")),
            Some(text(object, "/status/capacity/storage"))
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| text(object, "/spec/resources/requests/storage")),
            access_modes(object),
            age,
        ],
        Kind::HorizontalPodAutoscaler => vec![
            name,
            format!(
                "{}/{}",
                text(object, "/spec/scaleTargetRef/kind"),
                text(object, "/spec/scaleTargetRef/name")
            ),
            autoscaler_targets(object),
            object
                .pointer("/spec/minReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .to_string(),
            number(object, "/spec/maxReplicas").to_string(),
            number(object, "/status/currentReplicas").to_string(),
            age,
        ],
        Kind::Event => {
            let e = view::event_row(object, chrono::Utc::now());
            vec![
                e.age,
                e.kind,
                e.reason,
                format!("{}/{}", e.object_kind.to_lowercase(), e.object_name),
                e.message,
            ]
        }
        Kind::Node => vec![
            name,
            node_status(object),
            node_roles(object),
            age,
            or_none(text(object, "/status/nodeInfo/kubeletVersion")),
        ],
    };
    if wide {
        match kind {
            Kind::Deployment | Kind::ReplicaSet => cells.extend([
                container_names(object),
                view::images(object.pointer("/spec/template/spec")),
                selector(object, "/spec/selector/matchLabels"),
            ]),
            Kind::Pod => cells.extend([
                or_none(text(object, "/status/podIP")),
                or_none(text(object, "/spec/nodeName")),
            ]),
            Kind::Service => {
                cells.extend([external_ips(object), selector(object, "/spec/selector")])
            }
            Kind::Volume => cells.push(or_none(text(object, "/status/nodeName"))),
            Kind::Node => cells.extend([
                node_address(object),
                or_none(text(object, "/status/nodeInfo/osImage")),
                or_none(text(object, "/status/nodeInfo/kernelVersion")),
                or_none(text(object, "/status/nodeInfo/containerRuntimeVersion")),
            ]),
            _ => {}
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_row_has_as_many_cells_as_its_header_plain_and_wide() {
        for kind in Kind::all() {
            for wide in [false, true] {
                assert_eq!(
                    row(*kind, &json!({"metadata": {"name": "x"}}), wide).len(),
                    header(*kind, wide).len(),
                    "{kind} wide={wide}"
                );
            }
        }
    }

    #[test]
    fn service_ports_read_as_kubectl_prints_them() {
        let service = json!({"spec": {"type": "NodePort", "ports": [
            {"port": 80, "nodePort": 30080, "protocol": "TCP"},
            {"port": 53, "protocol": "UDP"}
        ]}});
        assert_eq!(service_ports(&service), "80:30080/TCP,53/UDP");
    }

    #[test]
    fn a_cordoned_ready_node_says_so() {
        let node = json!({"spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(node_status(&node), "Ready,SchedulingDisabled");
    }
}
