//! The harness behind Berth's end-to-end tests and benchmarks.
//!
//! - [`db`]: a fresh database per test, on SQLite or PostgreSQL.
//! - [`process`]: building and running Berth's binaries as real processes.

pub mod db;
pub mod process;
