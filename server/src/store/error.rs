//! The store's one error type. Callers branch on the variant: the REST layer
//! maps `NotFound` to 404, `Conflict` to 409, `Compacted` to 410 and
//! `Unavailable` to 503; the etcd layer maps them to etcd's own messages.

use super::types::Revision;

/// Everything a store call can fail with.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The key does not exist.
    #[error("key {key:?} not found")]
    NotFound {
        /// The key, lossily decoded.
        key: String,
    },
    /// A conditional write lost: the key exists already, or changed since the
    /// revision the caller named.
    #[error("conflict on key {key:?}: {reason}")]
    Conflict {
        /// The key, lossily decoded.
        key: String,
        /// What did not match.
        reason: String,
    },
    /// The revision asked for has been compacted away.
    #[error(
        "required revision {requested} has been compacted (compacted up to {compact_revision})"
    )]
    Compacted {
        /// The revision the caller asked for.
        requested: Revision,
        /// The store's compaction point.
        compact_revision: Revision,
    },
    /// The revision asked for has not happened yet.
    #[error("required revision {requested} is a future revision (current revision is {current})")]
    FutureRevision {
        /// The revision the caller asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// The lease named does not exist (or has ended).
    #[error("requested lease {0} not found")]
    LeaseNotFound(i64),
    /// A lease with the requested id exists already.
    #[error("lease {0} already exists")]
    LeaseExists(i64),
    /// A transaction writes the same key twice.
    #[error("duplicate key {key:?} given in txn request")]
    DuplicateKey {
        /// The key, lossily decoded.
        key: String,
    },
    /// A transaction branch holds more operations than allowed.
    #[error("too many operations in txn request: {count}, at most {limit}")]
    TooManyOps {
        /// How many the branch holds.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A request named no key.
    #[error("key is not provided")]
    EmptyKey,
    /// A write is larger than the store accepts.
    #[error("write of key {key:?} is {size} bytes, larger than the limit of {limit} bytes")]
    ValueTooLarge {
        /// The key, lossily decoded.
        key: String,
        /// Key plus value, in bytes.
        size: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A request is malformed in some other way; the message says how.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A watch was ended by the server; the message says why.
    #[error("watch cancelled: {0}")]
    WatchCancelled(String),
    /// The database cannot be reached.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an unexpected error.
    #[error("store error: {0}")]
    Database(String),
}

impl StoreError {
    pub(crate) fn key_string(key: &[u8]) -> String {
        String::from_utf8_lossy(key).into_owned()
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error.to_string()),
            sqlx::Error::Database(ref database) if database_unavailable(database.as_ref()) => {
                StoreError::Unavailable(error.to_string())
            }
            sqlx::Error::Database(ref database) if disk_full(database.as_ref()) => {
                StoreError::Unavailable(format!("the database's disk is full: {error}"))
            }
            other => StoreError::Database(other.to_string()),
        }
    }
}

/// Whether a database error means the database is going away or not
/// there yet (PostgreSQL's connection exceptions, `08…`, and operator
/// interventions: shutting down, crashing, starting up, `57P01`–`57P03`),
/// rather than that the request was wrong.
fn database_unavailable(error: &dyn sqlx::error::DatabaseError) -> bool {
    error.code().is_some_and(|code| {
        code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
    })
}

/// Whether a database error means the disk is full: SQLite's `SQLITE_FULL`
/// (13) or an I/O error writing (`SQLITE_IOERR`, 10, with its extended
/// codes), PostgreSQL's `53100` (disk full).
fn disk_full(error: &dyn sqlx::error::DatabaseError) -> bool {
    error.code().is_some_and(|code| {
        code == "53100"
            || code
                .parse::<i32>()
                .is_ok_and(|code| matches!(code & 0xff, 10 | 13))
    })
}

/// Shorthand for the store's results.
pub type StoreResult<T> = Result<T, StoreError>;
