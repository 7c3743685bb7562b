//! Container probes on the Docker agent, against the host's real engine
//! and a real server: a failing liveness probe restarts the container
//! (with kubelet's `Unhealthy` and `Killing` events), a failing readiness
//! probe takes the pod out of Ready without a restart and a passing one
//! brings it back, a startup probe holds the others and kills a run that
//! never starts. Exec, TCP and HTTP checks are each covered. Periods of
//! one second keep every test to seconds; every wait is bounded.

use berth_tests::cluster::{items, ready_status};
use berth_tests::docker::docker;
use berth_tests::docker_cluster::{DockerCluster, container_status, one_container, restart_count};
use serde_json::{Value, json};

/// A probe checked every second that turns after `failures` failures.
fn probe(handler: Value, failures: u32) -> Value {
    let mut probe = handler;
    probe["periodSeconds"] = json!(1);
    probe["failureThreshold"] = json!(failures);
    probe
}

fn exec(command: &[&str]) -> Value {
    json!({"exec": {"command": command}})
}

/// Waits until the tenant has an event on pod `pod` with `reason` whose
/// message starts with `prefix`, and answers it.
async fn event(cluster: &DockerCluster, pod: &str, reason: &str, prefix: &str) -> Value {
    let path = format!("/api/v1/tenants/{}/events", cluster.tenant);
    let matches = |event: &Value| {
        event["involvedObject"]["name"] == pod
            && event["reason"] == reason
            && event["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(prefix))
    };
    let list = cluster
        .admin
        .eventually(
            &path,
            60,
            &format!("a {reason} event on {pod} starting {prefix:?}"),
            |list| items(list).iter().any(matches),
        )
        .await;
    items(&list)
        .into_iter()
        .find(matches)
        .expect("the event just seen")
}

/// Waits until pod `name`'s container was restarted `times` times, and
/// answers the pod.
async fn restarted(cluster: &DockerCluster, name: &str, times: u64) -> Value {
    cluster
        .admin
        .eventually(
            &cluster.pod(name),
            60,
            &format!("{name}'s container restarted {times} times"),
            |pod| restart_count(pod) >= times,
        )
        .await
}

/// The status of pod condition `type_`.
fn condition(pod: &Value, type_: &str) -> Option<String> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?["status"]
        .as_str()
        .map(str::to_owned)
}

