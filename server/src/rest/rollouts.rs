//! The workload subresources, as `kubectl scale` and `kubectl rollout`
//! use them:
//! - `GET|PUT /api/v1/tenants/{tenant}/{deployments|replicasets}/{name}/scale`:
//!   the `autoscaling/v1` `Scale`; a PUT changes only `spec.replicas`;
//! - `POST /api/v1/tenants/{tenant}/deployments/{name}/rollback`
//!   (`{"revision": N}`; none or 0: the previous revision);
//! - `GET /api/v1/tenants/{tenant}/deployments/{name}/revisions`.
//!
//! Reading needs `get` of the owner's kind, changing needs `update`; the
//! work is [`crate::rollouts`]'.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use berth_api::objects::rollout::{DeploymentRevisionList, RollbackRequest};
use berth_api::objects::scale::decode_scale_change;
use berth_api::objects::{Deployment, FieldError, Kind};
use serde_json::json;

use super::body::{self, Format};
use super::caller::Caller;
use super::error::{ApiError, Detail, ErrorBody};
use super::resources::{audited, object_error, scope};
use crate::authz::Verb;
use crate::objects::ObjectError;
use crate::rest::state::AppState;
use crate::rollouts::{self, RolloutError};

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(rollback_deployment, list_deployment_revisions),
    components(schemas(ErrorBody))
)]
pub struct RolloutsApi;

/// Mounts these routes.
pub fn configure(config: &mut web::ServiceConfig) {
    let scale = "/api/v1/tenants/{tenant}/{plural}/{name}/scale";
    config
        .route(scale, web::get().to(get_scale))
        .route(scale, web::put().to(update_scale))
        .service(rollback_deployment)
        .service(list_deployment_revisions);
}

/// A [`RolloutError`] as the API answers it.
fn rollout_error(error: RolloutError) -> ApiError {
    match error {
        RolloutError::Object(error) => object_error(error),
        RolloutError::UidMismatch { .. } | RolloutError::Paused { .. } => {
            ApiError::Conflict(error.to_string())
        }
        RolloutError::RevisionNotFound { .. } | RolloutError::NoPreviousRevision { .. } => {
            let message = error.to_string();
            ApiError::invalid(
                message.clone(),
                vec![Detail {
                    field: "revision".into(),
                    reason: message,
                }],
            )
        }
        RolloutError::Unreadable { .. } => ApiError::Internal(error.to_string()),
    }
}

/// Problems with a request body, as the API answers them.
fn invalid(kind: &str, errors: Vec<FieldError>) -> ApiError {
    object_error(ObjectError::Invalid {
        kind: kind.into(),
        errors,
    })
}

/// The scalable kind a path's plural names; 404 otherwise.
fn scalable(plural: &str) -> Result<Kind, ApiError> {
    Kind::from_plural(plural)
        .filter(|kind| kind.has_scale())
        .ok_or_else(|| ApiError::NotFound(format!("{plural:?} have no scale subresource")))
}

/// `GET .../{deployments|replicasets}/{name}/scale`: `spec.replicas`, the
/// pods the owner has and its selector as a string. Its OpenAPI
/// description is generated per kind (`get_deployment_scale`).
async fn get_scale(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, plural, name) = path.into_inner();
    let scope = scope(&caller, Some(&tenant), scalable(&plural)?, Verb::Get)?;
    let scale = rollouts::scale(&state.objects, &scope.at(&name))
        .await
        .map_err(rollout_error)?;
    Ok(HttpResponse::Ok().json(scale))
}

