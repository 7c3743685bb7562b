//! `?watch=true`: a stream of newline-delimited JSON events
//! (`{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": …}`)
//! for one kind in one tenant, from a resourceVersion on.
//!
//! Without a resourceVersion (or with `0`) the stream opens with an ADDED
//! event for every current object, as Kubernetes' watch does. A
//! resourceVersion that has been compacted away answers 410 before the
//! stream starts; if compaction overtakes a running watch, an ERROR event
//! with code 410 ends it. BOOKMARK events carry only a resourceVersion up to
//! which the client has seen everything, so that a client that reconnects
//! from its last resourceVersion misses nothing and replays little.

use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::web::Bytes;
use berth_api::labels::Selector;
use berth_api::objects::Kind;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::error::ApiError;
use crate::objects::{ObjectError, Objects, SecretValues};
use crate::store::Watch;
use crate::store::types::Revision;

/// What one watch request asked for.
pub struct WatchRequest {
    /// The kind.
    pub kind: Kind,
    /// The tenant (none for nodes).
    pub tenant: Option<String>,
    /// Which objects.
    pub selector: Selector,
    /// Deliver changes after this revision; `None` starts with the current
    /// objects.
    pub after: Option<Revision>,
    /// Whether Secret values are shown.
    pub reveal: SecretValues,
    /// How often a BOOKMARK is sent.
    pub bookmark_interval: Duration,
    /// End the stream after this long, if given.
    pub timeout: Option<Duration>,
}

/// Starts the stream, or answers 410 when `after` is compacted.
pub async fn respond(objects: Objects, request: WatchRequest) -> Result<HttpResponse, ApiError> {
    let tenant = request.tenant.as_deref();
    let (initial, after) = match request.after {
        Some(after) => (Vec::new(), after),
        None => {
            let page = objects
                .list(
                    request.kind,
                    tenant,
                    &request.selector,
                    0,
                    None,
                    request.reveal,
                )
                .await
                .map_err(super::resources::object_error)?;
            (page.items, page.revision)
        }
    };
    let watch = objects
        .watch(request.kind, tenant, after)
        .await
        .map_err(super::resources::object_error)?;
    let (lines, receiver) = mpsc::channel::<Bytes>(64);
    actix_web::rt::spawn(pump(objects, request, initial, after, watch, lines));
    let stream = ReceiverStream::new(receiver).map(Ok::<_, actix_web::Error>);
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(stream))
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

fn bookmark(kind: Kind, revision: Revision) -> Bytes {
    line(
        "BOOKMARK",
        json!({
            "apiVersion": kind.api_version(),
            "kind": kind.name(),
            "metadata": {"resourceVersion": revision.to_string()},
        }),
    )
}

fn error_status(code: u16, reason: &str, message: &str) -> Bytes {
    line(
        "ERROR",
        json!({
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "code": code,
            "reason": reason,
            "message": message,
        }),
    )
}

/// Feeds the client until it goes away, the watch fails, or the timeout.
async fn pump(
    objects: Objects,
    request: WatchRequest,
    initial: Vec<Value>,
    after: Revision,
    mut watch: Watch,
    lines: mpsc::Sender<Bytes>,
) {
    for object in initial {
        if lines.send(line("ADDED", object)).await.is_err() {
            return;
        }
    }
    let mut last_sent = after;
    let mut ticker = tokio::time::interval(request.bookmark_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let deadline = request.timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        let ended = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            batch = watch.next() => {
                let Some(batch) = batch else { return };
                match send_batch(&objects, &request, batch, &lines).await {
                    Ok(Some(revision)) => last_sent = last_sent.max(revision),
                    Ok(None) => {}
                    Err(()) => return,
                }
            }
            _ = ticker.tick() => {
                // Everything up to `position` has been handed out once the
                // watch is drained; only then may a bookmark claim it.
                let position = watch.position();
                loop {
                    match watch.try_next() {
                        Ok(Some(batch)) => match send_batch(&objects, &request, batch, &lines).await {
                            Ok(Some(revision)) => last_sent = last_sent.max(revision),
                            Ok(None) => {}
                            Err(()) => return,
                        },
                        Ok(None) => break,
                        Err(()) => return,
                    }
                }
                let revision = position.max(last_sent);
                if lines.send(bookmark(request.kind, revision)).await.is_err() {
                    return;
                }
                last_sent = revision;
            }
            _ = ended => return,
        }
    }
}

/// Sends one batch; answers the last revision sent, or `Err` when the
/// stream is over (client gone or watch failed).
async fn send_batch(
    objects: &Objects,
    request: &WatchRequest,
    batch: crate::store::StoreResult<Vec<crate::store::types::Event>>,
    lines: &mpsc::Sender<Bytes>,
) -> Result<Option<Revision>, ()> {
    let events = match batch {
        Ok(events) => events,
        Err(error) => {
            let (code, reason) = match &error {
                crate::store::StoreError::Compacted { .. } => (410, "Expired"),
                _ => (500, "InternalError"),
            };
            let _ = lines
                .send(error_status(code, reason, &error.to_string()))
                .await;
            return Err(());
        }
    };
    let mut last = None;
    for event in &events {
        let converted = objects.watch_event(
            request.kind,
            request.tenant.as_deref(),
            &request.selector,
            event,
            request.reveal,
        );
        match converted {
            Ok(Some((kind, object))) => {
                if lines.send(line(kind, object)).await.is_err() {
                    return Err(());
                }
            }
            Ok(None) => {}
            Err(ObjectError::Sealing(message)) => {
                let _ = lines
                    .send(error_status(500, "InternalError", &message))
                    .await;
                return Err(());
            }
            Err(error) => {
                let _ = lines
                    .send(error_status(500, "InternalError", &error.to_string()))
                    .await;
                return Err(());
            }
        }
        last = Some(event.revision());
    }
    Ok(last)
}
