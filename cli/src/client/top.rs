//! `berth top pods|nodes`: CPU and memory in use, from the pods' metrics
//! that the agents report. A node's figure is the sum of the pods on it
//! that the caller can see (every tenant's, for the platform admin).

use std::collections::BTreeMap;

use berth_api::quantity::Quantity;
use serde_json::Value;

use super::GlobalArgs;
use super::api::Client;
use super::error::CliError;
use super::output::table;
use super::resources::percent;

/// `berth top`'s verbs.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum TopCommand {
    /// The pods of the tenant, busiest CPU first.
    Pods {
        /// A row per container.
        #[arg(long)]
        containers: bool,
        /// Only pods whose labels match.
        #[arg(short = 'l', long)]
        selector: Option<String>,
    },
    /// The nodes: what their pods use, against what they can give.
    Nodes,
}

/// Millicores and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Usage {
    millicores: i128,
    bytes: i128,
}

impl Usage {
    fn of(usage: &Value) -> Usage {
        let read = |key: &str| usage[key].as_str().and_then(|q| Quantity::parse(q).ok());
        Usage {
            millicores: read("cpu").map_or(0, |q| q.milli_value()),
            bytes: read("memory").map_or(0, |q| q.value()),
        }
    }

    fn add(&mut self, other: Usage) {
        self.millicores += other.millicores;
        self.bytes += other.bytes;
    }
}

fn cpu(millicores: i128) -> String {
    format!("{millicores}m")
}

fn memory(bytes: i128) -> String {
    format!("{}Mi", bytes / (1024 * 1024))
}

/// Runs `berth top …`.
pub async fn run(command: TopCommand, global: &GlobalArgs) -> Result<(), CliError> {
    let client = Client::new(global)?;
    match command {
        TopCommand::Pods {
            containers,
            selector,
        } => {
            let metrics = client.get(&client.tenant_path("/pods/metrics")?).await?;
            let wanted: Option<Vec<String>> = match &selector {
                Some(selector) => {
                    let pods = client
                        .get(&format!(
                            "{}?labelSelector={}",
                            client.tenant_path("/pods")?,
                            percent(selector)
                        ))
                        .await?;
                    Some(
                        pods["items"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(berth_web::view::name)
                            .collect(),
                    )
                }
                None => None,
            };
            let mut rows: Vec<(Usage, Vec<String>)> = Vec::new();
            for item in metrics["items"].as_array().into_iter().flatten() {
                let pod = item["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if wanted.as_ref().is_some_and(|w| !w.contains(&pod)) {
                    continue;
                }
                let mut total = Usage::default();
                for container in item["containers"].as_array().into_iter().flatten() {
                    let usage = Usage::of(&container["usage"]);
                    total.add(usage);
                    if containers {
                        rows.push((
                            usage,
                            vec![
                                pod.clone(),
                                container["name"].as_str().unwrap_or_default().to_owned(),
                                cpu(usage.millicores),
                                memory(usage.bytes),
                            ],
                        ));
                    }
                }
                if !containers {
                    rows.push((total, vec![pod, cpu(total.millicores), memory(total.bytes)]));
                }
            }
            if rows.is_empty() {
                eprintln!(
                    "No metrics yet in tenant {}: agents report them every few seconds for running pods.",
                    client.tenant()?
                );
                return Ok(());
            }
            rows.sort_by_key(|row| std::cmp::Reverse(row.0.millicores));
            let header: &[&str] = if containers {
                &["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
            } else {
                &["NAME", "CPU(cores)", "MEMORY(bytes)"]
            };
            let mut lines = vec![header.iter().map(|h| (*h).to_owned()).collect()];
            lines.extend(rows.into_iter().map(|(_, row)| row));
            print!("{}", table(&lines));
        }
        TopCommand::Nodes => {
            let nodes = client.get("/api/v1/nodes").await?;
            let tenants = client.get("/api/v1/tenants").await?;
            let mut by_node: BTreeMap<String, Usage> = BTreeMap::new();
            for tenant in tenants["items"].as_array().into_iter().flatten() {
                let Some(tenant) = tenant["name"].as_str() else {
                    continue;
                };
                let base = format!("/api/v1/tenants/{}", percent(tenant));
                let (pods, metrics) = match (
                    client.get(&format!("{base}/pods")).await,
                    client.get(&format!("{base}/pods/metrics")).await,
                ) {
                    (Ok(pods), Ok(metrics)) => (pods, metrics),
                    // A tenant whose pods the caller may not read adds nothing.
                    (Err(CliError::Api { status: 403, .. }), _)
                    | (_, Err(CliError::Api { status: 403, .. })) => continue,
                    (Err(error), _) | (_, Err(error)) => return Err(error),
                };
                let node_of: BTreeMap<String, String> = pods["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        (
                            berth_web::view::name(p),
                            berth_web::view::text(p, "/spec/nodeName"),
                        )
                    })
                    .collect();
                for item in metrics["items"].as_array().into_iter().flatten() {
                    let pod = item["metadata"]["name"].as_str().unwrap_or_default();
                    let Some(node) = node_of.get(pod).filter(|n| !n.is_empty()) else {
                        continue;
                    };
                    let entry = by_node.entry(node.clone()).or_default();
                    for container in item["containers"].as_array().into_iter().flatten() {
                        entry.add(Usage::of(&container["usage"]));
                    }
                }
            }
            let mut lines = vec![
                ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            for node in nodes["items"].as_array().into_iter().flatten() {
                let name = berth_web::view::name(node);
                let usage = by_node.get(&name).copied().unwrap_or_default();
                let allocatable = Usage::of(&node["status"]["allocatable"]);
                let share = |used: i128, of: i128| {
                    if of > 0 {
                        format!("{}%", used * 100 / of)
                    } else {
                        "<unknown>".into()
                    }
                };
                lines.push(vec![
                    name,
                    cpu(usage.millicores),
                    share(usage.millicores, allocatable.millicores),
                    memory(usage.bytes),
                    share(usage.bytes, allocatable.bytes),
                ]);
            }
            print!("{}", table(&lines));
        }
    }
    Ok(())
}
