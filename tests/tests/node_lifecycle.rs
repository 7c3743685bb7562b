//! Nodes that fall silent: a real server with its controllers, and
//! simulated nodes in agent processes that are killed or frozen. A silent
//! node turns NotReady with the unreachable taint, its pods are evicted and
//! come back Running on the other nodes, and a node that returns is Ready
//! again and drops the pods it no longer owns.

use std::collections::BTreeSet;
use std::time::Instant;

use berth_tests::cluster::{
    admin_with_tenant, create, deployment, items, metric, ready_status, server,
};
use berth_tests::db::{TestBackend, TestDb};
use berth_tests::process::{AgentProcess, TestServer, free_port};
use berth_tests::rest::Api;
use serde_json::{Value, json};

/// Short enough for a test; the defaults are 40 s and 5 min.
const LIFECYCLE: [&str; 4] = ["--node-monitor-grace", "3s", "--pod-eviction-timeout", "3s"];
const FAST_AGENT: [&str; 4] = ["--sim-start-delay-ms", "100", "--heartbeat-ms", "500"];

fn agent(server: &TestServer, name: &str, nodes: usize, metrics_port: Option<u16>) -> AgentProcess {
    let metrics = metrics_port.map(|port| format!("127.0.0.1:{port}"));
    let mut extra: Vec<&str> = FAST_AGENT.to_vec();
    if let Some(addr) = &metrics {
        extra.extend(["--metrics-addr", addr.as_str()]);
    }
    AgentProcess::sim(server, name, nodes, &extra)
}

