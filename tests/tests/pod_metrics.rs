//! Pods' CPU and memory end to end: agents report their running
//! containers' use every 10 s (`ReportPodMetrics`), the server keeps 15
//! minutes of it, and `GET .../pods/{name}/metrics` and
//! `GET .../pods/metrics` answer it in Kubernetes' metrics shape. Over sim
//! nodes (steady synthetic figures) and once over the real Docker engine,
//! where a busy loop must show as CPU (that test fails, never skips,
//! without the engine).

use berth_tests::cluster::{SimCluster, TENANT, create, items};
use berth_tests::docker_cluster::{DockerCluster, one_container};
use berth_tests::rest::Api;
use serde_json::{Value, json};

/// A `"123m"` CPU quantity in cores.
fn cores(quantity: &Value) -> f64 {
    let text = quantity
        .as_str()
        .unwrap_or_else(|| panic!("no CPU in {quantity}"));
    let millis: f64 = text
        .strip_suffix('m')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("CPU {text:?} is not in millicores"));
    millis / 1000.0
}

/// A `"3456Ki"` memory quantity in bytes.
fn bytes(quantity: &Value) -> u64 {
    let text = quantity
        .as_str()
        .unwrap_or_else(|| panic!("no memory in {quantity}"));
    text.strip_suffix("Ki")
        .and_then(|n| n.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("memory {text:?} is not in Ki"))
}

/// The usage of the container named `name` in a `PodMetrics`.
fn usage<'a>(metrics: &'a Value, name: &str) -> Option<&'a Value> {
    metrics["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .map(|c| &c["usage"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_pods_figures_reach_the_metrics_api_and_stay_in_their_tenant() {
    let cluster = SimCluster::start(&[]).await;
    let admin = &cluster.admin;
    let pods = format!("/api/v1/tenants/{TENANT}/pods");
    create(
        admin,
        &pods,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
               "spec": {"containers": [{"name": "app", "image": "busybox"},
                                       {"name": "side", "image": "busybox"}]}}),
    )
    .await;
    let viewer = cluster.member("viewer@acme.test", "viewer").await;
    // Two reports 10 s apart, plus the pod's start.
    let metrics = viewer
        .eventually(
            &format!("{pods}/web/metrics"),
            40,
            "the pod's figures",
            |metrics| metrics["history"].as_array().is_some_and(|h| h.len() >= 2),
        )
        .await;
    assert_eq!(metrics["kind"], "PodMetrics", "{metrics}");
    assert_eq!(metrics["metadata"]["name"], "web");
    for container in ["app", "side"] {
        let figures = usage(&metrics, container).unwrap_or_else(|| panic!("{metrics}"));
        assert_eq!(figures["cpu"], "10m", "{metrics}");
        assert_eq!(bytes(&figures["memory"]), 16 << 20, "{metrics}");
    }
    assert_eq!(metrics["window"], "10s");
    let newest = metrics["history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned();
    assert_eq!(
        newest.map(|sample| sample["timestamp"].clone()),
        Some(metrics["timestamp"].clone()),
        "the latest figures are the newest of the history: {metrics}"
    );

    let list = viewer.get(&format!("{pods}/metrics")).await;
    assert_eq!(list.0, 200, "{}", list.1);
    assert_eq!(list.1["kind"], "PodMetricsList");
    let listed: Vec<Value> = items(&list.1);
    assert_eq!(listed.len(), 1, "{}", list.1);
    assert_eq!(listed[0]["metadata"]["name"], "web");
    assert!(listed[0].get("history").is_none(), "{}", list.1);

    // Someone of another tenant learns nothing, not even that the pod is there.
    admin
        .add_member("other", "viewer@other.test", "other-secret-1", "viewer")
        .await;
    let stranger = Api::new(cluster.server.process.url(""))
        .login("viewer@other.test", "other-secret-1")
        .await;
    let (status, body) = stranger.get(&format!("{pods}/web/metrics")).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = stranger.get(&format!("{pods}/metrics")).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = viewer.get(&format!("{pods}/nothing/metrics")).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_loop_on_docker_shows_as_cpu_and_memory_in_the_metrics_api() {
    let cluster = DockerCluster::start().await;
    let mut busy = one_container(&["sh", "-c", "while :; do :; done"]);
    busy["resources"]["limits"]["cpu"] = json!("500m");
    cluster
        .create_pod(
            "busy",
            json!({"containers": [busy], "terminationGracePeriodSeconds": 1}),
        )
        .await;
    cluster.running("busy", 90).await;
    let metrics = cluster
        .admin
        .eventually(
            &format!("{}/metrics", cluster.pod("busy")),
            25,
            "more than 0.1 cores of CPU",
            |metrics| usage(metrics, "main").is_some_and(|u| cores(&u["cpu"]) > 0.1),
        )
        .await;
    let figures = usage(&metrics, "main").expect("figures");
    assert!(
        cores(&figures["cpu"]) <= 0.6,
        "the 500m limit holds: {metrics}"
    );
    assert!(bytes(&figures["memory"]) > 0, "{metrics}");
    let (status, list) = cluster
        .admin
        .get(&format!("{}/metrics", cluster.pods()))
        .await;
    assert_eq!(status, 200, "{list}");
    assert!(
        items(&list)
            .iter()
            .any(|pod| pod["metadata"]["name"] == "busy"),
        "{list}"
    );
}
