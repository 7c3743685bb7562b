//! `berth describe KIND NAME`: an object as a person reads it, in the
//! shape of `kubectl describe`: who it is, what it asks for, how it
//! stands (conditions, containers, endpoints), its events, and for a pod
//! that fits no node, the scheduler's reasons.

use berth_api::objects::Kind;
use berth_web::view::{self, number, text};
use serde_json::Value;

use super::GlobalArgs;
use super::api::Client;
use super::columns;
use super::error::CliError;
use super::get::{concerns, sort_events};
use super::output::table;
use super::resources::{self, Named};

/// `berth describe`'s options.
#[derive(Clone, Debug, clap::Args)]
pub struct DescribeArgs {
    /// KIND NAME or KIND/NAME.
    pub object: Vec<String>,
}

/// Lines of `Label:   value`, the values lined up.
#[derive(Default)]
struct Page {
    out: String,
}

impl Page {
    fn field(&mut self, indent: usize, label: &str, value: impl AsRef<str>) {
        let value = value.as_ref();
        let value = if value.is_empty() { "<none>" } else { value };
        let label = format!("{}{label}:", " ".repeat(indent));
        self.out.push_str(&format!("{label:<22}{value}\n"));
    }

    fn heading(&mut self, indent: usize, label: &str) {
        self.out
            .push_str(&format!("{}{label}:\n", " ".repeat(indent)));
    }

    fn block(&mut self, indent: usize, text: &str) {
        for line in text.lines() {
            self.out
                .push_str(&format!("{}{line}\n", " ".repeat(indent)));
        }
    }
}

fn joined(object: &Value, path: &str) -> String {
    view::pairs(object, path).join(", ")
}

/// Runs `berth describe`.
pub async fn run(args: DescribeArgs, global: &GlobalArgs) -> Result<(), CliError> {
    let target = resources::one(&args.object)?;
    let client = Client::new(global)?;
    let object = client.get(&resources::object(&client, &target)?).await?;
    let mut page = Page::default();
    page.field(0, "Name", view::name(&object));
    page.field(0, "Kind", target.kind.name());
    if target.kind.namespaced() {
        page.field(0, "Tenant", client.tenant()?);
    }
    page.field(0, "Labels", joined(&object, "/metadata/labels"));
    page.field(0, "Annotations", joined(&object, "/metadata/annotations"));
    let created = text(&object, "/metadata/creationTimestamp");
    page.field(
        0,
        "Created",
        format!("{created} ({} ago)", view::age(&object)),
    );
    if let Some(owner) = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|owners| owners.first())
    {
        page.field(
            0,
            "Controlled By",
            format!("{}/{}", text(owner, "/kind"), text(owner, "/name")),
        );
    }
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        page.field(
            0,
            "Deleting Since",
            text(&object, "/metadata/deletionTimestamp"),
        );
    }
    match target.kind {
        Kind::Deployment => deployment(&client, &target, &object, &mut page).await?,
        Kind::Pod => pod(&object, &mut page),
        Kind::Service => service(&client, &target, &object, &mut page).await?,
        Kind::Node => node(&object, &mut page),
        Kind::Secret => {
            page.field(0, "Type", text(&object, "/type"));
            page.heading(0, "Data");
            for (key, value) in object["data"].as_object().into_iter().flatten() {
                let size = value.as_str().map_or(0, base64_len);
                page.field(2, key, format!("{size} bytes"));
            }
        }
        _ => {
            for section in ["spec", "data", "status"] {
                if let Some(value) = object.get(section).filter(|v| !v.is_null()) {
                    if section == "status" && value.get("conditions").is_some() {
                        let mut rest = value.clone();
                        if let Some(map) = rest.as_object_mut() {
                            map.remove("conditions");
                        }
                        if rest.as_object().is_some_and(|m| m.is_empty()) {
                            continue;
                        }
                        page.heading(0, "Status");
                        page.block(2, &view::yaml(&rest));
                        continue;
                    }
                    let mut title = section.to_owned();
                    title[..1].make_ascii_uppercase();
                    page.heading(0, &title);
                    page.block(2, &view::yaml(value));
                }
            }
        }
    }
    conditions(&object, &mut page);
    if target.kind != Kind::Event {
        events(&client, &target, &mut page).await?;
    }
    print!("{}", page.out);
    Ok(())
}

