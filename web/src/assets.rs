//! The dashboard's stylesheet and script, compiled into the binary and
//! served under `/assets/` with a content hash in their URL, so that a
//! browser keeps them until the binary changes.

use std::sync::OnceLock;

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use sha2::{Digest, Sha256};

/// One served file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 3] = [
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/app.js"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../assets/icon.svg"),
    },
];

/// The first hex digits of every asset's hash, in [`ASSETS`]' order.
fn versions() -> &'static [String] {
    static VERSIONS: OnceLock<Vec<String>> = OnceLock::new();
    VERSIONS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| hex::encode(&Sha256::digest(asset.body)[..6]))
            .collect()
    })
}

/// The URL of the asset `name`, with its version.
pub fn url(name: &str) -> String {
    let version = ASSETS
        .iter()
        .position(|asset| asset.name == name)
        .map(|i| versions()[i].as_str())
        .unwrap_or_default();
    format!("/assets/{name}?v={version}")
}

/// Every asset's size in bytes, uncompressed, by name.
pub fn sizes() -> Vec<(&'static str, usize)> {
    ASSETS.iter().map(|a| (a.name, a.body.len())).collect()
}

/// Mounts `/assets/{name}`, gzip-compressed for browsers that take it.
pub fn configure(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/assets")
            .wrap(actix_web::middleware::Compress::default())
            .route("/{name}", web::get().to(asset)),
    );
}

async fn asset(request: HttpRequest, name: web::Path<String>) -> HttpResponse {
    let Some(index) = ASSETS.iter().position(|a| a.name == name.as_str()) else {
        return HttpResponse::NotFound()
            .content_type("text/plain")
            .body("no such asset\n");
    };
    let asset = &ASSETS[index];
    let etag = format!("\"{}\"", versions()[index]);
    let fresh = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if fresh {
        return response.finish();
    }
    response.content_type(asset.content_type).body(asset.body)
}
