//! Who is calling: the `Authorization: Bearer` header turned into a
//! [`Subject`] (from an access token or an API token), plus the address the
//! request came from, for the audit log.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use super::error::ApiError;
use crate::auth::{self, AuthError, Subject};
use crate::rest::state::AppState;

/// A signed-in caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who, with their tenants and roles.
    pub subject: Subject,
    /// The peer address.
    pub source: String,
}

/// The peer address of a request, as the audit log records it.
pub fn source_of(request: &HttpRequest) -> String {
    request
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let header = request
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .map(|value| value.to_str().map(str::to_owned));
        let source = source_of(request);
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Internal("the app state is missing".into()))?;
            let bearer = match header {
                None => {
                    return Err(ApiError::Unauthorized(
                        "sign in first: send Authorization: Bearer <token>".into(),
                    ));
                }
                Some(Err(_)) => {
                    return Err(ApiError::Unauthorized(
                        "the Authorization header is not valid text".into(),
                    ));
                }
                Some(Ok(header)) => header,
            };
            let token = bearer
                .strip_prefix("Bearer ")
                .or_else(|| bearer.strip_prefix("bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ApiError::Unauthorized(
                        "the Authorization header must be \"Bearer <token>\"".into(),
                    )
                })?;
            match auth::subject_for_bearer(&state.store, &state.tokens, token).await {
                Ok(subject) => Ok(Caller { subject, source }),
                Err(AuthError::Store(error)) => Err(error.into()),
                Err(AuthError::InvalidToken(reason)) => Err(ApiError::Unauthorized(format!(
                    "the token was refused: {reason}"
                ))),
                Err(other) => Err(ApiError::Unauthorized(other.to_string())),
            }
        })
    }
}
