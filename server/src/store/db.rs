//! The SQL behind the store, for SQLite and PostgreSQL. This is the only
//! module that knows either dialect; statements both databases understand
//! are written once and run on either through [`on_db!`].

use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Sqlite, SqlitePool, Transaction};

use super::error::{StoreError, StoreResult};
use super::types::{KeyRange, KeyValue, LeaseOwner, MemberInfo, Revision};

/// Runs the same statement on whichever database `$db` holds.
macro_rules! on_db {
    ($db:expr, $conn:ident => $body:expr) => {
        match $db {
            Db::Sqlite($conn) => $body,
            Db::Postgres($conn) => $body,
        }
    };
}

/// Runs the same statement inside whichever transaction `$tx` holds.
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            WriteTx::Sqlite($conn) => $body,
            WriteTx::Postgres($conn) => $body,
        }
    };
}

/// How long opening the store waits for PostgreSQL to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The PostgreSQL channel on which every commit announces its revision.
pub(crate) const NOTIFY_CHANNEL: &str = "berth_store";

/// A connection pool to one of the two backends.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://path`
    Sqlite,
    /// `postgres://…` or `postgresql://…`
    Postgres,
}

impl Backend {
    /// The backend of a database URL, or `None` for an unknown scheme.
    pub fn of_url(url: &str) -> Option<Backend> {
        let scheme = url.split_once(':')?.0;
        match scheme {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }
}

/// A key's latest version as read from the log.
#[derive(sqlx::FromRow)]
struct KvRow {
    key: Vec<u8>,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
    // NULL where SQLite's substr() cut an empty value.
    value: Option<Vec<u8>>,
}

impl From<KvRow> for KeyValue {
    fn from(row: KvRow) -> Self {
        KeyValue {
            key: row.key,
            create_revision: row.create_revision,
            mod_revision: row.mod_revision,
            version: row.version,
            lease: row.lease,
            value: row.value.unwrap_or_default(),
        }
    }
}

/// A live key's newest version with where it sits in the log: its
/// revision is `kv.mod_revision`, its place within the revision `sub`.
#[derive(Clone, Debug)]
pub(crate) struct Latest {
    pub kv: KeyValue,
    pub sub: i32,
}

#[derive(sqlx::FromRow)]
struct LatestSubRow {
    #[sqlx(flatten)]
    kv: KvRow,
    sub: i32,
}

impl From<LatestSubRow> for Latest {
    fn from(row: LatestSubRow) -> Self {
        Latest {
            kv: row.kv.into(),
            sub: row.sub,
        }
    }
}

/// A latest-version row joined with the counters (all key columns NULL when
/// nothing matched).
#[derive(sqlx::FromRow)]
struct LatestRow {
    header_revision: i64,
    header_compact_revision: i64,
    key: Option<Vec<u8>>,
    create_revision: Option<i64>,
    mod_revision: Option<i64>,
    version: Option<i64>,
    lease: Option<i64>,
    value: Option<Vec<u8>>,
}

impl LatestRow {
    fn into_kv(self) -> Option<KeyValue> {
        Some(KeyValue {
            key: self.key?,
            create_revision: self.create_revision?,
            mod_revision: self.mod_revision?,
            version: self.version?,
            lease: self.lease?,
            // SQLite's substr() of an empty value is NULL.
            value: self.value.unwrap_or_default(),
        })
    }
}

/// One row of the log, joined with the version it replaced.
#[derive(sqlx::FromRow)]
pub(crate) struct LogEventRow {
    pub revision: i64,
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value: Vec<u8>,
    pub deleted: bool,
    pub prev_create_revision: Option<i64>,
    pub prev_mod_revision: Option<i64>,
    pub prev_version: Option<i64>,
    pub prev_lease: Option<i64>,
    pub prev_value: Option<Vec<u8>>,
}

/// One row to append to the log.
#[derive(Clone, Debug)]
pub(crate) struct LogRow {
    pub revision: i64,
    pub sub: i32,
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub prev_revision: i64,
    pub prev_sub: i32,
    pub version: i64,
    pub lease: i64,
    pub value: Vec<u8>,
    pub deleted: bool,
}

impl LogRow {
    /// The version a put row wrote.
    pub(crate) fn version_written(&self) -> KeyValue {
        KeyValue {
            key: self.key.clone(),
            create_revision: self.create_revision,
            mod_revision: self.revision,
            version: self.version,
            lease: self.lease,
            value: self.value.clone(),
        }
    }
}

/// The store's revision counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct Meta {
    pub revision: i64,
    pub compact_revision: i64,
}

/// A value length that means "the whole value" in `substr(value, 1, n)`.
const WHOLE_VALUE: i32 = i32::MAX;

const SELECT_META: &str = "SELECT revision, compact_revision FROM store_meta WHERE id = 1";

// Range statements come in two forms, picked by `bounds()`: with an upper
// bound, and without one. (A single `$2 IS NULL OR key < $2` would keep the
// planners from bounding the index scan.)
macro_rules! two_forms {
    ($head:literal, $key:literal, $tail:literal) => {
        [
            concat!($head, $key, " >= $1 AND ", $key, " < $2", $tail),
            concat!($head, $key, " >= $1 AND $2 IS NULL", $tail),
        ]
    };
}

const RANGE_LATEST: [&str; 2] = two_forms!(
    "SELECT c.key AS key, l.create_revision, l.revision AS mod_revision, \
     l.version, l.lease, substr(l.value, 1, $3) AS value, l.sub \
     FROM kv_current c JOIN kv_log l ON l.revision = c.mod_revision AND l.sub = c.mod_sub WHERE ",
    "c.key",
    " ORDER BY c.key {limit}"
);

// The latest versions and the counters in one statement, so one snapshot
// without a transaction: the counters row is joined with the matches, and
// stands alone (with NULLs) when nothing matches.
const RANGE_LATEST_WITH_META: [&str; 2] = two_forms!(
    "SELECT m.revision AS header_revision, m.compact_revision AS header_compact_revision, \
     r.key, r.create_revision, r.mod_revision, r.version, r.lease, r.value \
     FROM store_meta m LEFT JOIN (SELECT c.key AS key, l.create_revision, l.revision AS mod_revision, \
     l.version, l.lease, substr(l.value, 1, $3) AS value \
     FROM kv_current c JOIN kv_log l ON l.revision = c.mod_revision AND l.sub = c.mod_sub WHERE ",
    "c.key",
    " ORDER BY c.key {limit}) r ON 1 = 1 WHERE m.id = 1 ORDER BY r.key"
);

