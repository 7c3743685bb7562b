//! `berth`: the one binary. `berth server` runs the control plane;
//! `berth agent` runs a node agent; `berth openapi` prints the REST API's
//! OpenAPI document.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Orchestration as a service.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane.
    Server(Box<berth_server::settings::ServerArgs>),
    /// Run a node agent (Docker by default; `--runtime sim` pretends to run pods).
    Agent(Box<berth_agent::AgentArgs>),
    /// Print the REST API's OpenAPI document (as served at /openapi.json).
    Openapi,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Command::Openapi => ExitCode::SUCCESS,
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
