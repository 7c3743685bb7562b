//! The Pod Security rules against the table in
//! `tests/data/pod_security_cases.txt`: every baseline and restricted rule,
//! with Kubernetes' refusal text.

use berth_api::objects::{Pod, decode_as};
use berth_api::pod_security::{self, Level};
use serde_json::{Value, json};

const CASES: &str = include_str!("data/pod_security_cases.txt");

fn base(name: &str) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}
    });
    match name {
        "plain" => {}
        "hardened" => {
            pod["spec"]["securityContext"] =
                json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
            pod["spec"]["containers"][0]["securityContext"] =
                json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
        }
        other => panic!("unknown base {other}"),
    }
    pod
}

/// RFC 7386.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let Value::Object(object) = target else {
        unreachable!("made an object above")
    };
    for (key, value) in patch {
        if value.is_null() {
            object.remove(key);
        } else {
            merge_patch(object.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[test]
fn every_case_of_the_table_is_decided_and_worded_as_kubernetes_does() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for (number, line) in CASES.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cells = line.splitn(4, " | ").map(str::trim);
        let (Some(level), Some(base_name), Some(patch), Some(expected)) =
            (cells.next(), cells.next(), cells.next(), cells.next())
        else {
            panic!("line {}: a row has four cells: {line}", number + 1);
        };
        let level = Level::parse(level).unwrap_or_else(|e| panic!("line {}: {e}", number + 1));
        let patch: Value = serde_json::from_str(patch)
            .unwrap_or_else(|e| panic!("line {}: patch: {e}", number + 1));
        let mut pod = base(base_name);
        merge_patch(&mut pod, &patch);
        let pod: Pod = decode_as(pod)
            .unwrap_or_else(|e| panic!("line {}: not a valid pod: {e:?}", number + 1));
        let violations = pod_security::check(level, &pod.metadata, &pod.spec, "");
        let got = if violations.is_empty() {
            "allow".to_owned()
        } else {
            pod_security::message(level, &violations)
        };
        if got != expected {
            failures.push(format!(
                "line {}:\n  expected {expected}\n  got      {got}",
                number + 1
            ));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 50, "the table has {checked} cases");
}

#[test]
fn each_violation_names_the_offending_fields_of_a_template() {
    let mut pod = base("plain");
    merge_patch(
        &mut pod,
        &json!({"spec": {
            "volumes": [{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}],
            "initContainers": [{"name": "setup", "image": "busybox",
                "ports": [{"containerPort": 53, "hostPort": 53}]}]
        }}),
    );
    let pod: Pod = decode_as(pod).expect("valid");
    let violations =
        pod_security::check(Level::Baseline, &pod.metadata, &pod.spec, "spec.template");
    let fields: Vec<(&str, Vec<&str>)> = violations
        .iter()
        .map(|v| {
            (
                v.reason.as_str(),
                v.fields.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            (
                "hostPath volumes",
                vec!["spec.template.spec.volumes[0].hostPath"]
            ),
            (
                "hostPort",
                vec!["spec.template.spec.initContainers[0].ports[0].hostPort"]
            ),
        ]
    );
}

#[test]
fn levels_read_and_print_as_kubernetes_names_them() {
    assert_eq!(Level::parse("restricted"), Ok(Level::Restricted));
    assert!(Level::parse("Restricted").is_err());
    assert_eq!(Level::default(), Level::Baseline);
    assert_eq!(Level::Baseline.to_string(), "baseline:latest");
    assert!(Level::Privileged < Level::Baseline && Level::Baseline < Level::Restricted);
}
