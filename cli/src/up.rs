//! `berth up`: Berth on one machine in one process. The server (SQLite in
//! `./berth-data` unless `--database-url` says otherwise) and one agent
//! (Docker when its socket answers; `--runtime sim` otherwise), the CLI
//! signed in as the platform admin in a tenant, and a few lines saying
//! where everything is.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use berth_agent::RuntimeKind;
use berth_server::server::StartError;
use berth_server::settings::{ServerArgs, ServerSettings};
use clap::Parser;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::client::GlobalArgs;
use crate::client::api::{http_client, json_of};
use crate::client::session::{keep_session, open_session};

/// `berth up`'s options: the server's, and the local agent's few.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The server's settings, as `berth server` takes them.
    #[command(flatten)]
    pub server: ServerArgs,
    /// How the local agent runs pods: `docker` (the default; the engine
    /// must answer) or `sim` (nothing runs: pods only pretend).
    #[arg(long, value_enum, default_value = "docker")]
    pub runtime: RuntimeKind,
    /// The local node's name (the host's name by default).
    #[arg(long)]
    pub node_name: Option<String>,
    /// How many nodes the sim runtime pretends to be.
    #[arg(long, default_value_t = 1)]
    pub sim_nodes: u32,
    /// The Docker engine.
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub docker_host: String,
    /// The local node's address, where its node ports listen (the host's
    /// first non-loopback address by default).
    #[arg(long)]
    pub address: Option<std::net::IpAddr>,
    /// When the local node stops taking pods, as `berth agent
    /// --eviction-hard` takes it (its default when not given).
    #[arg(long)]
    pub eviction_hard: Option<String>,
}

/// The tenant `up` creates and signs the CLI in to, unless `--tenant`
/// names another.
const DEFAULT_TENANT: &str = "default";
/// The context `up` signs the CLI in under, unless `--context` names
/// another.
const LOCAL_CONTEXT: &str = "local";

/// The host's name as a node name (lowercase; `local` if it has none
/// that is a valid node name).
fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if berth_api::labels::is_dns_subdomain(&name) {
        name
    } else {
        "local".into()
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Runs `berth up`.
pub async fn run(args: UpArgs, global: GlobalArgs) -> ExitCode {
    let settings = match args.server.clone().resolve() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("berth: {error}");
            return ExitCode::from(2);
        }
    };
    if args.runtime == RuntimeKind::Docker
        && let Err(error) = berth_agent::runtime::docker::engine(&args.docker_host).await
    {
        let reason = std::error::Error::source(&error)
            .map(ToString::to_string)
            .unwrap_or_else(|| error.to_string());
        eprintln!(
            "berth: Docker is not answering at {}: {reason}\n\
             Start Docker (or point DOCKER_HOST at it), or try Berth without containers, \
             with pods that only pretend to run:\n    berth up --runtime sim",
            args.docker_host
        );
        return ExitCode::from(2);
    }
    let mut server_task = tokio::spawn(berth_server::server::run(
        settings.clone(),
        berth_web::routes(),
    ));
    let base = format!("http://{}", settings.http_addr);
    if let Err(message) = wait_until_ready(&base, &server_task).await {
        eprintln!("berth: {message}");
        return match server_task.await {
            Ok(Err(StartError::Settings(error))) => {
                eprintln!("berth: {error}");
                ExitCode::from(2)
            }
            Ok(Err(StartError::Other(error))) => {
                eprintln!("berth: {error:#}");
                ExitCode::FAILURE
            }
            _ => ExitCode::FAILURE,
        };
    }
    let node = args.node_name.clone().unwrap_or_else(host_name);
    let shutdown = CancellationToken::new();
    let agent_task = match start_agent(&args, &settings, &node, shutdown.clone()) {
        Ok(task) => task,
        Err(message) => {
            eprintln!("berth: {message}");
            stop_server();
            let _ = server_task.await;
            return ExitCode::FAILURE;
        }
    };
    // The banner names a node that takes pods: wait until it is Ready.
    let first_node = if args.runtime == RuntimeKind::Sim && args.sim_nodes > 1 {
        format!("{node}-0")
    } else {
        node.clone()
    };
    tokio::pin!(agent_task);
    match sign_in(&settings, &base, &global).await {
        Ok((context, tenant, token)) => {
            let ready = tokio::select! {
                ready = wait_for_node(&base, &token, &first_node) => ready,
                result = &mut agent_task => Err(match result {
                    Ok(Ok(())) => "the agent stopped while its node was registering".to_owned(),
                    Ok(Err(error)) => format!("the agent stopped: {error}"),
                    Err(error) => format!("the agent stopped: {error}"),
                }),
            };
            if let Err(message) = ready {
                eprintln!("berth: {message}");
                shutdown.cancel();
                stop_server();
                let _ = server_task.await;
                return ExitCode::FAILURE;
            }
            let password = match &settings.admin_password {
                Some(_) => "as given to --admin-password".to_owned(),
                None => format!("in {}", settings.data_dir.join("admin-password").display()),
            };
            let runtime = match args.runtime {
                RuntimeKind::Docker => "Docker",
                RuntimeKind::Sim => "sim: pods only pretend to run",
            };
            println!(
                "\nBerth is up.\n\
                 \x20 Dashboard   {base}/\n\
                 \x20 Sign in as  {} (password {password})\n\
                 \x20 Node        {node} ({runtime})\n\
                 \x20 CLI         signed in: context {context:?}, tenant {tenant:?}\n\
                 Try: berth apply -f examples/web-app.yaml && berth rollout status deployment/web\n\
                 Stop with Ctrl-C.",
                settings.admin_email
            );
        }
        Err(message) => {
            eprintln!(
                "berth: the server and agent run, but the CLI could not be signed in: {message}"
            );
        }
    }
    let result = tokio::select! {
        result = &mut server_task => {
            shutdown.cancel();
            let _ = agent_task.await;
            result
        }
        result = &mut agent_task => {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(error)) => eprintln!("berth: the agent stopped: {error}"),
                Err(error) => eprintln!("berth: the agent stopped: {error}"),
            }
            stop_server();
            server_task.await
        }
    };
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("berth: {error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("berth: the server stopped: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Asks the server (which listens for signals itself) to shut down.
fn stop_server() {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGTERM);
}

