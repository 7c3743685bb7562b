//! Decoding real Kubernetes manifests, and the errors users see.

use serde_json::{Value, json};

use super::*;
use crate::objects::workloads::{
    DeploymentStrategy, DeploymentStrategyType, RollingUpdateDeployment,
};

/// Every field the input gives appears in the output with the same value:
/// decoding loses nothing and renames nothing.
fn assert_kept(input: &Value, output: &Value, path: &str) {
    match (input, output) {
        (Value::Object(given), Value::Object(stored)) => {
            for (key, value) in given {
                let stored = stored
                    .get(key)
                    .unwrap_or_else(|| panic!("{path}.{key} was dropped"));
                assert_kept(value, stored, &format!("{path}.{key}"));
            }
        }
        (Value::Array(given), Value::Array(stored)) => {
            assert_eq!(given.len(), stored.len(), "{path} changed length");
            for (i, (a, b)) in given.iter().zip(stored).enumerate() {
                assert_kept(a, b, &format!("{path}[{i}]"));
            }
        }
        // Quantities written as bare numbers are stored as their text.
        (Value::Number(given), Value::String(stored)) => {
            assert_eq!(&given.to_string(), stored, "{path} changed")
        }
        (given, stored) => assert_eq!(given, stored, "{path} changed"),
    }
}

/// Decodes, checks nothing was lost, and that decoding the result again
/// changes nothing (defaults and normalisation are idempotent).
fn decode_and_round_trip(input: Value) -> Decoded {
    let decoded = decode(None, input.clone()).unwrap_or_else(|errors| panic!("{errors:#?}"));
    assert_kept(&input, &decoded.value, "");
    let again = decode(Some(decoded.kind), decoded.value.clone())
        .unwrap_or_else(|errors| panic!("second decode: {errors:#?}"));
    assert_eq!(again, decoded, "decoding is not idempotent");
    decoded
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

fn decode_errors(input: Value) -> Vec<FieldError> {
    decode(None, input).expect_err("must be refused")
}

fn web_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app.kubernetes.io/name": "web"},
            "annotations": {"deployment.kubernetes.io/revision": "3"},
            "creationTimestamp": null
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "10%"}
            },
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "frontend"}},
                "spec": {
                    "containers": [{
                        "name": "web",
                        "image": "registry.example.com:5000/shop/web:1.4.2",
                        "args": ["--port=8080"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "env": [
                            {"name": "LOG_LEVEL", "value": "info"},
                            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                        ],
                        "envFrom": [{"configMapRef": {"name": "web-config"}}],
                        "resources": {
                            "requests": {"cpu": "250m", "memory": "128Mi"},
                            "limits": {"cpu": 1, "memory": "256Mi"}
                        },
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 5},
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/web", "readOnly": true}]
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": "web-config"}}],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}],
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
                            "topologyKey": "kubernetes.io/hostname"
                        }
                    }]}}
                }
            }
        }
    })
}

