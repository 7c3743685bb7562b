//! The object endpoints, one set for every kind:
//! `/api/v1/tenants/{tenant}/{plural}[/{name}[/status]]`, the
//! cluster-scoped `/api/v1/nodes[/{name}[/status]]`, and
//! `POST /api/v1/tenants/{tenant}/apply`.
//!
//! Each handler parses the request, asks [`authorize`] and calls
//! [`Objects`]; it decides nothing about access or storage itself.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use berth_api::labels::Selector;
use berth_api::objects::Kind;
use serde_json::{Value, json};

use super::body::{self, Format};
use super::caller::Caller;
use super::error::{ApiError, Detail, allowed};
use super::watch;
use crate::authz::{Target, Verb, authorize};
use crate::objects::{DeleteOptions, ObjectError, ObjectRef, Outcome, Propagation, SecretValues};
use crate::rest::state::AppState;

/// Mounts the object endpoints. `apply` comes first so that it is not taken
/// for a kind.
pub fn configure(config: &mut web::ServiceConfig) {
    config.route("/api/v1/tenants/{tenant}/apply", web::post().to(apply));
    for base in [
        "/api/v1/tenants/{tenant}/{plural}",
        "/api/v1/{plural:nodes}",
    ] {
        config
            .route(base, web::get().to(list))
            .route(base, web::post().to(create))
            .route(&format!("{base}/{{name}}"), web::get().to(get))
            .route(&format!("{base}/{{name}}"), web::put().to(replace))
            .route(&format!("{base}/{{name}}"), web::patch().to(patch))
            .route(&format!("{base}/{{name}}"), web::delete().to(delete))
            .route(
                &format!("{base}/{{name}}/status"),
                web::put().to(replace_status),
            );
    }
}

/// Where a request points: the kind (from the path's plural), the tenant
/// (absent for cluster-scoped kinds) and, below a collection, the name.
pub struct Place {
    kind: Kind,
    tenant: Option<String>,
    name: String,
}

impl actix_web::FromRequest for Place {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Place, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let info = request.match_info();
        let tenant = info.get("tenant").map(str::to_owned);
        let place =
            kind_of(info.get("plural").unwrap_or_default(), tenant.is_some()).map(|kind| Place {
                kind,
                tenant,
                name: info.get("name").unwrap_or_default().to_owned(),
            });
        std::future::ready(place)
    }
}

/// An [`ObjectError`] as the API answers it.
pub fn object_error(error: ObjectError) -> ApiError {
    match error {
        ObjectError::Invalid { kind, errors } => {
            let details: Vec<Detail> = errors
                .into_iter()
                .map(|e| Detail {
                    field: e.field,
                    reason: e.reason,
                })
                .collect();
            let summary = details
                .iter()
                .map(|d| format!("{}: {}", d.field, d.reason))
                .collect::<Vec<_>>()
                .join("; ");
            ApiError::invalid(format!("{kind} is invalid: {summary}"), details)
        }
        ObjectError::Forbidden { ref violations, .. } => ApiError::PolicyViolation {
            details: violation_details(violations),
            message: error.to_string(),
        },
        ObjectError::Taken { ref errors, .. } => ApiError::Taken {
            details: details_of(errors),
            message: error.to_string(),
        },
        ObjectError::Unprocessable { ref errors, .. } => ApiError::Unprocessable {
            details: details_of(errors),
            message: error.to_string(),
        },
        ObjectError::NotFound { .. } => ApiError::NotFound(error.to_string()),
        ObjectError::AlreadyExists { .. } => ApiError::AlreadyExists(error.to_string()),
        ObjectError::Conflict(message) => ApiError::Conflict(message),
        ObjectError::Gone(message) => ApiError::Gone(message),
        ObjectError::Sealing(message) => ApiError::Internal(message),
        // Only fenced (control-plane) writers meet it; the REST API's are not.
        ObjectError::LostLeadership { .. } => ApiError::Unavailable(error.to_string()),
        ObjectError::Store(error) => error.into(),
    }
}

