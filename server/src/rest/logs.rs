//! Containers' logs, as `kubectl logs` reads them:
//! - `GET /api/v1/tenants/{tenant}/pods/{name}/log`: one container;
//! - `GET /api/v1/tenants/{tenant}/deployments/{name}/log`: every pod of
//!   the Deployment, each line prefixed `[pod/NAME/CONTAINER] `.
//!
//! Both need `get` of Pods and answer `text/plain`, streamed; the work is
//! [`crate::pod_logs`]'.

use actix_web::web::Bytes;
use actix_web::{HttpResponse, get, web};
use berth_api::objects::Kind;
use futures::StreamExt;

use super::caller::Caller;
use super::error::{ApiError, Detail, ErrorBody};
use super::resources::{object_error, scope};
use crate::authz::Verb;
use crate::node_api::tunnels::TunnelError;
use crate::pod_logs::{self, LogOptions, PodLogError};
use crate::rest::state::AppState;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(read_pod_log, read_deployment_log),
    components(schemas(ErrorBody))
)]
pub struct LogsApi;

/// Mounts these routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config.service(read_pod_log).service(read_deployment_log);
}

/// The query of both routes, as Kubernetes names it.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct LogQuery {
    /// The container; required when the pod has several.
    container: Option<String>,
    /// Keep streaming what the container writes.
    #[serde(default)]
    follow: bool,
    /// Only the last lines.
    tail_lines: Option<i64>,
    /// Only the output of the last seconds.
    since_seconds: Option<i64>,
    /// Each line starts with its RFC 3339 time.
    #[serde(default)]
    timestamps: bool,
    /// The previous run of the container (after a restart).
    #[serde(default)]
    previous: bool,
}

impl TryFrom<LogQuery> for LogOptions {
    type Error = ApiError;

    fn try_from(query: LogQuery) -> Result<LogOptions, ApiError> {
        if query.tail_lines.is_some_and(|n| n < 0) {
            return Err(ApiError::field("tailLines", "must be 0 or more"));
        }
        if query.since_seconds.is_some_and(|n| n < 1) {
            return Err(ApiError::field("sinceSeconds", "must be 1 or more"));
        }
        Ok(LogOptions {
            container: query.container.filter(|c| !c.is_empty()),
            follow: query.follow,
            tail_lines: query.tail_lines,
            since_seconds: query.since_seconds,
            timestamps: query.timestamps,
            previous: query.previous,
        })
    }
}

/// A [`PodLogError`] as the API answers it.
fn log_error(error: PodLogError) -> ApiError {
    match error {
        PodLogError::Object(error) => object_error(error),
        PodLogError::ContainerRequired { .. } | PodLogError::NoSuchContainer { .. } => {
            container_error(error.to_string())
        }
        PodLogError::Waiting { .. } | PodLogError::NoPrevious { .. } => {
            ApiError::invalid(error.to_string(), Vec::new())
        }
        PodLogError::Unreadable { .. } => ApiError::Internal(error.to_string()),
        PodLogError::Tunnel(error) => tunnel_error(error),
    }
}

/// A 400 about the `container` parameter.
pub(super) fn container_error(message: String) -> ApiError {
    ApiError::invalid(
        message.clone(),
        vec![Detail {
            field: "container".into(),
            reason: message,
        }],
    )
}

/// A [`TunnelError`] as the API answers it.
pub(super) fn tunnel_error(error: TunnelError) -> ApiError {
    match &error {
        TunnelError::NotConnected { .. } | TunnelError::Closed { .. } => {
            ApiError::Unavailable(error.to_string())
        }
        TunnelError::Agent { code, .. } if code == "NotFound" || code == "Unsupported" => {
            ApiError::invalid(error.to_string(), Vec::new())
        }
        TunnelError::Agent { .. } => ApiError::Internal(error.to_string()),
    }
}

/// A streamed `text/plain` answer.
fn text_stream(
    body: impl futures::Stream<Item = Result<Bytes, actix_web::Error>> + 'static,
) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .streaming(body)
}

/// One container's output, streamed from its node's agent: the container
/// may be left out when the pod has one. A container that has not started
/// answers 400 (`container "app" in pod "web" is waiting to start:
/// ContainerCreating`); a node whose agent holds its tunnel to another
/// server replica answers 503.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/pods/{name}/log",
    operation_id = "read_pod_log",
    tag = "pods",
    params(
        ("tenant" = String, Path, description = "The tenant."),
        ("name" = String, Path, description = "The pod's name.", example = "web-7d4b9-x2x8q"),
        LogQuery,
    ),
    responses(
        (status = 200, description = "The output, streamed (chunked).", content_type = "text/plain", body = String),
        (status = 400, description = "No container named and several exist, no such container, the container has not started, or no previous run.", body = ErrorBody),
        (status = 401, description = "Not signed in.", body = ErrorBody),
        (status = 403, description = "The role does not allow this.", body = ErrorBody),
        (status = 404, description = "No such pod or tenant.", body = ErrorBody),
        (status = 503, description = "The pod's node is not connected to this server replica.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/api/v1/tenants/{tenant}/pods/{name}/log")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id))]
pub async fn read_pod_log(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name) = path.into_inner();
    let scope = scope(&caller, Some(&tenant), Kind::Pod, Verb::Get)?;
    let options = LogOptions::try_from(query.into_inner())?;
    let output = pod_logs::pod_log(&state.objects, &state.tunnels, &scope.at(&name), &options)
        .await
        .map_err(log_error)?;
    Ok(text_stream(output.map(|chunk| {
        chunk
            .map(Bytes::from)
            .map_err(|e| actix_web::error::ErrorServiceUnavailable(e.to_string()))
    })))
}

/// The output of every pod of a Deployment (of all its ReplicaSets), each
/// line prefixed `[pod/NAME/CONTAINER] `; every container unless
/// `container` names one. Pods not started yet are left out; with
/// `follow`, they join when they start, as do new pods.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/deployments/{name}/log",
    operation_id = "read_deployment_log",
    tag = "deployments",
    params(
        ("tenant" = String, Path, description = "The tenant."),
        ("name" = String, Path, description = "The Deployment's name.", example = "web"),
        LogQuery,
    ),
    responses(
        (status = 200, description = "The prefixed lines, streamed (chunked).", content_type = "text/plain", body = String),
        (status = 400, description = "The query is invalid.", body = ErrorBody),
        (status = 401, description = "Not signed in.", body = ErrorBody),
        (status = 403, description = "The role does not allow this.", body = ErrorBody),
        (status = 404, description = "No such Deployment or tenant.", body = ErrorBody),
        (status = 503, description = "A pod's node is not connected to this server replica.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/api/v1/tenants/{tenant}/deployments/{name}/log")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id))]
pub async fn read_deployment_log(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name) = path.into_inner();
    // Reading logs is reading pods; the Deployment is only how they are
    // found, and must be visible too.
    scope(&caller, Some(&tenant), Kind::Deployment, Verb::Get)?;
    let pods = scope(&caller, Some(&tenant), Kind::Pod, Verb::Get)?;
    let options = LogOptions::try_from(query.into_inner())?;
    let at = crate::objects::ObjectRef {
        kind: Kind::Deployment,
        tenant: pods.at(&name).tenant,
        name,
    };
    let lines = pod_logs::deployment_log(&state.objects, &state.tunnels, &at, &options)
        .await
        .map_err(log_error)?;
    Ok(text_stream(
        lines.map(|line| Ok::<_, actix_web::Error>(Bytes::from(line))),
    ))
}