#[test]
fn a_kubernetes_deployment_decodes_keeps_every_field_and_gets_the_defaults() {
    let input = web_deployment();
    let decoded = decode(None, input.clone()).expect("valid");
    assert!(
        decoded.value["metadata"].get("creationTimestamp").is_none(),
        "a null is read as absent"
    );
    let mut input = input;
    input["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("creationTimestamp");
    let decoded = decode_and_round_trip(input);
    assert_eq!(decoded.kind, Kind::Deployment);
    let v = &decoded.value;
    assert_eq!(v["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(v["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(v["spec"]["minReadySeconds"], 0);
    let pod = &v["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Always");
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod["dnsPolicy"], "ClusterFirst");
    let container = &pod["containers"][0];
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    assert_eq!(container["ports"][0]["protocol"], "TCP");
    assert_eq!(
        container["resources"]["limits"]["cpu"], "1",
        "a bare number becomes a quantity string"
    );
    assert_eq!(
        container["livenessProbe"],
        json!({"httpGet": {"path": "/healthz", "port": "http"}, "initialDelaySeconds": 5,
               "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3})
    );
    assert!(v.get("status").is_none(), "no status appears from nowhere");

    let typed: Deployment = from_value(decoded.value).expect("stored objects read back typed");
    assert_eq!(typed.spec.replicas(), 3);
    assert_eq!(typed.metadata.namespace.as_deref(), Some("default"));
}

#[test]
fn a_deployment_without_strategy_gets_a_rolling_update_of_a_quarter() {
    let mut input = web_deployment();
    input["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("strategy");
    input["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("replicas");
    input["apiVersion"] = json!("berth.dev/v1");
    let deployment: Deployment = decode_as(input).expect("valid");
    assert_eq!(deployment.spec.replicas, Some(1));
    assert_eq!(
        deployment.spec.strategy,
        Some(DeploymentStrategy {
            type_: Some(DeploymentStrategyType::RollingUpdate),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::String("25%".into())),
                max_unavailable: Some(IntOrString::String("25%".into())),
            }),
        })
    );
}

#[test]
fn a_kubernetes_service_decodes_with_target_ports_and_type_defaulted() {
    let decoded = decode_and_round_trip(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                {"name": "metrics", "port": 9090}
            ]
        }
    }));
    let spec = &decoded.value["spec"];
    assert_eq!(spec["ports"][1]["targetPort"], 9090);
    assert_eq!(spec["ports"][0]["protocol"], "TCP");
    assert_eq!(spec["sessionAffinity"], "None");
    let default_type = decode(
        None,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
               "spec": {"ports": [{"port": 5432}]}}),
    )
    .expect("valid");
    assert_eq!(default_type.value["spec"]["type"], "ClusterIP");
}

#[test]
fn configmaps_and_secrets_decode_and_string_data_is_merged_into_data() {
    decode_and_round_trip(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-config"},
        "data": {"LOG_LEVEL": "info", "app.properties": "a=1\nb=2\n"},
        "binaryData": {"logo.png": "iVBORw0KGgo="},
        "immutable": false
    }));
    let secret = decode_and_round_trip(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db"},
        "data": {"password": "czNjcjN0"}
    }));
    assert_eq!(secret.value["type"], "Opaque");

    let merged: Secret = decode_as(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": "db"},
        "data": {"user": "YWRtaW4=", "password": "b2xk"},
        "stringData": {"password": "new"}
    }))
    .expect("valid");
    assert!(merged.string_data.is_empty());
    assert_eq!(merged.data["password"], "bmV3");
    let decoded = merged.decoded_data().expect("base64");
    assert_eq!(decoded["user"], b"admin");
    assert_eq!(decoded["password"], b"new");
}

#[test]
fn a_kubernetes_hpa_decodes_with_its_behavior() {
    let decoded = decode_and_round_trip(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}}
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300,
                                       "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
                                       "selectPolicy": "Max"}}
        }
    }));
    assert_eq!(decoded.kind, Kind::HorizontalPodAutoscaler);

    let defaulted: HorizontalPodAutoscaler = decode_as(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5}
    }))
    .expect("valid");
    assert_eq!(defaulted.spec.min_replicas, Some(1));
    let cpu = defaulted.spec.metrics[0]
        .resource
        .as_ref()
        .expect("cpu metric");
    assert_eq!(
        (cpu.name.as_str(), cpu.target.average_utilization),
        ("cpu", Some(80))
    );
}

#[test]
fn a_persistent_volume_claim_is_accepted_and_stored_as_a_volume() {
    let input = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"resources": {"requests": {"storage": "10Gi"}}, "storageClassName": "local"}
    });
    let decoded = decode(Some(Kind::Volume), input).expect("valid");
    assert_eq!(decoded.kind, Kind::Volume);
    assert_eq!(decoded.value["kind"], "Volume");
    assert_eq!(
        decoded.value["spec"]["accessModes"],
        json!(["ReadWriteOnce"])
    );
    assert_eq!(
        decoded.value["spec"]["resources"]["requests"]["storage"],
        "10Gi"
    );
    decode_and_round_trip(decoded.value);

    let errors = decode_errors(json!({
        "apiVersion": "v1", "kind": "Volume", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"]}
    }));
    assert_eq!(fields(&errors), ["spec.resources.requests[storage]"]);
}

