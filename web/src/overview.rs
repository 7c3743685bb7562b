//! `/t/{tenant}`: the tenant at a glance. Whatever is failing comes first,
//! each with a link to why; then Deployments available against desired,
//! pods by phase, Ready nodes and the last warnings.

use actix_web::{HttpResponse, web};
use askama::Template;
use berth_api::objects::Kind;
use berth_server::authz::{Target, Verb};
use serde_json::Value;

use crate::page::{self, Chrome, PageError, Viewer};
use crate::view::{self, DeploymentRow, EventRow, PodRow};

/// Mounts `/t/{tenant}`.
pub fn configure(config: &mut web::ServiceConfig) {
    config.route("/t/{tenant}", web::get().to(overview));
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Chrome,
    live: String,
    rv: i64,
    failing_deployments: Vec<DeploymentRow>,
    failing_pods: Vec<PodRow>,
    deployments: usize,
    deployments_available: usize,
    phases: Vec<(String, usize)>,
    pods: usize,
    nodes: Option<(usize, usize)>,
    warnings: Vec<EventRow>,
}

async fn overview(viewer: Viewer, tenant: web::Path<String>) -> Result<HttpResponse, PageError> {
    let tenant = tenant.into_inner();
    viewer.open(&tenant)?;
    let t = Some(tenant.as_str());
    let (deployments, rv) = viewer.list(Kind::Deployment, t).await?;
    // A tenant's pods and events run to thousands: only the fields shown
    // here are read of them.
    viewer.check(t, Target::Object(Kind::Pod), Verb::List)?;
    viewer.check(t, Target::Object(Kind::Event), Verb::List)?;
    let objects = &viewer.state.objects;
    let (pods, _) = objects
        .list_decoded(Kind::Pod, t, view::pod_summary)
        .await?;
    let (events, _) = objects
        .list_decoded(Kind::Event, t, |json| {
            // Only a warning is read whole.
            let kind = serde_json::from_slice::<EventType>(json).ok()?;
            if kind.kind.as_deref() == Some("Warning") {
                serde_json::from_slice::<Value>(json).ok()
            } else {
                None
            }
        })
        .await?;
    // Nodes are the platform's; a member sees how many are Ready.
    let nodes = viewer
        .state
        .objects
        .list(
            Kind::Node,
            None,
            &Default::default(),
            0,
            None,
            berth_server::objects::SecretValues::Redact,
        )
        .await
        .ok()
        .map(|page| {
            let ready = page
                .items
                .iter()
                .filter(|n| {
                    view::conditions(n)
                        .iter()
                        .any(|c| c.kind == "Ready" && c.status == "True")
                })
                .count();
            (ready, page.items.len())
        });
    let rows: Vec<DeploymentRow> = deployments.iter().map(view::deployment_row).collect();
    let pod_rows: Vec<PodRow> = pods.iter().map(view::pod_row).collect();
    let mut phases: std::collections::BTreeMap<String, usize> = Default::default();
    for pod in &pods {
        let phase = view::text(pod, "/status/phase");
        *phases
            .entry(if phase.is_empty() {
                "Pending".into()
            } else {
                phase
            })
            .or_default() += 1;
    }
    let warnings: Vec<EventRow> = view::event_rows(&events).into_iter().take(8).collect();
    page::render(&OverviewPage {
        chrome: viewer
            .chrome(t, "overview", format!("{tenant} · Overview"))
            .await?,
        live: format!("/live?tenant={tenant}&kinds=deployments,pods,events"),
        rv,
        deployments: rows.len(),
        deployments_available: rows.iter().filter(|r| r.tone == "ok").count(),
        failing_deployments: rows.into_iter().filter(|r| r.tone == "bad").collect(),
        failing_pods: pod_rows.into_iter().filter(|r| r.failing).collect(),
        phases: phases.into_iter().collect(),
        pods: pods.len(),
        nodes,
        warnings,
    })
}

/// An event's type, read before deciding to read the rest.
#[derive(serde::Deserialize)]
struct EventType {
    #[serde(rename = "type")]
    kind: Option<String>,
}