/// Field errors as the envelope's details.
fn details_of(errors: &[berth_api::objects::FieldError]) -> Vec<Detail> {
    errors
        .iter()
        .map(|e| Detail {
            field: e.field.clone(),
            reason: e.reason.clone(),
        })
        .collect()
}

/// Pod Security violations as the envelope's details: each offending
/// field with the check it fails (`hostPath volumes (volume "docker")`).
pub fn violation_details(violations: &[berth_api::pod_security::Violation]) -> Vec<Detail> {
    violations
        .iter()
        .flat_map(|violation| {
            violation.fields.iter().map(move |field| Detail {
                field: field.clone(),
                reason: violation.to_string(),
            })
        })
        .collect()
}

/// The kind a path's plural names; 404 otherwise.
fn kind_of(plural: &str, namespaced: bool) -> Result<Kind, ApiError> {
    match Kind::from_plural(plural) {
        Some(kind) if kind.namespaced() == namespaced => Ok(kind),
        _ => Err(ApiError::NotFound(format!(
            "there is no resource type {plural:?} here"
        ))),
    }
}

/// Where a request points, once its kind is known and access is allowed.
pub(super) struct Scope {
    kind: Kind,
    tenant: Option<String>,
    reveal: SecretValues,
}

impl Scope {
    /// The object `name` of this kind in this tenant.
    pub(super) fn at(&self, name: &str) -> ObjectRef {
        ObjectRef {
            kind: self.kind,
            tenant: self.tenant.clone(),
            name: name.to_owned(),
        }
    }
}

/// Asks [`authorize`] whether the caller may do `verb` to `kind` in
/// `tenant`; the scope of the request when they may.
pub(super) fn scope(
    caller: &Caller,
    tenant: Option<&str>,
    kind: Kind,
    verb: Verb,
) -> Result<Scope, ApiError> {
    allowed(authorize(
        &caller.subject,
        tenant,
        Target::Object(kind),
        verb,
    ))?;
    let reveal = if kind == Kind::Secret
        && authorize(&caller.subject, tenant, Target::Object(kind), Verb::Reveal).allowed()
    {
        SecretValues::Reveal
    } else {
        SecretValues::Redact
    };
    Ok(Scope {
        kind,
        tenant: tenant.map(str::to_owned),
        reveal,
    })
}

fn audit(state: &AppState, caller: &Caller, scope: &Scope, verb: &str, name: &str, code: u16) {
    super::audit_routes::record(
        state,
        super::audit_routes::who(&caller.subject),
        scope.tenant.as_deref(),
        verb,
        Some(scope.kind.name()),
        Some(name),
        code,
        &caller.source,
    );
}

/// Answers `result` and records it in the audit log, success or not.
pub(super) fn audited(
    state: &AppState,
    caller: &Caller,
    scope: &Scope,
    verb: &str,
    name: &str,
    result: Result<HttpResponse, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let code = match &result {
        Ok(response) => response.status().as_u16(),
        Err(error) => actix_web::ResponseError::status_code(error).as_u16(),
    };
    audit(state, caller, scope, verb, name, code);
    result
}

/// The list query.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    label_selector: Option<String>,
    limit: Option<String>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
    watch: Option<String>,
    resource_version: Option<String>,
    timeout_seconds: Option<String>,
    /// Accepted for Kubernetes clients; bookmarks are always sent.
    #[serde(rename = "allowWatchBookmarks")]
    _allow_watch_bookmarks: Option<String>,
}

fn parse_number(field: &str, value: &Option<String>) -> Result<Option<i64>, ApiError> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| ApiError::field(field, format!("{text:?} is not a whole number ≥ 0"))),
    }
}