/// The decoded length of base64 text.
fn base64_len(text: &str) -> usize {
    let trimmed = text.trim_end_matches('=');
    trimmed.len() * 3 / 4
}

fn conditions(object: &Value, page: &mut Page) {
    let conditions = view::conditions(object);
    if conditions.is_empty() {
        return;
    }
    page.heading(0, "Conditions");
    let mut rows = vec![
        ["Type", "Status", "Reason", "Age", "Message"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for c in conditions {
        rows.push(vec![c.kind, c.status, c.reason, c.age, c.message]);
    }
    page.block(2, &table(&rows));
}

async fn events(client: &Client, target: &Named, page: &mut Page) -> Result<(), CliError> {
    let path = if target.kind.namespaced() {
        resources::collection(client, Kind::Event)?
    } else {
        // A node's events are kept in no tenant the caller can list.
        return Ok(());
    };
    let list = client.get(&path).await?;
    let mut items: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| concerns(e, target))
        .cloned()
        .collect();
    if items.is_empty() {
        page.field(0, "Events", "<none>");
        return Ok(());
    }
    sort_events(&mut items);
    page.heading(0, "Events");
    let now = chrono::Utc::now();
    let mut rows = vec![
        ["Type", "Reason", "Age", "From", "Message"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for event in &items {
        let row = view::event_row(event, now);
        let count = if row.count > 1 {
            format!("{} (x{})", row.age, row.count)
        } else {
            row.age
        };
        rows.push(vec![
            row.kind,
            row.reason,
            count,
            Some(text(event, "/source/component"))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| text(event, "/reportingComponent")),
            row.message,
        ]);
    }
    page.block(2, &table(&rows));
    Ok(())
}

fn containers(spec: &Value, statuses: Option<&Vec<Value>>, page: &mut Page, indent: usize) {
    for container in spec["containers"].as_array().into_iter().flatten() {
        let name = text(container, "/name");
        page.heading(indent, &name);
        page.field(indent + 2, "Image", text(container, "/image"));
        let command: Vec<String> = ["command", "args"]
            .iter()
            .flat_map(|k| {
                container[*k]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
            })
            .collect();
        if !command.is_empty() {
            page.field(indent + 2, "Command", command.join(" "));
        }
        let ports: Vec<String> = container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{}/{}",
                    number(p, "/containerPort"),
                    Some(text(p, "/protocol"))
                        .filter(|p| !p.is_empty())
                        .unwrap_or_else(|| "TCP".into())
                )
            })
            .collect();
        if !ports.is_empty() {
            page.field(indent + 2, "Ports", ports.join(", "));
        }
        if let Some(status) = statuses.and_then(|all| all.iter().find(|s| text(s, "/name") == name))
        {
            page.field(indent + 2, "State", state(&status["state"]));
            if status.pointer("/lastState/terminated").is_some() {
                page.field(indent + 2, "Last State", state(&status["lastState"]));
            }
            page.field(
                indent + 2,
                "Ready",
                (status["ready"] == Value::Bool(true)).to_string(),
            );
            page.field(
                indent + 2,
                "Restart Count",
                number(status, "/restartCount").to_string(),
            );
        }
        let requests = joined(container, "/resources/requests");
        if !requests.is_empty() {
            page.field(indent + 2, "Requests", requests);
        }
        let limits = joined(container, "/resources/limits");
        if !limits.is_empty() {
            page.field(indent + 2, "Limits", limits);
        }
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if let Some(p) = container.get(probe).filter(|p| !p.is_null()) {
                let how = if let Some(get) = p.get("httpGet") {
                    format!(
                        "http-get http://:{}{}",
                        text(get, "/port"),
                        text(get, "/path")
                    )
                } else if let Some(tcp) = p.get("tcpSocket") {
                    format!("tcp-socket :{}", text(tcp, "/port"))
                } else if let Some(exec) = p.get("exec") {
                    format!(
                        "exec [{}]",
                        exec["command"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                } else {
                    "?".into()
                };
                let mut label = probe.trim_end_matches("Probe").to_owned();
                label[..1].make_ascii_uppercase();
                page.field(
                    indent + 2,
                    &label,
                    format!(
                        "{how} delay={}s period={}s failure={}",
                        number(p, "/initialDelaySeconds"),
                        p.get("periodSeconds").and_then(Value::as_i64).unwrap_or(10),
                        p.get("failureThreshold")
                            .and_then(Value::as_i64)
                            .unwrap_or(3)
                    ),
                );
            }
        }
        let env: Vec<String> = container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let name = text(e, "/name");
                if let Some(from) = e.get("valueFrom") {
                    if let Some(r) = from.get("secretKeyRef") {
                        format!(
                            "{name} from secret {} key {}",
                            text(r, "/name"),
                            text(r, "/key")
                        )
                    } else if let Some(r) = from.get("configMapKeyRef") {
                        format!(
                            "{name} from configmap {} key {}",
                            text(r, "/name"),
                            text(r, "/key")
                        )
                    } else {
                        format!("{name} (from the pod)")
                    }
                } else {
                    format!("{name}={}", text(e, "/value"))
                }
            })
            .collect();
        if !env.is_empty() {
            page.field(indent + 2, "Environment", env.join(", "));
        }
    }
}