#[test]
fn a_kubernetes_pod_decodes_with_its_status() {
    let decoded = decode_and_round_trip(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "job-1", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": "web-5d8f", "uid": "0b7c", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {
            "restartPolicy": "OnFailure",
            "nodeName": "node-1",
            "initContainers": [{"name": "migrate", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}],
            "containers": [{"name": "main", "image": "busybox",
                            "startupProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "failureThreshold": 30}}],
            "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
                        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
        },
        "status": {
            "phase": "Running",
            "hostIP": "10.0.0.5",
            "podIP": "172.17.0.3",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T10:00:00Z"}],
            "containerStatuses": [{"name": "main", "ready": true, "restartCount": 2, "image": "busybox",
                "imageID": "docker://sha256:abc", "containerID": "docker://123", "started": true,
                "state": {"running": {"startedAt": "2024-05-01T10:00:00Z"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]
        }
    }));
    let container = &decoded.value["spec"]["containers"][0];
    assert_eq!(
        container["imagePullPolicy"], "Always",
        "an untagged image means latest"
    );
    let pod: Pod = from_value(decoded.value).expect("typed");
    assert_eq!(
        pod.metadata.controller().map(|o| o.kind.as_str()),
        Some("ReplicaSet")
    );
}

#[test]
fn nodes_and_events_decode() {
    decode_and_round_trip(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}},
        "spec": {"podCIDR": "10.244.1.0/24", "taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]},
        "status": {
            "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "3800m", "memory": "15Gi", "pods": 110},
            "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-05-01T10:00:00Z"}],
            "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1",
                         "osImage": "Debian", "containerRuntimeVersion": "docker://27.0.1",
                         "kubeletVersion": "berth-0.1.0", "operatingSystem": "linux", "architecture": "amd64"},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}
        }
    }));
    decode_and_round_trip(json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web-5d8f.17c3a"},
        "involvedObject": {"kind": "Pod", "name": "web-5d8f-abcde", "uid": "u1"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container",
        "type": "Warning",
        "count": 4,
        "firstTimestamp": "2024-05-01T10:00:00Z",
        "lastTimestamp": "2024-05-01T10:05:00Z",
        "source": {"component": "agent", "host": "node-1"},
        "reportingComponent": "berth.dev/agent"
    }));
}

