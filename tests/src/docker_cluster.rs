//! A server, one Docker agent and a tenant for the tests that run pods on
//! the host's real Docker engine, and what those tests ask of pods.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::cluster::{admin_with_tenant, create, ready_status, server};
use crate::db::{TestBackend, TestDb};
use crate::docker::{EngineCleanup, TEST_IMAGE, ensure_test_image};
use crate::process::{AgentProcess, TestServer};
use crate::rest::Api;

/// The agent's flags in these tests: quick heartbeats, and a restart
/// back-off of 1 s instead of Kubernetes' 10 s so that crash loops show
/// in seconds.
pub const AGENT_FLAGS: &[&str] = &["--heartbeat-ms", "1000", "--restart-backoff-ms", "1000"];

/// A server, one Docker agent and a tenant, all with names of their own so
/// that tests running at once on one engine never meet.
pub struct DockerCluster {
    // Dropped in this order: the agent stops before its containers go.
    /// The agent process.
    pub agent: AgentProcess,
    /// Removes what the test left on the engine.
    pub cleanup: EngineCleanup,
    /// The agent's `--state-dir` (its pods' volumes).
    pub state_dir: tempfile::TempDir,
    /// The platform admin's client.
    pub admin: Api,
    /// The server process.
    pub server: TestServer,
    /// Its database.
    pub db: TestDb,
    /// The test's tenant.
    pub tenant: String,
    /// The Docker node's name.
    pub node: String,
}

/// `prefix` and 8 random hex digits.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand::random::<u32>())
}

impl DockerCluster {
    /// Starts the server and the agent and waits for the node to be Ready.
    pub async fn start() -> DockerCluster {
        DockerCluster::start_with(&[]).await
    }

    /// Like [`DockerCluster::start`], with `server_flags` for the server
    /// (its node lifecycle settings, say).
    pub async fn start_with(server_flags: &[&str]) -> DockerCluster {
        DockerCluster::start_with_flags(server_flags, &[]).await
    }

    /// Like [`DockerCluster::start_with`], with `agent_flags` for the agent
    /// beside [`AGENT_FLAGS`] (its reservations, say).
    pub async fn start_with_flags(server_flags: &[&str], agent_flags: &[&str]) -> DockerCluster {
        ensure_test_image();
        let db = TestDb::new(TestBackend::Sqlite).await;
        let server = server(&db.url, server_flags);
        let tenant = unique("dk");
        let node = unique("docker-");
        let state_dir = tempfile::tempdir().expect("a state directory for the agent");
        let cleanup = EngineCleanup::new(&node, &[&tenant]).with_state_dir(state_dir.path());
        let mut flags = self::agent_flags(state_dir.path());
        flags.extend_from_slice(agent_flags);
        let agent = AgentProcess::docker(&server, &node, &flags);
        let admin = admin_with_tenant(&server, &tenant).await;
        node_ready(&admin, &node).await;
        DockerCluster {
            agent,
            cleanup,
            state_dir,
            admin,
            server,
            db,
            tenant,
            node,
        }
    }

    /// The tenant's pods' REST path.
    pub fn pods(&self) -> String {
        format!("/api/v1/tenants/{}/pods", self.tenant)
    }

    /// Pod `name`'s REST path.
    pub fn pod(&self, name: &str) -> String {
        format!("/api/v1/tenants/{}/pods/{name}", self.tenant)
    }

    /// Creates pod `name` with `spec`.
    pub async fn create_pod(&self, name: &str, spec: Value) -> Value {
        create(
            &self.admin,
            &self.pods(),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}),
        )
        .await
    }

    /// Creates the Deployment `body` in the tenant.
    pub async fn create_deployment(&self, body: Value) -> Value {
        let path = format!("/api/v1/tenants/{}/deployments", self.tenant);
        create(&self.admin, &path, body).await
    }

    /// Waits until pod `name` is Running and Ready, and answers it.
    pub async fn running(&self, name: &str, seconds: u64) -> Value {
        self.admin
            .eventually(
                &self.pod(name),
                seconds,
                "the pod is Running and Ready",
                |pod| {
                    pod["status"]["phase"] == "Running"
                        && ready_status(pod).as_deref() == Some("True")
                },
            )
            .await
    }
}

/// Waits (60 s at most) until Docker node `node` is Ready.
pub async fn node_ready(admin: &Api, node: &str) {
    admin
        .eventually(
            &format!("/api/v1/nodes/{node}"),
            60,
            "the Docker node is Ready",
            |node| ready_status(node).as_deref() == Some("True"),
        )
        .await;
}

