//! Watch delivery: the hub that broadcasts committed events in revision order,
//! the publisher that feeds it (from this process's writer, and from the log
//! when another process has written), and the per-watch task.
//!
//! The invariant: the hub publishes every revision exactly once, in order.
//! `published` is raised *before* a batch is broadcast, so a watcher that
//! subscribes and then reads `published` either finds a batch in the log or
//! receives it from the broadcast; it can never fall between the two.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::db::{Db, LogEventRow, NOTIFY_CHANNEL};
use super::error::{StoreError, StoreResult};
use super::metrics::StoreMetrics;
use super::types::{Event, EventKind, KeyRange, KeyValue, Revision, WatchRequest};

/// How many batches the broadcast holds before a slow watcher lags and has
/// to catch up from the log. The broadcast keeps that many batches (with
/// their values, before and after) alive even when every watcher has read
/// them, so this is memory: under load a batch carries about a hundred
/// events, and 128 batches are a few seconds of slack for watchers within
/// the process.
const BROADCAST_CAPACITY: usize = 128;

/// How many revisions one catch-up read from the log covers.
const CATCH_UP_PAGE: i64 = 1000;

/// How often the publisher checks the log in case a notification was lost
/// (a dropped listener connection, or SQLite shared by two processes).
const SAFETY_POLL: Duration = Duration::from_secs(1);

/// Every event of the revisions `[first_revision, last_revision]`, in order.
#[derive(Debug)]
pub(crate) struct CommittedBatch {
    pub first_revision: Revision,
    pub last_revision: Revision,
    pub events: Vec<Event>,
}

/// What the publisher is told.
pub(crate) enum PublisherInput {
    /// This process's writer committed a batch.
    Local(Arc<CommittedBatch>),
    /// Another process committed up to this revision.
    Remote(Revision),
}

/// The broadcast of committed events within one process.
pub(crate) struct Hub {
    sender: broadcast::Sender<Arc<CommittedBatch>>,
    published: AtomicI64,
}

impl Hub {
    pub(crate) fn new(revision: Revision) -> Self {
        let (sender, _) = broadcast::channel(BROADCAST_CAPACITY);
        Hub {
            sender,
            published: AtomicI64::new(revision),
        }
    }

    /// The newest revision whose events have all been broadcast.
    pub(crate) fn published(&self) -> Revision {
        self.published.load(Ordering::SeqCst)
    }

