//! A whole small cluster for the control-loop tests: a server with its
//! controllers and scheduler on a fresh SQLite database, `berth agent
//! --runtime sim` standing in for three nodes, the platform admin signed
//! in and a tenant `acme`; and the Deployment those tests roll out.

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
        let mut args = vec!["--admin-password", ADMIN_PASSWORD, "--controllers=true"];
        args.extend_from_slice(extra);
        let server = TestServer::start(&db.url, &args);
        let agent = AgentProcess::sim(
            &server,
            "sim",
            3,
            &["--sim-start-delay-ms", "100", "--heartbeat-ms", "1000"],
        );
        let admin = Api::new(server.process.url(""))
            .login(ADMIN, ADMIN_PASSWORD)
            .await;
        let (status, body) = admin.post("/api/v1/tenants", json!({"name": TENANT})).await;
        assert_eq!(status, 201, "{body}");
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
