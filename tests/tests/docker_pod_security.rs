//! Pod Security against the host's real Docker engine, with a real server
//! and a real agent: the Docker socket never reaches a tenant, not through
//! the API and not past it; a fork bomb stops at its pids limit while the
//! node and another tenant carry on; under `restricted` a setuid binary
//! cannot make root; a privileged system tenant's host path mounts; and a
//! hardened Kubernetes manifest applies and runs as it is.

use std::time::Duration;

use berth_api::etcd::etcdserverpb as pb;
use berth_tests::cluster::{ADMIN, ADMIN_PASSWORD, items, ready_status};
use berth_tests::docker::{EngineCleanup, TEST_IMAGE, containers_with_label, docker};
use berth_tests::docker_cluster::{DockerCluster, fetch, host_port, unique};
use berth_tests::etcd_grpc::EtcdCaller;
use berth_tests::logs::FollowedLog;
use berth_tests::rest::Api;
use serde_json::{Value, json};
use tokio::time::Instant;

const MEMBER_PASSWORD: &str = "member-secret-1";

/// A new member of the cluster's tenant with `role`, signed in.
async fn member(cluster: &DockerCluster, role: &str) -> Api {
    let email = format!("{}@{}.test", unique(role), cluster.tenant);
    cluster
        .admin
        .add_member(&cluster.tenant, &email, MEMBER_PASSWORD, role)
        .await;
    Api::new(cluster.server.process.url(""))
        .login(&email, MEMBER_PASSWORD)
        .await
}

/// Sets the tenant's Pod Security level as `api`; answers the status.
async fn set_level(api: &Api, tenant: &str, level: &str) -> u16 {
    let (status, _) = api
        .put(
            &format!("/api/v1/tenants/{tenant}/pod-security"),
            json!({"level": level}),
        )
        .await;
    status
}

/// The containers the agent made for pod `name` of `tenant`.
fn containers_of(tenant: &str, name: &str) -> Vec<String> {
    containers_with_label(&format!("berth.dev/pod={name}"))
        .into_iter()
        .filter(|id| {
            docker(&[
                "inspect",
                "--format",
                "{{index .Config.Labels \"berth.dev/tenant\"}}",
                id,
            ])
            .trim()
                == tenant
        })
        .collect()
}

/// A Deployment that mounts the node's Docker socket: root on the node.
fn docker_socket_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ci-runner"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "ci-runner"}},
            "template": {
                "metadata": {"labels": {"app": "ci-runner"}},
                "spec": {
                    "containers": [{
                        "name": "runner",
                        "image": TEST_IMAGE,
                        "command": ["sleep", "3600"],
                        "volumeMounts": [{"name": "docker", "mountPath": "/var/run/docker.sock"}],
                    }],
                    "volumes": [{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}],
                },
            },
        },
    })
}