fn node_of(pod: &Value) -> String {
    pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn unreachable_taint(node: &Value) -> bool {
    node["spec"]["taints"].as_array().is_some_and(|taints| {
        taints
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute")
    })
}

async fn three_ready_nodes(admin: &Api) {
    admin
        .eventually("/api/v1/nodes", 30, "three Ready nodes", |list| {
            let nodes = items(list);
            nodes.len() == 3
                && nodes
                    .iter()
                    .all(|n| ready_status(n).as_deref() == Some("True"))
        })
        .await;
}

/// A Deployment `web` whose pods get 3 s to stop when deleted.
fn web(replicas: i64) -> Value {
    let mut web = deployment("web", replicas, "busybox:1");
    web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(GRACE_SECONDS);
    web
}

const GRACE_SECONDS: u64 = 3;

fn terminating(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_string()
}

/// Waits until the Deployment `web` has `replicas` Running pods, none of
/// them on `avoid`, beside any that are terminating; answers them.
async fn running_elsewhere(admin: &Api, replicas: usize, avoid: &str, seconds: u64) -> Vec<Value> {
    let list = admin
        .eventually(
            "/api/v1/tenants/acme/pods",
            seconds,
            &format!("{replicas} pods Running, none on {avoid}"),
            |list| {
                let pods: Vec<Value> = items(list)
                    .into_iter()
                    .filter(|p| !terminating(p))
                    .collect();
                pods.len() == replicas
                    && pods
                        .iter()
                        .all(|p| p["status"]["phase"] == "Running" && node_of(p) != avoid)
            },
        )
        .await;
    items(&list)
        .into_iter()
        .filter(|p| !terminating(p))
        .collect()
}

/// Waits until the tenant has exactly `replicas` pods, none terminating:
/// the evicted ones are gone.
async fn only(admin: &Api, replicas: usize, seconds: u64, what: &str) {
    admin
        .eventually("/api/v1/tenants/acme/pods", seconds, what, |list| {
            let pods = items(list);
            pods.len() == replicas && !pods.iter().any(terminating)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pods_of_a_killed_node_come_back_running_on_the_other_nodes() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = server(&db.url, &LIFECYCLE);
    let _stay = agent(&server, "stay", 2, None);
    let mut lost = agent(&server, "lost", 1, None);
    let admin = admin_with_tenant(&server, "acme").await;
    three_ready_nodes(&admin).await;

    create(&admin, "/api/v1/tenants/acme/deployments", web(6)).await;
    admin
        .eventually(
            "/api/v1/tenants/acme/deployments/web",
            60,
            "6 available",
            |d| d["status"]["availableReplicas"] == 6,
        )
        .await;
    let (_, pods) = admin.get("/api/v1/tenants/acme/pods").await;
    let on_lost: BTreeSet<String> = items(&pods)
        .iter()
        .filter(|p| node_of(p) == "lost")
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(on_lost.len(), 2, "spread puts 2 of 6 on each node: {pods}");

    let killed = Instant::now();
    lost.kill();
    let node = admin
        .eventually(
            "/api/v1/nodes/lost",
            30,
            "the killed node turns Unknown and is tainted",
            |node| ready_status(node).as_deref() == Some("Unknown") && unreachable_taint(node),
        )
        .await;
    let not_ready_after = killed.elapsed();
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["reason"], "NodeStatusUnknown", "{node}");
    // The grace runs from the last heartbeat the leader saw, up to two
    // heartbeat intervals (500 ms) before the kill.
    assert!(
        not_ready_after.as_secs_f64() >= 2.0,
        "not before the 3 s grace: {not_ready_after:?}"
    );

    let pods = running_elsewhere(&admin, 6, "lost", 60).await;
    let names: BTreeSet<String> = pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.is_disjoint(&on_lost),
        "the lost node's pods were replaced: {names:?} vs {on_lost:?}"
    );
    // Evicted, they stay terminating while their node cannot stop them,
    // and go once their grace period is over.
    let (_, list) = admin.get("/api/v1/tenants/acme/pods").await;
    for pod in items(&list).iter().filter(|p| node_of(p) == "lost") {
        assert!(terminating(pod), "an evicted pod is terminating: {pod}");
    }
    only(
        &admin,
        6,
        10 + GRACE_SECONDS,
        "the evicted pods removed after their grace",
    )
    .await;
    admin
        .eventually(
            "/api/v1/tenants/acme/deployments/web",
            30,
            "6 available again",
            |d| d["status"]["availableReplicas"] == 6,
        )
        .await;

    // What happened is told to the pods' owners.
    let events = admin
        .eventually(
            "/api/v1/tenants/acme/events",
            10,
            "NodeNotReady and eviction events",
            |list| {
                let reasons: BTreeSet<String> = items(list)
                    .iter()
                    .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
                    .collect();
                reasons.contains("NodeNotReady") && reasons.contains("TaintManagerEviction")
            },
        )
        .await;
    for event in items(&events) {
        if event["reason"] == "TaintManagerEviction" {
            let pod = event["involvedObject"]["name"].as_str().unwrap();
            assert!(on_lost.contains(pod), "only the lost node's pods: {event}");
        }
    }

    // The node comes back: Ready, untainted, and nothing moves back.
    let _back = agent(&server, "lost", 1, None);
    admin
        .eventually(
            "/api/v1/nodes/lost",
            30,
            "the node is Ready again without the taint",
            |node| ready_status(node).as_deref() == Some("True") && !unreachable_taint(node),
        )
        .await;
    let ready_nodes = r#"berth_nodes{condition="Ready",status="True"}"#;
    let metrics = server.process.url("/metrics");
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while metric(&metrics, ready_nodes).await != Some(3.0) {
        assert!(Instant::now() < deadline, "berth_nodes shows 3 Ready nodes");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_that_returns_drops_the_pods_it_no_longer_owns() {
    let db = TestDb::new(TestBackend::Postgres).await;
    let server = server(&db.url, &LIFECYCLE);
    let _stay = agent(&server, "stay", 2, None);
    let metrics_port = free_port();
    let frozen = agent(&server, "frozen", 1, Some(metrics_port));
    let admin = admin_with_tenant(&server, "acme").await;
    three_ready_nodes(&admin).await;

    create(&admin, "/api/v1/tenants/acme/deployments", web(3)).await;
    running_elsewhere(&admin, 3, "none", 60).await;
    let agent_metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    assert_eq!(
        metric(&agent_metrics, "berth_agent_pods_running").await,
        Some(1.0),
        "one of the 3 pods runs on the frozen node"
    );

    // Frozen, as a host cut off from the network: its pods keep running
    // there, but the control plane hears nothing and replaces them.
    frozen.pause();
    running_elsewhere(&admin, 3, "frozen", 60).await;
    frozen.resume();
    admin
        .eventually(
            "/api/v1/nodes/frozen",
            30,
            "the node is Ready again without the taint",
            |node| ready_status(node).as_deref() == Some("True") && !unreachable_taint(node),
        )
        .await;
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let running = metric(&agent_metrics, "berth_agent_pods_running").await;
        if running == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the returned agent still runs a pod it no longer owns: {running:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Nothing came back to it, and the replacements stay.
    running_elsewhere(&admin, 3, "frozen", 5).await;
    only(&admin, 3, 10, "the evicted pod removed").await;
}
