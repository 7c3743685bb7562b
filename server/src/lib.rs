//! Berth's control plane.
//!
//! - [`store`]: the MVCC revision log with etcd's semantics, on SQLite or
//!   PostgreSQL; everything else reads and writes desired state through it.
//! - [`settings`]: `berth server`'s settings, their defaults and checks.
//! - [`auth`]: passwords, access tokens, the first admin, the key decision.
//! - [`sign_in`]: email and password sign-in for every API, with the one
//!   throttle on failures, kept in the database.
//! - [`secrets`]: the encryption key and secret values sealed at rest.
//! - [`audit`]: the audit log's batching writer.
//! - [`authz`]: the one authorization decision (subject, tenant, kind, verb).
//! - [`events`]: Events for users, deduplicated and expiring with a lease.
//! - [`etcd`]: the etcd v3 API (gRPC) over the store.
//! - [`node_api`]: the node API (gRPC) agents register, heartbeat, watch
//!   their pods and report status through.
//! - [`http`]: the HTTP listener: health, readiness and metrics.
//! - [`objects`]: objects of every kind in the store: keys, managed fields,
//!   concurrency, Secret sealing, lists and watches.
//! - [`pod_security`]: Pod Security admission against each tenant's level,
//!   and changing that level.
//! - [`pod_logs`]: containers' logs through the agents' tunnels, of one
//!   pod or of every pod of a Deployment.
//! - [`pod_exec`]: a command in a container, attached, through the pod's
//!   agent's tunnel: which container, and whether it can run there.
//! - [`pod_metrics`]: pods' resource use as agents report it, kept in
//!   memory for fifteen minutes.
//! - [`service_allocation`]: Services' virtual addresses and node ports,
//!   allocated in the Service's own store transaction.
//! - [`rollouts`]: the scale of Deployments and ReplicaSets, a
//!   Deployment's revisions and rollback, over [`objects`].
//! - [`rest`]: the REST API under `/api/v1`.
//! - [`sessions`]: dashboard sessions in cookies, renewed while in use,
//!   and their CSRF tokens.
//! - [`controllers`]: the leader-elected control loops (ReplicaSets,
//!   Deployments) and the runtime they share.
//! - [`scheduler`]: picks a node for every unbound pod.
//! - [`server`]: starts the parts above and runs them until shutdown.

// The node API's async handlers nest deeply enough that computing their
// layout in a release build overflows the default query depth.
#![recursion_limit = "512"]

pub mod audit;
pub mod auth;
pub mod authz;
pub mod controllers;
pub mod etcd;
pub mod events;
pub mod http;
pub mod keys;
pub mod node_api;
pub mod objects;
pub mod pod_exec;
pub mod pod_logs;
pub mod pod_metrics;
pub mod pod_security;
pub mod rest;
pub mod rollouts;
pub mod scheduler;
pub mod secrets;
pub mod server;
pub mod service_allocation;
pub mod sessions;
pub mod settings;
pub mod sign_in;
pub mod store;
