//! What pages show of objects, computed once in Rust so that templates only
//! print: ages, a pod's status as `kubectl get pods` words it, a
//! Deployment's readiness, conditions.

use serde_json::Value;

/// A string at `path` (`/status/phase`), or empty.
pub fn text(object: &Value, path: &str) -> String {
    match object.pointer(path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// A number at `path`, or 0.
pub fn number(object: &Value, path: &str) -> i64 {
    object.pointer(path).and_then(Value::as_i64).unwrap_or(0)
}

/// The `key=value` pairs of a string map at `path` (labels, annotations,
/// a selector), in key order.
pub fn pairs(object: &Value, path: &str) -> Vec<String> {
    object
        .pointer(path)
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The object's name.
pub fn name(object: &Value) -> String {
    text(object, "/metadata/name")
}

/// How long ago an RFC 3339 time was, as kubectl shows ages (`42s`, `5m`,
/// `3h`, `12d`); empty when there is none.
pub fn age_since(time: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let Ok(then) = chrono::DateTime::parse_from_rfc3339(time) else {
        return String::new();
    };
    let seconds = (now - then.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The object's age.
pub fn age(object: &Value) -> String {
    age_since(
        &text(object, "/metadata/creationTimestamp"),
        chrono::Utc::now(),
    )
}

/// How a status looks: `ok`, `warn` or `bad`.
pub fn tone(ok: bool, bad: bool) -> &'static str {
    if bad {
        "bad"
    } else if ok {
        "ok"
    } else {
        "warn"
    }
}

/// One row of a pod list.
#[derive(Clone, Debug)]
pub struct PodRow {
    /// The name.
    pub name: String,
    /// Ready containers over all (`1/2`).
    pub ready: String,
    /// As `kubectl get pods` words it: `Running`, `Pending`,
    /// `CrashLoopBackOff`, `Completed`, `Terminating`…
    pub status: String,
    /// `ok`, `warn` or `bad`.
    pub tone: &'static str,
    /// Restarts of all containers.
    pub restarts: i64,
    /// The node, or empty.
    pub node: String,
    /// The pod's address, or empty.
    pub ip: String,
    /// The age.
    pub age: String,
    /// Whether something is wrong that a "why" card explains.
    pub failing: bool,
}

/// Waiting reasons that mean the pod cannot run until someone acts.
pub const FAILING_REASONS: [&str; 6] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
];

/// A pod's row.
pub fn pod_row(pod: &Value) -> PodRow {
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses
        .iter()
        .filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let restarts = statuses.iter().map(|s| number(s, "/restartCount")).sum();
    let status = pod_status(pod, &statuses);
    // An init container's trouble reads `Init:CrashLoopBackOff`, as kubectl
    // words it.
    let trouble = status.strip_prefix("Init:").unwrap_or(&status);
    let failing = FAILING_REASONS.contains(&trouble)
        || trouble == "Error"
        || (status == "Pending" && unschedulable(pod).is_some());
    let tone = match status.as_str() {
        "Running" if ready == total => "ok",
        "Completed" => "ok",
        _ if failing => "bad",
        _ => "warn",
    };
    PodRow {
        name: name(pod),
        ready: format!("{ready}/{total}"),
        status,
        tone,
        restarts,
        node: text(pod, "/spec/nodeName"),
        ip: text(pod, "/status/podIP"),
        age: age(pod),
        failing,
    }
}

fn pod_status(pod: &Value, statuses: &[Value]) -> String {
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let phase = text(pod, "/status/phase");
    let inits = pod
        .pointer("/status/initContainerStatuses")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for status in inits {
        let waiting = text(status, "/state/waiting/reason");
        if !waiting.is_empty() && waiting != "PodInitializing" && waiting != "ContainerCreating" {
            return format!("Init:{waiting}");
        }
        if number(status, "/state/terminated/exitCode") != 0 {
            return "Init:Error".into();
        }
    }
    for status in statuses {
        let waiting = text(status, "/state/waiting/reason");
        if !waiting.is_empty() && waiting != "ContainerCreating" {
            return waiting;
        }
        let terminated = text(status, "/state/terminated/reason");
        if !terminated.is_empty() && phase != "Succeeded" {
            return terminated;
        }
    }
    match phase.as_str() {
        "Succeeded" => "Completed".into(),
        "Pending" if !text(pod, "/spec/nodeName").is_empty() => "ContainerCreating".into(),
        "" => "Pending".into(),
        other => other.into(),
    }
}

/// A stored pod read for its row and nothing more: what [`pod_row`] needs,
/// without the containers' specs, which are most of a pod. For lists of
/// a tenant's thousand pods (`Objects::list_decoded`).
pub fn pod_summary(json: &[u8]) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct Pod {
        #[serde(default)]
        metadata: Value,
        #[serde(default)]
        spec: Spec,
        #[serde(default)]
        status: Value,
    }
    #[derive(Default, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Spec {
        #[serde(default)]
        node_name: Option<String>,
        #[serde(default)]
        containers: Vec<serde::de::IgnoredAny>,
    }
    let pod: Pod = serde_json::from_slice(json).ok()?;
    Some(serde_json::json!({
        "metadata": pod.metadata,
        "spec": {
            "nodeName": pod.spec.node_name,
            "containers": vec![serde_json::json!({}); pod.spec.containers.len()],
        },
        "status": pod.status,
    }))
}

/// The scheduler's message when the pod fits no node.
pub fn unschedulable(pod: &Value) -> Option<String> {
    conditions(pod)
        .into_iter()
        .find(|c| c.kind == "PodScheduled" && c.status == "False")
        .map(|c| {
            if c.message.is_empty() {
                c.reason
            } else {
                c.message
            }
        })
}

/// One condition of an object's status.
#[derive(Clone, Debug)]
pub struct Condition {
    /// `Available`, `Progressing`, `Ready`…
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// The machine-readable reason.
    pub reason: String,
    /// The human one.
    pub message: String,
    /// Since when, as an age.
    pub age: String,
    /// `ok` for True, `bad` for False, `warn` otherwise.
    pub tone: &'static str,
}

/// An object's `status.conditions`.
pub fn conditions(object: &Value) -> Vec<Condition> {
    let now = chrono::Utc::now();
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|c| {
                    let status = text(c, "/status");
                    Condition {
                        kind: text(c, "/type"),
                        tone: tone(status == "True", status == "False"),
                        status,
                        reason: text(c, "/reason"),
                        message: text(c, "/message"),
                        age: age_since(&text(c, "/lastTransitionTime"), now),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One row of a Deployment list.
#[derive(Clone, Debug)]
pub struct DeploymentRow {
    /// The name.
    pub name: String,
    /// Ready replicas over desired (`3/5`).
    pub ready: String,
    /// Desired replicas.
    pub desired: i64,
    /// Ready replicas.
    pub ready_replicas: i64,
    /// Replicas with the current template.
    pub up_to_date: i64,
    /// Available replicas.
    pub available: i64,
    /// The containers' images, comma-separated.
    pub images: String,
    /// The age.
    pub age: String,
    /// Whether the rollout is paused.
    pub paused: bool,
    /// A short state: `Available`, `Progressing`, `Paused`, `Failing`…
    pub state: String,
    /// `ok`, `warn` or `bad`.
    pub tone: &'static str,
}

/// A Deployment's row.
pub fn deployment_row(deployment: &Value) -> DeploymentRow {
    let desired = deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let ready_replicas = number(deployment, "/status/readyReplicas");
    let available = number(deployment, "/status/availableReplicas");
    let up_to_date = number(deployment, "/status/updatedReplicas");
    let paused = deployment.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    let conditions = conditions(deployment);
    let stalled = conditions.iter().any(|c| {
        (c.kind == "Progressing" && c.status == "False")
            || (c.kind == "ReplicaFailure" && c.status == "True")
    });
    let (state, tone) = if stalled {
        ("Failing", "bad")
    } else if paused {
        ("Paused", "warn")
    } else if available >= desired && up_to_date >= desired {
        ("Available", "ok")
    } else {
        ("Progressing", "warn")
    };
    DeploymentRow {
        name: name(deployment),
        ready: format!("{ready_replicas}/{desired}"),
        desired,
        ready_replicas,
        up_to_date,
        available,
        images: images(deployment.pointer("/spec/template/spec")),
        age: age(deployment),
        paused,
        state: state.into(),
        tone,
    }
}

/// The images of a pod spec's containers, comma-separated.
pub fn images(spec: Option<&Value>) -> String {
    spec.and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .map(|containers| {
            containers
                .iter()
                .map(|c| text(c, "/image"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// One event, as the lists show it.
#[derive(Clone, Debug)]
pub struct EventRow {
    /// `Normal` or `Warning`.
    pub kind: String,
    /// The reason.
    pub reason: String,
    /// What it concerns: `Pod/web-1`.
    pub object: String,
    /// The object's kind.
    pub object_kind: String,
    /// The object's name.
    pub object_name: String,
    /// The message.
    pub message: String,
    /// How many times it happened.
    pub count: i64,
    /// When it last happened, as an age.
    pub age: String,
    /// The time it last happened (RFC 3339), for sorting.
    pub last: String,
}

/// An event's row.
pub fn event_row(event: &Value, now: chrono::DateTime<chrono::Utc>) -> EventRow {
    let last = [
        "/lastTimestamp",
        "/eventTime",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .map(|p| text(event, p))
    .find(|t| !t.is_empty())
    .unwrap_or_default();
    let object_kind = text(event, "/involvedObject/kind");
    let object_name = text(event, "/involvedObject/name");
    EventRow {
        kind: text(event, "/type"),
        reason: text(event, "/reason"),
        object: format!("{object_kind}/{object_name}"),
        object_kind,
        object_name,
        message: text(event, "/message"),
        count: number(event, "/count").max(1),
        age: age_since(&last, now),
        last,
    }
}

/// Events newest first.
pub fn event_rows(events: &[Value]) -> Vec<EventRow> {
    let now = chrono::Utc::now();
    let mut rows: Vec<EventRow> = events.iter().map(|e| event_row(e, now)).collect();
    rows.sort_by(|a, b| b.last.cmp(&a.last));
    rows
}

/// The YAML of an object, for reading and editing.
pub fn yaml(object: &Value) -> String {
    yaml_serde::to_string(object).unwrap_or_else(|e| format!("# cannot show as YAML: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(age_since("2026-01-02T02:59:30Z", now), "30s");
        assert_eq!(age_since("2026-01-02T02:00:00Z", now), "60m");
        assert_eq!(age_since("2026-01-01T03:00:00Z", now), "24h");
        assert_eq!(age_since("2025-12-20T03:00:00Z", now), "13d");
        assert_eq!(age_since("", now), "");
    }

    #[test]
    fn a_crash_looping_pod_is_failing_and_says_so() {
        let pod = json!({
            "metadata": {"name": "web-1"},
            "spec": {"nodeName": "n1", "containers": [{"name": "web"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "web", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}
            }]}
        });
        let row = pod_row(&pod);
        assert_eq!(row.status, "CrashLoopBackOff");
        assert_eq!(row.ready, "0/1");
        assert_eq!(row.restarts, 4);
        assert!(row.failing);
        assert_eq!(row.tone, "bad");
    }

    #[test]
    fn an_init_container_s_trouble_is_the_pod_s_status_and_failing() {
        let pod = json!({
            "metadata": {"name": "web-1"},
            "spec": {"nodeName": "n1", "containers": [{"name": "web"}]},
            "status": {"phase": "Pending",
                "initContainerStatuses": [{"name": "migrate", "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
                "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}}}]}
        });
        let row = pod_row(&pod);
        assert_eq!(row.status, "Init:CrashLoopBackOff");
        assert!(row.failing);
        assert_eq!(row.tone, "bad");
    }

    #[test]
    fn a_pod_that_fits_no_node_is_pending_with_the_scheduler_s_reasons() {
        let pod = json!({
            "metadata": {"name": "big"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu."
            }]}
        });
        let row = pod_row(&pod);
        assert_eq!(row.status, "Pending");
        assert!(row.failing);
        assert_eq!(
            unschedulable(&pod).as_deref(),
            Some("0/3 nodes are available: 3 Insufficient cpu.")
        );
    }
}
