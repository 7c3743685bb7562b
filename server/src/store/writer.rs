//! The single writer: group commit and the evaluation of every write.
//!
//! All writes of a server process go through one task. It takes every request
//! waiting in its queue, evaluates them one after another against the latest
//! state (the database as of the batch's start, overlaid with the batch's own
//! writes), and commits the whole batch in one database transaction. Each
//! request still gets its own revision and its own answer; a request that
//! fails (a lost compare, an unknown lease) leaves no trace in the batch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::db::{Db, Latest, LogRow, Meta, WriteTx, check_revision};
use super::error::{StoreError, StoreResult};
use super::metrics::StoreMetrics;
use super::types::*;
use super::watch::{CommittedBatch, PublisherInput};

/// The most requests one database transaction carries.
const MAX_BATCH: usize = 1024;

/// A write the writer task carries out.
#[derive(Debug)]
pub(crate) enum WriteCommand {
    Txn(TxnRequest),
    Compact(Revision),
    LeaseGrant {
        id: i64,
        ttl: i64,
        expires_at_ms: i64,
        owner: LeaseOwner,
    },
    /// Ends a lease and deletes its keys. With `expired_at_ms`, only if the
    /// lease's deadline is still at or before that instant (an expiry that a
    /// keep-alive did not overtake). With `owner`, only a lease of that
    /// owner: another's is answered as not found.
    LeaseRevoke {
        id: i64,
        expired_at_ms: Option<i64>,
        owner: Option<LeaseOwner>,
    },
}

/// What a [`WriteCommand`] produced.
#[derive(Debug)]
pub(crate) enum WriteOutcome {
    Txn(TxnResponse),
    Compacted {
        revision: Revision,
    },
    LeaseGranted,
    LeaseRevoked {
        revision: Revision,
    },
    /// An expiry that found the lease renewed or gone.
    LeaseKept,
}

pub(crate) struct PendingWrite {
    pub command: WriteCommand,
    pub reply: oneshot::Sender<StoreResult<WriteOutcome>>,
}

/// The writer task's state.
pub(crate) struct Writer {
    pub db: Db,
    pub queue: mpsc::Receiver<PendingWrite>,
    pub publisher: mpsc::UnboundedSender<PublisherInput>,
    pub metrics: Arc<StoreMetrics>,
    /// Written into each commit's notification so that a process can tell
    /// its own commits from other processes'.
    pub server_id: String,
}

