//! `berth`: the one binary. `berth server` runs the control plane;
//! `berth agent` runs a node agent; `berth up` runs both on one machine;
//! the client verbs (`login`, `apply`, `get`, …) talk to a server's REST
//! API; `berth openapi` prints the REST API's OpenAPI document.
//!
//! - [`client`]: the client verbs;
//! - [`up`]: `berth up`;
//! - [`restore`]: `berth restore`.

mod client;
mod restore;
mod up;

use std::process::ExitCode;

/// mimalloc, not glibc's malloc: the server frees and allocates many small
/// objects from every thread, and glibc's arenas took about a quarter of
/// its CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, Parser, Subcommand};

use client::{
    CliError, GlobalArgs, accounts, apply, change, describe, exec, get, logs, rollout, session, top,
};

/// Orchestration as a service.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: GlobalArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane.
    Server(Box<berth_server::settings::ServerArgs>),
    /// Run a node agent (Docker by default; `--runtime sim` pretends to run pods).
    Agent(Box<berth_agent::AgentArgs>),
    /// Run a server and a local agent in one process, and sign the CLI in.
    Up(Box<up::UpArgs>),
    /// Make a new store from a snapshot (`etcdctl snapshot save`).
    Restore(restore::RestoreArgs),
    /// Sign in to a server; the session is kept in the config file.
    Login(session::LoginArgs),
    /// End the session of the current context.
    Logout,
    /// The config file's contexts (a server, a tenant, a session each).
    #[command(subcommand)]
    Context(session::ContextCommand),
    /// Tenants: create, list, choose the one to act in.
    #[command(subcommand)]
    Tenant(accounts::TenantCommand),
    /// The tenant's members and their roles.
    #[command(subcommand)]
    Member(accounts::MemberCommand),
    /// API tokens for scripts and CI.
    #[command(subcommand)]
    Token(accounts::TokenCommand),
    /// Create or update objects from manifests (YAML or JSON).
    Apply(apply::ApplyArgs),
    /// List objects, or show some, as a table, YAML, JSON or names.
    Get(get::GetArgs),
    /// Show an object in detail, with its conditions and events.
    Describe(describe::DescribeArgs),
    /// Delete objects by name, by label or by manifest.
    Delete(change::DeleteArgs),
    /// Set how many replicas a Deployment (or ReplicaSet) runs.
    Scale(change::ScaleArgs),
    /// Edit an object in $EDITOR and save it.
    Edit(change::EditArgs),
    /// Follow, list, undo, restart, pause or resume a Deployment's rollout.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// Print a pod's or a Deployment's logs.
    Logs(logs::LogsArgs),
    /// Run a command in a pod's container.
    Exec(exec::ExecArgs),
    /// CPU and memory in use by pods or on nodes.
    #[command(subcommand)]
    Top(top::TopCommand),
    /// List the tenant's events, oldest first; -w for new ones.
    Events(get::EventsArgs),
    /// Cordon or uncordon a node.
    #[command(subcommand)]
    Nodes(change::NodesCommand),
    /// Print a shell completion script (bash, zsh or fish).
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the REST API's OpenAPI document (as served at /openapi.json).
    Openapi,
}

/// Runs a client verb and turns its error into one line and an exit code.
async fn client_verb(command: Command, global: GlobalArgs) -> ExitCode {
    let result = match command {
        Command::Login(args) => session::login(args, &global).await,
        Command::Logout => session::logout(&global).await,
        Command::Context(command) => session::context(command),
        Command::Tenant(command) => accounts::tenant(command, &global).await,
        Command::Member(command) => accounts::member(command, &global).await,
        Command::Token(command) => accounts::token(command, &global).await,
        Command::Apply(args) => apply::run(args, &global).await,
        Command::Get(args) => get::run(args, &global).await,
        Command::Describe(args) => describe::run(args, &global).await,
        Command::Delete(args) => change::delete(args, &global).await,
        Command::Scale(args) => change::scale(args, &global).await,
        Command::Edit(args) => change::edit(args, &global).await,
        Command::Rollout(command) => rollout::run(command, &global).await,
        Command::Logs(args) => logs::run(args, &global).await,
        Command::Exec(args) => exec::run(args, &global).await,
        Command::Top(command) => top::run(command, &global).await,
        Command::Events(args) => get::events(args, &global).await,
        Command::Nodes(command) => change::nodes(command, &global).await,
        _ => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ (CliError::Reported | CliError::Exit(_))) => ExitCode::from(error.exit_code()),
        Err(error) => {
            client::output::print_error(&error.line());
            ExitCode::from(error.exit_code())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completion { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "berth", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Command::Openapi = cli.command {
        return match berth_server::rest::openapi::document().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("berth: cannot render the OpenAPI document: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let daemon = matches!(
        cli.command,
        Command::Server(_) | Command::Agent(_) | Command::Up(_) | Command::Restore(_)
    );
    if !daemon {
        // A client verb: a small runtime, no log lines, and nothing but
        // its own words on the terminal.
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                client::output::print_error(&format!("cannot start: {error}"));
                return ExitCode::FAILURE;
            }
        };
        return runtime.block_on(client_verb(cli.command, cli.global));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hickory_server=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("berth: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Server(args) => runtime.block_on(server(*args)),
        Command::Agent(args) => runtime.block_on(agent(*args)),
        Command::Up(args) => runtime.block_on(up::run(*args, cli.global)),
        Command::Restore(args) => runtime.block_on(restore::run(args)),
        _ => ExitCode::SUCCESS,
    }
}

async fn server(args: berth_server::settings::ServerArgs) -> ExitCode {
    use berth_server::server::StartError;
    let result = match args.resolve() {
        Ok(settings) => berth_server::server::run(settings, berth_web::routes()).await,
        Err(error) => Err(StartError::Settings(error)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Settings(error)) => {
            eprintln!("berth: {error}");
            ExitCode::from(2)
        }
        Err(StartError::Other(error)) => {
            eprintln!("berth: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn agent(args: berth_agent::AgentArgs) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let settings = match args.resolve() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("berth: {error}");
            return ExitCode::from(2);
        }
    };
    let (mut terminate, mut interrupt) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("berth: cannot listen for signals: {error}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let agent = berth_agent::run(settings, shutdown.clone());
    tokio::pin!(agent);
    let result = tokio::select! {
        result = &mut agent => result,
        _ = terminate.recv() => {
            tracing::info!(reason = "SIGTERM", "shutting down");
            shutdown.cancel();
            agent.await
        }
        _ = interrupt.recv() => {
            tracing::info!(reason = "SIGINT", "shutting down");
            shutdown.cancel();
            agent.await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ berth_agent::AgentError::Docker(_)) => {
            eprintln!("berth: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("berth: {error}");
            ExitCode::FAILURE
        }
    }
}
