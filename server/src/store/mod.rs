//! The store: an MVCC revision log with etcd's semantics, on SQLite or
//! PostgreSQL.
//!
//! - [`types`]: requests and answers, field for field as etcd's v3 API.
//! - [`error`]: the one error type.
//! - `db`: the SQL of both backends (the only module that speaks SQL).
//! - `writer`: the single writer task, group commit and write evaluation.
//! - `watch`: broadcast of committed events, catch-up from the log, and
//!   cross-process wake-ups through PostgreSQL `LISTEN/NOTIFY`.
//! - [`identity`]: users, tenants, memberships, the token signing key.
//! - [`audit`]: the audit log's table: who did what, where, with what result.
//! - [`nodes`]: the node API's join tokens and node credentials.
//! - [`metrics`]: Prometheus figures.

#[macro_use]
mod db;
pub mod audit;
pub mod error;
mod health;
pub mod identity;
pub mod metrics;
pub mod nodes;
pub mod snapshot;
pub mod types;
mod watch;
mod writer;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use db::Backend;
pub use error::{StoreError, StoreResult};
use metrics::StoreMetrics;
use types::*;
use watch::Hub;
pub use watch::Watch;

/// A store on a fresh SQLite file in a temporary directory, for unit tests;
/// the directory goes when the returned guard is dropped.
#[cfg(test)]
pub(crate) async fn temporary() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("berth.db").display());
    let store = Store::open(&url, &prometheus::Registry::new())
        .await
        .unwrap();
    (dir, store)
}
use writer::{PendingWrite, WriteCommand, WriteOutcome, Writer};

/// How often the store looks for leases past their deadline.
const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// The largest TTL a lease may have, as etcd's `MaxLeaseTTL`.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// The key every change of the accounts (a membership, a user, a tenant)
/// is announced on, for the caches of who may do what. Outside
/// `/registry/`, so that only the platform admin reaches it.
pub const ACCOUNTS_KEY: &str = "/berth/accounts";

/// A handle to the store; cheap to clone, shared by every part of the server.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: db::Db,
    /// Whether the database answers (PostgreSQL; SQLite always does).
    health: Arc<health::Health>,
    writes: mpsc::Sender<PendingWrite>,
    hub: Arc<Hub>,
    metrics: Arc<StoreMetrics>,
    shutdown: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.db.backend())
            .finish()
    }
}

