//! `WatchServices`: every Service and EndpointSlice of every tenant, for the
//! service proxy and DNS of every node.
//!
//! Every node wants the same objects, so there is nothing to fan out by node
//! as [`super::pods_by_node`] does for pods: each stream lists both kinds
//! itself (ADDED each, then a BOOKMARK with `initial_events_end`) and then
//! follows one store watch per kind from its own list's revision. A store
//! watch is one more receiver of the process's broadcast of committed
//! events, filtered by prefix, so a stream costs two of them.
//!
//! The two kinds come through two watches, so their events interleave in
//! no particular order of revision; each object's events come in order, and
//! its last one is its state. An idle stream gets a BOOKMARK every
//! [`BOOKMARK_INTERVAL`], at the revision up to which it has every change
//! of both kinds.
//!
//! There is no resuming: when a store watch fails (compaction overtook it,
//! the database went away) the stream ends with ABORTED or UNAVAILABLE, and
//! the agent's next call starts from a fresh snapshot. The stream also ends
//! when the client goes away and, with UNAVAILABLE, at server shutdown.

use std::time::Duration;

use berth_api::labels::Selector;
use berth_api::node::v1 as pb;
use berth_api::node::v1::service_event::Type;
use berth_api::objects::Kind;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::{NodeApiError, resource_version_of};
use crate::objects::{ObjectError, Objects, SecretValues};
use crate::store::types::{Event, Revision};
use crate::store::{StoreError, StoreResult, Watch};

/// How often a stream gets a BOOKMARK, whether anything changed or not.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// Where a stream's events go.
pub type Client = mpsc::Sender<Result<pb::ServiceEvent, Status>>;

/// One kind as a stream starts it: every object, and the store watch that
/// follows from the revision they were read at.
struct Listed {
    objects: Vec<Value>,
    revision: Revision,
    watch: Watch,
}

impl Listed {
    async fn read(objects: &Objects, kind: Kind) -> Result<Listed, Status> {
        let failed = |error: ObjectError| match error {
            ObjectError::Store(error) => watch_failed(kind, &error),
            other => NodeApiError::from(other).into(),
        };
        let everything = Selector::default();
        let page = objects
            .list(kind, None, &everything, 0, None, SecretValues::Redact)
            .await
            .map_err(failed)?;
        let watch = objects
            .watch(kind, None, page.revision)
            .await
            .map_err(failed)?;
        Ok(Listed {
            objects: page.items,
            revision: page.revision,
            watch,
        })
    }
}

/// One `WatchServices` stream: the snapshot read, the watches open.
pub struct ServicesWatch {
    objects: Objects,
    services: Listed,
    slices: Listed,
}

/// Why a stream stopped.
enum End {
    /// The client went away; there is nobody to tell.
    ClientGone,
    /// The stream cannot go on; the client is told why.
    Failed(Status),
}

impl ServicesWatch {
    /// Lists every Service and EndpointSlice and opens the watches that
    /// follow them.
    pub async fn open(objects: Objects) -> Result<ServicesWatch, Status> {
        let services = Listed::read(&objects, Kind::Service).await?;
        let slices = Listed::read(&objects, Kind::EndpointSlice).await?;
        Ok(ServicesWatch {
            objects,
            services,
            slices,
        })
    }

    /// Sends the snapshot, then the changes, with a BOOKMARK every
    /// `bookmark_every`, until the client goes away, a watch fails or
    /// `shutdown`.
    pub async fn forward(
        self,
        client: Client,
        shutdown: CancellationToken,
        bookmark_every: Duration,
    ) {
        if let Err(End::Failed(status)) = self.run(&client, &shutdown, bookmark_every).await {
            tracing::debug!(%status, "a WatchServices stream ended");
            let _ = client.send(Err(status)).await;
        }
    }

