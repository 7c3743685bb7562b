//! The one error envelope of the REST API:
//! `{"error": {"code", "message", "details": [{"field", "reason"}]}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// One problem with one field of a request.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Detail {
    /// The field's path, e.g. `spec.replicas`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The error envelope as the OpenAPI document describes it.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorInfo,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorInfo {
    /// A stable, machine-readable code (`NotFound`, `Conflict`, …).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// Each problem with its field, when the request was invalid.
    pub details: Vec<Detail>,
}

/// Everything a REST handler can answer with instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or invalid (400).
    #[error("{message}")]
    BadRequest {
        /// What is wrong, in one sentence.
        message: String,
        /// Each problem with its field.
        details: Vec<Detail>,
    },
    /// The body is not of a type the endpoint reads (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Not signed in, or wrong credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Signed in, but the role does not allow this (403).
    #[error("{0}")]
    Forbidden(String),
    /// A policy refuses the request, with each offending field (403): the
    /// tenant's Pod Security level.
    #[error("{message}")]
    PolicyViolation {
        /// What is refused and why, in one sentence.
        message: String,
        /// Each offending field with the check it fails.
        details: Vec<Detail>,
    },
    /// No such object, or one the caller may not know of (404).
    #[error("{0}")]
    NotFound(String),
    /// An object of this name exists already (409).
    #[error("{0}")]
    AlreadyExists(String),
    /// The object changed since the caller read it (409).
    #[error("{0}")]
    Conflict(String),
    /// What the object asks for is held by another (a node port, a
    /// virtual address), with each field and its holder (409).
    #[error("{message}")]
    Taken {
        /// What is taken, and by whom, in one sentence.
        message: String,
        /// Each field with its holder.
        details: Vec<Detail>,
    },
    /// Well-formed, but not something the server can carry out: a value
    /// outside its configured ranges, or a change to an allocated one
    /// (422, as Kubernetes answers).
    #[error("{message}")]
    Unprocessable {
        /// What is wrong, in one sentence.
        message: String,
        /// Each problem with its field.
        details: Vec<Detail>,
    },
    /// The requested resourceVersion has been compacted away; list again (410).
    #[error("{0}")]
    Gone(String),
    /// The body is larger than the API takes (413).
    #[error("the body is larger than 1.5 MiB")]
    PayloadTooLarge,
    /// Too many attempts; try again after the given seconds (429).
    #[error("too many failed sign-ins; try again in {retry_after_secs} s")]
    TooManyRequests {
        /// Seconds until another attempt is considered.
        retry_after_secs: u64,
    },
    /// The store cannot be reached (503).
    #[error("{0}")]
    Unavailable(String),
    /// Something failed that the caller cannot fix (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 about one field.
    pub fn field(field: &str, reason: impl Into<String>) -> ApiError {
        let reason = reason.into();
        ApiError::BadRequest {
            message: format!("{field}: {reason}"),
            details: vec![Detail {
                field: field.to_owned(),
                reason,
            }],
        }
    }

    /// A 400 listing several problems, each with its field.
    pub fn invalid(message: impl Into<String>, details: Vec<Detail>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            details,
        }
    }

    /// The envelope's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "BadRequest",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden(_) | ApiError::PolicyViolation { .. } => "Forbidden",
            ApiError::NotFound(_) => "NotFound",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict(_) | ApiError::Taken { .. } => "Conflict",
            ApiError::Unprocessable { .. } => "Invalid",
            ApiError::Gone(_) => "Gone",
            ApiError::PayloadTooLarge => "PayloadTooLarge",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Internal(_) => "InternalError",
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match error {
            StoreError::Unavailable(message) => ApiError::Unavailable(message),
            StoreError::Compacted { .. } => ApiError::Gone(format!(
                "{error}; list again to get a current resourceVersion"
            )),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The authorization decision as a handler acts on it: go on, 403 or 404.
pub fn allowed(decision: crate::authz::Decision) -> Result<(), ApiError> {
    {
        match decision {
            crate::authz::Decision::Allow => Ok(()),
            crate::authz::Decision::Forbidden(message) => Err(ApiError::Forbidden(message)),
            crate::authz::Decision::Hidden => {
                Err(ApiError::NotFound("no such tenant, or not yours".into()))
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::PolicyViolation { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists(_) | ApiError::Conflict(_) | ApiError::Taken { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let details = match self {
            ApiError::BadRequest { details, .. }
            | ApiError::PolicyViolation { details, .. }
            | ApiError::Taken { details, .. }
            | ApiError::Unprocessable { details, .. } => details.clone(),
            _ => Vec::new(),
        };
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::TooManyRequests { retry_after_secs } = self {
            response.insert_header(("Retry-After", retry_after_secs.to_string()));
        }
        response.json(serde_json::json!({
            "error": { "code": self.code(), "message": self.to_string(), "details": details }
        }))
    }
}

/// Turns actix's JSON body errors into the envelope.
pub fn json_error(
    error: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError;
    let api = match &error {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::PayloadTooLarge
        }
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType(
            "the body must be JSON (Content-Type: application/json)".into(),
        ),
        JsonPayloadError::Deserialize(e) => ApiError::BadRequest {
            message: format!("the body is not valid JSON for this request: {e}"),
            details: vec![],
        },
        other => ApiError::BadRequest {
            message: other.to_string(),
            details: vec![],
        },
    };
    actix_web::error::InternalError::from_response(error, api.error_response()).into()
}

/// Turns actix's query string errors (`?limit=x`, an unknown or repeated
/// parameter) into a 400 in the envelope rather than a plain-text body.
pub fn query_error(
    error: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    let api = ApiError::BadRequest {
        message: format!("the query string is invalid: {error}"),
        details: vec![],
    };
    actix_web::error::InternalError::from_response(error, api.error_response()).into()
}

/// Turns actix's path segment errors into a 404 in the envelope: a path
/// whose segments do not parse names nothing.
pub fn path_error(
    error: actix_web::error::PathError,
    request: &actix_web::HttpRequest,
) -> actix_web::Error {
    let api = ApiError::NotFound(format!("nothing is at {}: {error}", request.path()));
    actix_web::error::InternalError::from_response(error, api.error_response()).into()
}
