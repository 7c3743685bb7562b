//! Who is calling: the `Authorization: Bearer` header (an access token or
//! an API token), or a dashboard session's cookies, turned into a
//! [`Subject`], plus the address the request came from, for the audit log.
//!
//! A session's request that changes something must carry the session's
//! CSRF token ([`crate::sessions`]). A session whose access token ran out
//! is renewed here, and [`renew_access_cookie`] hands the new token back to
//! the browser.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::Method;
use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};

use super::error::ApiError;
use crate::auth::{self, AuthError, Subject};
use crate::rest::state::AppState;
use crate::sessions::{self, ACCESS_COOKIE, CSRF_HEADER, SESSION_COOKIE};

/// A signed-in caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who, with their tenants and roles.
    pub subject: Subject,
    /// The peer address.
    pub source: String,
    /// The CSRF token of the dashboard session the request came with, for
    /// pages to embed; `None` for a bearer token.
    pub csrf_token: Option<String>,
}

/// A new access token for the session a request came with, set as its
/// cookie on the response.
#[derive(Clone, Debug)]
pub struct RenewedAccess(pub String);

/// The peer address of a request, as the audit log records it.
pub fn source_of(request: &HttpRequest) -> String {
    request
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

/// A dashboard cookie: HttpOnly, SameSite=Strict, for the whole site,
/// Secure when the request came over TLS (directly or through a proxy
/// that says so).
pub fn session_cookie(request: &HttpRequest, name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(request.connection_info().scheme() == "https")
        .finish()
}

/// The cookie that drops `name` from the browser.
pub fn removal_cookie(request: &HttpRequest, name: &'static str) -> Cookie<'static> {
    let mut cookie = session_cookie(request, name, String::new());
    cookie.make_removal();
    cookie
}

/// The cookie for a renewed access token, if the request's session was
/// renewed while it was handled.
pub fn renew_access_cookie(request: &HttpRequest) -> Option<Cookie<'static>> {
    let renewed = request.extensions().get::<RenewedAccess>().cloned()?;
    Some(session_cookie(request, ACCESS_COOKIE, renewed.0))
}

fn changes_something(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the request opens a WebSocket (exec), which a browser sends as
/// a GET without custom headers, so no CSRF token.
fn opens_websocket(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(actix_web::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether the request's `Origin` names this very server (scheme aside):
/// a browser always sends it with a WebSocket handshake, and a page of
/// another site cannot forge it.
fn same_origin(request: &HttpRequest) -> bool {
    let Some(origin) = request
        .headers()
        .get(actix_web::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let host = request.connection_info().host().to_owned();
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority == host)
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let state = request
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| ApiError::Internal("the app state is missing".into()))?;
            let source = source_of(&request);
            let header = request
                .headers()
                .get(actix_web::http::header::AUTHORIZATION)
                .map(|value| value.to_str().map(str::to_owned));
            let session = request.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
            match (header, session) {
                (Some(header), _) => bearer_caller(&state, header, source).await,
                (None, Some(session)) => session_caller(&state, &request, session, source).await,
                (None, None) => Err(ApiError::Unauthorized(
                    "sign in first: send Authorization: Bearer <token>".into(),
                )),
            }
        })
    }
}

async fn bearer_caller(
    state: &AppState,
    header: Result<String, actix_web::http::header::ToStrError>,
    source: String,
) -> Result<Caller, ApiError> {
    let bearer = header
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not valid text".into()))?;
    let token = bearer
        .strip_prefix("Bearer ")
        .or_else(|| bearer.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be \"Bearer <token>\"".into())
        })?;
    match auth::subject_for_bearer(&state.store, &state.tokens, token).await {
        Ok(subject) => Ok(Caller {
            subject,
            source,
            csrf_token: None,
        }),
        Err(error) => Err(refused(error)),
    }
}

async fn session_caller(
    state: &AppState,
    request: &HttpRequest,
    session: String,
    source: String,
) -> Result<Caller, ApiError> {
    if changes_something(request.method()) {
        let presented = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !sessions::csrf_matches(&session, presented) {
            return Err(ApiError::Forbidden(format!(
                "a change made with a dashboard session needs the session's CSRF token in the {CSRF_HEADER} header"
            )));
        }
    }
    if opens_websocket(request) && !same_origin(request) {
        return Err(ApiError::Forbidden(
            "a WebSocket opened with a dashboard session must come from the dashboard's own pages (its Origin must be this server)".into(),
        ));
    }
    let csrf_token = Some(sessions::csrf_token(&session));
    let access = request.cookie(ACCESS_COOKIE).map(|c| c.value().to_owned());
    if let Some(user_id) = access.and_then(|token| state.tokens.verify(&token).ok()) {
        let subject = Subject::load(&state.store, user_id)
            .await
            .map_err(refused)?;
        return Ok(Caller {
            subject,
            source,
            csrf_token,
        });
    }
    match sessions::resume(
        &state.store,
        &state.tokens,
        &session,
        state.session_idle_timeout,
    )
    .await
    {
        Ok(Some((subject, access))) => {
            request.extensions_mut().insert(RenewedAccess(access));
            Ok(Caller {
                subject,
                source,
                csrf_token,
            })
        }
        Ok(None) => Err(ApiError::Unauthorized(
            "the session has ended; sign in again".into(),
        )),
        Err(error) => Err(refused(error)),
    }
}

fn refused(error: AuthError) -> ApiError {
    match error {
        AuthError::Store(error) => error.into(),
        AuthError::InvalidToken(reason) => {
            ApiError::Unauthorized(format!("the token was refused: {reason}"))
        }
        other => ApiError::Unauthorized(other.to_string()),
    }
}
