//! Controller writes, fenced by leadership. Every write is a store
//! transaction that also compares the leader key's create revision with the
//! one this process acquired: a process that lost leadership (its lease
//! expired while it was paused, say) has every later write refused, even
//! one already on its way, so two leaders never act at once.
//!
//! The writer is a fenced [`Objects`]: it writes through the one path every
//! writer shares, so a create gets a uid, generation 1, a creation time and
//! an empty status as a user's does, and a stored object never carries its
//! `resourceVersion` (it is the key's mod revision).

use std::sync::Arc;

use berth_api::objects::{Resource, decode_as};

use super::runtime::clock::{Clock, format_time};
use super::runtime::reflector::{ObjectKey, decode_stored, read_revision};
pub use crate::objects::Fence;
use crate::objects::{ObjectError, ObjectRef, Objects, Replacement};
use crate::store::StoreError;
use crate::store::types::{CompareTarget, Revision};

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
    objects: Objects,
    fence: Fence,
}

impl FencedWriter {
    /// A writer through `objects` that holds `fence`; creation and
    /// deletion times come from `clock`.
    pub fn new(objects: Objects, fence: Fence, clock: Arc<dyn Clock>) -> FencedWriter {
        FencedWriter {
            objects: objects.fenced(fence.clone()).with_clock(clock),
            fence,
        }
    }

    /// The fence every write carries.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// The fenced objects this writer writes through (for writers with
    /// their own shape of write: the scheduler's bindings, events).
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// Creates `object` (defaults applied and validated as a user's would
    /// be). Answers it as stored, with its uid and resourceVersion.
    pub async fn create<K: Resource>(&self, object: &K) -> Result<K, WriteError> {
        let key = ObjectKey::of(object).store_key(K::KIND);
        let value = serde_json::to_value(object).map_err(|e| encoding(&key, e))?;
        let checked: K = decode_as(value).map_err(|errors| WriteError::Invalid {
            kind: K::KIND.name(),
            key: key.clone(),
            errors: errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        })?;
        let value = serde_json::to_value(&checked).map_err(|e| encoding(&key, e))?;
        let (stored, revision) = self
            .objects
            .create_checked(K::KIND, value, 0)
            .await
            .map_err(|e| write_error(&key, e))?;
        // What was stored is the checked object with the server's fields.
        let mut created: K = serde_json::from_value(stored).map_err(|e| encoding(&key, e))?;
        created.metadata_mut().resource_version = Some(revision.to_string());
        Ok(created)
    }

    /// Writes `object` over the stored one, which must still be at the
    /// object's `resourceVersion`. The caller decides every field,
    /// including `generation` (bumped when the spec changes) and status.
    /// Answers the new revision.
    pub async fn replace<K: Resource>(&self, object: &K) -> Result<Revision, WriteError> {
        let at = object_ref(object);
        let key = at.key();
        let expected = read_at(object, &key)?;
        let value = serde_json::to_value(object).map_err(|e| encoding(&key, e))?;
        self.objects
            .replace_all(vec![Replacement {
                at,
                object: value,
                expected,
                // Whatever lease the object has stays.
                lease: None,
            }])
            .await
            .map_err(|e| write_error(&key, e))
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
            let Some(kv) = self.objects.store().get(key.as_bytes(), 0).await? else {
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
            self.objects.now() + chrono::Duration::seconds(grace),
        ));
        meta.deletion_grace_period_seconds = Some(grace);
        meta.finalizers.extend(hold.map(str::to_owned));
        self.replace(&marked).await
    }

    /// Deletes `object` if the stored one is still at the object's
    /// `resourceVersion` (a finalizer removed from what the cache showed).
    /// Answers the revision of the delete.
    pub async fn delete_unchanged<K: Resource>(&self, object: &K) -> Result<Revision, WriteError> {
        let at = object_ref(object);
        let key = at.key();
        let expected = read_at(object, &key)?;
        self.objects
            .delete_checked(&at, CompareTarget::ModRevision(expected))
            .await
            .map_err(|e| write_error(&key, e))
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
        let at = key.object_ref(K::KIND);
        let key = at.key();
        match self
            .objects
            .delete_checked(&at, CompareTarget::CreateRevision(create_revision))
            .await
            .map_err(|e| write_error(&key, e))
        {
            Ok(revision) => Ok(revision),
            Err(WriteError::Conflict { .. })
                if self.objects.store().get(key.as_bytes(), 0).await?.is_none() =>
            {
                Ok(0)
            }
            Err(error) => Err(error),
        }
    }
}

/// Where `object` of kind `K` lives.
fn object_ref<K: Resource>(object: &K) -> ObjectRef {
    ObjectKey::of(object).object_ref(K::KIND)
}

/// A failed write through [`Objects`] as controllers see it.
fn write_error(key: &str, error: ObjectError) -> WriteError {
    let key = key.to_owned();
    match error {
        ObjectError::LostLeadership { token } => WriteError::LostLeadership { token },
        ObjectError::AlreadyExists { .. } => WriteError::AlreadyExists { key },
        ObjectError::Conflict(_) | ObjectError::NotFound { .. } => WriteError::Conflict { key },
        ObjectError::Store(error) => WriteError::Store(error),
        other => WriteError::Encoding {
            key,
            reason: other.to_string(),
        },
    }
}

/// The revision `object` was read at (its `resourceVersion`).
fn read_at<K: Resource>(object: &K, key: &str) -> Result<Revision, WriteError> {
    read_revision(object).ok_or_else(|| WriteError::Encoding {
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