async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    place: Place,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (kind, tenant, query) = (place.kind, place.tenant.as_deref(), query.into_inner());
    let watching = matches!(query.watch.as_deref(), Some("true" | "1"));
    let scope = scope(
        &caller,
        tenant,
        kind,
        if watching { Verb::Watch } else { Verb::List },
    )?;
    let selector = match query.label_selector.as_deref() {
        Some(text) => {
            Selector::parse(text).map_err(|e| ApiError::field("labelSelector", e.reason))?
        }
        None => Selector::default(),
    };
    let limit = parse_number("limit", &query.limit)?.unwrap_or(0);
    let resource_version = parse_number("resourceVersion", &query.resource_version)?;
    if watching {
        let timeout = parse_number("timeoutSeconds", &query.timeout_seconds)?
            .map(|s| Duration::from_secs(s as u64));
        return watch::respond(
            state.objects.clone(),
            watch::WatchRequest {
                kind,
                tenant: scope.tenant.clone(),
                selector,
                after: resource_version.filter(|rv| *rv > 0),
                reveal: scope.reveal,
                bookmark_interval: state.watch_bookmark_interval,
                timeout,
            },
        )
        .await;
    }
    let page = state
        .objects
        .list(
            kind,
            scope.tenant.as_deref(),
            &selector,
            limit,
            query.continue_token.as_deref().filter(|c| !c.is_empty()),
            scope.reveal,
        )
        .await
        .map_err(object_error)?;
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(token) = page.continue_token {
        metadata["continue"] = json!(token);
    }
    Ok(HttpResponse::Ok().json(json!({
        "apiVersion": kind.api_version(),
        "kind": kind.list_kind(),
        "metadata": metadata,
        "items": page.items,
    })))
}

async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    place: Place,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (kind, tenant) = (place.kind, place.tenant.as_deref());
    let scope = scope(&caller, tenant, kind, Verb::Create)?;
    let mut value = body::read_object(&request, payload, &[Format::Json, Format::Yaml]).await?;
    let name = generate_name(&mut value);
    let result = async {
        let (_, decoded) = state
            .objects
            .decode(Some(kind), value)
            .map_err(object_error)?;
        let created = state
            .objects
            .create(kind, scope.tenant.as_deref(), decoded, scope.reveal)
            .await
            .map_err(object_error)?;
        Ok(HttpResponse::Created().json(created))
    }
    .await;
    audited(&state, &caller, &scope, "create", &name, result)
}

/// Fills `metadata.name` from `metadata.generateName` as Kubernetes does;
/// answers the name.
fn generate_name(object: &mut Value) -> String {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty()
        && let Some(base) = object["metadata"]["generateName"].as_str()
    {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let suffix: String = (0..5)
            .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
            .collect();
        let generated = format!("{base}{suffix}");
        object["metadata"]["name"] = json!(generated);
        return generated;
    }
    name.to_owned()
}

async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    place: Place,
) -> Result<HttpResponse, ApiError> {
    let (kind, tenant, name) = (place.kind, place.tenant.as_deref(), place.name.as_str());
    let scope = scope(&caller, tenant, kind, Verb::Get)?;
    let object = state
        .objects
        .get(&scope.at(name), scope.reveal)
        .await
        .map_err(object_error)?;
    Ok(HttpResponse::Ok().json(object))
}

async fn replace(
    state: web::Data<AppState>,
    caller: Caller,
    place: Place,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (kind, tenant, name) = (place.kind, place.tenant.as_deref(), place.name.as_str());
    let scope = scope(&caller, tenant, kind, Verb::Update)?;
    let result = async {
        let value = body::read_object(&request, payload, &[Format::Json, Format::Yaml]).await?;
        let resource_version = value["metadata"]["resourceVersion"].clone();
        let (_, mut decoded) = state
            .objects
            .decode(Some(kind), value)
            .map_err(object_error)?;
        // Decoding normalises; the precondition must survive it.
        if !resource_version.is_null() {
            decoded["metadata"]["resourceVersion"] = resource_version;
        }
        let (object, _) = state
            .objects
            .update(&scope.at(name), decoded, scope.reveal)
            .await
            .map_err(object_error)?;
        Ok(HttpResponse::Ok().json(object))
    }
    .await;
    audited(&state, &caller, &scope, "update", name, result)
}

