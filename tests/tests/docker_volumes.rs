//! Volumes on the Docker runtime, end to end (a real server, real agents,
//! the host's real engine): ConfigMap and Secret files (Secrets on tmpfs,
//! mode 0400) that follow their objects without a restart, emptyDir
//! shared by a pod's containers and gone with it (on tmpfs with `medium:
//! Memory`), and claims whose data outlives their pods and whose later
//! pods the scheduler sends to the node that holds the data. The engine
//! must be there: these tests fail, never skip, without it.

use std::time::Duration;

use berth_tests::cluster::create;
use berth_tests::docker::{EngineCleanup, docker, mounts_under};
use berth_tests::docker_cluster::{
    DockerCluster, agent_flags, container_status, node_ready, one_container, restart_count, unique,
};
use berth_tests::logs::{FollowedLog, read_log};
use berth_tests::process::AgentProcess;
use serde_json::{Value, json};
use tokio::time::Instant;

/// A container that ends up sleeping after `script`.
fn scripted(name: &str, script: &str) -> Value {
    let mut container = one_container(&["sh", "-c", script]);
    container["name"] = json!(name);
    container
}

/// The whole log of `container` of pod `name` so far.
async fn log_of(cluster: &DockerCluster, name: &str, container: &str) -> String {
    let path = format!("{}/log?container={container}", cluster.pod(name));
    let (status, text) = read_log(&cluster.admin, &path).await;
    assert_eq!(status, 200, "GET {path}: {text}");
    text
}

/// Reads the log of `container` of pod `name` until it holds `wanted`.
async fn log_shows(cluster: &DockerCluster, name: &str, container: &str, wanted: &str) -> String {
    let path = format!(
        "{}/log?container={container}&follow=true",
        cluster.pod(name)
    );
    let mut log = FollowedLog::open(&cluster.admin, &path).await;
    log.until(30, wanted, |text| text.contains(wanted)).await;
    log.text
}

fn uid_of(pod: &Value) -> String {
    pod["metadata"]["uid"]
        .as_str()
        .expect("a pod has a uid")
        .to_owned()
}

