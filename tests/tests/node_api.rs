//! The node API against real `berth server` processes: registration with
//! the join token, heartbeats that keep a Node Ready, the isolation of one
//! node's credential from other nodes' pods and from Secrets its pods do not
//! reference, every tenant's Services and EndpointSlices watched by a node,
//! and `berth agent --runtime sim` turning bound pods Running.

use std::time::Duration;

use berth_api::node::v1 as pb;
use berth_api::node::v1::pod_event::Type;
use berth_api::node::v1::service_event::Type as ServiceEventType;
use berth_tests::db::{TestBackend, TestDb};
use berth_tests::node_api::{client, join_token, register, register_request, with_bearer};
use berth_tests::process::{AgentProcess, TestServer, free_port};
use berth_tests::rest::{Api, ready_node_names};
use serde_json::{Value, json};
use tonic::{Code, Request};

const ADMIN: &str = "admin@berth.local";
const ADMIN_PASSWORD: &str = "admin-secret-1";

/// A server on `backend` with tenant `acme`, its join token, and the
/// platform admin signed in over REST.
async fn setup(backend: TestBackend) -> (TestDb, TestServer, String, Api) {
    setup_with(backend, &[]).await
}

/// [`setup`], with `extra` arguments for the server.
async fn setup_with(backend: TestBackend, extra: &[&str]) -> (TestDb, TestServer, String, Api) {
    let db = TestDb::new(backend).await;
    let mut args = vec!["--admin-password", ADMIN_PASSWORD];
    args.extend_from_slice(extra);
    let server = TestServer::start(&db.url, &args);
    let join_token = join_token(&server);
    let admin = Api::new(server.process.url(""))
        .login(ADMIN, ADMIN_PASSWORD)
        .await;
    let (status, body) = admin.post("/api/v1/tenants", json!({"name": "acme"})).await;
    assert_eq!(status, 201, "{body}");
    (db, server, join_token, admin)
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

/// Events of a watch (of pods or of Services) up to and including the
/// first one `until` accepts.
async fn events_until<T>(stream: &mut tonic::Streaming<T>, until: impl Fn(&T) -> bool) -> Vec<T> {
    let mut events = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("an event within 10 s")
            .expect("the watch works")
            .expect("the watch stays open");
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

/// An event's object.
fn object_of(event: &pb::ServiceEvent) -> Value {
    serde_json::from_str(&event.object_json).expect("object JSON")
}

/// What an event is about: its type, kind and `tenant/name`.
fn about(event: &pb::ServiceEvent) -> (ServiceEventType, String, String) {
    let object = object_of(event);
    let meta = &object["metadata"];
    (
        event.r#type(),
        event.kind.clone(),
        format!(
            "{}/{}",
            meta["tenant"].as_str().unwrap_or_default(),
            meta["name"].as_str().unwrap_or_default()
        ),
    )
}

/// Whether `event` is `r#type` of the Service or slice `kind` at `at`.
fn is(event: &pb::ServiceEvent, r#type: ServiceEventType, kind: &str, at: &str) -> bool {
    event.r#type() != ServiceEventType::Bookmark && about(event) == (r#type, kind.into(), at.into())
}

/// A Service `name` selecting `app: {name}` on port 80 → 8080.
fn web_service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    })
}

/// The names of the EndpointSlices of `tenant`, as `tenant/name`.
async fn slice_names(admin: &Api, tenant: &str) -> Vec<String> {
    let (status, list) = admin
        .get(&format!("/api/v1/tenants/{tenant}/endpointslices"))
        .await;
    assert_eq!(status, 200, "{list}");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|slice| format!("{tenant}/{}", slice["metadata"]["name"].as_str().unwrap()))
        .collect()
}

