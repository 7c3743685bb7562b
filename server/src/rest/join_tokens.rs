//! `/api/v1/nodes/join-tokens`: the join tokens agents register with
//! (`berth agent --token`), for the platform admin alone. A token's secret
//! is shown once, when it is made, and stored only as a hash; revoking one
//! stops new registrations with it, while nodes registered with it keep
//! their credentials.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use berth_api::objects::{FieldError, from_value};

use super::body::{self, Format};
use super::caller::Caller;
use super::error::{ApiError, Detail, ErrorBody, allowed};
use super::tenants::timestamp;
use super::tokens::{MAX_EXPIRES_IN_SECONDS, MAX_NAME_CHARS, MIN_EXPIRES_IN_SECONDS};
use crate::authz::{Target, Verb, authorize};
use crate::node_api::credentials::create_join_token as make_join_token;
use crate::rest::state::AppState;
use crate::store::nodes::JoinToken;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create_join_token, list_join_tokens, revoke_join_token),
    components(schemas(
        CreateJoinTokenRequest,
        CreatedJoinToken,
        JoinTokenInfo,
        JoinTokenList,
        ErrorBody
    ))
)]
pub struct JoinTokensApi;

/// Mounts these routes. They must come before the node object routes,
/// which would take `join-tokens` for a node's name.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(create_join_token)
        .service(list_join_tokens)
        .service(revoke_join_token);
}

/// `POST /nodes/join-tokens`'s body; an empty body takes every default.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct CreateJoinTokenRequest {
    /// What it is for, at most 100 characters.
    #[schema(example = "rack 7")]
    description: String,
    /// Seconds until it stops working, from 60 to ten years; none: never.
    ttl_seconds: Option<u64>,
}

/// A join token just made, with its secret: the only time it is shown.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedJoinToken {
    /// The token's id (for revoking it).
    id: i64,
    /// What it is for.
    description: String,
    /// The secret, `bjoin_…`: pass it to `berth agent --token`.
    token: String,
    /// When it was made (RFC 3339).
    #[schema(format = DateTime)]
    created_at: String,
    /// When it stops working (RFC 3339); `null`: never.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

/// A join token as lists show it: never its secret.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinTokenInfo {
    /// The token's id.
    id: i64,
    /// What it is for (`bootstrap`: the one in `<data-dir>/node-token`).
    description: String,
    /// When it was made (RFC 3339).
    #[schema(format = DateTime)]
    created_at: String,
    /// When it stops working (RFC 3339); `null`: never.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// Whether it was revoked.
    revoked: bool,
}

impl From<JoinToken> for JoinTokenInfo {
    fn from(token: JoinToken) -> Self {
        JoinTokenInfo {
            id: token.id,
            description: token.name,
            created_at: timestamp(token.created_at_ms),
            expires_at: token.expires_at_ms.map(timestamp),
            revoked: token.revoked,
        }
    }
}

/// Every join token.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct JoinTokenList {
    /// Newest first, revoked and expired ones included.
    items: Vec<JoinTokenInfo>,
}

