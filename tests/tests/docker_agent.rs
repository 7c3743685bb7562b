//! `berth agent --runtime docker` against the host's real Docker engine,
//! with a real server: pods become containers that serve, restart with
//! back-off, get their environment from ConfigMaps and Secrets, and survive
//! a SIGKILL of the agent untouched. The engine must be there: these tests
//! fail, never skip, without it. They use the busybox test image
//! (`berth_tests::docker`) and never pull.

use std::time::Duration;

use berth_tests::cluster::{create, deployment, gone, items, ready_status};
use berth_tests::docker::{INDEX_HTML, TEST_IMAGE, containers_with_label, docker, network_name};
use berth_tests::docker_cluster::{
    AGENT_FLAGS, DockerCluster, container_status, fetch, host_port, one_container, restart_count,
};
use berth_tests::process::{AgentProcess, agent_refusal};
use serde_json::{Value, json};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_of_three_httpd_replicas_serves_on_each_reported_host_port() {
    let cluster = DockerCluster::start().await;
    let mut web = one_container(&["httpd", "-f", "-p", "8080", "-h", "/www"]);
    web["ports"] = json!([{"containerPort": 8080}]);
    let mut web_deployment = deployment("web", 3, TEST_IMAGE);
    web_deployment["spec"]["template"]["spec"] =
        json!({"containers": [web], "terminationGracePeriodSeconds": 2});
    create(
        &cluster.admin,
        &format!("/api/v1/tenants/{}/deployments", cluster.tenant),
        web_deployment,
    )
    .await;
    let list = cluster
        .admin
        .eventually(
            &cluster.pods(),
            90,
            "three pods Running and Ready",
            |list| {
                let pods = items(list);
                pods.len() == 3
                    && pods.iter().all(|pod| {
                        ready_status(pod).as_deref() == Some("True")
                            && container_status(pod)["portBindings"][0]["hostPort"].is_u64()
                    })
            },
        )
        .await;
    let mut ports = Vec::new();
    for pod in items(&list) {
        let status = &pod["status"];
        assert_eq!(status["hostIP"], "127.0.0.1", "{pod}");
        assert!(
            status["podIP"].as_str().is_some_and(|ip| !ip.is_empty()),
            "{pod}"
        );
        assert!(
            container_status(&pod)["containerID"]
                .as_str()
                .is_some_and(|id| id.starts_with("docker://")),
            "{pod}"
        );
        let port = host_port(&pod);
        assert_eq!(fetch(port, "/").await, INDEX_HTML);
        ports.push(port);
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "each replica has its own host port");
    assert_eq!(
        cluster.cleanup.containers().len(),
        3,
        "one container per pod"
    );
    // Hardened, on the tenant's own network.
    let id = cluster.cleanup.containers()[0].clone();
    let inspected = docker(&[
        "inspect",
        "--format",
        "{{json .HostConfig.SecurityOpt}} {{.HostConfig.PidsLimit}} {{.HostConfig.Memory}} {{.HostConfig.NetworkMode}}",
        &id,
    ]);
    assert_eq!(
        inspected.trim(),
        format!(
            "[\"no-new-privileges:true\"] 1024 {} {}",
            64 * 1024 * 1024,
            network_name(&cluster.node, &cluster.tenant)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_container_restarts_with_growing_delays_and_one_that_completes_stays_done() {
    let cluster = DockerCluster::start().await;
    cluster
        .create_pod(
            "crash",
            json!({"containers": [one_container(&["sh", "-c", "exit 1"])]}),
        )
        .await;
    cluster
        .create_pod(
            "done",
            json!({
                "restartPolicy": "OnFailure",
                "containers": [one_container(&["sh", "-c", "exit 0"])],
            }),
        )
        .await;

    // Follow the crash loop: when each restart shows, and whether the
    // container was seen waiting in CrashLoopBackOff between them.
    let mut restarts: Vec<(u64, Instant)> = Vec::new();
    let mut backoff_seen = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    let pod = loop {
        let (status, pod) = cluster.admin.get(&cluster.pod("crash")).await;
        assert_eq!(status, 200, "{pod}");
        let count = restart_count(&pod);
        if restarts.last().is_none_or(|(last, _)| *last != count) {
            restarts.push((count, Instant::now()));
        }
        backoff_seen |= container_status(&pod)["state"]["waiting"]["reason"] == "CrashLoopBackOff";
        if count >= 4 {
            break pod;
        }
        assert!(
            Instant::now() < deadline,
            "the container did not restart 4 times: {restarts:?} {pod}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(backoff_seen, "CrashLoopBackOff never showed");
    let last = &container_status(&pod)["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 1, "{pod}");
    assert_eq!(last["reason"], "Error", "{pod}");
    assert!(last["finishedAt"].is_string(), "{pod}");
    let at = |count: u64| {
        restarts
            .iter()
            .find(|(c, _)| *c >= count)
            .map(|(_, at)| *at)
            .unwrap_or_else(|| panic!("restart {count} not seen: {restarts:?}"))
    };
    let (second, third, fourth) = (at(2) - at(1), at(3) - at(2), at(4) - at(3));
    assert!(
        second < third && third < fourth,
        "the waits between restarts grow: {second:?} {third:?} {fourth:?}"
    );
    assert!(fourth >= Duration::from_secs(3), "1 s doubling: {fourth:?}");

    let done = cluster
        .admin
        .eventually(
            &cluster.pod("done"),
            60,
            "the completed pod Succeeded",
            |pod| pod["status"]["phase"] == "Succeeded",
        )
        .await;
    let terminated = &container_status(&done)["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 0, "{done}");
    assert_eq!(terminated["reason"], "Completed", "{done}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, done) = cluster.admin.get(&cluster.pod("done")).await;
    assert_eq!(restart_count(&done), 0, "exit 0 under OnFailure: {done}");
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_comes_from_config_maps_and_secrets_and_a_missing_one_is_named() {
    let cluster = DockerCluster::start().await;
    let tenant = cluster.tenant.clone();
    create(
        &cluster.admin,
        &format!("/api/v1/tenants/{tenant}/configmaps"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"MODE": "fast", "level": "3"}}),
    )
    .await;
    create(
        &cluster.admin,
        &format!("/api/v1/tenants/{tenant}/secrets"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "aHVudGVyMg=="}}),
    )
    .await;
    let mut app = one_container(&[
        "sh",
        "-c",
        "env > /www/env.txt; exec httpd -f -p 8080 -h /www",
    ]);
    app["ports"] = json!([{"containerPort": 8080}]);
    app["workingDir"] = json!("/www");
    app["envFrom"] = json!([{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}]);
    app["env"] = json!([
        {"name": "GREETING", "value": "hello"},
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
    ]);
    cluster
        .create_pod("app", json!({"containers": [app]}))
        .await;
    let pod = cluster.running("app", 60).await;
    let env = fetch(host_port(&pod), "/env.txt").await;
    for line in [
        "GREETING=hello",
        "DB_PASSWORD=hunter2",
        "LEVEL=3",
        "CFG_MODE=fast",
        "CFG_level=3",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in {env}");
    }

    let mut broken = one_container(&["sleep", "3600"]);
    broken["env"] = json!([
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}},
    ]);
    cluster
        .create_pod("broken", json!({"containers": [broken]}))
        .await;
    let pod = cluster
        .admin
        .eventually(
            &cluster.pod("broken"),
            60,
            "the container waits in CreateContainerConfigError",
            |pod| {
                container_status(pod)["state"]["waiting"]["reason"] == "CreateContainerConfigError"
            },
        )
        .await;
    let message = container_status(&pod)["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("\"absent\""), "{message}");
    assert_eq!(pod["status"]["phase"], "Pending", "{pod}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_comes_back_to_the_same_containers_and_removes_a_deleted_pods() {
    let mut cluster = DockerCluster::start().await;
    let sleeper = |name: &str| json!({"terminationGracePeriodSeconds": 2, "containers": [one_container(&["sleep", "3600"])], "hostname": name});
    cluster.create_pod("keep", sleeper("keep")).await;
    let gone = cluster.create_pod("gone", sleeper("gone")).await;
    cluster
        .create_pod(
            "crash",
            json!({"terminationGracePeriodSeconds": 2, "containers": [one_container(&["sh", "-c", "exit 1"])]}),
        )
        .await;
    let keep = cluster.running("keep", 60).await;
    cluster.running("gone", 60).await;
    let crash = cluster
        .admin
        .eventually(
            &cluster.pod("crash"),
            60,
            "the crash loop restarted twice",
            |pod| restart_count(pod) >= 2,
        )
        .await;
    let keep_id = container_status(&keep)["containerID"].clone();
    let crashes_before = restart_count(&crash);

    cluster.agent.kill();
    let (status, body) = cluster.admin.delete(&cluster.pod("gone")).await;
    assert_eq!(status, 200, "{body}");
    cluster.agent = AgentProcess::docker(&cluster.server, &cluster.node, AGENT_FLAGS);

    let gone_uid = gone["metadata"]["uid"].as_str().expect("a uid").to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !containers_with_label(&format!("berth.dev/pod-uid={gone_uid}")).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the deleted pod's container is still there"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The restarted agent reports again (its heartbeats make the node
    // Ready) and has not touched the running container.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let keep = cluster.running("keep", 30).await;
    assert_eq!(container_status(&keep)["containerID"], keep_id, "{keep}");
    assert_eq!(restart_count(&keep), 0, "{keep}");
    let running = docker(&[
        "inspect",
        "--format",
        "{{.State.Running}}",
        keep_id
            .as_str()
            .and_then(|id| id.strip_prefix("docker://"))
            .expect("a docker id"),
    ]);
    assert_eq!(running.trim(), "true");
    let (_, crash) = cluster.admin.get(&cluster.pod("crash")).await;
    assert!(
        restart_count(&crash) >= crashes_before,
        "the restart count was kept: {crashes_before} then {crash}"
    );
}

#[test]
fn an_agent_without_a_docker_engine_says_which_socket_it_tried_and_exits_2() {
    let stderr = agent_refusal(&[
        "--runtime",
        "docker",
        "--name",
        "nowhere",
        "--docker-host",
        "unix:///nonexistent/docker.sock",
    ]);
    assert!(
        stderr.contains("unix:///nonexistent/docker.sock"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_and_missing_images_wait_with_kubelets_reasons() {
    let cluster = DockerCluster::start().await;
    let mut first = one_container(&["sh", "-c", "sleep 1"]);
    first["name"] = json!("first");
    let mut second = one_container(&["true"]);
    second["name"] = json!("second");
    cluster
        .create_pod(
            "staged",
            json!({"initContainers": [first, second], "containers": [one_container(&["sleep", "3600"])]}),
        )
        .await;
    let mut never = one_container(&["true"]);
    never["image"] = json!("berth-test/absent:1");
    never["imagePullPolicy"] = json!("Never");
    cluster
        .create_pod("never", json!({"containers": [never]}))
        .await;
    // A registry on loopback that is not there: the pull fails at once,
    // without leaving the machine.
    let mut unreachable = one_container(&["true"]);
    unreachable["image"] = json!("127.0.0.1:9/absent:1");
    cluster
        .create_pod("unpullable", json!({"containers": [unreachable]}))
        .await;

    let staged = cluster.running("staged", 60).await;
    let inits = staged["status"]["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(inits.len(), 2, "{staged}");
    for init in &inits {
        assert_eq!(
            init["state"]["terminated"]["reason"], "Completed",
            "{staged}"
        );
    }
    let finished_first = inits[0]["state"]["terminated"]["finishedAt"].as_str();
    let started_second = inits[1]["state"]["terminated"]["startedAt"].as_str();
    assert!(
        finished_first.is_some() && started_second >= finished_first,
        "the second init container started after the first ended: {staged}"
    );
    let started_main = container_status(&staged)["state"]["running"]["startedAt"].as_str();
    assert!(
        started_main >= inits[1]["state"]["terminated"]["finishedAt"].as_str(),
        "{staged}"
    );
    let waiting_reason = |pod: &Value| {
        container_status(pod)["state"]["waiting"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let never = cluster
        .admin
        .eventually(&cluster.pod("never"), 30, "ErrImageNeverPull", |pod| {
            waiting_reason(pod) == "ErrImageNeverPull"
        })
        .await;
    assert_eq!(never["status"]["phase"], "Pending", "{never}");
    let mut reasons = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(reasons.iter().any(|r| r == "ErrImagePull")
        && reasons.iter().any(|r| r == "ImagePullBackOff"))
    {
        let (_, pod) = cluster.admin.get(&cluster.pod("unpullable")).await;
        let reason = waiting_reason(&pod);
        if reasons.last() != Some(&reason) {
            reasons.push(reason);
        }
        assert!(
            Instant::now() < deadline,
            "ErrImagePull then ImagePullBackOff: {reasons:?} {pod}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_gets_its_grace_period_and_its_network_goes_with_its_last_container() {
    let cluster = DockerCluster::start().await;
    let trapping = one_container(&[
        "sh",
        "-c",
        "trap 'exit 7' TERM; while true; do sleep 0.2; done",
    ]);
    let pod = cluster
        .create_pod(
            "polite",
            json!({"terminationGracePeriodSeconds": 20, "containers": [trapping]}),
        )
        .await;
    // `sleep` as the container's first process ignores SIGTERM: only the
    // SIGKILL after the grace period ends it.
    cluster
        .create_pod(
            "stubborn",
            json!({"terminationGracePeriodSeconds": 3, "containers": [one_container(&["sleep", "3600"])]}),
        )
        .await;
    cluster.running("polite", 60).await;
    cluster.running("stubborn", 60).await;
    let uid = pod["metadata"]["uid"].as_str().expect("a uid").to_owned();
    let mut deaths = std::process::Command::new("docker")
        .args(["events", "--format", "{{.Actor.Attributes.exitCode}}"])
        .args(["--filter", "event=die"])
        .args(["--filter", &format!("label=berth.dev/pod-uid={uid}")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("docker events");
    let stdout = deaths.stdout.take().expect("the events' output");
    let exit_code = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().next()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    for (name, grace) in [("polite", 20), ("stubborn", 3)] {
        let (status, body) = cluster.admin.delete(&cluster.pod(name)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["metadata"]["deletionGracePeriodSeconds"], grace,
            "marked with its grace period, not gone: {body}"
        );
        assert!(body["metadata"]["deletionTimestamp"].is_string(), "{body}");
    }
    // Terminating while its container still runs.
    let (status, stubborn) = cluster.admin.get(&cluster.pod("stubborn")).await;
    assert_eq!(
        status, 200,
        "the pod stays while its container stops: {stubborn}"
    );
    assert!(stubborn["metadata"]["deletionTimestamp"].is_string());
    let polite = format!("berth.dev/pod-uid={uid}");
    while !containers_with_label(&polite).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "SIGTERM was not sent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let polite_gone = started.elapsed();
    let code = exit_code.join().expect("the events reader");
    let _ = deaths.kill();
    let _ = deaths.wait();
    assert_eq!(
        code.and_then(Result::ok).as_deref(),
        Some("7"),
        "the container exited as its SIGTERM trap chose"
    );
    while !cluster.cleanup.containers().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the stubborn pod stays"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stubborn_gone = started.elapsed();
    assert!(
        polite_gone < Duration::from_secs(3) && stubborn_gone >= Duration::from_secs(3),
        "SIGTERM at once, SIGKILL after the grace period: {polite_gone:?} {stubborn_gone:?}"
    );
    // Once its containers are gone, the agent removes the pod.
    for name in ["polite", "stubborn"] {
        let what = format!("{name} removed by its node");
        gone(&cluster.admin, &cluster.pod(name), 5, &what).await;
    }
    let network = network_name(&cluster.node, &cluster.tenant);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::process::Command::new("docker")
        .args(["network", "inspect", &network])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            Instant::now() < deadline,
            "{network} outlived its last container"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_ends_oom_killed() {
    let cluster = DockerCluster::start().await;
    let mut hungry = one_container(&[
        "sh",
        "-c",
        "a=$(head -c 60000000 /dev/zero | tr '\\0' x); echo survived",
    ]);
    hungry["resources"] = json!({"limits": {"memory": "16Mi"}});
    cluster
        .create_pod(
            "hungry",
            json!({"restartPolicy": "Never", "containers": [hungry]}),
        )
        .await;
    let pod = cluster
        .admin
        .eventually(&cluster.pod("hungry"), 60, "the pod failed", |pod| {
            pod["status"]["phase"] == "Failed"
        })
        .await;
    let terminated = &container_status(&pod)["state"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled", "{pod}");
    assert_eq!(terminated["exitCode"], 137, "{pod}");
}
