//! Pods: the list (failing first, filterable) and a pod's page: its
//! status, owner, containers (state, last termination, probes, ports,
//! resources and live use), conditions, events, its logs, a console, and
//! the "why isn't it running?" card that puts what the scheduler or the
//! node said into plain words.
//!
//! The card's words come from what the system writes: the scheduler's
//! `PodScheduled=False` message (`0/5 nodes are available: 3 Insufficient
//! cpu, 2 node(s) didn't match node selector.`), the container's waiting
//! reason and message (`back-off 40s restarting failed container=web
//! pod=web-1`, `configmap "settings" not found`) and its last
//! termination. Parsing them is pure and tested here.
//!
//! A pod's page reads the pod, its ReplicaSet (for the Deployment above
//! it) and its node by name, and only this pod's events: never every pod,
//! ReplicaSet or event of the tenant.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use askama::Template;
use berth_api::objects::Kind;
use berth_server::authz::{Target, Verb};
use berth_server::objects::{ObjectRef, SecretValues};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::page::{self, Chrome, PageError, Permission, Viewer};
use crate::view::{self, Condition, EventRow, PodRow};

/// Mounts the pod pages.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/pods", web::get().to(list))
        .route("/t/{tenant}/pods/{name}", web::get().to(detail));
}

// ---- the list ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "pods.html")]
struct ListPage {
    chrome: Chrome,
    live: String,
    rv: i64,
    /// The filter typed, if any.
    filter: String,
    /// Pods in the tenant, before filtering.
    total: usize,
    /// How many of them are failing.
    failing: usize,
    /// How many match the filter.
    matching: usize,
    /// Which rows this page shows, and the links to its neighbours.
    paging: Paging,
    /// The rows shown (named `pods` for `pod_rows.html`).
    pods: Vec<PodRow>,
}

/// One page of a long list.
struct Paging {
    /// `201–400 of 1000`, or empty.
    shown: String,
    /// The previous page's link, or empty.
    previous: String,
    /// The next page's link, or empty.
    next: String,
}

#[derive(serde::Deserialize)]
struct ListQuery {
    #[serde(default)]
    q: String,
    /// The page of rows, from 1.
    #[serde(default)]
    page: Option<usize>,
}

/// Rows on one page of the pod list.
const ROWS_PER_PAGE: usize = 200;

async fn list(
    viewer: Viewer,
    tenant: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant.into_inner();
    viewer.open(&tenant)?;
    viewer.check(Some(&tenant), Target::Object(Kind::Pod), Verb::List)?;
    let (items, rv) = viewer
        .state
        .objects
        .list_decoded(Kind::Pod, Some(&tenant), view::pod_summary)
        .await?;
    let mut rows: Vec<PodRow> = items.iter().map(view::pod_row).collect();
    let total = rows.len();
    let failing = rows.iter().filter(|r| r.failing).count();
    let filter = query.q.trim().to_owned();
    rows.retain(|row| matches_filter(row, &filter));
    rows.sort_by(|a, b| (!a.failing, &a.name).cmp(&(!b.failing, &b.name)));
    let matching = rows.len();
    let pages = matching.div_ceil(ROWS_PER_PAGE).max(1);
    let page_number = query.page.unwrap_or(1).clamp(1, pages);
    let first = (page_number - 1) * ROWS_PER_PAGE;
    let rows: Vec<PodRow> = rows.into_iter().skip(first).take(ROWS_PER_PAGE).collect();
    let link = |n: usize| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if !filter.is_empty() {
            query.append_pair("q", &filter);
        }
        query.append_pair("page", &n.to_string());
        format!("/t/{tenant}/pods?{}", query.finish())
    };
    let paging = Paging {
        shown: if matching == 0 {
            String::new()
        } else {
            format!("{}–{} of {matching}", first + 1, first + rows.len())
        },
        previous: if page_number > 1 {
            link(page_number - 1)
        } else {
            String::new()
        },
        next: if page_number < pages {
            link(page_number + 1)
        } else {
            String::new()
        },
    };
    page::render(&ListPage {
        chrome: viewer
            .chrome(Some(&tenant), "pods", format!("{tenant} · Pods"))
            .await?,
        live: format!("/live?tenant={tenant}&kinds=pods"),
        rv,
        filter,
        total,
        failing,
        matching,
        paging,
        pods: rows,
    })
}

/// Whether a row shows under `filter`: every word of it appears in the
/// name, the status or the node (case-insensitive).
fn matches_filter(row: &PodRow, filter: &str) -> bool {
    let haystack = format!("{} {} {}", row.name, row.status, row.node).to_lowercase();
    filter
        .to_lowercase()
        .split_whitespace()
        .all(|word| haystack.contains(word))
}

// ---- a pod's page -------------------------------------------------------------

/// Who made the pod, as a link where the dashboard has a page for it.
struct Owner {
    /// `Deployment web`, `ReplicaSet web-7d4b9`…
    text: String,
    /// The page, or empty.
    href: String,
    /// The ReplicaSet in between, when the link skips it.
    via: String,
}

/// One container of the pod, as its section shows it.
struct ContainerView {
    name: String,
    /// An init container (runs to completion before the others).
    init: bool,
    image: String,
    /// `Running`, `Waiting`, `Terminated` or `Not started`.
    state: String,
    /// `ok`, `warn` or `bad`.
    tone: &'static str,
    /// What the state says beyond its word: since when, the reason and
    /// message, the exit code.
    state_detail: String,
    ready: bool,
    restarts: i64,
    /// The previous run's end (`exit code 1 (Error), 3m ago`), or empty.
    last_termination: String,
    /// `liveness: httpGet :8080/healthz every 10s`, one per probe.
    probes: Vec<String>,
    /// `8080/TCP (http), host port 30080`, one per port.
    ports: Vec<String>,
    /// `cpu 100m, memory 64Mi`, or `—`.
    requests: String,
    /// Likewise.
    limits: String,
    /// The latest reported CPU use, or `—`.
    cpu: String,
    /// The latest reported memory use, or `—`.
    memory: String,
}

/// One reason the scheduler gave, with what to do about it.
struct ReasonView {
    /// How many nodes it ruled out, or empty when the message gave none.
    count: String,
    reason: String,
    hint: String,
}

