//! The audit log's writer: requests hand their records to [`AuditLog`] and
//! go on; one background task writes whatever has queued up in a single
//! batch, so no request waits for an insert and SQLite's one writer is not
//! asked for one transaction per request.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::store::audit::{AuditEntry, AuditQuery, AuditRecord};
use crate::store::{Store, StoreResult};

/// The most records written in one statement; a longer queue is written in
/// several batches, in order.
const MAX_BATCH: usize = 1000;

/// How long the writer waits before trying a failed batch again (once): long
/// enough for a busy database or a dropped connection to come back.
const RETRY_DELAY: Duration = Duration::from_millis(250);

/// What the writer task receives, in the order it was sent.
enum Message {
    Record(AuditRecord),
    /// Answered once every record sent before it has been written.
    Flush(oneshot::Sender<()>),
}

/// A handle to the audit log; cheap to clone, shared by every handler.
#[derive(Clone, Debug)]
pub struct AuditLog {
    queue: mpsc::UnboundedSender<Message>,
    store: Store,
}

impl AuditLog {
    /// Starts the task that writes records to `store`. It runs until
    /// `shutdown`, then writes what is still queued and ends; the store must
    /// stay open until the returned handle completes.
    pub fn start(store: Store, shutdown: CancellationToken) -> (AuditLog, JoinHandle<()>) {
        let (queue, input) = mpsc::unbounded_channel();
        let task = tokio::spawn(run_writer(store.clone(), input, shutdown));
        (AuditLog { queue, store }, task)
    }

    /// Queues `record` for writing and returns at once.
    pub fn record(&self, record: AuditRecord) {
        if let Err(mpsc::error::SendError(Message::Record(record))) =
            self.queue.send(Message::Record(record))
        {
            tracing::warn!(
                verb = %record.verb,
                user = %record.user_email,
                "the audit log has shut down; an audit record was not written"
            );
        }
    }

    /// Waits until every record queued before this call has been written (or
    /// has failed to be, which the writer logs).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).is_ok() {
            // An error means the writer ended; there is nothing left to wait for.
            let _ = written.await;
        }
    }

    /// One page of a tenant's audit log, newest first, including every
    /// record queued before the call.
    pub async fn page(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        self.flush().await;
        self.store.audit_page(query).await
    }
}

/// Writes queued records in batches until `shutdown`, then writes the rest.
async fn run_writer(
    store: Store,
    mut input: mpsc::UnboundedReceiver<Message>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => break,
            message = input.recv() => message,
        };
        // No message means every handle is gone, and the queue with them.
        let Some(first) = first else { return };
        let mut batch = Batch::default();
        batch.push(first);
        batch.fill(&mut input);
        batch.write(&store).await;
    }
    // Refuse new records, so the queue below is all there is to write.
    input.close();
    loop {
        let mut batch = Batch::default();
        batch.fill(&mut input);
        if batch.is_empty() {
            break;
        }
        batch.write(&store).await;
    }
    tracing::debug!("the audit log writer stopped");
}

