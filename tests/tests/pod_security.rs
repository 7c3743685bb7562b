//! Pod Security over REST: each tenant's level (baseline by default) is
//! enforced on every create, update, patch and apply of Pods, Deployments
//! and ReplicaSets; a refusal is a 403 naming the fields and the level, and
//! nothing is written. Admins and owners choose baseline or restricted,
//! only the platform admin privileged; raising the level reports the
//! workloads that fail it and leaves them running.

use berth_tests::db::{TestBackend, TestDb, create_user};
use berth_tests::process::TestServer;
use berth_tests::rest::Api;
use serde_json::{Value, json};

const ADMIN: &str = "admin@berth.local";
const ADMIN_PASSWORD: &str = "admin-secret-1";
const DEPLOYMENTS: &str = "/api/v1/tenants/acme/deployments";
const PODS: &str = "/api/v1/tenants/acme/pods";
const LEVEL: &str = "/api/v1/tenants/acme/pod-security";

/// The people of tenant `acme`: the platform admin, its owner and an editor.
struct People {
    admin: Api,
    owner: Api,
    editor: Api,
}

/// A server on `backend` without control loops (so that nothing but the
/// test writes objects), with tenant `acme`.
async fn setup(backend: TestBackend) -> (TestDb, TestServer, People) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start(
        &db.url,
        &["--admin-password", ADMIN_PASSWORD, "--controllers", "false"],
    );
    let admin = Api::new(server.process.url(""))
        .login(ADMIN, ADMIN_PASSWORD)
        .await;
    let (status, body) = admin.post("/api/v1/tenants", json!({"name": "acme"})).await;
    assert_eq!(status, 201, "{body}");
    let store = db.open().await;
    for (email, role) in [("owner@acme.test", "owner"), ("dev@acme.test", "editor")] {
        create_user(&store, email, "acme-password-1", Some(("acme", role))).await;
    }
    store.close().await;
    let base = Api::new(server.process.url(""));
    let people = People {
        owner: base.login("owner@acme.test", "acme-password-1").await,
        editor: base.login("dev@acme.test", "acme-password-1").await,
        admin,
    };
    (db, server, people)
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
                        "image": "busybox:1",
                        "volumeMounts": [{"name": "docker", "mountPath": "/var/run/docker.sock"}],
                    }],
                    "volumes": [{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}],
                },
            },
        },
    })
}

fn plain_deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "busybox:1"}]},
            },
        },
    })
}