    fn publish(&self, batch: Arc<CommittedBatch>) {
        self.published.store(batch.last_revision, Ordering::SeqCst);
        // No receivers is fine: nobody is watching.
        let _ = self.sender.send(batch);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<CommittedBatch>> {
        self.sender.subscribe()
    }
}

/// Feeds the hub, in revision order, until `shutdown`.
pub(crate) async fn run_publisher(
    db: Db,
    hub: Arc<Hub>,
    mut input: mpsc::UnboundedReceiver<PublisherInput>,
    shutdown: CancellationToken,
) {
    let mut poll = tokio::time::interval(SAFETY_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let result = tokio::select! {
            () = shutdown.cancelled() => break,
            next = input.recv() => match next {
                None => break,
                Some(PublisherInput::Local(batch)) => publish_local(&db, &hub, batch).await,
                Some(PublisherInput::Remote(revision)) => fill_from_log(&db, &hub, revision).await,
            },
            _ = poll.tick() => match db.meta().await {
                Ok(meta) => fill_from_log(&db, &hub, meta.revision).await,
                Err(error) => Err(error),
            },
        };
        if let Err(error) = result {
            // The next notification or poll retries from the same point.
            tracing::warn!(%error, "reading the revision log for watchers failed");
        }
    }
    tracing::debug!("watch publisher stopped");
}

async fn publish_local(db: &Db, hub: &Hub, batch: Arc<CommittedBatch>) -> StoreResult<()> {
    let published = hub.published();
    if batch.last_revision <= published {
        return Ok(());
    }
    if batch.first_revision > published + 1 {
        // Another process committed in between; its rows are in the log
        // because its commit released the write lock this batch then took.
        fill_from_log(db, hub, batch.first_revision - 1).await?;
    }
    let published = hub.published();
    if batch.first_revision == published + 1 {
        hub.publish(batch);
    } else if batch.last_revision > published {
        fill_from_log(db, hub, batch.last_revision).await?;
    }
    Ok(())
}

/// Publishes revisions `(published, upto]` from the log.
async fn fill_from_log(db: &Db, hub: &Hub, upto: Revision) -> StoreResult<()> {
    let everything = KeyRange::between(Vec::new(), vec![0]);
    while hub.published() < upto {
        let from = hub.published() + 1;
        let to = upto.min(from + CATCH_UP_PAGE - 1);
        let rows = db.log_events(from, to, &everything, true).await?;
        let events = rows.into_iter().map(event_of_row).collect();
        hub.publish(Arc::new(CommittedBatch {
            first_revision: from,
            last_revision: to,
            events,
        }));
    }
    Ok(())
}

/// Forwards other processes' commit notifications to the publisher, until
/// `shutdown`. Reconnects after a lost connection.
pub(crate) async fn run_pg_listener(
    pool: sqlx::PgPool,
    server_id: String,
    publisher: mpsc::UnboundedSender<PublisherInput>,
    shutdown: CancellationToken,
) {
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            loop {
                let notification = listener.recv().await?;
                let Some((origin, revision)) = notification.payload().split_once(':') else {
                    continue;
                };
                if origin == server_id {
                    continue;
                }
                if let Ok(revision) = revision.parse()
                    && publisher.send(PublisherInput::Remote(revision)).is_err()
                {
                    return Ok::<(), sqlx::Error>(());
                }
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            result = listener => match result {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, "store notification listener lost its connection; reconnecting");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    }
}

/// Turns a log row into the event a watcher sees.
pub(crate) fn event_of_row(row: LogEventRow) -> Event {
    let prev_kv = match (
        row.prev_mod_revision,
        row.prev_create_revision,
        row.prev_version,
    ) {
        (Some(mod_revision), Some(create_revision), Some(version)) => Some(KeyValue {
            key: row.key.clone(),
            create_revision,
            mod_revision,
            version,
            value: row.prev_value.unwrap_or_default(),
            lease: row.prev_lease.unwrap_or_default(),
        }),
        _ => None,
    };
    if row.deleted {
        Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: row.key,
                mod_revision: row.revision,
                ..KeyValue::default()
            },
            prev_kv,
        }
    } else {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: row.key,
                create_revision: row.create_revision,
                mod_revision: row.revision,
                version: row.version,
                value: row.value,
                lease: row.lease,
            },
            prev_kv,
        }
    }
}

/// A running watch: yields groups of events, in revision order, never
/// splitting the events of one revision across groups.
pub struct Watch {
    events: mpsc::Receiver<StoreResult<Vec<Event>>>,
    position: Arc<AtomicI64>,
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<StoreMetrics>,
}

impl Watch {
    /// The next group of events; `None` once the watch has ended. After an
    /// error the watch ends.
    pub async fn next(&mut self) -> Option<StoreResult<Vec<Event>>> {
        self.events.recv().await
    }

    /// The next group of events if one is ready: `Ok(None)` when none is
    /// waiting, `Err(())` once the watch has ended.
    #[expect(clippy::result_unit_err, reason = "the only error is \"ended\"")]
    pub fn try_next(&mut self) -> Result<Option<StoreResult<Vec<Event>>>, ()> {
        match self.events.try_recv() {
            Ok(item) => Ok(Some(item)),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(()),
        }
    }

    /// Every event of this watch up to this revision has been handed to
    /// [`Watch::next`]. Read it *before* seeing the watch empty, and the
    /// two together prove the caller has received everything up to it.
    pub fn position(&self) -> Revision {
        self.position.load(Ordering::SeqCst)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
        self.metrics.open_watches.dec();
    }
}

