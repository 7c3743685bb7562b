//! The Watch service: one bidirectional stream carrying many watches.
//!
//! Each watch is a forwarding task from a store [`Watch`] to the stream.
//! A progress request is answered once every watch on the stream has
//! forwarded everything up to the revision current when it was asked.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use berth_api::etcd::etcdserverpb as pb;
use berth_api::etcd::etcdserverpb::watch_create_request::FilterType;
use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{self, status};
use super::{Etcd, check};
use crate::auth::{Access, Subject};
use crate::store::types::{Event, EventKind, KeyRange, Revision, WatchRequest};
use crate::store::{StoreError, Watch};

/// The watch id etcd uses for answers that belong to no one watch.
const NO_WATCH: i64 = -1;

/// How long a progress request waits for the stream's watches to catch up.
const PROGRESS_WAIT: Duration = Duration::from_secs(10);

type Outbound = mpsc::Sender<Result<pb::WatchResponse, Status>>;

/// How one watch's events are shaped.
struct ForwardOptions {
    id: i64,
    no_put: bool,
    no_delete: bool,
    /// Split a revision too large for one response into fragments.
    fragment: bool,
    /// Send an empty response after an idle progress interval.
    progress_notify: bool,
}

/// The size one watch response aims to stay under. Responses hold whole
/// revisions; a single revision larger than this goes out whole, or in
/// fragments when the watch asked for them.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

fn event_size(event: &Event) -> usize {
    let prev = event
        .prev_kv
        .as_ref()
        .map_or(0, |kv| kv.key.len() + kv.value.len());
    64 + event.kv.key.len() + event.kv.value.len() + prev
}

/// Cuts events (in revision order) into responses: `(events, fragment)`
/// where `fragment` says more of the same revision follows.
fn split_response(events: Vec<Event>, fragment: bool) -> Vec<(Vec<Event>, bool)> {
    // Whole revisions first.
    let mut revisions: Vec<Vec<Event>> = Vec::new();
    for event in events {
        match revisions.last_mut() {
            Some(group) if group[0].revision() == event.revision() => group.push(event),
            _ => revisions.push(vec![event]),
        }
    }
    let mut responses: Vec<(Vec<Event>, bool)> = Vec::new();
    let mut current: Vec<Event> = Vec::new();
    let mut current_size = 0;
    for group in revisions {
        let size: usize = group.iter().map(event_size).sum();
        if !current.is_empty() && current_size + size > MAX_RESPONSE_BYTES {
            responses.push((std::mem::take(&mut current), false));
            current_size = 0;
        }
        if size > MAX_RESPONSE_BYTES && fragment {
            if !current.is_empty() {
                responses.push((std::mem::take(&mut current), false));
                current_size = 0;
            }
            let mut piece: Vec<Event> = Vec::new();
            let mut piece_size = 0;
            for event in group {
                let event_bytes = event_size(&event);
                if !piece.is_empty() && piece_size + event_bytes > MAX_RESPONSE_BYTES {
                    responses.push((std::mem::take(&mut piece), true));
                    piece_size = 0;
                }
                piece_size += event_bytes;
                piece.push(event);
            }
            responses.push((piece, false));
            continue;
        }
        current_size += size;
        current.extend(group);
    }
    if !current.is_empty() {
        responses.push((current, false));
    }
    responses
}

struct Forwarder {
    task: JoinHandle<()>,
    /// Every event up to this revision has been sent on the stream.
    forwarded: Arc<AtomicI64>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tonic::async_trait]
impl pb::watch_server::Watch for Etcd {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let subject = self.subject(&request).await?;
        let inbound = request.into_inner();
        let (outbound, receiver) = mpsc::channel(256);
        tokio::spawn(self.clone().run_stream(subject, inbound, outbound));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}

impl Etcd {
    /// Serves one watch stream until the client closes it.
    async fn run_stream(
        self,
        subject: Option<Subject>,
        mut inbound: Streaming<pb::WatchRequest>,
        outbound: Outbound,
    ) {
        use pb::watch_request::RequestUnion;
        let mut watches: HashMap<i64, Forwarder> = HashMap::new();
        let mut next_id = 0;
        while let Ok(Some(request)) = inbound.message().await {
            let answer = match request.request_union {
                Some(RequestUnion::CreateRequest(create)) => {
                    self.create(&subject, create, &mut watches, &mut next_id, &outbound)
                        .await
                }
                Some(RequestUnion::CancelRequest(cancel)) => match watches.remove(&cancel.watch_id)
                {
                    Some(forwarder) => {
                        drop(forwarder);
                        Some(self.answer(cancel.watch_id, |r| r.canceled = true).await)
                    }
                    None => None,
                },
                Some(RequestUnion::ProgressRequest(_)) => {
                    self.progress(&watches, outbound.clone()).await;
                    None
                }
                None => None,
            };
            if let Some(answer) = answer
                && outbound.send(answer).await.is_err()
            {
                break;
            }
        }
    }

    /// A response for `watch_id` at the current revision, shaped by `fill`.
    async fn answer(
        &self,
        watch_id: i64,
        fill: impl FnOnce(&mut pb::WatchResponse),
    ) -> Result<pb::WatchResponse, Status> {
        let revision = self.current_revision().await?;
        let mut response = pb::WatchResponse {
            header: self.headers.at(revision),
            watch_id,
            ..Default::default()
        };
        fill(&mut response);
        Ok(response)
    }