impl Store {
    /// Opens the store at `url` (`sqlite://path` or `postgres://…`), brings
    /// its schema up to date, and starts its writer, watch publisher and
    /// lease expiry. Metrics are registered in `registry`.
    pub async fn open(url: &str, registry: &prometheus::Registry) -> StoreResult<Store> {
        let metrics = Arc::new(
            StoreMetrics::new(registry)
                .map_err(|e| StoreError::InvalidRequest(format!("metrics: {e}")))?,
        );
        let db = db::Db::connect(url, 16).await?;
        let meta = db.meta().await?;
        metrics.revision.set(meta.revision);
        let hub = Arc::new(Hub::new(meta.revision));
        let shutdown = CancellationToken::new();
        let server_id = format!("{:016x}", rand::random::<u64>());
        let (writes, queue) = mpsc::channel(MAX_QUEUED_WRITES);
        let (publisher, publisher_input) = mpsc::unbounded_channel();

        let mut tasks = Vec::new();
        let writer = Writer {
            db: db.for_writer(url).await?,
            queue,
            publisher: publisher.clone(),
            metrics: metrics.clone(),
            server_id: server_id.clone(),
        };
        tasks.push(tokio::spawn(writer.run(shutdown.clone())));
        tasks.push(tokio::spawn(watch::run_publisher(
            db.clone(),
            hub.clone(),
            publisher_input,
            shutdown.clone(),
        )));
        if let db::Db::Postgres(pool) = &db {
            tasks.push(tokio::spawn(watch::run_pg_listener(
                pool.clone(),
                server_id,
                publisher,
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(run_lease_expiry(
            db.clone(),
            writes.clone(),
            shutdown.clone(),
        )));
        if db.backend() == Backend::Sqlite {
            tasks.push(tokio::spawn(run_checkpointer(
                db.clone(),
                hub.clone(),
                shutdown.clone(),
            )));
        }
        let health = Arc::new(health::Health::default());
        if Backend::of_url(url) == Some(Backend::Postgres) {
            tasks.push(tokio::spawn(health::run_monitor(
                url.to_owned(),
                health.clone(),
                shutdown.clone(),
            )));
        }
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                health,
                writes,
                hub,
                metrics,
                shutdown,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// Stops the background tasks, after committing writes already queued,
    /// and closes the database pool.
    pub async fn close(&self) {
        self.inner.shutdown.cancel();
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        self.inner.db.close().await;
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        self.inner.db.backend()
    }

    /// The store's metrics.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.inner.metrics
    }

    /// Refreshes the pool figures in the metrics (called before a scrape).
    pub fn refresh_pool_metrics(&self) {
        let (size, idle) = self.inner.db.pool_usage();
        self.inner.metrics.pool_connections.set(i64::from(size));
        self.inner.metrics.pool_idle.set(idle as i64);
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        self.db()?.meta().await.map(|_| ())
    }

    /// The newest committed revision.
    pub async fn current_revision(&self) -> StoreResult<Revision> {
        Ok(self.db()?.meta().await?.revision)
    }

    /// The revision below which history has been compacted away.
    pub async fn compact_revision(&self) -> StoreResult<Revision> {
        Ok(self.db()?.meta().await?.compact_revision)
    }

    /// One key, latest (`revision == 0`) or as of `revision`.
    pub async fn get(&self, key: &[u8], revision: Revision) -> StoreResult<Option<KeyValue>> {
        let request = RangeRequest {
            range: KeyRange::single(key),
            revision,
            ..RangeRequest::default()
        };
        Ok(self.range(request).await?.kvs.pop())
    }

    /// A range of keys, read from one consistent snapshot.
    #[tracing::instrument(skip_all)]
    pub async fn range(&self, request: RangeRequest) -> StoreResult<RangeResponse> {
        check_key(&request.range.key)?;
        if request.limit < 0 {
            return Err(StoreError::InvalidRequest(format!(
                "limit {} is negative",
                request.limit
            )));
        }
        if request.revision < 0 {
            return Err(StoreError::InvalidRequest(format!(
                "revision {} is negative",
                request.revision
            )));
        }
        let limit = (request.limit > 0).then_some(request.limit);
        let (meta, mut kvs, count) = self
            .db()?
            .range(
                &request.range,
                request.revision,
                limit,
                request.keys_only,
                request.count_only,
            )
            .await?;
        let more = limit.is_some_and(|l| kvs.len() as i64 > l);
        if let Some(limit) = limit {
            kvs.truncate(limit as usize);
        }
        Ok(RangeResponse {
            revision: meta.revision,
            kvs,
            more,
            count,
        })
    }

    /// Every key under `prefix`, read at one revision (the first page's,
    /// when `revision` is 0) in pages of `page` keys, handed to `each` in key
    /// order. Answers the revision read at.
    pub async fn range_prefix(
        &self,
        prefix: &[u8],
        revision: Revision,
        page: i64,
        mut each: impl FnMut(KeyValue),
    ) -> StoreResult<Revision> {
        let end = prefix_end(prefix);
        let mut start = prefix.to_vec();
        let mut revision = revision;
        loop {
            let response = self
                .range(RangeRequest {
                    range: KeyRange::between(start.clone(), end.clone()),
                    revision,
                    limit: page,
                    ..RangeRequest::default()
                })
                .await?;
            revision = response.revision;
            let more = response.more;
            if let Some(last) = response.kvs.last() {
                start = last.key.clone();
                start.push(0);
            }
            response.kvs.into_iter().for_each(&mut each);
            if !more {
                return Ok(revision);
            }
        }
    }

    /// Writes one key.
    pub async fn put(&self, request: PutRequest) -> StoreResult<PutResponse> {
        let response = self
            .txn(TxnRequest {
                success: vec![Op::Put(request)],
                ..TxnRequest::default()
            })
            .await?;
        match response.responses.into_iter().next() {
            Some(OpResponse::Put(put)) => Ok(put),
            _ => Err(StoreError::Database(
                "put answered without a put response".into(),
            )),
        }
    }

    /// Creates `key`; fails with `Conflict` when it exists already.
    pub async fn create(&self, key: &[u8], value: Vec<u8>, lease: i64) -> StoreResult<PutResponse> {
        self.put_if(
            key,
            value,
            lease,
            CompareTarget::CreateRevision(0),
            "the key exists already",
        )
        .await
    }

    /// Replaces `key` only if its latest version is `mod_revision`; fails
    /// with `Conflict` otherwise (and `NotFound` when the key is gone).
    pub async fn update_if(
        &self,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
        mod_revision: Revision,
    ) -> StoreResult<PutResponse> {
        let result = self
            .put_if(
                key,
                value,
                lease,
                CompareTarget::ModRevision(mod_revision),
                &format!("the key changed since revision {mod_revision}"),
            )
            .await;
        match result {
            Err(StoreError::Conflict { .. }) if self.get(key, 0).await?.is_none() => {
                Err(StoreError::NotFound {
                    key: StoreError::key_string(key),
                })
            }
            other => other,
        }
    }

    async fn put_if(
        &self,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
        guard: CompareTarget,
        reason: &str,
    ) -> StoreResult<PutResponse> {
        let put = PutRequest {
            key: key.to_vec(),
            value,
            lease,
            ..PutRequest::default()
        };
        let response = self
            .txn(TxnRequest {
                compares: vec![Compare {
                    range: KeyRange::single(key),
                    op: CompareOp::Equal,
                    target: guard,
                }],
                success: vec![Op::Put(put)],
                failure: vec![],
            })
            .await?;
        if !response.succeeded {
            return Err(StoreError::Conflict {
                key: StoreError::key_string(key),
                reason: reason.into(),
            });
        }
        match response.responses.into_iter().next() {
            Some(OpResponse::Put(put)) => Ok(put),
            _ => Err(StoreError::Database(
                "put answered without a put response".into(),
            )),
        }
    }

    /// Deletes one key or a range.
    pub async fn delete(&self, request: DeleteRequest) -> StoreResult<DeleteResponse> {
        let response = self
            .txn(TxnRequest {
                success: vec![Op::Delete(request)],
                ..TxnRequest::default()
            })
            .await?;
        match response.responses.into_iter().next() {
            Some(OpResponse::Delete(delete)) => Ok(delete),
            _ => Err(StoreError::Database(
                "delete answered without a delete response".into(),
            )),
        }
    }

    /// Runs a transaction: compares, then one branch, all at one revision.
    #[tracing::instrument(skip_all)]
    pub async fn txn(&self, request: TxnRequest) -> StoreResult<TxnResponse> {
        validate_txn(&request)?;
        match self.write(WriteCommand::Txn(request)).await? {
            WriteOutcome::Txn(response) => Ok(response),
            other => Err(StoreError::Database(format!("txn answered with {other:?}"))),
        }
    }

    /// Forgets history below `revision`: reads and watches before it fail
    /// with `Compacted` from then on. Returns the current revision.
    pub async fn compact(&self, revision: Revision) -> StoreResult<Revision> {
        match self.write(WriteCommand::Compact(revision)).await? {
            WriteOutcome::Compacted { revision } => Ok(revision),
            other => Err(StoreError::Database(format!(
                "compact answered with {other:?}"
            ))),
        }
    }

    /// Watches a key or range from `start_revision` on. Fails at once with
    /// `Compacted` when that revision is gone; later failures (the watch
    /// fell behind a compaction) arrive as the stream's last item.
    pub async fn watch(&self, request: WatchRequest) -> StoreResult<Watch> {
        check_key(&request.range.key)?;
        let meta = self.db()?.meta().await?;
        if request.start_revision > 0 && request.start_revision < meta.compact_revision {
            return Err(StoreError::Compacted {
                requested: request.start_revision,
                compact_revision: meta.compact_revision,
            });
        }
        Ok(watch::start_watch(
            self.inner.db.clone(),
            self.inner.hub.clone(),
            self.inner.metrics.clone(),
            request,
        ))
    }

    /// Grants a lease of `ttl` seconds to `owner`; `id == 0` lets the store
    /// choose.
    pub async fn lease_grant(
        &self,
        id: i64,
        ttl: i64,
        owner: LeaseOwner,
    ) -> StoreResult<LeaseInfo> {
        if !(1..=MAX_LEASE_TTL).contains(&ttl) {
            return Err(StoreError::InvalidRequest(format!(
                "lease TTL {ttl} is out of range; it must be between 1 and {MAX_LEASE_TTL} seconds"
            )));
        }
        if id < 0 {
            return Err(StoreError::InvalidRequest(format!(
                "lease id {id} is negative"
            )));
        }
        let id = if id == 0 {
            rand::random_range(1..i64::MAX)
        } else {
            id
        };
        let expires_at_ms = now_ms().saturating_add(ttl.saturating_mul(1000));
        match self
            .write(WriteCommand::LeaseGrant {
                id,
                ttl,
                expires_at_ms,
                owner: owner.clone(),
            })
            .await?
        {
            WriteOutcome::LeaseGranted => Ok(LeaseInfo {
                id,
                owner,
                granted_ttl: ttl,
                remaining_ttl: ttl,
                keys: vec![],
            }),
            other => Err(StoreError::Database(format!(
                "lease grant answered with {other:?}"
            ))),
        }
    }

    /// Renews a lease to its full TTL; returns the TTL. With `owner`, a
    /// lease of another owner is answered as not found.
    pub async fn lease_keep_alive(&self, id: i64, owner: Option<&LeaseOwner>) -> StoreResult<i64> {
        self.db()?
            .renew_lease(id, now_ms(), owner)
            .await?
            .ok_or(StoreError::LeaseNotFound(id))
    }

    /// Ends a lease and deletes its keys (one revision, a DELETE event each).
    /// Returns the revision after the revoke. With `owner`, a lease of
    /// another owner is answered as not found and left alone.
    pub async fn lease_revoke(&self, id: i64, owner: Option<&LeaseOwner>) -> StoreResult<Revision> {
        match self
            .write(WriteCommand::LeaseRevoke {
                id,
                expired_at_ms: None,
                owner: owner.cloned(),
            })
            .await?
        {
            WriteOutcome::LeaseRevoked { revision } => Ok(revision),
            other => Err(StoreError::Database(format!(
                "lease revoke answered with {other:?}"
            ))),
        }
    }

    /// A lease's TTLs, and its keys when `keys` is set.
    pub async fn lease_time_to_live(&self, id: i64, keys: bool) -> StoreResult<LeaseInfo> {
        let (ttl, expires_at_ms, owner) = self
            .db()?
            .lease(id)
            .await?
            .ok_or(StoreError::LeaseNotFound(id))?;
        let remaining_ms = (expires_at_ms - now_ms()).max(0);
        let keys = if keys {
            self.db()?.lease_keys(id).await?
        } else {
            Vec::new()
        };
        Ok(LeaseInfo {
            id,
            owner,
            granted_ttl: ttl,
            // Whole seconds left, rounded down as etcd does.
            remaining_ttl: remaining_ms / 1000,
            keys,
        })
    }

    /// Every lease's id and owner, by id.
    pub async fn leases(&self) -> StoreResult<Vec<(i64, LeaseOwner)>> {
        self.db()?.lease_owners().await
    }

    /// Records that this server process is alive (call it every few
    /// seconds while serving).
    pub async fn heartbeat_member(&self, member: &MemberInfo) -> StoreResult<()> {
        self.db()?.heartbeat_member(member, now_ms()).await
    }

    /// The server processes that have sent a heartbeat within `max_age`.
    pub async fn members(&self, max_age: Duration) -> StoreResult<Vec<MemberInfo>> {
        self.db()?
            .members(now_ms() - max_age.as_millis() as i64)
            .await
    }

    /// Forgets a server process (as it stops).
    pub async fn remove_member(&self, id: i64) -> StoreResult<()> {
        self.db()?.remove_member(id).await
    }

    /// The alarms raised, as `(member, alarm)` pairs (etcd's alarm
    /// numbers: 1 NOSPACE, 2 CORRUPT).
    pub async fn alarms(&self) -> StoreResult<Vec<(i64, i32)>> {
        self.db()?.alarms().await
    }

    /// Raises an alarm for `member`.
    pub async fn raise_alarm(&self, member: i64, alarm: i32) -> StoreResult<()> {
        self.db()?.raise_alarm(member, alarm).await
    }

    /// Disarms the matching alarms (0 matches every member or alarm);
    /// answers those that were raised.
    pub async fn disarm_alarms(&self, member: i64, alarm: i32) -> StoreResult<Vec<(i64, i32)>> {
        self.db()?.disarm_alarms(member, alarm).await
    }

    /// The database's size and the part of it in use, in bytes.
    pub async fn size(&self) -> StoreResult<(i64, i64)> {
        self.db()?.size().await
    }

    /// Gives the database's free space back to the disk (SQLite), or
    /// nothing (PostgreSQL, whose autovacuum does it).
    pub async fn defragment(&self) -> StoreResult<()> {
        self.db()?.defragment().await
    }

    /// The database, unless it is known to be down.
    fn db(&self) -> StoreResult<&db::Db> {
        self.inner.health.check()?;
        Ok(&self.inner.db)
    }

    async fn write(&self, command: WriteCommand) -> StoreResult<WriteOutcome> {
        self.inner.health.check()?;
        let (reply, answer) = oneshot::channel();
        self.inner
            .writes
            .send(PendingWrite { command, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the store is shutting down".into()))?;
        // A write waiting when the database goes away is answered at once;
        // whether it committed is then unknown, as after any lost
        // connection.
        tokio::select! {
            answer = answer => {
                answer.map_err(|_| StoreError::Unavailable("the store writer stopped".into()))?
            }
            down = self.inner.health.gone() => Err(down),
        }
    }
}

/// How many writes may wait for the writer before callers wait to enqueue.
const MAX_QUEUED_WRITES: usize = 16 * 1024;

/// How often SQLite's write-ahead log is copied into the database file
/// while writes go on.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// Checkpoints SQLite's write-ahead log beside the writer, until
/// `shutdown`: the copying and its `fsync` of the database file happen on
/// another connection instead of inside some unlucky write's commit.
async fn run_checkpointer(db: db::Db, hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut checkpointed = hub.published();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(CHECKPOINT_INTERVAL) => {}
        }
        let published = hub.published();
        if published == checkpointed {
            continue;
        }
        match db.checkpoint().await {
            Ok(()) => checkpointed = published,
            Err(error) => tracing::debug!(%error, "write-ahead log checkpoint failed"),
        }
    }
}

/// Ends leases past their deadline, until `shutdown`.
async fn run_lease_expiry(
    db: db::Db,
    writes: mpsc::Sender<PendingWrite>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(LEASE_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        let expired = match db.expired_leases(now).await {
            Ok(expired) => expired,
            Err(error) => {
                tracing::warn!(%error, "looking for expired leases failed");
                continue;
            }
        };
        for id in expired {
            let (reply, answer) = oneshot::channel();
            let command = WriteCommand::LeaseRevoke {
                id,
                expired_at_ms: Some(now),
                owner: None,
            };
            if writes.send(PendingWrite { command, reply }).await.is_err() {
                return;
            }
            match answer.await {
                Ok(Ok(_)) => tracing::debug!(lease = id, "lease expired"),
                Ok(Err(error)) => {
                    tracing::warn!(lease = id, %error, "ending an expired lease failed")
                }
                Err(_) => return,
            }
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn check_key(key: &[u8]) -> StoreResult<()> {
    if key.is_empty() {
        Err(StoreError::EmptyKey)
    } else {
        Ok(())
    }
}

/// Refuses a transaction that is malformed before it reaches the writer:
/// empty keys, oversize values, too many operations, a key written twice.
fn validate_txn(request: &TxnRequest) -> StoreResult<()> {
    for compare in &request.compares {
        check_key(&compare.range.key)?;
    }
    for branch in [&request.success, &request.failure] {
        if branch.len() > MAX_TXN_OPS {
            return Err(StoreError::TooManyOps {
                count: branch.len(),
                limit: MAX_TXN_OPS,
            });
        }
        for op in branch {
            match op {
                Op::Range(range) => check_key(&range.range.key)?,
                Op::Put(put) => {
                    check_key(&put.key)?;
                    let size = put.key.len() + put.value.len();
                    if size > MAX_VALUE_BYTES {
                        return Err(StoreError::ValueTooLarge {
                            key: StoreError::key_string(&put.key),
                            size,
                            limit: MAX_VALUE_BYTES,
                        });
                    }
                    if put.ignore_value && !put.value.is_empty() {
                        return Err(StoreError::InvalidRequest(
                            "value is provided with ignore_value".into(),
                        ));
                    }
                    if put.ignore_lease && put.lease != 0 {
                        return Err(StoreError::InvalidRequest(
                            "lease is provided with ignore_lease".into(),
                        ));
                    }
                }
                Op::Delete(delete) => check_key(&delete.range.key)?,
                Op::Txn(nested) => validate_txn(nested)?,
            }
        }
    }
    writes_of_txn(request).map(|_| ())
}

/// The keys a transaction may put and the ranges it may delete (over both
/// branches), failing when one branch writes a key twice.
fn writes_of_txn(request: &TxnRequest) -> StoreResult<(HashSet<Vec<u8>>, Vec<KeyRange>)> {
    let mut puts = HashSet::new();
    let mut deletes = Vec::new();
    for branch in [&request.success, &request.failure] {
        let (branch_puts, branch_deletes) = writes_of_branch(branch)?;
        puts.extend(branch_puts);
        deletes.extend(branch_deletes);
    }
    Ok((puts, deletes))
}

fn writes_of_branch(ops: &[Op]) -> StoreResult<(HashSet<Vec<u8>>, Vec<KeyRange>)> {
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    let mut deletes = Vec::new();
    let duplicate = |key: &[u8]| StoreError::DuplicateKey {
        key: StoreError::key_string(key),
    };
    for op in ops {
        match op {
            Op::Put(put) => {
                if !puts.insert(put.key.clone()) {
                    return Err(duplicate(&put.key));
                }
            }
            Op::Delete(delete) => deletes.push(delete.range.clone()),
            Op::Txn(nested) => {
                let (nested_puts, nested_deletes) = writes_of_txn(nested)?;
                for key in nested_puts {
                    if puts.contains(&key) {
                        return Err(duplicate(&key));
                    }
                    puts.insert(key);
                }
                deletes.extend(nested_deletes);
            }
            Op::Range(_) => {}
        }
    }
    if let Some(key) = puts
        .iter()
        .find(|key| deletes.iter().any(|range| range.contains(key)))
    {
        return Err(duplicate(key));
    }
    Ok((puts, deletes))
}
