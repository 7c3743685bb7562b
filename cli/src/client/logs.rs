//! `berth logs POD | deployment/NAME [-c C] [-f] [--tail N] [--previous]
//! [--timestamps] [--since D]`: a container's output, streamed as the
//! server sends it.

use std::io::Write;

use berth_api::objects::Kind;
use futures::StreamExt;
use reqwest::Method;

use super::GlobalArgs;
use super::api::{Body, Client, json_of};
use super::error::CliError;
use super::resources::{self, Named};

/// `berth logs`' options.
#[derive(Clone, Debug, clap::Args)]
pub struct LogsArgs {
    /// A pod (NAME or pod/NAME), or deployment/NAME for all its pods.
    pub object: String,
    /// The container (needed when the pod has several; all of them for a
    /// Deployment otherwise).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep printing what the container writes.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<i64>,
    /// The previous run of the container, after a restart.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Start each line with its time.
    #[arg(long)]
    pub timestamps: bool,
    /// Only what was written in the last while (`10s`, `5m`).
    #[arg(long)]
    pub since: Option<String>,
}

/// Runs `berth logs`.
pub async fn run(args: LogsArgs, global: &GlobalArgs) -> Result<(), CliError> {
    let target = if args.object.contains('/') {
        resources::one(std::slice::from_ref(&args.object))?
    } else {
        Named {
            kind: Kind::Pod,
            name: args.object.clone(),
        }
    };
    if !matches!(target.kind, Kind::Pod | Kind::Deployment) {
        return Err(CliError::Usage(format!(
            "logs come from pods and deployments, not {}",
            target.kind.plural()
        )));
    }
    let client = Client::new(global)?;
    let mut query = vec![];
    if let Some(container) = &args.container {
        query.push(format!("container={}", resources::percent(container)));
    }
    if args.follow {
        query.push("follow=true".into());
    }
    if let Some(tail) = args.tail.filter(|t| *t >= 0) {
        query.push(format!("tailLines={tail}"));
    }
    if args.previous {
        query.push("previous=true".into());
    }
    if args.timestamps {
        query.push("timestamps=true".into());
    }
    if let Some(since) = &args.since {
        let duration = berth_api::duration::parse_duration(since)
            .map_err(|reason| CliError::Usage(format!("--since {since:?}: {reason}")))?;
        query.push(format!("sinceSeconds={}", duration.as_secs().max(1)));
    }
    let mut path = format!("{}/log", resources::object(&client, &target)?);
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    let response = client.send(Method::GET, &path, &Body::Empty).await?;
    if !response.status().is_success() {
        json_of(response).await?;
        return Ok(());
    }
    let mut stream = response.bytes_stream();
    let mut stdout = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| CliError::Failed(format!("the log stream broke off: {e}")))?;
        if stdout
            .write_all(&chunk)
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // The reader went away (`| head`): stop quietly.
            return Ok(());
        }
    }
    Ok(())
}
