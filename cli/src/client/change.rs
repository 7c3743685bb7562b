//! Verbs that change one object: `berth delete`, `berth scale`,
//! `berth edit`, `berth nodes cordon|uncordon`.

use std::time::{Duration, Instant};

use berth_api::objects::Kind;
use reqwest::Method;
use serde_json::{Value, json};

use super::GlobalArgs;
use super::api::{Body, Client};
use super::error::CliError;
use super::manifests;
use super::output::{Colour, paint, print_error};
use super::resources::{self, Named};

/// What happens to an object's dependents when it is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Cascade {
    /// Delete the object now; the garbage collector deletes its
    /// dependents after.
    #[default]
    Background,
    /// Delete the dependents first; the object goes last.
    Foreground,
    /// Leave the dependents, without their owner.
    Orphan,
}

/// `berth delete`'s options.
#[derive(Clone, Debug, clap::Args)]
pub struct DeleteArgs {
    /// KIND NAME..., or KIND/NAME...; or KIND with -l.
    pub objects: Vec<String>,
    /// Delete what these manifests describe.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    /// Read directories' subdirectories too.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Delete every object of the kind whose labels match.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// What happens to dependents (pods of a Deployment's ReplicaSets).
    #[arg(long, value_enum, default_value = "background")]
    pub cascade: Cascade,
    /// Seconds a pod has to stop before it is killed (its own setting
    /// otherwise; 0 kills it at once).
    #[arg(long)]
    pub grace_period: Option<u64>,
    /// Do not answer a missing object with an error.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Wait until the objects are gone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub wait: bool,
    /// How long --wait waits (`60s`, `5m`).
    #[arg(long, default_value = "5m")]
    pub timeout: String,
}

/// `berth scale`'s options.
#[derive(Clone, Debug, clap::Args)]
pub struct ScaleArgs {
    /// `deployment NAME`, `deployment/NAME`, or a ReplicaSet the same way.
    pub object: Vec<String>,
    /// How many replicas.
    #[arg(long)]
    pub replicas: i64,
}

/// `berth edit`'s options.
#[derive(Clone, Debug, clap::Args)]
pub struct EditArgs {
    /// KIND NAME or KIND/NAME.
    pub object: Vec<String>,
}

/// `berth nodes`' verbs.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum NodesCommand {
    /// Keep new pods off the node (those on it stay).
    Cordon {
        /// The node.
        name: String,
    },
    /// Let pods be scheduled on the node again.
    Uncordon {
        /// The node.
        name: String,
    },
}

