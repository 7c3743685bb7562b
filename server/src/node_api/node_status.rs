//! What the node API writes into Node objects: the object an agent
//! registers, and the status changes of registration and heartbeats
//! (conditions with their heartbeat and transition times, capacity and
//! allocatable).

use std::collections::BTreeMap;

use berth_api::node::v1 as pb;
use serde_json::{Map, Value, json};

/// The label every registered node carries with its own name, as
/// Kubernetes' `kubernetes.io/hostname` (anti-affinity's topology key).
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The Node object an agent registers, without status.
pub fn registered_node(request: &pb::RegisterRequest) -> Value {
    let mut labels: BTreeMap<&str, &str> = request
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    labels.insert(HOSTNAME_LABEL, &request.node_name);
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": request.node_name, "labels": labels},
        "spec": {"taints": taints(&request.taints)},
    })
}

fn taints(taints: &[pb::Taint]) -> Vec<Value> {
    taints
        .iter()
        .map(|taint| {
            let mut value = json!({"key": taint.key, "effect": taint.effect});
            if !taint.value.is_empty() {
                value["value"] = json!(taint.value);
            }
            value
        })
        .collect()
}

/// An existing Node with what the agent registers merged in: its labels
/// over the existing ones, its taints replacing those of the same key and
/// effect. What an operator or a controller set otherwise (other labels and
/// taints, `unschedulable`) stays.
pub fn merge_registration(existing: &Value, registered: &Value) -> Value {
    let mut merged = existing.clone();
    if let (Some(labels), Some(new)) = (
        merged["metadata"]
            .as_object_mut()
            .map(|m| m.entry("labels").or_insert_with(|| json!({}))),
        registered["metadata"]["labels"].as_object(),
    ) && let Some(labels) = labels.as_object_mut()
    {
        for (key, value) in new {
            labels.insert(key.clone(), value.clone());
        }
    }
    let new_taints = registered["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !new_taints.is_empty() {
        let same = |a: &Value, b: &Value| a["key"] == b["key"] && a["effect"] == b["effect"];
        let mut taints: Vec<Value> = merged["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|old| !new_taints.iter().any(|new| same(old, new)))
            .collect();
        taints.extend(new_taints);
        if !merged["spec"].is_object() {
            merged["spec"] = json!({});
        }
        merged["spec"]["taints"] = json!(taints);
    }
    merged
}

/// A condition as the agent reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedCondition {
    /// `Ready`, `MemoryPressure`…
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One word, if any.
    pub reason: Option<String>,
    /// For humans, if any.
    pub message: Option<String>,
}

impl ReportedCondition {
    /// `Ready=True`, what a heartbeat without conditions reports.
    pub fn ready() -> ReportedCondition {
        ReportedCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("AgentReady".into()),
            message: Some("berth agent is posting ready status".into()),
        }
    }

    /// The conditions of a heartbeat or a registration: those given
    /// (checked), plus Ready=True unless a Ready condition is among them.
    pub fn from_agent(given: &[pb::NodeCondition]) -> Result<Vec<ReportedCondition>, String> {
        let mut conditions = Vec::new();
        for condition in given {
            if condition.r#type.is_empty() {
                return Err("a condition without a type".into());
            }
            if !matches!(condition.status.as_str(), "True" | "False" | "Unknown") {
                return Err(format!(
                    "condition {}: status {:?} is not True, False or Unknown",
                    condition.r#type, condition.status
                ));
            }
            conditions.push(ReportedCondition {
                type_: condition.r#type.clone(),
                status: condition.status.clone(),
                reason: Some(condition.reason.clone()).filter(|r| !r.is_empty()),
                message: Some(condition.message.clone()).filter(|m| !m.is_empty()),
            });
        }
        if !conditions.iter().any(|c| c.type_ == "Ready") {
            conditions.push(ReportedCondition::ready());
        }
        Ok(conditions)
    }
}

