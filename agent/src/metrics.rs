//! The agent's Prometheus figures and the small HTTP listener that serves
//! them at `/metrics`.

use prometheus::{IntCounter, IntGauge, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// What the agent counts; cheap to clone.
#[derive(Clone)]
pub struct AgentMetrics {
    /// Pods running (ready) on this process's nodes.
    pub pods_running: IntGauge,
    /// Nodes registered and heartbeating.
    pub nodes_registered: IntGauge,
    /// Heartbeats the server accepted.
    pub heartbeats_sent: IntCounter,
    /// Heartbeats that failed.
    pub heartbeat_failures: IntCounter,
    /// Pod watches opened again after they ended or failed.
    pub watch_reconnects: IntCounter,
    /// Pod statuses the server accepted.
    pub pod_status_updates: IntCounter,
    /// Pod events the agent could not read and so dropped.
    pub pod_events_dropped: IntCounter,
    /// Pods refused because they fail their tenant's Pod Security level.
    pub pods_refused: IntCounter,
    /// Notes for pod events that did not reach the server.
    pub pod_notes_dropped: IntCounter,
    /// Terminating pods this agent stopped and removed from the store.
    pub pods_removed: IntCounter,
}

impl AgentMetrics {
    /// The figures, registered in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<AgentMetrics> {
        let metrics = AgentMetrics {
            pods_running: IntGauge::new(
                "berth_agent_pods_running",
                "Pods running on this agent's nodes.",
            )?,
            nodes_registered: IntGauge::new(
                "berth_agent_nodes_registered",
                "Nodes registered with the server.",
            )?,
            heartbeats_sent: IntCounter::new(
                "berth_agent_heartbeats_sent_total",
                "Heartbeats the server accepted.",
            )?,
            heartbeat_failures: IntCounter::new(
                "berth_agent_heartbeat_failures_total",
                "Heartbeats that failed.",
            )?,
            watch_reconnects: IntCounter::new(
                "berth_agent_watch_reconnects_total",
                "Pod watches opened again.",
            )?,
            pod_status_updates: IntCounter::new(
                "berth_agent_pod_status_updates_total",
                "Pod statuses the server accepted.",
            )?,
            pod_events_dropped: IntCounter::new(
                "berth_agent_pod_events_dropped_total",
                "Pod events the agent could not read and dropped (each is logged).",
            )?,
            pods_refused: IntCounter::new(
                "berth_agent_pods_refused_total",
                "Pods refused because they fail their tenant's Pod Security level.",
            )?,
            pod_notes_dropped: IntCounter::new(
                "berth_agent_pod_notes_dropped_total",
                "Notes for pod events that did not reach the server.",
            )?,
            pods_removed: IntCounter::new(
                "berth_agent_pods_removed_total",
                "Terminating pods whose containers this agent stopped, then removed from the store.",
            )?,
        };
        registry.register(Box::new(metrics.pods_running.clone()))?;
        registry.register(Box::new(metrics.nodes_registered.clone()))?;
        registry.register(Box::new(metrics.heartbeats_sent.clone()))?;
        registry.register(Box::new(metrics.heartbeat_failures.clone()))?;
        registry.register(Box::new(metrics.watch_reconnects.clone()))?;
        registry.register(Box::new(metrics.pod_status_updates.clone()))?;
        registry.register(Box::new(metrics.pod_events_dropped.clone()))?;
        registry.register(Box::new(metrics.pods_refused.clone()))?;
        registry.register(Box::new(metrics.pod_notes_dropped.clone()))?;
        registry.register(Box::new(metrics.pods_removed.clone()))?;
        Ok(metrics)
    }
}

/// Serves `GET /metrics` (Prometheus text format) on `listener` until
/// `shutdown`; anything else is a 404.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream, registry.clone()));
            }
            Err(error) => tracing::warn!(%error, "accepting a /metrics connection failed"),
        }
    }
}

/// Answers one request and closes the connection.
async fn answer(mut stream: tokio::net::TcpStream, registry: Registry) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let line = String::from_utf8_lossy(&request);
    let path = line.split_whitespace().nth(1).unwrap_or_default();
    let (status, body) =
        if line.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
            match prometheus::TextEncoder::new().encode_to_string(&registry.gather()) {
                Ok(text) => ("200 OK", text),
                Err(error) => ("500 Internal Server Error", format!("{error}\n")),
            }
        } else {
            ("404 Not Found", "only /metrics is served here\n".to_owned())
        };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