/// Runs `berth delete`.
pub async fn delete(args: DeleteArgs, global: &GlobalArgs) -> Result<(), CliError> {
    let mut targets = Vec::new();
    if !args.files.is_empty() {
        if !args.objects.is_empty() {
            return Err(CliError::Usage(
                "name objects either with -f or as KIND NAME, not both".into(),
            ));
        }
        for source in manifests::read_sources(&args.files, args.recursive)? {
            for (index, document) in manifests::documents(&source)?.iter().enumerate() {
                let kind = document["kind"].as_str().unwrap_or_default();
                let name = document["metadata"]["name"].as_str().unwrap_or_default();
                let Some(kind) = Kind::from_kind_name(kind) else {
                    return Err(CliError::File {
                        path: source.name.clone(),
                        reason: format!(
                            "document {}: kind: {kind:?} is not a kind Berth has",
                            index + 1
                        ),
                    });
                };
                if name.is_empty() {
                    return Err(CliError::File {
                        path: source.name.clone(),
                        reason: format!("document {}: metadata.name: required", index + 1),
                    });
                }
                targets.push(Named {
                    kind,
                    name: name.to_owned(),
                });
            }
        }
    }
    let client = Client::new(global)?;
    if let Some(selector) = &args.selector {
        let [word] = args.objects.as_slice() else {
            return Err(CliError::Usage(
                "with -l, name the kind only: delete KIND -l SELECTOR".into(),
            ));
        };
        let kind = resources::kind(word)?;
        let list = client
            .get(&format!(
                "{}?labelSelector={}",
                resources::collection(&client, kind)?,
                resources::percent(selector)
            ))
            .await?;
        for item in list["items"].as_array().into_iter().flatten() {
            targets.push(Named {
                kind,
                name: berth_web::view::name(item),
            });
        }
        if targets.is_empty() {
            eprintln!("No resources found.");
            return Ok(());
        }
    } else if args.files.is_empty() {
        targets = resources::named(&args.objects)?;
    }
    let timeout = berth_api::duration::parse_duration(&args.timeout)
        .map_err(|reason| CliError::Usage(format!("--timeout {:?}: {reason}", args.timeout)))?;
    let policy = match args.cascade {
        Cascade::Background => "Background",
        Cascade::Foreground => "Foreground",
        Cascade::Orphan => "Orphan",
    };
    let mut deleted = Vec::new();
    let mut failed = false;
    for target in &targets {
        let mut path = format!(
            "{}?propagationPolicy={policy}",
            resources::object(&client, target)?
        );
        if let Some(grace) = args.grace_period {
            path.push_str(&format!("&gracePeriodSeconds={grace}"));
        }
        match client.json(Method::DELETE, &path, &Body::Empty).await {
            Ok(_) => {
                println!("{target} {}", paint("deleted", Colour::Yellow));
                deleted.push(target);
            }
            Err(error) if error.is_not_found() && args.ignore_not_found => {}
            Err(error @ CliError::Api { .. }) => {
                print_error(&format!("{target}: {}", error.line()));
                failed = true;
            }
            Err(error) => return Err(error),
        }
    }
    if args.wait {
        let deadline = Instant::now() + timeout;
        for target in deleted {
            let path = resources::object(&client, target)?;
            loop {
                match client.get(&path).await {
                    Err(error) if error.is_not_found() => break,
                    Err(error) => return Err(error),
                    Ok(_) if Instant::now() >= deadline => {
                        return Err(CliError::Failed(format!(
                            "{target} is still there after {}: it is being deleted",
                            args.timeout
                        )));
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
    }
    if failed {
        return Err(CliError::Reported);
    }
    Ok(())
}

/// Runs `berth scale`.
pub async fn scale(args: ScaleArgs, global: &GlobalArgs) -> Result<(), CliError> {
    let target = resources::one(&args.object)?;
    if !target.kind.has_scale() {
        return Err(CliError::Usage(format!(
            "{} cannot be scaled: deployments and replicasets can",
            target.kind.plural()
        )));
    }
    let client = Client::new(global)?;
    let path = format!("{}/scale", resources::object(&client, &target)?);
    client
        .json(
            Method::PUT,
            &path,
            &Body::Json(json!({"spec": {"replicas": args.replicas}})),
        )
        .await?;
    println!("{target} scaled");
    Ok(())
}

/// Runs `berth nodes …`.
pub async fn nodes(command: NodesCommand, global: &GlobalArgs) -> Result<(), CliError> {
    let client = Client::new(global)?;
    let (name, cordon) = match command {
        NodesCommand::Cordon { name } => (name, true),
        NodesCommand::Uncordon { name } => (name, false),
    };
    let path = format!("/api/v1/nodes/{}", resources::percent(&name));
    let node = client.get(&path).await?;
    let was = node["spec"]["unschedulable"] == Value::Bool(true);
    let word = if cordon { "cordoned" } else { "uncordoned" };
    if was == cordon {
        println!("node/{name} already {word}");
        return Ok(());
    }
    client
        .json(
            Method::PATCH,
            &path,
            &Body::MergePatch(json!({"spec": {"unschedulable": if cordon { Value::Bool(true) } else { Value::Null }}})),
        )
        .await?;
    println!("node/{name} {word}");
    Ok(())
}

const EDIT_HEADER: &str = "# Please edit the object below. Lines beginning with a '#' will be ignored,\n\
# and an empty file will abort the edit. If an error occurs while saving this file will be\n\
# reopened with the relevant failures.\n#\n";

/// Runs the user's editor on `path`: `$VISUAL`, else `$EDITOR`, else `vi`
/// (through the shell, so that `EDITOR="code --wait"` works).
fn run_editor(path: &std::path::Path) -> Result<(), CliError> {
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".into());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("berth-edit")
        .arg(path)
        .status()
        .map_err(|e| CliError::Failed(format!("cannot run the editor {editor:?}: {e}")))?;
    if !status.success() {
        return Err(CliError::Failed(format!(
            "the editor {editor:?} exited with {status}; nothing was changed"
        )));
    }
    Ok(())
}

/// The file's text without comment lines.
fn uncommented(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `berth edit`: the object as YAML in the editor, saved with PUT;
/// when the server refuses it, the editor opens again with the errors on
/// top, until it saves or the user leaves the file unchanged.
pub async fn edit(args: EditArgs, global: &GlobalArgs) -> Result<(), CliError> {
    let target = resources::one(&args.object)?;
    let client = Client::new(global)?;
    let path = resources::object(&client, &target)?;
    let mut object = client.get(&path).await?;
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    let original = berth_web::view::yaml(&object);
    let file = tempfile::Builder::new()
        .prefix(&format!("berth-edit-{}-", target.name))
        .suffix(".yaml")
        .tempfile()
        .map_err(|e| CliError::Failed(format!("cannot make a file to edit: {e}")))?;
    let mut text = format!("{EDIT_HEADER}{original}");
    let mut last_attempt: Option<String> = None;
    loop {
        std::fs::write(file.path(), &text).map_err(|e| CliError::File {
            path: file.path().display().to_string(),
            reason: e.to_string(),
        })?;
        run_editor(file.path())?;
        let edited = std::fs::read_to_string(file.path()).map_err(|e| CliError::File {
            path: file.path().display().to_string(),
            reason: e.to_string(),
        })?;
        let body = uncommented(&edited);
        if body.trim().is_empty() {
            println!("Edit cancelled, the file was empty.");
            return Ok(());
        }
        if body.trim() == original.trim() {
            println!("Edit cancelled, no changes made.");
            return Ok(());
        }
        if last_attempt.as_deref() == Some(body.trim()) {
            let kept = file
                .keep()
                .map(|(_, p)| p.display().to_string())
                .unwrap_or_default();
            return Err(CliError::Failed(format!(
                "edit cancelled, no valid changes were saved; your changes are in {kept}"
            )));
        }
        let failure = match yaml_serde::from_str::<Value>(&body) {
            Err(error) => Some(format!("# the file is not valid YAML: {error}\n")),
            Ok(_) => match client
                .json(
                    Method::PUT,
                    &path,
                    &Body::Bytes(body.clone().into_bytes(), "application/yaml"),
                )
                .await
            {
                Ok(_) => None,
                Err(CliError::Api {
                    message, details, ..
                }) => {
                    let mut lines = format!(
                        "# {} {:?} was not saved: {message}\n",
                        target.kind.name(),
                        target.name
                    );
                    for detail in details {
                        lines.push_str(&format!("# * {}: {}\n", detail.field, detail.reason));
                    }
                    Some(lines)
                }
                Err(error) => return Err(error),
            },
        };
        match failure {
            None => {
                println!("{target} edited");
                return Ok(());
            }
            Some(lines) => {
                last_attempt = Some(body.trim().to_owned());
                text = format!("{EDIT_HEADER}{lines}#\n{body}\n");
            }
        }
    }
}
