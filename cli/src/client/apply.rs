//! `berth apply -f FILE|DIR|-`: every document created or updated through
//! `POST /tenants/{tenant}/apply`, a line per object (`created`,
//! `configured`, `unchanged`), every failure naming its file, document and
//! field; with `--prune -l SELECTOR`, what the selector matches and the
//! files no longer hold is deleted.

use std::collections::HashSet;

use berth_api::objects::Kind;
use reqwest::Method;
use serde_json::Value;

use super::GlobalArgs;
use super::api::{Body, Client, api_error};
use super::error::CliError;
use super::manifests::{self, Source};
use super::output::{Colour, paint, print_error};
use super::resources::{self, Named};

/// `berth apply`'s options.
#[derive(Clone, Debug, clap::Args)]
pub struct ApplyArgs {
    /// A manifest file, a directory of them, or `-` for standard input;
    /// repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Read directories' subdirectories too.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Delete the objects that the selector matches and the files no
    /// longer hold (needs `-l`).
    #[arg(long)]
    pub prune: bool,
    /// The label selector that `--prune` deletes within.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

/// The kinds `--prune` looks at: what people apply. Objects a controller
/// made (they have an owner) are never pruned.
const PRUNED: [Kind; 7] = [
    Kind::Deployment,
    Kind::Service,
    Kind::ConfigMap,
    Kind::Secret,
    Kind::Volume,
    Kind::HorizontalPodAutoscaler,
    Kind::Pod,
];

/// One document's result as the API answers it.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplyResult {
    index: usize,
    kind: Option<String>,
    name: Option<String>,
    action: String,
    error: Option<ErrorInfo>,
}

#[derive(Debug, serde::Deserialize)]
struct ErrorInfo {
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<super::error::FieldDetail>,
}

/// Runs `berth apply`.
pub async fn run(args: ApplyArgs, global: &GlobalArgs) -> Result<(), CliError> {
    if args.prune && args.selector.is_none() {
        return Err(CliError::Usage(
            "--prune needs -l SELECTOR: it deletes only within what the selector matches".into(),
        ));
    }
    let sources = manifests::read_sources(&args.files, args.recursive)?;
    let client = Client::new(global)?;
    let path = client.tenant_path("/apply")?;
    let mut applied = HashSet::new();
    let mut failures = 0;
    for source in &sources {
        failures += apply_file(&client, &path, source, &mut applied).await?;
    }
    if args.prune {
        if failures > 0 {
            print_error(&format!(
                "not pruning: {failures} document(s) failed, and what they hold must not be deleted"
            ));
        } else if let Some(selector) = &args.selector {
            prune(&client, selector, &applied).await?;
        }
    }
    if failures > 0 {
        return Err(CliError::Reported);
    }
    Ok(())
}

/// Applies one file; answers how many of its documents failed.
async fn apply_file(
    client: &Client,
    path: &str,
    source: &Source,
    applied: &mut HashSet<(String, String)>,
) -> Result<usize, CliError> {
    let response = client
        .send(
            Method::POST,
            path,
            &Body::Bytes(source.bytes.clone(), source.content_type()),
        )
        .await?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| CliError::Failed(format!("reading the server's answer: {e}")))?;
    if !status.is_success() {
        // The whole file was refused: unreadable, too large, or not ours.
        let error = api_error(status, &bytes);
        if matches!(status.as_u16(), 400 | 413 | 415) {
            print_error(&format!("{}: {}", source.name, error.line()));
            return Ok(1);
        }
        return Err(error);
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        results: Vec<ApplyResult>,
    }
    let answer: Answer = serde_json::from_slice(&bytes)
        .map_err(|e| CliError::Failed(format!("the server's apply answer is unreadable: {e}")))?;
    let mut failed = 0;
    for result in answer.results {
        let kind = result.kind.as_deref().unwrap_or("");
        let name = result.name.as_deref().unwrap_or("");
        if let (Some(kind), false) = (Kind::from_kind_name(kind), name.is_empty()) {
            applied.insert((kind.name().to_owned(), name.to_owned()));
        }
        match result.error {
            None => {
                let named = format!("{}/{name}", kind.to_lowercase());
                let action = match result.action.as_str() {
                    "unchanged" => paint("unchanged", Colour::Dim),
                    "created" => paint("created", Colour::Green),
                    other => other.to_owned(),
                };
                println!("{named} {action}");
            }
            Some(error) => {
                failed += 1;
                let what = match (kind.is_empty(), name.is_empty()) {
                    (false, false) => format!(" ({kind} {name})"),
                    (false, true) => format!(" ({kind})"),
                    _ => String::new(),
                };
                let mut line = format!(
                    "{}: document {}{what}: {}",
                    source.name,
                    result.index + 1,
                    error.message
                );
                for detail in &error.details {
                    if !error.message.contains(&detail.reason) {
                        line.push_str(&format!("; {}: {}", detail.field, detail.reason));
                    }
                }
                print_error(&line);
            }
        }
    }
    Ok(failed)
}

/// Deletes what `selector` matches among [`PRUNED`] that was not applied
/// and that no controller owns.
async fn prune(
    client: &Client,
    selector: &str,
    applied: &HashSet<(String, String)>,
) -> Result<(), CliError> {
    for kind in PRUNED {
        let list = client
            .get(&format!(
                "{}?labelSelector={}",
                resources::collection(client, kind)?,
                resources::percent(selector)
            ))
            .await?;
        for item in list["items"].as_array().into_iter().flatten() {
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            let owned = item["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|owners| !owners.is_empty());
            if owned || applied.contains(&(kind.name().to_owned(), name.to_owned())) {
                continue;
            }
            if item["metadata"]["deletionTimestamp"] != Value::Null {
                continue;
            }
            let named = Named {
                kind,
                name: name.to_owned(),
            };
            match client
                .json(
                    Method::DELETE,
                    &resources::object(client, &named)?,
                    &Body::Empty,
                )
                .await
            {
                Ok(_) => println!("{named} {}", paint("pruned", Colour::Yellow)),
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(())
}