/// The engine's id of the pod's first container.
fn docker_id(pod: &Value) -> String {
    container_status(pod)["containerID"]
        .as_str()
        .and_then(|id| id.strip_prefix("docker://"))
        .unwrap_or_else(|| panic!("no container id in {pod}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_liveness_probe_restarts_the_container_with_kubelets_events() {
    let cluster = DockerCluster::start().await;
    // Healthy for three seconds, then the file the probe reads is gone.
    let mut main = one_container(&[
        "sh",
        "-c",
        "touch /tmp/healthy; sleep 3; rm /tmp/healthy; exec sleep 3600",
    ]);
    let mut liveness = probe(exec(&["cat", "/tmp/healthy"]), 2);
    // The probe's own grace period, not the pod's minute: `sleep` ignores
    // SIGTERM, so only the SIGKILL one second later ends it.
    liveness["terminationGracePeriodSeconds"] = json!(1);
    main["livenessProbe"] = liveness;
    cluster
        .create_pod(
            "unhealthy",
            json!({"terminationGracePeriodSeconds": 60, "containers": [main]}),
        )
        .await;
    let pod = restarted(&cluster, "unhealthy", 2).await;
    let last = &container_status(&pod)["lastState"]["terminated"];
    assert_eq!(
        last["exitCode"], 137,
        "killed after the probe's grace: {pod}"
    );

    let unhealthy = event(
        &cluster,
        "unhealthy",
        "Unhealthy",
        "Liveness probe failed: ",
    )
    .await;
    assert_eq!(unhealthy["type"], "Warning", "{unhealthy}");
    assert_eq!(
        unhealthy["message"],
        "Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory",
        "{unhealthy}"
    );
    let killing = event(
        &cluster,
        "unhealthy",
        "Killing",
        "Container main failed liveness probe, will be restarted",
    )
    .await;
    assert_eq!(killing["type"], "Normal", "{killing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readiness_probe_takes_the_pod_out_of_ready_and_back_without_a_restart() {
    let cluster = DockerCluster::start().await;
    let mut main = one_container(&["sleep", "3600"]);
    main["readinessProbe"] = probe(exec(&["cat", "/tmp/ready"]), 2);
    cluster
        .create_pod("gated", json!({"containers": [main]}))
        .await;
    let not_ready = |pod: &Value| {
        pod["status"]["phase"] == "Running"
            && container_status(pod)["state"]["running"].is_object()
            && container_status(pod)["ready"] == false
            && condition(pod, "ContainersReady").as_deref() == Some("False")
            && ready_status(pod).as_deref() == Some("False")
    };
    let pod = cluster
        .admin
        .eventually(
            &cluster.pod("gated"),
            60,
            "the pod runs, not Ready",
            not_ready,
        )
        .await;
    assert_eq!(container_status(&pod)["started"], true, "{pod}");
    let ready = pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["reason"], "ContainersNotReady", "{pod}");
    assert_eq!(
        ready["message"], "containers with unready status: [main]",
        "{pod}"
    );
    event(
        &cluster,
        "gated",
        "Unhealthy",
        "Readiness probe failed: cat: can't open '/tmp/ready'",
    )
    .await;

    // The test makes the probe pass, then fail again, inside the container.
    let id = docker_id(&pod);
    docker(&["exec", &id, "touch", "/tmp/ready"]);
    let pod = cluster.running("gated", 30).await;
    assert_eq!(container_status(&pod)["ready"], true, "{pod}");
    assert_eq!(condition(&pod, "ContainersReady").as_deref(), Some("True"));
    docker(&["exec", &id, "rm", "/tmp/ready"]);
    let pod = cluster
        .admin
        .eventually(
            &cluster.pod("gated"),
            30,
            "the pod is not Ready again",
            not_ready,
        )
        .await;
    assert_eq!(restart_count(&pod), 0, "readiness never restarts: {pod}");
    assert_eq!(docker_id(&pod), id, "the same container: {pod}");
    docker(&["exec", &id, "touch", "/tmp/ready"]);
    let pod = cluster.running("gated", 30).await;
    assert_eq!(restart_count(&pod), 0, "{pod}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_http_probes_reach_the_container_on_its_tenant_network() {
    let cluster = DockerCluster::start().await;
    // httpd listens only after three seconds.
    let mut web = one_container(&["sh", "-c", "sleep 3; exec httpd -f -p 8080 -h /www"]);
    web["ports"] = json!([{"name": "http", "containerPort": 8080}]);
    web["readinessProbe"] = probe(json!({"tcpSocket": {"port": "http"}}), 1);
    let mut liveness = probe(json!({"httpGet": {"path": "/index.html", "port": 8080}}), 3);
    liveness["initialDelaySeconds"] = json!(5);
    web["livenessProbe"] = liveness;
    cluster
        .create_pod("web", json!({"containers": [web]}))
        .await;
    // Serves, but the probe asks for a page it does not have.
    let mut lost = one_container(&["httpd", "-f", "-p", "8080", "-h", "/www"]);
    lost["livenessProbe"] = probe(json!({"httpGet": {"path": "/missing", "port": 8080}}), 2);
    cluster
        .create_pod(
            "lost",
            json!({"terminationGracePeriodSeconds": 1, "containers": [lost]}),
        )
        .await;

    let refused = event(
        &cluster,
        "web",
        "Unhealthy",
        "Readiness probe failed: dial tcp ",
    )
    .await;
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.ends_with(":8080: connect: connection refused")),
        "{refused}"
    );
    let web = cluster.running("web", 60).await;
    let pod_ip = web["status"]["podIP"].as_str().unwrap_or_default();
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("dial tcp {pod_ip}:8080"))),
        "the probe dialled the pod's address {pod_ip}: {refused}"
    );

    restarted(&cluster, "lost", 1).await;
    event(
        &cluster,
        "lost",
        "Unhealthy",
        "Liveness probe failed: HTTP probe failed with statuscode: 404",
    )
    .await;
    event(
        &cluster,
        "lost",
        "Killing",
        "Container main failed liveness probe, will be restarted",
    )
    .await;
    // The page that exists kept the other pod alive past its probes'
    // start.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (_, web) = cluster.admin.get(&cluster.pod("web")).await;
    assert_eq!(restart_count(&web), 0, "{web}");
    assert_eq!(ready_status(&web).as_deref(), Some("True"), "{web}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_startup_probe_holds_the_other_probes_and_kills_a_run_that_never_starts() {
    let cluster = DockerCluster::start().await;
    // Starts after three seconds; liveness would fail before that.
    let mut slow = one_container(&["sh", "-c", "sleep 3; touch /tmp/up; exec sleep 3600"]);
    slow["startupProbe"] = probe(exec(&["cat", "/tmp/up"]), 30);
    slow["livenessProbe"] = probe(exec(&["cat", "/tmp/up"]), 1);
    cluster
        .create_pod("slow", json!({"containers": [slow]}))
        .await;
    let mut never = one_container(&["sleep", "3600"]);
    never["startupProbe"] = probe(exec(&["cat", "/tmp/up"]), 2);
    cluster
        .create_pod(
            "never",
            json!({"terminationGracePeriodSeconds": 1, "containers": [never]}),
        )
        .await;

    let starting = cluster
        .admin
        .eventually(
            &cluster.pod("slow"),
            60,
            "the container runs, not started yet",
            |pod| {
                container_status(pod)["state"]["running"].is_object()
                    && container_status(pod)["started"] == false
            },
        )
        .await;
    assert_eq!(container_status(&starting)["ready"], false, "{starting}");
    let slow = cluster.running("slow", 60).await;
    assert_eq!(container_status(&slow)["started"], true, "{slow}");
    assert_eq!(restart_count(&slow), 0, "{slow}");

    restarted(&cluster, "never", 1).await;
    event(
        &cluster,
        "never",
        "Killing",
        "Container main failed startup probe, will be restarted",
    )
    .await;
    event(
        &cluster,
        "never",
        "Unhealthy",
        "Startup probe failed: cat: can't open '/tmp/up'",
    )
    .await;
    let (_, slow) = cluster.admin.get(&cluster.pod("slow")).await;
    assert_eq!(restart_count(&slow), 0, "{slow}");
}
