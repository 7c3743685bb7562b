//! `/api/v1/users`: accounts. The platform admin creates and lists them;
//! anyone signed in reads their own (`/users/me`).

use actix_web::{HttpResponse, get, post, web};

use super::caller::Caller;
use super::error::{ApiError, Detail, ErrorBody, allowed};
use crate::auth;
use crate::authz::{Target, Verb, authorize};
use crate::rest::state::AppState;
use crate::store::StoreError;
use crate::store::identity::User;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create_user, list_users, get_current_user),
    components(schemas(
        CreateUserRequest,
        UserInfo,
        UserList,
        CurrentUser,
        TenantRole,
        ErrorBody
    ))
)]
pub struct UsersApi;

/// The longest email accepted (RFC 5321's path limit).
const MAX_EMAIL_CHARS: usize = 254;
/// The shortest password accepted.
const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password accepted: hashing is deliberately slow, and
/// megabytes of password would make it slower still.
const MAX_PASSWORD_CHARS: usize = 1024;

/// `POST /users`'s body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateUserRequest {
    /// What the user signs in with; unique.
    #[schema(example = "dev@example.com")]
    email: String,
    /// At least 8 characters.
    password: String,
    /// Whether the user administers the whole platform (default: no).
    #[serde(default)]
    platform_admin: bool,
}

/// A user account (never its password hash).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    /// The user's id.
    id: i64,
    /// The email the user signs in with.
    email: String,
    /// Whether the user administers the whole platform.
    platform_admin: bool,
}

impl From<User> for UserInfo {
    fn from(user: User) -> Self {
        UserInfo {
            id: user.id,
            email: user.email,
            platform_admin: user.platform_admin,
        }
    }
}

/// Every user.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct UserList {
    /// By id.
    items: Vec<UserInfo>,
}

/// A tenant and the caller's role in it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TenantRole {
    /// The tenant's name.
    name: String,
    /// `owner`, `admin`, `editor` or `viewer`.
    role: String,
}

/// The caller as the server sees them.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentUser {
    /// The user's id.
    id: i64,
    /// The email the user signs in with.
    email: String,
    /// Whether the caller acts as the platform admin (never through an API
    /// token).
    platform_admin: bool,
    /// The API token the request came with, if it came with one; such a
    /// caller acts only in that token's tenant, with the token's role.
    api_token: Option<i64>,
    /// The caller's tenants and roles, by name.
    tenants: Vec<TenantRole>,
}

/// Mounts these routes.
pub fn configure(config: &mut web::ServiceConfig) {
    // `/users/me` before any `/users/{id}` route that may come later.
    config
        .service(get_current_user)
        .service(create_user)
        .service(list_users);
}

/// What is wrong with a new account's email and password, each with its
/// field.
fn account_problems(email: &str, password: &str) -> Vec<Detail> {
    let mut problems = Vec::new();
    let well_formed = email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if !well_formed || email.chars().any(char::is_whitespace) {
        problems.push(Detail {
            field: "email".into(),
            reason: "must be an email address (name@domain, no spaces)".into(),
        });
    } else if email.chars().count() > MAX_EMAIL_CHARS {
        problems.push(Detail {
            field: "email".into(),
            reason: format!("must be at most {MAX_EMAIL_CHARS} characters"),
        });
    }
    let length = password.chars().count();
    if length < MIN_PASSWORD_CHARS {
        problems.push(Detail {
            field: "password".into(),
            reason: format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        });
    } else if length > MAX_PASSWORD_CHARS {
        problems.push(Detail {
            field: "password".into(),
            reason: format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        });
    }
    problems
}

/// Creates a user account (platform admin only).
#[utoipa::path(
    post,
    path = "/api/v1/users",
    operation_id = "create_user",
    tag = "users",
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "Created", body = UserInfo),
        (status = 400, description = "The email or password is not acceptable", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Only the platform admin creates users", body = ErrorBody),
        (status = 409, description = "A user with this email exists", body = ErrorBody),
        (status = 413, description = "The body is larger than 1.5 MiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        (status = 500, description = "An unexpected failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/api/v1/users")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id))]
pub async fn create_user(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let CreateUserRequest {
        email,
        password,
        platform_admin,
    } = body.into_inner();
    allowed(authorize(
        &caller.subject,
        None,
        Target::Users,
        Verb::Create,
    ))?;
    let problems = account_problems(&email, &password);
    if !problems.is_empty() {
        return Err(ApiError::invalid(
            "the account cannot be created as asked",
            problems,
        ));
    }
    // argon2id takes tens of milliseconds of CPU: off the request threads.
    let hash = web::block(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let user = match state.store.create_user(&email, &hash, platform_admin).await {
        Ok(user) => user,
        Err(StoreError::Conflict { .. }) => {
            return Err(ApiError::AlreadyExists(format!(
                "a user with email {email} exists"
            )));
        }
        Err(error) => return Err(error.into()),
    };
    super::audit_routes::record(
        &state,
        super::audit_routes::who(&caller.subject),
        None,
        "create_user",
        Some("User"),
        Some(&user.email),
        201,
        &caller.source,
    );
    Ok(HttpResponse::Created().json(UserInfo::from(user)))
}

/// Lists every user account (platform admin only).
#[utoipa::path(
    get,
    path = "/api/v1/users",
    operation_id = "list_users",
    tag = "users",
    responses(
        (status = 200, description = "Every user", body = UserList),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Only the platform admin lists users", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        (status = 500, description = "An unexpected failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/api/v1/users")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id))]
pub async fn list_users(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    allowed(authorize(&caller.subject, None, Target::Users, Verb::List))?;
    let items = state
        .store
        .users()
        .await?
        .into_iter()
        .map(UserInfo::from)
        .collect();
    Ok(HttpResponse::Ok().json(UserList { items }))
}

/// The caller: their account, tenants and roles, as this request's
/// credentials grant them (an API token: its one tenant and role).
#[utoipa::path(
    get,
    path = "/api/v1/users/me",
    operation_id = "get_current_user",
    tag = "users",
    responses(
        (status = 200, description = "The caller", body = CurrentUser),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
        (status = 500, description = "An unexpected failure", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/api/v1/users/me")]
#[tracing::instrument(skip_all, fields(user_id = caller.subject.user_id))]
pub async fn get_current_user(caller: Caller) -> Result<HttpResponse, ApiError> {
    // Everyone may read themselves: there is nothing to authorize beyond
    // being signed in, which the extractor checked.
    let subject = caller.subject;
    let tenants = subject
        .tenants
        .into_iter()
        .map(|(name, role)| TenantRole {
            name,
            role: role.name().to_owned(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(CurrentUser {
        id: subject.user_id,
        email: subject.email,
        platform_admin: subject.platform_admin,
        api_token: subject.api_token,
        tenants,
    }))
}
