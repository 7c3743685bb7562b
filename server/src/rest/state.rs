//! What every HTTP handler can reach: the REST API's, and any other
//! routes the binary mounts beside them (the dashboard), which depend on
//! this module and never on the listener that serves them.

use std::time::Duration;

use prometheus::Registry;

use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Where every metric is registered.
    pub registry: Registry,
    /// Issues and checks access tokens.
    pub tokens: crate::auth::Tokens,
    /// Objects of every kind over the store.
    pub objects: crate::objects::Objects,
    /// Where every change is recorded.
    pub audit: crate::audit::AuditLog,
    /// How often an idle REST watch gets a BOOKMARK.
    pub watch_bookmark_interval: Duration,
    /// The agents' tunnels held by this process, for logs and exec.
    pub tunnels: crate::node_api::tunnels::Tunnels,
    /// The pods' resource use the agents reported to this process.
    pub pod_metrics: crate::pod_metrics::PodMetricsStore,
    /// How long a dashboard session lasts without a request.
    pub session_idle_timeout: Duration,
}