const COUNT_LATEST: [&str; 2] = two_forms!("SELECT COUNT(*) FROM kv_current WHERE ", "key", "");

// A key's version as of revision $3: a key that has not changed since is as
// kv_current has it; one that has, is what its first change after $3
// replaced (absent when that change created it). Found through primary keys
// from the log's tail and kv_current, never through a key index of the log.
fn at_revision(form: usize, select: &str, tail: &str) -> String {
    let bound = |column: &str| match form {
        0 => format!("{column} >= $1 AND {column} < $2"),
        _ => format!("{column} >= $1 AND $2 IS NULL"),
    };
    format!(
        "WITH later AS (SELECT key, prev_revision, prev_sub, \
         ROW_NUMBER() OVER (PARTITION BY key ORDER BY revision) AS n \
         FROM kv_log WHERE revision > $3 AND {later}), \
         first_change AS (SELECT key, prev_revision, prev_sub FROM later WHERE n = 1), \
         at AS (SELECT c.mod_revision AS revision, c.mod_sub AS sub FROM kv_current c \
         WHERE {current} AND NOT EXISTS (SELECT 1 FROM first_change f WHERE f.key = c.key) \
         UNION ALL SELECT prev_revision, prev_sub FROM first_change WHERE prev_revision > 0) \
         {select} FROM at JOIN kv_log l ON l.revision = at.revision AND l.sub = at.sub{tail}",
        later = bound("key"),
        current = bound("c.key"),
    )
}

static RANGE_AT: LazyLock<[String; 2]> = LazyLock::new(|| {
    [0, 1].map(|form| {
        at_revision(
            form,
            "SELECT l.key, l.create_revision, l.revision AS mod_revision, \
             l.version, l.lease, substr(l.value, 1, $4) AS value",
            " ORDER BY l.key {limit}",
        )
    })
});

static COUNT_AT: LazyLock<[String; 2]> =
    LazyLock::new(|| [0, 1].map(|form| at_revision(form, "SELECT COUNT(*)", "")));

/// A range statement with its `{limit}` filled in. The limit is written into
/// the statement rather than bound: SQLite re-plans a statement whenever a
/// bound LIMIT changes, which costs more than caching one statement per
/// distinct limit.
fn with_limit(template: &str, limit: Option<i64>) -> sqlx::AssertSqlSafe<String> {
    let clause = limit.map_or_else(String::new, |n| format!("LIMIT {n}"));
    sqlx::AssertSqlSafe(template.replace("{limit}", &clause))
}

/// The form of a two-form range statement to use, and its `$1`/`$2`.
fn bounds(range: &KeyRange) -> (usize, Vec<u8>, Option<Vec<u8>>) {
    let end = range.end_bound();
    (
        usize::from(end.is_none()),
        range.start_bound().to_vec(),
        end,
    )
}

const LOG_EVENTS: &str = "SELECT l.revision, l.key, l.create_revision, l.version, l.lease, l.value, l.deleted, \
     p.create_revision AS prev_create_revision, p.revision AS prev_mod_revision, \
     p.version AS prev_version, p.lease AS prev_lease, p.value AS prev_value \
     FROM kv_log l LEFT JOIN kv_log p ON $5 AND p.revision = l.prev_revision AND p.sub = l.prev_sub \
     WHERE l.revision >= $1 AND l.revision <= $2 AND l.key >= $3 AND ($4 IS NULL OR l.key < $4) \
     ORDER BY l.revision, l.sub";

const CURRENT_BY_KEYS_PG: &str = "SELECT c.key AS key, l.create_revision, l.revision AS mod_revision, \
     l.version, l.lease, l.value, l.sub FROM kv_current c \
     JOIN kv_log l ON l.revision = c.mod_revision AND l.sub = c.mod_sub WHERE c.key = ANY($1)";

// SQLite has no array parameters. A batch's rows travel as one JSON array
// (bytes as hex) so that each statement is prepared once and runs once per
// batch, whatever the batch's size.
const CURRENT_BY_KEYS_SQLITE: &str = "SELECT c.key AS key, l.create_revision, l.revision AS mod_revision, \
     l.version, l.lease, l.value, l.sub FROM kv_current c \
     JOIN kv_log l ON l.revision = c.mod_revision AND l.sub = c.mod_sub \
     WHERE c.key IN (SELECT unhex(value) FROM json_each($1))";

const INSERT_LOG_SQLITE: &str = "INSERT INTO kv_log \
     (revision, sub, key, create_revision, prev_revision, version, lease, value, deleted, prev_sub) \
     SELECT value ->> 0, value ->> 1, unhex(value ->> 2), value ->> 3, value ->> 4, \
     value ->> 5, value ->> 6, unhex(value ->> 7), value ->> 8, value ->> 9 FROM json_each($1) WHERE true";

const UPSERT_CURRENT_SQLITE: &str = "INSERT INTO kv_current (key, mod_revision, mod_sub, lease) \
     SELECT unhex(value ->> 0), value ->> 1, value ->> 2, value ->> 3 FROM json_each($1) WHERE true \
     ON CONFLICT (key) DO UPDATE SET mod_revision = excluded.mod_revision, \
     mod_sub = excluded.mod_sub, lease = excluded.lease";

const DELETE_CURRENT_SQLITE: &str =
    "DELETE FROM kv_current WHERE key IN (SELECT unhex(value) FROM json_each($1))";

/// Lower-case hex, as SQLite's `unhex()` reads it.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

fn json(value: &impl serde::Serialize) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(format!("encoding a batch: {e}")))
}

const CURRENT_BY_LEASE: &str = "SELECT c.key AS key, l.create_revision, l.revision AS mod_revision, \
     l.version, l.lease, l.value, l.sub FROM kv_current c \
     JOIN kv_log l ON l.revision = c.mod_revision AND l.sub = c.mod_sub WHERE c.lease = $1 ORDER BY c.key";

const INSERT_LOG_PG: &str = "INSERT INTO kv_log \
     (revision, sub, key, create_revision, prev_revision, version, lease, value, deleted, prev_sub) \
     SELECT * FROM UNNEST($1::int8[], $2::int4[], $3::bytea[], $4::int8[], $5::int8[], \
     $6::int8[], $7::int8[], $8::bytea[], $9::bool[], $10::int4[])";