/// Waits until the pod's containers are gone from the engine.
async fn containers_gone(uid: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !berth_tests::docker::containers_with_label(&format!("berth.dev/pod-uid={uid}"))
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the pod's containers are still there"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the pod's containers and its directory under the agent's
/// state directory are gone, and nothing stays mounted there.
async fn volumes_gone(cluster: &DockerCluster, uid: &str) {
    containers_gone(uid).await;
    let pod_dir = cluster.state_dir.path().join("pods").join(uid);
    let deadline = Instant::now() + Duration::from_secs(30);
    while pod_dir.exists() {
        assert!(
            Instant::now() < deadline,
            "{} outlived its pod",
            pod_dir.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mounted = mounts_under(cluster.state_dir.path());
    assert!(mounted.is_empty(), "still mounted: {mounted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_map_and_secret_files_reach_the_process_and_a_changed_config_map_is_seen_without_a_restart()
 {
    let cluster = DockerCluster::start().await;
    let tenant = cluster.tenant.clone();
    let config_maps = format!("/api/v1/tenants/{tenant}/configmaps");
    create(
        &cluster.admin,
        &config_maps,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
               "data": {"greeting": "hello", "mode": "fast", "unlisted": "x"}}),
    )
    .await;
    create(
        &cluster.admin,
        &format!("/api/v1/tenants/{tenant}/secrets"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
               "data": {"password": "aHVudGVyMg=="}}),
    )
    .await;
    let mut app = scripted(
        "app",
        "echo \"env MODE=$MODE\"; \
         echo \"mode file=$(cat /etc/config/nested/mode.conf)\"; \
         ls /etc/config/unlisted 2>/dev/null || echo 'unlisted: absent'; \
         echo \"password file=$(cat /etc/keys/password)\"; \
         ls -lL /etc/keys/password; \
         grep ' /etc/keys ' /proc/mounts; \
         while true; do echo \"greeting=$(cat /etc/config/greeting)\"; sleep 1; done",
    );
    app["env"] = json!([
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
    ]);
    app["volumeMounts"] = json!([
        {"name": "config", "mountPath": "/etc/config"},
        {"name": "keys", "mountPath": "/etc/keys"},
    ]);
    let pod = cluster
        .create_pod(
            "app",
            json!({
                "terminationGracePeriodSeconds": 1,
                "containers": [app],
                "volumes": [
                    {"name": "config", "configMap": {"name": "settings", "items": [
                        {"key": "greeting", "path": "greeting"},
                        {"key": "mode", "path": "nested/mode.conf"},
                    ]}},
                    {"name": "keys", "secret": {"secretName": "db"}},
                ],
            }),
        )
        .await;
    let running = cluster.running("app", 60).await;
    let text = log_shows(&cluster, "app", "app", "greeting=hello").await;
    for line in [
        "env MODE=fast",
        "mode file=fast",
        "unlisted: absent",
        "password file=hunter2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
    }
    let listing = text
        .lines()
        .find(|l| l.ends_with("/etc/keys/password"))
        .unwrap_or_else(|| panic!("no listing of the secret file in:\n{text}"));
    assert!(listing.starts_with("-r-------- "), "mode 0400: {listing}");
    let mount = text
        .lines()
        .find(|l| l.contains(" /etc/keys "))
        .unwrap_or_else(|| panic!("no mount of /etc/keys in:\n{text}"));
    assert!(mount.starts_with("tmpfs /etc/keys tmpfs ro"), "{mount}");
    let on_host = mounts_under(cluster.state_dir.path());
    assert!(
        on_host
            .iter()
            .any(|point| point.ends_with(&format!("{}/volumes/keys", uid_of(&pod)))),
        "the secret's directory is a tmpfs on the host: {on_host:?}"
    );

    let container_id = container_status(&running)["containerID"].clone();
    let (status, body) = cluster
        .admin
        .put(
            &format!("{config_maps}/settings"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                   "data": {"greeting": "bonjour", "mode": "fast", "unlisted": "x"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let path = format!(
        "{}/log?container=app&follow=true&tailLines=1",
        cluster.pod("app")
    );
    let mut log = FollowedLog::open(&cluster.admin, &path).await;
    log.until(60, "the changed greeting", |text| {
        text.contains("greeting=bonjour")
    })
    .await;
    let (_, after) = cluster.admin.get(&cluster.pod("app")).await;
    assert_eq!(restart_count(&after), 0, "{after}");
    assert_eq!(
        container_status(&after)["containerID"],
        container_id,
        "the same container: {after}"
    );

    let mut needy = scripted("needy", "sleep 3600");
    needy["volumeMounts"] = json!([{"name": "config", "mountPath": "/etc/config"}]);
    cluster
        .create_pod(
            "needy",
            json!({"containers": [needy],
                   "volumes": [{"name": "config", "configMap": {"name": "absent"}}]}),
        )
        .await;
    let waiting = cluster
        .admin
        .eventually(
            &cluster.pod("needy"),
            60,
            "the container waits for its ConfigMap",
            |pod| {
                container_status(pod)["state"]["waiting"]["reason"] == "CreateContainerConfigError"
            },
        )
        .await;
    assert_eq!(
        container_status(&waiting)["state"]["waiting"]["message"],
        "configmap \"absent\" not found",
        "{waiting}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_dir_is_shared_by_a_pods_containers_and_goes_with_the_pod_and_a_memory_one_is_tmpfs()
 {
    let cluster = DockerCluster::start().await;
    let mut writer = scripted(
        "writer",
        "echo shared-data > /scratch/file; echo wrote; sleep 3600",
    );
    writer["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/scratch"}]);
    let mut reader = scripted(
        "reader",
        "until [ -s /scratch/file ]; do sleep 0.2; done; \
         echo \"read $(cat /scratch/file)\"; \
         grep ' /data ' /proc/mounts; \
         sleep 3600",
    );
    reader["volumeMounts"] = json!([
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "memory", "mountPath": "/data"},
    ]);
    let pod = cluster
        .create_pod(
            "shared",
            json!({
                "terminationGracePeriodSeconds": 1,
                "containers": [writer, reader],
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "memory", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
                ],
            }),
        )
        .await;
    cluster.running("shared", 60).await;
    let text = log_shows(&cluster, "shared", "reader", "tmpfs /data").await;
    assert!(
        text.lines().any(|l| l == "read shared-data"),
        "the reader saw the writer's file:\n{text}"
    );
    let mount = text
        .lines()
        .find(|l| l.starts_with("tmpfs /data "))
        .unwrap_or_else(|| panic!("no tmpfs at /data in:\n{text}"));
    assert!(mount.contains("size=8192k"), "the sizeLimit: {mount}");
    assert!(log_of(&cluster, "shared", "writer").await.contains("wrote"));

    let uid = uid_of(&pod);
    let pod_dir = cluster.state_dir.path().join("pods").join(&uid);
    assert!(pod_dir.join("volumes/scratch/file").exists());
    let (status, body) = cluster.admin.delete(&cluster.pod("shared")).await;
    assert_eq!(status, 200, "{body}");
    volumes_gone(&cluster, &uid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claims_data_outlives_its_pod_and_the_claims_next_pod_goes_to_the_node_that_holds_it() {
    let cluster = DockerCluster::start().await;
    let tenant = cluster.tenant.clone();
    // A second node on the same engine, so the scheduler has a choice.
    let other = unique("docker-");
    let other_state = tempfile::tempdir().expect("a state directory");
    let _other_cleanup = EngineCleanup::new(&other, &[&tenant]).with_state_dir(other_state.path());
    let _other_agent =
        AgentProcess::docker(&cluster.server, &other, &agent_flags(other_state.path()));
    node_ready(&cluster.admin, &other).await;
    let volumes = format!("/api/v1/tenants/{tenant}/volumes");
    create(
        &cluster.admin,
        &volumes,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    let claim = json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]);
    let mut writer = scripted("main", "echo kept > /data/file; echo written; sleep 3600");
    writer["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    let first = cluster
        .create_pod(
            "writer",
            json!({"terminationGracePeriodSeconds": 1, "containers": [writer], "volumes": claim}),
        )
        .await;
    let running = cluster.running("writer", 60).await;
    log_shows(&cluster, "writer", "main", "written").await;
    let holder = running["spec"]["nodeName"]
        .as_str()
        .expect("a bound pod")
        .to_owned();
    let volume = cluster
        .admin
        .eventually(
            &format!("{volumes}/data"),
            10,
            "the claim records its node",
            |volume| volume["status"]["nodeName"].is_string(),
        )
        .await;
    assert_eq!(volume["status"]["nodeName"], holder.as_str(), "{volume}");
    assert_eq!(volume["status"]["phase"], "Bound", "{volume}");
    let docker_volume = format!("berth_claim_{holder}_{tenant}_data");
    docker(&["volume", "inspect", &docker_volume]);

    let (status, body) = cluster.admin.delete(&cluster.pod("writer")).await;
    assert_eq!(status, 200, "{body}");
    containers_gone(&uid_of(&first)).await;
    // The holder is now the busier node: left to its scores, the
    // scheduler would choose the other one.
    let mut filler = scripted("main", "sleep 3600");
    filler["resources"] = json!({"requests": {"cpu": "500m", "memory": "256Mi"},
                                 "limits": {"cpu": "500m", "memory": "256Mi"}});
    cluster
        .create_pod(
            "filler",
            json!({"nodeName": holder, "terminationGracePeriodSeconds": 1, "containers": [filler]}),
        )
        .await;
    let mut reader = scripted(
        "main",
        "echo \"read $(cat /data/file)\"; \
         if touch /data/other 2>/dev/null; then echo writable; else echo read-only; fi; \
         sleep 3600",
    );
    reader["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    let read_only_claim =
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data", "readOnly": true}}]);
    cluster
        .create_pod(
            "reader",
            json!({"terminationGracePeriodSeconds": 1, "containers": [reader], "volumes": read_only_claim}),
        )
        .await;
    let reader = cluster.running("reader", 60).await;
    assert_eq!(reader["spec"]["nodeName"], holder.as_str(), "{reader}");
    let text = log_shows(&cluster, "reader", "main", "read-only").await;
    assert!(
        text.lines().any(|l| l == "read kept"),
        "the data outlived its pod:\n{text}"
    );
    let (status, body) = cluster.admin.delete(&cluster.pod("reader")).await;
    assert_eq!(status, 200, "{body}");
    containers_gone(&uid_of(&reader)).await;
    docker(&["volume", "inspect", &docker_volume]);

    let mut orphan = scripted("main", "sleep 3600");
    orphan["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]);
    cluster
        .create_pod(
            "orphan",
            json!({"containers": [orphan],
                   "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "absent"}}]}),
        )
        .await;
    let pending = cluster
        .admin
        .eventually(
            &cluster.pod("orphan"),
            30,
            "the pod waits for its claim",
            |pod| {
                pod["status"]["conditions"]
                    .as_array()
                    .is_some_and(|conditions| {
                        conditions
                            .iter()
                            .any(|c| c["type"] == "PodScheduled" && c["status"] == "False")
                    })
            },
        )
        .await;
    assert_eq!(pending["status"]["phase"], "Pending", "{pending}");
    let condition = pending["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled").cloned())
        .unwrap_or_default();
    assert_eq!(condition["reason"], "Unschedulable", "{pending}");
    assert_eq!(
        condition["message"],
        "0/2 nodes are available: persistentvolumeclaim \"absent\" not found.",
        "{pending}"
    );
    assert!(pending["spec"]["nodeName"].is_null(), "{pending}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_while_its_agent_was_down_loses_its_volumes_when_the_agent_returns() {
    let mut cluster = DockerCluster::start().await;
    create(
        &cluster.admin,
        &format!("/api/v1/tenants/{}/secrets", cluster.tenant),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
               "data": {"password": "aHVudGVyMg=="}}),
    )
    .await;
    let mut sleeper = scripted("main", "sleep 3600");
    sleeper["volumeMounts"] = json!([
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "keys", "mountPath": "/etc/keys"},
    ]);
    let pod = cluster
        .create_pod(
            "gone",
            json!({
                "terminationGracePeriodSeconds": 1,
                "containers": [sleeper],
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "keys", "secret": {"secretName": "db"}},
                ],
            }),
        )
        .await;
    cluster.running("gone", 60).await;
    let uid = uid_of(&pod);
    let pod_dir = cluster.state_dir.path().join("pods").join(&uid);
    assert!(pod_dir.join("volumes/keys/password").exists());
    assert!(!mounts_under(cluster.state_dir.path()).is_empty());

    cluster.agent.kill();
    let (status, body) = cluster.admin.delete(&cluster.pod("gone")).await;
    assert_eq!(status, 200, "{body}");
    cluster.agent = AgentProcess::docker(
        &cluster.server,
        &cluster.node,
        &agent_flags(cluster.state_dir.path()),
    );
    volumes_gone(&cluster, &uid).await;
}
