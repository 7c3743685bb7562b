//! `berth rollout status|history|undo|restart|pause|resume` for
//! Deployments.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use berth_api::objects::Kind;
use reqwest::Method;
use serde_json::{Value, json};

use super::GlobalArgs;
use super::api::{Body, Client};
use super::error::CliError;
use super::output::{Colour, paint, print_error, table};
use super::resources::{self, Named};

/// `berth rollout`'s verbs.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Follow the rollout until it is done; exit 1 when it fails, passes
    /// its progress deadline, or --timeout.
    Status {
        /// deployment/NAME or deployment NAME.
        object: Vec<String>,
        /// Give up after this long (`2m`); never when not given.
        #[arg(long)]
        timeout: Option<String>,
    },
    /// List the revisions; with --revision, show one's pod template.
    History {
        /// deployment/NAME or deployment NAME.
        object: Vec<String>,
        /// The revision to show.
        #[arg(long)]
        revision: Option<i64>,
    },
    /// Go back to the previous revision, or to --to-revision.
    Undo {
        /// deployment/NAME or deployment NAME.
        object: Vec<String>,
        /// The revision to go back to.
        #[arg(long)]
        to_revision: Option<i64>,
    },
    /// Replace every pod, one batch at a time, as a rollout does.
    Restart {
        /// deployment/NAME or deployment NAME.
        object: Vec<String>,
    },
    /// Stop rolling out changes to the template until resumed.
    Pause {
        /// deployment/NAME or deployment NAME.
        object: Vec<String>,
    },
    /// Roll out again what a pause held back.
    Resume {
        /// deployment/NAME or deployment NAME.
        object: Vec<String>,
    },
}

fn deployment(words: &[String]) -> Result<Named, CliError> {
    let named = resources::one(words)?;
    if named.kind != Kind::Deployment {
        return Err(CliError::Usage(format!(
            "rollouts are for deployments, not {}",
            named.kind.plural()
        )));
    }
    Ok(named)
}

/// Where a Deployment's rollout stands, as `kubectl rollout status`
/// words it.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Still going, with what it waits for.
    Waiting(String),
    /// Done.
    Done(String),
    /// It will not finish by itself.
    Failed(String),
}