// The end of a PostgreSQL batch as one statement (one round trip): data-
// modifying CTEs all run, each on rows the others do not touch.
const FINISH_BATCH_PG: &str = "WITH log AS (INSERT INTO kv_log \
     (revision, sub, key, create_revision, prev_revision, version, lease, value, deleted, prev_sub) \
     SELECT * FROM UNNEST($1::int8[], $2::int4[], $3::bytea[], $4::int8[], $5::int8[], \
     $6::int8[], $7::int8[], $8::bytea[], $9::bool[], $10::int4[])), \
     live AS (INSERT INTO kv_current (key, mod_revision, mod_sub, lease) \
     SELECT * FROM UNNEST($11::bytea[], $12::int8[], $13::int4[], $14::int8[]) \
     ON CONFLICT (key) DO UPDATE SET mod_revision = excluded.mod_revision, \
     mod_sub = excluded.mod_sub, lease = excluded.lease), \
     gone AS (DELETE FROM kv_current WHERE key = ANY($15::bytea[])), \
     meta AS (UPDATE store_meta SET revision = $16, compact_revision = $17 WHERE id = 1) \
     SELECT pg_notify($18, $19) WHERE $19::text IS NOT NULL";

// Compaction keeps, for every key, its newest version at or below the
// compaction point unless that version is a delete (a delete at exactly the
// compaction point goes too, as in etcd: a watch from there starts after it).
// A version is superseded at or below $1 when a row at or below $1 names it
// as the version it replaced.
const COMPACT: &str = "DELETE FROM kv_log WHERE revision <= $1 AND (deleted OR (revision, sub) IN \
     (SELECT prev_revision, prev_sub FROM kv_log WHERE revision <= $1 AND prev_revision > 0))";

/// How every SQLite connection is opened.
fn sqlite_options(url: &str) -> StoreResult<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::InvalidRequest(format!("database url: {e}")))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // An acknowledged write must survive power loss, not only a process
        // crash.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        // Statement journals of multi-row writes stay in memory.
        .pragma("temp_store", "memory")
        // B-tree pages stay cached rather than being read back through
        // system calls.
        .pragma("cache_size", "-16384")
        .pragma("mmap_size", "268435456")
        .foreign_keys(true))
}

