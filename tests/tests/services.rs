//! Services on real server processes: virtual addresses and node ports
//! allocated in the Service's own store transaction (on SQLite and
//! PostgreSQL, and by two servers on one PostgreSQL at once), freed on
//! delete also when the delete bypasses the REST API; the endpoints
//! controller's EndpointSlices over sim nodes; and the Ready nodes'
//! addresses as the ingress of LoadBalancer Services.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use berth_api::etcd::etcdserverpb as pb;
use berth_api::node::v1 as node_pb;
use berth_tests::cluster::{SimCluster, TENANT, items};
use berth_tests::db::{TestBackend, TestDb, create_user};
use berth_tests::etcd_grpc::EtcdCaller;
use berth_tests::node_api::{client, join_token, register_as, register_request, with_bearer};
use berth_tests::process::TestServer;
use berth_tests::rest::Api;
use serde_json::{Value, json};

const ADMIN: &str = "admin@berth.local";
const ADMIN_PASSWORD: &str = "admin-secret-1";
const EDITOR: &str = "dev@acme.test";
const EDITOR_PASSWORD: &str = "dev-password-1";
const SERVICES: &str = "/api/v1/tenants/acme/services";
const SLICES: &str = "/api/v1/tenants/acme/endpointslices";

/// A server on `db` without control loops (allocation needs none).
fn api_server(db: &TestDb) -> TestServer {
    TestServer::start(
        &db.url,
        &["--admin-password", ADMIN_PASSWORD, "--controllers=false"],
    )
}

/// Makes tenants `acme` and `globex` and an editor of `acme` on `server`;
/// answers the platform admin and the editor, signed in.
async fn accounts(db: &TestDb, server: &TestServer) -> (Api, Api) {
    let admin = Api::new(server.process.url(""))
        .login(ADMIN, ADMIN_PASSWORD)
        .await;
    for tenant in ["acme", "globex"] {
        let (status, body) = admin.post("/api/v1/tenants", json!({"name": tenant})).await;
        assert_eq!(status, 201, "creating tenant {tenant}: {body}");
    }
    let store = db.open().await;
    create_user(&store, EDITOR, EDITOR_PASSWORD, Some(("acme", "editor"))).await;
    store.close().await;
    let editor = Api::new(server.process.url(""))
        .login(EDITOR, EDITOR_PASSWORD)
        .await;
    (admin, editor)
}

