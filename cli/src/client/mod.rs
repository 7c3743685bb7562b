//! The client half of `berth`: the verbs a user types at a terminal, all
//! spoken to the REST API.
//!
//! - [`config`]: the contexts file and where it is;
//! - [`error`]: a command's failure, worded for a person;
//! - [`api`]: the HTTP client that signs requests, renews the session and
//!   turns the error envelope into [`CliError`];
//! - [`output`]: tables, colour, ages;
//! - [`columns`]: what `get` shows of each kind;
//! - the verbs, one module per family.

pub mod accounts;
pub mod api;
pub mod apply;
pub mod change;
pub mod columns;
pub mod config;
pub mod describe;
pub mod error;
pub mod exec;
pub mod get;
pub mod logs;
pub mod manifests;
pub mod output;
pub mod resources;
pub mod rollout;
pub mod session;
pub mod top;

pub use error::CliError;

/// The options every client verb takes.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct GlobalArgs {
    /// The context of the config file to use (its current one otherwise).
    #[arg(long, global = true, env = "BERTH_CONTEXT")]
    pub context: Option<String>,
    /// The server's URL, over the context's.
    #[arg(long, global = true, env = "BERTH_SERVER")]
    pub server: Option<String>,
    /// The tenant to act in, over the context's.
    #[arg(long, global = true, env = "BERTH_TENANT")]
    pub tenant: Option<String>,
}
