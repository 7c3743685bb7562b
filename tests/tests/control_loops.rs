//! Desired state turning into running pods end to end: a real server with
//! its controllers and scheduler, and `berth agent --runtime sim` standing
//! in for three nodes.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_tests::db::{TestBackend, TestDb};
use berth_tests::process::{AgentProcess, TestServer};
use berth_tests::rest::Api;
use serde_json::{Value, json};

const ADMIN: &str = "admin@berth.local";
const ADMIN_PASSWORD: &str = "admin-secret-1";

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web",
                    "image": image,
                    "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}},
                }]},
            },
        },
    })
}

/// Polls `path` until `check` holds, for at most `seconds`.
async fn eventually(
    api: &Api,
    path: &str,
    seconds: u64,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let (status, body) = api.get(path).await;
        if status == 200 && check(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_of_ten_reaches_ten_available_pods_spread_over_three_sim_nodes() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = TestServer::start(
        &db.url,
        &["--admin-password", ADMIN_PASSWORD, "--controllers=true"],
    );
    let _agent = AgentProcess::sim(
        &server,
        "sim",
        3,
        &["--sim-start-delay-ms", "100", "--heartbeat-ms", "1000"],
    );
    let admin = Api::new(server.process.url(""))
        .login(ADMIN, ADMIN_PASSWORD)
        .await;
    let (status, body) = admin.post("/api/v1/tenants", json!({"name": "acme"})).await;
    assert_eq!(status, 201, "{body}");
    eventually(&admin, "/api/v1/nodes", 30, "three Ready nodes", |list| {
        list["items"]
            .as_array()
            .is_some_and(|nodes| nodes.len() == 3)
    })
    .await;

    let (status, body) = admin
        .post(
            "/api/v1/tenants/acme/deployments",
            deployment(10, "busybox:1"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let web = eventually(
        &admin,
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

    // Scaling to 0 removes every pod; scaling back brings ten again.
    let (status, body) = admin
        .patch(
            "/api/v1/tenants/acme/deployments/web",
            json!({"spec": {"replicas": 0}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(&admin, "/api/v1/tenants/acme/pods", 60, "no pods", |list| {
        list["items"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    let (status, body) = admin
        .patch(
            "/api/v1/tenants/acme/deployments/web",
            json!({"spec": {"replicas": 10}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(
        &admin,
        "/api/v1/tenants/acme/deployments/web",
        60,
        "10 available again",
        |d| d["status"]["availableReplicas"] == 10,
    )
    .await;
}
