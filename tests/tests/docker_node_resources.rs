//! A Docker node's allocatable resources and pressure conditions, as a
//! user reads them over REST: a real server and a real `berth agent` on
//! the host's Docker engine, started with kubelet's `--system-reserved` and
//! `--eviction-hard`. The engine must be there: these tests fail, never
//! skip, without it.

use berth_api::quantity::Quantity;
use berth_tests::cluster::ready_status;
use berth_tests::docker::TEST_IMAGE;
use berth_tests::docker_cluster::DockerCluster;
use berth_tests::process::agent_refusal;
use serde_json::{Value, json};

const GI: i128 = 1 << 30;
const MI: i128 = 1 << 20;

/// A quantity of the node's status, as a number (CPU in millicores).
fn quantity(node: &Value, field: &str, resource: &str) -> i128 {
    let text = node["status"][field][resource]
        .as_str()
        .unwrap_or_else(|| panic!("status.{field}.{resource} in {node}"));
    let quantity = Quantity::parse(text).expect("a quantity");
    if resource == "cpu" {
        quantity.milli_value()
    } else {
        quantity.value()
    }
}

/// The node's condition of type `type_`.
fn condition<'a>(node: &'a Value, type_: &str) -> &'a Value {
    node["status"]["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {node}"))
}

fn has_condition(node: &Value, type_: &str, status: &str) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|all| {
        all.iter()
            .any(|c| c["type"] == type_ && c["status"] == status)
    })
}

fn tainted(node: &Value, key: &str) -> bool {
    node["spec"]["taints"].as_array().is_some_and(|taints| {
        taints
            .iter()
            .any(|t| t["key"] == key && t["effect"] == "NoSchedule")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_system_reserved_reports_allocatable_below_its_capacity() {
    // Thresholds as quantities, so that what is checked does not depend on
    // how full the test machine's disk is.
    let cluster = DockerCluster::start_with_flags(
        &[],
        &[
            "--system-reserved",
            "cpu=1,memory=2Gi",
            "--eviction-hard",
            "memory.available<100Mi,nodefs.available<1Gi",
        ],
    )
    .await;
    let path = format!("/api/v1/nodes/{}", cluster.node);
    let node = cluster
        .admin
        .eventually(&path, 30, "the node reports its memory pressure", |node| {
            has_condition(node, "MemoryPressure", "False")
        })
        .await;

    let cpu = quantity(&node, "capacity", "cpu");
    assert!(cpu >= 1000, "{node}");
    assert_eq!(quantity(&node, "allocatable", "cpu"), cpu - 1000, "{node}");
    // Less the reservation and the memory.available<100Mi threshold.
    let memory = quantity(&node, "capacity", "memory");
    assert_eq!(
        quantity(&node, "allocatable", "memory"),
        (memory - 2 * GI - 100 * MI).max(0),
        "{node}"
    );
    assert_eq!(node["status"]["allocatable"]["pods"], "110", "{node}");
    // Less the nodefs.available<1Gi threshold.
    let storage = quantity(&node, "capacity", "ephemeral-storage");
    assert_eq!(
        quantity(&node, "allocatable", "ephemeral-storage"),
        storage - GI,
        "{node}"
    );

    let memory_pressure = condition(&node, "MemoryPressure");
    assert_eq!(memory_pressure["reason"], "KubeletHasSufficientMemory");
    assert!(memory_pressure["lastHeartbeatTime"].is_string(), "{node}");
    assert!(memory_pressure["lastTransitionTime"].is_string(), "{node}");
    for type_ in ["DiskPressure", "PIDPressure"] {
        assert!(condition(&node, type_)["reason"].is_string(), "{node}");
    }
    assert!(
        !tainted(&node, "node.kubernetes.io/memory-pressure"),
        "{node}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_short_of_memory_is_tainted_and_keeps_new_best_effort_pods_pending() {
    // No machine has 100 TiB free: the threshold is crossed at once.
    let cluster =
        DockerCluster::start_with_flags(&[], &["--eviction-hard", "memory.available<100Ti"]).await;
    let path = format!("/api/v1/nodes/{}", cluster.node);
    let node = cluster
        .admin
        .eventually(
            &path,
            30,
            "the node is tainted for memory pressure",
            |node| {
                has_condition(node, "MemoryPressure", "True")
                    && tainted(node, "node.kubernetes.io/memory-pressure")
            },
        )
        .await;
    let memory_pressure = condition(&node, "MemoryPressure");
    assert_eq!(memory_pressure["reason"], "KubeletHasInsufficientMemory");
    let message = memory_pressure["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("memory.available") && message.contains("100Ti"),
        "{node}"
    );
    // Only memory was watched.
    assert!(has_condition(&node, "DiskPressure", "False"), "{node}");
    assert_eq!(quantity(&node, "allocatable", "memory"), 0, "{node}");
    assert_eq!(ready_status(&node).as_deref(), Some("True"), "{node}");

    // A pod that asks for nothing (BestEffort) is not sent there.
    cluster
        .create_pod(
            "hungry",
            json!({"containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sleep", "60"]}]}),
        )
        .await;
    let pod = cluster
        .admin
        .eventually(
            &cluster.pod("hungry"),
            30,
            "the scheduler says why the pod waits",
            |pod| {
                pod["status"]["conditions"].as_array().is_some_and(|all| {
                    all.iter()
                        .any(|c| c["type"] == "PodScheduled" && c["status"] == "False")
                })
            },
        )
        .await;
    let scheduled = pod["status"]["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == "PodScheduled"))
        .expect("PodScheduled");
    assert_eq!(scheduled["reason"], "Unschedulable", "{pod}");
    assert_eq!(
        scheduled["message"],
        "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/memory-pressure: }.",
        "{pod}"
    );
    // Heartbeats come and go; the pod still waits, the node stays Ready.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (_, pod) = cluster.admin.get(&cluster.pod("hungry")).await;
    assert_eq!(pod["status"]["phase"], "Pending", "{pod}");
    assert!(pod["spec"]["nodeName"].is_null(), "{pod}");
    let (_, node) = cluster.admin.get(&path).await;
    assert_eq!(ready_status(&node).as_deref(), Some("True"), "{node}");
    assert!(has_condition(&node, "MemoryPressure", "True"), "{node}");
}

#[test]
fn a_bad_reservation_or_threshold_names_its_flag_and_part_and_exits_2() {
    for (flag, value, part) in [
        ("--system-reserved", "cpu=lots", "cpu=lots"),
        ("--kube-reserved", "gpu=1", "gpu"),
        (
            "--eviction-hard",
            "memory.available>1Gi",
            "memory.available>1Gi",
        ),
        ("--eviction-pressure-transition-period", "soon", "soon"),
    ] {
        let stderr = agent_refusal(&["--runtime", "sim", "--name", "n1", flag, value]);
        assert!(
            stderr.contains(flag) && stderr.contains(part),
            "{flag}: {stderr}"
        );
    }
}