#[test]
fn unknown_fields_at_every_depth_are_all_reported_with_their_paths() {
    let mut input = web_deployment();
    input["spec"]["replicaz"] = json!(3);
    input["metadata"]["lables"] = json!({"a": "b"});
    input["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    input["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerport"] = json!(80);
    input["spec"]["template"]["spec"]["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"]["nmae"] =
        json!("x");
    let errors = decode_errors(input);
    let mut found = fields(&errors);
    found.sort_unstable();
    assert_eq!(
        found,
        [
            "metadata.lables",
            "spec.replicaz",
            "spec.template.spec.containers[0].env[1].valueFrom.secretKeyRef.nmae",
            "spec.template.spec.containers[0].imagePullPolicyy",
            "spec.template.spec.containers[0].ports[0].containerport",
        ]
    );
    assert!(errors.iter().all(|e| e.reason == "unknown field"));
}

#[test]
fn a_wrong_type_is_reported_at_its_path() {
    let mut input = web_deployment();
    input["spec"]["replicas"] = json!("x");
    assert_eq!(
        decode_errors(input),
        [FieldError::new(
            "spec.replicas",
            "invalid type: string \"x\", expected i32"
        )]
    );

    let mut input = web_deployment();
    input["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = json!([80]);
    let errors = decode_errors(input);
    assert_eq!(
        fields(&errors),
        ["spec.template.spec.containers[0].ports[0].containerPort"]
    );

    let mut input = web_deployment();
    input["spec"]["template"]["spec"]["restartPolicy"] = json!("Sometimes");
    let errors = decode_errors(input);
    assert_eq!(fields(&errors), ["spec.template.spec.restartPolicy"]);
    assert!(
        errors[0].reason.contains("OnFailure"),
        "{}",
        errors[0].reason
    );
}

#[test]
fn a_selector_that_does_not_match_the_template_is_refused() {
    let mut input = web_deployment();
    input["spec"]["selector"] = json!({"matchLabels": {"app": "api"}});
    let errors = decode_errors(input);
    assert_eq!(fields(&errors), ["spec.template.metadata.labels"]);
    assert!(
        errors[0]
            .reason
            .contains("selector does not match template labels")
    );

    let mut input = web_deployment();
    input["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("selector");
    assert_eq!(
        decode_errors(input),
        [FieldError::new("spec.selector", "required")]
    );
}

#[test]
fn every_problem_of_one_object_is_reported_together() {
    let mut input = web_deployment();
    input["metadata"]["name"] = json!("Web_App");
    input["metadata"]["labels"] = json!({"app.kubernetes.io/name": "-bad"});
    input["spec"]["replicas"] = json!(-1);
    input["spec"]["minReadySeconds"] = json!(700);
    let spec = &mut input["spec"]["template"]["spec"];
    spec["containers"][0]["image"] = json!("");
    spec["containers"][0]["ports"] = json!([
        {"name": "http", "containerPort": 70000},
        {"name": "http", "containerPort": 8081, "protocol": "TCP"}
    ]);
    spec["containers"][0]["resources"] =
        json!({"requests": {"cpu": "2", "gpu": "1"}, "limits": {"cpu": "1"}});
    spec["containers"][0]["env"][0]["valueFrom"] =
        json!({"configMapKeyRef": {"name": "c", "key": "k"}});
    spec["containers"][0]["volumeMounts"][0]["name"] = json!("missing");
    spec["containers"][0]["readinessProbe"] =
        json!({"periodSeconds": 0, "terminationGracePeriodSeconds": 5});
    spec["containers"]
        .as_array_mut()
        .expect("list")
        .push(json!({"name": "web", "image": "busybox"}));
    spec["tolerations"] = json!([{"key": "k", "operator": "Exists", "value": "v"}]);
    let errors = decode_errors(input);
    let c = "spec.template.spec.containers";
    assert_eq!(
        fields(&errors),
        [
            "metadata.name".to_owned(),
            "metadata.labels[app.kubernetes.io/name]".to_owned(),
            "spec.replicas".to_owned(),
            "spec.progressDeadlineSeconds".to_owned(),
            format!("{c}[0].image"),
            format!("{c}[0].ports[0].containerPort"),
            format!("{c}[0].ports[1].name"),
            format!("{c}[0].resources.requests[gpu]"),
            format!("{c}[0].resources.requests[cpu]"),
            format!("{c}[0].readinessProbe"),
            format!("{c}[0].readinessProbe.periodSeconds"),
            format!("{c}[0].readinessProbe.terminationGracePeriodSeconds"),
            format!("{c}[0].env[0].valueFrom"),
            format!("{c}[0].volumeMounts[0].name"),
            format!("{c}[1].name"),
            "spec.template.spec.tolerations[0].value".to_owned(),
        ],
        "{errors:#?}"
    );
}

#[test]
fn max_surge_and_max_unavailable_may_not_both_be_zero() {
    for (surge, unavailable) in [(json!(0), json!(0)), (json!("0%"), json!(0))] {
        let mut input = web_deployment();
        input["spec"]["strategy"]["rollingUpdate"] =
            json!({"maxSurge": surge, "maxUnavailable": unavailable});
        assert_eq!(
            fields(&decode_errors(input)),
            ["spec.strategy.rollingUpdate.maxUnavailable"]
        );
    }
    let mut input = web_deployment();
    input["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}});
    assert_eq!(
        fields(&decode_errors(input)),
        ["spec.strategy.rollingUpdate"]
    );
    let mut input = web_deployment();
    input["spec"]["strategy"]["rollingUpdate"] =
        json!({"maxSurge": "x%", "maxUnavailable": "150%"});
    assert_eq!(
        fields(&decode_errors(input)),
        [
            "spec.strategy.rollingUpdate.maxSurge",
            "spec.strategy.rollingUpdate.maxUnavailable"
        ]
    );
}

#[test]
fn rollout_percentages_round_surge_up_and_unavailable_down() {
    let rolling = |surge: IntOrString, unavailable: IntOrString| DeploymentStrategy {
        type_: Some(DeploymentStrategyType::RollingUpdate),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(surge),
            max_unavailable: Some(unavailable),
        }),
    };
    let pct = |s: &str| IntOrString::String(s.to_owned());
    assert_eq!(
        max_surge_and_unavailable(10, &rolling(pct("25%"), pct("25%"))),
        Ok((3, 2))
    );
    assert_eq!(
        max_surge_and_unavailable(3, &rolling(pct("25%"), pct("25%"))),
        Ok((1, 0))
    );
    assert_eq!(
        max_surge_and_unavailable(1, &rolling(pct("0%"), pct("25%"))),
        Ok((0, 1)),
        "when both come out 0, one pod may be unavailable"
    );
    assert_eq!(
        max_surge_and_unavailable(4, &rolling(IntOrString::Int(2), IntOrString::Int(9))),
        Ok((2, 4))
    );
    assert_eq!(
        max_surge_and_unavailable(10, &DeploymentStrategy::default()),
        Ok((3, 2)),
        "absent budgets are the defaults"
    );
    let recreate = DeploymentStrategy {
        type_: Some(DeploymentStrategyType::Recreate),
        rolling_update: None,
    };
    assert_eq!(max_surge_and_unavailable(5, &recreate), Ok((0, 0)));
    assert!(max_surge_and_unavailable(5, &rolling(pct("abc"), pct("1%"))).is_err());
}

#[test]
fn a_kind_or_api_version_that_does_not_fit_is_refused() {
    let mut input = web_deployment();
    input["apiVersion"] = json!("v1");
    assert_eq!(fields(&decode_errors(input)), ["apiVersion"]);

    let errors = decode(Some(Kind::Service), web_deployment()).expect_err("wrong kind");
    assert_eq!(
        errors,
        [FieldError::new(
            "kind",
            "is \"Deployment\", but this endpoint takes Service"
        )]
    );

    let errors = decode_errors(
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "x"}}),
    );
    assert_eq!(fields(&errors), ["kind"]);
    assert!(errors[0].reason.contains("unknown kind"));

    assert_eq!(
        fields(&decode_errors(json!({"metadata": {"name": "x"}}))),
        ["kind", "apiVersion"]
    );
    assert_eq!(fields(&decode_errors(json!([1, 2]))), [""]);
}

