//! Controller writes, fenced by leadership. Every write is a store
//! transaction that also compares the leader key's create revision with the
//! one this process acquired: a process that lost leadership (its lease
//! expired while it was paused, say) has every later write refused, even
//! one already on its way, so two leaders never act at once.
//!
//! The writer keeps the rules of [`crate::objects`] for the fields the
//! server manages: a create gets a uid, generation 1, a creation time and
//! an empty status; a stored object never carries its `resourceVersion`
//! (it is the key's mod revision).

use std::sync::Arc;

use berth_api::objects::{Resource, decode_as};
use serde_json::{Value, json};

use super::runtime::clock::{Clock, format_time};
use super::runtime::reflector::{ObjectKey, decode_stored};
use crate::store::types::{
    Compare, CompareOp, CompareTarget, DeleteRequest, KeyRange, KeyValue, Op, OpResponse,
    PutRequest, RangeRequest, Revision, TxnRequest,
};
use crate::store::{Store, StoreError};

/// Proof of leadership: the leader key and the revision at which this
/// process created it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The leader key.
    pub key: String,
    /// Its create revision when this process took it: the fencing token.
    pub create_revision: Revision,
}

/// Why a controller write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// This process no longer holds leadership; nothing was written.
    #[error("leadership was lost (fencing token {token}); the write was refused")]
    LostLeadership {
        /// The fencing token the write carried.
        token: Revision,
    },
    /// The object changed (or was replaced) since the cache's copy.
    #[error("{key} changed since it was read; the cache will catch up")]
    Conflict {
        /// The object's key.
        key: String,
    },
    /// An object of that name exists already.
    #[error("{key} already exists")]
    AlreadyExists {
        /// The object's key.
        key: String,
    },
    /// The object a controller built is not valid.
    #[error("the {kind} {key} a controller built is invalid: {errors}")]
    Invalid {
        /// Its kind.
        kind: &'static str,
        /// The object's key.
        key: String,
        /// What is wrong.
        errors: String,
    },
    /// An object could not be encoded or read back.
    #[error("{key}: {reason}")]
    Encoding {
        /// The object's key.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes objects for controllers, each write fenced by leadership.
#[derive(Clone)]
pub struct FencedWriter {
    store: Store,
    fence: Fence,
    clock: Arc<dyn Clock>,
}

impl FencedWriter {
    /// A writer that holds `fence`; creation times come from `clock`.
    pub fn new(store: Store, fence: Fence, clock: Arc<dyn Clock>) -> FencedWriter {
        FencedWriter {
            store,
            fence,
            clock,
        }
    }

    /// The fence every write carries.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Creates `object` (defaults applied and validated as a user's would
    /// be). Answers it as stored, with its uid and resourceVersion.
    pub async fn create<K: Resource>(&self, object: &K) -> Result<K, WriteError> {
        let key = ObjectKey::of(object).store_key(K::KIND);
        let value = serde_json::to_value(object).map_err(|e| encoding(&key, e))?;
        let mut checked: K = decode_as(value).map_err(|errors| WriteError::Invalid {
            kind: K::KIND.name(),
            key: key.clone(),
            errors: errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        })?;
        let meta = checked.metadata_mut();
        meta.uid = Some(uuid::Uuid::new_v4().to_string());
        meta.generation = Some(1);
        meta.creation_timestamp = Some(format_time(self.clock.now()));
        meta.resource_version = None;
        meta.deletion_timestamp = None;
        let mut stored = serde_json::to_value(&checked).map_err(|e| encoding(&key, e))?;
        if K::KIND.has_status()
            && let Some(fields) = stored.as_object_mut()
        {
            fields.insert("status".into(), json!({}));
        }
        let bytes = serde_json::to_vec(&stored).map_err(|e| encoding(&key, e))?;
        let put = Op::Put(PutRequest {
            key: key.clone().into_bytes(),
            value: bytes.clone(),
            ..PutRequest::default()
        });
        let guard = CompareTarget::CreateRevision(0);
        let revision = self.fenced(&key, guard, put).await.map_err(|e| match e {
            WriteError::Conflict { key } => WriteError::AlreadyExists { key },
            other => other,
        })?;
        let kv = KeyValue {
            key: key.clone().into_bytes(),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            value: bytes,
            lease: 0,
        };
        decode_stored(&kv).map_err(|reason| WriteError::Encoding { key, reason })
    }

    /// Writes `object` over the stored one, which must still be at the
    /// object's `resourceVersion`. The caller decides every field,
    /// including `generation` (bumped when the spec changes) and status.
    /// Answers the new revision.
    pub async fn replace<K: Resource>(&self, object: &K) -> Result<Revision, WriteError> {
        let key = ObjectKey::of(object).store_key(K::KIND);
        let expected = read_at(object, &key)?;
        let mut stored = serde_json::to_value(object).map_err(|e| encoding(&key, e))?;
        if let Some(meta) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        let put = Op::Put(PutRequest {
            key: key.clone().into_bytes(),
            value: serde_json::to_vec(&stored).map_err(|e| encoding(&key, e))?,
            // Whatever lease the object has stays.
            ignore_lease: true,
            ..PutRequest::default()
        });
        self.fenced(&key, CompareTarget::ModRevision(expected), put)
            .await
    }

    /// Deletes `object` (the incarnation created at `create_revision`) as
    /// the API would: one with finalizers, or that `hold` (a finalizer to
    /// add) keeps, is only marked with a `deletionTimestamp`, and goes when
    /// its last finalizer is removed. A pod that a node runs is marked
    /// with its grace period, and goes when its node has stopped it.
    /// Answers the revision of the write (0 when there was nothing to do).
    pub async fn delete_as_api<K: Resource + Clone>(
        &self,
        object: &K,
        create_revision: Revision,
        hold: Option<&str>,
    ) -> Result<Revision, WriteError> {
        let fresh: K;
        let mut object = object;
        if object.metadata().finalizers.is_empty() && hold.is_none() && object.deletion_grace() == 0
        {
            // The caller's cache can lag a finalizer added a moment ago: the
            // delete holds only while the object is as the caller read it,
            // and otherwise the stored object decides.
            match self.delete_unchanged(object).await {
                Err(WriteError::Conflict { .. }) => {}
                done => return done,
            }
            let key = ObjectKey::of(object).store_key(K::KIND);
            let Some(kv) = self.store.get(key.as_bytes(), 0).await? else {
                return Ok(0);
            };
            if kv.create_revision != create_revision {
                return Ok(0);
            }
            fresh = decode_stored(&kv).map_err(|reason| WriteError::Encoding { key, reason })?;
            if fresh.metadata().finalizers.is_empty() {
                return self
                    .delete::<K>(&ObjectKey::of(&fresh), create_revision)
                    .await;
            }
            object = &fresh;
        }
        let meta = object.metadata();
        if meta.deletion_timestamp.is_some() {
            return Ok(0);
        }
        let mut marked = object.clone();
        let meta = marked.metadata_mut();
        let grace = object.deletion_grace();
        meta.deletion_timestamp = Some(format_time(
            self.clock.now() + chrono::Duration::seconds(grace),
        ));
        meta.deletion_grace_period_seconds = Some(grace);
        meta.finalizers.extend(hold.map(str::to_owned));
        self.replace(&marked).await
    }

    /// Deletes `object` if the stored one is still at the object's
    /// `resourceVersion` (a finalizer removed from what the cache showed).
    /// Answers the revision of the delete.
    pub async fn delete_unchanged<K: Resource>(&self, object: &K) -> Result<Revision, WriteError> {
        let key = ObjectKey::of(object).store_key(K::KIND);
        let expected = read_at(object, &key)?;
        let delete = Op::Delete(DeleteRequest {
            range: KeyRange::single(key.clone()),
            prev_kv: false,
        });
        self.fenced(&key, CompareTarget::ModRevision(expected), delete)
            .await
    }

    /// Deletes the object of kind `K` at `key` if it is still the
    /// incarnation created at `create_revision` (a new object that reused
    /// the name is left alone). An object already gone counts as deleted.
    /// Answers the revision of the delete (0 when it was already gone).
    pub async fn delete<K: Resource>(
        &self,
        key: &ObjectKey,
        create_revision: Revision,
    ) -> Result<Revision, WriteError> {
        let key = key.store_key(K::KIND);
        let delete = Op::Delete(DeleteRequest {
            range: KeyRange::single(key.clone()),
            prev_kv: false,
        });
        match self
            .fenced(&key, CompareTarget::CreateRevision(create_revision), delete)
            .await
        {
            Ok(revision) => Ok(revision),
            Err(WriteError::Conflict { .. })
                if self.store.get(key.as_bytes(), 0).await?.is_none() =>
            {
                Ok(0)
            }
            Err(error) => Err(error),
        }
    }

    /// Runs `op` if the leader key still carries this process's fence and
    /// `guard` holds for `key`. Answers the revision of the write.
    async fn fenced(
        &self,
        key: &str,
        guard: CompareTarget,
        op: Op,
    ) -> Result<Revision, WriteError> {
        let response = self
            .store
            .txn(TxnRequest {
                compares: vec![
                    Compare {
                        range: KeyRange::single(self.fence.key.clone()),
                        op: CompareOp::Equal,
                        target: CompareTarget::CreateRevision(self.fence.create_revision),
                    },
                    Compare {
                        range: KeyRange::single(key),
                        op: CompareOp::Equal,
                        target: guard,
                    },
                ],
                success: vec![op],
                // Tells which guard failed.
                failure: vec![Op::Range(RangeRequest {
                    range: KeyRange::single(self.fence.key.clone()),
                    keys_only: true,
                    ..RangeRequest::default()
                })],
            })
            .await?;
        if response.succeeded {
            return Ok(response.revision);
        }
        let leader = match response.responses.first() {
            Some(OpResponse::Range(range)) => range.kvs.first().map(|kv| kv.create_revision),
            _ => None,
        };
        if leader != Some(self.fence.create_revision) {
            return Err(WriteError::LostLeadership {
                token: self.fence.create_revision,
            });
        }
        Err(WriteError::Conflict {
            key: key.to_owned(),
        })
    }
}

/// The revision `object` was read at (its `resourceVersion`).
fn read_at<K: Resource>(object: &K, key: &str) -> Result<Revision, WriteError> {
    object
        .metadata()
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse::<Revision>().ok())
        .ok_or_else(|| WriteError::Encoding {
            key: key.to_owned(),
            reason: "a write over a stored object needs the resourceVersion it was read at".into(),
        })
}

fn encoding(key: &str, error: serde_json::Error) -> WriteError {
    WriteError::Encoding {
        key: key.to_owned(),
        reason: error.to_string(),
    }
}