/// The tenant's events whose reason is `reason`, about `name`.
async fn events(api: &Api, tenant: &str, name: &str, reason: &str) -> Vec<Value> {
    let (status, list) = api.get(&format!("/api/v1/tenants/{tenant}/events")).await;
    assert_eq!(status, 200, "{list}");
    items(&list)
        .into_iter()
        .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_socket_never_reaches_a_tenant_through_the_api_or_past_it() {
    let cluster = DockerCluster::start().await;
    let editor = member(&cluster, "editor").await;
    let deployments = format!("/api/v1/tenants/{}/deployments", cluster.tenant);

    // Through the API: refused, with the field and the level named, and
    // nothing written.
    let (status, body) = editor.post(&deployments, docker_socket_deployment()).await;
    assert_eq!(status, 403, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(
            "violates PodSecurity \"baseline:latest\": hostPath volumes (volume \"docker\")"
        ),
        "{body}"
    );
    let (status, _) = editor.get(&format!("{deployments}/ci-runner")).await;
    assert_eq!(status, 404, "nothing was written");

    // Past the API: the platform admin writes a pod with the socket
    // straight into the store over the etcd API, bound to the node. A
    // harmless pod made through REST gives the stored shape.
    let harmless = cluster
        .create_pod(
            "harmless",
            json!({"containers": [{"name": "main", "image": TEST_IMAGE, "command": ["sleep", "3600"]}]}),
        )
        .await;
    assert_eq!(harmless["metadata"]["name"], "harmless");
    let etcd = EtcdCaller::sign_in(&cluster.server.etcd_endpoint(), ADMIN, ADMIN_PASSWORD)
        .await
        .expect("the platform admin signs in over the etcd API");
    let stored = etcd
        .kv()
        .range(pb::RangeRequest {
            key: format!("/registry/pods/{}/harmless", cluster.tenant).into_bytes(),
            ..Default::default()
        })
        .await
        .expect("reading the stored pod")
        .into_inner();
    let mut sneaky: Value =
        serde_json::from_slice(&stored.kvs[0].value).expect("a stored pod is JSON");
    sneaky["metadata"]["name"] = json!("sneaky");
    let uid = format!("{:032x}", rand::random::<u128>());
    sneaky["metadata"]["uid"] = json!(format!(
        "{}-{}-{}-{}-{}",
        &uid[..8],
        &uid[8..12],
        &uid[12..16],
        &uid[16..20],
        &uid[20..]
    ));
    sneaky["spec"]["nodeName"] = json!(cluster.node);
    sneaky["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "docker", "mountPath": "/var/run/docker.sock"}]);
    sneaky["spec"]["volumes"] =
        json!([{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}]);
    sneaky["status"] = json!({"phase": "Pending"});
    etcd.kv()
        .put(pb::PutRequest {
            key: format!("/registry/pods/{}/sneaky", cluster.tenant).into_bytes(),
            value: sneaky.to_string().into_bytes(),
            ..Default::default()
        })
        .await
        .expect("the platform admin may write any key");

    // The agent checks the pod again and refuses it, says why in its status
    // and in a FailedCreate event, and makes no container for it.
    let refused = cluster
        .admin
        .eventually(
            &cluster.pod("sneaky"),
            60,
            "the agent refuses the pod",
            |pod| {
                pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                    == "CreateContainerConfigError"
            },
        )
        .await;
    let waiting = &refused["status"]["containerStatuses"][0]["state"]["waiting"];
    assert!(
        waiting["message"]
            .as_str()
            .is_some_and(|m| m.contains("hostPath volumes (volume \"docker\")")),
        "{refused}"
    );
    assert_eq!(refused["status"]["phase"], "Pending", "{refused}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while events(&cluster.admin, &cluster.tenant, "sneaky", "FailedCreate")
        .await
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "no FailedCreate event for the refused pod"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let event = &events(&cluster.admin, &cluster.tenant, "sneaky", "FailedCreate").await[0];
    assert_eq!(event["type"], "Warning", "{event}");
    assert_eq!(event["source"]["host"], json!(cluster.node), "{event}");
    // The harmless pod, sent in the same way, runs: the agent works.
    cluster.running("harmless", 60).await;
    assert_eq!(containers_of(&cluster.tenant, "harmless").len(), 1);
    assert!(
        containers_of(&cluster.tenant, "sneaky").is_empty(),
        "no container was made for the refused pod"
    );
}

/// Where the engine keeps a container's pids cgroup (v1 or v2, cgroupfs
/// or systemd), for reading its `pids.events` from the host.
fn pids_cgroup(id: &str) -> std::path::PathBuf {
    let candidates = [
        format!("/sys/fs/cgroup/pids/docker/{id}"),
        format!("/sys/fs/cgroup/pids/system.slice/docker-{id}.scope"),
        format!("/sys/fs/cgroup/docker/{id}"),
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope"),
    ];
    candidates
        .iter()
        .map(std::path::PathBuf::from)
        .find(|path| path.join("pids.events").exists())
        .unwrap_or_else(|| panic!("no pids cgroup of container {id} among {candidates:?}"))
}

/// How often the container's processes were refused a fork at its limit.
fn pids_limit_hits(id: &str) -> u64 {
    let events =
        std::fs::read_to_string(pids_cgroup(id).join("pids.events")).expect("reading pids.events");
    events
        .lines()
        .find_map(|line| line.strip_prefix("max "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_stops_at_its_pids_limit_and_the_node_and_other_tenants_carry_on() {
    let cluster = DockerCluster::start().await;
    // Another tenant's web server on the same node.
    let other = unique("dn");
    let _other_cleanup = EngineCleanup::new(&cluster.node, &[&other]);
    let (status, body) = cluster
        .admin
        .post("/api/v1/tenants", json!({"name": other}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = cluster
        .admin
        .post(
            &format!("/api/v1/tenants/{other}/pods"),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {
                "containers": [{
                    "name": "main",
                    "image": TEST_IMAGE,
                    "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                    "ports": [{"containerPort": 8080}],
                    "resources": {"limits": {"memory": "32Mi", "cpu": "100m"}},
                }],
            }}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let web = cluster
        .admin
        .eventually(
            &format!("/api/v1/tenants/{other}/pods/web"),
            60,
            "the other tenant's web server runs",
            |pod| {
                pod["status"]["phase"] == "Running" && ready_status(pod).as_deref() == Some("True")
            },
        )
        .await;
    let port = host_port(&web);
    fetch(port, "/").await;

    // The bomb, under the default baseline level, with only a CPU limit of
    // its own: the agent's pids limit applies.
    cluster
        .create_pod(
            "bomb",
            json!({"containers": [{
                "name": "main",
                "image": TEST_IMAGE,
                "command": ["sh", "-c", "echo lit; f() { f | f & }; f; sleep 3600"],
                "resources": {"limits": {"cpu": "250m"}},
            }]}),
        )
        .await;
    cluster.running("bomb", 60).await;
    let bomb = containers_of(&cluster.tenant, "bomb");
    assert_eq!(bomb.len(), 1, "{bomb:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while pids_limit_hits(&bomb[0]) == 0 {
        assert!(
            Instant::now() < deadline,
            "the bomb never met its pids limit"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let limit = docker(&["inspect", "--format", "{{.HostConfig.PidsLimit}}", &bomb[0]]);
    assert_eq!(limit.trim(), "1024", "the agent's default pids limit");

    // For the next 15 s of the bomb: the other tenant's server answers
    // every request, and the node stays Ready.
    let until = Instant::now() + Duration::from_secs(15);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
    while Instant::now() < until {
        let body = client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .expect("the other tenant's server answers during the bomb")
            .text()
            .await
            .expect("a page");
        assert_eq!(body, berth_tests::docker::INDEX_HTML);
        let (_, node) = cluster
            .admin
            .get(&format!("/api/v1/nodes/{}", cluster.node))
            .await;
        assert_eq!(
            ready_status(&node).as_deref(),
            Some("True"),
            "the node stays Ready: {node}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(pids_limit_hits(&bomb[0]) > 0);
    let (status, _) = cluster.admin.delete(&cluster.pod("bomb")).await;
    assert_eq!(status, 200);
}

/// A hardened manifest as people write them for Kubernetes' restricted
/// level, applied as YAML, unmodified. Its process shows who it runs as,
/// then tries the test image's setuid `su`.
fn hardened_manifest() -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  labels:
    app: api
spec:
  replicas: 1
  selector:
    matchLabels:
      app: api
  template:
    metadata:
      labels:
        app: api
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        runAsGroup: 1000
        fsGroup: 1000
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: api
          image: {TEST_IMAGE}
          command:
            - sh
            - -c
            - |
              grep -E '^(Uid|Gid|NoNewPrivs|CapEff|CapBnd|Seccomp):' /proc/self/status
              /suid/su -c id root
              echo "su exited $?"
              exec httpd -f -p 8080 -h /www
          ports:
            - containerPort: 8080
          resources:
            limits:
              cpu: 250m
              memory: 64Mi
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_restricted_a_hardened_manifest_runs_and_setuid_makes_no_root() {
    let cluster = DockerCluster::start().await;
    // The setuid binary makes root wherever nothing stops it.
    let unhardened = docker(&[
        "run",
        "--rm",
        "--user",
        "1000:1000",
        TEST_IMAGE,
        "/suid/su",
        "-c",
        "id",
        "root",
    ]);
    assert!(
        unhardened.contains("uid=0"),
        "the test image's /suid/su must work in a plain container: {unhardened}"
    );

    let owner = member(&cluster, "owner").await;
    assert_eq!(set_level(&owner, &cluster.tenant, "restricted").await, 200);
    let editor = member(&cluster, "editor").await;
    let (status, body) = Api::send(
        editor
            .request(
                reqwest::Method::POST,
                &format!("/api/v1/tenants/{}/apply", cluster.tenant),
            )
            .header("Content-Type", "application/yaml")
            .body(hardened_manifest()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["action"], "created", "{body}");

    let list = cluster
        .admin
        .eventually(
            &cluster.pods(),
            60,
            "the deployment's pod is Running and Ready",
            |list| {
                items(list).iter().any(|pod| {
                    pod["status"]["phase"] == "Running"
                        && ready_status(pod).as_deref() == Some("True")
                })
            },
        )
        .await;
    let pod = items(&list)
        .into_iter()
        .find(|pod| pod["status"]["phase"] == "Running")
        .expect("a running pod");
    let name = pod["metadata"]["name"].as_str().expect("a name").to_owned();
    fetch(host_port(&pod), "/").await;

    let mut log = FollowedLog::open(
        &editor,
        &format!(
            "/api/v1/tenants/{}/pods/{name}/log?follow=true",
            cluster.tenant
        ),
    )
    .await;
    log.until(
        30,
        "the process reports who it is and how su went",
        |text| text.contains("su exited"),
    )
    .await;
    let text = &log.text;
    let field = |name: &str| -> Vec<String> {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(field("Uid"), ["1000"; 4], "{text}");
    assert_eq!(field("Gid"), ["1000"; 4], "{text}");
    assert_eq!(field("NoNewPrivs"), ["1"], "{text}");
    assert_eq!(field("CapEff"), ["0000000000000000"], "{text}");
    assert_eq!(field("CapBnd"), ["0000000000000000"], "{text}");
    assert_eq!(
        field("Seccomp"),
        ["2"],
        "Docker's default seccomp filter: {text}"
    );
    assert!(!text.contains("uid=0"), "su made root: {text}");
    assert!(!text.contains("su exited 0"), "su succeeded: {text}");

    // A pod that asks for root is refused under restricted, with the field.
    let (status, body) = editor
        .post(
            &cluster.pods(),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root"},
                   "spec": {"containers": [{"name": "main", "image": TEST_IMAGE}]}}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("violates PodSecurity \"restricted:latest\"")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_privileged_system_tenants_host_path_pod_runs_and_owners_cannot_grant_that_level() {
    let cluster = DockerCluster::start().await;
    let owner = member(&cluster, "owner").await;
    assert_eq!(
        set_level(&owner, &cluster.tenant, "privileged").await,
        403,
        "a tenant owner cannot make its tenant privileged"
    );
    assert_eq!(
        set_level(&cluster.admin, &cluster.tenant, "privileged").await,
        200
    );
    let (_, tenant) = owner
        .get(&format!("/api/v1/tenants/{}", cluster.tenant))
        .await;
    assert_eq!(tenant["podSecurity"], "privileged", "{tenant}");

    let host = tempfile::tempdir().expect("a host directory");
    let marker = unique("marker-");
    std::fs::write(host.path().join("marker"), &marker).expect("writing the marker");
    let path = host.path().to_str().expect("a UTF-8 path").to_owned();
    let editor = member(&cluster, "editor").await;
    let (status, body) = editor
        .post(
            &cluster.pods(),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "system"}, "spec": {
                "containers": [{
                    "name": "main",
                    "image": TEST_IMAGE,
                    "command": ["sh", "-c", "cat /host/marker; echo; sleep 3600"],
                    "volumeMounts": [{"name": "host", "mountPath": "/host", "readOnly": true}],
                }],
                "volumes": [{"name": "host", "hostPath": {"path": path, "type": "Directory"}}],
            }}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    cluster.running("system", 60).await;
    let mut log = FollowedLog::open(
        &editor,
        &format!(
            "/api/v1/tenants/{}/pods/system/log?follow=true",
            cluster.tenant
        ),
    )
    .await;
    log.until(30, "the pod reads the host's file", |text| {
        text.contains(&marker)
    })
    .await;
}
