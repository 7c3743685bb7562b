//! The node API against real `berth server` processes: registration with
//! the join token, heartbeats that keep a Node Ready, the isolation of one
//! node's credential from other nodes' pods and from Secrets its pods do not
//! reference, and `berth agent --runtime sim` turning bound pods Running.

use std::time::Duration;

use berth_api::node::v1 as pb;
use berth_api::node::v1::node_service_client::NodeServiceClient;
use berth_api::node::v1::pod_event::Type;
use berth_tests::db::{TestBackend, TestDb};
use berth_tests::process::{AgentProcess, TestServer, free_port};
use berth_tests::rest::{Api, ready_node_names};
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Request};

const ADMIN: &str = "admin@berth.local";
const ADMIN_PASSWORD: &str = "admin-secret-1";

/// A server on `backend` with tenant `acme`, its join token, and the
/// platform admin signed in over REST.
async fn setup(backend: TestBackend) -> (TestDb, TestServer, String, Api) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(&db.url, &["--admin-password", ADMIN_PASSWORD]);
    let token_file = server.data_dir.path().join("node-token");
    let join_token = std::fs::read_to_string(&token_file)
        .expect("the server writes <data-dir>/node-token at first start")
        .trim()
        .to_owned();
    let admin = Api::new(server.process.url(""))
        .login(ADMIN, ADMIN_PASSWORD)
        .await;
    let (status, body) = admin.post("/api/v1/tenants", json!({"name": "acme"})).await;
    assert_eq!(status, 201, "{body}");
    (db, server, join_token, admin)
}

async fn client(server: &TestServer) -> NodeServiceClient<Channel> {
    NodeServiceClient::connect(format!("http://{}", server.process.grpc_addr))
        .await
        .expect("connecting to the node API")
}

fn register_request(join_token: &str, node: &str) -> pb::RegisterRequest {
    pb::RegisterRequest {
        join_token: join_token.into(),
        node_name: node.into(),
        capacity: Some(pb::Capacity {
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: "110".into(),
            ..pb::Capacity::default()
        }),
        labels: [("zone".to_owned(), "a".to_owned())].into(),
        addresses: vec![pb::NodeAddress {
            r#type: "InternalIP".into(),
            address: "192.0.2.10".into(),
        }],
        // An agent that reports no allocatable and no conditions, as those
        // before they existed: allocatable is the capacity.
        ..pb::RegisterRequest::default()
    }
}

async fn register(server: &TestServer, join_token: &str, node: &str) -> String {
    client(server)
        .await
        .register(register_request(join_token, node))
        .await
        .expect("registering with the join token")
        .into_inner()
        .node_credential
}

/// A request carrying `bearer` as its authorization.
fn with_bearer<T>(message: T, bearer: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {bearer}").parse().expect("an ASCII header"),
    );
    request
}