/// `PUT .../{deployments|replicasets}/{name}/scale`: sets `spec.replicas`
/// and nothing else, as a PATCH would; a `metadata.resourceVersion` or
/// `metadata.uid` in the body is a precondition. Its OpenAPI description
/// is generated per kind (`update_deployment_scale`).
async fn update_scale(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (tenant, plural, name) = path.into_inner();
    let scope = scope(&caller, Some(&tenant), scalable(&plural)?, Verb::Update)?;
    let result = async {
        let value = body::read_object(&request, payload, &[Format::Json, Format::Yaml]).await?;
        let change = decode_scale_change(&name, value).map_err(|e| invalid("Scale", e))?;
        let (scale, _) = rollouts::set_scale(&state.objects, &scope.at(&name), change)
            .await
            .map_err(rollout_error)?;
        Ok(HttpResponse::Ok().json(scale))
    }
    .await;
    audited(&state, &caller, &scope, "update_scale", &name, result)
}

/// Rolls a Deployment back to the template of an earlier revision (none or
/// 0: the one before the current), which starts a rollout to it; that
/// revision's ReplicaSet becomes the newest revision. An unknown revision,
/// or no previous one, changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/deployments/{name}/rollback",
    operation_id = "rollback_deployment",
    tag = "deployments",
    params(
        ("tenant" = String, Path, description = "The tenant."),
        ("name" = String, Path, description = "The Deployment's name.", example = "web"),
    ),
    request_body(
        description = "The revision to go back to; an empty body goes back one revision.",
        content(
            (RollbackRequest = "application/json", example = json!({"revision": 1})),
            (RollbackRequest = "application/yaml"),
        )
    ),
    responses(
        (status = 200, description = "The Deployment with the revision's template.", body = Deployment),
        (status = 400, description = "The body is invalid, the revision does not exist, or there is no previous revision.", body = ErrorBody),
        (status = 401, description = "Not signed in.", body = ErrorBody),
        (status = 403, description = "The role does not allow this.", body = ErrorBody),
        (status = 404, description = "No such Deployment or tenant.", body = ErrorBody),
        (status = 409, description = "The Deployment is paused, or kept changing.", body = ErrorBody),
        (status = 413, description = "The body is larger than 1.5 MiB.", body = ErrorBody),
        (status = 415, description = "The body's Content-Type is not accepted.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/api/v1/tenants/{tenant}/deployments/{name}/rollback")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id))]
pub async fn rollback_deployment(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name) = path.into_inner();
    let scope = scope(&caller, Some(&tenant), Kind::Deployment, Verb::Update)?;
    let result = async {
        let bytes = body::read(&request, payload).await?;
        let value = if bytes.trim_ascii().is_empty() {
            json!({})
        } else {
            let format = body::format_of(&request, &[Format::Json, Format::Yaml])?;
            body::parse_object(&bytes, format)?
        };
        let revision =
            RollbackRequest::decode(value).map_err(|e| invalid("rollback request", e))?;
        let (deployment, _) = rollouts::rollback(&state.objects, &scope.at(&name), revision)
            .await
            .map_err(rollout_error)?;
        Ok(HttpResponse::Ok().json(deployment))
    }
    .await;
    audited(&state, &caller, &scope, "rollback", &name, result)
}

/// A Deployment's revisions, one per ReplicaSet it owns, oldest first;
/// `current` marks the one its template is.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/deployments/{name}/revisions",
    operation_id = "list_deployment_revisions",
    tag = "deployments",
    params(
        ("tenant" = String, Path, description = "The tenant."),
        ("name" = String, Path, description = "The Deployment's name.", example = "web"),
    ),
    responses(
        (status = 200, description = "The revisions, ascending.", body = DeploymentRevisionList),
        (status = 401, description = "Not signed in.", body = ErrorBody),
        (status = 403, description = "The role does not allow this.", body = ErrorBody),
        (status = 404, description = "No such Deployment or tenant.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/api/v1/tenants/{tenant}/deployments/{name}/revisions")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id))]
pub async fn list_deployment_revisions(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, name) = path.into_inner();
    let scope = scope(&caller, Some(&tenant), Kind::Deployment, Verb::Get)?;
    let revisions = rollouts::revisions(&state.objects, &scope.at(&name))
        .await
        .map_err(rollout_error)?;
    Ok(HttpResponse::Ok().json(revisions))
}
