//! A Docker agent that falls silent while its containers keep running: a
//! real server with short node lifecycle settings, the Docker agent frozen
//! with SIGSTOP past the grace period, its pods evicted and replaced. When
//! it wakes, the evicted pods' containers go and exactly the desired
//! number of containers run, none twice.

use std::collections::BTreeSet;
use std::time::Duration;

use berth_tests::cluster::{deployment, items, ready_status};
use berth_tests::docker::{TEST_IMAGE, containers_with_label};
use berth_tests::docker_cluster::{DockerCluster, container_status, one_container, unique};
use berth_tests::process::AgentProcess;
use serde_json::{Value, json};
use tokio::time::Instant;

/// Short enough for a test; the defaults are 40 s and 5 min.
const LIFECYCLE: [&str; 4] = ["--node-monitor-grace", "3s", "--pod-eviction-timeout", "3s"];

fn uid(pod: &Value) -> String {
    pod["metadata"]["uid"]
        .as_str()
        .expect("a pod uid")
        .to_owned()
}

fn running_on(pod: &Value, node: &str) -> bool {
    pod["spec"]["nodeName"] == node
        && pod["status"]["phase"] == "Running"
        && ready_status(pod).as_deref() == Some("True")
        && container_status(pod)["state"]["running"].is_object()
}

/// Waits until the Docker node's Ready condition is `status`.
async fn node_ready_is(cluster: &DockerCluster, status: &str) {
    cluster
        .admin
        .eventually(
            &format!("/api/v1/nodes/{}", cluster.node),
            30,
            &format!("the node's Ready condition is {status}"),
            |node| ready_status(node).as_deref() == Some(status),
        )
        .await;
}

/// Whether a container of the engine is running.
fn is_running(id: &str) -> bool {
    berth_tests::docker::docker(&["inspect", "--format", "{{.State.Running}}", id]).trim() == "true"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_agent_wakes_to_remove_its_evicted_pods_containers_and_runs_no_duplicates() {
    let cluster = DockerCluster::start_with(&LIFECYCLE).await;
    // A second node that stays Ready: with no Ready node at all, nothing
    // is evicted (Kubernetes' full disruption).
    let bystander = unique("sim-");
    let _bystander = AgentProcess::sim(
        &cluster.server,
        &bystander,
        1,
        &["--heartbeat-ms", "500", "--sim-start-delay-ms", "100"],
    );
    let node = cluster.node.clone();
    let mut web = deployment("web", 2, TEST_IMAGE);
    web["spec"]["template"]["spec"] = json!({
        "containers": [one_container(&["sleep", "3600"])],
        "terminationGracePeriodSeconds": 1,
        // Only the Docker node runs them: the replacements wait for it.
        "nodeSelector": {"kubernetes.io/hostname": node},
    });
    cluster.create_deployment(web).await;
    let list = cluster
        .admin
        .eventually(
            &cluster.pods(),
            90,
            "two pods running on the Docker node",
            |list| {
                let pods = items(list);
                pods.len() == 2 && pods.iter().all(|p| running_on(p, &node))
            },
        )
        .await;
    let evicted: BTreeSet<String> = items(&list).iter().map(uid).collect();
    assert_eq!(
        cluster.cleanup.containers().len(),
        2,
        "one container per pod"
    );

    cluster.agent.pause();
    let silent = Instant::now();
    node_ready_is(&cluster, "Unknown").await;
    // Evicted and replaced; the replacements wait for the node.
    let list = cluster
        .admin
        .eventually(
            &cluster.pods(),
            60,
            "both pods replaced by new ones",
            |list| {
                let pods = items(list);
                pods.len() == 2 && pods.iter().all(|p| !evicted.contains(&uid(p)))
            },
        )
        .await;
    for pod in items(&list) {
        assert_ne!(pod["status"]["phase"], "Running", "{pod}");
    }
    // Frozen, the agent left the evicted pods' containers running.
    let left = cluster.cleanup.containers();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|id| is_running(id)), "{left:?}");
    assert!(
        silent.elapsed() >= Duration::from_secs(2),
        "{:?}",
        silent.elapsed()
    );

    cluster.agent.resume();
    node_ready_is(&cluster, "True").await;
    let list = cluster
        .admin
        .eventually(
            &cluster.pods(),
            90,
            "the replacements run on the Docker node",
            |list| {
                let pods = items(list);
                pods.len() == 2
                    && pods
                        .iter()
                        .all(|p| running_on(p, &node) && !evicted.contains(&uid(p)))
            },
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for old in &evicted {
        while !containers_with_label(&format!("berth.dev/pod-uid={old}")).is_empty() {
            assert!(
                Instant::now() < deadline,
                "the evicted pod {old}'s container is still there"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Settled: one running container per replacement, and nothing more
    // comes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let containers = cluster.cleanup.containers();
    assert_eq!(containers.len(), 2, "{containers:?}");
    assert!(containers.iter().all(|id| is_running(id)), "{containers:?}");
    let (_, now) = cluster.admin.get(&cluster.pods()).await;
    let pods = items(&now);
    assert_eq!(pods.len(), 2, "{now}");
    for pod in &pods {
        assert!(running_on(pod, &node), "{pod}");
        let id = container_status(pod)["containerID"]
            .as_str()
            .and_then(|id| id.strip_prefix("docker://"))
            .unwrap_or_default()
            .to_owned();
        assert!(containers.contains(&id), "{id} of {pod} in {containers:?}");
        assert_eq!(container_status(pod)["restartCount"], 0, "{pod}");
    }
    let current: BTreeSet<String> = items(&list).iter().map(uid).collect();
    assert_eq!(current, pods.iter().map(uid).collect(), "the same pods");
}