async fn a_node_watches_every_tenants_services_and_endpoint_slices(backend: TestBackend) {
    let (_db, server, join_token, admin) = setup_with(backend, &["--controllers=true"]).await;
    let (status, body) = admin
        .post("/api/v1/tenants", json!({"name": "globex"}))
        .await;
    assert_eq!(status, 201, "{body}");
    for (tenant, name) in [("acme", "web"), ("globex", "db")] {
        let (status, body) = admin
            .post(
                &format!("/api/v1/tenants/{tenant}/services"),
                web_service(name),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        // The endpoints controller gives each Service a slice, empty for now.
        admin
            .eventually(
                &format!("/api/v1/tenants/{tenant}/endpointslices"),
                30,
                "a slice per Service",
                |list| {
                    list["items"]
                        .as_array()
                        .is_some_and(|items| items.len() == 1)
                },
            )
            .await;
    }
    let node = register(&server, &join_token, "node-s").await;
    let mut api = client(&server).await;

    // The snapshot: every Service and slice of both tenants, then its end.
    let mut watch = api
        .watch_services(with_bearer(pb::WatchServicesRequest::default(), &node))
        .await
        .expect("watching the Services")
        .into_inner();
    let snapshot = events_until(&mut watch, |e| e.initial_events_end).await;
    let end = snapshot.last().unwrap();
    assert_eq!(end.r#type(), ServiceEventType::Bookmark);
    assert!(end.resource_version > 0, "{end:?}");
    let mut added: Vec<_> = snapshot[..snapshot.len() - 1].iter().map(about).collect();
    added.sort();
    let mut expected: Vec<_> = [("Service", "acme/web"), ("Service", "globex/db")]
        .into_iter()
        .map(|(kind, at)| (ServiceEventType::Added, kind.to_owned(), at.to_owned()))
        .collect();
    for tenant in ["acme", "globex"] {
        for at in slice_names(&admin, tenant).await {
            expected.push((ServiceEventType::Added, "EndpointSlice".into(), at));
        }
    }
    expected.sort();
    assert_eq!(added, expected);
    let web = snapshot
        .iter()
        .find(|e| is(e, ServiceEventType::Added, "Service", "acme/web"))
        .map(object_of)
        .unwrap();
    assert!(web["spec"]["clusterIP"].is_string(), "the REST JSON: {web}");
    assert!(
        snapshot
            .iter()
            .all(|e| e.r#type() == ServiceEventType::Bookmark || e.resource_version > 0),
        "{snapshot:?}"
    );

    // A created, a modified and a deleted Service, each as it happens.
    let (status, body) = admin
        .post("/api/v1/tenants/globex/services", web_service("api"))
        .await;
    assert_eq!(status, 201, "{body}");
    events_until(&mut watch, |e| {
        is(e, ServiceEventType::Added, "Service", "globex/api")
    })
    .await;
    let (status, body) = admin
        .patch(
            "/api/v1/tenants/globex/services/api",
            json!({"metadata": {"labels": {"tier": "front"}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let modified = events_until(&mut watch, |e| {
        is(e, ServiceEventType::Modified, "Service", "globex/api")
            && object_of(e)["metadata"]["labels"]["tier"] == "front"
    })
    .await;
    let modified_at = modified.last().unwrap().resource_version;
    let (status, body) = admin.delete("/api/v1/tenants/globex/services/api").await;
    assert_eq!(status, 200, "{body}");
    let deleted = events_until(&mut watch, |e| {
        is(e, ServiceEventType::Deleted, "Service", "globex/api")
    })
    .await;
    let deleted = deleted.last().unwrap();
    assert!(deleted.resource_version > modified_at, "{deleted:?}");
    assert_eq!(
        object_of(deleted)["metadata"]["labels"]["tier"],
        "front",
        "a deletion carries the last state"
    );

    // A pod of the node turns Ready: its Service's slice lists it (a new
    // slice, as the slice's ports are now the pod's, and the empty one goes).
    create(
        &admin,
        "pods",
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-s", "containers": [{
                "name": "app", "image": "busybox:1",
                "ports": [{"name": "http", "containerPort": 8080}],
            }]},
        }),
    )
    .await;
    let status = json!({
        "phase": "Running",
        "podIP": "10.42.0.5",
        "hostIP": "192.0.2.10",
        "conditions": [{"type": "Ready", "status": "True"}],
    });
    api.update_pod_status(with_bearer(
        pb::UpdatePodStatusRequest {
            tenant: "acme".into(),
            name: "web-1".into(),
            status_json: status.to_string(),
            resource_version: 0,
        },
        &node,
    ))
    .await
    .expect("the node reports its pod Ready");
    let slice = events_until(&mut watch, |e| {
        e.kind == "EndpointSlice"
            && matches!(
                e.r#type(),
                ServiceEventType::Added | ServiceEventType::Modified
            )
            && object_of(e)["endpoints"][0]["addresses"] == json!(["10.42.0.5"])
    })
    .await;
    let slice = object_of(slice.last().unwrap());
    assert_eq!(slice["metadata"]["tenant"], "acme", "{slice}");
    assert_eq!(
        slice["endpoints"][0]["conditions"]["ready"], true,
        "{slice}"
    );

    // Without a node credential there is nothing to watch.
    for request in [
        Request::new(pb::WatchServicesRequest::default()),
        with_bearer(
            pb::WatchServicesRequest::default(),
            "bnode_not-a-credential",
        ),
    ] {
        let refused = api
            .watch_services(request)
            .await
            .expect_err("no valid node credential");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_watches_every_tenants_services_and_endpoint_slices_on_sqlite() {
    a_node_watches_every_tenants_services_and_endpoint_slices(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_watches_every_tenants_services_and_endpoint_slices_on_postgres() {
    a_node_watches_every_tenants_services_and_endpoint_slices(TestBackend::Postgres).await;
}
