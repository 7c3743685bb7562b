//! The HTTP listener: `/healthz`, `/readyz`, `/metrics`, the REST API
//! ([`crate::rest`]), `/openapi.json` and Swagger UI at `/docs`; the
//! dashboard will mount here too.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, get, web};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Where every metric is registered.
    pub registry: Registry,
    /// Issues and checks access tokens.
    pub tokens: crate::auth::Tokens,
    /// Objects of every kind over the store.
    pub objects: crate::objects::Objects,
    /// Where every change is recorded.
    pub audit: crate::audit::AuditLog,
    /// How often an idle REST watch gets a BOOKMARK.
    pub watch_bookmark_interval: Duration,
    /// The agents' tunnels held by this process, for logs and exec.
    pub tunnels: crate::node_api::tunnels::Tunnels,
    /// The pods' resource use the agents reported to this process.
    pub pod_metrics: crate::pod_metrics::PodMetricsStore,
}

/// Builds the HTTP server on `listener`. The caller runs the returned future
/// and stops it through the handle.
pub fn serve(
    listener: TcpListener,
    state: AppState,
) -> std::io::Result<(actix_web::dev::Server, ServerHandle)> {
    let data = web::Data::new(state);
    let document = crate::rest::openapi::document();
    let server = HttpServer::new(move || {
        App::new()
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