    async fn run(
        mut self,
        client: &Client,
        shutdown: &CancellationToken,
        bookmark_every: Duration,
    ) -> Result<(), End> {
        for (kind, listed) in [
            (Kind::Service, &mut self.services),
            (Kind::EndpointSlice, &mut self.slices),
        ] {
            for object in std::mem::take(&mut listed.objects) {
                send(client, change(Type::Added, kind, object)).await?;
            }
        }
        let snapshot_end = self.services.revision.min(self.slices.revision);
        send(client, bookmark(snapshot_end, true)).await?;
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + bookmark_every, bookmark_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (kind, batch) = tokio::select! {
                () = shutdown.cancelled() => {
                    return Err(End::Failed(Status::unavailable("the server is shutting down")));
                }
                () = client.closed() => return Err(End::ClientGone),
                batch = self.services.watch.next() => (Kind::Service, batch),
                batch = self.slices.watch.next() => (Kind::EndpointSlice, batch),
                _ = ticker.tick() => {
                    let revision = self.drain(client).await?;
                    send(client, bookmark(revision, false)).await?;
                    continue;
                }
            };
            self.send_batch(client, kind, batch).await?;
        }
    }

    /// Sends what both watches hold already; answers the revision up to
    /// which the client now has every change of both kinds.
    async fn drain(&mut self, client: &Client) -> Result<Revision, End> {
        // Read before the watches are seen empty: see `Watch::position`.
        let revision = self
            .services
            .watch
            .position()
            .min(self.slices.watch.position());
        for kind in [Kind::Service, Kind::EndpointSlice] {
            loop {
                let watch = match kind {
                    Kind::Service => &mut self.services.watch,
                    _ => &mut self.slices.watch,
                };
                match watch.try_next() {
                    Ok(None) => break,
                    Ok(Some(batch)) => self.send_batch(client, kind, Some(batch)).await?,
                    Err(()) => self.send_batch(client, kind, None).await?,
                }
            }
        }
        Ok(revision)
    }

    /// Sends one batch of a watch of `kind`; `None` is a watch that ended.
    async fn send_batch(
        &self,
        client: &Client,
        kind: Kind,
        batch: Option<StoreResult<Vec<Event>>>,
    ) -> Result<(), End> {
        let events = match batch {
            Some(Ok(events)) => events,
            Some(Err(error)) => return Err(End::Failed(watch_failed(kind, &error))),
            None => {
                let ended = StoreError::WatchCancelled("the store watch ended".into());
                return Err(End::Failed(watch_failed(kind, &ended)));
            }
        };
        let everything = Selector::default();
        for event in &events {
            let seen = self
                .objects
                .watch_event(kind, None, &everything, event, SecretValues::Redact)
                .map_err(|error| {
                    End::Failed(Status::internal(format!(
                        "reading a changed {} failed: {error}",
                        kind.name()
                    )))
                })?;
            let Some((type_name, object)) = seen else {
                continue;
            };
            let r#type = match type_name {
                "ADDED" => Type::Added,
                "DELETED" => Type::Deleted,
                _ => Type::Modified,
            };
            send(client, change(r#type, kind, object)).await?;
        }
        Ok(())
    }
}

async fn send(client: &Client, event: pb::ServiceEvent) -> Result<(), End> {
    client.send(Ok(event)).await.map_err(|_| End::ClientGone)
}

fn change(r#type: Type, kind: Kind, object: Value) -> pb::ServiceEvent {
    pb::ServiceEvent {
        r#type: r#type.into(),
        kind: kind.name().into(),
        resource_version: resource_version_of(&object),
        object_json: object.to_string(),
        initial_events_end: false,
    }
}

fn bookmark(revision: Revision, initial_events_end: bool) -> pb::ServiceEvent {
    pb::ServiceEvent {
        r#type: Type::Bookmark.into(),
        resource_version: revision,
        initial_events_end,
        ..pb::ServiceEvent::default()
    }
}