/// A ConfigMap or Secret (or one of its keys) a container needs and
/// cannot find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingReference {
    /// `ConfigMap` or `Secret`.
    pub kind: &'static str,
    /// Its name; empty when the message does not say.
    pub name: String,
    /// The key missing from it, when it exists but lacks one.
    pub key: Option<String>,
}

/// The "why isn't it running?" card.
struct Why {
    /// For styling and tests: `unschedulable`, `crash-loop`, `image`,
    /// `config`, `create`, `failed`.
    kind: &'static str,
    /// The plain-words headline.
    headline: String,
    /// Further plain sentences.
    lines: Vec<String>,
    /// What the system said, verbatim.
    message: String,
    /// The scheduler's reasons (unschedulable pods).
    reasons: Vec<ReasonView>,
    /// The container concerned, if one.
    container: String,
    /// Its last exit (`exit code 1 (Error)`), or empty.
    exit: String,
    /// How often it restarted.
    restarts: i64,
    /// When the next start is due (RFC 3339), for the countdown; or empty.
    next_start: String,
    /// The countdown as rendered (`in 23s`).
    next_start_text: String,
    /// The back-off (`40s`), or empty.
    backoff: String,
    /// What to do, in plain words; or empty.
    hint: String,
    /// The ConfigMap or Secret missing, for a config error.
    missing: Option<MissingReference>,
    /// The page listing objects of the missing kind.
    missing_href: String,
}

/// The logs panel under the card: the last run of the failing container.
struct WhyLogs {
    container: String,
    /// The previous run (crash loop) or the current, ended one.
    previous: bool,
}

/// Whether, and why not, the console can run commands.
struct Console {
    /// The role's permission.
    permission: Permission,
    /// Why commands cannot run here whatever the role (the node's runtime
    /// cannot exec), or empty.
    unavailable: String,
}

impl Console {
    fn allowed(&self) -> bool {
        self.permission.allowed && self.unavailable.is_empty()
    }

    fn reason(&self) -> &str {
        if self.permission.allowed {
            &self.unavailable
        } else {
            &self.permission.reason
        }
    }
}

#[derive(Template)]
#[template(path = "pod.html")]
struct DetailPage {
    chrome: Chrome,
    live: String,
    rv: i64,
    row: PodRow,
    phase: String,
    host_ip: String,
    qos: String,
    created: String,
    started: String,
    terminating: bool,
    owner: Option<Owner>,
    labels: Vec<(String, String)>,
    containers: Vec<ContainerView>,
    /// The names of the main containers, for the container choices.
    container_names: Vec<String>,
    conditions: Vec<Condition>,
    events: Vec<EventRow>,
    why: Option<Why>,
    why_logs: Option<WhyLogs>,
    /// How old the use figures are (`8s`), or empty when none came.
    metrics_age: String,
    api: String,
    console: Console,
    delete: Permission,
}

/// How many of the pod's events the page shows.
const EVENTS_SHOWN: usize = 30;

/// Runtimes (by the prefix of a node's `containerRuntimeVersion`) whose
/// agent answers every exec with "unsupported": the console says so
/// rather than fail after a click.
const RUNTIMES_WITHOUT_EXEC: [(&str, &str); 1] = [("sim://", "sim")];

async fn detail(
    viewer: Viewer,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (tenant, name) = path.into_inner();
    viewer.open(&tenant)?;
    let t = Some(tenant.as_str());
    // Events first: the live stream follows on from their revision, which
    // is then no later than the pod read below.
    let (events, rv) = pod_events(&viewer, &tenant, &name).await?;
    let pod = viewer.get(Kind::Pod, t, &name).await?;
    let owner = owner(&viewer, &tenant, &pod).await;
    let node = view::text(&pod, "/spec/nodeName");
    let runtime = node_runtime(&viewer, &node).await;
    let now = Utc::now();
    let uid = view::text(&pod, "/metadata/uid");
    let usage = viewer
        .state
        .pod_metrics
        .history(&tenant, &name, &uid, now)
        .pop();
    let metrics_age = usage
        .as_ref()
        .map(|sample| view::age_since(&rfc3339(sample.at), now))
        .unwrap_or_default();
    let containers = container_views(&pod, usage.as_ref(), now);
    let container_names = containers
        .iter()
        .filter(|c| !c.init)
        .map(|c| c.name.clone())
        .collect();
    let row = view::pod_row(&pod);
    let why = why(&pod, &row, now).map(|mut why| {
        if why.missing.is_some() {
            why.missing_href = match why.missing.as_ref().map(|m| m.kind) {
                Some("Secret") => format!("/t/{tenant}/secrets"),
                _ => format!("/t/{tenant}/configmaps"),
            };
        }
        why
    });
    let why_logs = why.as_ref().and_then(|why| match why.kind {
        "crash-loop" => Some(WhyLogs {
            container: why.container.clone(),
            previous: true,
        }),
        "failed" if !why.container.is_empty() => Some(WhyLogs {
            container: why.container.clone(),
            previous: false,
        }),
        _ => None,
    });
    let unavailable = console_unavailable(&pod, &node, &runtime);
    let labels = pod
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let created = view::text(&pod, "/metadata/creationTimestamp");
    page::render(&DetailPage {
        chrome: viewer.chrome(t, "pods", format!("{name} · Pod")).await?,
        live: format!("/live?tenant={tenant}&kinds=pods,events"),
        rv,
        phase: view::text(&pod, "/status/phase"),
        host_ip: view::text(&pod, "/status/hostIP"),
        qos: qos_class(&pod),
        started: view::text(&pod, "/status/startTime"),
        terminating: pod.pointer("/metadata/deletionTimestamp").is_some(),
        created,
        owner,
        labels,
        containers,
        container_names,
        conditions: view::conditions(&pod),
        events,
        why,
        why_logs,
        metrics_age,
        api: format!("/api/v1/tenants/{tenant}/pods/{name}"),
        console: Console {
            permission: viewer.permission(
                t,
                Target::Object(Kind::Pod),
                Verb::Exec,
                "run commands in pods",
            ),
            unavailable,
        },
        delete: viewer.permission(t, Target::Object(Kind::Pod), Verb::Delete, "delete pods"),
        row,
    })
}