/// Records to write together, and the flushes waiting for them.
#[derive(Default)]
struct Batch {
    records: Vec<AuditRecord>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Batch {
    fn push(&mut self, message: Message) {
        match message {
            Message::Record(record) => self.records.push(record),
            Message::Flush(done) => self.flushes.push(done),
        }
    }

    /// Takes what is queued already, without waiting for more.
    fn fill(&mut self, input: &mut mpsc::UnboundedReceiver<Message>) {
        while self.records.len() < MAX_BATCH {
            match input.try_recv() {
                Ok(message) => self.push(message),
                Err(_) => break,
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.flushes.is_empty()
    }

    /// Writes the records, trying once more after a failure, then answers
    /// the flushes.
    async fn write(self, store: &Store) {
        if let Err(error) = store.append_audit(&self.records).await {
            tracing::error!(%error, records = self.records.len(), "writing audit records failed; retrying");
            tokio::time::sleep(RETRY_DELAY).await;
            if let Err(error) = store.append_audit(&self.records).await {
                tracing::error!(%error, records = self.records.len(), "writing audit records failed again; they are lost");
            }
        }
        for done in self.flushes {
            // The flushing caller may have given up; that is its business.
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use crate::store::audit::MAX_AUDIT_PAGE;

    fn record(tenant: &str, user: &str, verb: &str, kind: &str, name: &str) -> AuditRecord {
        AuditRecord {
            at_ms: 1_700_000_000_000,
            user_id: Some(1),
            user_email: user.into(),
            tenant: Some(tenant.into()),
            verb: verb.into(),
            kind: Some(kind.into()),
            name: Some(name.into()),
            code: 201,
            source: "127.0.0.1:4000".into(),
        }
    }

    fn query(tenant: &str) -> AuditQuery {
        AuditQuery {
            tenant: tenant.into(),
            user_email: None,
            kind: None,
            before_id: None,
            limit: 100,
        }
    }

    fn names(entries: &[AuditEntry]) -> Vec<&str> {
        entries
            .iter()
            .map(|e| e.name.as_deref().unwrap_or("-"))
            .collect()
    }

    #[tokio::test]
    async fn a_page_shows_one_tenants_entries_newest_first_and_filters_by_user_and_kind() {
        let (_dir, store) = crate::store::temporary().await;
        let shutdown = CancellationToken::new();
        let (audit, task) = AuditLog::start(store.clone(), shutdown.clone());
        audit.record(record("acme", "ann@acme.io", "create", "Deployment", "web"));
        audit.record(record("acme", "bob@acme.io", "create", "Service", "web"));
        audit.record(record(
            "other",
            "ann@acme.io",
            "create",
            "Deployment",
            "elsewhere",
        ));
        audit.record(record("acme", "ann@acme.io", "delete", "Service", "old"));
        audit.record(AuditRecord {
            user_id: None,
            user_email: "anonymous".into(),
            tenant: None,
            verb: "login".into(),
            kind: None,
            name: None,
            code: 401,
            ..record("", "", "", "", "")
        });

        let all = audit.page(&query("acme")).await.unwrap();
        assert_eq!(names(&all), ["old", "web", "web"]);
        assert!(all.windows(2).all(|w| w[0].id > w[1].id));
        assert_eq!(
            all[0],
            AuditEntry {
                id: all[0].id,
                at_ms: 1_700_000_000_000,
                user_id: Some(1),
                user_email: "ann@acme.io".into(),
                tenant: Some("acme".into()),
                verb: "delete".into(),
                kind: Some("Service".into()),
                name: Some("old".into()),
                code: 201,
                source: "127.0.0.1:4000".into(),
            }
        );

        let ann = audit
            .page(&AuditQuery {
                user_email: Some("ann@acme.io".into()),
                ..query("acme")
            })
            .await
            .unwrap();
        assert_eq!(names(&ann), ["old", "web"]);
        assert!(ann.iter().all(|e| e.user_email == "ann@acme.io"));

        let services = audit
            .page(&AuditQuery {
                kind: Some("Service".into()),
                ..query("acme")
            })
            .await
            .unwrap();
        assert_eq!(names(&services), ["old", "web"]);
        assert!(
            services
                .iter()
                .all(|e| e.kind.as_deref() == Some("Service"))
        );

        let ann_services = audit
            .page(&AuditQuery {
                user_email: Some("ann@acme.io".into()),
                kind: Some("Service".into()),
                ..query("acme")
            })
            .await
            .unwrap();
        assert_eq!(names(&ann_services), ["old"]);

        shutdown.cancel();
        task.await.unwrap();
        store.close().await;
    }

    #[tokio::test]
    async fn pages_follow_each_other_through_before_id_without_gaps_or_repeats() {
        let (_dir, store) = crate::store::temporary().await;
        let shutdown = CancellationToken::new();
        let (audit, task) = AuditLog::start(store.clone(), shutdown.clone());
        for i in 0..7 {
            audit.record(record(
                "acme",
                "ann@acme.io",
                "create",
                "ConfigMap",
                &format!("cm{i}"),
            ));
        }

        let mut seen = Vec::new();
        let mut before_id = None;
        let mut pages = 0;
        loop {
            let page = audit
                .page(&AuditQuery {
                    before_id,
                    limit: 3,
                    ..query("acme")
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            pages += 1;
            assert!(page.len() <= 3);
            before_id = page.last().map(|e| e.id);
            seen.extend(page.iter().map(|e| e.name.clone().unwrap()));
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, ["cm6", "cm5", "cm4", "cm3", "cm2", "cm1", "cm0"]);

        shutdown.cancel();
        task.await.unwrap();
        store.close().await;
    }

    #[tokio::test]
    async fn flush_waits_for_every_record_queued_before_it_in_order() {
        let (_dir, store) = crate::store::temporary().await;
        let shutdown = CancellationToken::new();
        let (audit, task) = AuditLog::start(store.clone(), shutdown.clone());
        // More than one batch's worth, so the flush must wait for several.
        let count = MAX_BATCH * 2 + 10;
        for i in 0..count {
            audit.record(record(
                "acme",
                "ann@acme.io",
                "apply",
                "ConfigMap",
                &i.to_string(),
            ));
        }
        audit.flush().await;

        // Read past the AuditLog, straight from the store: nothing flushes here.
        let mut seen = Vec::new();
        let mut before_id = None;
        loop {
            let page = store
                .audit_page(&AuditQuery {
                    before_id,
                    limit: MAX_AUDIT_PAGE,
                    ..query("acme")
                })
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            before_id = Some(last.id);
            seen.extend(page.into_iter().map(|e| e.name.unwrap()));
        }
        seen.reverse();
        let expected: Vec<String> = (0..count).map(|i| i.to_string()).collect();
        assert_eq!(seen, expected);

        shutdown.cancel();
        task.await.unwrap();
        store.close().await;
    }

    #[tokio::test]
    async fn shutdown_writes_what_is_queued_and_later_records_are_dropped_quietly() {
        let (_dir, store) = crate::store::temporary().await;
        let shutdown = CancellationToken::new();
        let (audit, task) = AuditLog::start(store.clone(), shutdown.clone());
        audit.record(record("acme", "ann@acme.io", "create", "Secret", "before"));
        shutdown.cancel();
        task.await.unwrap();

        audit.record(record("acme", "ann@acme.io", "create", "Secret", "after"));
        audit.flush().await;
        let entries = audit.page(&query("acme")).await.unwrap();
        assert_eq!(names(&entries), ["before"]);
        store.close().await;
    }

    #[tokio::test]
    async fn a_page_limit_outside_the_allowed_range_is_refused() {
        let (_dir, store) = crate::store::temporary().await;
        for limit in [0, -1, MAX_AUDIT_PAGE + 1] {
            let error = store
                .audit_page(&AuditQuery {
                    limit,
                    ..query("acme")
                })
                .await
                .unwrap_err();
            assert!(
                matches!(error, StoreError::InvalidRequest(_)),
                "{limit}: {error}"
            );
        }
        store.close().await;
    }
}