/// A container state as one phrase: `Running since …`,
/// `Waiting: CrashLoopBackOff (back-off 40s restarting …)`,
/// `Terminated: Error (exit code 1)`.
fn state(state: &Value) -> String {
    if let Some(running) = state.get("running") {
        return format!("Running since {}", text(running, "/startedAt"));
    }
    if let Some(waiting) = state.get("waiting") {
        let message = text(waiting, "/message");
        return if message.is_empty() {
            format!("Waiting: {}", text(waiting, "/reason"))
        } else {
            format!("Waiting: {} ({message})", text(waiting, "/reason"))
        };
    }
    if let Some(terminated) = state.get("terminated") {
        return format!(
            "Terminated: {} (exit code {}, at {})",
            text(terminated, "/reason"),
            number(terminated, "/exitCode"),
            text(terminated, "/finishedAt")
        );
    }
    "Waiting".into()
}

fn pod(object: &Value, page: &mut Page) {
    let row = view::pod_row(object);
    page.field(0, "Status", &row.status);
    page.field(0, "Node", &row.node);
    page.field(0, "IP", &row.ip);
    page.field(0, "Ready", &row.ready);
    if let Some(reasons) = view::unschedulable(object) {
        page.field(0, "Scheduling", format!("cannot be scheduled: {reasons}"));
    }
    page.heading(0, "Containers");
    containers(
        &object["spec"],
        object
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array),
        page,
        2,
    );
    let volumes: Vec<String> = object
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| {
            let source = v
                .as_object()
                .and_then(|m| m.keys().find(|k| *k != "name").cloned())
                .unwrap_or_default();
            format!("{} ({source})", text(v, "/name"))
        })
        .collect();
    if !volumes.is_empty() {
        page.field(0, "Volumes", volumes.join(", "));
    }
}