/// How long `up` waits for its node to register and turn Ready.
const NODE_READY_WITHIN: Duration = Duration::from_secs(60);

/// Waits until node `name` reports Ready; after `NODE_READY_WITHIN`, an
/// error naming the node and what it last reported.
async fn wait_for_node(base: &str, token: &str, name: &str) -> Result<(), String> {
    let http = http_client().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut last = "not registered".to_owned();
    loop {
        let response = http
            .get(format!("{base}/api/v1/nodes/{name}"))
            .bearer_auth(token)
            .send()
            .await;
        if let Ok(response) = response
            && response.status().is_success()
            && let Ok(node) = response.json::<serde_json::Value>().await
        {
            let ready = node["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready");
            match ready {
                Some(c) if c["status"] == "True" => return Ok(()),
                Some(c) => {
                    last = format!(
                        "Ready is {}: {}",
                        c["status"].as_str().unwrap_or("Unknown"),
                        c["message"].as_str().unwrap_or("no message")
                    )
                }
                None => last = "registered, no Ready condition yet".to_owned(),
            }
        }
        if started.elapsed() > NODE_READY_WITHIN {
            return Err(format!(
                "node {name} was not Ready within {} s ({last})",
                NODE_READY_WITHIN.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `/readyz` answers 200, or the server stops first.
async fn wait_until_ready(
    base: &str,
    server: &tokio::task::JoinHandle<Result<(), StartError>>,
) -> Result<(), String> {
    let http = http_client().map_err(|e| e.to_string())?;
    let started = Instant::now();
    loop {
        if server.is_finished() {
            return Err("the server stopped while starting".into());
        }
        if let Ok(response) = http.get(format!("{base}/readyz")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("the server at {base} was not ready within 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start_agent(
    args: &UpArgs,
    settings: &ServerSettings,
    node: &str,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<Result<(), berth_agent::AgentError>>, String> {
    #[derive(Parser)]
    struct Agent {
        #[command(flatten)]
        args: berth_agent::AgentArgs,
    }
    let token_file = settings.data_dir.join("node-token");
    let token = std::fs::read_to_string(&token_file)
        .map_err(|e| format!("reading the node token {}: {e}", token_file.display()))?;
    let runtime = match args.runtime {
        RuntimeKind::Docker => "docker",
        RuntimeKind::Sim => "sim",
    };
    let state_dir = absolute(&settings.data_dir.join("agent"));
    let mut flags = vec![
        "berth-agent".to_owned(),
        "--server".into(),
        format!("http://{}", settings.grpc_addr),
        "--token".into(),
        token.trim().to_owned(),
        "--name".into(),
        node.to_owned(),
        "--runtime".into(),
        runtime.into(),
        "--sim-nodes".into(),
        args.sim_nodes.to_string(),
        "--docker-host".into(),
        args.docker_host.clone(),
        "--state-dir".into(),
        state_dir.display().to_string(),
    ];
    if let Some(address) = args.address {
        flags.extend(["--address".to_owned(), address.to_string()]);
    }
    if let Some(thresholds) = &args.eviction_hard {
        flags.extend(["--eviction-hard".to_owned(), thresholds.clone()]);
    }
    let agent =
        Agent::try_parse_from(flags).map_err(|e| format!("the local agent's settings: {e}"))?;
    let settings = agent.args.resolve().map_err(|e| e.to_string())?;
    Ok(tokio::spawn(berth_agent::run(settings, shutdown)))
}

/// Signs the CLI in as the platform admin, in a tenant it creates if it
/// must; answers the context, the tenant and the session's token.
async fn sign_in(
    settings: &ServerSettings,
    base: &str,
    global: &GlobalArgs,
) -> Result<(String, String, String), String> {
    let password = match &settings.admin_password {
        Some(password) => password.0.clone(),
        None => {
            let file = settings.data_dir.join("admin-password");
            std::fs::read_to_string(&file)
                .map(|p| p.trim().to_owned())
                .map_err(|e| format!("reading {}: {e}", file.display()))?
        }
    };
    let http = http_client().map_err(|e| e.to_string())?;
    let session = open_session(&http, base, &settings.admin_email, &password)
        .await
        .map_err(|e| e.to_string())?;
    let tenant = global
        .tenant
        .clone()
        .unwrap_or_else(|| DEFAULT_TENANT.to_owned());
    let existing = http
        .get(format!("{base}/api/v1/tenants/{tenant}"))
        .bearer_auth(&session.token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if existing.status() == reqwest::StatusCode::NOT_FOUND {
        let created = http
            .post(format!("{base}/api/v1/tenants"))
            .bearer_auth(&session.token)
            .json(&json!({"name": tenant}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        json_of(created).await.map_err(|e| e.to_string())?;
    }
    let context = global
        .context
        .clone()
        .unwrap_or_else(|| LOCAL_CONTEXT.to_owned());
    let token = session.token.clone();
    keep_session(
        &context,
        base,
        Some(tenant.clone()),
        &settings.admin_email,
        session,
    )
    .map_err(|e| e.to_string())?;
    Ok((context, tenant, token))
}