#[test]
fn services_refuse_bad_ports_and_node_ports() {
    let errors = decode_errors(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web.app"},
        "spec": {"ports": [
            {"port": 80, "nodePort": 30080},
            {"name": "a", "port": 0, "targetPort": "Not_A_Name"}
        ], "clusterIP": "10.43.0.9", "clusterIPs": ["10.43.0.8"]}
    }));
    assert_eq!(
        fields(&errors),
        [
            "metadata.name",
            "spec.ports[0].name",
            "spec.ports[0].nodePort",
            "spec.ports[1].port",
            "spec.ports[1].targetPort",
            "spec.clusterIPs[0]"
        ]
    );
    let errors = decode_errors(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "ports": [
            {"name": "a", "port": 80, "nodePort": 70000},
            {"name": "b", "port": 81, "nodePort": 30080}
        ]}
    }));
    assert_eq!(fields(&errors), ["spec.ports[0].nodePort"]);
    let errors = decode_errors(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "ExternalName", "externalName": "example.com"}
    }));
    assert!(errors.iter().any(|e| e.field == "spec.type"), "{errors:?}");
}

#[test]
fn configmap_and_secret_keys_and_encodings_are_checked() {
    let errors = decode_errors(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
        "data": {"..": "x", "ok": "y"}, "binaryData": {"ok": "!!"}
    }));
    assert_eq!(
        fields(&errors),
        ["data[..]", "binaryData[ok]", "binaryData[ok]"]
    );
    let errors = decode_errors(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"password": "not base64!"}, "stringData": {"bad key": "v"}
    }));
    assert_eq!(fields(&errors), ["data[password]", "stringData[bad key]"]);
}

