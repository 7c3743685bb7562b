//! `GET /live?tenant=T&kinds=pods,deployments&rv=N`: one server-sent event
//! stream per open page, merging the store's watches of the kinds it
//! shows. Each change is an event `change` whose id is its revision, so a
//! browser that reconnects (EventSource sends `Last-Event-ID`) follows on
//! from there; a page then reads itself again and swaps in what changed.
//! When the revision has been compacted away the stream says `reset`, and
//! the page reads itself again and follows from its new revision.
//!
//! The stream carries only which kind changed, never an object: what a
//! viewer may see is decided by the page that renders it.

use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use berth_api::objects::Kind;
use berth_server::authz::{self, Target, Verb};
use berth_server::store::StoreError;
use tokio::sync::mpsc;

use crate::page::{PageError, Viewer};

/// How often an idle stream sends a comment, so that proxies and the
/// browser keep it open and a dead connection is noticed.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Mounts `/live`.
pub fn configure(config: &mut web::ServiceConfig) {
    config.route("/live", web::get().to(live));
}

#[derive(serde::Deserialize)]
struct LiveQuery {
    tenant: Option<String>,
    kinds: String,
    rv: Option<i64>,
}

/// What a kind's watch reports to the stream.
enum Change {
    /// Something of `kind` changed at `revision`.
    At(i64, &'static str),
    /// The revision asked for is gone.
    Compacted,
}

async fn live(
    viewer: Viewer,
    request: HttpRequest,
    query: web::Query<LiveQuery>,
) -> Result<HttpResponse, PageError> {
    let tenant = query.tenant.as_deref().filter(|t| !t.is_empty());
    let mut kinds = Vec::new();
    for plural in query.kinds.split(',').filter(|p| !p.is_empty()) {
        let kind = Kind::from_plural(plural)
            .ok_or_else(|| PageError::NotFound(format!("there is no kind {plural:?}")))?;
        let scope = if kind.namespaced() { tenant } else { None };
        // Without a tenant a namespaced kind is watched in every tenant,
        // which only the platform admin may (the Nodes page's pods).
        if kind.namespaced() && scope.is_none() && !viewer.subject().platform_admin {
            return Err(PageError::NotFound(format!(
                "{plural} live in a tenant: give ?tenant="
            )));
        }
        match authz::authorize(viewer.subject(), scope, Target::Object(kind), Verb::Watch) {
            authz::Decision::Allow => kinds.push((kind, scope.map(str::to_owned))),
            authz::Decision::Forbidden(message) => return Err(PageError::Forbidden(message)),
            authz::Decision::Hidden => {
                return Err(PageError::NotFound("no such tenant, or not yours".into()));
            }
        }
    }
    let resumed = request
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let after = resumed.or(query.rv).unwrap_or(0).max(0);
    let (changes, mut received) = mpsc::channel::<Change>(256);
    for (kind, scope) in kinds {
        let objects = viewer.state.objects.clone();
        let changes = changes.clone();
        actix_web::rt::spawn(async move {
            let mut watch = match objects.watch(kind, scope.as_deref(), after).await {
                Ok(watch) => watch,
                Err(berth_server::objects::ObjectError::Store(StoreError::Compacted {
                    ..
                })) => {
                    let _ = changes.send(Change::Compacted).await;
                    return;
                }
                Err(_) => return,
            };
            while let Some(batch) = watch.next().await {
                let change = match batch {
                    Ok(events) => match events.iter().map(|e| e.kv.mod_revision).max() {
                        Some(revision) => Change::At(revision, kind.plural()),
                        None => continue,
                    },
                    Err(StoreError::Compacted { .. }) => Change::Compacted,
                    Err(_) => return,
                };
                if changes.send(change).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(changes);
    let (frames, frames_out) = mpsc::channel::<Result<Bytes, actix_web::Error>>(16);
    actix_web::rt::spawn(async move {
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        // Opening line: the browser fires `open` only once bytes arrive.
        if frames
            .send(Ok(Bytes::from_static(b": live\n\n")))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let frame = tokio::select! {
                change = received.recv() => match change {
                    Some(Change::At(revision, plural)) => {
                        format!("id: {revision}\nevent: change\ndata: {plural}\n\n")
                    }
                    Some(Change::Compacted) => "event: reset\ndata: compacted\n\n".to_owned(),
                    // Every watch ended (the store failed): the browser
                    // reconnects and resumes.
                    None => return,
                },
                _ = keepalive.tick() => ": keepalive\n\n".to_owned(),
            };
            if frames.send(Ok(Bytes::from(frame))).await.is_err() {
                return;
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(tokio_stream::wrappers::ReceiverStream::new(frames_out)))
}