impl Writer {
    /// Commits batches until the queue closes or `shutdown` fires; requests
    /// already queued are still committed.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let first = tokio::select! {
                biased;
                next = self.queue.recv() => next,
                () = shutdown.cancelled() => { self.queue.close(); self.queue.recv().await }
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch).await;
        }
        if self.db.backend() == super::db::Backend::Sqlite {
            // Its own connection (the shared pool is closed by the store).
            self.db.close().await;
        }
        tracing::debug!("store writer stopped");
    }

    #[tracing::instrument(skip_all, fields(requests = batch.len()))]
    async fn commit_batch(&mut self, batch: Vec<PendingWrite>) {
        let started = Instant::now();
        let (commands, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|p| (p.command, p.reply)).unzip();
        self.metrics.batch_size.observe(commands.len() as f64);
        match self.apply(&commands).await {
            Ok((outcomes, committed)) => {
                let elapsed = started.elapsed().as_secs_f64();
                if let Some(committed) = committed {
                    self.metrics.revision.set(committed.last_revision);
                    // The publisher only ends with the store, and then nobody
                    // is watching.
                    let _ = self
                        .publisher
                        .send(PublisherInput::Local(Arc::new(committed)));
                }
                for (outcome, reply) in outcomes.into_iter().zip(replies) {
                    self.metrics.write_seconds.observe(elapsed);
                    let _ = reply.send(outcome);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "write batch failed; nothing of it was committed");
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Evaluates and commits one batch. The outer error means the database
    /// failed and nothing was committed.
    async fn apply(
        &self,
        commands: &[WriteCommand],
    ) -> StoreResult<(Vec<StoreResult<WriteOutcome>>, Option<CommittedBatch>)> {
        let (mut tx, meta) = self.db.begin_write().await?;
        let mut batch = Batch::new(meta);
        let mut keys = Vec::new();
        for command in commands {
            if let WriteCommand::Txn(txn) = command {
                point_keys_of_txn(txn, &mut keys);
            }
        }
        batch.prefetch(&mut tx, keys).await?;

        let mut outcomes = Vec::with_capacity(commands.len());
        for command in commands {
            let mark = batch.mark();
            match batch.command(&mut tx, command).await {
                Ok(outcome) => {
                    batch.finish_request(mark);
                    outcomes.push(Ok(outcome));
                }
                Err(error @ (StoreError::Unavailable(_) | StoreError::Database(_))) => {
                    return Err(error);
                }
                Err(error) => {
                    batch.rollback(mark);
                    outcomes.push(Err(error));
                }
            }
        }
        // Revisions written by this batch go into the answers now that the
        // final numbering is known.
        for outcome in outcomes.iter_mut().flatten() {
            if let WriteOutcome::Txn(response) = outcome {
                let revision = response.revision;
                set_revision(response, revision);
            }
        }

        let mut live = Vec::new();
        let mut gone = Vec::new();
        for key in &batch.touched {
            match batch.cache.get(key).and_then(Option::as_ref) {
                Some(l) => live.push((key.clone(), l.kv.mod_revision, l.sub, l.kv.lease)),
                None => gone.push(key.clone()),
            }
        }
        let wrote = batch.meta.revision > meta.revision;
        let notify = wrote.then(|| format!("{}:{}", self.server_id, batch.meta.revision));
        // Even a batch that changed no key commits: lease grants are rows too.
        tx.finish(
            &batch.log[batch.flushed..],
            &live,
            &gone,
            batch.meta,
            notify,
        )
        .await?;
        let committed = wrote.then(|| CommittedBatch {
            first_revision: meta.revision + 1,
            last_revision: batch.meta.revision,
            events: batch.events,
        });
        Ok((outcomes, committed))
    }
}

/// Gives every answer inside a transaction the transaction's revision.
fn set_revision(response: &mut TxnResponse, revision: Revision) {
    response.revision = revision;
    for inner in &mut response.responses {
        match inner {
            OpResponse::Range(r) => r.revision = revision,
            OpResponse::Put(r) => r.revision = revision,
            OpResponse::Delete(r) => r.revision = revision,
            OpResponse::Txn(r) => set_revision(r, revision),
        }
    }
}

/// The single keys a transaction may touch, so that one query loads them all.
fn point_keys_of_txn(txn: &TxnRequest, keys: &mut Vec<Vec<u8>>) {
    for compare in &txn.compares {
        if compare.range.is_single() {
            keys.push(compare.range.key.clone());
        }
    }
    for op in txn.success.iter().chain(&txn.failure) {
        match op {
            Op::Put(put) => keys.push(put.key.clone()),
            Op::Delete(delete) if delete.range.is_single() => keys.push(delete.range.key.clone()),
            Op::Range(range) if range.range.is_single() && range.revision == 0 => {
                keys.push(range.range.key.clone())
            }
            Op::Txn(nested) => point_keys_of_txn(nested, keys),
            _ => {}
        }
    }
}

/// Where a request began, to undo it if it fails.
#[derive(Clone, Copy)]
struct Mark {
    log: usize,
    events: usize,
    undo: usize,
}

/// A change to the batch's view of one key, kept so it can be undone.
struct Undo {
    key: Vec<u8>,
    /// The cache entry before (None: the key was not cached).
    before: Option<Option<Latest>>,
    /// Whether the key was already written earlier in the batch.
    was_touched: bool,
}

/// One batch in progress.
struct Batch {
    /// The counters; `revision` is the last revision assigned so far.
    meta: Meta,
    /// The revision the batch started from: everything at or below it is
    /// committed and readable from the database.
    base_revision: Revision,
    /// The latest state of every key the batch has looked at:
    /// `Some(None)` known absent, `Some(Some(latest))` known present.
    cache: HashMap<Vec<u8>, Option<Latest>>,
    /// Keys written in this batch; for these the cache is the truth, for
    /// all others the database is.
    touched: BTreeSet<Vec<u8>>,
    log: Vec<LogRow>,
    /// Log rows `[0, flushed)` are already in the database transaction.
    flushed: usize,
    events: Vec<Event>,
    undo: Vec<Undo>,
    /// Leases known to exist (with their owner) or not (`None`).
    leases: HashMap<i64, Option<LeaseOwner>>,
    /// The first log row of the request being evaluated.
    request_start: usize,
}

impl Batch {
    fn new(meta: Meta) -> Self {
        Batch {
            meta,
            base_revision: meta.revision,
            cache: HashMap::new(),
            touched: BTreeSet::new(),
            log: Vec::new(),
            flushed: 0,
            events: Vec::new(),
            undo: Vec::new(),
            leases: HashMap::new(),
            request_start: 0,
        }
    }

    async fn prefetch(&mut self, tx: &mut WriteTx, mut keys: Vec<Vec<u8>>) -> StoreResult<()> {
        keys.sort_unstable();
        keys.dedup();
        for latest in tx.current_by_keys(&keys).await? {
            self.cache.insert(latest.kv.key.clone(), Some(latest));
        }
        for key in keys {
            self.cache.entry(key).or_insert(None);
        }
        Ok(())
    }

    fn mark(&mut self) -> Mark {
        self.request_start = self.log.len();
        Mark {
            log: self.log.len(),
            events: self.events.len(),
            undo: self.undo.len(),
        }
    }

    /// Closes a successful request: it used one revision if it wrote.
    fn finish_request(&mut self, mark: Mark) {
        if self.log.len() > mark.log {
            self.meta.revision += 1;
        }
        self.undo.clear();
    }

    fn rollback(&mut self, mark: Mark) {
        self.log.truncate(mark.log);
        self.events.truncate(mark.events);
        while self.undo.len() > mark.undo {
            let Some(undo) = self.undo.pop() else { break };
            match undo.before {
                Some(before) => {
                    self.cache.insert(undo.key.clone(), before);
                }
                None => {
                    self.cache.remove(&undo.key);
                }
            }
            if !undo.was_touched {
                self.touched.remove(&undo.key);
            }
        }
    }

    /// The revision the current request writes at.
    fn write_revision(&self) -> Revision {
        self.meta.revision + 1
    }

    async fn command(
        &mut self,
        tx: &mut WriteTx,
        command: &WriteCommand,
    ) -> StoreResult<WriteOutcome> {
        match command {
            WriteCommand::Txn(request) => {
                let mut response = self.txn(tx, request).await?;
                response.revision = if self.log.len() > self.request_start {
                    self.write_revision()
                } else {
                    self.meta.revision
                };
                Ok(WriteOutcome::Txn(response))
            }
            WriteCommand::Compact(revision) => self.compact(tx, *revision).await,
            WriteCommand::LeaseGrant {
                id,
                ttl,
                expires_at_ms,
                owner,
            } => {
                if self.lease_owner(tx, *id).await?.is_some() {
                    return Err(StoreError::LeaseExists(*id));
                }
                tx.insert_lease(*id, *ttl, *expires_at_ms, owner).await?;
                self.leases.insert(*id, Some(owner.clone()));
                Ok(WriteOutcome::LeaseGranted)
            }
            WriteCommand::LeaseRevoke {
                id,
                expired_at_ms,
                owner,
            } => self.revoke(tx, *id, *expired_at_ms, owner.as_ref()).await,
        }
    }

    async fn compact(&mut self, tx: &mut WriteTx, revision: Revision) -> StoreResult<WriteOutcome> {
        if revision > self.meta.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.meta.revision,
            });
        }
        if revision <= self.meta.compact_revision {
            return Err(StoreError::Compacted {
                requested: revision,
                compact_revision: self.meta.compact_revision,
            });
        }
        self.flush_log(tx).await?;
        tx.compact(revision).await?;
        self.meta.compact_revision = revision;
        Ok(WriteOutcome::Compacted {
            revision: self.meta.revision,
        })
    }

    async fn revoke(
        &mut self,
        tx: &mut WriteTx,
        id: i64,
        expired_at_ms: Option<i64>,
        owner: Option<&LeaseOwner>,
    ) -> StoreResult<WriteOutcome> {
        let lease = tx
            .lease(id)
            .await?
            .filter(|(_, _, found)| owner.is_none_or(|owner| owner == found));
        let Some((_, deadline, _)) = lease else {
            return match expired_at_ms {
                Some(_) => Ok(WriteOutcome::LeaseKept),
                None => Err(StoreError::LeaseNotFound(id)),
            };
        };
        if expired_at_ms.is_some_and(|at| deadline > at) {
            return Ok(WriteOutcome::LeaseKept);
        }
        // The keys on the lease: the database's, minus those this batch has
        // rewritten, plus those this batch attached.
        let mut attached: Vec<Latest> = tx
            .current_by_lease(id)
            .await?
            .into_iter()
            .filter(|l| !self.touched.contains(&l.kv.key))
            .collect();
        for key in &self.touched {
            if let Some(Some(l)) = self.cache.get(key)
                && l.kv.lease == id
            {
                attached.push(l.clone());
            }
        }
        attached.sort_by(|a, b| a.kv.key.cmp(&b.kv.key));
        for l in attached {
            self.write(l.kv.key.clone(), None, Some(l));
        }
        tx.delete_lease(id).await?;
        self.leases.insert(id, None);
        let revision = if self.log.len() > self.request_start {
            self.write_revision()
        } else {
            self.meta.revision
        };
        Ok(WriteOutcome::LeaseRevoked { revision })
    }

    /// The lease's owner, or `None` when it does not exist.
    async fn lease_owner(&mut self, tx: &mut WriteTx, id: i64) -> StoreResult<Option<LeaseOwner>> {
        if let Some(known) = self.leases.get(&id) {
            return Ok(known.clone());
        }
        let owner = tx.lease(id).await?.map(|(_, _, owner)| owner);
        self.leases.insert(id, owner.clone());
        Ok(owner)
    }

    async fn txn(&mut self, tx: &mut WriteTx, request: &TxnRequest) -> StoreResult<TxnResponse> {
        let mut succeeded = true;
        for compare in &request.compares {
            if !self.compare(tx, compare).await? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded {
            &request.success
        } else {
            &request.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match op {
                Op::Range(range) => OpResponse::Range(self.range(tx, range).await?),
                Op::Put(put) => OpResponse::Put(self.put(tx, put).await?),
                Op::Delete(delete) => OpResponse::Delete(self.delete(tx, delete).await?),
                Op::Txn(nested) => OpResponse::Txn(Box::pin(self.txn(tx, nested)).await?),
            };
            responses.push(response);
        }
        Ok(TxnResponse {
            revision: 0,
            succeeded,
            responses,
        })
    }

    async fn compare(&mut self, tx: &mut WriteTx, compare: &Compare) -> StoreResult<bool> {
        let kvs: Vec<Latest> = if compare.range.is_single() {
            self.get(tx, &compare.range.key)
                .await?
                .into_iter()
                .collect()
        } else {
            self.latest_range(tx, &compare.range).await?
        };
        if kvs.is_empty() {
            // etcd compares an absent key as all zeros, except that no value
            // ever equals an absent key's.
            return Ok(match compare.target {
                CompareTarget::Value(_) => false,
                _ => compare_kv(compare, &KeyValue::default()),
            });
        }
        Ok(kvs.iter().all(|l| compare_kv(compare, &l.kv)))
    }

    /// The latest version of one key, as this batch sees it.
    async fn get(&mut self, tx: &mut WriteTx, key: &[u8]) -> StoreResult<Option<Latest>> {
        if let Some(known) = self.cache.get(key) {
            return Ok(known.clone());
        }
        let found = tx.current_by_keys(&[key.to_vec()]).await?.pop();
        self.cache.insert(key.to_vec(), found.clone());
        Ok(found)
    }

    /// The latest versions of the live keys in `range`, as this batch sees
    /// them: the database's, overlaid with the batch's own writes.
    async fn latest_range(
        &mut self,
        tx: &mut WriteTx,
        range: &KeyRange,
    ) -> StoreResult<Vec<Latest>> {
        let mut kvs: Vec<Latest> = tx
            .current_range(range)
            .await?
            .into_iter()
            .filter(|l| !self.touched.contains(&l.kv.key))
            .collect();
        let start = Bound::Included(range.start_bound().to_vec());
        let end = range.end_bound().map_or(Bound::Unbounded, Bound::Excluded);
        let mut overlaid = false;
        for key in self.touched.range((start, end)) {
            if let Some(Some(l)) = self.cache.get(key) {
                kvs.push(l.clone());
                overlaid = true;
            }
        }
        if overlaid {
            kvs.sort_by(|a, b| a.kv.key.cmp(&b.kv.key));
        }
        Ok(kvs)
    }

    async fn range(
        &mut self,
        tx: &mut WriteTx,
        request: &RangeRequest,
    ) -> StoreResult<RangeResponse> {
        let current = if self.log.len() > self.request_start {
            self.write_revision()
        } else {
            self.meta.revision
        };
        let mut kvs: Vec<KeyValue> = if request.revision == 0 || request.revision >= current {
            check_revision(
                request.revision,
                Meta {
                    revision: current,
                    ..self.meta
                },
            )?;
            let latest: Vec<Latest> = if request.range.is_single() {
                self.get(tx, &request.range.key)
                    .await?
                    .into_iter()
                    .collect()
            } else {
                self.latest_range(tx, &request.range).await?
            };
            latest.into_iter().map(|l| l.kv).collect()
        } else if request.revision > self.base_revision {
            // One of this batch's own revisions: the database as of the
            // batch's start with the batch's completed writes up to it.
            check_revision(request.revision, self.meta)?;
            let mut at: BTreeMap<Vec<u8>, KeyValue> = tx
                .current_range(&request.range)
                .await?
                .into_iter()
                .map(|l| (l.kv.key.clone(), l.kv))
                .collect();
            let written = self.log[..self.request_start]
                .iter()
                .filter(|row| row.revision <= request.revision)
                .filter(|row| request.range.contains(&row.key));
            for row in written {
                if row.deleted {
                    at.remove(&row.key);
                } else {
                    at.insert(row.key.clone(), row.version_written());
                }
            }
            at.into_values().collect()
        } else {
            check_revision(request.revision, self.meta)?;
            tx.range_at(&request.range, request.revision).await?
        };
        let count = kvs.len() as i64;
        let mut more = false;
        if request.count_only {
            kvs.clear();
        } else if request.limit > 0 && kvs.len() as i64 > request.limit {
            kvs.truncate(request.limit as usize);
            more = true;
        }
        if request.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        Ok(RangeResponse {
            revision: current,
            kvs,
            more,
            count,
        })
    }

    async fn put(&mut self, tx: &mut WriteTx, put: &PutRequest) -> StoreResult<PutResponse> {
        let prev = self.get(tx, &put.key).await?;
        if (put.ignore_value || put.ignore_lease) && prev.is_none() {
            return Err(StoreError::NotFound {
                key: StoreError::key_string(&put.key),
            });
        }
        let lease = match (&prev, put.ignore_lease) {
            (Some(prev), true) => prev.kv.lease,
            _ => put.lease,
        };
        // A lease kept by `ignore_lease` was attached before and stays.
        let required_owner = put.lease_owner.as_ref().filter(|_| !put.ignore_lease);
        if lease != 0 {
            let owner = self.lease_owner(tx, lease).await?;
            let attachable = match (&owner, required_owner) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(owner), Some(required)) => owner == required,
            };
            if !attachable {
                return Err(StoreError::LeaseNotFound(lease));
            }
        }
        let value = match (&prev, put.ignore_value) {
            (Some(prev), true) => prev.kv.value.clone(),
            _ => put.value.clone(),
        };
        let revision = self.write_revision();
        let kv = KeyValue {
            key: put.key.clone(),
            create_revision: prev.as_ref().map_or(revision, |p| p.kv.create_revision),
            mod_revision: revision,
            version: prev.as_ref().map_or(1, |p| p.kv.version + 1),
            value,
            lease,
        };
        let prev_kv = if put.prev_kv {
            prev.as_ref().map(|p| p.kv.clone())
        } else {
            None
        };
        self.write(put.key.clone(), Some(kv), prev);
        Ok(PutResponse { revision, prev_kv })
    }

    async fn delete(
        &mut self,
        tx: &mut WriteTx,
        delete: &DeleteRequest,
    ) -> StoreResult<DeleteResponse> {
        let existing: Vec<Latest> = if delete.range.is_single() {
            self.get(tx, &delete.range.key).await?.into_iter().collect()
        } else {
            self.latest_range(tx, &delete.range).await?
        };
        let deleted = existing.len() as i64;
        for l in &existing {
            self.write(l.kv.key.clone(), None, Some(l.clone()));
        }
        let revision = if deleted > 0 {
            self.write_revision()
        } else {
            self.meta.revision
        };
        Ok(DeleteResponse {
            revision,
            deleted,
            prev_kvs: if delete.prev_kv {
                existing.into_iter().map(|l| l.kv).collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Records one change: a log row, an event, and the batch's new view.
    fn write(&mut self, key: Vec<u8>, new: Option<KeyValue>, prev: Option<Latest>) {
        let revision = self.write_revision();
        let sub = (self.log.len() - self.request_start) as i32;
        self.log.push(LogRow {
            revision,
            sub,
            key: key.clone(),
            create_revision: new.as_ref().map_or(0, |kv| kv.create_revision),
            prev_revision: prev.as_ref().map_or(0, |p| p.kv.mod_revision),
            prev_sub: prev.as_ref().map_or(0, |p| p.sub),
            version: new.as_ref().map_or(0, |kv| kv.version),
            lease: new.as_ref().map_or(0, |kv| kv.lease),
            value: new.as_ref().map_or_else(Vec::new, |kv| kv.value.clone()),
            deleted: new.is_none(),
        });
        let prev = prev.map(|p| p.kv);
        let event = match &new {
            Some(kv) => Event {
                kind: EventKind::Put,
                kv: kv.clone(),
                prev_kv: prev,
            },
            None => Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key.clone(),
                    mod_revision: revision,
                    ..KeyValue::default()
                },
                prev_kv: prev,
            },
        };
        self.events.push(event);
        let was_touched = !self.touched.insert(key.clone());
        let before = self
            .cache
            .insert(key.clone(), new.map(|kv| Latest { kv, sub }));
        self.undo.push(Undo {
            key,
            before,
            was_touched,
        });
    }

    /// Writes the log rows of completed requests into the database
    /// transaction, so that statements over the log see them.
    async fn flush_log(&mut self, tx: &mut WriteTx) -> StoreResult<()> {
        let upto = self.request_start;
        if upto > self.flushed {
            tx.insert_log(&self.log[self.flushed..upto]).await?;
            self.flushed = upto;
        }
        Ok(())
    }
}

/// Whether one key satisfies a compare.
pub(crate) fn compare_kv(compare: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ordering: Ordering = match &compare.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::CreateRevision(r) => kv.create_revision.cmp(r),
        CompareTarget::ModRevision(r) => kv.mod_revision.cmp(r),
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
        CompareTarget::Lease(l) => kv.lease.cmp(l),
    };
    match compare.op {
        CompareOp::Equal => ordering == Ordering::Equal,
        CompareOp::NotEqual => ordering != Ordering::Equal,
        CompareOp::Greater => ordering == Ordering::Greater,
        CompareOp::Less => ordering == Ordering::Less,
    }
}