/// `status` with `conditions` reported at `now` (RFC 3339): each condition's
/// heartbeat time is `now`; its transition time moves only when its status
/// changes. Other conditions stay as they were.
pub fn report_conditions(status: &mut Value, conditions: &[ReportedCondition], now: &str) {
    let status = object(status);
    if !status.get("conditions").is_some_and(Value::is_array) {
        status.insert("conditions".into(), json!([]));
    }
    let Some(list) = status.get_mut("conditions").and_then(Value::as_array_mut) else {
        return;
    };
    for reported in conditions {
        let existing = list.iter_mut().find(|c| c["type"] == reported.type_);
        let transition = match &existing {
            Some(c) if c["status"] == reported.status => c["lastTransitionTime"].clone(),
            _ => json!(now),
        };
        let mut condition = json!({
            "type": reported.type_,
            "status": reported.status,
            "lastHeartbeatTime": now,
            "lastTransitionTime": transition,
        });
        if let Some(reason) = &reported.reason {
            condition["reason"] = json!(reason);
        }
        if let Some(message) = &reported.message {
            condition["message"] = json!(message);
        }
        match existing {
            Some(c) => *c = condition,
            None => list.push(condition),
        }
    }
}

/// `status` with what the agent reports of its resources: `capacity`, and
/// `allocatable` (what pods may use of it). An agent that reports a
/// capacity without an allocatable (one older than allocatable reports)
/// has nothing reserved: allocatable is the capacity.
pub fn report_resources(
    status: &mut Value,
    capacity: Option<&pb::Capacity>,
    allocatable: Option<&pb::Capacity>,
) {
    let status = object(status);
    if let Some(capacity) = capacity {
        status.insert("capacity".into(), quantities(capacity));
    }
    if let Some(allocatable) = allocatable.or(capacity) {
        status.insert("allocatable".into(), quantities(allocatable));
    }
}

/// The non-empty quantities of `capacity`, by Kubernetes' resource names.
fn quantities(capacity: &pb::Capacity) -> Value {
    let mut quantities = Map::new();
    for (name, quantity) in [
        ("cpu", &capacity.cpu),
        ("memory", &capacity.memory),
        ("pods", &capacity.pods),
        ("ephemeral-storage", &capacity.ephemeral_storage),
    ] {
        if !quantity.is_empty() {
            quantities.insert(name.into(), json!(quantity));
        }
    }
    Value::Object(quantities)
}