impl Db {
    /// The handle the writer task commits through. On SQLite, a connection
    /// of its own: each write transaction then finds the pages the last one
    /// wrote still in its cache, where a pooled connection that others
    /// wrote behind would throw its cache away and read them again. On
    /// PostgreSQL, the shared pool.
    pub(crate) async fn for_writer(&self, url: &str) -> StoreResult<Db> {
        match self {
            Db::Sqlite(_) => Ok(Db::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(sqlite_options(url)?)
                    .await?,
            )),
            Db::Postgres(_) => Ok(self.clone()),
        }
    }

    /// Connects to `url`, creating the SQLite file if needed, and brings the
    /// schema up to date.
    pub(crate) async fn connect(url: &str, max_connections: u32) -> StoreResult<Db> {
        let db = match Backend::of_url(url) {
            Some(Backend::Sqlite) => {
                let pool = SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(sqlite_options(url)?)
                    .await?;
                sqlx::migrate!("../migrations/sqlite")
                    .run(&pool)
                    .await
                    .map_err(|e| StoreError::Database(format!("migrations: {e}")))?;
                Db::Sqlite(pool)
            }
            Some(Backend::Postgres) => {
                // Every statement is planned for its own parameters. A
                // generic plan, which PostgreSQL settles on after five runs
                // of a prepared statement, is costed on the statistics of the
                // moment: on a new store's empty tables it scans the log, and
                // keeps scanning it when the log has grown (36,108 scans
                // reading 595 M rows of `kv_log` in one `bench schedule`).
                let options = PgConnectOptions::from_str(url)
                    .map_err(|e| StoreError::InvalidRequest(format!("database url: {e}")))?
                    .options([("plan_cache_mode", "force_custom_plan")]);
                // One plain connection first: the pool would keep retrying an
                // unreachable server until its acquire timeout.
                let probe =
                    tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
                        .await
                        .map_err(|_| {
                            StoreError::Unavailable(format!(
                                "no answer within {}s",
                                CONNECT_TIMEOUT.as_secs()
                            ))
                        })??;
                probe.close().await?;
                // A request waits at most 5 s for a connection: longer means
                // the database is gone or badly overloaded. An outage is
                // usually caught sooner by the health monitor, which then
                // fails requests at once.
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await?;
                sqlx::migrate!("../migrations/postgres")
                    .run(&pool)
                    .await
                    .map_err(|e| StoreError::Database(format!("migrations: {e}")))?;
                Db::Postgres(pool)
            }
            None => {
                return Err(StoreError::InvalidRequest(format!(
                    "unknown database url scheme in {url:?}; expected sqlite:// or postgres://"
                )));
            }
        };
        Ok(db)
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// (size, idle) of the connection pool.
    pub(crate) fn pool_usage(&self) -> (u32, usize) {
        on_db!(self, pool => (pool.size(), pool.num_idle()))
    }

    pub(crate) async fn close(&self) {
        on_db!(self, pool => pool.close().await)
    }

    pub(crate) async fn meta(&self) -> StoreResult<Meta> {
        Ok(on_db!(self, pool => sqlx::query_as(SELECT_META).fetch_one(pool).await?))
    }

    /// Reads a range as one consistent snapshot, with the revision it was
    /// taken at. `revision == 0` reads the latest versions.
    pub(crate) async fn range(
        &self,
        range: &KeyRange,
        revision: Revision,
        limit: Option<i64>,
        keys_only: bool,
        count_only: bool,
    ) -> StoreResult<(Meta, Vec<KeyValue>, i64)> {
        let (form, start, end) = bounds(range);
        let value_len = if keys_only { 0 } else { WHOLE_VALUE };
        // Ask for one more than the limit to learn whether there is more.
        let fetch = limit.map(|l| l.saturating_add(1));
        // The common read, the latest versions, needs no transaction unless
        // a count beyond the limit is wanted.
        if revision == 0 && !count_only {
            let sql = with_limit(RANGE_LATEST_WITH_META[form], fetch);
            let rows: Vec<LatestRow> = on_db!(self, pool => sqlx::query_as(sql)
                .bind(&start).bind(&end).bind(value_len)
                .fetch_all(pool).await?);
            let meta = rows.first().map(|row| Meta {
                revision: row.header_revision,
                compact_revision: row.header_compact_revision,
            });
            let meta = meta.ok_or_else(|| StoreError::Database("store_meta has no row".into()))?;
            let kvs: Vec<KeyValue> = rows.into_iter().filter_map(LatestRow::into_kv).collect();
            if limit.is_none_or(|l| kvs.len() as i64 <= l) {
                let count = kvs.len() as i64;
                return Ok((meta, kvs, count));
            }
        }
        on_db!(self, pool => {
            let mut tx = begin_snapshot(pool).await?;
            let meta: Meta = sqlx::query_as(SELECT_META).fetch_one(&mut *tx).await?;
            check_revision(revision, meta)?;
            let (kvs, count) = if revision == 0 || revision == meta.revision {
                let kvs: Vec<KvRow> = if count_only { Vec::new() } else {
                    sqlx::query_as(with_limit(RANGE_LATEST[form], fetch)).bind(&start).bind(&end).bind(value_len)
                        .fetch_all(&mut *tx).await?
                };
                let count = if count_only || limit.is_some_and(|l| kvs.len() as i64 > l) {
                    sqlx::query_scalar(COUNT_LATEST[form]).bind(&start).bind(&end).fetch_one(&mut *tx).await?
                } else {
                    kvs.len() as i64
                };
                (kvs, count)
            } else {
                let kvs: Vec<KvRow> = if count_only { Vec::new() } else {
                    sqlx::query_as(with_limit(&RANGE_AT[form], fetch)).bind(&start).bind(&end).bind(revision).bind(value_len)
                        .fetch_all(&mut *tx).await?
                };
                let count = if count_only || limit.is_some_and(|l| kvs.len() as i64 > l) {
                    sqlx::query_scalar(COUNT_AT[form].as_str()).bind(&start).bind(&end).bind(revision).fetch_one(&mut *tx).await?
                } else {
                    kvs.len() as i64
                };
                (kvs, count)
            };
            tx.commit().await?;
            Ok((meta, kvs.into_iter().map(KeyValue::from).collect(), count))
        })
    }

    /// The log rows with revisions in `[from, to]` whose keys fall in `range`,
    /// in commit order; with the replaced versions when `with_prev`.
    pub(crate) async fn log_events(
        &self,
        from: Revision,
        to: Revision,
        range: &KeyRange,
        with_prev: bool,
    ) -> StoreResult<Vec<LogEventRow>> {
        let start = range.start_bound().to_vec();
        let end = range.end_bound();
        Ok(on_db!(self, pool => sqlx::query_as(LOG_EVENTS)
            .bind(from).bind(to).bind(&start).bind(&end).bind(with_prev)
            .fetch_all(pool).await?))
    }

    /// The lease's (ttl, deadline, owner), if it exists.
    pub(crate) async fn lease(&self, id: i64) -> StoreResult<Option<(i64, i64, LeaseOwner)>> {
        let row: Option<(i64, i64, String)> = on_db!(self, pool => sqlx::query_as(
            "SELECT ttl, expires_at_ms, owner FROM leases WHERE id = $1")
            .bind(id).fetch_optional(pool).await?);
        Ok(row.map(|(ttl, deadline, owner)| (ttl, deadline, LeaseOwner::from_column(owner))))
    }

    /// Every lease's id and owner, by id.
    pub(crate) async fn lease_owners(&self) -> StoreResult<Vec<(i64, LeaseOwner)>> {
        let rows: Vec<(i64, String)> = on_db!(self, pool => sqlx::query_as(
            "SELECT id, owner FROM leases ORDER BY id")
            .fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(|(id, owner)| (id, LeaseOwner::from_column(owner)))
            .collect())
    }

    pub(crate) async fn lease_keys(&self, id: i64) -> StoreResult<Vec<Vec<u8>>> {
        Ok(
            on_db!(self, pool => sqlx::query_scalar("SELECT key FROM kv_current WHERE lease = $1 ORDER BY key")
            .bind(id).fetch_all(pool).await?),
        )
    }

    pub(crate) async fn expired_leases(&self, now_ms: i64) -> StoreResult<Vec<i64>> {
        Ok(on_db!(self, pool => sqlx::query_scalar(
            "SELECT id FROM leases WHERE expires_at_ms <= $1 ORDER BY expires_at_ms LIMIT 1000")
            .bind(now_ms).fetch_all(pool).await?))
    }

    /// Moves a lease's deadline to its full TTL from now; returns the TTL, or
    /// `None` when the lease does not exist, has already ended, or belongs
    /// to another than `owner` (when given).
    pub(crate) async fn renew_lease(
        &self,
        id: i64,
        now_ms: i64,
        owner: Option<&LeaseOwner>,
    ) -> StoreResult<Option<i64>> {
        Ok(on_db!(self, pool => sqlx::query_scalar(
            "UPDATE leases SET expires_at_ms = $2 + ttl * 1000 \
             WHERE id = $1 AND expires_at_ms > $2 AND ($3 OR owner = $4) RETURNING ttl")
            .bind(id).bind(now_ms).bind(owner.is_none()).bind(owner.map_or("", LeaseOwner::column))
            .fetch_optional(pool).await?))
    }

    /// Records that server process `member` is alive now.
    pub(crate) async fn heartbeat_member(
        &self,
        member: &MemberInfo,
        now_ms: i64,
    ) -> StoreResult<()> {
        on_db!(self, pool => sqlx::query(
            "INSERT INTO members (id, name, client_url, heartbeat_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms")
            .bind(member.id).bind(&member.name).bind(&member.client_url).bind(now_ms)
            .execute(pool).await.map(|_| ())?);
        Ok(())
    }

    /// The server processes seen alive since `since_ms`, oldest id first.
    pub(crate) async fn members(&self, since_ms: i64) -> StoreResult<Vec<MemberInfo>> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "SELECT id, name, client_url FROM members WHERE heartbeat_ms >= $1 ORDER BY id")
            .bind(since_ms).fetch_all(pool).await?))
    }

    pub(crate) async fn remove_member(&self, id: i64) -> StoreResult<()> {
        on_db!(self, pool => sqlx::query("DELETE FROM members WHERE id = $1")
            .bind(id).execute(pool).await.map(|_| ())?);
        Ok(())
    }

    /// The alarms raised, as `(member, alarm)` pairs, in that order.
    pub(crate) async fn alarms(&self) -> StoreResult<Vec<(i64, i32)>> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "SELECT member_id, alarm FROM alarms ORDER BY member_id, alarm")
            .fetch_all(pool).await?))
    }

    /// Raises an alarm (again: no change).
    pub(crate) async fn raise_alarm(&self, member: i64, alarm: i32) -> StoreResult<()> {
        on_db!(self, pool => sqlx::query(
            "INSERT INTO alarms (member_id, alarm) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(member).bind(alarm).execute(pool).await.map(|_| ())?);
        Ok(())
    }

    /// Disarms the alarms that match (`member` 0: every member's; `alarm`
    /// 0: every alarm); answers those that were raised.
    pub(crate) async fn disarm_alarms(
        &self,
        member: i64,
        alarm: i32,
    ) -> StoreResult<Vec<(i64, i32)>> {
        Ok(on_db!(self, pool => sqlx::query_as(
            "DELETE FROM alarms WHERE ($1 = 0 OR member_id = $1) AND ($2 = 0 OR alarm = $2) \
             RETURNING member_id, alarm")
            .bind(member).bind(alarm).fetch_all(pool).await?))
    }

    /// The database's size on disk and the part of it in use, in bytes.
    pub(crate) async fn size(&self) -> StoreResult<(i64, i64)> {
        match self {
            Db::Sqlite(pool) => {
                let (pages, free, page_size): (i64, i64, i64) = sqlx::query_as(
                    "SELECT (SELECT page_count FROM pragma_page_count()), \
                            (SELECT freelist_count FROM pragma_freelist_count()), \
                            (SELECT page_size FROM pragma_page_size())",
                )
                .fetch_one(pool)
                .await?;
                Ok((pages * page_size, (pages - free) * page_size))
            }
            Db::Postgres(pool) => {
                let (size,): (i64,) = sqlx::query_as("SELECT pg_database_size(current_database())")
                    .fetch_one(pool)
                    .await?;
                Ok((size, size))
            }
        }
    }

    /// Gives free space back: on SQLite the file is rewritten without its
    /// free pages (`VACUUM`) and the write-ahead log emptied; PostgreSQL
    /// reclaims space itself (autovacuum), so there is nothing to do.
    /// Copies the SQLite write-ahead log's committed pages into the
    /// database file without waiting for anyone (`PASSIVE`), so that the
    /// writer's own automatic checkpoint (which runs inside a commit) seldom
    /// has anything left to do. Nothing on PostgreSQL.
    pub(crate) async fn checkpoint(&self) -> StoreResult<()> {
        if let Db::Sqlite(pool) = self {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn defragment(&self) -> StoreResult<()> {
        if let Db::Sqlite(pool) = self {
            let mut connection = pool.acquire().await?;
            sqlx::query("VACUUM").execute(&mut *connection).await?;
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut *connection)
                .await?;
        }
        Ok(())
    }

    /// Opens a write transaction that holds the store's write lock until it
    /// ends, and reads the counters under that lock. Holding the lock from
    /// allocating a revision until commit is what makes revisions commit in
    /// order, also with several server processes on one PostgreSQL.
    pub(crate) async fn begin_write(&self) -> StoreResult<(WriteTx, Meta)> {
        match self {
            Db::Sqlite(pool) => {
                let mut tx = SqliteWrite::begin(pool).await?;
                let meta = sqlx::query_as(SELECT_META).fetch_one(&mut *tx).await?;
                Ok((WriteTx::Sqlite(tx), meta))
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let meta = sqlx::query_as(
                    "SELECT revision, compact_revision FROM store_meta WHERE id = 1 FOR UPDATE",
                )
                .fetch_one(&mut *tx)
                .await?;
                Ok((WriteTx::Postgres(tx), meta))
            }
        }
    }
}

async fn begin_snapshot<DB: SnapshotBegin>(
    pool: &sqlx::Pool<DB>,
) -> StoreResult<Transaction<'static, DB>> {
    Ok(pool.begin_with(DB::BEGIN_SNAPSHOT).await?)
}

/// How each backend opens a read transaction that sees one snapshot.
trait SnapshotBegin: sqlx::Database {
    const BEGIN_SNAPSHOT: &'static str;
}

impl SnapshotBegin for Sqlite {
    // In WAL mode a read transaction sees one snapshot from its first read.
    const BEGIN_SNAPSHOT: &'static str = "BEGIN DEFERRED";
}

impl SnapshotBegin for Postgres {
    const BEGIN_SNAPSHOT: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
}

/// Fails a read at a compacted or future revision.
pub(crate) fn check_revision(revision: Revision, meta: Meta) -> StoreResult<()> {
    if revision > meta.revision {
        return Err(StoreError::FutureRevision {
            requested: revision,
            current: meta.revision,
        });
    }
    if revision > 0 && revision < meta.compact_revision {
        return Err(StoreError::Compacted {
            requested: revision,
            compact_revision: meta.compact_revision,
        });
    }
    Ok(())
}

/// An open write transaction.
pub(crate) enum WriteTx {
    Sqlite(SqliteWrite),
    Postgres(Transaction<'static, Postgres>),
}

/// SQLite's write transaction (`BEGIN IMMEDIATE`) on a pooled connection.
/// One that does not commit (an error, a full disk) closes its connection
/// rather than handing it back: SQLite may have ended the transaction
/// itself, and the connection's next user must never find one open, nor
/// sqlx's count of open transactions out of step with SQLite's.
pub(crate) struct SqliteWrite {
    connection: sqlx::pool::PoolConnection<Sqlite>,
    committed: bool,
}

impl SqliteWrite {
    async fn begin(pool: &SqlitePool) -> StoreResult<SqliteWrite> {
        let mut connection = pool.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *connection)
            .await?;
        Ok(SqliteWrite {
            connection,
            committed: false,
        })
    }

    async fn commit(mut self) -> StoreResult<()> {
        sqlx::query("COMMIT").execute(&mut *self.connection).await?;
        self.committed = true;
        Ok(())
    }
}

impl std::ops::Deref for SqliteWrite {
    type Target = sqlx::SqliteConnection;

    fn deref(&self) -> &sqlx::SqliteConnection {
        &self.connection
    }
}

impl std::ops::DerefMut for SqliteWrite {
    fn deref_mut(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.connection
    }
}

impl Drop for SqliteWrite {
    fn drop(&mut self) {
        if !self.committed {
            self.connection.close_on_drop();
        }
    }
}

impl WriteTx {
    /// The latest versions of `keys` that exist.
    pub(crate) async fn current_by_keys(&mut self, keys: &[Vec<u8>]) -> StoreResult<Vec<Latest>> {
        let rows: Vec<LatestSubRow> = match self {
            WriteTx::Sqlite(tx) => {
                let keys: Vec<String> = keys.iter().map(|k| hex(k)).collect();
                sqlx::query_as(CURRENT_BY_KEYS_SQLITE)
                    .bind(json(&keys)?)
                    .fetch_all(&mut **tx)
                    .await?
            }
            WriteTx::Postgres(tx) => {
                sqlx::query_as(CURRENT_BY_KEYS_PG)
                    .bind(keys)
                    .fetch_all(&mut **tx)
                    .await?
            }
        };
        Ok(rows.into_iter().map(Latest::from).collect())
    }

    /// The latest versions of the live keys in `range`, in key order.
    pub(crate) async fn current_range(&mut self, range: &KeyRange) -> StoreResult<Vec<Latest>> {
        let (form, start, end) = bounds(range);
        let rows: Vec<LatestSubRow> = on_tx!(self, tx => sqlx::query_as(with_limit(RANGE_LATEST[form], None))
            .bind(&start).bind(&end).bind(WHOLE_VALUE)
            .fetch_all(&mut **tx).await?);
        Ok(rows.into_iter().map(Latest::from).collect())
    }

    /// The versions of the live keys in `range` as of `revision`, read
    /// through this transaction (so it sees the batch's flushed rows).
    pub(crate) async fn range_at(
        &mut self,
        range: &KeyRange,
        revision: Revision,
    ) -> StoreResult<Vec<KeyValue>> {
        let (form, start, end) = bounds(range);
        let rows: Vec<KvRow> = on_tx!(self, tx => sqlx::query_as(with_limit(&RANGE_AT[form], None))
            .bind(&start).bind(&end).bind(revision).bind(WHOLE_VALUE)
            .fetch_all(&mut **tx).await?);
        Ok(rows.into_iter().map(KeyValue::from).collect())
    }

    /// The latest versions of the keys attached to `lease`.
    pub(crate) async fn current_by_lease(&mut self, lease: i64) -> StoreResult<Vec<Latest>> {
        let rows: Vec<LatestSubRow> = on_tx!(self, tx => sqlx::query_as(CURRENT_BY_LEASE).bind(lease).fetch_all(&mut **tx).await?);
        Ok(rows.into_iter().map(Latest::from).collect())
    }

    /// The lease's (ttl, deadline, owner), if it exists.
    pub(crate) async fn lease(&mut self, id: i64) -> StoreResult<Option<(i64, i64, LeaseOwner)>> {
        let row: Option<(i64, i64, String)> = on_tx!(self, tx => sqlx::query_as(
            "SELECT ttl, expires_at_ms, owner FROM leases WHERE id = $1")
            .bind(id).fetch_optional(&mut **tx).await?);
        Ok(row.map(|(ttl, deadline, owner)| (ttl, deadline, LeaseOwner::from_column(owner))))
    }

    pub(crate) async fn insert_lease(
        &mut self,
        id: i64,
        ttl: i64,
        expires_at_ms: i64,
        owner: &LeaseOwner,
    ) -> StoreResult<()> {
        on_tx!(self, tx => sqlx::query("INSERT INTO leases (id, ttl, expires_at_ms, owner) VALUES ($1, $2, $3, $4)")
            .bind(id).bind(ttl).bind(expires_at_ms).bind(owner.column()).execute(&mut **tx).await.map(|_| ())?);
        Ok(())
    }

    pub(crate) async fn delete_lease(&mut self, id: i64) -> StoreResult<()> {
        on_tx!(self, tx => sqlx::query("DELETE FROM leases WHERE id = $1").bind(id).execute(&mut **tx).await.map(|_| ())?);
        Ok(())
    }

    /// Appends rows to the log.
    pub(crate) async fn insert_log(&mut self, rows: &[LogRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            WriteTx::Sqlite(tx) => {
                sqlx::query(INSERT_LOG_SQLITE)
                    .bind(sqlite_log_rows(rows)?)
                    .execute(&mut **tx)
                    .await?;
            }
            WriteTx::Postgres(tx) => {
                let columns = PgLogColumns::of(rows);
                columns
                    .bind(sqlx::query(INSERT_LOG_PG))
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// Deletes the history that a compaction at `revision` makes unreachable.
    pub(crate) async fn compact(&mut self, revision: Revision) -> StoreResult<()> {
        on_tx!(self, tx => sqlx::query(COMPACT).bind(revision).execute(&mut **tx).await.map(|_| ())?);
        Ok(())
    }

    /// Ends a batch: appends `rows` to the log, points the live-key index at
    /// the newest versions (`live`: key, mod_revision, sub, lease of keys that
    /// exist; `gone`: keys that don't), stores the counters and commits. On
    /// PostgreSQL all of it is one statement, and the commit also wakes the
    /// other server processes with `notify_payload`.
    pub(crate) async fn finish(
        self,
        rows: &[LogRow],
        live: &[(Vec<u8>, i64, i32, i64)],
        gone: &[Vec<u8>],
        meta: Meta,
        notify_payload: Option<String>,
    ) -> StoreResult<()> {
        match self {
            WriteTx::Sqlite(mut tx) => {
                if !rows.is_empty() {
                    sqlx::query(INSERT_LOG_SQLITE)
                        .bind(sqlite_log_rows(rows)?)
                        .execute(&mut *tx)
                        .await?;
                }
                if !live.is_empty() {
                    let live: Vec<_> = live
                        .iter()
                        .map(|(key, revision, sub, lease)| (hex(key), revision, sub, lease))
                        .collect();
                    sqlx::query(UPSERT_CURRENT_SQLITE)
                        .bind(json(&live)?)
                        .execute(&mut *tx)
                        .await?;
                }
                if !gone.is_empty() {
                    let gone: Vec<String> = gone.iter().map(|k| hex(k)).collect();
                    sqlx::query(DELETE_CURRENT_SQLITE)
                        .bind(json(&gone)?)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "UPDATE store_meta SET revision = $1, compact_revision = $2 WHERE id = 1",
                )
                .bind(meta.revision)
                .bind(meta.compact_revision)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            WriteTx::Postgres(mut tx) => {
                let columns = PgLogColumns::of(rows);
                columns
                    .bind(sqlx::query(FINISH_BATCH_PG))
                    .bind(live.iter().map(|l| l.0.as_slice()).collect::<Vec<&[u8]>>())
                    .bind(live.iter().map(|l| l.1).collect::<Vec<i64>>())
                    .bind(live.iter().map(|l| l.2).collect::<Vec<i32>>())
                    .bind(live.iter().map(|l| l.3).collect::<Vec<i64>>())
                    .bind(gone)
                    .bind(meta.revision)
                    .bind(meta.compact_revision)
                    .bind(NOTIFY_CHANNEL)
                    .bind(notify_payload)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }
}

/// A batch's log rows as SQLite's JSON parameter.
fn sqlite_log_rows(rows: &[LogRow]) -> StoreResult<String> {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            let (key, value) = (hex(&r.key), hex(&r.value));
            (
                r.revision,
                r.sub,
                key,
                r.create_revision,
                r.prev_revision,
                r.version,
                r.lease,
                value,
                r.deleted,
                r.prev_sub,
            )
        })
        .collect();
    json(&rows)
}

/// A batch's log rows as PostgreSQL arrays, one per column.
struct PgLogColumns<'a> {
    revision: Vec<i64>,
    sub: Vec<i32>,
    key: Vec<&'a [u8]>,
    create_revision: Vec<i64>,
    prev_revision: Vec<i64>,
    version: Vec<i64>,
    lease: Vec<i64>,
    value: Vec<&'a [u8]>,
    deleted: Vec<bool>,
    prev_sub: Vec<i32>,
}

impl<'a> PgLogColumns<'a> {
    /// Binds the columns as `$1`…`$10`.
    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.revision)
            .bind(&self.sub)
            .bind(&self.key)
            .bind(&self.create_revision)
            .bind(&self.prev_revision)
            .bind(&self.version)
            .bind(&self.lease)
            .bind(&self.value)
            .bind(&self.deleted)
            .bind(&self.prev_sub)
    }

    fn of(rows: &'a [LogRow]) -> Self {
        PgLogColumns {
            revision: rows.iter().map(|r| r.revision).collect(),
            sub: rows.iter().map(|r| r.sub).collect(),
            key: rows.iter().map(|r| r.key.as_slice()).collect(),
            create_revision: rows.iter().map(|r| r.create_revision).collect(),
            prev_revision: rows.iter().map(|r| r.prev_revision).collect(),
            version: rows.iter().map(|r| r.version).collect(),
            lease: rows.iter().map(|r| r.lease).collect(),
            value: rows.iter().map(|r| r.value.as_slice()).collect(),
            deleted: rows.iter().map(|r| r.deleted).collect(),
            prev_sub: rows.iter().map(|r| r.prev_sub).collect(),
        }
    }
}

/// A column's type in a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    /// A 64-bit integer.
    Int,
    /// An integer or NULL.
    NullableInt,
    /// Text.
    Text,
    /// Bytes (base64 in the snapshot).
    Bytes,
    /// A boolean.
    Bool,
}

/// A table in a snapshot: its name, its columns and their types, and the
/// order its rows are read in.
type SnapshotTable = (
    &'static str,
    &'static [(&'static str, Column)],
    &'static str,
);

