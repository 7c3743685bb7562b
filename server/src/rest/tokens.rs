//! `/api/v1/tokens`: API tokens, for scripts and CI. A token acts for its
//! maker in one tenant with a role no higher than the maker's; its secret is
//! shown once, at creation, and stored only as a hash.

use actix_web::{HttpResponse, delete, get, post, web};

use super::caller::Caller;
use super::error::{ApiError, Detail, ErrorBody, allowed};
use super::tenants::{may_grant, timestamp};
use crate::auth::{self, API_TOKEN_PREFIX, Role};
use crate::authz::{Decision, Target, Verb, authorize};
use crate::rest::state::AppState;
use crate::store::identity::{ApiToken, NewApiToken};

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create_token, list_tokens, revoke_token),
    components(schemas(CreateTokenRequest, CreatedToken, TokenInfo, TokenList, ErrorBody))
)]
pub struct TokensApi;

/// The longest token name accepted (also of node join tokens).
pub(super) const MAX_NAME_CHARS: usize = 100;
/// The shortest lifetime a token may be given (also a node join token).
pub(super) const MIN_EXPIRES_IN_SECONDS: u64 = 60;
/// The longest lifetime a token may be given (ten years), also a node join
/// token; without a lifetime it never expires.
pub(super) const MAX_EXPIRES_IN_SECONDS: u64 = 10 * 366 * 24 * 3600;

/// `POST /tokens`'s body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateTokenRequest {
    /// The one tenant the token acts in.
    #[schema(example = "acme")]
    tenant: String,
    /// Its role there: `owner`, `admin`, `editor` or `viewer`, no higher than
    /// the caller's own.
    #[schema(example = "editor")]
    role: String,
    /// What it is for, 1 to 100 characters.
    #[schema(example = "ci deploys")]
    name: String,
    /// Seconds until it stops working, at least 60; none: never.
    expires_in_seconds: Option<u64>,
}

/// A token just made, with its secret: the only time it is shown.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    /// The token's id (for revoking it).
    id: i64,
    /// What it is for.
    name: String,
    /// The tenant it acts in.
    tenant: String,
    /// Its role there.
    role: String,
    /// The secret, `berth_…`: send it as `Authorization: Bearer <token>`.
    token: String,
    /// When it was made (RFC 3339).
    created_at: String,
    /// When it stops working (RFC 3339); `null`: never.
    expires_at: Option<String>,
}

/// A token as lists show it: never its secret.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// The token's id.
    id: i64,
    /// What it is for.
    name: String,
    /// The tenant it acts in.
    tenant: String,
    /// Its role there.
    role: String,
    /// The user it acts for (its maker).
    user_id: i64,
    /// When it was made (RFC 3339).
    created_at: String,
    /// When it stops working (RFC 3339); `null`: never.
    expires_at: Option<String>,
    /// Whether it was revoked.
    revoked: bool,
}

impl From<ApiToken> for TokenInfo {
    fn from(token: ApiToken) -> Self {
        TokenInfo {
            id: token.id,
            name: token.name,
            tenant: token.tenant,
            role: token.role,
            user_id: token.user_id,
            created_at: timestamp(token.created_at_ms),
            expires_at: token.expires_at_ms.map(timestamp),
            revoked: token.revoked,
        }
    }
}

/// A tenant's tokens.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TokenList {
    /// Newest first, revoked ones included.
    items: Vec<TokenInfo>,
}

/// `GET /tokens`'s query.
#[derive(Debug, serde::Deserialize)]
pub struct TokenListQuery {
    /// Whose tokens.
    tenant: Option<String>,
}

/// Mounts these routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(create_token)
        .service(list_tokens)
        .service(revoke_token);
}

/// What is wrong with a new token's fields, each with its field; the role
/// when it is known.
fn token_problems(request: &CreateTokenRequest) -> (Option<Role>, Vec<Detail>) {
    let mut problems = Vec::new();
    let role = Role::parse(&request.role);
    if role.is_none() {
        problems.push(Detail {
            field: "role".into(),
            reason: "must be one of owner, admin, editor, viewer".into(),
        });
    }
    let name_chars = request.name.chars().count();
    if request.name.trim().is_empty() || name_chars > MAX_NAME_CHARS {
        problems.push(Detail {
            field: "name".into(),
            reason: format!("must be 1 to {MAX_NAME_CHARS} characters, not only spaces"),
        });
    }
    if let Some(seconds) = request.expires_in_seconds
        && !(MIN_EXPIRES_IN_SECONDS..=MAX_EXPIRES_IN_SECONDS).contains(&seconds)
    {
        problems.push(Detail {
            field: "expiresInSeconds".into(),
            reason: format!(
                "must be between {MIN_EXPIRES_IN_SECONDS} and {MAX_EXPIRES_IN_SECONDS}; \
                 leave it out for a token that does not expire"
            ),
        });
    }
    (role, problems)
}

