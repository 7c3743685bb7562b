//! The HTTP listener: `/healthz`, `/readyz`, `/metrics`, the REST API
//! ([`crate::rest`]), `/openapi.json`, Swagger UI at `/docs`, and the
//! routes the binary adds (the dashboard).

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, get, web};
use prometheus::{Encoder, TextEncoder};

pub use crate::rest::state::AppState;

/// Routes the binary mounts beside the REST API (the dashboard), so that
/// this crate never depends on the crates that make them.
pub type ExtraRoutes = std::sync::Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// No routes beside the REST API.
pub fn no_extra_routes() -> ExtraRoutes {
    std::sync::Arc::new(|_| {})
}

/// Builds the HTTP server on `listener`, with `extra` routes beside the
/// REST API's. The caller runs the returned future and stops it through
/// the handle.
pub fn serve(
    listener: TcpListener,
    state: AppState,
    extra: ExtraRoutes,
) -> std::io::Result<(actix_web::dev::Server, ServerHandle)> {
    let data = web::Data::new(state);
    let document = crate::rest::openapi::document();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(renew_session_cookie))
            .app_data(data.clone())
            .service(
                utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                    .url("/openapi.json", document.clone()),
            )
            .route(
                "/docs",
                web::get().to(|| async {
                    HttpResponse::PermanentRedirect()
                        .insert_header(("Location", "/docs/"))
                        .finish()
                }),
            )
            .configure(crate::rest::configure)
            .configure(|config| extra(config))
            .service(healthz)
            .service(readyz)
            .service(metrics)
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(5)
    .run();
    let handle = server.handle();
    Ok((server, handle))
}

/// Hands a dashboard session's renewed access token back to the browser
/// ([`crate::rest::caller`] renews it while authenticating).
async fn renew_session_cookie(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let mut response = next.call(request).await?;
    if let Some(cookie) = crate::rest::caller::renew_access_cookie(response.request()) {
        response.response_mut().add_cookie(&cookie)?;
    }
    Ok(response)
}

/// Alive while the process runs.
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// Ready while the store answers.
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => HttpResponse::Ok().content_type("text/plain").body("ok\n"),
        Ok(Err(error)) => not_ready(&error.to_string()),
        Err(_) => not_ready("the store did not answer within 2s"),
    }
}

fn not_ready(message: &str) -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(serde_json::json!({
        "error": {"code": "StoreUnavailable", "message": message, "details": []}
    }))
}

/// Prometheus text format.
#[get("/metrics")]
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.store.refresh_pool_metrics();
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    if let Err(error) = encoder.encode(&state.registry.gather(), &mut body) {
        return HttpResponse::InternalServerError().body(error.to_string());
    }
    HttpResponse::Ok()
        .content_type(encoder.format_type())
        .body(body)
}