/// The events about pod `name`, newest first, and the revision they were
/// read at.
///
/// An object's events are kept at `/registry/events/{tenant}/{object}.{digest}`
/// (see `berth_server::events`), so one read of that name prefix finds them
/// without reading the tenant's thousands: the page stays as fast in a
/// tenant of a thousand pods as in one of ten.
async fn pod_events(
    viewer: &Viewer,
    tenant: &str,
    name: &str,
) -> Result<(Vec<EventRow>, i64), PageError> {
    let (events, revision) = viewer
        .list_named(Kind::Event, tenant, &format!("{name}."))
        .await?;
    let rows = view::event_rows(&events)
        .into_iter()
        .filter(|e| e.object_kind == "Pod" && e.object_name == name)
        .take(EVENTS_SHOWN)
        .collect();
    Ok((rows, revision))
}

/// Why no command can run in the pod whatever the viewer's role, or
/// empty: it has no node yet, it has ended, or its node's runtime cannot
/// exec. (The exec route answers these before its WebSocket opens, with
/// an HTTP error a browser's WebSocket cannot read; so the page says them.)
fn console_unavailable(pod: &Value, node: &str, runtime: &str) -> String {
    if let Some((_, name)) = RUNTIMES_WITHOUT_EXEC
        .iter()
        .find(|(prefix, _)| runtime.starts_with(prefix))
    {
        return format!(
            "exec is unsupported here: node {node} runs the {name} runtime, which cannot run commands"
        );
    }
    if node.is_empty() {
        return "the pod is not on a node yet: commands run once it does (reload then)".into();
    }
    match view::text(pod, "/status/phase").as_str() {
        phase @ ("Succeeded" | "Failed") => {
            format!("the pod has ended ({phase}): commands run only in running containers")
        }
        _ => String::new(),
    }
}

/// The pod's owner: for a ReplicaSet's pod, the Deployment that owns the
/// ReplicaSet (read by name, never by listing).
async fn owner(viewer: &Viewer, tenant: &str, pod: &Value) -> Option<Owner> {
    let reference = controller_of(pod)?;
    let kind = view::text(reference, "/kind");
    let name = view::text(reference, "/name");
    if kind == "ReplicaSet"
        && let Ok(replica_set) = viewer.get(Kind::ReplicaSet, Some(tenant), &name).await
        && let Some(above) = controller_of(&replica_set)
        && view::text(above, "/kind") == "Deployment"
    {
        let deployment = view::text(above, "/name");
        return Some(Owner {
            text: format!("Deployment {deployment}"),
            href: format!("/t/{tenant}/deployments/{deployment}"),
            via: format!("ReplicaSet {name}"),
        });
    }
    Some(Owner {
        href: match kind.as_str() {
            "Deployment" => format!("/t/{tenant}/deployments/{name}"),
            _ => String::new(),
        },
        text: format!("{kind} {name}"),
        via: String::new(),
    })
}

/// The owner reference marked as controller, else the first.
fn controller_of(object: &Value) -> Option<&Value> {
    let owners = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?;
    owners
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .or_else(|| owners.first())
}