async fn the_docker_socket_is_refused_and_nothing_is_written(backend: TestBackend) {
    let (_db, _server, people) = setup(backend).await;
    let (status, tenant) = people.editor.get("/api/v1/tenants/acme").await;
    assert_eq!(status, 200, "{tenant}");
    assert_eq!(tenant["podSecurity"], "baseline", "the default level");

    let (status, body) = people
        .editor
        .post(DEPLOYMENTS, docker_socket_deployment())
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "Forbidden");
    assert_eq!(
        body["error"]["message"],
        "deployments \"ci-runner\" is forbidden: violates PodSecurity \"baseline:latest\": \
         hostPath volumes (volume \"docker\")"
    );
    assert_eq!(
        body["error"]["details"],
        json!([{
            "field": "spec.template.spec.volumes[0].hostPath",
            "reason": "hostPath volumes (volume \"docker\")",
        }])
    );
    let (status, _) = people.editor.get(&format!("{DEPLOYMENTS}/ci-runner")).await;
    assert_eq!(status, 404, "nothing was written");

    // Nor through apply, nor by patching an admitted Deployment.
    let (status, body) = people
        .editor
        .post(
            "/api/v1/tenants/acme/apply",
            json!([docker_socket_deployment()]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["action"], "failed", "{body}");
    assert_eq!(body["results"][0]["error"]["code"], "Forbidden", "{body}");
    let (status, _) = people
        .editor
        .post(DEPLOYMENTS, plain_deployment("web"))
        .await;
    assert_eq!(status, 201);
    let (status, body) = people
        .editor
        .patch(
            &format!("{DEPLOYMENTS}/web"),
            json!({"spec": {"template": {"spec": {"hostNetwork": true}}}}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (_, web) = people.editor.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(
        web["metadata"]["generation"], 1,
        "the patch changed nothing"
    );

    // A Pod on the host's network is refused as well.
    let (status, body) = people
        .editor
        .post(
            PODS,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sniffer"},
                   "spec": {"hostNetwork": true,
                            "containers": [{"name": "c", "image": "busybox:1"}]}}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"]["message"],
        "pods \"sniffer\" is forbidden: violates PodSecurity \"baseline:latest\": \
         host namespaces (hostNetwork=true)"
    );
    assert_eq!(body["error"]["details"][0]["field"], "spec.hostNetwork");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_socket_is_refused_and_nothing_is_written_on_sqlite() {
    the_docker_socket_is_refused_and_nothing_is_written(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_socket_is_refused_and_nothing_is_written_on_postgres() {
    the_docker_socket_is_refused_and_nothing_is_written(TestBackend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_platform_admin_sets_privileged_which_admits_host_paths() {
    let (_db, _server, people) = setup(TestBackend::Sqlite).await;
    let (status, body) = people
        .owner
        .put(LEVEL, json!({"level": "privileged"}))
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = people
        .editor
        .put(LEVEL, json!({"level": "restricted"}))
        .await;
    assert_eq!(status, 403, "editors do not choose the level: {body}");
    let (status, body) = people.owner.put(LEVEL, json!({"level": "sloppy"})).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = people
        .admin
        .put(LEVEL, json!({"level": "privileged"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["level"], "privileged");
    let (_, tenant) = people.owner.get("/api/v1/tenants/acme").await;
    assert_eq!(tenant["podSecurity"], "privileged");
    let (status, body) = people
        .editor
        .post(DEPLOYMENTS, docker_socket_deployment())
        .await;
    assert_eq!(status, 201, "{body}");
}

/// A hardened manifest as people write them for Kubernetes' restricted
/// level, applied as YAML, unmodified but for nothing at all.
const HARDENED_MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  labels:
    app: api
spec:
  replicas: 2
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
          image: busybox:1
          command: ["httpd", "-f", "-p", "8080"]
          ports:
            - containerPort: 8080
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_to_restricted_reports_violating_workloads_and_keeps_them() {
    let (_db, _server, people) = setup(TestBackend::Sqlite).await;
    let (status, body) = people
        .editor
        .post(DEPLOYMENTS, plain_deployment("web"))
        .await;
    assert_eq!(status, 201, "{body}");
    let apply = |api: &Api| {
        Api::send(
            api.request(reqwest::Method::POST, "/api/v1/tenants/acme/apply")
                .header("Content-Type", "application/yaml")
                .body(HARDENED_MANIFEST),
        )
    };
    let (status, body) = apply(&people.editor).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["action"], "created", "{body}");

    let (status, body) = people
        .owner
        .put(LEVEL, json!({"level": "restricted"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["level"], "restricted");
    let violations = body["violations"].as_array().expect("a list");
    assert_eq!(violations.len(), 1, "only web fails restricted: {body}");
    assert_eq!(violations[0]["kind"], "Deployment");
    assert_eq!(violations[0]["name"], "web");
    assert_eq!(
        violations[0]["message"],
        "violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false \
         (container \"web\" must set securityContext.allowPrivilegeEscalation=false), \
         unrestricted capabilities (container \"web\" must set \
         securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \
         \"web\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \
         \"web\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \
         \"Localhost\")"
    );

    // The workload stays, can still be scaled, and got a Warning event.
    let (status, _) = people.editor.get(&format!("{DEPLOYMENTS}/web")).await;
    assert_eq!(status, 200);
    let (status, body) = people
        .editor
        .put(
            &format!("{DEPLOYMENTS}/web/scale"),
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                   "metadata": {"name": "web"}, "spec": {"replicas": 3}}),
        )
        .await;
    assert_eq!(status, 200, "scaling leaves the template alone: {body}");
    let (_, events) = people.editor.get("/api/v1/tenants/acme/events").await;
    let warnings: Vec<&Value> = events["items"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|e| e["reason"] == "PodSecurityViolation")
        .collect();
    assert_eq!(warnings.len(), 1, "{events}");
    assert_eq!(warnings[0]["type"], "Warning");
    assert_eq!(warnings[0]["involvedObject"]["name"], "web");
    assert!(
        warnings[0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("would violate PodSecurity \"restricted:latest\"")),
        "{}",
        warnings[0]
    );

    // New workloads must now meet restricted; the hardened manifest does.
    let (status, body) = people
        .editor
        .post(DEPLOYMENTS, plain_deployment("new"))
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = people.editor.delete(&format!("{DEPLOYMENTS}/api")).await;
    assert_eq!(status, 200);
    let (status, body) = apply(&people.editor).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["action"], "created", "{body}");
    let (_, api) = people.editor.get(&format!("{DEPLOYMENTS}/api")).await;
    assert_eq!(
        api["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"],
        json!(["ALL"]),
        "kept as written"
    );
}