async fn patch(
    state: web::Data<AppState>,
    caller: Caller,
    place: Place,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (kind, tenant, name) = (place.kind, place.tenant.as_deref(), place.name.as_str());
    let scope = scope(&caller, tenant, kind, Verb::Patch)?;
    let result = async {
        let patch =
            body::read_object(&request, payload, &[Format::MergePatch, Format::Json]).await?;
        let (object, _) = state
            .objects
            .patch(&scope.at(name), patch, scope.reveal)
            .await
            .map_err(object_error)?;
        Ok(HttpResponse::Ok().json(object))
    }
    .await;
    audited(&state, &caller, &scope, "patch", name, result)
}

/// The delete query.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteQuery {
    resource_version: Option<String>,
    propagation_policy: Option<String>,
    grace_period_seconds: Option<String>,
}

async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    place: Place,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let (kind, tenant, name) = (place.kind, place.tenant.as_deref(), place.name.as_str());
    let scope = scope(&caller, tenant, kind, Verb::Delete)?;
    let result = async {
        let expected = parse_number("resourceVersion", &query.resource_version)?;
        let propagation = match &query.propagation_policy {
            None => Propagation::Background,
            Some(text) => Propagation::parse(text)
                .map_err(|reason| ApiError::field("propagationPolicy", reason))?,
        };
        let grace_period_seconds = parse_number("gracePeriodSeconds", &query.grace_period_seconds)?;
        let options = DeleteOptions {
            propagation,
            grace_period_seconds,
        };
        let object = state
            .objects
            .delete(&scope.at(name), expected, scope.reveal, options)
            .await
            .map_err(object_error)?;
        Ok(HttpResponse::Ok().json(object))
    }
    .await;
    audited(&state, &caller, &scope, "delete", name, result)
}

async fn replace_status(
    state: web::Data<AppState>,
    caller: Caller,
    place: Place,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (kind, tenant, name) = (place.kind, place.tenant.as_deref(), place.name.as_str());
    let scope = scope(&caller, tenant, kind, Verb::UpdateStatus)?;
    let result = async {
        let value = body::read_object(&request, payload, &[Format::Json, Format::Yaml]).await?;
        let expected = match &value["metadata"]["resourceVersion"] {
            Value::String(rv) if !rv.is_empty() => Some(rv.parse().map_err(|_| {
                ApiError::field("metadata.resourceVersion", "not a resourceVersion")
            })?),
            _ => None,
        };
        let status = value.get("status").cloned().unwrap_or(json!({}));
        let object = state
            .objects
            .update_status(&scope.at(name), status, expected)
            .await
            .map_err(object_error)?;
        Ok(HttpResponse::Ok().json(object))
    }
    .await;
    audited(&state, &caller, &scope, "update_status", name, result)
}

/// One document's result in an apply.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResult {
    /// The document's position in the body, from 0.
    pub index: usize,
    /// Its kind, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Its name, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `created`, `configured`, `unchanged` or `failed`.
    pub action: String,
    /// The object's resourceVersion after the apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Why the document failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<super::error::ErrorInfo>,
}

/// The answer to an apply.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResponse {
    /// One result per document, in order.
    pub results: Vec<ApplyResult>,
    /// How many documents applied.
    pub applied: usize,
    /// How many failed.
    pub failed: usize,
}