/// The container runtime the pod's node reports (`docker://27.3.1`,
/// `sim://1`); empty when unknown. Nodes are the platform's, so this reads
/// only that one field, whatever the viewer's role.
async fn node_runtime(viewer: &Viewer, node: &str) -> String {
    if node.is_empty() {
        return String::new();
    }
    let at = ObjectRef {
        kind: Kind::Node,
        tenant: None,
        name: node.to_owned(),
    };
    viewer
        .state
        .objects
        .get(&at, SecretValues::Redact)
        .await
        .map(|node| view::text(&node, "/status/nodeInfo/containerRuntimeVersion"))
        .unwrap_or_default()
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The pod's QoS class: as its status reports it, else as Kubernetes
/// derives it from the containers' requests and limits.
fn qos_class(pod: &Value) -> String {
    let reported = view::text(pod, "/status/qosClass");
    if !reported.is_empty() {
        return reported;
    }
    let containers: Vec<&Value> = ["/spec/containers", "/spec/initContainers"]
        .iter()
        .filter_map(|path| pod.pointer(path).and_then(Value::as_array))
        .flatten()
        .collect();
    let quantity = |c: &Value, which: &str, resource: &str| {
        view::text(c, &format!("/resources/{which}/{resource}"))
    };
    let any = containers.iter().any(|c| {
        ["cpu", "memory"]
            .iter()
            .any(|r| !quantity(c, "requests", r).is_empty() || !quantity(c, "limits", r).is_empty())
    });
    if !any {
        return "BestEffort".into();
    }
    // Guaranteed: every container limits CPU and memory, and asks for
    // what it limits (a request left out defaults to the limit).
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = quantity(c, "limits", r);
            let request = quantity(c, "requests", r);
            !limit.is_empty() && (request.is_empty() || request == limit)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
    .into()
}

/// The containers (init containers first) with their statuses and the
/// latest use figures.
fn container_views(
    pod: &Value,
    usage: Option<&berth_server::pod_metrics::Sample>,
    now: DateTime<Utc>,
) -> Vec<ContainerView> {
    let mut views = Vec::new();
    for (spec_path, status_path, init) in [
        (
            "/spec/initContainers",
            "/status/initContainerStatuses",
            true,
        ),
        ("/spec/containers", "/status/containerStatuses", false),
    ] {
        let specs = pod
            .pointer(spec_path)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let statuses = pod
            .pointer(status_path)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for spec in specs {
            let name = view::text(spec, "/name");
            let status = statuses.iter().find(|s| view::text(s, "/name") == name);
            let used = usage.and_then(|sample| sample.containers.iter().find(|c| c.name == name));
            views.push(container_view(spec, status, used, init, now));
        }
    }
    views
}

fn container_view(
    spec: &Value,
    status: Option<&Value>,
    used: Option<&berth_server::pod_metrics::ContainerUsage>,
    init: bool,
    now: DateTime<Utc>,
) -> ContainerView {
    let null = Value::Null;
    let status = status.unwrap_or(&null);
    let (state, tone, state_detail) = container_state(status, now);
    let probes = [
        ("liveness", "/livenessProbe"),
        ("readiness", "/readinessProbe"),
        ("startup", "/startupProbe"),
    ]
    .iter()
    .filter_map(|(which, path)| {
        spec.pointer(path)
            .map(|probe| format!("{which}: {}", probe_summary(probe)))
    })
    .collect();
    ContainerView {
        name: view::text(spec, "/name"),
        init,
        image: view::text(spec, "/image"),
        state,
        tone,
        state_detail,
        ready: status.get("ready").and_then(Value::as_bool) == Some(true),
        restarts: view::number(status, "/restartCount"),
        last_termination: status
            .pointer("/lastState/terminated")
            .map(|t| termination(t, now))
            .unwrap_or_default(),
        probes,
        ports: ports(spec, status),
        requests: quantities(spec.pointer("/resources/requests")),
        limits: quantities(spec.pointer("/resources/limits")),
        cpu: used.map_or_else(|| "—".to_owned(), |u| cpu(u.cpu_cores)),
        memory: used.map_or_else(|| "—".to_owned(), |u| memory(u.memory_bytes)),
    }
}

/// A container's state: its word, tone and detail.
fn container_state(status: &Value, now: DateTime<Utc>) -> (String, &'static str, String) {
    if let Some(running) = status.pointer("/state/running") {
        let since = view::text(running, "/startedAt");
        let ready = status.get("ready").and_then(Value::as_bool) == Some(true);
        let detail = if since.is_empty() {
            String::new()
        } else {
            format!("since {} ago ({since})", view::age_since(&since, now))
        };
        return ("Running".into(), if ready { "ok" } else { "warn" }, detail);
    }
    if let Some(waiting) = status.pointer("/state/waiting") {
        let reason = view::text(waiting, "/reason");
        let message = view::text(waiting, "/message");
        let tone = if is_failing_wait(&reason) {
            "bad"
        } else {
            "warn"
        };
        let detail = match (reason.is_empty(), message.is_empty()) {
            (true, _) => message,
            (false, true) => reason,
            (false, false) => format!("{reason}: {message}"),
        };
        return ("Waiting".into(), tone, detail);
    }
    if let Some(terminated) = status.pointer("/state/terminated") {
        let code = view::number(terminated, "/exitCode");
        return (
            "Terminated".into(),
            if code == 0 { "ok" } else { "bad" },
            termination(terminated, now),
        );
    }
    ("Not started".into(), "warn", String::new())
}

/// Waiting reasons the card explains: the view's, and the few more the
/// Docker runtime sets.
fn is_failing_wait(reason: &str) -> bool {
    view::FAILING_REASONS.contains(&reason)
        || matches!(reason, "RunContainerError" | "ErrImageNeverPull")
}

/// A run's end: `exit code 1 (Error), 3m ago (2026-01-02T03:04:05Z)`.
fn termination(terminated: &Value, now: DateTime<Utc>) -> String {
    let mut words = exit_words(terminated);
    let finished = view::text(terminated, "/finishedAt");
    if !finished.is_empty() {
        words.push_str(&format!(
            ", {} ago ({finished})",
            view::age_since(&finished, now)
        ));
    }
    let message = view::text(terminated, "/message");
    if !message.is_empty() {
        words.push_str(&format!(": {message}"));
    }
    words
}

/// `exit code 1 (Error)`.
fn exit_words(terminated: &Value) -> String {
    let code = view::number(terminated, "/exitCode");
    let reason = view::text(terminated, "/reason");
    if reason.is_empty() {
        format!("exit code {code}")
    } else {
        format!("exit code {code} ({reason})")
    }
}

/// What an exit usually means, when it says something beyond "failed".
fn exit_hint(terminated: &Value) -> &'static str {
    match (
        view::number(terminated, "/exitCode"),
        view::text(terminated, "/reason").as_str(),
    ) {
        (_, "OOMKilled") | (137, _) => {
            "It was killed, most likely for using more memory than its limit: raise resources.limits.memory or make it use less."
        }
        (143, _) => "It was stopped (SIGTERM) and exited.",
        (126 | 127, _) => {
            "The command could not be run: check the image's entrypoint and the container's command."
        }
        _ => "",
    }
}

/// A probe in a few words: `httpGet :8080/healthz every 10s`.
pub fn probe_summary(probe: &Value) -> String {
    let mut words = if let Some(http) = probe.get("httpGet") {
        let scheme = view::text(http, "/scheme");
        let scheme = if scheme.eq_ignore_ascii_case("https") {
            "https://"
        } else {
            ""
        };
        let path = view::text(http, "/path");
        format!(
            "httpGet {scheme}{}:{}{}",
            view::text(http, "/host"),
            view::text(http, "/port"),
            if path.is_empty() { "/".into() } else { path }
        )
    } else if let Some(tcp) = probe.get("tcpSocket") {
        format!(
            "tcpSocket {}:{}",
            view::text(tcp, "/host"),
            view::text(tcp, "/port")
        )
    } else if let Some(exec) = probe.get("exec") {
        let command: Vec<String> = exec
            .get("command")
            .and_then(Value::as_array)
            .map(|words| {
                words
                    .iter()
                    .map(|w| w.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        format!("exec [{}]", command.join(" "))
    } else {
        "no check".into()
    };
    let seconds = |path: &str| probe.pointer(path).and_then(Value::as_i64);
    words.push_str(&format!(
        " every {}s",
        seconds("/periodSeconds").unwrap_or(10)
    ));
    if let Some(delay) = seconds("/initialDelaySeconds").filter(|d| *d > 0) {
        words.push_str(&format!(", first after {delay}s"));
    }
    // Kubernetes' defaults (1 s, 3 failures) go without saying.
    if let Some(timeout) = seconds("/timeoutSeconds").filter(|t| *t != 1) {
        words.push_str(&format!(", timeout {timeout}s"));
    }
    if let Some(failures) = seconds("/failureThreshold").filter(|f| *f != 3) {
        words.push_str(&format!(", fails after {failures} misses"));
    }
    words
}

/// The container's ports: `8080/TCP (http)`, with the host port asked for
/// and where the node published it.
fn ports(spec: &Value, status: &Value) -> Vec<String> {
    let bindings = status
        .get("portBindings")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    spec.get("ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|port| {
            let number = view::number(port, "/containerPort");
            let protocol = match view::text(port, "/protocol") {
                p if p.is_empty() => "TCP".to_owned(),
                p => p,
            };
            let mut words = format!("{number}/{protocol}");
            let name = view::text(port, "/name");
            if !name.is_empty() {
                words.push_str(&format!(" ({name})"));
            }
            let host_port = view::number(port, "/hostPort");
            if host_port > 0 {
                words.push_str(&format!(", host port {host_port}"));
            }
            if let Some(bound) = bindings.iter().find(|b| {
                view::number(b, "/containerPort") == number
                    && view::text(b, "/protocol").eq_ignore_ascii_case(&protocol)
            }) {
                words.push_str(&format!(
                    ", published on {}:{}",
                    view::text(bound, "/hostIP"),
                    view::number(bound, "/hostPort")
                ));
            }
            words
        })
        .collect()
}

/// A quantity map as `cpu 100m, memory 64Mi`; `—` when empty.
fn quantities(map: Option<&Value>) -> String {
    let listed: Vec<String> = map
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(k, v)| format!("{k} {}", view::text(v, "")))
                .collect()
        })
        .unwrap_or_default();
    if listed.is_empty() {
        "—".into()
    } else {
        listed.join(", ")
    }
}