/// `status` with what registration reports: capacity and allocatable,
/// addresses, host info and `conditions` (checked by
/// [`ReportedCondition::from_agent`], so Ready among them).
pub fn report_registration(
    status: &mut Value,
    request: &pb::RegisterRequest,
    conditions: &[ReportedCondition],
    now: &str,
) {
    report_resources(
        status,
        request.capacity.as_ref(),
        request.allocatable.as_ref(),
    );
    let addresses: Vec<Value> = request
        .addresses
        .iter()
        .map(|a| json!({"type": a.r#type, "address": a.address}))
        .collect();
    let info = request.node_info.clone().unwrap_or_default();
    let fields = object(status);
    fields.insert("addresses".into(), json!(addresses));
    fields.insert(
        "nodeInfo".into(),
        json!({
            "machineID": info.machine_id,
            "systemUUID": info.system_uuid,
            "bootID": info.boot_id,
            "kernelVersion": info.kernel_version,
            "osImage": info.os_image,
            "containerRuntimeVersion": info.container_runtime_version,
            "kubeletVersion": info.agent_version,
            "operatingSystem": info.operating_system,
            "architecture": info.architecture,
        }),
    );
    report_conditions(status, conditions, now);
}

fn object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = json!({});
    }
    match value.as_object_mut() {
        Some(map) => map,
        None => unreachable!("made an object above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_moves_the_transition_time_only_when_the_status_changes() {
        let mut status = json!({});
        let ready = ReportedCondition::ready();
        report_conditions(
            &mut status,
            std::slice::from_ref(&ready),
            "2025-01-01T00:00:00Z",
        );
        report_conditions(&mut status, &[ready], "2025-01-01T00:00:10Z");
        let condition = &status["conditions"][0];
        assert_eq!(condition["lastHeartbeatTime"], "2025-01-01T00:00:10Z");
        assert_eq!(condition["lastTransitionTime"], "2025-01-01T00:00:00Z");
        let not_ready = ReportedCondition {
            status: "False".into(),
            ..ReportedCondition::ready()
        };
        report_conditions(&mut status, &[not_ready], "2025-01-01T00:00:20Z");
        assert_eq!(
            status["conditions"][0]["lastTransitionTime"],
            "2025-01-01T00:00:20Z"
        );
        assert_eq!(status["conditions"].as_array().unwrap().len(), 1);
    }

    fn capacity(cpu: &str, memory: &str) -> pb::Capacity {
        pb::Capacity {
            cpu: cpu.into(),
            memory: memory.into(),
            pods: "110".into(),
            ephemeral_storage: String::new(),
        }
    }

    #[test]
    fn allocatable_is_reported_apart_from_capacity_or_follows_it_for_older_agents() {
        let mut status = json!({});
        report_resources(
            &mut status,
            Some(&capacity("4", "8Gi")),
            Some(&capacity("3500m", "6Gi")),
        );
        assert_eq!(
            status["capacity"],
            json!({"cpu": "4", "memory": "8Gi", "pods": "110"})
        );
        assert_eq!(
            status["allocatable"],
            json!({"cpu": "3500m", "memory": "6Gi", "pods": "110"})
        );
        // An agent that knows nothing of allocatable.
        report_resources(&mut status, Some(&capacity("2", "4Gi")), None);
        assert_eq!(status["allocatable"], status["capacity"]);
        assert_eq!(status["allocatable"]["cpu"], "2");
        // A heartbeat that names neither changes neither.
        report_resources(&mut status, None, None);
        assert_eq!(status["allocatable"]["cpu"], "2");
    }

    #[test]
    fn registration_reports_the_agents_conditions_beside_ready() {
        let request = pb::RegisterRequest {
            node_name: "n1".into(),
            conditions: vec![pb::NodeCondition {
                r#type: "MemoryPressure".into(),
                status: "True".into(),
                reason: "KubeletHasInsufficientMemory".into(),
                message: "memory is low".into(),
            }],
            ..Default::default()
        };
        let conditions = ReportedCondition::from_agent(&request.conditions).unwrap();
        let mut status = json!({});
        report_registration(&mut status, &request, &conditions, "2025-01-01T00:00:00Z");
        let types: Vec<&str> = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["MemoryPressure", "Ready"]);
        assert_eq!(
            status["conditions"][0]["reason"],
            "KubeletHasInsufficientMemory"
        );
    }

    #[test]
    fn registering_again_keeps_what_others_set_on_the_node() {
        let existing = json!({
            "metadata": {"name": "n1", "labels": {"zone": "a", "team": "x"}},
            "spec": {"unschedulable": true, "taints": [
                {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
                {"key": "gpu", "effect": "NoSchedule", "value": "old"},
            ]},
        });
        let registered = json!({
            "metadata": {"name": "n1", "labels": {"zone": "b"}},
            "spec": {"taints": [{"key": "gpu", "effect": "NoSchedule", "value": "new"}]},
        });
        let merged = merge_registration(&existing, &registered);
        assert_eq!(
            merged["metadata"]["labels"],
            json!({"zone": "b", "team": "x"})
        );
        assert_eq!(merged["spec"]["unschedulable"], true);
        assert_eq!(
            merged["spec"]["taints"],
            json!([
                {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
                {"key": "gpu", "effect": "NoSchedule", "value": "new"},
            ])
        );
    }
}
