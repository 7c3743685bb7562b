//! `POST /api/v1/auth/login`, `/auth/refresh` and `/auth/logout`: short-lived
//! access tokens and long-lived, sliding, revocable refresh tokens.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, post, web};

use super::error::ApiError;
use crate::auth;
use crate::rest::state::AppState;
use crate::sign_in::{self, SignInError};
use crate::store::identity::User;

/// How long a refresh token lives; each use replaces it with a new one.
const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// `POST /auth/login`'s body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The account's email.
    email: String,
    /// Its password.
    password: String,
}

/// `POST /auth/refresh` and `/auth/logout`'s body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token of a session.
    refresh_token: String,
}

/// A signed-in session.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// The access token: send it as `Authorization: Bearer <token>`.
    token: String,
    /// When the access token expires (RFC 3339).
    expires_at: String,
    /// Trades for a new session at `/auth/refresh`; spent on use.
    refresh_token: String,
}

fn hash_refresh_token(token: &str) -> String {
    auth::hash_token_secret(token)
}

/// A new access token and a new refresh token for `user`.
async fn new_session(state: &AppState, user: &User) -> Result<Session, ApiError> {
    let token = state
        .tokens
        .issue(user)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let refresh_token = auth::new_token_secret();
    let expires =
        chrono::Utc::now() + chrono::Duration::from_std(REFRESH_TOKEN_TTL).unwrap_or_default();
    state
        .store
        .create_refresh_token(
            &hash_refresh_token(&refresh_token),
            user.id,
            expires.timestamp_millis(),
        )
        .await?;
    let access_expires =
        chrono::Utc::now() + chrono::Duration::from_std(state.tokens.ttl()).unwrap_or_default();
    Ok(Session {
        token,
        expires_at: access_expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        refresh_token,
    })
}

/// Signs in with email and password. The answer never tells whether the
/// email exists; repeated failures are slowed, then refused for a while.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    operation_id = "login_user",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in.", body = Session),
        (status = 400, description = "The body is invalid.", body = super::error::ErrorBody),
        (status = 401, description = "Wrong email or password.", body = super::error::ErrorBody),
        (status = 415, description = "The body is not JSON.", body = super::error::ErrorBody),
        (status = 429, description = "Too many failed sign-ins; see Retry-After.", body = super::error::ErrorBody),
    )
)]
#[post("/api/v1/auth/login")]
#[tracing::instrument(skip_all)]
pub async fn login(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { email, password } = body.into_inner();
    if email.is_empty() {
        return Err(ApiError::field("email", "must not be empty"));
    }
    let address = request
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let user = sign_in_recorded(&state, &email, &password, &address).await?;
    Ok(HttpResponse::Ok().json(new_session(&state, &user).await?))
}

/// Checks an email and password (throttled, see [`sign_in::sign_in`]) and
/// records the attempt in the audit log; the REST login and the dashboard's
/// sign-in page both go through here.
pub async fn sign_in_recorded(
    state: &AppState,
    email: &str,
    password: &str,
    address: &str,
) -> Result<User, ApiError> {
    let user = match sign_in::sign_in(&state.store, email, password, address).await {
        Ok(user) => user,
        Err(SignInError::BadCredentials) => {
            super::audit_routes::record(
                state,
                None,
                None,
                "login",
                Some("User"),
                Some(email),
                401,
                address,
            );
            return Err(ApiError::Unauthorized("wrong email or password".into()));
        }
        Err(SignInError::Locked { retry_after }) => {
            return Err(ApiError::TooManyRequests {
                retry_after_secs: retry_after.as_secs().max(1),
            });
        }
        Err(SignInError::Store(error)) => return Err(error.into()),
        Err(SignInError::Unexpected(error)) => return Err(ApiError::Internal(error)),
    };
    super::audit_routes::record(
        state,
        Some((user.id, &user.email)),
        None,
        "login",
        Some("User"),
        Some(&user.email),
        200,
        address,
    );
    Ok(user)
}

/// Trades a refresh token for a new session; the old refresh token is spent.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    operation_id = "refresh_session",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new session; the refresh token is spent.", body = Session),
        (status = 400, description = "The body is invalid.", body = super::error::ErrorBody),
        (status = 401, description = "The refresh token is unknown, expired or revoked.", body = super::error::ErrorBody),
        (status = 415, description = "The body is not JSON.", body = super::error::ErrorBody),
    )
)]
#[post("/api/v1/auth/refresh")]
#[tracing::instrument(skip_all)]
pub async fn refresh(
    state: web::Data<AppState>,
    body: web::Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let refused =
        || ApiError::Unauthorized("the refresh token is unknown, expired or revoked".into());
    let user_id = state
        .store
        .spend_refresh_token(&hash_refresh_token(&body.refresh_token))
        .await?
        .ok_or_else(refused)?;
    let user = state.store.user_by_id(user_id).await?.ok_or_else(refused)?;
    Ok(HttpResponse::Ok().json(new_session(&state, &user).await?))
}

/// Revokes a refresh token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    operation_id = "logout_session",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "The refresh token is revoked."),
        (status = 400, description = "The body is invalid.", body = super::error::ErrorBody),
        (status = 415, description = "The body is not JSON.", body = super::error::ErrorBody),
    )
)]
#[post("/api/v1/auth/logout")]
#[tracing::instrument(skip_all)]
pub async fn logout(
    state: web::Data<AppState>,
    body: web::Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    state
        .store
        .revoke_refresh_token(&hash_refresh_token(&body.refresh_token))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
