//! The one error envelope of the REST API:
//! `{"error": {"code", "message", "details": [{"field", "reason"}]}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// One problem with one field of a request.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Detail {
    /// The field's path, e.g. `spec.replicas`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
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

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "BadRequest",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Internal(_) => "InternalError",
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Unavailable(message) => ApiError::Unavailable(message),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let details = match self {
            ApiError::BadRequest { details, .. } => details.clone(),
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
            ApiError::BadRequest {
                message: "the body is larger than 1.5 MiB".into(),
                details: vec![],
            }
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
