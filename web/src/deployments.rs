//! Deployments: the list; a Deployment's page (its pods, ReplicaSets,
//! conditions, events, scale, restart, pause, image, revision history with
//! diffs and rollback, and the logs of all its pods); creating one from
//! YAML or a short form; editing one as YAML.
//!
//! Pages read through the domain layer; every change is a REST call the
//! page's script makes, so the dashboard changes nothing the API would not.

use actix_web::{HttpResponse, web};
use askama::Template;
use berth_api::objects::Kind;
use berth_server::authz::{Target, Verb};
use berth_server::objects::ObjectRef;
use serde_json::Value;

use crate::diff::{self, DiffLine};
use crate::page::{self, Chrome, PageError, Permission, Viewer};
use crate::view::{self, Condition, DeploymentRow, EventRow, PodRow};

/// Mounts the Deployment pages.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/deployments", web::get().to(list))
        .route("/t/{tenant}/deployments/new", web::get().to(new))
        .route("/t/{tenant}/deployments/{name}", web::get().to(detail))
        .route("/t/{tenant}/deployments/{name}/edit", web::get().to(edit));
}

#[derive(Template)]
#[template(path = "deployments.html")]
struct ListPage {
    chrome: Chrome,
    live: String,
    rv: i64,
    rows: Vec<DeploymentRow>,
    create: Permission,
}

async fn list(viewer: Viewer, tenant: web::Path<String>) -> Result<HttpResponse, PageError> {
    let tenant = tenant.into_inner();
    viewer.open(&tenant)?;
    let (items, rv) = viewer.list(Kind::Deployment, Some(&tenant)).await?;
    let mut rows: Vec<DeploymentRow> = items.iter().map(view::deployment_row).collect();
    // Failing first, then by name.
    rows.sort_by_key(|r| (r.tone != "bad", r.name.clone()));
    page::render(&ListPage {
        chrome: viewer
            .chrome(
                Some(&tenant),
                "deployments",
                format!("{tenant} · Deployments"),
            )
            .await?,
        live: format!("/live?tenant={tenant}&kinds=deployments"),
        rv,
        create: deployment_permission(&viewer, &tenant, Verb::Create, "create deployments"),
        rows,
    })
}

fn deployment_permission(viewer: &Viewer, tenant: &str, verb: Verb, action: &str) -> Permission {
    viewer.permission(Some(tenant), Target::Object(Kind::Deployment), verb, action)
}

/// A container of the Deployment's template, for its image form.
struct ContainerImage {
    name: String,
    image: String,
}

/// One revision in the history.
struct Revision {
    number: i64,
    replica_set: String,
    age: String,
    replicas: i32,
    available: i32,
    current: bool,
    images: String,
    /// What rolling back to it would change: current → this revision.
    diff: Vec<DiffLine>,
}

/// A ReplicaSet of the Deployment.
struct ReplicaSetRow {
    name: String,
    revision: String,
    desired: i64,
    ready: i64,
    age: String,
}

#[derive(Template)]
#[template(path = "deployment.html")]
struct DetailPage {
    chrome: Chrome,
    live: String,
    rv: i64,
    row: DeploymentRow,
    strategy: String,
    selector: String,
    labels: Vec<String>,
    annotations: Vec<String>,
    containers: Vec<ContainerImage>,
    conditions: Vec<Condition>,
    pods: Vec<PodRow>,
    replica_sets: Vec<ReplicaSetRow>,
    revisions: Vec<Revision>,
    events: Vec<EventRow>,
    api: String,
    scale: Permission,
    patch: Permission,
    update: Permission,
    delete: Permission,
}

