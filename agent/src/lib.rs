//! The Berth node agent: registers its node with the control plane, keeps
//! it Ready with heartbeats, watches the pods bound to it and reports their
//! status.
//!
//! - [`settings`]: `berth agent`'s flags, their defaults and checks.
//! - [`connection`]: the one gRPC channel to the server, the node
//!   credential on every call, reconnect back-off.
//! - [`sim`]: the `sim` runtime: nodes that pretend to run pods (start
//!   delay, failure rate), many per process, as KWOK does.
//! - [`metrics`]: the agent's Prometheus figures and its `/metrics`
//!   listener.
//!
//! The Docker runtime is not built yet: `--runtime docker` is refused.

pub mod connection;
pub mod metrics;
pub mod settings;
pub mod sim;

use tokio_util::sync::CancellationToken;

pub use settings::{AgentArgs, AgentSettings, Runtime};

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The runtime asked for does not exist yet.
    #[error("the {0} runtime is not yet available; use --runtime sim")]
    RuntimeUnavailable(&'static str),
    /// `--server` is not a usable URL.
    #[error("--server: {0}")]
    ServerUrl(String),
    /// The metrics listener could not start.
    #[error("--metrics-addr: {0}")]
    Metrics(String),
}

/// Runs the agent until `shutdown`.
pub async fn run(settings: AgentSettings, shutdown: CancellationToken) -> Result<(), AgentError> {
    match settings.runtime {
        Runtime::Docker => return Err(AgentError::RuntimeUnavailable("docker")),
        Runtime::Sim => {}
    }
    let registry = prometheus::Registry::new();
    let metrics =
        metrics::AgentMetrics::new(&registry).map_err(|e| AgentError::Metrics(e.to_string()))?;
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
    let nodes = sim::SimNode::fleet(&settings, channel, metrics);
    tracing::info!(
        nodes = nodes.len(),
        server = settings.server,
        "berth agent started (sim runtime)"
    );
    for node in nodes {
        tasks.spawn(node.run(shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