/// What the client is told when the watch of `kind` failed: either way it
/// is to call again, and gets a fresh snapshot.
fn watch_failed(kind: Kind, error: &StoreError) -> Status {
    let kind = kind.name();
    match error {
        StoreError::Compacted { .. } => Status::aborted(format!(
            "the {kind} watch fell behind the store's compaction ({error}): \
             call WatchServices again for a fresh snapshot"
        )),
        _ => Status::unavailable(format!(
            "following {kind}s failed ({error}): call WatchServices again for a fresh snapshot"
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tonic::Code;

    use super::*;
    use crate::objects::ObjectRef;
    use crate::secrets::EncryptionKey;

    async fn create(objects: &Objects, kind: Kind, tenant: &str, object: Value) -> Value {
        let (_, decoded) = objects.decode(Some(kind), object).unwrap();
        objects
            .create(kind, Some(tenant), decoded, SecretValues::Redact)
            .await
            .unwrap()
    }

    fn service(name: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
        })
    }

    fn slice(name: &str) -> Value {
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name},
            "addressType": "IPv4",
            "endpoints": [],
        })
    }

    async fn next(
        stream: &mut mpsc::Receiver<Result<pb::ServiceEvent, Status>>,
    ) -> pb::ServiceEvent {
        tokio::time::timeout(Duration::from_secs(10), stream.recv())
            .await
            .expect("an event within 10 s")
            .expect("the stream is open")
            .expect("no error")
    }

    /// The next event that is not a BOOKMARK, as (type, kind, tenant/name).
    async fn next_change(
        stream: &mut mpsc::Receiver<Result<pb::ServiceEvent, Status>>,
    ) -> (Type, String, String) {
        loop {
            let event = next(stream).await;
            if event.r#type() != Type::Bookmark {
                let object: Value = serde_json::from_str(&event.object_json).unwrap();
                let meta = &object["metadata"];
                return (
                    event.r#type(),
                    event.kind,
                    format!(
                        "{}/{}",
                        meta["tenant"].as_str().unwrap(),
                        meta["name"].as_str().unwrap()
                    ),
                );
            }
        }
    }

    fn added(kind: &str, name: &str) -> (Type, String, String) {
        (Type::Added, kind.into(), name.into())
    }

    #[tokio::test]
    async fn a_stream_sends_every_service_and_slice_the_snapshots_end_then_changes() {
        let (_dir, store) = crate::store::temporary().await;
        let objects = Objects::new(store, EncryptionKey::from_bytes([7; 32]));
        create(&objects, Kind::Service, "acme", service("web")).await;
        create(&objects, Kind::Service, "globex", service("db")).await;
        create(&objects, Kind::EndpointSlice, "acme", slice("web-1")).await;
        let watch = ServicesWatch::open(objects.clone()).await.unwrap();
        let (client, mut stream) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let task =
            tokio::spawn(watch.forward(client, shutdown.clone(), Duration::from_millis(200)));

        let mut snapshot = Vec::new();
        for _ in 0..3 {
            snapshot.push(next_change(&mut stream).await);
        }
        snapshot.sort();
        assert_eq!(
            snapshot,
            [
                added("EndpointSlice", "acme/web-1"),
                added("Service", "acme/web"),
                added("Service", "globex/db"),
            ]
        );
        let end = next(&mut stream).await;
        assert_eq!(end.r#type(), Type::Bookmark);
        assert!(end.initial_events_end, "{end:?}");

        create(&objects, Kind::Service, "acme", service("api")).await;
        assert_eq!(next_change(&mut stream).await, added("Service", "acme/api"));
        let at = ObjectRef {
            kind: Kind::Service,
            tenant: Some("acme".into()),
            name: "api".into(),
        };
        objects
            .patch(
                &at,
                json!({"metadata": {"labels": {"tier": "front"}}}),
                SecretValues::Redact,
            )
            .await
            .unwrap();
        assert_eq!(
            next_change(&mut stream).await,
            (Type::Modified, "Service".into(), "acme/api".into())
        );
        let deleted = objects
            .delete(&at, None, SecretValues::Redact, Default::default())
            .await
            .unwrap();
        let event = loop {
            let event = next(&mut stream).await;
            if event.r#type() != Type::Bookmark {
                break event;
            }
        };
        assert_eq!(event.r#type(), Type::Deleted);
        let last: Value = serde_json::from_str(&event.object_json).unwrap();
        assert_eq!(
            last["metadata"]["labels"]["tier"], "front",
            "its last state"
        );
        assert_eq!(last["metadata"]["uid"], deleted["metadata"]["uid"]);

        // Idle, the stream gets bookmarks up to the last change.
        let bookmark = next(&mut stream).await;
        assert_eq!(bookmark.r#type(), Type::Bookmark);
        assert!(!bookmark.initial_events_end);
        assert!(
            bookmark.resource_version >= event.resource_version,
            "{bookmark:?}"
        );

        shutdown.cancel();
        let ended = loop {
            match tokio::time::timeout(Duration::from_secs(10), stream.recv()).await {
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(status))) => break status,
                other => panic!("the stream ends with a status: {other:?}"),
            }
        };
        assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
        task.await.unwrap();
    }

    #[test]
    fn a_compacted_watch_is_aborted_and_a_lost_database_unavailable() {
        let compacted = StoreError::Compacted {
            requested: 5,
            compact_revision: 9,
        };
        let status = watch_failed(Kind::Service, &compacted);
        assert_eq!(status.code(), Code::Aborted);
        assert!(status.message().contains("fresh snapshot"), "{status:?}");
        let lost = StoreError::Unavailable("connection refused".into());
        let status = watch_failed(Kind::EndpointSlice, &lost);
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("EndpointSlices"), "{status:?}");
    }
}