/// The tables a snapshot holds, their columns, and the order their rows are
/// read in. `store_meta` comes first: it is updated, not inserted. Audit
/// records, sign-in failures, sessions, members and alarms are this
/// deployment's and stay out.
const SNAPSHOT_TABLES: &[SnapshotTable] = {
    use Column::{Bool, Bytes, Int, NullableInt, Text};
    &[
        (
            "store_meta",
            &[("revision", Int), ("compact_revision", Int)],
            "id",
        ),
        (
            "kv_log",
            &[
                ("revision", Int),
                ("sub", Int),
                ("key", Bytes),
                ("create_revision", Int),
                ("prev_revision", Int),
                ("version", Int),
                ("lease", Int),
                ("value", Bytes),
                ("deleted", Bool),
                ("prev_sub", Int),
            ],
            "revision, sub",
        ),
        (
            "kv_current",
            &[
                ("key", Bytes),
                ("mod_revision", Int),
                ("mod_sub", Int),
                ("lease", Int),
            ],
            "key",
        ),
        (
            "leases",
            &[
                ("id", Int),
                ("ttl", Int),
                ("expires_at_ms", Int),
                ("owner", Text),
            ],
            "id",
        ),
        (
            "users",
            &[
                ("id", Int),
                ("email", Text),
                ("password_hash", Text),
                ("platform_admin", Bool),
                ("created_at_ms", Int),
            ],
            "id",
        ),
        (
            "tenants",
            &[
                ("name", Text),
                ("created_at_ms", Int),
                ("pod_security", Text),
            ],
            "name",
        ),
        (
            "memberships",
            &[("tenant", Text), ("user_id", Int), ("role", Text)],
            "tenant, user_id",
        ),
        ("signing_keys", &[("id", Int), ("secret", Bytes)], "id"),
        (
            "api_tokens",
            &[
                ("id", Int),
                ("token_hash", Text),
                ("name", Text),
                ("user_id", Int),
                ("tenant", Text),
                ("role", Text),
                ("created_at_ms", Int),
                ("expires_at_ms", NullableInt),
                ("revoked", Bool),
            ],
            "id",
        ),
        (
            "node_join_tokens",
            &[
                ("id", Int),
                ("token_hash", Text),
                ("name", Text),
                ("created_at_ms", Int),
                ("expires_at_ms", NullableInt),
                ("revoked", Bool),
            ],
            "id",
        ),
        (
            "node_credentials",
            &[
                ("node_name", Text),
                ("token_hash", Text),
                ("created_at_ms", Int),
            ],
            "node_name",
        ),
    ]
};