async fn deployment(
    client: &Client,
    target: &Named,
    object: &Value,
    page: &mut Page,
) -> Result<(), CliError> {
    let row = view::deployment_row(object);
    let total = number(object, "/status/replicas");
    page.field(0, "Selector", joined(object, "/spec/selector/matchLabels"));
    page.field(
        0,
        "Replicas",
        format!(
            "{} desired | {} updated | {total} total | {} available | {} unavailable",
            row.desired,
            row.up_to_date,
            row.available,
            number(object, "/status/unavailableReplicas")
        ),
    );
    let strategy = Some(text(object, "/spec/strategy/type"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "RollingUpdate".into());
    let strategy = if strategy == "RollingUpdate" {
        let unavailable = Some(text(object, "/spec/strategy/rollingUpdate/maxUnavailable"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "25%".into());
        let surge = Some(text(object, "/spec/strategy/rollingUpdate/maxSurge"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "25%".into());
        format!("RollingUpdate ({unavailable} max unavailable, {surge} max surge)")
    } else {
        strategy
    };
    page.field(0, "Strategy", strategy);
    page.field(0, "State", &row.state);
    page.heading(0, "Pod Template");
    page.field(
        2,
        "Labels",
        joined(object, "/spec/template/metadata/labels"),
    );
    page.heading(2, "Containers");
    containers(&object["spec"]["template"]["spec"], None, page, 4);
    let revisions = client
        .get(&format!("{}/revisions", resources::object(client, target)?))
        .await?;
    let items = revisions["items"].as_array().cloned().unwrap_or_default();
    if !items.is_empty() {
        page.heading(0, "Revisions");
        let mut rows = vec![
            ["Revision", "ReplicaSet", "Pods", "Images", ""]
                .map(str::to_owned)
                .to_vec(),
        ];
        for item in &items {
            rows.push(vec![
                item["revision"].to_string(),
                text(item, "/replicaSet"),
                format!(
                    "{}/{}",
                    number(item, "/availableReplicas"),
                    number(item, "/replicas")
                ),
                view::images(item.pointer("/template/spec")),
                if item["current"] == Value::Bool(true) {
                    "(current)".into()
                } else {
                    String::new()
                },
            ]);
        }
        page.block(2, &table(&rows));
    }
    Ok(())
}

async fn service(
    client: &Client,
    target: &Named,
    object: &Value,
    page: &mut Page,
) -> Result<(), CliError> {
    page.field(
        0,
        "Type",
        Some(text(object, "/spec/type"))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "ClusterIP".into()),
    );
    page.field(0, "Virtual IP", text(object, "/spec/clusterIP"));
    page.field(0, "Selector", joined(object, "/spec/selector"));
    page.field(0, "Ports", columns::service_ports(object));
    let ingress: Vec<String> = object
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|i| text(i, "/ip"))
        .collect();
    if !ingress.is_empty() {
        page.field(0, "LoadBalancer Ingress", ingress.join(", "));
    }
    let slices = client
        .get(&format!(
            "{}?labelSelector={}",
            resources::collection(client, Kind::EndpointSlice)?,
            resources::percent(&format!("kubernetes.io/service-name={}", target.name))
        ))
        .await?;
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for slice in slices["items"].as_array().into_iter().flatten() {
        let ports: Vec<i64> = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| number(p, "/port"))
            .collect();
        for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
            let is_ready = endpoint.pointer("/conditions/ready") != Some(&Value::Bool(false));
            for address in endpoint["addresses"].as_array().into_iter().flatten() {
                let address = address.as_str().unwrap_or_default();
                let pod = text(endpoint, "/targetRef/name");
                for port in &ports {
                    let entry = if pod.is_empty() {
                        format!("{address}:{port}")
                    } else {
                        format!("{address}:{port} ({pod})")
                    };
                    if is_ready {
                        ready.push(entry);
                    } else {
                        not_ready.push(entry);
                    }
                }
            }
        }
    }
    page.field(0, "Endpoints", ready.join(", "));
    if !not_ready.is_empty() {
        page.field(0, "Not Ready", not_ready.join(", "));
    }
    Ok(())
}

fn node(object: &Value, page: &mut Page) {
    page.field(0, "Status", columns::node_status(object));
    let addresses: Vec<String> = object
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| format!("{}={}", text(a, "/type"), text(a, "/address")))
        .collect();
    page.field(0, "Addresses", addresses.join(", "));
    page.field(0, "Capacity", joined(object, "/status/capacity"));
    page.field(0, "Allocatable", joined(object, "/status/allocatable"));
    let taints: Vec<String> = object
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}={}:{}",
                text(t, "/key"),
                text(t, "/value"),
                text(t, "/effect")
            )
        })
        .collect();
    page.field(0, "Taints", taints.join(", "));
    page.heading(0, "System Info");
    for (label, key) in [
        ("OS Image", "osImage"),
        ("Kernel Version", "kernelVersion"),
        ("Architecture", "architecture"),
        ("Container Runtime", "containerRuntimeVersion"),
        ("Agent Version", "kubeletVersion"),
    ] {
        page.field(2, label, text(object, &format!("/status/nodeInfo/{key}")));
    }
}
