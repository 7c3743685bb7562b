//! The `berth server` a REST-level benchmark measures: a fresh database on
//! the chosen backend, a server on it (release build with a release
//! `bench`), a client signed in as the platform admin, and the objects the
//! benchmarks create.

use anyhow::{Context, bail};
use berth_tests::db::{TestBackend, TestDb};
use berth_tests::process::{AgentProcess, TestServer};
use berth_tests::rest::Api;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The platform admin every benchmark signs in as.
pub const ADMIN_EMAIL: &str = "admin@berth.local";
/// Their password, given to the server with `--admin-password`.
pub const ADMIN_PASSWORD: &str = "bench-admin-password";

/// Which backends a benchmark measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// An SQLite file in a temp dir.
    Sqlite,
    /// A fresh database on the PostgreSQL server named by `DATABASE_URL`.
    Postgres,
    /// SQLite, then PostgreSQL.
    Both,
}

impl BackendChoice {
    /// Each backend chosen, with the name figures are printed under.
    pub fn backends(self) -> Vec<(&'static str, TestBackend)> {
        let sqlite = ("SQLite", TestBackend::Sqlite);
        let postgres = ("PostgreSQL", TestBackend::Postgres);
        match self {
            BackendChoice::Sqlite => vec![sqlite],
            BackendChoice::Postgres => vec![postgres],
            BackendChoice::Both => vec![sqlite, postgres],
        }
    }
}

/// A server on a fresh database with a signed-in admin client. Dropping it
/// stops the server (SIGKILL), then removes an SQLite database.
pub struct ServerUnderTest {
    /// Signed in as [`ADMIN_EMAIL`].
    pub api: Api,
    /// The process and its data dir.
    pub server: TestServer,
    /// Declared last so that it outlives the server.
    _db: TestDb,
}

impl ServerUnderTest {
    /// Starts `berth server` on a fresh `backend` database with `extra`
    /// arguments and signs in.
    pub async fn start(backend: TestBackend, extra: &[&str]) -> ServerUnderTest {
        if cfg!(debug_assertions) {
            eprintln!("warning: a debug build measures a debug server; use --release for figures");
        }
        let db = TestDb::new(backend).await;
        let mut args = vec!["--admin-password", ADMIN_PASSWORD];
        args.extend_from_slice(extra);
        let server = TestServer::start(&db.url, &args);
        let api = Api::new(server.process.url(""))
            .login(ADMIN_EMAIL, ADMIN_PASSWORD)
            .await;
        ServerUnderTest {
            api,
            server,
            _db: db,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.server.process.child.id()
    }

    /// Creates tenant `name`.
    pub async fn create_tenant(&self, name: &str) -> anyhow::Result<()> {
        exchange(
            self.api
                .request(reqwest::Method::POST, "/api/v1/tenants")
                .json(&json!({"name": name})),
            201,
        )
        .await
        .with_context(|| format!("creating tenant {name}"))
    }
}

/// Sends `request`, reads the whole answer, and fails unless its status is
/// `expected`.
pub async fn exchange(request: reqwest::RequestBuilder, expected: u16) -> anyhow::Result<()> {
    let response = request.send().await.context("sending a request")?;
    let status = response.status().as_u16();
    let body = response.bytes().await.context("reading an answer")?;
    if status != expected {
        bail!(
            "answered {status}, not {expected}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

/// What each of a Deployment's pods asks for.
#[derive(Clone, Copy)]
pub struct PodRequests {
    /// CPU, as a quantity (`250m`).
    pub cpu: &'static str,
    /// Memory, as a quantity (`128Mi`).
    pub memory: &'static str,
}

/// A Deployment as people write them: labels, a selector, one container
/// with a named port, requests and limits (1 CPU, 256Mi) and a readiness
/// probe.
pub fn deployment(name: &str, replicas: u32, requests: PodRequests) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": {"app": name, "tier": "web", "team": "shop"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "web"}},
                "spec": {"containers": [{
                    "name": "web",
                    "image": "registry.example.com/shop/web:1.4.2",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "resources": {
                        "requests": {"cpu": requests.cpu, "memory": requests.memory},
                        "limits": {"cpu": "1", "memory": "256Mi"},
                    },
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http"},
                        "periodSeconds": 5,
                    },
                }]},
            },
        },
    })
}

/// A server with its controllers on SQLite, 20 sim nodes (64 CPUs, 200
/// pods each) and tenant `tenant` holding `pods` Running pods in
/// Deployments of 100 (`web-0`, `web-1`, …), each asking 10m and 16Mi.
/// Answers the server, the agent (keep it alive) and a pod's name.
pub async fn tenant_of_pods(
    tenant: &str,
    pods: u32,
    timeout: Duration,
) -> anyhow::Result<(ServerUnderTest, AgentProcess, String)> {
    let server = ServerUnderTest::start(TestBackend::Sqlite, &["--controllers=true"]).await;
    let agent = AgentProcess::sim(
        &server.server,
        "sim",
        20,
        &[
            "--sim-start-delay-ms",
            "100",
            "--sim-pods",
            "200",
            "--sim-cpu",
            "64",
            "--sim-memory",
            "256Gi",
        ],
    );
    server.create_tenant(tenant).await?;
    let requests = PodRequests {
        cpu: "10m",
        memory: "16Mi",
    };
    for n in 0..pods.div_ceil(100).max(1) {
        let replicas = (pods - n * 100).min(100);
        exchange(
            server
                .api
                .request(
                    reqwest::Method::POST,
                    &format!("/api/v1/tenants/{tenant}/deployments"),
                )
                .json(&deployment(&format!("web-{n}"), replicas, requests)),
            201,
        )
        .await?;
    }
    let started = Instant::now();
    let pod_name = loop {
        let (_, list) = server
            .api
            .get(&format!("/api/v1/tenants/{tenant}/pods"))
            .await;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let running = items
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        if running as u32 >= pods {
            break items[0]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
        if started.elapsed() > timeout {
            anyhow::bail!("only {running} of {pods} pods ran within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!(
        "{pods} pods Running after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok((server, agent, pod_name))
}
