//! The store's request and response types. They follow etcd's v3 API field
//! for field, so that the etcd-compatible gRPC layer maps onto them directly.

/// A position in the global revision log. Revision 1 is the empty store; the
/// first write is revision 2, as in etcd.
pub type Revision = i64;

/// The largest value (plus key) one write may carry, as etcd's default
/// `--max-request-bytes` (1.5 MiB).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// The most operations one branch of a transaction may hold (etcd's
/// `--max-txn-ops` default).
pub const MAX_TXN_OPS: usize = 128;

/// One version of one key.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The revision at which the key was last created.
    pub create_revision: Revision,
    /// The revision of the last write to the key.
    pub mod_revision: Revision,
    /// 1 on create, +1 on every change, 0 for a deleted key.
    pub version: i64,
    /// The value (empty when only keys were asked for).
    pub value: Vec<u8>,
    /// The lease the key is attached to, 0 for none.
    pub lease: i64,
}

impl std::fmt::Debug for KeyValue {
    // Values may hold secrets: print their size, never their bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .field("version", &self.version)
            .field("value_len", &self.value.len())
            .field("lease", &self.lease)
            .finish()
    }
}

/// What a committed change did to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or changed.
    Put,
    /// The key was deleted (directly, by a range delete or by its lease ending).
    Delete,
}

/// One committed change, as a watcher sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change. For a delete only `key` and `mod_revision`
    /// are set, as in etcd.
    pub kv: KeyValue,
    /// The key before the change, if it existed.
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// The revision at which the change was committed.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A set of keys in etcd's notation: `range_end` empty means the single key
/// `key`; `range_end == [0]` means every key from `key` on; otherwise the
/// half-open interval `[key, range_end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// The first key.
    pub key: Vec<u8>,
    /// The end of the range, in etcd's notation.
    pub range_end: Vec<u8>,
}

impl KeyRange {
    /// The one key `key`.
    pub fn single(key: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            range_end: Vec::new(),
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        Self { key, range_end }
    }

    /// The half-open interval `[start, end)`.
    pub fn between(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        Self {
            key: start.into(),
            range_end: end.into(),
        }
    }

    /// Whether this names exactly one key.
    pub fn is_single(&self) -> bool {
        self.range_end.is_empty()
    }

    /// The exclusive upper bound, `None` when the range is unbounded above.
    pub fn end_bound(&self) -> Option<Vec<u8>> {
        if self.range_end.is_empty() {
            let mut end = self.key.clone();
            end.push(0);
            Some(end)
        } else if self.range_end == [0] {
            None
        } else {
            Some(self.range_end.clone())
        }
    }

    /// The inclusive lower bound; etcd reads a key of `[0]` with a range end
    /// of `[0]` as "every key".
    pub fn start_bound(&self) -> &[u8] {
        if self.key == [0] && self.range_end == [0] {
            &[]
        } else {
            &self.key
        }
    }

    /// Whether `key` falls in this range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start_bound() && self.end_bound().is_none_or(|end| key < end.as_slice())
    }
}

/// The smallest key greater than every key that starts with `prefix`
/// (etcd's `GetPrefixRangeEnd`); `[0]` when no such key exists.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

/// A read of a range of keys.
#[derive(Clone, Debug, Default)]
pub struct RangeRequest {
    /// Which keys.
    pub range: KeyRange,
    /// Read as of this revision; 0 for the latest.
    pub revision: Revision,
    /// At most this many keys; 0 for no limit.
    pub limit: i64,
    /// Leave values out.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
}

/// The answer to a [`RangeRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The store's revision when the read was served.
    pub revision: Revision,
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
    /// Whether more keys matched than `limit` allowed.
    pub more: bool,
    /// How many keys matched in all.
    pub count: i64,
}

/// A write of one key.
#[derive(Clone, Debug, Default)]
pub struct PutRequest {
    /// The key.
    pub key: Vec<u8>,
    /// The new value.
    pub value: Vec<u8>,
    /// The lease to attach, 0 for none.
    pub lease: i64,
    /// Return the previous version.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist).
    pub ignore_lease: bool,
    /// When set, the lease attached must belong to this owner; another
    /// owner's lease is answered as if it did not exist.
    pub lease_owner: Option<LeaseOwner>,
}