/// Reads a Deployment's progress.
pub fn progress(deployment: &Value) -> Progress {
    let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
    let number = |path: &str| {
        deployment
            .pointer(path)
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let generation = number("/metadata/generation");
    let observed = number("/status/observedGeneration");
    if generation > observed {
        return Progress::Waiting("waiting for the deployment's new spec to be observed...".into());
    }
    let conditions = deployment["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if conditions
        .iter()
        .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
    {
        return Progress::Failed(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    let desired = deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let updated = number("/status/updatedReplicas");
    let total = number("/status/replicas");
    let available = number("/status/availableReplicas");
    if updated < desired {
        if deployment["spec"]["paused"] == Value::Bool(true) {
            return Progress::Failed(format!(
                "deployment {name:?} is paused: `berth rollout resume deployment/{name}` lets it finish"
            ));
        }
        return Progress::Waiting(format!(
            "{updated} of {desired} new replicas have been updated..."
        ));
    }
    if total > updated {
        return Progress::Waiting(format!(
            "{} old replicas are pending termination...",
            total - updated
        ));
    }
    if available < updated {
        return Progress::Waiting(format!(
            "{available} of {updated} updated replicas are available..."
        ));
    }
    Progress::Done(format!("deployment {name:?} successfully rolled out"))
}

async fn status(client: &Client, target: &Named, timeout: Option<String>) -> Result<(), CliError> {
    let timeout = timeout
        .map(|t| {
            berth_api::duration::parse_duration(&t)
                .map(|d| (d, t.clone()))
                .map_err(|reason| CliError::Usage(format!("--timeout {t:?}: {reason}")))
        })
        .transpose()?;
    let started = Instant::now();
    let path = resources::object(client, target)?;
    let terminal = std::io::stdout().is_terminal();
    let mut last = String::new();
    loop {
        let deployment = client.get(&path).await?;
        match progress(&deployment) {
            Progress::Done(message) => {
                if terminal && !last.is_empty() {
                    print!("\r\x1b[2K");
                }
                println!("{}", paint(&message, Colour::Green));
                return Ok(());
            }
            Progress::Failed(message) => {
                if terminal && !last.is_empty() {
                    println!();
                }
                return Err(CliError::Failed(message));
            }
            Progress::Waiting(what) => {
                let line = format!(
                    "Waiting for deployment {:?} rollout to finish: {what}",
                    target.name
                );
                if line != last {
                    if terminal {
                        print!("\r\x1b[2K{line}");
                    } else {
                        println!("{line}");
                    }
                    let _ = std::io::stdout().flush();
                    last = line;
                }
            }
        }
        if let Some((timeout, written)) = &timeout
            && started.elapsed() >= *timeout
        {
            if terminal {
                println!();
            }
            return Err(CliError::Failed(format!(
                "timed out after {written} waiting for deployment {:?} to roll out",
                target.name
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs `berth rollout …`.
pub async fn run(command: RolloutCommand, global: &GlobalArgs) -> Result<(), CliError> {
    let client = Client::new(global)?;
    match command {
        RolloutCommand::Status { object, timeout } => {
            status(&client, &deployment(&object)?, timeout).await
        }
        RolloutCommand::History { object, revision } => {
            let target = deployment(&object)?;
            let list = client
                .get(&format!(
                    "{}/revisions",
                    resources::object(&client, &target)?
                ))
                .await?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            if let Some(wanted) = revision {
                let Some(item) = items
                    .iter()
                    .find(|i| i["revision"].as_i64() == Some(wanted))
                else {
                    return Err(CliError::Failed(format!(
                        "{target} has no revision {wanted}; `berth rollout history {target}` lists them"
                    )));
                };
                println!("{target} with revision #{wanted}");
                print!(
                    "{}",
                    berth_web::view::yaml(&json!({"template": item["template"]}))
                );
                return Ok(());
            }
            let mut rows = vec![
                ["REVISION", "REPLICASET", "IMAGES", "PODS", "AGE", ""]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            for item in &items {
                rows.push(vec![
                    item["revision"].to_string(),
                    item["replicaSet"].as_str().unwrap_or_default().to_owned(),
                    berth_web::view::images(item.pointer("/template/spec")),
                    format!(
                        "{}/{}",
                        item["availableReplicas"].as_i64().unwrap_or(0),
                        item["replicas"].as_i64().unwrap_or(0)
                    ),
                    berth_web::view::age_since(
                        item["createdAt"].as_str().unwrap_or_default(),
                        chrono::Utc::now(),
                    ),
                    if item["current"] == Value::Bool(true) {
                        "(current)".into()
                    } else {
                        String::new()
                    },
                ]);
            }
            println!("{target}");
            print!("{}", table(&rows));
            Ok(())
        }
        RolloutCommand::Undo {
            object,
            to_revision,
        } => {
            let target = deployment(&object)?;
            let body = match to_revision {
                Some(revision) => json!({"revision": revision}),
                None => json!({}),
            };
            client
                .json(
                    Method::POST,
                    &format!("{}/rollback", resources::object(&client, &target)?),
                    &Body::Json(body),
                )
                .await?;
            println!("{target} rolled back");
            Ok(())
        }
        RolloutCommand::Restart { object } => {
            let target = deployment(&object)?;
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            patch(
                &client,
                &target,
                json!({"spec": {"template": {"metadata": {"annotations": {
                    "kubectl.kubernetes.io/restartedAt": now
                }}}}}),
                "restarted",
            )
            .await
        }
        RolloutCommand::Pause { object } => {
            patch(
                &client,
                &deployment(&object)?,
                json!({"spec": {"paused": true}}),
                "paused",
            )
            .await
        }
        RolloutCommand::Resume { object } => {
            patch(
                &client,
                &deployment(&object)?,
                json!({"spec": {"paused": null}}),
                "resumed",
            )
            .await
        }
    }
}

async fn patch(client: &Client, target: &Named, patch: Value, word: &str) -> Result<(), CliError> {
    let result = client
        .json(
            Method::PATCH,
            &resources::object(client, target)?,
            &Body::MergePatch(patch),
        )
        .await;
    match result {
        Ok(_) => {
            println!("{target} {word}");
            Ok(())
        }
        Err(error) => {
            print_error(&format!("{target}: {}", error.line()));
            Err(CliError::Reported)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_as_kubectl_words_it() {
        let mut d = json!({
            "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 3},
            "status": {"observedGeneration": 1}
        });
        assert!(matches!(progress(&d), Progress::Waiting(w) if w.contains("observed")));
        d["status"] = json!({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3});
        assert_eq!(
            progress(&d),
            Progress::Waiting("1 of 3 new replicas have been updated...".into())
        );
        d["status"] = json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4, "availableReplicas": 3});
        assert_eq!(
            progress(&d),
            Progress::Waiting("1 old replicas are pending termination...".into())
        );
        d["status"] = json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3});
        assert!(matches!(progress(&d), Progress::Done(_)));
        d["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        assert!(matches!(progress(&d), Progress::Failed(_)));
    }
}