/// Starts a watch. The caller has checked `start_revision` against the
/// compaction point.
pub(crate) fn start_watch(
    db: Db,
    hub: Arc<Hub>,
    metrics: Arc<StoreMetrics>,
    request: WatchRequest,
) -> Watch {
    // Subscribe before reading `published`: see the module's invariant.
    let receiver = hub.subscribe();
    let next = if request.start_revision > 0 {
        request.start_revision
    } else {
        hub.published() + 1
    };
    let (sender, events) = mpsc::channel(64);
    let position = Arc::new(AtomicI64::new(next - 1));
    metrics.open_watches.inc();
    let task = tokio::spawn(run_watch(
        db,
        hub,
        metrics.clone(),
        request,
        next,
        receiver,
        sender,
        position.clone(),
    ));
    Watch {
        events,
        position,
        task,
        metrics,
    }
}

async fn run_watch(
    db: Db,
    hub: Arc<Hub>,
    metrics: Arc<StoreMetrics>,
    request: WatchRequest,
    mut next: Revision,
    mut receiver: broadcast::Receiver<Arc<CommittedBatch>>,
    sender: mpsc::Sender<StoreResult<Vec<Event>>>,
    position: Arc<AtomicI64>,
) {
    let deliver = |events: Vec<Event>| {
        let sender = &sender;
        let metrics = &metrics;
        async move {
            if events.is_empty() {
                return true;
            }
            metrics.watch_events_sent.inc_by(events.len() as u64);
            sender.send(Ok(events)).await.is_ok()
        }
    };
    loop {
        // Catch up from the log to what has been published.
        while next <= hub.published() {
            let to = hub.published().min(next + CATCH_UP_PAGE - 1);
            let page = match read_page(&db, &request, next, to).await {
                Ok(page) => page,
                Err(error) => {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            };
            if !deliver(page).await {
                return;
            }
            next = to + 1;
            position.store(to, Ordering::SeqCst);
        }
        match receiver.recv().await {
            Ok(batch) => {
                if batch.last_revision < next {
                    continue;
                }
                if batch.first_revision > next {
                    // Cannot happen while the hub keeps its invariant; the log
                    // has what is missing either way.
                    continue;
                }
                let events: Vec<Event> = batch
                    .events
                    .iter()
                    .filter(|e| e.revision() >= next && request.range.contains(&e.kv.key))
                    .map(|e| shape(e.clone(), request.prev_kv))
                    .collect();
                next = batch.last_revision + 1;
                if !deliver(events).await {
                    return;
                }
                position.store(batch.last_revision, Ordering::SeqCst);
            }
            // Too slow for the broadcast: the catch-up above reads the log.
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => {
                let _ = sender
                    .send(Err(StoreError::WatchCancelled(
                        "the store is shutting down".into(),
                    )))
                    .await;
                return;
            }
        }
    }
}

/// Reads the revisions `[from, to]` of a watch from the log, failing if the
/// log no longer holds them.
async fn read_page(
    db: &Db,
    request: &WatchRequest,
    from: Revision,
    to: Revision,
) -> StoreResult<Vec<Event>> {
    let rows = db
        .log_events(from, to, &request.range, request.prev_kv)
        .await?;
    // Compaction only removes rows below its revision, so checking after the
    // read proves the read was complete.
    let meta = db.meta().await?;
    if from < meta.compact_revision {
        return Err(StoreError::Compacted {
            requested: from,
            compact_revision: meta.compact_revision,
        });
    }
    Ok(rows
        .into_iter()
        .map(|row| shape(event_of_row(row), request.prev_kv))
        .collect())
}

fn shape(mut event: Event, prev_kv: bool) -> Event {
    if !prev_kv {
        event.prev_kv = None;
    }
    event
}