async fn detail(
    viewer: Viewer,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (tenant, name) = path.into_inner();
    viewer.open(&tenant)?;
    let t = Some(tenant.as_str());
    let deployment = viewer.get(Kind::Deployment, t, &name).await?;
    let uid = view::text(&deployment, "/metadata/uid");
    let (replica_sets, rv) = viewer.list(Kind::ReplicaSet, t).await?;
    let owned: Vec<&Value> = replica_sets
        .iter()
        .filter(|rs| owned_by(rs, &uid))
        .collect();
    let owned_uids: Vec<String> = owned
        .iter()
        .map(|rs| view::text(rs, "/metadata/uid"))
        .collect();
    // A ReplicaSet's pods are named `{replicaset}-…` and an object's events
    // `{object}.…`: reading those ranges keeps the page as fast in a tenant
    // of a thousand pods as in one of ten.
    let rs_names: Vec<String> = owned.iter().map(|rs| view::name(rs)).collect();
    let mut pods = Vec::new();
    let mut events = viewer
        .list_named(Kind::Event, &tenant, &format!("{name}."))
        .await?
        .0;
    for rs in &rs_names {
        pods.extend(
            viewer
                .list_named(Kind::Pod, &tenant, &format!("{rs}-"))
                .await?
                .0,
        );
        events.extend(
            viewer
                .list_named(Kind::Event, &tenant, &format!("{rs}."))
                .await?
                .0,
        );
    }
    let mut pod_rows: Vec<PodRow> = pods
        .iter()
        .filter(|pod| owned_uids.iter().any(|u| owned_by(pod, u)))
        .map(view::pod_row)
        .collect();
    pod_rows.sort_by_key(|p| (!p.failing, p.name.clone()));
    let events: Vec<EventRow> = view::event_rows(&events)
        .into_iter()
        .filter(|e| {
            (e.object_kind == "Deployment" && e.object_name == name)
                || (e.object_kind == "ReplicaSet" && rs_names.contains(&e.object_name))
        })
        .take(30)
        .collect();
    let mut rs_rows: Vec<ReplicaSetRow> = owned
        .iter()
        .map(|rs| ReplicaSetRow {
            name: view::name(rs),
            revision: view::text(
                rs,
                "/metadata/annotations/deployment.kubernetes.io~1revision",
            ),
            desired: view::number(rs, "/spec/replicas"),
            ready: view::number(rs, "/status/readyReplicas"),
            age: view::age(rs),
        })
        .collect();
    rs_rows.sort_by_key(|r| std::cmp::Reverse(r.revision.parse::<i64>().unwrap_or(0)));
    let at = ObjectRef {
        kind: Kind::Deployment,
        tenant: Some(tenant.clone()),
        name: name.clone(),
    };
    let current_template = view::yaml(deployment.pointer("/spec/template").unwrap_or(&Value::Null));
    let now = chrono::Utc::now();
    let mut revisions: Vec<Revision> =
        berth_server::rollouts::revisions(&viewer.state.objects, &at)
            .await
            .map(|list| list.items)
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let template = serde_json::to_value(&r.template).unwrap_or(Value::Null);
                Revision {
                    number: r.revision,
                    replica_set: r.replica_set,
                    age: r
                        .created_at
                        .as_deref()
                        .map(|t| view::age_since(t, now))
                        .unwrap_or_default(),
                    replicas: r.replicas,
                    available: r.available_replicas,
                    current: r.current,
                    images: view::images(template.get("spec")),
                    diff: diff::diff(&current_template, &view::yaml(&template)),
                }
            })
            .collect();
    revisions.reverse();
    let containers = deployment
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|c| ContainerImage {
                    name: view::text(c, "/name"),
                    image: view::text(c, "/image"),
                })
                .collect()
        })
        .unwrap_or_default();
    let selector = view::pairs(&deployment, "/spec/selector/matchLabels").join(", ");
    let strategy = match view::text(&deployment, "/spec/strategy/type").as_str() {
        "Recreate" => "Recreate".to_owned(),
        _ => format!(
            "RollingUpdate (max surge {}, max unavailable {})",
            text_or(&deployment, "/spec/strategy/rollingUpdate/maxSurge", "25%"),
            text_or(
                &deployment,
                "/spec/strategy/rollingUpdate/maxUnavailable",
                "25%"
            ),
        ),
    };
    page::render(&DetailPage {
        chrome: viewer
            .chrome(t, "deployments", format!("{name} · Deployment"))
            .await?,
        live: format!("/live?tenant={tenant}&kinds=deployments,replicasets,pods,events"),
        rv,
        row: view::deployment_row(&deployment),
        strategy,
        selector,
        labels: view::pairs(&deployment, "/metadata/labels"),
        annotations: view::pairs(&deployment, "/metadata/annotations"),
        containers,
        conditions: view::conditions(&deployment),
        pods: pod_rows,
        replica_sets: rs_rows,
        revisions,
        events,
        api: format!("/api/v1/tenants/{tenant}/deployments/{name}"),
        scale: deployment_permission(&viewer, &tenant, Verb::Update, "scale"),
        patch: deployment_permission(&viewer, &tenant, Verb::Patch, "change deployments"),
        update: deployment_permission(&viewer, &tenant, Verb::Update, "edit or roll back"),
        delete: deployment_permission(&viewer, &tenant, Verb::Delete, "delete deployments"),
    })
}

fn text_or(object: &Value, path: &str, default: &str) -> String {
    let value = view::text(object, path);
    if value.is_empty() {
        default.to_owned()
    } else {
        value
    }
}

/// Whether `object` names an owner with `uid`.
pub fn owned_by(object: &Value, uid: &str) -> bool {
    !uid.is_empty()
        && object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|owners| owners.iter().any(|o| view::text(o, "/uid") == uid))
}

#[derive(Template)]
#[template(path = "deployment_new.html")]
struct NewPage {
    chrome: Chrome,
    draft_key: String,
    api: String,
    yaml: String,
    create: Permission,
}

const NEW_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
";

async fn new(viewer: Viewer, tenant: web::Path<String>) -> Result<HttpResponse, PageError> {
    let tenant = tenant.into_inner();
    viewer.open(&tenant)?;
    page::render(&NewPage {
        chrome: viewer
            .chrome(Some(&tenant), "deployments", "New deployment")
            .await?,
        draft_key: format!("berth:draft:{tenant}:new-deployment"),
        api: format!("/api/v1/tenants/{tenant}/deployments"),
        yaml: NEW_DEPLOYMENT.to_owned(),
        create: deployment_permission(&viewer, &tenant, Verb::Create, "create deployments"),
    })
}

#[derive(Template)]
#[template(path = "deployment_edit.html")]
struct EditPage {
    chrome: Chrome,
    draft_key: String,
    name: String,
    api: String,
    yaml: String,
    update: Permission,
}

async fn edit(
    viewer: Viewer,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (tenant, name) = path.into_inner();
    viewer.open(&tenant)?;
    let mut deployment = viewer.get(Kind::Deployment, Some(&tenant), &name).await?;
    if let Some(object) = deployment.as_object_mut() {
        object.remove("status");
    }
    page::render(&EditPage {
        chrome: viewer
            .chrome(Some(&tenant), "deployments", format!("Edit {name}"))
            .await?,
        draft_key: format!("berth:draft:{tenant}:deployment:{name}"),
        api: format!("/api/v1/tenants/{tenant}/deployments/{name}"),
        yaml: view::yaml(&deployment),
        update: deployment_permission(&viewer, &tenant, Verb::Update, "edit deployments"),
        name,
    })
}