/// A Service `name` selecting `app: web`, of `type_`, with `extra` merged
/// into its spec.
fn service(name: &str, type_: &str, extra: Value) -> Value {
    let mut spec = json!({
        "type": type_,
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

/// A NodePort Service asking for `node_port`.
fn node_port_service(name: &str, node_port: i64) -> Value {
    service(
        name,
        "NodePort",
        json!({"ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": node_port}]}),
    )
}

fn node_port_of(service: &Value) -> i64 {
    service["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .unwrap_or_else(|| panic!("a node port: {service}"))
}

fn cluster_ip_of(service: &Value) -> String {
    service["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_else(|| panic!("a cluster IP: {service}"))
        .to_owned()
}

/// The one detail of an error answer, as `(field, reason)`.
fn detail(body: &Value) -> (String, String) {
    let details = body["error"]["details"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(details.len(), 1, "one detail: {body}");
    (
        details[0]["field"].as_str().unwrap_or_default().to_owned(),
        details[0]["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn created(api: &Api, path: &str, body: Value) -> Value {
    let (status, answer) = api.post(path, body).await;
    assert_eq!(status, 201, "creating at {path}: {answer}");
    answer
}

async fn allocation_lifecycle(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    let server = api_server(&db);
    let (admin, editor) = accounts(&db, &server).await;

    // Auto-assigned: a node port in the range, an address in 10.43.0.0/16.
    let a = created(&editor, SERVICES, service("a", "NodePort", json!({}))).await;
    let port = node_port_of(&a);
    assert!((30000..=32767).contains(&port), "{a}");
    let ip = cluster_ip_of(&a);
    let address: Ipv4Addr = ip.parse().unwrap();
    assert_eq!(address.octets()[..2], [10, 43], "{a}");
    assert_eq!(a["spec"]["clusterIPs"], json!([ip]));

    // Asked for and taken: 409 naming the holder; cluster-wide, so from
    // another tenant too.
    for (api, path) in [
        (&editor, SERVICES),
        (&admin, "/api/v1/tenants/globex/services"),
    ] {
        let (status, body) = api.post(path, node_port_service("b", port)).await;
        assert_eq!(status, 409, "{body}");
        let (field, reason) = detail(&body);
        assert_eq!(field, "spec.ports[0].nodePort");
        assert!(reason.contains("acme/a"), "{reason}");
        assert!(reason.contains(&port.to_string()), "{reason}");
    }
    let (status, body) = editor
        .post(
            SERVICES,
            service("b", "ClusterIP", json!({"clusterIP": ip})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (field, reason) = detail(&body);
    assert_eq!(field, "spec.clusterIP");
    assert!(reason.contains("acme/a"), "{reason}");

    // A name in use is that, whatever it asks for.
    let (status, body) = editor.post(SERVICES, node_port_service("a", port)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "AlreadyExists", "{body}");

    // Outside the ranges: 422 naming the field.
    let (status, body) = editor.post(SERVICES, node_port_service("c", 29999)).await;
    assert_eq!(status, 422, "{body}");
    let (field, reason) = detail(&body);
    assert_eq!(field, "spec.ports[0].nodePort");
    assert!(reason.contains("30000-32767"), "{reason}");
    let (status, body) = editor
        .post(
            SERVICES,
            service("c", "ClusterIP", json!({"clusterIP": "10.99.0.1"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (field, reason) = detail(&body);
    assert_eq!(field, "spec.clusterIP");
    assert!(reason.contains("10.43.0.0/16"), "{reason}");

    // Stable across updates that leave them out; the address is immutable.
    let (status, updated) = editor
        .put(
            &format!("{SERVICES}/a"),
            service("a", "NodePort", json!({"sessionAffinity": "ClientIP"})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (node_port_of(&updated), cluster_ip_of(&updated)),
        (port, ip.clone())
    );
    let (status, body) = editor
        .put(
            &format!("{SERVICES}/a"),
            service("a", "NodePort", json!({"clusterIP": "10.43.9.9"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(detail(&body).0, "spec.clusterIP");

    // Turning into ClusterIP frees the node port (a patch drops it).
    let (status, patched) = editor
        .patch(
            &format!("{SERVICES}/a"),
            json!({"spec": {"type": "ClusterIP"}}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert!(
        patched["spec"]["ports"][0]["nodePort"].is_null(),
        "{patched}"
    );
    assert_eq!(cluster_ip_of(&patched), ip);
    let b = created(&editor, SERVICES, node_port_service("b", port)).await;
    assert_eq!(node_port_of(&b), port);

    // Freed on delete, and reusable.
    let (status, body) = editor.delete(&format!("{SERVICES}/b")).await;
    assert_eq!(status, 200, "{body}");
    let d = created(
        &admin,
        "/api/v1/tenants/globex/services",
        node_port_service("d", port),
    )
    .await;
    assert_eq!(node_port_of(&d), port);
    let (status, body) = editor.delete(&format!("{SERVICES}/a")).await;
    assert_eq!(status, 200, "{body}");
    let e = created(
        &editor,
        SERVICES,
        service("e", "ClusterIP", json!({"clusterIP": ip})),
    )
    .await;
    assert_eq!(cluster_ip_of(&e), ip);

    // A headless Service gets no address.
    let headless = created(
        &editor,
        SERVICES,
        service("headless", "ClusterIP", json!({"clusterIP": "None"})),
    )
    .await;
    assert_eq!(headless["spec"]["clusterIP"], "None", "{headless}");
}

#[tokio::test]
async fn node_ports_and_addresses_are_allocated_refused_when_taken_and_freed_on_sqlite() {
    allocation_lifecycle(TestBackend::Sqlite).await;
}

#[tokio::test]
async fn node_ports_and_addresses_are_allocated_refused_when_taken_and_freed_on_postgres() {
    allocation_lifecycle(TestBackend::Postgres).await;
}

#[tokio::test]
async fn the_node_port_range_is_the_servers_setting() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = TestServer::start(
        &db.url,
        &[
            "--admin-password",
            ADMIN_PASSWORD,
            "--controllers=false",
            "--service-node-port-range",
            "40000-40001",
            "--service-cidr",
            "10.50.0.0/30",
        ],
    );
    let (_admin, editor) = accounts(&db, &server).await;
    let (status, body) = editor.post(SERVICES, node_port_service("a", 30080)).await;
    assert_eq!(status, 422, "{body}");
    assert!(detail(&body).1.contains("40000-40001"), "{body}");
    let a = created(&editor, SERVICES, service("a", "NodePort", json!({}))).await;
    let b = created(&editor, SERVICES, service("b", "NodePort", json!({}))).await;
    let ports: BTreeSet<i64> = [node_port_of(&a), node_port_of(&b)].into();
    assert_eq!(ports, [40000, 40001].into());
    let ips: BTreeSet<String> = [cluster_ip_of(&a), cluster_ip_of(&b)].into();
    assert_eq!(ips, ["10.50.0.1".to_owned(), "10.50.0.2".to_owned()].into());
    // Both ranges are used up: the answer says which and where.
    let (status, body) = editor
        .post(SERVICES, service("c", "NodePort", json!({})))
        .await;
    assert_eq!(status, 409, "{body}");
    let (field, reason) = detail(&body);
    assert_eq!(field, "spec.clusterIP");
    assert!(reason.contains("10.50.0.0/30"), "{reason}");
}

#[tokio::test]
async fn a_raw_etcd_delete_of_a_service_leaks_none_of_its_allocations() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = api_server(&db);
    let (_admin, editor) = accounts(&db, &server).await;
    let a = created(
        &editor,
        SERVICES,
        service(
            "a",
            "NodePort",
            json!({"clusterIP": "10.43.7.7",
                   "ports": [{"name": "http", "port": 80, "nodePort": 31777}]}),
        ),
    )
    .await;
    assert_eq!(node_port_of(&a), 31777);

    let etcd = EtcdCaller::sign_in(&server.etcd_endpoint(), EDITOR, EDITOR_PASSWORD)
        .await
        .unwrap();
    let deleted = etcd
        .kv()
        .delete_range(pb::DeleteRangeRequest {
            key: b"/registry/services/acme/a".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted, 1);
    // A tenant's member cannot reach the allocation records themselves.
    let records = etcd
        .kv()
        .range(pb::RangeRequest {
            key: b"/registry/allocations/".to_vec(),
            range_end: b"/registry/allocations0".to_vec(),
            ..Default::default()
        })
        .await;
    assert!(records.is_err(), "{records:?}");

    // The address and the port are free for another Service, and the old
    // name can be used again.
    let b = created(
        &editor,
        SERVICES,
        service(
            "b",
            "NodePort",
            json!({"clusterIP": "10.43.7.7",
                   "ports": [{"name": "http", "port": 80, "nodePort": 31777}]}),
        ),
    )
    .await;
    assert_eq!(
        (node_port_of(&b), cluster_ip_of(&b)),
        (31777, "10.43.7.7".to_owned())
    );
    let (status, body) = editor.post(SERVICES, node_port_service("a", 31777)).await;
    assert_eq!(status, 409, "now b holds it: {body}");
    assert!(detail(&body).1.contains("acme/b"), "{body}");
    created(&editor, SERVICES, service("a", "NodePort", json!({}))).await;
}

/// Sends `count` creates of Services asking for `node_port` (none: any)
/// at once, spread over `apis`; answers each status and body.
async fn create_at_once(apis: &[Api], count: usize, node_port: Option<i64>) -> Vec<(u16, Value)> {
    let requests = (0..count).map(|i| {
        let api = apis[i % apis.len()].clone();
        let body = match node_port {
            Some(port) => node_port_service(&format!("race-{i}"), port),
            None => service(&format!("race-{i}"), "NodePort", json!({})),
        };
        tokio::spawn(async move { api.post(SERVICES, body).await })
    });
    futures::future::join_all(requests)
        .await
        .into_iter()
        .map(|r| r.expect("a create task"))
        .collect()
}

fn exactly_one_wins(answers: &[(u16, Value)], port: i64) {
    let winners: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one wins: {answers:?}");
    let winner = winners[0]["metadata"]["name"].as_str().unwrap();
    assert_eq!(node_port_of(winners[0]), port);
    for (status, body) in answers.iter().filter(|(status, _)| *status != 201) {
        assert_eq!(*status, 409, "{body}");
        let (field, reason) = detail(body);
        assert_eq!(field, "spec.ports[0].nodePort");
        assert!(
            reason.contains(&format!("acme/{winner}")),
            "names the winner {winner}: {reason}"
        );
    }
}

#[tokio::test]
async fn of_concurrent_creates_for_one_node_port_on_sqlite_exactly_one_wins() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = api_server(&db);
    let (_admin, editor) = accounts(&db, &server).await;
    let answers = create_at_once(&[editor], 12, Some(30500)).await;
    exactly_one_wins(&answers, 30500);
}

#[tokio::test]
async fn two_servers_on_one_postgres_give_one_node_port_to_exactly_one_of_many_creates() {
    let db = TestDb::new(TestBackend::Postgres).await;
    let first = api_server(&db);
    let second = api_server(&db);
    let (_admin, editor) = accounts(&db, &first).await;
    let other = Api::new(second.process.url(""))
        .login(EDITOR, EDITOR_PASSWORD)
        .await;
    let apis = [editor, other];
    let answers = create_at_once(&apis, 20, Some(30600)).await;
    exactly_one_wins(&answers, 30600);

    // Fifty at once, each allocated by either server: no duplicate.
    let answers = create_at_once(&apis, 50, None).await;
    let bodies: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, body)| body)
        .collect();
    // The names race-0.. race-19 are taken by the first round's winner
    // only; the others failed and may be made now.
    let conflicts: Vec<_> = answers
        .iter()
        .filter(|(status, body)| *status != 201 && body["error"]["code"] != "AlreadyExists")
        .collect();
    assert!(conflicts.is_empty(), "{conflicts:?}");
    assert_eq!(bodies.len(), 49, "all but the one name already taken");
    let ports: BTreeSet<i64> = bodies.iter().map(|b| node_port_of(b)).collect();
    let ips: BTreeSet<String> = bodies.iter().map(|b| cluster_ip_of(b)).collect();
    assert_eq!(ports.len(), 49, "distinct node ports");
    assert_eq!(ips.len(), 49, "distinct addresses");
    assert!(!ports.contains(&30600), "30600 stays with the first winner");
}

/// A Deployment `web` of `replicas` pods whose container serves port
/// 8080, named `http`.
fn web_deployment(replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web",
                    "image": "busybox:1",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}},
                }]},
            },
        },
    })
}

/// The endpoints of the slices of Service `web`, by pod name, as `(ready,
/// endpoint)`.
fn endpoints_of(list: &Value) -> Vec<(String, Value)> {
    let mut endpoints: Vec<(String, Value)> = items(list)
        .iter()
        .flat_map(|slice| slice["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["targetRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                e,
            )
        })
        .collect();
    endpoints.sort_by(|a, b| a.0.cmp(&b.0));
    endpoints
}

fn all_ready(list: &Value, count: usize) -> bool {
    let endpoints = endpoints_of(list);
    endpoints.len() == count
        && endpoints
            .iter()
            .all(|(_, e)| e["conditions"]["ready"] == true)
}

/// Polls `path` every 20 ms until `check` holds; answers how long it took.
async fn time_until(
    api: &Api,
    path: &str,
    limit: Duration,
    check: impl Fn(&Value) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = api.get(path).await;
        if status == 200 && check(&body) {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "not within {limit:?}: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_services_slices_follow_its_pods_readiness_scaling_and_deletion() {
    let cluster = SimCluster::start(&[]).await;
    let admin = &cluster.admin;
    let viewer = cluster.member("viewer@acme.test", "viewer").await;
    created(admin, "/api/v1/tenants/acme/deployments", web_deployment(3)).await;
    let web = created(admin, SERVICES, service("web", "NodePort", json!({}))).await;
    let slices = format!("{SLICES}?labelSelector=kubernetes.io%2Fservice-name%3Dweb");

    // Three ready endpoints, each with its pod's address, its node's
    // address and the host port of the named target port; a viewer reads
    // them.
    let list = viewer
        .eventually(&slices, 30, "three ready endpoints", |list| {
            all_ready(list, 3)
        })
        .await;
    let slice = &items(&list)[0];
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "web"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(
        slice["metadata"]["ownerReferences"][0]["uid"],
        web["metadata"]["uid"]
    );
    assert_eq!(
        slice["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    for (pod, endpoint) in endpoints_of(&list) {
        let address: Ipv4Addr = endpoint["addresses"][0].as_str().unwrap().parse().unwrap();
        assert!(!address.is_unspecified(), "{pod}: {endpoint}");
        assert!(
            endpoint["hostIP"].as_str().is_some_and(|ip| !ip.is_empty()),
            "{endpoint}"
        );
        assert!(endpoint["nodeName"].as_str().is_some(), "{endpoint}");
        assert_eq!(endpoint["hostPorts"][0]["name"], "http", "{endpoint}");
        assert!(
            endpoint["hostPorts"][0]["port"].as_i64().unwrap() > 0,
            "{endpoint}"
        );
        assert_eq!(
            (
                endpoint["conditions"]["serving"].clone(),
                endpoint["conditions"]["terminating"].clone()
            ),
            (json!(true), json!(false))
        );
    }

    // Writes are the server's: not even the tenant's owner may make one.
    let mut forged = slice.clone();
    forged["metadata"] = json!({"name": "forged"});
    let (status, body) = viewer.post(SLICES, forged.clone()).await;
    assert_eq!(status, 403, "{body}");
    let owner = cluster.member("owner@acme.test", "owner").await;
    let (status, body) = owner.post(SLICES, forged).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("endpoints controller"),
        "{body}"
    );

    // A pod that stops being Ready stays listed, not ready, within one
    // watch round trip.
    let (victim, _) = endpoints_of(&list).remove(0);
    let pod_path = format!("/api/v1/tenants/acme/pods/{victim}");
    let (status, pod) = admin.get(&pod_path).await;
    assert_eq!(status, 200, "{pod}");
    let mut status_body = json!({"status": pod["status"].clone()});
    for condition in status_body["status"]["conditions"].as_array_mut().unwrap() {
        if condition["type"] == "Ready" || condition["type"] == "ContainersReady" {
            condition["status"] = json!("False");
        }
    }
    let (status, body) = admin.put(&format!("{pod_path}/status"), status_body).await;
    assert_eq!(status, 200, "{body}");
    let took = time_until(&viewer, &slices, Duration::from_secs(5), |list| {
        endpoints_of(list).iter().any(|(name, e)| {
            *name == victim
                && e["conditions"]["ready"] == false
                && e["conditions"]["serving"] == false
        })
    })
    .await;
    assert!(took < Duration::from_secs(1), "not ready after {took:?}");

    // Scaling to one leaves one endpoint.
    let (status, body) = admin
        .put(
            "/api/v1/tenants/acme/deployments/web/scale",
            json!({"spec": {"replicas": 1}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let list = viewer
        .eventually(&slices, 30, "one ready endpoint", |list| all_ready(list, 1))
        .await;

    // A deleted pod leaves within one watch round trip.
    let (gone, _) = endpoints_of(&list).remove(0);
    let (status, body) = admin
        .delete(&format!("/api/v1/tenants/{TENANT}/pods/{gone}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let took = time_until(&viewer, &slices, Duration::from_secs(5), |list| {
        endpoints_of(list).iter().all(|(name, _)| *name != gone)
    })
    .await;
    assert!(took < Duration::from_secs(1), "still listed after {took:?}");

    // The Service's slices go with it.
    let (status, body) = admin.delete(&format!("{SERVICES}/web")).await;
    assert_eq!(status, 200, "{body}");
    admin
        .eventually(SLICES, 30, "the slices are collected", |list| {
            items(list).is_empty()
        })
        .await;
}

/// The addresses of a Service's `status.loadBalancer.ingress`, in order.
fn ingress_ips(service: &Value) -> Vec<String> {
    service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|ingress| ingress["ip"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_load_balancer_shows_the_ready_nodes_addresses_until_it_is_no_load_balancer() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    // Nodes registered by hand send no heartbeats; they must not turn
    // NotReady on their own while the test runs.
    let server = TestServer::start(
        &db.url,
        &[
            "--admin-password",
            ADMIN_PASSWORD,
            "--controllers=true",
            "--node-monitor-grace",
            "5m",
        ],
    );
    let (admin, editor) = accounts(&db, &server).await;
    let web = format!("{SERVICES}/web");
    created(&editor, SERVICES, service("web", "LoadBalancer", json!({}))).await;
    created(&editor, SERVICES, service("plain", "ClusterIP", json!({}))).await;

    // Nodes join: each Ready node's InternalIP, in address order, whether
    // it takes pods or not.
    let join_token = join_token(&server);
    let mut credentials = std::collections::BTreeMap::new();
    for (node, ip) in [
        ("lb-a", "192.0.2.22"),
        ("lb-b", "192.0.2.3"),
        ("lb-c", "192.0.2.11"),
    ] {
        let mut request = register_request(&join_token, node);
        request.addresses = vec![
            node_pb::NodeAddress {
                r#type: "InternalIP".into(),
                address: ip.into(),
            },
            node_pb::NodeAddress {
                r#type: "Hostname".into(),
                address: node.into(),
            },
        ];
        credentials.insert(node, register_as(&server, request).await);
    }
    let (status, body) = admin
        .patch(
            "/api/v1/nodes/lb-c",
            json!({"spec": {"unschedulable": true}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let three = ["192.0.2.3", "192.0.2.11", "192.0.2.22"];
    let balanced = editor
        .eventually(&web, 30, "the three nodes' addresses", |service| {
            ingress_ips(service) == three
        })
        .await;

    // Heartbeats change nothing a load balancer shows: no status write.
    let mut node_api = client(&server).await;
    for _ in 0..2 {
        node_api
            .heartbeat(with_bearer(
                node_pb::HeartbeatRequest::default(),
                &credentials["lb-a"],
            ))
            .await
            .expect("a heartbeat");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, still) = editor.get(&web).await;
    assert_eq!(
        still["metadata"]["resourceVersion"], balanced["metadata"]["resourceVersion"],
        "{still}"
    );

    // The status is the server's: a tenant's create, PUT or patch does not
    // set it, and its status subresource is closed to tenants.
    let forged_status = json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.66"}]}});
    let mut forged = service("web", "LoadBalancer", json!({}));
    forged["status"] = forged_status.clone();
    let (status, body) = editor.put(&web, forged.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ingress_ips(&body), three, "{body}");
    let (status, body) = editor
        .patch(&web, json!({"status": forged_status.clone()}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ingress_ips(&body), three, "{body}");
    let (status, body) = editor.put(&format!("{web}/status"), forged.clone()).await;
    assert_eq!(status, 403, "{body}");
    forged["metadata"]["name"] = json!("forged");
    let (status, body) = editor.post(SERVICES, forged).await;
    assert_eq!(status, 201, "{body}");
    assert!(ingress_ips(&body).is_empty(), "{body}");

    // A node that turns NotReady, and one that leaves, drop out.
    node_api
        .heartbeat(with_bearer(
            node_pb::HeartbeatRequest {
                conditions: vec![node_pb::NodeCondition {
                    r#type: "Ready".into(),
                    status: "False".into(),
                    reason: "RuntimeDown".into(),
                    message: "the container runtime is down".into(),
                }],
                ..node_pb::HeartbeatRequest::default()
            },
            &credentials["lb-b"],
        ))
        .await
        .expect("a NotReady heartbeat");
    editor
        .eventually(&web, 30, "without the NotReady node", |service| {
            ingress_ips(service) == ["192.0.2.11", "192.0.2.22"]
        })
        .await;
    let (status, body) = admin.delete("/api/v1/nodes/lb-c").await;
    assert_eq!(status, 200, "{body}");
    editor
        .eventually(&web, 30, "without the deleted node", |service| {
            ingress_ips(service) == ["192.0.2.22"]
        })
        .await;

    // No longer a LoadBalancer: no ingress. A ClusterIP Service never had one.
    let (status, body) = editor
        .patch(&web, json!({"spec": {"type": "ClusterIP"}}))
        .await;
    assert_eq!(status, 200, "{body}");
    editor
        .eventually(&web, 30, "the ingress cleared", |service| {
            ingress_ips(service).is_empty()
        })
        .await;
    let (_, plain) = editor.get(&format!("{SERVICES}/plain")).await;
    assert!(ingress_ips(&plain).is_empty(), "{plain}");
    assert!(
        plain["status"]["loadBalancer"].is_null(),
        "never written: {plain}"
    );
}