#[test]
fn config_map_and_secret_volumes_refuse_escaping_paths_and_odd_modes() {
    let errors = decode_errors(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [
                {"name": "conf", "configMap": {"name": "settings", "defaultMode": 1024, "items": [
                    {"key": "a", "path": "ok/a.conf", "mode": 384},
                    {"key": "", "path": "../escape"},
                    {"key": "b", "path": "..data"},
                ]}},
                {"name": "keys", "secret": {"secretName": "db", "items": [
                    {"key": "k", "path": "/etc/passwd", "mode": -1},
                ]}},
            ],
        }
    }));
    assert_eq!(
        fields(&errors),
        [
            "spec.volumes[0].configMap.defaultMode",
            "spec.volumes[0].configMap.items[1].key",
            "spec.volumes[0].configMap.items[1].path",
            "spec.volumes[0].configMap.items[2].path",
            "spec.volumes[1].secret.items[0].path",
            "spec.volumes[1].secret.items[0].mode",
        ]
    );
}

#[test]
fn hpas_refuse_unscalable_targets_and_inverted_bounds() {
    let errors = decode_errors(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h"},
        "spec": {
            "scaleTargetRef": {"kind": "StatefulSet", "name": ""},
            "minReplicas": 5, "maxReplicas": 2,
            "metrics": [{"type": "Resource", "resource": {"name": "gpu", "target": {"type": "Utilization"}}}]
        }
    }));
    assert_eq!(
        fields(&errors),
        [
            "spec.scaleTargetRef.kind",
            "spec.scaleTargetRef.name",
            "spec.maxReplicas",
            "spec.metrics[0].resource.name",
            "spec.metrics[0].resource.target.averageUtilization"
        ]
    );
}

#[test]
fn the_openapi_schemas_cover_every_kind_and_refuse_unknown_fields() {
    let schemas = schema::schemas();
    let names: Vec<&str> = schemas.iter().map(|(name, _)| name.as_str()).collect();
    for kind in Kind::all() {
        assert!(names.contains(&kind.name()), "{kind} has no schema");
    }
    for nested in [
        "Container",
        "Probe",
        "ObjectMeta",
        "IntOrString",
        "ServicePort",
    ] {
        assert!(names.contains(&nested), "{nested} has no schema");
    }
    let json = serde_json::to_value(
        schemas
            .iter()
            .find(|(name, _)| name == "Deployment")
            .map(|(_, schema)| schema)
            .expect("Deployment"),
    )
    .expect("serialisable");
    assert_eq!(json["additionalProperties"], false);
    let meta = serde_json::to_value(
        &schemas
            .iter()
            .find(|(name, _)| name == "ObjectMeta")
            .expect("meta")
            .1,
    )
    .expect("serialisable");
    assert_eq!(
        meta["properties"]["creationTimestamp"]["format"],
        "date-time"
    );
    assert_ne!(
        meta["properties"]["labels"]["additionalProperties"], false,
        "maps stay open"
    );
}