    /// Starts a watch; answers what is left to answer after "created".
    async fn create(
        &self,
        subject: &Option<Subject>,
        create: pb::WatchCreateRequest,
        watches: &mut HashMap<i64, Forwarder>,
        next_id: &mut i64,
        outbound: &Outbound,
    ) -> Option<Result<pb::WatchResponse, Status>> {
        let id = if create.watch_id != 0 {
            if watches.contains_key(&create.watch_id) {
                return Some(
                    self.answer(create.watch_id, |r| {
                        r.created = true;
                        r.canceled = true;
                        r.cancel_reason = "etcdserver: duplicate watch ID".into();
                    })
                    .await,
                );
            }
            create.watch_id
        } else {
            while watches.contains_key(next_id) {
                *next_id += 1;
            }
            *next_id
        };
        let range = KeyRange {
            key: create.key,
            range_end: create.range_end,
        };
        if let Err(denied) = check(subject, Access::Read, &range) {
            let reason = denied.message().to_owned();
            return Some(
                self.answer(id, |r| {
                    r.created = true;
                    r.canceled = true;
                    r.cancel_reason = reason;
                })
                .await,
            );
        }
        let no_put = create.filters.contains(&(FilterType::Noput as i32));
        let no_delete = create.filters.contains(&(FilterType::Nodelete as i32));
        let started = self
            .store
            .watch(WatchRequest {
                range,
                start_revision: create.start_revision.max(0),
                prev_kv: create.prev_kv,
            })
            .await;
        // "created" goes out before any event of the watch.
        let created = self.answer(id, |r| r.created = true).await;
        if outbound.send(created).await.is_err() {
            return None;
        }
        match started {
            Ok(watch) => {
                let forwarded = Arc::new(AtomicI64::new(watch.position()));
                let options = ForwardOptions {
                    id,
                    no_put,
                    no_delete,
                    fragment: create.fragment,
                    progress_notify: create.progress_notify,
                };
                let task = tokio::spawn(self.clone().forward(
                    options,
                    watch,
                    forwarded.clone(),
                    outbound.clone(),
                ));
                watches.insert(id, Forwarder { task, forwarded });
                None
            }
            Err(error) => Some(self.cancelled(id, error).await),
        }
    }

    /// The answer that ends a watch because of `error`.
    async fn cancelled(&self, id: i64, error: StoreError) -> Result<pb::WatchResponse, Status> {
        let compact_revision = match &error {
            StoreError::Compacted {
                compact_revision, ..
            } => *compact_revision,
            _ => 0,
        };
        let reason = status(error).message().to_owned();
        self.answer(id, |r| {
            r.canceled = true;
            r.compact_revision = compact_revision;
            r.cancel_reason = reason;
        })
        .await
    }

    /// Sends one watch's events on the stream until it ends.
    async fn forward(
        self,
        options: ForwardOptions,
        mut watch: Watch,
        forwarded: Arc<AtomicI64>,
        outbound: Outbound,
    ) {
        let mut last_sent = tokio::time::Instant::now();
        loop {
            // Read the position before finding the watch empty: together
            // they prove everything up to it has been forwarded.
            let position = watch.position();
            let item = match watch.try_next() {
                Ok(Some(item)) => Some(item),
                Ok(None) => {
                    forwarded.fetch_max(position, Ordering::SeqCst);
                    if !options.progress_notify {
                        watch.next().await
                    } else {
                        let idle_until = last_sent + self.progress_every;
                        match tokio::time::timeout_at(idle_until, watch.next()).await {
                            Ok(item) => item,
                            Err(_) => {
                                // Idle for a whole interval: say how far the
                                // watch has come.
                                let synced = forwarded.load(Ordering::SeqCst);
                                let response = pb::WatchResponse {
                                    header: self.headers.at(synced),
                                    watch_id: options.id,
                                    ..Default::default()
                                };
                                if outbound.send(Ok(response)).await.is_err() {
                                    return;
                                }
                                last_sent = tokio::time::Instant::now();
                                continue;
                            }
                        }
                    }
                }
                Err(()) => None,
            };
            let events = match item {
                Some(Ok(events)) => events,
                Some(Err(error)) => {
                    let _ = outbound.send(self.cancelled(options.id, error).await).await;
                    return;
                }
                None => return,
            };
            let Some(last) = events.last().map(|e| e.revision()) else {
                continue;
            };
            let events: Vec<_> = events
                .into_iter()
                .filter(|e| {
                    !(options.no_put && e.kind == EventKind::Put
                        || options.no_delete && e.kind == EventKind::Delete)
                })
                .collect();
            for (events, fragment) in split_response(events, options.fragment) {
                let revision = events.last().map_or(last, |e| e.revision());
                let response = pb::WatchResponse {
                    header: self.headers.at(revision),
                    watch_id: options.id,
                    events: events.into_iter().map(convert::event_to_pb).collect(),
                    fragment,
                    ..Default::default()
                };
                if outbound.send(Ok(response)).await.is_err() {
                    return;
                }
                last_sent = tokio::time::Instant::now();
            }
            forwarded.fetch_max(last, Ordering::SeqCst);
        }
    }

    /// Answers a progress request once every watch has forwarded all events
    /// up to the current revision.
    async fn progress(&self, watches: &HashMap<i64, Forwarder>, outbound: Outbound) {
        let revision: Revision = match self.current_revision().await {
            Ok(revision) => revision,
            Err(error) => {
                let _ = outbound.send(Err(error)).await;
                return;
            }
        };
        let positions: Vec<Arc<AtomicI64>> =
            watches.values().map(|w| w.forwarded.clone()).collect();
        let headers = self.headers;
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + PROGRESS_WAIT;
            while positions
                .iter()
                .any(|p| p.load(Ordering::SeqCst) < revision)
            {
                if tokio::time::Instant::now() > deadline {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let response = pb::WatchResponse {
                header: headers.at(revision),
                watch_id: NO_WATCH,
                ..Default::default()
            };
            let _ = outbound.send(Ok(response)).await;
        });
    }
}