/// CPU cores as `kubectl top` shows them: `12m`, or `1.50` cores.
fn cpu(cores: f64) -> String {
    if cores < 1.0 {
        format!("{}m", (cores * 1000.0).round().max(0.0) as u64)
    } else {
        format!("{cores:.2} cores")
    }
}

/// Bytes as `16Mi`, `1.5Gi`, `512Ki`.
fn memory(bytes: u64) -> String {
    const KI: u64 = 1024;
    const MI: u64 = KI * 1024;
    const GI: u64 = MI * 1024;
    match bytes {
        b if b >= GI => format!("{:.1}Gi", b as f64 / GI as f64),
        b if b >= MI => format!("{}Mi", (b as f64 / MI as f64).round() as u64),
        b => format!("{}Ki", b.div_ceil(KI)),
    }
}

// ---- why isn't it running? ---------------------------------------------------

/// What the scheduler said of a pod that fits no node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerVerdict {
    /// Nodes it looked at.
    pub nodes: usize,
    /// Why the others could not take it, as listed (most common first).
    pub reasons: Vec<NodeReason>,
}

/// One reason in a [`SchedulerVerdict`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeReason {
    /// How many nodes it ruled out; `None` when the reason is the pod's own
    /// and rules out every node (`persistentvolumeclaim "x" not found`).
    pub count: Option<usize>,
    /// The scheduler's words (`Insufficient cpu`).
    pub reason: String,
}

/// Reads the scheduler's message
/// `0/5 nodes are available: 3 Insufficient cpu, 2 node(s) didn't match node selector.`
/// (see `berth_server::scheduler::fit`); `None` when it is not one.
pub fn parse_scheduler_message(message: &str) -> Option<SchedulerVerdict> {
    let (head, rest) = message.trim().split_once(" nodes are available")?;
    let (_, nodes) = head.trim().split_once('/')?;
    let nodes = nodes.parse().ok()?;
    // Kubernetes appends more sentences (`preemption: …`): the list ends at
    // the first full stop.
    let rest = rest.split(". ").next().unwrap_or_default();
    let rest = rest.strip_suffix('.').unwrap_or(rest);
    let list = match rest.strip_prefix(':') {
        Some(list) => list.trim(),
        None if rest.trim().is_empty() => "",
        None => return None,
    };
    // Reasons are joined with ", ", but a reason may hold a comma (a
    // taint's value): a piece that does not start with a count belongs to
    // the one before.
    let mut pieces: Vec<String> = Vec::new();
    for piece in list.split(", ").filter(|p| !p.is_empty()) {
        match pieces.last_mut() {
            Some(last) if leading_count(piece).is_none() => {
                last.push_str(", ");
                last.push_str(piece);
            }
            _ => pieces.push(piece.to_owned()),
        }
    }
    let reasons = pieces
        .into_iter()
        .map(|piece| match leading_count(&piece) {
            Some((count, reason)) => NodeReason {
                count: Some(count),
                reason: reason.to_owned(),
            },
            None => NodeReason {
                count: None,
                reason: piece,
            },
        })
        .collect();
    Some(SchedulerVerdict { nodes, reasons })
}

/// `3 Insufficient cpu` → (3, `Insufficient cpu`).
fn leading_count(piece: &str) -> Option<(usize, &str)> {
    let (count, reason) = piece.split_once(' ')?;
    Some((count.parse().ok()?, reason))
}

/// What to do about a reason the scheduler gave, in plain words.
pub fn scheduler_hint(reason: &str) -> String {
    let hint = match reason {
        "Insufficient cpu" => {
            "Not enough CPU is left on these nodes: ask for less CPU (resources.requests.cpu) or add a node with more."
        }
        "Insufficient memory" => {
            "Not enough memory is left on these nodes: ask for less memory (resources.requests.memory) or add a node with more."
        }
        "Too many pods" => {
            "These nodes hold as many pods as they can: remove some pods or add a node."
        }
        "node(s) didn't match node selector" => {
            "The pod's nodeSelector or node affinity asks for labels these nodes do not have: fix the selector, or label a node to match."
        }
        "node(s) were not ready" => {
            "These nodes are down or not reporting: wait for them to come back, or check their agents."
        }
        "node(s) were unschedulable" => {
            "These nodes are cordoned (closed to new pods): uncordon one, or add a node."
        }
        "node(s) didn't have free ports for the requested pod ports" => {
            "A host port the pod asks for is already taken on these nodes: choose another hostPort, drop it, or add a node."
        }
        "node(s) didn't match pod anti-affinity rules" => {
            "A pod this one must not share a node with already runs on each of these: add a node, or relax the anti-affinity."
        }
        "node(s) had volume node affinity conflict" => {
            "The pod's volumes keep their data on different nodes, so no single node has them all: use volumes on one node."
        }
        _ if reason.starts_with("node(s) had untolerated taint") => {
            if reason.contains("memory-pressure") {
                "These nodes are short of memory and take only pods that set memory or CPU requests or limits: set resources on the containers, or free memory."
            } else {
                "These nodes are tainted to keep pods off: add a matching toleration to the pod, or use other nodes."
            }
        }
        _ if reason.starts_with("persistentvolumeclaim") => {
            return format!(
                "The pod mounts a volume that does not exist ({reason}): create it, or fix the claim name."
            );
        }
        _ => "",
    };
    hint.to_owned()
}

