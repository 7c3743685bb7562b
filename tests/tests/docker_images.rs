//! Images from a real registry that asks for a password, on the host's real
//! Docker engine with a real server and agent: a pod pulls through its
//! `imagePullSecrets` with kubelet's events; without them, or with a tag
//! the registry does not have, it waits in `ImagePullBackOff` with the
//! registry's own message.

use berth_tests::cluster::items;
use berth_tests::docker_cluster::DockerCluster;
use berth_tests::registry::Registry;
use serde_json::{Value, json};

/// A pod of one sleeping container of `image`, pulled by `policy`, with
/// the pull Secrets `secrets`.
fn pod_spec(image: &str, policy: &str, secrets: &[&str]) -> Value {
    json!({
        "containers": [{
            "name": "main",
            "image": image,
            "imagePullPolicy": policy,
            "command": ["sleep", "3600"],
            "resources": {"limits": {"memory": "32Mi", "cpu": "100m"}},
        }],
        "imagePullSecrets": secrets.iter().map(|name| json!({"name": name})).collect::<Vec<_>>(),
    })
}

/// The reasons and messages of the events about pod `name`, in the order
/// they were last written.
async fn pod_events(cluster: &DockerCluster, name: &str) -> Vec<(String, String)> {
    let (status, list) = cluster
        .admin
        .get(&format!("/api/v1/tenants/{}/events", cluster.tenant))
        .await;
    assert_eq!(status, 200, "{list}");
    let mut events: Vec<Value> = items(&list)
        .into_iter()
        .filter(|event| event["involvedObject"]["name"] == name)
        .collect();
    // Timestamps have whole seconds; the store's revisions give the order.
    let revision = |event: &Value| {
        event["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|rv| rv.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    };
    events.sort_by_key(revision);
    events
        .iter()
        .map(|event| {
            (
                event["reason"].as_str().unwrap_or_default().to_owned(),
                event["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until pod `name`'s container waits with `reason`, and answers its
/// message.
async fn waiting_with(cluster: &DockerCluster, name: &str, reason: &str) -> String {
    let pod = cluster
        .admin
        .eventually(&cluster.pod(name), 60, reason, |pod| {
            pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == reason
        })
        .await;
    pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_pulls_from_a_registry_that_asks_for_a_password_through_its_pull_secret() {
    let cluster = DockerCluster::start().await;
    let mut registry = Registry::start("puller", "pull-secret-1");
    let image = registry.push_test_image("berth-test/private:1");
    let (status, body) = cluster
        .admin
        .post(
            &format!("/api/v1/tenants/{}/secrets", cluster.tenant),
            registry.pull_secret("registry"),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Without the Secret the registry refuses the pull: the pod waits with
    // the registry's message, then in back-off.
    cluster
        .create_pod("anonymous", pod_spec(&image, "Always", &[]))
        .await;
    let message = waiting_with(&cluster, "anonymous", "ImagePullBackOff").await;
    assert!(
        message.starts_with(&format!("Back-off pulling image \"{image}\"")),
        "{message}"
    );
    assert!(
        message.contains("no basic auth credentials") || message.contains("unauthorized"),
        "the registry's refusal: {message}"
    );

    // With it, the pull goes through, with kubelet's events.
    cluster
        .create_pod("private", pod_spec(&image, "Always", &["registry"]))
        .await;
    let running = cluster.running("private", 90).await;
    let status = &running["status"]["containerStatuses"][0];
    assert_eq!(status["image"], json!(image), "{running}");
    assert!(
        status["imageID"]
            .as_str()
            .is_some_and(|id| id.starts_with("sha256:")),
        "{running}"
    );
    let events = pod_events(&cluster, "private").await;
    let reasons: Vec<&str> = events.iter().map(|(reason, _)| reason.as_str()).collect();
    let pulling = reasons.iter().position(|r| *r == "Pulling");
    let pulled = reasons.iter().position(|r| *r == "Pulled");
    assert!(
        pulling.is_some() && pulled > pulling,
        "Pulling then Pulled: {events:?}"
    );
    assert!(
        events.contains(&("Pulling".into(), format!("Pulling image \"{image}\""))),
        "{events:?}"
    );
    assert!(
        events.iter().any(|(reason, message)| reason == "Pulled"
            && message.starts_with(&format!("Successfully pulled image \"{image}\" in "))),
        "{events:?}"
    );
    assert!(reasons.contains(&"Started"), "{events:?}");

    // A tag the registry does not have: ErrImagePull with the registry's
    // message, then ImagePullBackOff, and the events say so.
    let (repository, _) = image.rsplit_once(':').expect("a tag");
    let wrong = format!("{repository}:nope");
    cluster
        .create_pod("wrong-tag", pod_spec(&wrong, "IfNotPresent", &["registry"]))
        .await;
    let message = waiting_with(&cluster, "wrong-tag", "ImagePullBackOff").await;
    assert!(
        message.contains(&format!("failed to pull image \"{wrong}\"")),
        "{message}"
    );
    assert!(
        message.contains("manifest unknown") || message.contains("not found"),
        "the registry's own words: {message}"
    );
    let events = pod_events(&cluster, "wrong-tag").await;
    assert!(
        events
            .iter()
            .any(|(reason, message)| reason == "Failed" && message == "Error: ErrImagePull"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|(reason, message)| reason == "BackOff"
            && message == &format!("Back-off pulling image \"{wrong}\"")),
        "{events:?}"
    );
}