/// [`AGENT_FLAGS`] and `--state-dir state_dir`.
pub fn agent_flags(state_dir: &std::path::Path) -> Vec<&str> {
    let mut flags = AGENT_FLAGS.to_vec();
    flags.push("--state-dir");
    flags.push(state_dir.to_str().expect("a UTF-8 temporary path"));
    flags
}

/// One container running `command` in the test image.
pub fn one_container(command: &[&str]) -> Value {
    json!({
        "name": "main",
        "image": TEST_IMAGE,
        "command": command,
        "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}},
    })
}

/// The host port of the first binding of a pod's first container.
pub fn host_port(pod: &Value) -> u16 {
    let binding = &pod["status"]["containerStatuses"][0]["portBindings"][0];
    assert_eq!(binding["hostIP"], "127.0.0.1", "{pod}");
    binding["hostPort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no host port in {pod}"))
}

/// GET `path` on `127.0.0.1:port`, retried for 10 s until it succeeds.
pub async fn fetch(port: u16, path: &str) -> String {
    let url = format!("http://127.0.0.1:{port}{path}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match reqwest::get(&url).await {
            Ok(response) if response.status().is_success() => {
                return response.text().await.expect("a body");
            }
            other => {
                assert!(Instant::now() < deadline, "GET {url}: {other:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The pod's first container status.
pub fn container_status(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

/// The first container's restart count.
pub fn restart_count(pod: &Value) -> u64 {
    container_status(pod)["restartCount"].as_u64().unwrap_or(0)
}

/// One Docker agent of a [`TwoNodes`] cluster.
pub struct NodeAgent {
    // Dropped in this order: the agent stops before its containers go.
    /// The agent process (`None` while a test has it stopped).
    pub agent: Option<AgentProcess>,
    /// Removes what the test left on the engine.
    pub cleanup: EngineCleanup,
    /// The agent's `--state-dir`.
    pub state_dir: tempfile::TempDir,
    /// The node's name.
    pub name: String,
    /// Its address, a loopback address of its own.
    pub address: String,
}

/// A server and two Docker agents on the one engine, as two nodes: each
/// with its own name, loopback address (`127.X.Y.2` and `.3`, X and Y
/// random, so that tests at once never share a node port), state
/// directory and so its own tenant networks.
pub struct TwoNodes {
    /// The two nodes.
    pub nodes: [NodeAgent; 2],
    /// The platform admin's client.
    pub admin: Api,
    /// The server process.
    pub server: TestServer,
    /// Its database.
    pub db: TestDb,
    /// The test's tenant.
    pub tenant: String,
    /// A second tenant, which must not reach the first.
    pub other: String,
}

impl TwoNodes {
    /// Starts the server and both agents and waits for both nodes to be
    /// Ready.
    pub async fn start() -> TwoNodes {
        ensure_test_image();
        let db = TestDb::new(TestBackend::Sqlite).await;
        let server = server(&db.url, &[]);
        let tenant = unique("sv");
        let other = unique("sw");
        let (x, y) = (rand::random_range(1..=254u8), rand::random_range(1..=254u8));
        let nodes = [2, 3].map(|host| {
            let name = unique("svc-node-");
            let address = format!("127.{x}.{y}.{host}");
            let state_dir = tempfile::tempdir().expect("a state directory for the agent");
            let cleanup =
                EngineCleanup::new(&name, &[&tenant, &other]).with_state_dir(state_dir.path());
            NodeAgent {
                agent: None,
                cleanup,
                state_dir,
                name,
                address,
            }
        });
        let mut cluster = TwoNodes {
            nodes,
            admin: admin_with_tenant(&server, &tenant).await,
            server,
            db,
            tenant,
            other,
        };
        let (status, body) = cluster
            .admin
            .post("/api/v1/tenants", json!({"name": cluster.other}))
            .await;
        assert_eq!(status, 201, "{body}");
        for index in 0..2 {
            cluster.start_agent(index);
        }
        for index in 0..2 {
            node_ready(&cluster.admin, &cluster.nodes[index].name).await;
        }
        cluster
    }

    /// Starts (again) the agent of node `index`.
    pub fn start_agent(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let mut flags = agent_flags(node.state_dir.path());
        flags.extend(["--address", node.address.as_str()]);
        node.agent = Some(AgentProcess::docker_at(&self.server, &node.name, &flags));
    }

    /// The REST path of the tenant's `plural`.
    pub fn path(&self, plural: &str) -> String {
        tenant_path(&self.tenant, plural)
    }
}

/// The REST path of `tenant`'s `plural` (`pods`, `services`, …).
pub fn tenant_path(tenant: &str, plural: &str) -> String {
    format!("/api/v1/tenants/{tenant}/{plural}")
}