/// The tables whose ids a restore must move their sequences past.
const IDENTITY_TABLES: [&str; 3] = ["users", "api_tokens", "node_join_tokens"];

/// Reads one column of `row` as the snapshot's JSON value.
fn column_json<'r, R>(row: &'r R, index: usize, column: Column) -> StoreResult<serde_json::Value>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    use base64::Engine;
    use serde_json::Value;
    Ok(match column {
        Column::Int => Value::from(row.try_get::<i64, _>(index)?),
        Column::NullableInt => row
            .try_get::<Option<i64>, _>(index)?
            .map_or(Value::Null, Value::from),
        Column::Text => Value::from(row.try_get::<String, _>(index)?),
        Column::Bytes => Value::from(
            base64::engine::general_purpose::STANDARD.encode(row.try_get::<Vec<u8>, _>(index)?),
        ),
        Column::Bool => Value::from(row.try_get::<bool, _>(index)?),
    })
}

/// Binds a snapshot's JSON value as `column` to `query`.
macro_rules! bind_column {
    ($query:expr, $value:expr, $column:expr, $table:expr) => {{
        use base64::Engine;
        let value: &serde_json::Value = $value;
        let wrong = || {
            StoreError::InvalidRequest(format!(
                "the snapshot's {} row holds {value} where a {:?} belongs",
                $table, $column
            ))
        };
        match $column {
            Column::Int => $query.bind(value.as_i64().ok_or_else(wrong)?),
            Column::NullableInt => $query.bind(value.as_i64()),
            Column::Text => $query.bind(value.as_str().ok_or_else(wrong)?.to_owned()),
            Column::Bytes => $query.bind(
                base64::engine::general_purpose::STANDARD
                    .decode(value.as_str().ok_or_else(wrong)?)
                    .map_err(|_| wrong())?,
            ),
            Column::Bool => $query.bind(value.as_bool().ok_or_else(wrong)?),
        }
    }};
}