fn pod(name: &str, node: &str, spec_extra: Value) -> Value {
    let mut spec = json!({
        "nodeName": node,
        "containers": [{"name": "app", "image": "busybox:1"}],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        for (key, value) in extra {
            spec.insert(key.clone(), value.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

async fn create(admin: &Api, plural: &str, object: Value) {
    let (status, body) = admin
        .post(&format!("/api/v1/tenants/acme/{plural}"), object)
        .await;
    assert_eq!(status, 201, "{body}");
}

/// Events of a pod watch up to and including the first one `until` accepts.
async fn events_until(
    stream: &mut tonic::Streaming<pb::PodEvent>,
    until: impl Fn(&pb::PodEvent) -> bool,
) -> Vec<pb::PodEvent> {
    let mut events = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a pod event within 10 s")
            .expect("the pod watch works")
            .expect("the pod watch stays open");
        let done = until(&event);
        events.push(event);
        if done {
            return events;
        }
    }
}

fn pod_name(event: &pb::PodEvent) -> String {
    let pod: Value = serde_json::from_str(&event.pod_json).expect("pod JSON");
    pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_works_with_the_join_token_and_fails_with_a_wrong_one() {
    let (_db, server, join_token, admin) = setup(TestBackend::Sqlite).await;
    let mode = std::fs::metadata(server.data_dir.path().join("node-token"))
        .expect("node-token")
        .permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.mode() & 0o777, 0o600, "node-token is private");

    let refused = client(&server)
        .await
        .register(register_request("bjoin_not-the-token", "node-x"))
        .await
        .expect_err("a wrong join token is refused");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let (status, _) = admin.get("/api/v1/nodes/node-x").await;
    assert_eq!(status, 404, "a refused registration creates no Node");

    let credential = register(&server, &join_token, "node-x").await;
    assert!(credential.starts_with("bnode_"), "{credential}");
    let (status, node) = admin.get("/api/v1/nodes/node-x").await;
    assert_eq!(status, 200, "{node}");
    assert_eq!(node["metadata"]["labels"]["zone"], "a");
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        "node-x"
    );
    assert_eq!(node["status"]["capacity"]["cpu"], "4");
    assert_eq!(node["status"]["allocatable"]["memory"], "16Gi");
    assert_eq!(node["status"]["addresses"][0]["address"], "192.0.2.10");

    // Registering again replaces the credential: the old one stops working.
    let renewed = register(&server, &join_token, "node-x").await;
    let mut api = client(&server).await;
    let stale = api
        .heartbeat(with_bearer(pb::HeartbeatRequest::default(), &credential))
        .await
        .expect_err("a replaced credential is refused");
    assert_eq!(stale.code(), Code::Unauthenticated);
    api.heartbeat(with_bearer(pb::HeartbeatRequest::default(), &renewed))
        .await
        .expect("the new credential works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_keeps_the_node_ready_with_a_recent_heartbeat_time() {
    let (_db, server, join_token, admin) = setup(TestBackend::Sqlite).await;
    let credential = register(&server, &join_token, "node-h").await;
    let (_, registered) = admin.get("/api/v1/nodes/node-h").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client(&server)
        .await
        .heartbeat(with_bearer(pb::HeartbeatRequest::default(), &credential))
        .await
        .expect("a heartbeat with the node credential");
    let (status, node) = admin.get("/api/v1/nodes/node-h").await;
    assert_eq!(status, 200, "{node}");
    let conditions = node["status"]["conditions"].as_array().expect("conditions");
    let ready = conditions
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("a Ready condition");
    assert_eq!(ready["status"], "True", "{ready}");
    let beat = chrono::DateTime::parse_from_rfc3339(ready["lastHeartbeatTime"].as_str().unwrap())
        .expect("an RFC 3339 heartbeat time");
    let age = chrono::Utc::now().signed_duration_since(beat);
    assert!(age.num_seconds().abs() <= 5, "heartbeat {age} ago");
    let first = &registered["status"]["conditions"][0];
    assert!(
        ready["lastHeartbeatTime"] != first["lastHeartbeatTime"],
        "the heartbeat moved lastHeartbeatTime: {first} → {ready}"
    );
    assert_eq!(
        ready["lastTransitionTime"], first["lastTransitionTime"],
        "staying Ready is no transition"
    );
}

async fn a_node_credential_cannot_read_other_nodes_pods_or_unreferenced_secrets(
    backend: TestBackend,
) {
    let (_db, server, join_token, admin) = setup(backend).await;
    create(
        &admin,
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-password"},
               "stringData": {"password": "hunter2"}}),
    )
    .await;
    create(
        &admin,
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "unrelated"},
               "stringData": {"token": "not-for-node-a"}}),
    )
    .await;
    create(
        &admin,
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
               "data": {"mode": "fast"}}),
    )
    .await;
    let env_from_secret = json!({"containers": [{
        "name": "app",
        "image": "busybox:1",
        "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db-password", "key": "password"}}}],
        "envFrom": [{"configMapRef": {"name": "settings"}}],
    }]});
    create(&admin, "pods", pod("web-a", "node-a", env_from_secret)).await;
    create(
        &admin,
        "pods",
        pod(
            "web-b",
            "node-b",
            json!({"volumes": [{"name": "t", "secret": {"secretName": "unrelated"}}]}),
        ),
    )
    .await;
    let node_a = register(&server, &join_token, "node-a").await;
    let node_b = register(&server, &join_token, "node-b").await;
    let mut api = client(&server).await;

    // Node A sees its own pod, the Secret and ConfigMap it references
    // (decrypted), and nothing else.
    let mut watch = api
        .watch_pods(with_bearer(pb::WatchPodsRequest::default(), &node_a))
        .await
        .expect("watching its pods")
        .into_inner();
    let snapshot = events_until(&mut watch, |e| e.initial_events_end).await;
    let pods: Vec<_> = snapshot
        .iter()
        .filter(|e| e.r#type() == Type::Added)
        .collect();
    assert_eq!(pods.len(), 1, "{snapshot:?}");
    assert_eq!(pod_name(pods[0]), "web-a");
    let secrets: Vec<_> = pods[0].secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(secrets, ["db-password"]);
    let secret: Value = serde_json::from_str(&pods[0].secrets[0].json).unwrap();
    use base64::Engine;
    let password = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["password"].as_str().expect("a value"))
        .expect("base64");
    assert_eq!(
        password, b"hunter2",
        "the referenced Secret comes decrypted"
    );
    let config_maps: Vec<_> = pods[0]
        .config_maps
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(config_maps, ["settings"]);
    assert!(
        !snapshot
            .iter()
            .any(|e| e.pod_json.contains("not-for-node-a")
                || e.secrets.iter().any(|s| s.name == "unrelated")),
        "nothing of node B's reaches node A"
    );

    // Changes: a pod bound to B stays invisible; one bound to A arrives;
    // a deleted one is marked terminating, and leaves once its node
    // removes it.
    create(&admin, "pods", pod("later-b", "node-b", json!({}))).await;
    create(&admin, "pods", pod("later-a", "node-a", json!({}))).await;
    let (status, _) = admin.delete("/api/v1/tenants/acme/pods/web-a").await;
    assert_eq!(status, 200);
    let mut changes = events_until(&mut watch, |e| e.r#type() == Type::Modified).await;
    let marked: Value = serde_json::from_str(&changes.last().unwrap().pod_json).unwrap();
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    let uid = marked["metadata"]["uid"].as_str().unwrap().to_owned();
    let remove = |name: &str, uid: &str, credential: &str| {
        with_bearer(
            pb::RemovePodRequest {
                tenant: "acme".into(),
                name: name.into(),
                uid: uid.into(),
            },
            credential,
        )
    };
    let denied = api
        .remove_pod(remove("web-a", &uid, &node_b))
        .await
        .expect_err("node B may not remove node A's pod");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let other = api
        .remove_pod(remove("web-a", "another-uid", &node_a))
        .await
        .expect_err("another incarnation is left alone");
    assert_eq!(other.code(), Code::FailedPrecondition, "{other:?}");
    let running = api
        .remove_pod(remove("later-a", &uid, &node_a))
        .await
        .expect_err("a pod not being deleted stays");
    assert_eq!(running.code(), Code::FailedPrecondition, "{running:?}");
    api.remove_pod(remove("web-a", &uid, &node_a))
        .await
        .expect("node A removes its stopped pod");
    changes.extend(events_until(&mut watch, |e| e.r#type() == Type::Deleted).await);
    let changes: Vec<_> = changes
        .iter()
        .filter(|e| e.r#type() != Type::Bookmark)
        .map(|e| (e.r#type(), pod_name(e)))
        .collect();
    assert_eq!(
        changes,
        [
            (Type::Added, "later-a".into()),
            (Type::Modified, "web-a".into()),
            (Type::Deleted, "web-a".into())
        ]
    );

    // Writing another node's pod, or a pod that does not exist, is denied.
    let status = json!({"phase": "Running"}).to_string();
    let denied = api
        .update_pod_status(with_bearer(
            pb::UpdatePodStatusRequest {
                tenant: "acme".into(),
                name: "web-b".into(),
                status_json: status.clone(),
                resource_version: 0,
            },
            &node_a,
        ))
        .await
        .expect_err("node A may not write node B's pod");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let (_, web_b) = admin.get("/api/v1/tenants/acme/pods/web-b").await;
    assert!(web_b["status"]["phase"].is_null(), "{web_b}");
    let missing = api
        .update_pod_status(with_bearer(
            pb::UpdatePodStatusRequest {
                tenant: "acme".into(),
                name: "no-such-pod".into(),
                status_json: status.clone(),
                resource_version: 0,
            },
            &node_a,
        ))
        .await
        .expect_err("no such pod");
    assert_eq!(missing.code(), Code::PermissionDenied);
    // Its own pod it may write.
    api.update_pod_status(with_bearer(
        pb::UpdatePodStatusRequest {
            tenant: "acme".into(),
            name: "later-a".into(),
            status_json: status,
            resource_version: 0,
        },
        &node_a,
    ))
    .await
    .expect("node A writes its own pod's status");
    let (_, later_a) = admin.get("/api/v1/tenants/acme/pods/later-a").await;
    assert_eq!(later_a["status"]["phase"], "Running", "{later_a}");

    // A user's access token is no node credential.
    let (_, login) = Api::new(server.process.url(""))
        .post(
            "/api/v1/auth/login",
            json!({"email": ADMIN, "password": ADMIN_PASSWORD}),
        )
        .await;
    let jwt = login["token"].as_str().expect("an access token");
    let refused = api
        .heartbeat(with_bearer(pb::HeartbeatRequest::default(), jwt))
        .await
        .expect_err("a user token on the node API");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let refused = api
        .watch_pods(Request::new(pb::WatchPodsRequest::default()))
        .await
        .expect_err("no credential at all");
    assert_eq!(refused.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_credential_cannot_read_other_nodes_pods_or_unreferenced_secrets_on_sqlite() {
    a_node_credential_cannot_read_other_nodes_pods_or_unreferenced_secrets(TestBackend::Sqlite)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_credential_cannot_read_other_nodes_pods_or_unreferenced_secrets_on_postgres() {
    a_node_credential_cannot_read_other_nodes_pods_or_unreferenced_secrets(TestBackend::Postgres)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_from_its_resource_version_without_repeating_events() {
    let (_db, server, join_token, admin) = setup(TestBackend::Sqlite).await;
    let node = register(&server, &join_token, "node-r").await;
    let mut api = client(&server).await;
    create(&admin, "pods", pod("first", "node-r", json!({}))).await;
    let mut watch = api
        .watch_pods(with_bearer(pb::WatchPodsRequest::default(), &node))
        .await
        .unwrap()
        .into_inner();
    let snapshot = events_until(&mut watch, |e| e.initial_events_end).await;
    let resume_at = snapshot.last().unwrap().resource_version;
    drop(watch);
    create(&admin, "pods", pod("second", "node-r", json!({}))).await;
    let mut resumed = api
        .watch_pods(with_bearer(
            pb::WatchPodsRequest {
                resource_version: resume_at,
            },
            &node,
        ))
        .await
        .unwrap()
        .into_inner();
    let events = events_until(&mut resumed, |e| e.r#type() == Type::Added).await;
    let added: Vec<_> = events
        .iter()
        .filter(|e| e.r#type() == Type::Added)
        .map(pod_name)
        .collect();
    assert_eq!(
        added,
        ["second"],
        "only what happened after the resume point"
    );
    assert!(!events.iter().any(|e| e.initial_events_end));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sim_agent_registers_three_ready_nodes_and_runs_a_pod_bound_to_one() {
    let (_db, server, _join_token, admin) = setup(TestBackend::Sqlite).await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let _agent = AgentProcess::sim(
        &server,
        "sim",
        3,
        &[
            "--sim-start-delay-ms",
            "100",
            "--heartbeat-ms",
            "1000",
            "--metrics-addr",
            &metrics_addr,
        ],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let ready_nodes = loop {
        let (status, list) = admin.get("/api/v1/nodes").await;
        assert_eq!(status, 200, "{list}");
        let ready = ready_node_names(&list);
        if ready.len() == 3 || tokio::time::Instant::now() > deadline {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut names = ready_nodes.clone();
    names.sort();
    assert_eq!(names, ["sim-0", "sim-1", "sim-2"]);

    create(&admin, "pods", pod("web", "sim-1", json!({}))).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let pod = loop {
        let (_, pod) = admin.get("/api/v1/tenants/acme/pods/web").await;
        if pod["status"]["phase"] == "Running" || tokio::time::Instant::now() > deadline {
            break pod;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = &pod["status"];
    assert_eq!(status["phase"], "Running", "{pod}");
    for condition in ["Ready", "ContainersReady", "PodScheduled"] {
        assert!(
            status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == condition && c["status"] == "True"),
            "{condition} in {status}"
        );
    }
    assert!(
        status["podIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.")),
        "{status}"
    );
    assert!(status["hostIP"].as_str().is_some(), "{status}");
    assert!(status["startTime"].as_str().is_some(), "{status}");
    assert_eq!(status["containerStatuses"][0]["ready"], true, "{status}");
    assert_eq!(
        status["containerStatuses"][0]["restartCount"], 0,
        "{status}"
    );

    // The agent counts a pod as running once the server has acknowledged
    // its status, which is a moment after the status is readable.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let metrics = reqwest::get(format!("http://{metrics_addr}/metrics"))
            .await
            .expect("the agent serves /metrics")
            .text()
            .await
            .unwrap();
        if metrics.contains("berth_agent_pods_running 1") || tokio::time::Instant::now() > deadline
        {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(metrics.contains("berth_agent_pods_running 1"), "{metrics}");
    assert!(
        metrics.contains("berth_agent_nodes_registered 3"),
        "{metrics}"
    );
}