/// The wait a back-off message names, as written and as a duration:
/// `back-off 40s restarting failed container=web pod=web-1` → `40s`.
pub fn backoff_of(message: &str) -> Option<(&str, Duration)> {
    let at = message.to_ascii_lowercase().find("back-off ")? + "back-off ".len();
    let written = message[at..].split_whitespace().next()?;
    let delay = berth_api::duration::parse_duration(written).ok()?;
    Some((written, delay))
}

/// The ConfigMap or Secret a `CreateContainerConfigError` message says is
/// missing, as the node words it: `configmap "settings" not found`,
/// `couldn't find key url in Secret acme/db`, `volume "conf": configmap
/// references non-existent config key: app.ini` (the volume's object is
/// then read from the pod's spec).
pub fn missing_reference(message: &str, pod: &Value) -> Option<MissingReference> {
    let kind_of = |word: &str| match word.to_ascii_lowercase().as_str() {
        "configmap" => Some("ConfigMap"),
        "secret" => Some("Secret"),
        _ => None,
    };
    if let Some(at) = message.find("couldn't find key ") {
        let rest = &message[at + "couldn't find key ".len()..];
        let (key, rest) = rest.split_once(" in ")?;
        let (kind, object) = rest.split_once(' ')?;
        let object = object.split_whitespace().next().unwrap_or_default();
        let name = object.rsplit('/').next().unwrap_or(object);
        return Some(MissingReference {
            kind: kind_of(kind)?,
            name: name.to_owned(),
            key: Some(key.to_owned()),
        });
    }
    if let Some(at) = message.find(" references non-existent config key: ") {
        let key = message[at + " references non-existent config key: ".len()..].trim();
        let before = &message[..at];
        let kind = kind_of(before.rsplit(' ').next().unwrap_or_default())?;
        let volume = quoted_after(before, "volume ").unwrap_or_default();
        let source = pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .and_then(|volumes| volumes.iter().find(|v| view::text(v, "/name") == volume));
        let name = source
            .map(|v| match kind {
                "Secret" => view::text(v, "/secret/secretName"),
                _ => view::text(v, "/configMap/name"),
            })
            .unwrap_or_default();
        return Some(MissingReference {
            kind,
            name,
            key: Some(key.to_owned()),
        });
    }
    for (word, kind) in [("configmap \"", "ConfigMap"), ("secret \"", "Secret")] {
        if let Some(at) = message.to_ascii_lowercase().find(word) {
            let rest = &message[at + word.len()..];
            let name = rest.split('"').next().unwrap_or_default();
            return Some(MissingReference {
                kind,
                name: name.to_owned(),
                key: None,
            });
        }
    }
    None
}

/// The text between the double quotes after `prefix` in `text`.
fn quoted_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let at = text.find(prefix)? + prefix.len();
    let rest = text[at..].strip_prefix('"')?;
    rest.split('"').next()
}

/// A countdown's words: `in 23s`, `in 1m05s`, or `any moment now`.
fn countdown(until: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (until - now).num_seconds();
    match seconds {
        s if s <= 0 => "any moment now".into(),
        s if s < 60 => format!("in {s}s"),
        s => format!("in {}m{:02}s", s / 60, s % 60),
    }
}

