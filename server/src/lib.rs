//! Berth's control plane.
//!
//! - [`store`]: the MVCC revision log with etcd's semantics, on SQLite or
//!   PostgreSQL; everything else reads and writes desired state through it.
//! - [`settings`]: `berth server`'s settings, their defaults and checks.
//! - [`auth`]: passwords, access tokens, the first admin, the key decision.
//! - [`etcd`]: the etcd v3 API (gRPC) over the store.
//! - [`http`]: the HTTP listener: health, readiness and metrics.
//! - [`rest`]: the REST API under `/api/v1`.
//! - [`server`]: starts the parts above and runs them until shutdown.

pub mod auth;
pub mod etcd;
pub mod http;
pub mod rest;
pub mod server;
pub mod settings;
pub mod store;