/// The answer to a [`PutRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// The revision of this write.
    pub revision: Revision,
    /// The previous version, when asked for and present.
    pub prev_kv: Option<KeyValue>,
}

/// A delete of one key or a range.
#[derive(Clone, Debug, Default)]
pub struct DeleteRequest {
    /// Which keys.
    pub range: KeyRange,
    /// Return the deleted versions.
    pub prev_kv: bool,
}

/// The answer to a [`DeleteRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteResponse {
    /// The store's revision after the delete.
    pub revision: Revision,
    /// How many keys were deleted.
    pub deleted: i64,
    /// The deleted versions, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// What a [`Compare`] looks at, with the operand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's version (0 when absent).
    Version(i64),
    /// The key's create revision (0 when absent).
    CreateRevision(Revision),
    /// The key's mod revision (0 when absent).
    ModRevision(Revision),
    /// The key's value (never equal when the key is absent).
    Value(Vec<u8>),
    /// The key's lease (0 when absent).
    Lease(i64),
}

/// How a [`Compare`] compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `>`
    Greater,
    /// `<`
    Less,
}

/// One guard of a transaction. With a range, every key in it must satisfy it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// Which key or keys.
    pub range: KeyRange,
    /// The comparison.
    pub op: CompareOp,
    /// What is compared, and with what.
    pub target: CompareTarget,
}

/// One operation of a transaction.
#[derive(Clone, Debug)]
pub enum Op {
    /// A read.
    Range(RangeRequest),
    /// A write.
    Put(PutRequest),
    /// A delete.
    Delete(DeleteRequest),
    /// A nested transaction.
    Txn(TxnRequest),
}

/// The answer to one [`Op`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResponse {
    /// From [`Op::Range`].
    Range(RangeResponse),
    /// From [`Op::Put`].
    Put(PutResponse),
    /// From [`Op::Delete`].
    Delete(DeleteResponse),
    /// From [`Op::Txn`].
    Txn(TxnResponse),
}

/// If every compare holds, run `success`, otherwise `failure`; all at one
/// revision, all or nothing.
#[derive(Clone, Debug, Default)]
pub struct TxnRequest {
    /// The guards.
    pub compares: Vec<Compare>,
    /// Run when every guard holds.
    pub success: Vec<Op>,
    /// Run otherwise.
    pub failure: Vec<Op>,
}

/// The answer to a [`TxnRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// The store's revision after the transaction.
    pub revision: Revision,
    /// Whether the guards held.
    pub succeeded: bool,
    /// One answer per operation of the branch that ran.
    pub responses: Vec<OpResponse>,
}

/// A subscription to changes.
#[derive(Clone, Debug, Default)]
pub struct WatchRequest {
    /// Which keys.
    pub range: KeyRange,
    /// The first revision to deliver; 0 for "changes from now on".
    pub start_revision: Revision,
    /// Attach the previous version to each event.
    pub prev_kv: bool,
}

/// Who a lease belongs to. Only its owner and the platform may see, renew
/// or end it, and only its owner's keys may be attached to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum LeaseOwner {
    /// The platform: the server's own leases (leadership, events) and those
    /// the platform admin grants.
    #[default]
    Platform,
    /// A tenant, whose member granted it.
    Tenant(String),
}

impl LeaseOwner {
    /// As the `leases.owner` column holds it: empty for the platform, the
    /// tenant's name otherwise (tenant names are never empty).
    pub(crate) fn column(&self) -> &str {
        match self {
            LeaseOwner::Platform => "",
            LeaseOwner::Tenant(tenant) => tenant,
        }
    }

    /// The owner a `leases.owner` column names.
    pub(crate) fn from_column(column: String) -> LeaseOwner {
        if column.is_empty() {
            LeaseOwner::Platform
        } else {
            LeaseOwner::Tenant(column)
        }
    }
}

/// A lease as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease's id.
    pub id: i64,
    /// Who it belongs to.
    pub owner: LeaseOwner,
    /// The TTL it was granted with, in seconds.
    pub granted_ttl: i64,
    /// Seconds left until it ends (-1 once expired).
    pub remaining_ttl: i64,
    /// The keys attached to it, when asked for.
    pub keys: Vec<Vec<u8>>,
}

/// A server process serving this database.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct MemberInfo {
    /// Its member id (positive).
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Where clients reach its etcd API.
    pub client_url: String,
}