#[test]
fn typed_objects_made_in_code_pass_their_own_validation() {
    let mut config = ConfigMap::named("settings");
    config.data.insert("key".into(), "value".into());
    let value = serde_json::to_value(&config).expect("serialisable");
    assert_eq!(value["apiVersion"], "v1");
    let decoded = decode(Some(Kind::ConfigMap), value).expect("valid");
    assert_eq!(
        from_value::<ConfigMap>(decoded.value).expect("typed"),
        config
    );
}

#[test]
fn what_kubectl_create_dry_run_writes_is_accepted() {
    let output = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"creationTimestamp":null,
        "labels":{"app":"web"},"name":"web"},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"web"}},
        "strategy":{},"template":{"metadata":{"creationTimestamp":null,"labels":{"app":"web"}},
        "spec":{"containers":[{"image":"nginx","name":"nginx","resources":{},
        "securityContext":{"runAsNonRoot":true},"terminationMessagePolicy":"File"}],
        "securityContext":{},"schedulerName":"default-scheduler"}}},"status":{}}"#;
    let value: Value = serde_json::from_str(output).expect("json");
    let deployment: Deployment = decode_as(value).expect("valid");
    assert_eq!(
        deployment.spec.strategy.and_then(|s| s.type_),
        Some(DeploymentStrategyType::RollingUpdate)
    );
}

/// A Deployment whose pod and container carry a `securityContext` with
/// every field Kubernetes' types have, as hardened manifests do.
fn hardened_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {
                    "labels": {"app": "web"},
                    "annotations": {"container.apparmor.security.beta.kubernetes.io/web": "runtime/default"}
                },
                "spec": {
                    "hostNetwork": false, "hostPID": false, "hostIPC": false,
                    "securityContext": {
                        "runAsUser": 1000, "runAsGroup": 3000, "runAsNonRoot": true,
                        "fsGroup": 2000, "fsGroupChangePolicy": "OnRootMismatch",
                        "supplementalGroups": [4000], "supplementalGroupsPolicy": "Merge",
                        "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}],
                        "seccompProfile": {"type": "RuntimeDefault"},
                        "appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-web"},
                        "seLinuxOptions": {"type": "container_t", "level": "s0:c123,c456"},
                        "windowsOptions": {"runAsUserName": "ContainerUser"}
                    },
                    "containers": [{
                        "name": "web",
                        "image": "nginx:1.27",
                        "ports": [{"containerPort": 8080, "hostPort": 0}],
                        "securityContext": {
                            "runAsUser": 1000, "runAsGroup": 3000, "runAsNonRoot": true,
                            "readOnlyRootFilesystem": true,
                            "allowPrivilegeEscalation": false,
                            "privileged": false,
                            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                            "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/web.json"},
                            "appArmorProfile": {"type": "RuntimeDefault"},
                            "procMount": "Default",
                            "seLinuxOptions": {"level": "s0:c123,c456"},
                            "windowsOptions": {"hostProcess": false}
                        }
                    }]
                }
            }
        }
    })
}

