//! A whole small cluster for the control-loop tests: a server with its
//! controllers and scheduler on a fresh SQLite database, `berth agent
//! --runtime sim` standing in for three nodes, the platform admin signed
//! in and a tenant `acme`; the Deployment those tests roll out, and the
//! reads and waits they share.

use std::time::Duration;

use serde_json::{Value, json};

use crate::db::{TestBackend, TestDb, create_user};
use crate::process::{AgentProcess, TestServer};
use crate::rest::Api;

/// The platform admin's email.
pub const ADMIN: &str = "admin@berth.local";
/// The platform admin's password.
pub const ADMIN_PASSWORD: &str = "admin-secret-1";
/// The tenant every cluster starts with.
pub const TENANT: &str = "acme";

/// A running cluster; everything stops when it is dropped.
pub struct SimCluster {
    /// The platform admin, signed in.
    pub admin: Api,
    /// The agent of the three sim nodes.
    pub agent: AgentProcess,
    /// The server.
    pub server: TestServer,
    /// Its database.
    pub db: TestDb,
}

impl SimCluster {
    /// Starts the server (with `extra` arguments) and three sim nodes that
    /// start a pod in 100 ms, makes tenant `acme`, and waits until the
    /// three nodes are registered.
    pub async fn start(extra: &[&str]) -> SimCluster {
        let db = TestDb::new(TestBackend::Sqlite).await;
        let server = server(&db.url, extra);
        let agent = AgentProcess::sim(
            &server,
            "sim",
            3,
            &["--sim-start-delay-ms", "100", "--heartbeat-ms", "1000"],
        );
        let admin = admin_with_tenant(&server, TENANT).await;
        admin
            .eventually("/api/v1/nodes", 30, "three nodes", |list| {
                list["items"]
                    .as_array()
                    .is_some_and(|nodes| nodes.len() == 3)
            })
            .await;
        SimCluster {
            admin,
            agent,
            server,
            db,
        }
    }

    /// A new user who is `role` in tenant `acme`, signed in.
    pub async fn member(&self, email: &str, role: &str) -> Api {
        const PASSWORD: &str = "member-secret-1";
        let store = self.db.open().await;
        create_user(&store, email, PASSWORD, Some((TENANT, role))).await;
        store.close().await;
        Api::new(self.server.process.url(""))
            .login(email, PASSWORD)
            .await
    }
}

/// Starts a server with its controllers on `database_url`, plus `extra`
/// flags.
pub fn server(database_url: &str, extra: &[&str]) -> TestServer {
    let mut args = vec!["--admin-password", ADMIN_PASSWORD, "--controllers=true"];
    args.extend_from_slice(extra);
    TestServer::start(database_url, &args)
}

/// Signs the admin in on `server` and creates `tenant`.
pub async fn admin_with_tenant(server: &TestServer, tenant: &str) -> Api {
    let admin = Api::new(server.process.url(""))
        .login(ADMIN, ADMIN_PASSWORD)
        .await;
    let (status, body) = admin.post("/api/v1/tenants", json!({"name": tenant})).await;
    assert_eq!(status, 201, "creating tenant {tenant}: {body}");
    admin
}

/// A Deployment `name` of `replicas` pods of one container running
/// `image`, selected by `app: {name}`, with the default rollout strategy.
pub fn deployment(name: &str, replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "web",
                    "image": image,
                    "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}},
                }]},
            },
        },
    })
}

/// The items of a list body.
pub fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The status of a Node's (or pod's) `Ready` condition, if it has one.
pub fn ready_status(object: &Value) -> Option<String> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?["status"]
        .as_str()
        .map(str::to_owned)
}

/// Reads `/metrics` at `url` and answers the value of the sample whose
/// line starts with `series` (name and labels as printed).
pub async fn metric(url: &str, series: &str) -> Option<f64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Polls `path` until it answers 404, for at most `seconds`.
pub async fn gone(api: &Api, path: &str, seconds: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let (status, body) = api.get(path).await;
        if status == 404 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Posts `body` to the collection at `path` and answers what was created;
/// anything but 201 fails the test.
pub async fn create(api: &Api, path: &str, body: Value) -> Value {
    let (status, created) = api.post(path, body).await;
    assert_eq!(status, 201, "creating at {path}: {created}");
    created
}
