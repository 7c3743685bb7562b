//! Every manifest in `examples/` applies as it is, its Deployments become
//! available (on sim nodes), and applying it again changes nothing.

use berth_tests::cluster::{SimCluster, TENANT};
use serde_json::Value;

/// Applies `file` (a path under the workspace's `examples/`) and answers
/// the apply's results.
async fn apply(cluster: &SimCluster, file: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let response = cluster
        .admin
        .request(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/{TENANT}/apply"),
        )
        .header("Content-Type", "application/yaml")
        .body(body)
        .send()
        .await
        .expect("applying");
    let status = response.status();
    let answer: Value = response.json().await.expect("the apply's answer");
    assert_eq!(status, 200, "{file}: {answer}");
    answer["results"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_applies_as_it_is_becomes_available_and_applies_again_unchanged() {
    let cluster = SimCluster::start(&[]).await;
    let files = [
        "web-app.yaml",
        "worker.yaml",
        "volume.yaml",
        "kubernetes-nginx.yaml",
    ];
    let mut deployments = Vec::new();
    for file in files {
        for result in apply(&cluster, file).await {
            assert_eq!(result["action"], "created", "{file}: {result}");
            if result["kind"] == "Deployment" {
                deployments.push(result["name"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    assert_eq!(deployments, ["web", "worker", "notes", "nginx-deployment"]);
    for name in &deployments {
        cluster
            .admin
            .eventually(
                &format!("/api/v1/tenants/{TENANT}/deployments/{name}"),
                30,
                &format!("{name} available"),
                |d| {
                    let wanted = d["spec"]["replicas"].as_i64().unwrap_or(1);
                    d["status"]["availableReplicas"].as_i64() == Some(wanted)
                },
            )
            .await;
    }
    for file in files {
        for result in apply(&cluster, file).await {
            assert_eq!(result["action"], "unchanged", "{file}: {result}");
        }
    }
}