/// `POST /tenants/{tenant}/apply`: creates or updates every document; one
/// failing document fails alone.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/apply",
    operation_id = "apply_objects",
    tag = "apply",
    params(("tenant" = String, Path, description = "The tenant.")),
    request_body(
        description = "One or more objects: a YAML stream (documents separated by ---), \
                       a JSON object, a JSON array, or a List.",
        content(
            (String = "application/yaml"),
            (Object = "application/json"),
        )
    ),
    responses(
        (status = 200, description = "A result per document, in order.", body = ApplyResponse),
        (status = 400, description = "The body cannot be split into documents.", body = super::error::ErrorBody),
        (status = 401, description = "Not signed in.", body = super::error::ErrorBody),
        (status = 404, description = "No such tenant, or not yours.", body = super::error::ErrorBody),
        (status = 413, description = "The body is larger than 1.5 MiB.", body = super::error::ErrorBody),
        (status = 415, description = "The body's Content-Type is not accepted.", body = super::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn apply(
    state: web::Data<AppState>,
    caller: Caller,
    request: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    // Membership first: a stranger learns nothing, not even per document.
    allowed(authorize(
        &caller.subject,
        Some(&tenant),
        Target::Object(Kind::ConfigMap),
        Verb::Get,
    ))?;
    let format = body::format_of(&request, &[Format::Json, Format::Yaml])?;
    let bytes = body::read(&request, payload).await?;
    let documents = body::parse_documents(&bytes, format)?;
    let mut results = Vec::with_capacity(documents.len());
    for (index, document) in documents.into_iter().enumerate() {
        results.push(apply_one(&state, &caller, &tenant, index, document).await);
    }
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    Ok(HttpResponse::Ok().json(ApplyResponse {
        applied: results.len() - failed,
        failed,
        results,
    }))
}

async fn apply_one(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
    index: usize,
    document: Result<Value, String>,
) -> ApplyResult {
    let kind_name = document
        .as_ref()
        .ok()
        .and_then(|d| d["kind"].as_str())
        .map(str::to_owned);
    let name = document
        .as_ref()
        .ok()
        .and_then(|d| d["metadata"]["name"].as_str())
        .map(str::to_owned);
    let failed = |error: ApiError| ApplyResult {
        index,
        kind: kind_name.clone(),
        name: name.clone(),
        action: "failed".into(),
        resource_version: None,
        error: Some(super::error::ErrorInfo {
            code: error.code().into(),
            message: error.to_string(),
            details: match error {
                ApiError::BadRequest { details, .. } => details,
                _ => vec![],
            },
        }),
    };
    let document = match document {
        Ok(document) => document,
        Err(reason) => return failed(ApiError::invalid(reason, vec![])),
    };
    let kind = match kind_name.as_deref().and_then(Kind::from_kind_name) {
        Some(kind) if kind.namespaced() => kind,
        Some(kind) => {
            return failed(ApiError::field(
                "kind",
                format!(
                    "{} is cluster-scoped and cannot be applied to a tenant",
                    kind.name()
                ),
            ));
        }
        None => {
            return failed(ApiError::field(
                "kind",
                format!(
                    "{:?} is not a kind Berth has",
                    kind_name.clone().unwrap_or_default()
                ),
            ));
        }
    };
    let (_, decoded) = match state.objects.decode(Some(kind), document) {
        Ok(decoded) => decoded,
        Err(error) => return failed(object_error(error)),
    };
    let name = decoded["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let exists = match scope(caller, Some(tenant), kind, Verb::Get) {
        Ok(scope) => match state
            .objects
            .get(&scope.at(&name), SecretValues::Redact)
            .await
        {
            Ok(_) => true,
            Err(ObjectError::NotFound { .. }) => false,
            Err(error) => return failed(object_error(error)),
        },
        Err(error) => return failed(error),
    };
    let verb = if exists { Verb::Update } else { Verb::Create };
    let scope = match scope(caller, Some(tenant), kind, verb) {
        Ok(scope) => scope,
        Err(error) => return failed(error),
    };
    let outcome = if exists {
        state
            .objects
            .update(&scope.at(&name), decoded, scope.reveal)
            .await
    } else {
        state
            .objects
            .create(kind, Some(tenant), decoded, scope.reveal)
            .await
            .map(|object| (object, Outcome::Created))
    }
    .map_err(object_error);
    let code = match &outcome {
        Ok((_, Outcome::Created)) => 201,
        Ok(_) => 200,
        Err(error) => actix_web::ResponseError::status_code(error).as_u16(),
    };
    if !matches!(outcome, Ok((_, Outcome::Unchanged))) {
        audit(
            state,
            caller,
            &scope,
            if exists { "update" } else { "create" },
            &name,
            code,
        );
    }
    match outcome {
        Ok((object, outcome)) => ApplyResult {
            index,
            kind: Some(kind.name().into()),
            name: Some(name),
            action: match outcome {
                Outcome::Created => "created",
                Outcome::Updated => "configured",
                Outcome::Unchanged => "unchanged",
            }
            .into(),
            resource_version: object["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_owned),
            error: None,
        },
        Err(error) => failed(error),
    }
}
