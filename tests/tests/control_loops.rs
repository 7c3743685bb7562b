//! Desired state turning into running pods end to end: a real server with
//! its controllers and scheduler, and `berth agent --runtime sim` standing
//! in for three nodes.

use std::collections::BTreeMap;

use berth_tests::cluster::{SimCluster, create, deployment, items};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_of_ten_reaches_ten_available_pods_spread_over_three_sim_nodes() {
    let cluster = SimCluster::start(&[]).await;
    let admin = &cluster.admin;

    create(
        admin,
        "/api/v1/tenants/acme/deployments",
        deployment("web", 10, "busybox:1"),
    )
    .await;
    let web = admin
        .eventually(
            "/api/v1/tenants/acme/deployments/web",
            60,
            "10 available",
            |d| d["status"]["availableReplicas"] == 10 && d["status"]["updatedReplicas"] == 10,
        )
        .await;
    assert_eq!(web["status"]["replicas"], 10, "{web}");

    let (_, pods) = admin.get("/api/v1/tenants/acme/pods").await;
    let pods = pods["items"].as_array().unwrap().clone();
    assert_eq!(pods.len(), 10);
    let mut per_node = BTreeMap::<String, usize>::new();
    for pod in &pods {
        assert_eq!(pod["status"]["phase"], "Running", "{pod}");
        *per_node
            .entry(pod["spec"]["nodeName"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "spread over every node: {per_node:?}");
    assert!(
        per_node.values().all(|n| (3..=4).contains(n)),
        "evenly spread: {per_node:?}"
    );

    // Users see what the controllers and the scheduler did.
    let events = admin
        .eventually(
            "/api/v1/tenants/acme/events",
            10,
            "ScalingReplicaSet, SuccessfulCreate and Scheduled events",
            |list| {
                let count =
                    |reason: &str| items(list).iter().filter(|e| e["reason"] == reason).count();
                count("ScalingReplicaSet") >= 1
                    && count("SuccessfulCreate") == 10
                    && count("Scheduled") == 10
            },
        )
        .await;
    let scaled = items(&events)
        .into_iter()
        .find(|e| e["reason"] == "ScalingReplicaSet")
        .unwrap();
    assert_eq!(scaled["involvedObject"]["kind"], "Deployment", "{scaled}");
    assert!(
        scaled["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Scaled up replica set web-") && m.ends_with(" to 10")),
        "{scaled}"
    );

    // Scaling to 0 removes every pod; scaling back brings ten again.
    let (status, body) = admin
        .patch(
            "/api/v1/tenants/acme/deployments/web",
            json!({"spec": {"replicas": 0}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    admin
        .eventually("/api/v1/tenants/acme/pods", 60, "no pods", |list| {
            list["items"].as_array().is_some_and(Vec::is_empty)
        })
        .await;
    admin
        .eventually(
            "/api/v1/tenants/acme/events",
            10,
            "SuccessfulDelete events",
            |list| {
                items(list)
                    .iter()
                    .filter(|e| e["reason"] == "SuccessfulDelete")
                    .count()
                    == 10
            },
        )
        .await;
    let (status, body) = admin
        .patch(
            "/api/v1/tenants/acme/deployments/web",
            json!({"spec": {"replicas": 10}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    admin
        .eventually(
            "/api/v1/tenants/acme/deployments/web",
            60,
            "10 available again",
            |d| d["status"]["availableReplicas"] == 10,
        )
        .await;
}
