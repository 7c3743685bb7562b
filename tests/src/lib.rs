//! The harness behind Berth's end-to-end tests and benchmarks.
//!
//! - [`browser`]: headless Chromium through chromedriver, with waits for
//!   pages that render after they load.
//! - [`cli`]: the `berth` CLI run as a user runs it, with a config file
//!   of its own.
//! - [`cluster`]: a server with its controllers, and what control-loop
//!   tests share.
//! - [`docker`]: the test image (busybox, made once per machine) and a
//!   guard that removes what a test's agent left on the engine.
//! - [`db`]: a fresh database per test, on SQLite or PostgreSQL.
//! - [`etcd`]: a real etcd to compare with, and `etcdctl` to drive either.
//! - [`etcd_grpc`]: raw etcd gRPC clients signed in as a Berth user.
//! - [`logs`]: reading the log API, whole or followed.
//! - [`node_api`]: the node API as an agent calls it.
//! - [`postgres`]: a PostgreSQL of a test's own, to stop and start.
//! - [`process`]: building and running Berth's binaries as real processes.
//! - [`rest`]: a small REST client: sign in, then JSON in and out.
//! - [`tokens`]: forged, tampered and expired access tokens.

pub mod browser;
pub mod cli;
pub mod cluster;
pub mod db;
pub mod docker;
pub mod docker_cluster;
pub mod etcd;
pub mod etcd_grpc;
pub mod logs;
pub mod node_api;
pub mod postgres;
pub mod process;
pub mod registry;
pub mod rest;
pub mod tokens;
