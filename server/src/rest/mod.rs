//! The REST API under `/api/v1`.
//!
//! - `error`: the one error envelope.
//! - `caller`: the signed-in caller of a request (bearer tokens).
//! - `auth_routes`: login, refresh, logout.
//! - `audit_routes`: recording actions, and reading a tenant's audit log.
//! - [`openapi`]: the OpenAPI document.
//! - `resources`, `body`, `watch`: the object endpoints of every kind,
//!   their bodies and their watch streams.
//! - `rollouts`: the scale subresource of Deployments and ReplicaSets, a
//!   Deployment's rollback and revisions.
//! - `logs`: containers' logs of a pod or of a Deployment's pods.
//! - `exec`: a command in a pod's container over a WebSocket.
//! - `metrics`: pods' CPU and memory as their agents report them.
//! - `tenants`: tenants and their members; `users`: accounts (platform
//!   admin); `tokens`: API tokens; `join_tokens`: node join tokens
//!   (platform admin).
//! - [`state`]: [`state::AppState`], what every handler can reach.

mod audit_routes;
mod auth_routes;
mod body;
pub mod caller;
pub mod error;
mod exec;
mod join_tokens;
mod logs;
mod metrics;
pub mod openapi;
mod resources;
pub use auth_routes::sign_in_recorded;
pub use resources::object_error;
mod rollouts;
pub mod state;
mod tenants;
mod tokens;
mod users;
mod watch;

use actix_web::web;

/// Bodies larger than this are refused.
pub const MAX_BODY_BYTES: usize = 1536 * 1024;

/// Mounts the REST API.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .app_data(
            web::JsonConfig::default()
                .limit(MAX_BODY_BYTES)
                .error_handler(error::json_error),
        )
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .app_data(web::PathConfig::default().error_handler(error::path_error))
        .service(auth_routes::login)
        .service(auth_routes::refresh)
        .service(auth_routes::logout)
        .service(audit_routes::list_audit);
    tenants::configure(config);
    users::configure(config);
    tokens::configure(config);
    // Before the object routes, which would take `join-tokens` for a node
    // and the subresources for nothing.
    join_tokens::configure(config);
    rollouts::configure(config);
    logs::configure(config);
    exec::configure(config);
    metrics::configure(config);
    resources::configure(config);
}
