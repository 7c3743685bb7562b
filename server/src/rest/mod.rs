//! The REST API under `/api/v1` (so far: sign-in sessions).
//!
//! - `error`: the one error envelope.
//! - `throttle`: failed sign-in slowing and lockout.
//! - `auth_routes`: login, refresh, logout.

mod auth_routes;
pub mod error;
pub mod throttle;

use actix_web::web;

/// Bodies larger than this are refused.
pub const MAX_BODY_BYTES: usize = 1536 * 1024;

/// Mounts the REST API.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .app_data(
            web::JsonConfig::default()
                .limit(MAX_BODY_BYTES)
                .error_handler(error::json_error),
        )
        .service(auth_routes::login)
        .service(auth_routes::refresh)
        .service(auth_routes::logout);
}
