//! The Berth node agent: registers its node with the control plane, keeps
//! it Ready with heartbeats, watches the pods bound to it and reports their
//! status.
//!
//! - [`settings`]: `berth agent`'s flags, their defaults and checks.
//! - [`connection`]: the one gRPC channel to the server, the node
//!   credential on every call, reconnect back-off.
//! - [`session`]: a node's session with the server, written once for
//!   every runtime: register, heartbeat, watch typed pods, report status.
//! - [`runtime`]: the [`runtime::Runtime`] trait and its implementations,
//!   `sim` (nodes that pretend to run pods, many per process, as KWOK
//!   does) and `docker`.
//! - [`tunnel`]: the agent's end of the `Streams` tunnel, through which
//!   the server asks for containers' logs.
//! - [`exec`]: interactive exec: what a runtime is asked and answers,
//!   and how it crosses the tunnel.
//! - [`metrics`]: the agent's Prometheus figures and its `/metrics`
//!   listener.
//! - [`node_resources`]: reservations, hard eviction thresholds and the
//!   allocatable they leave, as kubelet computes it.
//! - [`pressure`]: the host's memory, disk and pid signals and the
//!   pressure conditions they cause.
//! - [`proxy`]: the L4 service proxy: listeners converged to a table of
//!   rules, each connection forwarded to a backend.
//! - [`services`]: the node's Services from the server's watch: virtual
//!   addresses on tenant networks, the proxy's rules, DNS records and
//!   containers' service environment.
//! - [`dns`]: cluster DNS for containers, one listener per tenant network.
//! - [`subnet`]: IPv4 subnets, for tenant networks and who may reach them.

pub mod connection;
pub mod dns;
pub mod exec;
pub mod metrics;
pub mod node_resources;
pub mod pressure;
pub mod proxy;
pub mod runtime;
pub mod services;
pub mod session;
pub mod settings;
pub mod subnet;
pub mod tunnel;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use runtime::docker::DockerRuntime;
use runtime::sim::{SimRuntime, SimSettings};
use session::{NodeSession, SessionShared};

pub use settings::{AgentArgs, AgentSettings, RuntimeKind};

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The Docker engine is not reachable, or its settings are unusable
    /// (the agent exits 2).
    #[error(transparent)]
    Docker(#[from] runtime::docker::DockerError),
    /// `--server` is not a usable URL.
    #[error("--server: {0}")]
    ServerUrl(String),
    /// The metrics listener could not start.
    #[error("--metrics-addr: {0}")]
    Metrics(String),
}

/// Runs the agent until `shutdown`.
pub async fn run(settings: AgentSettings, shutdown: CancellationToken) -> Result<(), AgentError> {
    let registry = prometheus::Registry::new();
    let metrics =
        metrics::AgentMetrics::new(&registry).map_err(|e| AgentError::Metrics(e.to_string()))?;
    // Services need the host's network: without root and NET_ADMIN the
    // agent runs pods only.
    let services = if settings.runtime == RuntimeKind::Docker {
        match runtime::docker::network::missing_privileges() {
            Some(why) => {
                tracing::warn!(
                    "{why}: running without Services (no node ports, service addresses or DNS); run the agent as root with NET_ADMIN to have them"
                );
                None
            }
            None => Some((
                proxy::ProxyMetrics::new(&registry)
                    .map_err(|e| AgentError::Metrics(e.to_string()))?,
                dns::DnsMetrics::new(&registry).map_err(|e| AgentError::Metrics(e.to_string()))?,
            )),
        }
    } else {
        None
    };
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = settings.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| AgentError::Metrics(format!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| AgentError::Metrics(e.to_string()))?;
        tracing::info!(%local, "serving /metrics");
        tasks.spawn(metrics::serve(listener, registry, shutdown.clone()));
    }
    let channel = connection::channel(&settings.server)?;
    let shared = Arc::new(SessionShared {
        channel,
        metrics,
        join_token: settings.join_token.0.clone(),
        labels: settings.labels.clone(),
        heartbeat: settings.heartbeat,
    });
    if settings.runtime == RuntimeKind::Docker {
        // A missing engine ends the agent here: one line, exit code 2.
        let links = services
            .as_ref()
            .map(|_| Arc::new(services::ServiceLinks::default()));
        let docker = DockerRuntime::connect(&settings, links.clone(), shutdown.clone()).await?;
        tracing::info!(
            node = settings.name,
            server = settings.server,
            "berth agent started (docker runtime)"
        );
        let runtime_tasks = docker.tasks();
        if let (Some((proxy_metrics, dns_metrics)), Some(links)) = (services, links) {
            let proxy = proxy::Proxy::new(
                proxy::ProxySettings::default(),
                proxy_metrics,
                shutdown.clone(),
            );
            let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let dns = dns::Dns::new(
                dns::DnsSettings::from_resolv_conf(&resolv),
                dns_metrics,
                shutdown.clone(),
            );
            let plumbing = services::NodeServices::new(
                services::ServiceSettings {
                    node: settings.name.clone(),
                    address: docker.address(),
                    pool: settings.tenant_network_pool,
                    state_dir: settings.state_dir.clone(),
                },
                proxy,
                dns,
                links,
            );
            let (client, networks) = docker.service_feeds();
            tasks.spawn(plumbing.run(client, networks, shutdown.clone()));
        }
        tasks.spawn(NodeSession::new(shared, settings.name.clone(), docker).run(shutdown.clone()));
        while tasks.join_next().await.is_some() {}
        // Workers end at shutdown without touching their containers, which
        // the next agent process adopts.
        runtime_tasks.close();
        runtime_tasks.wait().await;
        return Ok(());
    }
    let sim = SimSettings::from(&settings);
    for i in 0..settings.sim_nodes {
        let name = if settings.sim_nodes == 1 {
            settings.name.clone()
        } else {
            format!("{}-{i}", settings.name)
        };
        let runtime = SimRuntime::new(sim.clone(), name.clone(), i + 1);
        tasks.spawn(NodeSession::new(shared.clone(), name, runtime).run(shutdown.clone()));
    }
    tracing::info!(
        nodes = settings.sim_nodes,
        server = settings.server,
        "berth agent started (sim runtime)"
    );
    while tasks.join_next().await.is_some() {}
    Ok(())
}