/// The card for a pod that is not running and will not on its own; `None`
/// when nothing is wrong.
fn why(pod: &Value, row: &PodRow, now: DateTime<Utc>) -> Option<Why> {
    let blank = |kind, headline: &str| Why {
        kind,
        headline: headline.to_owned(),
        lines: Vec::new(),
        message: String::new(),
        reasons: Vec::new(),
        container: String::new(),
        exit: String::new(),
        restarts: 0,
        next_start: String::new(),
        next_start_text: String::new(),
        backoff: String::new(),
        hint: String::new(),
        missing: None,
        missing_href: String::new(),
    };
    if view::text(pod, "/status/phase") != "Running"
        && view::text(pod, "/spec/nodeName").is_empty()
        && let Some(message) = view::unschedulable(pod)
    {
        let mut why = blank("unschedulable", "No node can run this pod.");
        match parse_scheduler_message(&message) {
            Some(verdict) => {
                why.lines.push(match verdict.nodes {
                    0 => "There are no nodes at all: join a node to the platform.".to_owned(),
                    1 => "The scheduler looked at the only node, and it cannot take the pod:"
                        .to_owned(),
                    n => format!("The scheduler looked at all {n} nodes, and none can take it:"),
                });
                why.reasons = verdict
                    .reasons
                    .into_iter()
                    .map(|r| ReasonView {
                        count: r.count.map(|c| c.to_string()).unwrap_or_default(),
                        hint: scheduler_hint(&r.reason),
                        reason: r.reason,
                    })
                    .collect();
            }
            None => why.lines.push("The scheduler says:".into()),
        }
        why.message = message;
        why.hint = "It is tried again whenever nodes or pods change.".into();
        return Some(why);
    }
    let statuses = ["/status/initContainerStatuses", "/status/containerStatuses"]
        .iter()
        .filter_map(|path| pod.pointer(path).and_then(Value::as_array))
        .flatten();
    for status in statuses {
        let container = view::text(status, "/name");
        let restarts = view::number(status, "/restartCount");
        let reason = view::text(status, "/state/waiting/reason");
        let message = view::text(status, "/state/waiting/message");
        let mut why = match reason.as_str() {
            "CrashLoopBackOff" => {
                let mut why = blank("crash-loop", "The container keeps exiting.");
                let last = status.pointer("/lastState/terminated");
                why.lines.push(format!(
                    "Container {container} has restarted {restarts} time{}, and waits before the next start.",
                    if restarts == 1 { "" } else { "s" }
                ));
                if let Some(last) = last {
                    why.exit = exit_words(last);
                    why.hint = exit_hint(last).to_owned();
                }
                if let Some((written, delay)) = backoff_of(&message) {
                    why.backoff = written.to_owned();
                    let finished = last
                        .map(|t| view::text(t, "/finishedAt"))
                        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok());
                    if let (Some(finished), Ok(delay)) =
                        (finished, chrono::Duration::from_std(delay))
                    {
                        let due = finished.with_timezone(&Utc) + delay;
                        why.next_start = rfc3339(due);
                        why.next_start_text = countdown(due, now);
                    }
                }
                why
            }
            "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull" => {
                let mut why = blank("image", "The image cannot be pulled.");
                let image = pod
                    .pointer("/spec/containers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .chain(
                        pod.pointer("/spec/initContainers")
                            .and_then(Value::as_array),
                    )
                    .flatten()
                    .find(|c| view::text(c, "/name") == container)
                    .map(|c| view::text(c, "/image"))
                    .unwrap_or_default();
                why.lines.push(format!(
                    "The node could not get image {image} for container {container}."
                ));
                why.hint = "Check the image's name and tag, that its registry can be reached from the node, and, for a private registry, the pod's imagePullSecrets.".into();
                why
            }
            "CreateContainerConfigError" => {
                let mut why = blank(
                    "config",
                    "The container's configuration refers to something missing.",
                );
                why.missing = missing_reference(&message, pod);
                why.lines.push(match &why.missing {
                    Some(MissingReference { kind, name, key: Some(key) }) => format!(
                        "Container {container} needs key {key} of {kind} {name}, which does not have it."
                    ),
                    Some(MissingReference { kind, name, key: None }) => format!(
                        "Container {container} needs {kind} {name}, which does not exist."
                    ),
                    None => format!("Container {container} cannot be set up."),
                });
                if why.missing.is_some() {
                    why.hint = "Create it (or add the key), or mark the reference optional: the container starts as soon as it can.".into();
                }
                why
            }
            "CreateContainerError" | "RunContainerError" => {
                let mut why = blank("create", "The container cannot be created.");
                why.lines.push(format!(
                    "The node failed to create or start container {container}."
                ));
                why
            }
            _ => {
                let Some(terminated) = status.pointer("/state/terminated") else {
                    continue;
                };
                if view::number(terminated, "/exitCode") == 0 {
                    continue;
                }
                let mut why = blank("failed", "The container failed.");
                why.lines.push(format!(
                    "Container {container} exited and is not restarted (the pod's restartPolicy)."
                ));
                why.exit = exit_words(terminated);
                why.hint = exit_hint(terminated).to_owned();
                why.message = view::text(terminated, "/message");
                why.container = container;
                return Some(why);
            }
        };
        why.container = container;
        why.restarts = restarts;
        why.message = message;
        return Some(why);
    }
    if view::text(pod, "/status/phase") == "Failed" || row.failing {
        let mut why = blank("failed", "The pod failed.");
        why.message = [
            view::text(pod, "/status/reason"),
            view::text(pod, "/status/message"),
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
        why.lines.push(format!("Its status is {}.", row.status));
        return Some(why);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_scheduler_s_message_reads_as_node_counts_per_reason() {
        let verdict = parse_scheduler_message(
            "0/5 nodes are available: 3 Insufficient cpu, 2 node(s) didn't match node selector.",
        )
        .unwrap();
        assert_eq!(verdict.nodes, 5);
        assert_eq!(
            verdict.reasons,
            [
                NodeReason {
                    count: Some(3),
                    reason: "Insufficient cpu".into()
                },
                NodeReason {
                    count: Some(2),
                    reason: "node(s) didn't match node selector".into()
                },
            ]
        );
    }

    #[test]
    fn a_taint_a_missing_claim_and_no_nodes_parse_too() {
        let verdict = parse_scheduler_message(
            "0/4 nodes are available: 3 node(s) had untolerated taint {dedicated: gpu, team: ml}, 1 Too many pods.",
        )
        .unwrap();
        assert_eq!(verdict.reasons.len(), 2);
        assert_eq!(
            verdict.reasons[0].reason,
            "node(s) had untolerated taint {dedicated: gpu, team: ml}"
        );
        assert_eq!(verdict.reasons[1].count, Some(1));

        let verdict = parse_scheduler_message(
            "0/3 nodes are available: persistentvolumeclaim \"logs\" not found.",
        )
        .unwrap();
        assert_eq!(verdict.nodes, 3);
        assert_eq!(
            verdict.reasons,
            [NodeReason {
                count: None,
                reason: "persistentvolumeclaim \"logs\" not found".into()
            }]
        );

        let verdict = parse_scheduler_message("0/0 nodes are available.").unwrap();
        assert_eq!((verdict.nodes, verdict.reasons.len()), (0, 0));

        let verdict = parse_scheduler_message(
            "0/2 nodes are available: 2 Insufficient memory. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.",
        )
        .unwrap();
        assert_eq!(verdict.reasons.len(), 1);
        assert_eq!(verdict.reasons[0].reason, "Insufficient memory");

        assert_eq!(parse_scheduler_message("Unschedulable"), None);
    }

    #[test]
    fn every_reason_the_scheduler_gives_has_a_hint() {
        for reason in [
            "node(s) were not ready",
            "node(s) were unschedulable",
            "node(s) didn't match node selector",
            "node(s) had untolerated taint {dedicated: gpu}",
            "Insufficient cpu",
            "Insufficient memory",
            "Too many pods",
            "node(s) didn't have free ports for the requested pod ports",
            "node(s) didn't match pod anti-affinity rules",
            "node(s) had volume node affinity conflict",
            "persistentvolumeclaim \"logs\" not found",
        ] {
            assert!(!scheduler_hint(reason).is_empty(), "{reason}");
        }
        assert!(scheduler_hint("Insufficient cpu").contains("ask for less CPU"));
    }

    #[test]
    fn the_back_off_is_read_from_the_waiting_message() {
        assert_eq!(
            backoff_of("back-off 40s restarting failed container=web pod=web-1"),
            Some(("40s", Duration::from_secs(40)))
        );
        assert_eq!(
            backoff_of("back-off 1m20s restarting failed container=web pod=web-1"),
            Some(("1m20s", Duration::from_secs(80)))
        );
        assert_eq!(
            backoff_of("Back-off 500ms restarting"),
            Some(("500ms", Duration::from_millis(500)))
        );
        assert_eq!(backoff_of("simulated failure"), None);
        assert_eq!(backoff_of("back-off soon"), None);
    }

    #[test]
    fn a_crash_loop_says_the_last_exit_and_when_the_next_start_is_due() {
        let pod = json!({
            "metadata": {"name": "web-1"},
            "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "busybox"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "web", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                    "message": "back-off 40s restarting failed container=web pod=web-1"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                    "finishedAt": "2026-01-02T03:00:00Z"}}
            }]}
        });
        let row = view::pod_row(&pod);
        let why = why(&pod, &row, at("2026-01-02T03:00:15Z")).unwrap();
        assert_eq!(why.kind, "crash-loop");
        assert_eq!(why.headline, "The container keeps exiting.");
        assert_eq!(why.container, "web");
        assert_eq!(why.exit, "exit code 137 (OOMKilled)");
        assert!(why.hint.contains("memory"), "{}", why.hint);
        assert_eq!(why.backoff, "40s");
        assert_eq!(why.next_start, "2026-01-02T03:00:40Z");
        assert_eq!(why.next_start_text, "in 25s");
        assert!(why.lines[0].contains("restarted 3 times"));
    }

    #[test]
    fn an_unschedulable_pod_lists_the_reasons_with_their_node_counts() {
        let pod = json!({
            "metadata": {"name": "big"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/2 nodes are available: 2 Insufficient cpu."
            }]}
        });
        let why = why(&pod, &view::pod_row(&pod), Utc::now()).unwrap();
        assert_eq!(why.kind, "unschedulable");
        assert_eq!(why.headline, "No node can run this pod.");
        assert_eq!(why.reasons.len(), 1);
        assert_eq!(why.reasons[0].count, "2");
        assert_eq!(why.reasons[0].reason, "Insufficient cpu");
        assert!(why.reasons[0].hint.contains("ask for less CPU"));
    }

    fn waiting(reason: &str, message: &str) -> Value {
        json!({
            "metadata": {"name": "web-1"},
            "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "registry.example/web:9"}]},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "web", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": message}}}]}
        })
    }

    #[test]
    fn an_image_that_cannot_be_pulled_says_which_and_the_pull_error() {
        let pod = waiting(
            "ImagePullBackOff",
            "Back-off pulling image \"registry.example/web:9\": manifest unknown",
        );
        let why = why(&pod, &view::pod_row(&pod), Utc::now()).unwrap();
        assert_eq!(why.kind, "image");
        assert_eq!(why.headline, "The image cannot be pulled.");
        assert!(why.lines[0].contains("registry.example/web:9"));
        assert!(why.message.ends_with("manifest unknown"));
    }

    #[test]
    fn a_missing_secret_key_is_named_with_the_container() {
        let pod = waiting(
            "CreateContainerConfigError",
            "couldn't find key password in Secret acme/db",
        );
        let why = why(&pod, &view::pod_row(&pod), Utc::now()).unwrap();
        assert_eq!(why.kind, "config");
        assert_eq!(
            why.lines[0],
            "Container web needs key password of Secret db, which does not have it."
        );
        assert_eq!(why.missing.map(|m| m.kind), Some("Secret"));
    }

    #[test]
    fn a_running_pod_has_no_card() {
        let pod = json!({
            "metadata": {"name": "ok"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "c", "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-01-02T03:00:00Z"}}}]}
        });
        assert!(why(&pod, &view::pod_row(&pod), Utc::now()).is_none());
    }

    #[test]
    fn a_config_error_names_what_is_missing() {
        let pod =
            json!({"spec": {"volumes": [{"name": "conf", "configMap": {"name": "settings"}}]}});
        assert_eq!(
            missing_reference("configmap \"settings\" not found", &pod),
            Some(MissingReference {
                kind: "ConfigMap",
                name: "settings".into(),
                key: None
            })
        );
        assert_eq!(
            missing_reference("secret \"db\" not found", &pod),
            Some(MissingReference {
                kind: "Secret",
                name: "db".into(),
                key: None
            })
        );
        assert_eq!(
            missing_reference("couldn't find key url in Secret acme/db", &pod),
            Some(MissingReference {
                kind: "Secret",
                name: "db".into(),
                key: Some("url".into())
            })
        );
        assert_eq!(
            missing_reference(
                "volume \"conf\": configmap references non-existent config key: app.ini",
                &pod
            ),
            Some(MissingReference {
                kind: "ConfigMap",
                name: "settings".into(),
                key: Some("app.ini".into())
            })
        );
        assert_eq!(
            missing_reference("container \"c\" has runAsNonRoot and runAsUser 0", &pod),
            None
        );
    }

    #[test]
    fn probes_read_in_a_few_words() {
        assert_eq!(
            probe_summary(
                &json!({"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10})
            ),
            "httpGet :8080/healthz every 10s"
        );
        assert_eq!(
            probe_summary(
                &json!({"tcpSocket": {"port": 80}, "timeoutSeconds": 1, "failureThreshold": 3})
            ),
            "tcpSocket :80 every 10s"
        );
        assert_eq!(
            probe_summary(
                &json!({"tcpSocket": {"port": "http"}, "timeoutSeconds": 5, "failureThreshold": 6})
            ),
            "tcpSocket :http every 10s, timeout 5s, fails after 6 misses"
        );
        assert_eq!(
            probe_summary(
                &json!({"exec": {"command": ["cat", "/tmp/ok"]}, "periodSeconds": 5, "initialDelaySeconds": 3})
            ),
            "exec [cat /tmp/ok] every 5s, first after 3s"
        );
    }

    #[test]
    fn the_qos_class_follows_requests_and_limits() {
        let pod = |resources: Value| json!({"spec": {"containers": [{"name": "c", "resources": resources}]}});
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&pod(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "64Mi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&json!({"status": {"qosClass": "Burstable"}})),
            "Burstable"
        );
    }

    #[test]
    fn use_figures_read_as_kubectl_top_prints_them() {
        assert_eq!(cpu(0.012), "12m");
        assert_eq!(cpu(1.5), "1.50 cores");
        assert_eq!(memory(16 * 1024 * 1024), "16Mi");
        assert_eq!(memory(3 * 1024 * 1024 * 1024 / 2), "1.5Gi");
        assert_eq!(memory(1000), "1Ki");
    }

    #[test]
    fn the_filter_needs_every_word() {
        let row = PodRow {
            name: "web-1".into(),
            ready: "0/1".into(),
            status: "CrashLoopBackOff".into(),
            tone: "bad",
            restarts: 2,
            node: "sim-0".into(),
            ip: String::new(),
            age: "1m".into(),
            failing: true,
        };
        assert!(matches_filter(&row, ""));
        assert!(matches_filter(&row, "web crash"));
        assert!(matches_filter(&row, "SIM-0"));
        assert!(!matches_filter(&row, "web running"));
    }
}