/// Makes an API token for a tenant (its admins and owners), with a role no
/// higher than the caller's there. The answer holds the secret, shown only
/// this once. API tokens cannot make tokens.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    operation_id = "create_token",
    tag = "tokens",
    request_body = CreateTokenRequest,
    responses(
        (status = 201, description = "Created; the secret is in `token`, shown only now", body = CreatedToken),
        (status = 400, description = "An unknown role, a bad name or lifetime", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin of the tenant, a role above the caller's, or the caller is itself an API token", body = ErrorBody),
        (status = 404, description = "No such tenant, or the caller is not a member", body = ErrorBody),
        (status = 413, description = "The body is larger than 1.5 MiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        (status = 500, description = "An unexpected failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/api/v1/tokens")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id, tenant = %body.tenant))]
pub async fn create_token(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = body.into_inner();
    let subject = &caller.subject;
    allowed(authorize(
        subject,
        Some(&request.tenant),
        Target::Tokens,
        Verb::Create,
    ))?;
    let (role, problems) = token_problems(&request);
    let Some(role) = role.filter(|_| problems.is_empty()) else {
        return Err(ApiError::invalid(
            "the token cannot be made as asked",
            problems,
        ));
    };
    may_grant(subject, &request.tenant, role, "make a token with the role")?;
    if state.store.tenant(&request.tenant).await?.is_none() {
        return Err(ApiError::NotFound(format!("no tenant {}", request.tenant)));
    }
    let secret = format!("{API_TOKEN_PREFIX}{}", auth::new_token_secret());
    let expires_at_ms = request.expires_in_seconds.map(|seconds| {
        // Bounded above by MAX_EXPIRES_IN_SECONDS, so no overflow.
        chrono::Utc::now().timestamp_millis() + (seconds as i64) * 1000
    });
    let token = state
        .store
        .create_api_token(&NewApiToken {
            token_hash: &auth::hash_token_secret(&secret),
            name: &request.name,
            user_id: subject.user_id,
            tenant: &request.tenant,
            role: role.name(),
            expires_at_ms,
        })
        .await?;
    super::audit_routes::record(
        &state,
        super::audit_routes::who(&caller.subject),
        Some(&token.tenant),
        "create_token",
        Some("Token"),
        Some(&token.name),
        201,
        &caller.source,
    );
    Ok(HttpResponse::Created().json(CreatedToken {
        id: token.id,
        name: token.name,
        tenant: token.tenant,
        role: token.role,
        token: secret,
        created_at: timestamp(token.created_at_ms),
        expires_at: token.expires_at_ms.map(timestamp),
    }))
}

/// Lists a tenant's API tokens, without their secrets (its admins and
/// owners).
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    operation_id = "list_tokens",
    tag = "tokens",
    params(("tenant" = String, Query, description = "The tenant whose tokens to list")),
    responses(
        (status = 200, description = "The tenant's tokens, newest first", body = TokenList),
        (status = 400, description = "No tenant given", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin of the tenant", body = ErrorBody),
        (status = 404, description = "No such tenant, or the caller is not a member", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        (status = 500, description = "An unexpected failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/api/v1/tokens")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id, tenant = ?query.tenant))]
pub async fn list_tokens(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<TokenListQuery>,
) -> Result<HttpResponse, ApiError> {
    let Some(tenant) = query.into_inner().tenant else {
        return Err(ApiError::field("tenant", "name the tenant: ?tenant=NAME"));
    };
    allowed(authorize(
        &caller.subject,
        Some(&tenant),
        Target::Tokens,
        Verb::List,
    ))?;
    if state.store.tenant(&tenant).await?.is_none() {
        return Err(ApiError::NotFound(format!("no tenant {tenant}")));
    }
    let items = state
        .store
        .api_tokens(&tenant)
        .await?
        .into_iter()
        .map(TokenInfo::from)
        .collect();
    Ok(HttpResponse::Ok().json(TokenList { items }))
}

/// Revokes an API token (admins and owners of its tenant). Revoking a
/// revoked token succeeds again.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    operation_id = "revoke_token",
    tag = "tokens",
    params(("id" = i64, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an admin of the token's tenant", body = ErrorBody),
        (status = 404, description = "No such token, or one of a tenant the caller is not a member of", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        (status = 500, description = "An unexpected failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[delete("/api/v1/tokens/{id}")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id, token = %id))]
pub async fn revoke_token(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    // The same answer for a token that does not exist and one the caller may
    // not know of, so that ids cannot be probed.
    let no_such_token = || ApiError::NotFound(format!("no API token {id}"));
    let token_id: i64 = id.parse().map_err(|_| no_such_token())?;
    let token = state
        .store
        .api_token(token_id)
        .await?
        .ok_or_else(no_such_token)?;
    match authorize(
        &caller.subject,
        Some(&token.tenant),
        Target::Tokens,
        Verb::Delete,
    ) {
        Decision::Hidden => return Err(no_such_token()),
        decision => allowed(decision)?,
    }
    let newly_revoked = state.store.revoke_api_token(token.id).await?;
    if newly_revoked {
        super::audit_routes::record(
            &state,
            super::audit_routes::who(&caller.subject),
            Some(&token.tenant),
            "revoke_token",
            Some("Token"),
            Some(&token.name),
            204,
            &caller.source,
        );
    }
    tracing::info!(token = token.id, newly_revoked, "API token revoked");
    Ok(HttpResponse::NoContent().finish())
}