impl Db {
    /// Every row of the snapshot's tables, read in one transaction (one
    /// consistent view, also while writes go on), as lines of JSON:
    /// `{"table": NAME, "row": [..]}`.
    pub(crate) async fn dump(&self) -> StoreResult<Vec<u8>> {
        let mut out = Vec::new();
        macro_rules! read_all {
            ($tx:expr) => {{
                for (table, columns, order) in SNAPSHOT_TABLES {
                    // Integers read as 64-bit on both databases (some
                    // PostgreSQL columns are 32-bit).
                    let names: Vec<String> = columns
                        .iter()
                        .map(|(name, column)| match column {
                            Column::Int | Column::NullableInt => format!("CAST({name} AS BIGINT)"),
                            _ => (*name).to_owned(),
                        })
                        .collect();
                    let sql = format!("SELECT {} FROM {table} ORDER BY {order}", names.join(", "));
                    // Built from the constant table list only.
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *$tx).await?;
                    for row in rows {
                        let values = columns
                            .iter()
                            .enumerate()
                            .map(|(i, (_, column))| column_json(&row, i, *column))
                            .collect::<StoreResult<Vec<_>>>()?;
                        serde_json::to_writer(
                            &mut out,
                            &serde_json::json!({"table": table, "row": values}),
                        )
                        .map_err(|e| StoreError::Database(e.to_string()))?;
                        out.push(b'\n');
                    }
                }
            }};
        }
        match self {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                read_all!(tx);
                tx.commit().await?;
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *tx)
                    .await?;
                read_all!(tx);
                tx.commit().await?;
            }
        }
        Ok(out)
    }

    /// Whether the store holds nothing but what a first start writes: no
    /// revision past the first, no user, no tenant.
    pub(crate) async fn is_empty(&self) -> StoreResult<bool> {
        let (revision, users, tenants): (i64, i64, i64) = on_db!(self, pool => sqlx::query_as(
            "SELECT (SELECT revision FROM store_meta WHERE id = 1), \
                    (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM tenants)")
            .fetch_one(pool).await?);
        Ok(revision <= 1 && users == 0 && tenants == 0)
    }

    /// Writes the rows of a [`Db::dump`] into this (empty) store, all in
    /// one transaction: all of it or nothing.
    pub(crate) async fn load(&self, dump: &[u8]) -> StoreResult<usize> {
        let mut rows = Vec::new();
        for (number, line) in dump.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            #[derive(serde::Deserialize)]
            struct Line {
                table: String,
                row: Vec<serde_json::Value>,
            }
            let line: Line = serde_json::from_slice(line).map_err(|e| {
                StoreError::InvalidRequest(format!("line {} of the snapshot: {e}", number + 1))
            })?;
            let Some(spec) = SNAPSHOT_TABLES.iter().find(|(t, _, _)| *t == line.table) else {
                return Err(StoreError::InvalidRequest(format!(
                    "line {} of the snapshot names no table Berth keeps: {:?}",
                    number + 1,
                    line.table
                )));
            };
            if line.row.len() != spec.1.len() {
                return Err(StoreError::InvalidRequest(format!(
                    "line {} of the snapshot: {} holds {} columns, not {}",
                    number + 1,
                    line.table,
                    spec.1.len(),
                    line.row.len()
                )));
            }
            rows.push((spec, line.row));
        }
        macro_rules! write_all {
            ($tx:expr) => {{
                for ((table, columns, _), values) in &rows {
                    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
                    let sql = if *table == "store_meta" {
                        "UPDATE store_meta SET revision = $1, compact_revision = $2 WHERE id = 1"
                            .to_owned()
                    } else {
                        let marks: Vec<String> =
                            (1..=columns.len()).map(|n| format!("${n}")).collect();
                        format!(
                            "INSERT INTO {table} ({}) VALUES ({})",
                            names.join(", "),
                            marks.join(", ")
                        )
                    };
                    if *table == "signing_keys" {
                        // A server that started on this database made its own.
                        sqlx::query("DELETE FROM signing_keys")
                            .execute(&mut *$tx)
                            .await?;
                    }
                    // Built from the constant table list only.
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for ((_, column), value) in columns.iter().zip(values) {
                        query = bind_column!(query, value, *column, table);
                    }
                    query.execute(&mut *$tx).await?;
                }
            }};
        }
        match self {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                write_all!(tx);
                tx.commit().await?;
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                write_all!(tx);
                for table in IDENTITY_TABLES {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                         GREATEST((SELECT MAX(id) FROM {table}), 1))"
                    )))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(rows.len())
    }
}