#[test]
fn a_manifest_with_every_security_context_field_decodes_unchanged() {
    let decoded = decode_and_round_trip(hardened_deployment());
    let deployment: Deployment = from_value(decoded.value).expect("typed");
    let spec = &deployment.spec.template.spec;
    let context = spec.security_context.as_ref().expect("pod context");
    assert_eq!(context.run_as_user, Some(1000));
    assert_eq!(
        context.seccomp_profile.as_ref().and_then(|p| p.type_),
        Some(pod::SeccompProfileType::RuntimeDefault)
    );
    let container = spec.containers[0].security_context.as_ref().expect("set");
    assert_eq!(
        container.capabilities.as_ref().map(|c| c.drop.clone()),
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(container.proc_mount, Some(pod::ProcMountType::Default));
}

#[test]
fn security_context_mistakes_are_all_reported_with_their_paths() {
    let mut manifest = hardened_deployment();
    let spec = &mut manifest["spec"]["template"]["spec"];
    spec["securityContext"]["runAsUser"] = json!(-1);
    spec["securityContext"]["sysctls"] = json!([{"name": "Net..bad", "value": "1"}]);
    spec["securityContext"]["seccompProfile"] = json!({"type": "Localhost"});
    spec["containers"][0]["securityContext"]["privileged"] = json!(true);
    spec["containers"][0]["securityContext"]["appArmorProfile"] =
        json!({"type": "RuntimeDefault", "localhostProfile": "x"});
    let errors = decode_errors(manifest);
    assert_eq!(
        fields(&errors),
        [
            "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation",
            "spec.template.spec.containers[0].securityContext.appArmorProfile.localhostProfile",
            "spec.template.spec.securityContext.runAsUser",
            "spec.template.spec.securityContext.sysctls[0].name",
            "spec.template.spec.securityContext.seccompProfile.localhostProfile",
        ]
    );
}

#[test]
fn unknown_security_context_fields_and_values_are_refused_with_their_paths() {
    let mut manifest = hardened_deployment();
    let spec = &mut manifest["spec"]["template"]["spec"];
    spec["securityContext"]["runAsUsr"] = json!(1000);
    spec["containers"][0]["securityContext"]["capabilities"]["remove"] = json!(["ALL"]);
    let errors = decode_errors(manifest.clone());
    assert_eq!(
        fields(&errors),
        [
            "spec.template.spec.containers[0].securityContext.capabilities.remove",
            "spec.template.spec.securityContext.runAsUsr",
        ]
    );
    let mut manifest = hardened_deployment();
    manifest["spec"]["template"]["spec"]["containers"][0]["securityContext"]["procMount"] =
        json!("Everything");
    let errors = decode_errors(manifest);
    assert_eq!(
        fields(&errors),
        ["spec.template.spec.containers[0].securityContext.procMount"]
    );
}

#[test]
fn a_pod_a_node_runs_is_deleted_with_its_grace_and_others_at_once() {
    let mut pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}
    }))
    .unwrap();
    assert_eq!(pod.deletion_grace(None), 0, "no node runs it");
    pod.spec.node_name = Some("n1".into());
    assert_eq!(pod.deletion_grace(None), 30, "Kubernetes' default");
    pod.spec.termination_grace_period_seconds = Some(5);
    assert_eq!(pod.deletion_grace(None), 5);
    assert_eq!(pod.deletion_grace(Some(60)), 60, "the caller's choice");
    assert_eq!(pod.deletion_grace(Some(0)), 0);
    pod.metadata.deletion_timestamp = Some("2030-01-01T00:00:00Z".into());
    pod.metadata.deletion_grace_period_seconds = Some(5);
    assert_eq!(pod.deletion_grace(Some(60)), 5, "a deletion only shortens");
    pod.metadata.deletion_timestamp = None;
    pod.status = Some(pod::PodStatus {
        phase: Some(pod::PodPhase::Succeeded),
        ..Default::default()
    });
    assert_eq!(pod.deletion_grace(None), 0, "nothing is left to stop");
}

#[test]
fn stored_text_reads_back_as_from_value_reads_it_with_the_same_errors() {
    let stored = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "tenant": "acme", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1"}], "nodeName": "n1"},
        "status": {"phase": "Running"}
    });
    let text = stored.to_string();
    let fast: Pod = from_slice(text.as_bytes()).expect("a stored pod reads back");
    let slow: Pod = from_value(stored).expect("a stored pod reads back");
    assert_eq!(fast, slow);

    let unknown = br#"{"metadata": {"name": "web"}, "spec": {"replicaz": 3}}"#;
    let errors = from_slice::<Pod>(unknown).unwrap_err();
    assert_eq!(errors[0].field, "spec.replicaz");
    assert_eq!(errors[0].reason, "unknown field");
    let wrong_type = br#"{"metadata": {"name": 7}}"#;
    assert_eq!(
        from_slice::<Pod>(wrong_type).unwrap_err()[0].field,
        "metadata.name"
    );
    assert!(from_slice::<Pod>(b"{not json").is_err());
}
