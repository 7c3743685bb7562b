//! Pods' resource use, shaped as Kubernetes' metrics API
//! (`metrics.k8s.io/v1beta1` `PodMetrics`), from what the agents reported
//! to this server process ([`crate::pod_metrics`]):
//! - `GET /api/v1/tenants/{tenant}/pods/{name}/metrics`: the latest
//!   sample and the last fifteen minutes' history (`get` of Pods);
//! - `GET /api/v1/tenants/{tenant}/pods/metrics`: the latest sample of
//!   every pod of the tenant that has one (`list` of Pods).
//!
//! CPU is in millicores (`"12m"`), memory in KiB (`"3456Ki"`), as
//! Kubernetes' quantities.

use actix_web::{HttpResponse, get, web};
use berth_api::labels::Selector;
use berth_api::objects::Kind;
use chrono::{DateTime, SecondsFormat, Utc};

use super::caller::Caller;
use super::error::{ApiError, ErrorBody};
use super::resources::{object_error, scope};
use crate::authz::Verb;
use crate::objects::SecretValues;
use crate::pod_metrics::{ContainerUsage, Sample};
use crate::rest::state::AppState;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_pod_metrics, read_pod_metrics),
    components(schemas(
        ErrorBody,
        PodMetrics,
        PodMetricsList,
        MetricsSample,
        ContainerMetrics,
        Usage,
        MetricsMeta
    ))
)]
pub struct MetricsApi;

/// Mounts these routes; before the object routes, which would take
/// `metrics` for a pod's name.
pub fn configure(config: &mut web::ServiceConfig) {
    config.service(list_pod_metrics).service(read_pod_metrics);
}

/// A container's use.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// CPU, in millicores.
    #[schema(example = "12m")]
    cpu: String,
    /// Memory working set, in KiB.
    #[schema(example = "3456Ki")]
    memory: String,
}

/// One container's figures.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ContainerMetrics {
    /// The container's name.
    name: String,
    /// Its use.
    usage: Usage,
}

/// One report of a pod's containers.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MetricsSample {
    /// When the server received it (RFC 3339).
    timestamp: String,
    /// Over how long CPU was measured (`"1s"`).
    window: String,
    /// Each running container.
    containers: Vec<ContainerMetrics>,
}

/// Which pod.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MetricsMeta {
    /// The pod's name.
    name: String,
    /// Its tenant.
    tenant: String,
}

/// A pod's resource use.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMetrics {
    /// `metrics.k8s.io/v1beta1`.
    api_version: &'static str,
    /// `PodMetrics`.
    kind: &'static str,
    /// Which pod.
    metadata: MetricsMeta,
    /// The latest sample's time; absent before the first.
    timestamp: Option<String>,
    /// The latest sample's window.
    window: Option<String>,
    /// The latest sample's containers; empty before the first.
    containers: Vec<ContainerMetrics>,
    /// The last fifteen minutes, oldest first (one pod's answer only).
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<MetricsSample>>,
}

/// Every pod of a tenant that has figures.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMetricsList {
    /// `metrics.k8s.io/v1beta1`.
    api_version: &'static str,
    /// `PodMetricsList`.
    kind: &'static str,
    /// One per pod, without history.
    items: Vec<PodMetrics>,
}

/// CPU cores as millicores.
fn millicores(cores: f64) -> String {
    format!("{}m", (cores * 1000.0).round().max(0.0) as u64)
}

fn view(sample: &Sample) -> MetricsSample {
    MetricsSample {
        timestamp: time(sample.at),
        window: format!("{}s", sample.window.as_secs_f64()),
        containers: sample.containers.iter().map(container).collect(),
    }
}

fn container(usage: &ContainerUsage) -> ContainerMetrics {
    ContainerMetrics {
        name: usage.name.clone(),
        usage: Usage {
            cpu: millicores(usage.cpu_cores),
            memory: format!("{}Ki", usage.memory_bytes.div_ceil(1024)),
        },
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The answer for pod `name` of `tenant` with `samples`.
fn pod_metrics(tenant: &str, name: &str, samples: &[Sample], history: bool) -> PodMetrics {
    let latest = samples.last().map(view);
    PodMetrics {
        api_version: "metrics.k8s.io/v1beta1",
        kind: "PodMetrics",
        metadata: MetricsMeta {
            name: name.to_owned(),
            tenant: tenant.to_owned(),
        },
        timestamp: latest.as_ref().map(|l| l.timestamp.clone()),
        window: latest.as_ref().map(|l| l.window.clone()),
        containers: latest.map(|l| l.containers).unwrap_or_default(),
        history: history.then(|| samples.iter().map(view).collect()),
    }
}

/// A pod's latest CPU and memory figures per running container, and the
/// last fifteen minutes of them. A pod that has not reported yet answers
/// no containers. With several server replicas, the figures are on the
/// replica the pod's node reports to.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/pods/{name}/metrics",
    operation_id = "read_pod_metrics",
    tag = "pods",
    params(
        ("tenant" = String, Path, description = "The tenant."),
        ("name" = String, Path, description = "The pod's name.", example = "web-7d4b9-x2x8q"),
    ),
    responses(
        (status = 200, description = "The pod's figures.", body = PodMetrics),
        (status = 401, description = "Not signed in.", body = ErrorBody),
        (status = 403, description = "The role does not allow this.", body = ErrorBody),
        (status = 404, description = "No such pod or tenant.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/api/v1/tenants/{tenant}/pods/{name}/metrics")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id))]
pub async fn read_pod_metrics(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name) = path.into_inner();
    let scope = scope(&caller, Some(&tenant), Kind::Pod, Verb::Get)?;
    let pod = state
        .objects
        .get(&scope.at(&name), SecretValues::Redact)
        .await
        .map_err(object_error)?;
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let samples = state.pod_metrics.history(&tenant, &name, uid, Utc::now());
    Ok(HttpResponse::Ok().json(pod_metrics(&tenant, &name, &samples, true)))
}

/// The latest figures of every pod of the tenant that reported any.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/pods/metrics",
    operation_id = "list_pod_metrics",
    tag = "pods",
    params(("tenant" = String, Path, description = "The tenant.")),
    responses(
        (status = 200, description = "The tenant's pods' figures.", body = PodMetricsList),
        (status = 401, description = "Not signed in.", body = ErrorBody),
        (status = 403, description = "The role does not allow this.", body = ErrorBody),
        (status = 404, description = "No such tenant.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/api/v1/tenants/{tenant}/pods/metrics")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id))]
pub async fn list_pod_metrics(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    scope(&caller, Some(&tenant), Kind::Pod, Verb::List)?;
    let pods = state
        .objects
        .list(
            Kind::Pod,
            Some(&tenant),
            &Selector::default(),
            0,
            None,
            SecretValues::Redact,
        )
        .await
        .map_err(object_error)?;
    let now = Utc::now();
    let items = pods
        .items
        .iter()
        .filter_map(|pod| {
            let name = pod["metadata"]["name"].as_str()?;
            let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
            let samples = state.pod_metrics.history(&tenant, name, uid, now);
            (!samples.is_empty()).then(|| pod_metrics(&tenant, name, &samples, false))
        })
        .collect();
    Ok(HttpResponse::Ok().json(PodMetricsList {
        api_version: "metrics.k8s.io/v1beta1",
        kind: "PodMetricsList",
        items,
    }))
}