/// What is wrong with a new join token's fields, each with its field.
fn join_token_problems(request: &CreateJoinTokenRequest) -> Vec<FieldError> {
    let mut problems = Vec::new();
    if request.description.chars().count() > MAX_NAME_CHARS {
        problems.push(FieldError::new(
            "description",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if let Some(seconds) = request.ttl_seconds
        && !(MIN_EXPIRES_IN_SECONDS..=MAX_EXPIRES_IN_SECONDS).contains(&seconds)
    {
        problems.push(FieldError::new(
            "ttlSeconds",
            format!(
                "must be between {MIN_EXPIRES_IN_SECONDS} and {MAX_EXPIRES_IN_SECONDS}; \
                 leave it out for a token that does not expire"
            ),
        ));
    }
    problems
}

/// The body of a create: empty (every default), or a JSON or YAML object
/// read strictly.
async fn read_request(
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<CreateJoinTokenRequest, ApiError> {
    let bytes = body::read(request, payload).await?;
    if bytes.trim_ascii().is_empty() {
        return Ok(CreateJoinTokenRequest::default());
    }
    let format = body::format_of(request, &[Format::Json, Format::Yaml])?;
    let value = body::parse_object(&bytes, format)?;
    let parsed: CreateJoinTokenRequest = from_value(value).map_err(refused)?;
    match join_token_problems(&parsed) {
        problems if problems.is_empty() => Ok(parsed),
        problems => Err(refused(problems)),
    }
}

fn refused(problems: Vec<FieldError>) -> ApiError {
    let summary = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    ApiError::invalid(
        format!("the join token cannot be made as asked: {summary}"),
        problems
            .into_iter()
            .map(|p| Detail {
                field: p.field,
                reason: p.reason,
            })
            .collect(),
    )
}

fn audit(state: &AppState, caller: &Caller, verb: &str, id: i64, code: u16) {
    super::audit_routes::record(
        state,
        super::audit_routes::who(&caller.subject),
        None,
        verb,
        Some(Target::NodeJoinTokens.name()),
        Some(&id.to_string()),
        code,
        &caller.source,
    );
}

/// Makes a join token (the platform admin). The answer holds the secret,
/// shown only this once.
#[utoipa::path(
    post,
    path = "/api/v1/nodes/join-tokens",
    operation_id = "create_join_token",
    tag = "nodes",
    request_body(
        description = "What the token is for and how long it works; an empty body makes one that never expires.",
        content(
            (CreateJoinTokenRequest = "application/json", example = json!({"description": "rack 7", "ttlSeconds": 3600})),
            (CreateJoinTokenRequest = "application/yaml"),
        )
    ),
    responses(
        (status = 201, description = "Created; the secret is in `token`, shown only now.", body = CreatedJoinToken),
        (status = 400, description = "A bad description or lifetime, or an unknown field.", body = ErrorBody),
        (status = 401, description = "Not signed in.", body = ErrorBody),
        (status = 403, description = "Not the platform admin.", body = ErrorBody),
        (status = 413, description = "The body is larger than 1.5 MiB.", body = ErrorBody),
        (status = 415, description = "The body is neither JSON nor YAML.", body = ErrorBody),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
        (status = 500, description = "An unexpected failure.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/api/v1/nodes/join-tokens")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id))]
pub async fn create_join_token(
    state: web::Data<AppState>,
    caller: Caller,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    allowed(authorize(
        &caller.subject,
        None,
        Target::NodeJoinTokens,
        Verb::Create,
    ))?;
    let asked = read_request(&request, payload).await?;
    let expires_at_ms = asked.ttl_seconds.map(|seconds| {
        // Bounded above by MAX_EXPIRES_IN_SECONDS, so no overflow.
        chrono::Utc::now().timestamp_millis() + (seconds as i64) * 1000
    });
    let (secret, token) = make_join_token(&state.store, &asked.description, expires_at_ms).await?;
    audit(&state, &caller, "create", token.id, 201);
    tracing::info!(token = token.id, "node join token created");
    Ok(HttpResponse::Created().json(CreatedJoinToken {
        id: token.id,
        description: token.name,
        token: secret,
        created_at: timestamp(token.created_at_ms),
        expires_at: token.expires_at_ms.map(timestamp),
    }))
}

/// Lists every join token, without secrets (the platform admin).
#[utoipa::path(
    get,
    path = "/api/v1/nodes/join-tokens",
    operation_id = "list_join_tokens",
    tag = "nodes",
    responses(
        (status = 200, description = "Every join token, newest first.", body = JoinTokenList),
        (status = 401, description = "Not signed in.", body = ErrorBody),
        (status = 403, description = "Not the platform admin.", body = ErrorBody),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
        (status = 500, description = "An unexpected failure.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/api/v1/nodes/join-tokens")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id))]
pub async fn list_join_tokens(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    allowed(authorize(
        &caller.subject,
        None,
        Target::NodeJoinTokens,
        Verb::List,
    ))?;
    let items = state
        .store
        .join_tokens()
        .await?
        .into_iter()
        .map(JoinTokenInfo::from)
        .collect();
    Ok(HttpResponse::Ok().json(JoinTokenList { items }))
}

/// Revokes a join token (the platform admin): agents can no longer
/// register with it; nodes that did keep working. Revoking a revoked token
/// succeeds again.
#[utoipa::path(
    delete,
    path = "/api/v1/nodes/join-tokens/{id}",
    operation_id = "revoke_join_token",
    tag = "nodes",
    params(("id" = i64, Path, description = "The token's id.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 401, description = "Not signed in.", body = ErrorBody),
        (status = 403, description = "Not the platform admin.", body = ErrorBody),
        (status = 404, description = "No such join token.", body = ErrorBody),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
        (status = 500, description = "An unexpected failure.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[delete("/api/v1/nodes/join-tokens/{id}")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id, token = %id))]
pub async fn revoke_join_token(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    allowed(authorize(
        &caller.subject,
        None,
        Target::NodeJoinTokens,
        Verb::Delete,
    ))?;
    let id = id.into_inner();
    let no_such_token = || ApiError::NotFound(format!("no node join token {id}"));
    let token_id: i64 = id.parse().map_err(|_| no_such_token())?;
    if state.store.revoke_join_token(token_id).await? {
        audit(&state, &caller, "revoke", token_id, 204);
        tracing::info!(token = token_id, "node join token revoked");
    } else if !state
        .store
        .join_tokens()
        .await?
        .iter()
        .any(|token| token.id == token_id)
    {
        return Err(no_such_token());
    }
    Ok(HttpResponse::NoContent().finish())
}
