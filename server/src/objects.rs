//! Objects in the store: the domain layer between the REST routes and the
//! revision log. It owns what every kind shares: storage keys, the fields
//! the server manages (`uid`, `resourceVersion`, `generation`,
//! `creationTimestamp`), optimistic concurrency, the status path, merge
//! patches, sealing Secret values, label-selected paged lists and watches.
//!
//! Objects are stored as their normalised JSON without `resourceVersion`,
//! which is the key's mod revision and is filled in on every read.
//!
//! Every writer goes through here: the REST routes, the node API, and the
//! control plane (the controllers' `FencedWriter`, the scheduler's
//! bindings and the `EventRecorder`), so the server-managed fields are set
//! in one place ([`stamp_new`]). An `Objects` given a [`Fence`] has every
//! write also compare the leader key, so a process that lost leadership
//! has all of them refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::labels::Selector;
use berth_api::objects::pod::Pod;
use berth_api::objects::{FieldError, Kind};
use serde_json::{Map, Value, json};

use crate::controllers::runtime::clock::{Clock, SystemClock, format_time};
use crate::secrets::EncryptionKey;
use crate::service_allocation::{
    AllocationError, AllocationPlan, ServiceAllocator, ServiceRanges, drop_node_ports_for_type,
    keep_allocated,
};
use crate::store::types::{
    Compare, CompareOp, CompareTarget, DeleteRequest, Event, EventKind, KeyRange, KeyValue, Op,
    OpResponse, PutRequest, RangeRequest, Revision, TxnRequest, WatchRequest, prefix_end,
};
use crate::store::{Store, StoreError, Watch};

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The object is not valid; every problem with its field.
    #[error("the {kind} is invalid")]
    Invalid {
        /// The kind, as far as it is known.
        kind: String,
        /// Every problem.
        errors: Vec<FieldError>,
    },
    /// No such object.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// Its kind.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// An object of this name exists.
    #[error("{kind} {name:?} already exists")]
    AlreadyExists {
        /// Its kind.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The object changed since the caller's resourceVersion.
    #[error("{0}")]
    Conflict(String),
    /// Something the object asks for is held by another object (a node
    /// port, a virtual address), or none is left; each with its field.
    #[error(
        "the {kind} cannot be given what it asks for: {}",
        describe_fields(errors)
    )]
    Taken {
        /// Its kind.
        kind: &'static str,
        /// Each field, with who holds what it asks for.
        errors: Vec<FieldError>,
    },
    /// The object is well-formed, but the server cannot carry it out: a
    /// value outside the server's ranges, or a change to an allocated one.
    #[error("the {kind} is invalid: {}", describe_fields(errors))]
    Unprocessable {
        /// Its kind.
        kind: &'static str,
        /// Every problem.
        errors: Vec<FieldError>,
    },
    /// A resourceVersion or continue token too old to serve.
    #[error("{0}")]
    Gone(String),
    /// The tenant's Pod Security level refuses the object; nothing was
    /// written.
    #[error(
        "{} {name:?} is forbidden: {}",
        kind.plural(),
        berth_api::pod_security::message(*level, violations)
    )]
    Forbidden {
        /// Its kind.
        kind: Kind,
        /// Its name.
        name: String,
        /// The tenant's level.
        level: berth_api::pod_security::Level,
        /// Every check it fails, with the offending fields.
        violations: Vec<berth_api::pod_security::Violation>,
    },
    /// A stored Secret value cannot be opened (wrong key, or tampered).
    #[error("a stored secret value cannot be decrypted: {0}")]
    Sealing(String),
    /// This process no longer holds the leadership its writes are fenced
    /// by; nothing was written.
    #[error("leadership was lost (fencing token {token}); the write was refused")]
    LostLeadership {
        /// The fencing token the write carried.
        token: Revision,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ObjectError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Compacted { .. } => ObjectError::Gone(format!(
                "{error}; list again to get a current resourceVersion"
            )),
            other => ObjectError::Store(other),
        }
    }
}

impl From<AllocationError> for ObjectError {
    fn from(error: AllocationError) -> Self {
        match error {
            AllocationError::Taken(errors) => ObjectError::Taken {
                kind: Kind::Service.name(),
                errors,
            },
            AllocationError::Refused(errors) => ObjectError::Unprocessable {
                kind: Kind::Service.name(),
                errors,
            },
            AllocationError::Store(error) => error.into(),
        }
    }
}

fn describe_fields(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Shorthand.
pub type ObjectResult<T> = Result<T, ObjectError>;

/// How often a write plans its allocations again when another writer took
/// what it planned for in between.
const ALLOCATION_ATTEMPTS: usize = 16;

/// Proof of leadership: the leader key and the revision at which this
/// process created it. Writes fenced by it hold only while the leader key
/// is still that incarnation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The leader key.
    pub key: String,
    /// Its create revision when this process took it: the fencing token.
    pub create_revision: Revision,
}

impl Fence {
    /// The compare a fenced transaction carries.
    pub fn compare(&self) -> Compare {
        Compare {
            range: KeyRange::single(self.key.clone()),
            op: CompareOp::Equal,
            target: CompareTarget::CreateRevision(self.create_revision),
        }
    }
}

/// The one write an [`Objects`] transaction makes to the object's key.
enum Write {
    /// The new stored value, with its lease (`None`: whatever lease the
    /// stored object has stays).
    Put { value: Vec<u8>, lease: Option<i64> },
    /// The object goes.
    Delete,
}

/// An object the control plane writes over its stored version
/// ([`Objects::replace_all`]).
#[derive(Clone, Debug)]
pub struct Replacement {
    /// Where it lives.
    pub at: ObjectRef,
    /// The whole object, every field decided by the writer (its
    /// `resourceVersion`, if any, is not stored).
    pub object: Value,
    /// The revision the writer read it at.
    pub expected: Revision,
    /// The lease it goes on; `None` keeps the one it has.
    pub lease: Option<i64>,
}

/// What became of a transaction.
enum Committed {
    /// Written at this revision.
    Done(Revision),
    /// The object's own guard failed; whether the key exists now.
    ObjectChanged { exists: bool },
    /// An allocation's guard failed: plan again.
    AllocationsChanged,
}

/// Where an object lives: its kind, its tenant (none for cluster-scoped
/// kinds) and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// The kind.
    pub kind: Kind,
    /// The tenant, for namespaced kinds.
    pub tenant: Option<String>,
    /// The name.
    pub name: String,
}

impl ObjectRef {
    /// The store key ([`crate::keys::object`]).
    pub fn key(&self) -> String {
        crate::keys::object(self.kind, self.tenant.as_deref(), &self.name)
    }
}

/// How a read treats Secret values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretValues {
    /// Decrypt them (the caller may read them).
    Reveal,
    /// Show the keys with empty values.
    Redact,
}

/// The kinds the garbage collector looks after: the owners and
/// dependents of Berth's workloads.
pub const COLLECTED_KINDS: [Kind; 3] = [Kind::Deployment, Kind::ReplicaSet, Kind::Pod];
/// The finalizer of an owner deleted with `Orphan` propagation.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer of an owner deleted with `Foreground` propagation.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// How an object is deleted: Kubernetes' DeleteOptions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// What becomes of the objects it owns.
    pub propagation: Propagation,
    /// For a pod a node runs: how long its containers get to stop
    /// (`gracePeriodSeconds`); `None` for the pod's own grace period.
    pub grace_period_seconds: Option<i64>,
}

/// What becomes of the objects an object owns when it is deleted
/// (`propagationPolicy`, as Kubernetes has it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    /// The owner goes now; the garbage collector deletes its dependents
    /// afterwards.
    #[default]
    Background,
    /// The owner goes once no dependent names it any more; they stay.
    Orphan,
    /// The owner goes once its dependents are gone.
    Foreground,
}

impl Propagation {
    /// `Background`, `Orphan` or `Foreground`.
    pub fn parse(text: &str) -> Result<Propagation, String> {
        match text {
            "Background" => Ok(Propagation::Background),
            "Orphan" => Ok(Propagation::Orphan),
            "Foreground" => Ok(Propagation::Foreground),
            other => Err(format!(
                "{other:?} is not a propagation policy; use Background, Orphan or Foreground"
            )),
        }
    }

    /// The finalizer that holds the owner until the garbage collector has
    /// done its part.
    pub fn finalizer(self) -> Option<&'static str> {
        match self {
            Propagation::Background => None,
            Propagation::Orphan => Some(ORPHAN_FINALIZER),
            Propagation::Foreground => Some(FOREGROUND_FINALIZER),
        }
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage {
    /// The objects, in name order.
    pub items: Vec<Value>,
    /// The revision the whole list is read at.
    pub revision: Revision,
    /// Where the next page starts, if there is one.
    pub continue_token: Option<String>,
}

/// What a change did, for the caller and the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new object.
    Created,
    /// An existing object was changed.
    Updated,
    /// The object was already exactly so; nothing was written.
    Unchanged,
}

/// Objects over the store.
#[derive(Clone)]
pub struct Objects {
    store: Store,
    key: EncryptionKey,
    allocator: ServiceAllocator,
    /// When set, every write also requires the leader key to carry it.
    fence: Option<Fence>,
    /// Where creation and deletion times come from.
    clock: Arc<dyn Clock>,
}

/// The largest page a list reads from the store at once.
const MAX_PAGE: i64 = 500;

impl Objects {
    /// Objects in `store`, with Secret values sealed under `key`.
    /// Services are given addresses and node ports from the default
    /// ranges; see [`Objects::with_service_ranges`].
    pub fn new(store: Store, key: EncryptionKey) -> Objects {
        Objects {
            allocator: ServiceAllocator::new(store.clone(), ServiceRanges::default()),
            store,
            key,
            fence: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// The same objects, every write of which is fenced by `fence`: once
    /// the leader key is no longer that incarnation, each is refused with
    /// [`ObjectError::LostLeadership`].
    pub fn fenced(self, fence: Fence) -> Objects {
        Objects {
            fence: Some(fence),
            ..self
        }
    }

    /// The same objects, with times read from `clock`.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Objects {
        Objects { clock, ..self }
    }

    /// The fence every write carries, if any.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// The current time, as this writer's clock tells it.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// The same objects, with Services' addresses and node ports from
    /// `ranges`.
    pub fn with_service_ranges(self, ranges: ServiceRanges) -> Objects {
        Objects {
            allocator: ServiceAllocator::new(self.store.clone(), ranges),
            ..self
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Checks and normalises a user's object of `kind` (when known): every
    /// problem at once, with its field path.
    pub fn decode(&self, expected: Option<Kind>, value: Value) -> ObjectResult<(Kind, Value)> {
        let kind_name = expected
            .map(|k| k.name().to_owned())
            .or_else(|| value.get("kind").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "object".into());
        match berth_api::objects::decode(expected, value) {
            Ok(decoded) => Ok((decoded.kind, decoded.value)),
            Err(errors) => Err(ObjectError::Invalid {
                kind: kind_name,
                errors,
            }),
        }
    }

    /// Creates an object from a user's body (already decoded). Status given
    /// by the user is dropped: only the status path writes it.
    #[tracing::instrument(skip_all, fields(kind = kind.name(), tenant))]
    pub async fn create(
        &self,
        kind: Kind,
        tenant: Option<&str>,
        mut object: Value,
        reveal: SecretValues,
    ) -> ObjectResult<Value> {
        let name = object_name(&object);
        let at = ObjectRef {
            kind,
            tenant: tenant.map(str::to_owned),
            name: name.clone(),
        };
        set_tenant(kind, tenant, &mut object);
        self.admit(kind, tenant, &name, &object, None).await?;
        // A name in use is the answer before anything the object asks for
        // (which its namesake may well hold).
        if kind == Kind::Service && self.store.get(at.key().as_bytes(), 0).await?.is_some() {
            return Err(ObjectError::AlreadyExists {
                kind: kind.name(),
                name,
            });
        }
        let (stored, revision) = self.insert(&at, object, 0).await?;
        self.present(&at, stored, revision, reveal)
    }

    /// Creates an object the control plane built and checked (a
    /// controller's pod, an event), with no admission: the server-managed
    /// fields are set as for every create, and it goes on `lease` (0:
    /// none). Answers it as stored (Secret values sealed, no
    /// `resourceVersion`) and its revision.
    pub async fn create_checked(
        &self,
        kind: Kind,
        object: Value,
        lease: i64,
    ) -> ObjectResult<(Value, Revision)> {
        let at = ObjectRef {
            kind,
            tenant: object["metadata"]["tenant"]
                .as_str()
                .filter(|_| kind.namespaced())
                .map(str::to_owned),
            name: object_name(&object),
        };
        self.insert(&at, object, lease).await
    }

    /// Creates the object at `at` if nothing is there: the one place that
    /// sets the server-managed fields of a new object ([`stamp_new`]).
    async fn insert(
        &self,
        at: &ObjectRef,
        mut object: Value,
        lease: i64,
    ) -> ObjectResult<(Value, Revision)> {
        stamp_new(at.kind, &mut object, &format_time(self.clock.now()));
        for _ in 0..ALLOCATION_ATTEMPTS {
            // Only a Service plans again (from the object as given) when its
            // allocations changed hands; other kinds try once.
            let mut object = match at.kind {
                Kind::Service => object.clone(),
                _ => std::mem::take(&mut object),
            };
            let plan = self.plan_allocations(at, None, &mut object).await?;
            let stored = self.seal(at, object)?;
            let value = to_bytes(&stored)?;
            let write = Write::Put {
                value,
                lease: Some(lease),
            };
            match self
                .commit(at, CompareTarget::CreateRevision(0), write, plan)
                .await?
            {
                Committed::Done(revision) => return Ok((stored, revision)),
                Committed::ObjectChanged { .. } => {
                    return Err(ObjectError::AlreadyExists {
                        kind: at.kind.name(),
                        name: at.name.clone(),
                    });
                }
                Committed::AllocationsChanged => continue,
            }
        }
        Err(allocations_kept_changing(at))
    }

    /// Writes each replacement over its stored version in one transaction
    /// (the first is the object the write is about; the others go with it,
    /// as a binding's claims do), only if every one is still at the
    /// revision its writer read and the fence holds. The writer decides
    /// every field; `resourceVersion` is never stored. Answers the
    /// revision; [`ObjectError::Conflict`] when any of them changed.
    pub async fn replace_all(&self, writes: Vec<Replacement>) -> ObjectResult<Revision> {
        let mut writes = writes.into_iter();
        let Some(first) = writes.next() else {
            return Err(ObjectError::Conflict("nothing to write".into()));
        };
        let mut alongside = AllocationPlan::default();
        for other in writes {
            let key = other.at.key();
            alongside.compares.push(Compare {
                range: KeyRange::single(key.clone()),
                op: CompareOp::Equal,
                target: CompareTarget::ModRevision(other.expected),
            });
            alongside
                .ops
                .push(put_op(key, stored_bytes(other.object)?, other.lease));
        }
        let write = Write::Put {
            value: stored_bytes(first.object)?,
            lease: first.lease,
        };
        let guard = CompareTarget::ModRevision(first.expected);
        match self.commit(&first.at, guard, write, alongside).await? {
            Committed::Done(revision) => Ok(revision),
            Committed::ObjectChanged { .. } | Committed::AllocationsChanged => {
                Err(ObjectError::Conflict(format!(
                    "{} {:?} changed since it was read",
                    first.at.kind.name(),
                    first.at.name
                )))
            }
        }
    }

    /// Deletes the object at `at` if `guard` (its create or mod revision)
    /// still holds, as the control plane does once it has decided.
    /// Answers the revision of the delete.
    pub async fn delete_checked(
        &self,
        at: &ObjectRef,
        guard: CompareTarget,
    ) -> ObjectResult<Revision> {
        match self
            .commit(at, guard, Write::Delete, AllocationPlan::default())
            .await?
        {
            Committed::Done(revision) => Ok(revision),
            Committed::ObjectChanged { .. } | Committed::AllocationsChanged => {
                Err(ObjectError::Conflict(format!(
                    "{} {:?} changed since it was read",
                    at.kind.name(),
                    at.name
                )))
            }
        }
    }

    /// Reads one object.
    #[tracing::instrument(skip_all, fields(kind = at.kind.name(), name = at.name))]
    pub async fn get(&self, at: &ObjectRef, reveal: SecretValues) -> ObjectResult<Value> {
        let kv = self.current(at).await?;
        self.present_kv(at, &kv, reveal)
    }

    /// Replaces an object's spec, labels and annotations (not its status)
    /// with `object`. With a `resourceVersion` in the body, only if the
    /// object is still at that version; otherwise 409.
    #[tracing::instrument(skip_all, fields(kind = at.kind.name(), name = at.name))]
    pub async fn update(
        &self,
        at: &ObjectRef,
        object: Value,
        reveal: SecretValues,
    ) -> ObjectResult<(Value, Outcome)> {
        check_body_name(at, &object)?;
        let expected = resource_version_of(&object)?;
        let kv = self.current(at).await?;
        if let Some(expected) = expected
            && expected != kv.mod_revision
        {
            return Err(stale(at, expected, kv.mod_revision));
        }
        let stored = stored_value(&kv)?;
        let merged = merge_user_change(at.kind, &stored, object);
        self.write_over(at, &kv, stored, merged, reveal).await
    }

    /// Applies an RFC 7386 JSON merge patch to the object's current state
    /// (spec and metadata; status is not the user's to change). A
    /// `metadata.resourceVersion` in the patch is a precondition.
    #[tracing::instrument(skip_all, fields(kind = at.kind.name(), name = at.name))]
    pub async fn patch(
        &self,
        at: &ObjectRef,
        patch: Value,
        reveal: SecretValues,
    ) -> ObjectResult<(Value, Outcome)> {
        let expected = resource_version_of(&patch)?;
        // Without a precondition a patch applies to whatever is current, so
        // a concurrent writer only makes it retry.
        for _ in 0..16 {
            let kv = self.current(at).await?;
            if let Some(expected) = expected
                && expected != kv.mod_revision
            {
                return Err(stale(at, expected, kv.mod_revision));
            }
            let stored = stored_value(&kv)?;
            let mut user_view = self.present_kv(at, &kv, SecretValues::Reveal)?;
            strip_server_fields(&mut user_view);
            merge_patch(&mut user_view, &patch);
            if let Some(metadata) = user_view.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("resourceVersion");
            }
            check_body_name(at, &user_view)?;
            if at.kind == Kind::Service {
                drop_node_ports_for_type(&stored, &mut user_view);
            }
            let (_, decoded) = self.decode(Some(at.kind), user_view)?;
            let merged = merge_user_change(at.kind, &stored, decoded);
            match self.write_over(at, &kv, stored, merged, reveal).await {
                Err(ObjectError::Conflict(_)) if expected.is_none() => continue,
                other => return other,
            }
        }
        Err(ObjectError::Conflict(format!(
            "{} {:?} kept changing while the patch was applied; try again",
            at.kind.name(),
            at.name
        )))
    }

    /// Replaces only the object's status (controllers and agents).
    #[tracing::instrument(skip_all, fields(kind = at.kind.name(), name = at.name))]
    pub async fn update_status(
        &self,
        at: &ObjectRef,
        status: Value,
        expected: Option<Revision>,
    ) -> ObjectResult<Value> {
        // Without a precondition the status applies to whatever is current,
        // so a concurrent writer (a controller, the scheduler) only makes it
        // retry.
        for _ in 0..16 {
            let kv = self.current(at).await?;
            if let Some(expected) = expected
                && expected != kv.mod_revision
            {
                return Err(stale(at, expected, kv.mod_revision));
            }
            let mut stored = stored_value(&kv)?;
            let mut candidate = stored.clone();
            if let Some(object) = candidate.as_object_mut() {
                object.insert("status".into(), status.clone());
            }
            // The status must fit the kind's schema like any other field.
            let (_, decoded) = self.decode(Some(at.kind), candidate)?;
            if let Some(object) = stored.as_object_mut() {
                object.insert(
                    "status".into(),
                    decoded.get("status").cloned().unwrap_or(json!({})),
                );
            }
            match self.write_raw(at, &kv, stored, SecretValues::Reveal).await {
                Err(ObjectError::Conflict(_)) if expected.is_none() => continue,
                other => return other.map(|(value, _)| value),
            }
        }
        Err(ObjectError::Conflict(format!(
            "{} {:?} kept changing while its status was written; try again",
            at.kind.name(),
            at.name
        )))
    }

    /// Deletes an object; with `expected`, only if it is still at that
    /// version. An object with finalizers (or deleted with `Orphan` or
    /// `Foreground` propagation, which add theirs) is only marked with a
    /// `deletionTimestamp`; it goes when its last finalizer is removed.
    ///
    /// A pod that a node runs is deleted gracefully, as in Kubernetes: it
    /// is marked with a `deletionTimestamp` `grace` seconds ahead (the
    /// caller's `gracePeriodSeconds`, else the pod's own
    /// `terminationGracePeriodSeconds`) and stays, terminating, until its
    /// node has stopped its containers and removes it
    /// ([`Objects::remove_stopped_pod`]). A grace of 0 removes it at once.
    /// Answers the object as it was, or as marked.
    #[tracing::instrument(skip_all, fields(kind = at.kind.name(), name = at.name))]
    pub async fn delete(
        &self,
        at: &ObjectRef,
        expected: Option<Revision>,
        reveal: SecretValues,
        options: DeleteOptions,
    ) -> ObjectResult<Value> {
        for _ in 0..16 {
            // Without a precondition, a write that slipped in between the
            // read and the delete (a status report, say) is no reason to
            // fail: read it again.
            match self.delete_once(at, expected, reveal, options).await {
                Err(ObjectError::Conflict(_)) if expected.is_none() => continue,
                other => return other,
            }
        }
        Err(ObjectError::Conflict(format!(
            "{} {:?} kept changing while it was being deleted; try again",
            at.kind.name(),
            at.name
        )))
    }

    async fn delete_once(
        &self,
        at: &ObjectRef,
        expected: Option<Revision>,
        reveal: SecretValues,
        options: DeleteOptions,
    ) -> ObjectResult<Value> {
        let kv = self.current(at).await?;
        if let Some(expected) = expected
            && expected != kv.mod_revision
        {
            return Err(stale(at, expected, kv.mod_revision));
        }
        let mut stored = stored_value(&kv)?;
        let mut finalizers = finalizers_of(&stored);
        if let Some(finalizer) = options.propagation.finalizer()
            && COLLECTED_KINDS.contains(&at.kind)
            && !finalizers.iter().any(|f| f == finalizer)
        {
            finalizers.push(finalizer.to_owned());
        }
        let grace = match at.kind {
            Kind::Pod => serde_json::from_value::<Pod>(stored.clone())
                .map_or(0, |pod| pod.deletion_grace(options.grace_period_seconds)),
            _ => 0,
        };
        if finalizers.is_empty() && grace == 0 {
            self.delete_kv(at, &kv).await?;
            return self.present_kv(at, &kv, reveal);
        }
        let marked = stored.clone();
        let metadata = metadata_mut(&mut stored);
        let due = self.clock.now() + chrono::Duration::seconds(grace);
        let sooner = metadata
            .get("deletionTimestamp")
            .and_then(Value::as_str)
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .is_none_or(|marked_due| due < marked_due);
        if sooner {
            metadata.insert("deletionTimestamp".into(), json!(format_time(due)));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(grace));
        }
        metadata.insert("finalizers".into(), json!(finalizers));
        if stored == marked {
            return self.present_kv(at, &kv, reveal);
        }
        self.write_raw(at, &kv, stored, reveal)
            .await
            .map(|(value, _)| value)
    }

    /// Ends the graceful deletion of the pod at `at` once its node has
    /// stopped its containers: the pod goes, if it is still the version
    /// `expected` (which the caller checked is bound to that node and is
    /// terminating). One that finalizers still hold stays marked, with no
    /// grace left, and goes when the last of them is removed.
    pub async fn remove_stopped_pod(&self, at: &ObjectRef, expected: Revision) -> ObjectResult<()> {
        let kv = self.current(at).await?;
        if kv.mod_revision != expected {
            return Err(stale(at, expected, kv.mod_revision));
        }
        let mut stored = stored_value(&kv)?;
        if stored["metadata"]["deletionTimestamp"].is_null() {
            return Err(ObjectError::Conflict(format!(
                "pod {:?} is not being deleted",
                at.name
            )));
        }
        if finalizers_of(&stored).is_empty() {
            return self.delete_kv(at, &kv).await;
        }
        metadata_mut(&mut stored).insert("deletionGracePeriodSeconds".into(), json!(0));
        self.write_raw(at, &kv, stored, SecretValues::Redact)
            .await
            .map(drop)
    }

    /// Deletes the object at `kv` if it is still at that revision, and
    /// frees what it holds (a Service's address and node ports) in the
    /// same transaction.
    async fn delete_kv(&self, at: &ObjectRef, kv: &KeyValue) -> ObjectResult<()> {
        for _ in 0..ALLOCATION_ATTEMPTS {
            let plan = match at.kind {
                Kind::Service => {
                    let service = serde_json::from_slice(&kv.value)
                        .map_err(|e| StoreError::Database(e.to_string()))?;
                    self.allocator.plan_release(at, &service).await?
                }
                _ => AllocationPlan::default(),
            };
            let guard = CompareTarget::ModRevision(kv.mod_revision);
            match self.commit(at, guard, Write::Delete, plan).await? {
                Committed::Done(_) => return Ok(()),
                Committed::ObjectChanged { .. } => {
                    return Err(ObjectError::Conflict(format!(
                        "{} {:?} changed while it was being deleted; read it again",
                        at.kind.name(),
                        at.name
                    )));
                }
                Committed::AllocationsChanged => continue,
            }
        }
        Err(allocations_kept_changing(at))
    }

    /// For a Service, plans its address and node ports going from
    /// `before` (none for a create) to `object`, and fills them into
    /// `object`'s spec; other kinds hold nothing.
    async fn plan_allocations(
        &self,
        at: &ObjectRef,
        before: Option<&Value>,
        object: &mut Value,
    ) -> ObjectResult<AllocationPlan> {
        if at.kind != Kind::Service {
            return Ok(AllocationPlan::default());
        }
        let typed = |value: &Value| {
            serde_json::from_value::<berth_api::objects::Service>(value.clone())
                .map_err(|e| StoreError::Database(format!("a Service that is not one: {e}")))
        };
        let before = before.map(typed).transpose()?;
        let mut service = typed(object)?;
        let uid = service.metadata.uid.clone().unwrap_or_default();
        let plan = self
            .allocator
            .plan(at, &uid, before.as_ref(), &mut service)
            .await?;
        object["spec"] =
            serde_json::to_value(&service.spec).map_err(|e| StoreError::Database(e.to_string()))?;
        Ok(plan)
    }

    /// Runs the write to `at` if `guard` holds for its key, with `plan`'s
    /// compares and writes in the same transaction, and tells which guard
    /// failed when one did.
    async fn commit(
        &self,
        at: &ObjectRef,
        guard: CompareTarget,
        write: Write,
        plan: AllocationPlan,
    ) -> ObjectResult<Committed> {
        let key = at.key();
        let mut compares: Vec<Compare> = self.fence.iter().map(Fence::compare).collect();
        compares.push(Compare {
            range: KeyRange::single(key.clone()),
            op: CompareOp::Equal,
            target: guard.clone(),
        });
        compares.extend(plan.compares);
        let mut success = vec![match write {
            Write::Put { value, lease } => put_op(key.clone(), value, lease),
            Write::Delete => Op::Delete(DeleteRequest {
                range: KeyRange::single(key.clone()),
                prev_kv: false,
            }),
        }];
        success.extend(plan.ops);
        // Tells which guard failed: the object's own, or the fence's.
        let mut failure = vec![Op::Range(RangeRequest {
            range: KeyRange::single(key),
            keys_only: true,
            ..RangeRequest::default()
        })];
        failure.extend(self.fence.iter().map(|fence| {
            Op::Range(RangeRequest {
                range: KeyRange::single(fence.key.clone()),
                keys_only: true,
                ..RangeRequest::default()
            })
        }));
        let response = self
            .store
            .txn(TxnRequest {
                compares,
                success,
                failure,
            })
            .await?;
        if response.succeeded {
            return Ok(Committed::Done(response.revision));
        }
        let found = |at: usize| match response.responses.get(at) {
            Some(OpResponse::Range(range)) => range.kvs.first().cloned(),
            _ => None,
        };
        if let Some(fence) = &self.fence
            && found(1).map(|kv| kv.create_revision) != Some(fence.create_revision)
        {
            return Err(ObjectError::LostLeadership {
                token: fence.create_revision,
            });
        }
        let current = found(0);
        let own_guard_holds = match (&guard, &current) {
            (CompareTarget::CreateRevision(0), None) => true,
            (CompareTarget::ModRevision(expected), Some(kv)) => kv.mod_revision == *expected,
            (CompareTarget::CreateRevision(expected), Some(kv)) if *expected != 0 => {
                kv.create_revision == *expected
            }
            _ => false,
        };
        Ok(if own_guard_holds {
            Committed::AllocationsChanged
        } else {
            Committed::ObjectChanged {
                exists: current.is_some(),
            }
        })
    }

    /// A page of the objects of `kind` in `tenant` that `selector` selects:
    /// at most `limit` (0: all), from where `continue_token` left off, all
    /// read at one revision.
    #[tracing::instrument(skip_all, fields(kind = kind.name(), tenant))]
    pub async fn list(
        &self,
        kind: Kind,
        tenant: Option<&str>,
        selector: &Selector,
        limit: i64,
        continue_token: Option<&str>,
        reveal: SecretValues,
    ) -> ObjectResult<ListPage> {
        self.list_named(kind, tenant, "", selector, limit, continue_token, reveal)
            .await
    }

    /// Like [`Objects::list`], only the objects whose names start with
    /// `name_prefix`: one key range, so reading the pods of a ReplicaSet
    /// (`{replicaset}-…`) or an object's events (`{object}.…`) costs what
    /// they hold, not what the tenant holds.
    #[tracing::instrument(skip_all, fields(kind = kind.name(), tenant, name_prefix))]
    pub async fn list_named(
        &self,
        kind: Kind,
        tenant: Option<&str>,
        name_prefix: &str,
        selector: &Selector,
        limit: i64,
        continue_token: Option<&str>,
        reveal: SecretValues,
    ) -> ObjectResult<ListPage> {
        let prefix = format!("{}{name_prefix}", crate::keys::collection(kind, tenant));
        let end = prefix_end(prefix.as_bytes());
        let (mut revision, mut start) = match continue_token {
            Some(token) => ContinueToken::decode(token, &prefix)?,
            None => (0, prefix.clone().into_bytes()),
        };
        let mut items = Vec::new();
        loop {
            let page = if limit > 0 {
                (limit - items.len() as i64 + 1).clamp(1, MAX_PAGE)
            } else {
                MAX_PAGE
            };
            let response = self
                .store
                .range(RangeRequest {
                    range: KeyRange::between(start.clone(), end.clone()),
                    revision,
                    limit: page,
                    ..RangeRequest::default()
                })
                .await?;
            if revision == 0 {
                revision = response.revision;
            }
            let mut last_key = None;
            for kv in &response.kvs {
                last_key = Some(kv.key.clone());
                let at = ref_from_key(kind, tenant, &kv.key);
                let value = self.present_kv(&at, kv, reveal)?;
                if selector.is_empty() || selector.matches(&labels_of(&value)) {
                    items.push(value);
                    if limit > 0 && items.len() as i64 == limit {
                        // Continue after this key, if anything follows it.
                        let more = response.more
                            || kv.key
                                != response
                                    .kvs
                                    .last()
                                    .map(|k| k.key.clone())
                                    .unwrap_or_default();
                        let continue_token = more.then(|| ContinueToken::encode(revision, &kv.key));
                        return Ok(ListPage {
                            items,
                            revision,
                            continue_token,
                        });
                    }
                }
            }
            match last_key {
                Some(key) if response.more => {
                    start = key;
                    start.push(0);
                }
                _ => {
                    return Ok(ListPage {
                        items,
                        revision,
                        continue_token: None,
                    });
                }
            }
        }
    }

    /// Every object of `kind` in `tenant`, each handed as stored JSON to
    /// `decode`, which keeps what it answers: a summary of a thousand
    /// objects (pods by phase, the newest warnings) decodes only the fields
    /// it needs, a fraction of what [`Objects::list`] costs. Secrets are
    /// refused: their values must go through redaction.
    pub async fn list_decoded<T>(
        &self,
        kind: Kind,
        tenant: Option<&str>,
        mut decode: impl FnMut(&[u8]) -> Option<T>,
    ) -> ObjectResult<(Vec<T>, Revision)> {
        if kind == Kind::Secret {
            return Err(ObjectError::Conflict(
                "Secrets are read through Objects::list, which redacts their values".into(),
            ));
        }
        let prefix = crate::keys::collection(kind, tenant);
        let mut items = Vec::new();
        let revision = self
            .store
            .range_prefix(prefix.as_bytes(), 0, MAX_PAGE, |kv| {
                items.extend(decode(&kv.value));
            })
            .await?;
        Ok((items, revision))
    }

    /// Watches the objects of `kind` in `tenant` after `revision`.
    pub async fn watch(
        &self,
        kind: Kind,
        tenant: Option<&str>,
        after: Revision,
    ) -> ObjectResult<Watch> {
        let prefix = crate::keys::collection(kind, tenant);
        Ok(self
            .store
            .watch(WatchRequest {
                range: KeyRange::prefix(prefix),
                start_revision: after + 1,
                prev_kv: true,
            })
            .await?)
    }

    /// What a watcher of `kind` in `tenant` with `selector` sees of a store
    /// event: `None` when the event does not concern them. An object that
    /// stops matching the selector is seen as deleted, one that starts
    /// matching as added, as Kubernetes' watch cache does.
    pub fn watch_event(
        &self,
        kind: Kind,
        tenant: Option<&str>,
        selector: &Selector,
        event: &Event,
        reveal: SecretValues,
    ) -> ObjectResult<Option<(&'static str, Value)>> {
        let at = ref_from_key(kind, tenant, &event.kv.key);
        let before = match &event.prev_kv {
            Some(prev) => Some(self.present_kv(&at, prev, reveal)?),
            None => None,
        };
        let matched_before = before
            .as_ref()
            .is_some_and(|v| selector.matches(&labels_of(v)));
        match event.kind {
            EventKind::Delete => Ok(before.filter(|_| matched_before).map(|mut value| {
                set_resource_version(&mut value, event.kv.mod_revision);
                ("DELETED", value)
            })),
            EventKind::Put => {
                let after = self.present_kv(&at, &event.kv, reveal)?;
                let matches_now = selector.matches(&labels_of(&after));
                Ok(match (matched_before, matches_now) {
                    (_, true) if before.is_none() || !matched_before => Some(("ADDED", after)),
                    (_, true) => Some(("MODIFIED", after)),
                    (true, false) => Some(("DELETED", after)),
                    (false, false) => None,
                })
            }
        }
    }

    /// Checks a Pod, Deployment or ReplicaSet about to be written against
    /// its tenant's Pod Security level; other kinds, and updates that leave
    /// what the checks read as it was (`before`), pass.
    async fn admit(
        &self,
        kind: Kind,
        tenant: Option<&str>,
        name: &str,
        object: &Value,
        before: Option<&Value>,
    ) -> ObjectResult<()> {
        use crate::pod_security::checked_part;
        let Some(tenant) = tenant else {
            return Ok(());
        };
        if !berth_api::pod_security::CHECKED_KINDS.contains(&kind)
            || before.is_some_and(|b| checked_part(kind, b) == checked_part(kind, object))
        {
            return Ok(());
        }
        let level = crate::pod_security::tenant_level(&self.store, tenant).await?;
        crate::pod_security::admit(level, kind, name, object)
    }

    async fn current(&self, at: &ObjectRef) -> ObjectResult<KeyValue> {
        self.store
            .get(at.key().as_bytes(), 0)
            .await?
            .ok_or_else(|| ObjectError::NotFound {
                kind: at.kind.name(),
                name: at.name.clone(),
            })
    }

    /// Writes `merged` over `kv` unless nothing changed; bumps the
    /// generation when anything but metadata and status changed.
    async fn write_over(
        &self,
        at: &ObjectRef,
        kv: &KeyValue,
        stored: Value,
        merged: Value,
        reveal: SecretValues,
    ) -> ObjectResult<(Value, Outcome)> {
        let opened_stored = self.open(at, stored.clone())?;
        check_immutable(at.kind, &opened_stored, &merged)?;
        self.admit(
            at.kind,
            at.tenant.as_deref(),
            &at.name,
            &merged,
            Some(&opened_stored),
        )
        .await?;
        for _ in 0..ALLOCATION_ATTEMPTS {
            let mut merged = merged.clone();
            let plan = self
                .plan_allocations(at, Some(&opened_stored), &mut merged)
                .await?;
            if opened_stored == merged {
                return Ok((
                    self.present(at, stored, kv.mod_revision, reveal)?,
                    Outcome::Unchanged,
                ));
            }
            if spec_of(&opened_stored) != spec_of(&merged) {
                let generation = stored["metadata"]["generation"].as_i64().unwrap_or(1);
                metadata_mut(&mut merged).insert("generation".into(), json!(generation + 1));
            }
            if merged["metadata"]["deletionTimestamp"].is_string()
                && finalizers_of(&merged).is_empty()
                && !awaits_its_node(&merged)
            {
                // The last finalizer is gone: the deletion it held goes ahead.
                self.delete_kv(at, kv).await?;
                return Ok((
                    self.present(at, merged, kv.mod_revision, reveal)?,
                    Outcome::Updated,
                ));
            }
            let sealed = self.seal(at, merged)?;
            if let Some(written) = self.write_planned(at, kv, sealed, reveal, plan).await? {
                return Ok(written);
            }
        }
        Err(allocations_kept_changing(at))
    }

    async fn write_raw(
        &self,
        at: &ObjectRef,
        kv: &KeyValue,
        stored: Value,
        reveal: SecretValues,
    ) -> ObjectResult<(Value, Outcome)> {
        self.write_planned(at, kv, stored, reveal, AllocationPlan::default())
            .await?
            .ok_or_else(|| allocations_kept_changing(at))
    }

    /// Writes `stored` over `kv` with `plan`'s allocations; `None` when an
    /// allocation changed in between and the plan must be made again.
    async fn write_planned(
        &self,
        at: &ObjectRef,
        kv: &KeyValue,
        stored: Value,
        reveal: SecretValues,
        plan: AllocationPlan,
    ) -> ObjectResult<Option<(Value, Outcome)>> {
        let write = Write::Put {
            value: to_bytes(&stored)?,
            lease: Some(kv.lease),
        };
        let guard = CompareTarget::ModRevision(kv.mod_revision);
        match self.commit(at, guard, write, plan).await? {
            Committed::Done(revision) => Ok(Some((
                self.present(at, stored, revision, reveal)?,
                Outcome::Updated,
            ))),
            Committed::ObjectChanged { exists: true } => Err(ObjectError::Conflict(format!(
                "{} {:?} was changed by someone else; read it again and retry",
                at.kind.name(),
                at.name
            ))),
            Committed::ObjectChanged { exists: false } => Err(ObjectError::NotFound {
                kind: at.kind.name(),
                name: at.name.clone(),
            }),
            Committed::AllocationsChanged => Ok(None),
        }
    }

    fn present_kv(
        &self,
        at: &ObjectRef,
        kv: &KeyValue,
        reveal: SecretValues,
    ) -> ObjectResult<Value> {
        self.present(at, stored_value(kv)?, kv.mod_revision, reveal)
    }

    /// The object as callers see it: resourceVersion filled in, Secret
    /// values opened or redacted.
    fn present(
        &self,
        at: &ObjectRef,
        stored: Value,
        revision: Revision,
        reveal: SecretValues,
    ) -> ObjectResult<Value> {
        let mut value = match (at.kind, reveal) {
            (Kind::Secret, SecretValues::Reveal) => self.open(at, stored)?,
            (Kind::Secret, SecretValues::Redact) => redact(stored),
            _ => stored,
        };
        set_resource_version(&mut value, revision);
        Ok(value)
    }

    /// Seals a Secret's values (and folds `stringData` into `data`, as
    /// Kubernetes does); other kinds pass through.
    fn seal(&self, at: &ObjectRef, mut value: Value) -> ObjectResult<Value> {
        if at.kind != Kind::Secret {
            return Ok(value);
        }
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        let string_data = value
            .as_object_mut()
            .and_then(|o| o.remove("stringData"))
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        let mut data: BTreeMap<String, String> = value
            .get("data")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        for (key, text) in string_data {
            data.insert(key, engine.encode(text.as_str().unwrap_or_default()));
        }
        let mut sealed = Map::new();
        for (key, encoded) in data {
            let plain = engine.decode(&encoded).map_err(|e| ObjectError::Invalid {
                kind: "Secret".into(),
                errors: vec![FieldError {
                    field: format!("data[{key}]"),
                    reason: format!("not valid base64: {e}"),
                }],
            })?;
            let context = format!("{}/{key}", at.key());
            sealed.insert(key, json!(self.key.seal(&plain, &context)));
        }
        if let Some(object) = value.as_object_mut() {
            if sealed.is_empty() {
                object.remove("data");
            } else {
                object.insert("data".into(), Value::Object(sealed));
            }
        }
        Ok(value)
    }

    fn open(&self, at: &ObjectRef, mut value: Value) -> ObjectResult<Value> {
        if at.kind != Kind::Secret {
            return Ok(value);
        }
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        if let Some(data) = value.get_mut("data").and_then(Value::as_object_mut) {
            for (key, sealed) in data.iter_mut() {
                let context = format!("{}/{key}", at.key());
                let plain = self
                    .key
                    .open(sealed.as_str().unwrap_or_default(), &context)
                    .map_err(|e| ObjectError::Sealing(format!("data[{key}]: {e}")))?;
                *sealed = json!(engine.encode(plain));
            }
        }
        Ok(value)
    }
}

/// A Secret as a caller without the right to its values sees it: the keys,
/// each with an empty value.
fn redact(mut value: Value) -> Value {
    if let Some(data) = value.get_mut("data").and_then(Value::as_object_mut) {
        for sealed in data.values_mut() {
            *sealed = json!("");
        }
    }
    value
}

/// Where `key` lives, for a key under `kind`'s prefix in `tenant`.
fn ref_from_key(kind: Kind, tenant: Option<&str>, key: &[u8]) -> ObjectRef {
    let prefix = crate::keys::collection(kind, tenant);
    let name = String::from_utf8_lossy(key)
        .strip_prefix(&prefix)
        .unwrap_or_default()
        .to_owned();
    ObjectRef {
        kind,
        tenant: tenant.map(str::to_owned),
        name,
    }
}

/// The object's `metadata.finalizers`.
fn finalizers_of(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn stored_value(kv: &KeyValue) -> ObjectResult<Value> {
    serde_json::from_slice(&kv.value).map_err(|e| {
        ObjectError::Store(StoreError::Database(format!(
            "the object at {} is not JSON: {e}",
            String::from_utf8_lossy(&kv.key)
        )))
    })
}

fn object_name(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    match object.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(metadata) => metadata,
        None => unreachable!("metadata was just made an object"),
    }
}

fn set_tenant(kind: Kind, tenant: Option<&str>, object: &mut Value) {
    let metadata = metadata_mut(object);
    match tenant {
        Some(tenant) if kind.namespaced() => {
            metadata.insert("tenant".into(), json!(tenant));
        }
        _ => {
            metadata.remove("tenant");
        }
    }
}

fn set_resource_version(object: &mut Value, revision: Revision) {
    metadata_mut(object).insert("resourceVersion".into(), json!(revision.to_string()));
}

/// The labels of an object.
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The `metadata.resourceVersion` a body carries, if any.
fn resource_version_of(object: &Value) -> ObjectResult<Option<Revision>> {
    match &object["metadata"]["resourceVersion"] {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => s.parse::<Revision>().map(Some).map_err(|_| invalid_rv(s)),
        other => Err(invalid_rv(&other.to_string())),
    }
}

fn invalid_rv(given: &str) -> ObjectError {
    ObjectError::Invalid {
        kind: "object".into(),
        errors: vec![FieldError {
            field: "metadata.resourceVersion".into(),
            reason: format!("{given:?} is not a resourceVersion this server issued"),
        }],
    }
}

fn stale(at: &ObjectRef, expected: Revision, current: Revision) -> ObjectError {
    ObjectError::Conflict(format!(
        "{} {:?} has been modified: you sent resourceVersion {expected}, it is now at {current}; read it again and retry",
        at.kind.name(),
        at.name
    ))
}

fn check_body_name(at: &ObjectRef, object: &Value) -> ObjectResult<()> {
    let name = object_name(object);
    if name != at.name {
        return Err(ObjectError::Invalid {
            kind: at.kind.name().into(),
            errors: vec![FieldError {
                field: "metadata.name".into(),
                reason: format!(
                    "{name:?} does not match the name in the path, {:?}",
                    at.name
                ),
            }],
        });
    }
    Ok(())
}

/// The stored object with the user's change: the user's spec, data, labels,
/// annotations and owner references; the server's uid, creation time,
/// generation, tenant and status.
fn merge_user_change(kind: Kind, stored: &Value, user: Value) -> Value {
    let mut merged = user;
    let stored_meta = stored["metadata"].as_object().cloned().unwrap_or_default();
    let metadata = metadata_mut(&mut merged);
    for field in [
        "uid",
        "creationTimestamp",
        "generation",
        "tenant",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match stored_meta.get(field) {
            Some(value) => metadata.insert(field.into(), value.clone()),
            None => metadata.remove(field),
        };
    }
    metadata.remove("resourceVersion");
    if kind == Kind::Service {
        keep_allocated_fields(stored, &mut merged);
    }
    if kind.has_status()
        && let Some(object) = merged.as_object_mut()
    {
        object.insert(
            "status".into(),
            stored.get("status").cloned().unwrap_or(json!({})),
        );
    }
    merged
}

/// A Service update with the address and node ports the server gave it
/// kept where the user left them out; values that do not read as Services
/// are left as they are.
fn keep_allocated_fields(stored: &Value, merged: &mut Value) {
    use berth_api::objects::Service;
    use berth_api::objects::service::ServiceSpec;
    let read = |v: &Value| serde_json::from_value::<ServiceSpec>(v["spec"].clone()).ok();
    let (Some(stored_spec), Some(user_spec)) = (read(stored), read(merged)) else {
        return;
    };
    let stored_service = Service {
        spec: stored_spec,
        ..Default::default()
    };
    let mut user_service = Service {
        spec: user_spec,
        ..Default::default()
    };
    keep_allocated(&stored_service, &mut user_service);
    if let Ok(spec) = serde_json::to_value(&user_service.spec) {
        merged["spec"] = spec;
    }
}

fn to_bytes(value: &Value) -> ObjectResult<Vec<u8>> {
    Ok(serde_json::to_vec(value).map_err(|e| StoreError::Database(e.to_string()))?)
}

fn allocations_kept_changing(at: &ObjectRef) -> ObjectError {
    ObjectError::Conflict(format!(
        "the addresses and ports {} {:?} asks for kept changing hands; try again",
        at.kind.name(),
        at.name
    ))
}

/// Everything the server sets, taken out so that a patch starts from what
/// the user owns.
fn strip_server_fields(object: &mut Value) {
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
    let metadata = metadata_mut(object);
    for field in [
        "uid",
        "creationTimestamp",
        "generation",
        "tenant",
        "resourceVersion",
    ] {
        metadata.remove(field);
    }
}

/// The part of an object whose change is a new generation: all but
/// metadata and status.
fn spec_of(object: &Value) -> Value {
    let mut spec = object.clone();
    if let Some(o) = spec.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    spec
}

/// Fields that never change after create, as Kubernetes has them.
fn check_immutable(kind: Kind, stored: &Value, merged: &Value) -> ObjectResult<()> {
    let mut errors = Vec::new();
    if matches!(kind, Kind::Deployment | Kind::ReplicaSet)
        && stored["spec"]["selector"] != merged["spec"]["selector"]
    {
        errors.push(FieldError {
            field: "spec.selector".into(),
            reason: "field is immutable".into(),
        });
    }
    if matches!(kind, Kind::ConfigMap | Kind::Secret) && stored["immutable"] == json!(true) {
        for field in ["data", "binaryData", "immutable"] {
            if stored[field] != merged[field] {
                errors.push(FieldError {
                    field: field.into(),
                    reason: "field is immutable when `immutable` is set".into(),
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ObjectError::Invalid {
            kind: kind.name().into(),
            errors,
        })
    }
}

/// RFC 7386 JSON merge patch: objects merge, `null` removes, anything else
/// replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let Some(target) = target.as_object_mut() else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// A list's continue token: the revision the list is read at and the key
/// after which the next page starts, opaque to clients.
struct ContinueToken;

impl ContinueToken {
    fn encode(revision: Revision, last_key: &[u8]) -> String {
        use base64::Engine;
        let raw = json!({"rv": revision, "start": String::from_utf8_lossy(last_key)}).to_string();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// The revision and the first key of the next page.
    fn decode(token: &str, prefix: &str) -> ObjectResult<(Revision, Vec<u8>)> {
        use base64::Engine;
        let invalid = || ObjectError::Invalid {
            kind: "list".into(),
            errors: vec![FieldError {
                field: "continue".into(),
                reason: "not a continue token this list issued".into(),
            }],
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| invalid())?;
        let parsed: Value = serde_json::from_slice(&raw).map_err(|_| invalid())?;
        let revision = parsed["rv"]
            .as_i64()
            .filter(|r| *r > 0)
            .ok_or_else(invalid)?;
        let start = parsed["start"].as_str().ok_or_else(invalid)?;
        if !start.starts_with(prefix) {
            return Err(invalid());
        }
        let mut start = start.as_bytes().to_vec();
        start.push(0);
        Ok((revision, start))
    }
}

/// Whether a deleted object still waits for its node: a pod marked with a
/// grace period that its node has not yet ended. Removing its last
/// finalizer does not remove it then; its node does.
fn awaits_its_node(object: &Value) -> bool {
    object["metadata"]["deletionGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(0)
        > 0
}

/// The fields the server sets on every new object, whoever creates it (a
/// user, a controller, the event recorder): a fresh `uid`, `generation` 1,
/// `creationTimestamp` `now`, no `resourceVersion` (that is the key's mod
/// revision) and no deletion marks, and an empty `status` for the kinds
/// that have one (only the status path writes it).
fn stamp_new(kind: Kind, object: &mut Value, now: &str) {
    let metadata = metadata_mut(object);
    metadata.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    metadata.insert("generation".into(), json!(1));
    metadata.insert("creationTimestamp".into(), json!(now));
    metadata.remove("resourceVersion");
    metadata.remove("deletionTimestamp");
    metadata.remove("deletionGracePeriodSeconds");
    if kind.has_status()
        && let Some(object) = object.as_object_mut()
    {
        object.insert("status".into(), json!({}));
    }
}

/// An object as it is stored over an older version: without
/// `resourceVersion`.
fn stored_bytes(mut object: Value) -> ObjectResult<Vec<u8>> {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    to_bytes(&object)
}

/// The put of `value` at `key`, on `lease` (`None`: the key keeps its own).
fn put_op(key: String, value: Vec<u8>, lease: Option<i64>) -> Op {
    Op::Put(PutRequest {
        key: key.into_bytes(),
        value,
        lease: lease.unwrap_or_default(),
        ignore_lease: lease.is_none(),
        ..PutRequest::default()
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::controllers::fenced::{FencedWriter, WriteError};
    use crate::controllers::runtime::FakeClock;
    use crate::events::{EventRecorder, EventType, Involved};

    const LEADER: &str = "/registry/leases/test-leader";

    fn objects_at(store: &Store, now: &str) -> Objects {
        let clock = FakeClock::new(
            chrono::DateTime::parse_from_rfc3339(now)
                .unwrap()
                .with_timezone(&chrono::Utc),
        );
        Objects::new(store.clone(), EncryptionKey::from_bytes([7; 32])).with_clock(Arc::new(clock))
    }

    /// Takes the leader key; answers the fence of this incarnation.
    async fn lead(store: &Store) -> Fence {
        let put = store
            .put(PutRequest {
                key: LEADER.into(),
                value: b"me".to_vec(),
                ..PutRequest::default()
            })
            .await
            .unwrap();
        Fence {
            key: LEADER.into(),
            create_revision: put.revision,
        }
    }

    async fn stored(store: &Store, key: &str) -> Option<Value> {
        let kv = store.get(key.as_bytes(), 0).await.unwrap()?;
        Some(serde_json::from_slice(&kv.value).unwrap())
    }

    fn pod(name: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "tenant": "acme", "uid": "chosen-by-the-writer",
                "generation": 7, "resourceVersion": "3",
                "creationTimestamp": "2001-01-01T00:00:00Z",
                "deletionTimestamp": "2001-01-01T00:00:00Z",
            },
            "spec": {"containers": [{"name": "main", "image": "busybox:1"}]},
            "status": {"phase": "Running"}
        })
    }

    #[tokio::test]
    async fn every_writer_sets_the_server_managed_fields_the_same_way() {
        let (_dir, store) = crate::store::temporary().await;
        let now = "2026-12-06T10:00:00Z";
        let objects = objects_at(&store, now);
        let fence = lead(&store).await;
        let clock = Arc::new(FakeClock::new(objects.now()));

        let (_, user_pod) = objects.decode(Some(Kind::Pod), pod("by-a-user")).unwrap();
        objects
            .create(Kind::Pod, Some("acme"), user_pod, SecretValues::Reveal)
            .await
            .unwrap();
        let writer = FencedWriter::new(objects.clone(), fence, clock);
        let controller_pod: Pod = serde_json::from_value(pod("by-a-controller")).unwrap();
        let created = writer.create(&controller_pod).await.unwrap();
        assert!(created.metadata.resource_version.is_some());
        EventRecorder::new(
            writer.objects().clone(),
            "scheduler",
            Duration::from_secs(60),
        )
        .record(
            &Involved {
                kind: "Pod".into(),
                tenant: "acme".into(),
                name: "by-a-user".into(),
                uid: None,
            },
            EventType::Normal,
            "Scheduled",
            "Successfully assigned acme/by-a-user to n1",
        )
        .await
        .unwrap();
        let (events, _) = objects
            .list_decoded(Kind::Event, Some("acme"), |bytes| {
                serde_json::from_slice::<Value>(bytes).ok()
            })
            .await
            .unwrap();
        assert_eq!(events.len(), 1);

        let mut uids = std::collections::BTreeSet::new();
        for object in [
            stored(&store, "/registry/pods/acme/by-a-user")
                .await
                .unwrap(),
            stored(&store, "/registry/pods/acme/by-a-controller")
                .await
                .unwrap(),
            events[0].clone(),
        ] {
            let metadata = &object["metadata"];
            assert_eq!(metadata["generation"], 1, "{object}");
            assert_eq!(metadata["creationTimestamp"], now, "{object}");
            assert!(metadata.get("resourceVersion").is_none(), "{object}");
            assert!(metadata.get("deletionTimestamp").is_none(), "{object}");
            let uid = metadata["uid"].as_str().unwrap();
            assert_ne!(uid, "chosen-by-the-writer");
            uids.insert(uid.to_owned());
            if object["kind"] == "Pod" {
                assert_eq!(
                    object["status"],
                    json!({}),
                    "only the status path writes it"
                );
            } else {
                assert!(object.get("status").is_none(), "{object}");
            }
        }
        assert_eq!(uids.len(), 3, "each object its own uid");
        store.close().await;
    }

    #[tokio::test]
    async fn a_fenced_write_after_leadership_is_lost_is_refused_on_every_path() {
        let (_dir, store) = crate::store::temporary().await;
        let objects = objects_at(&store, "2026-12-06T10:00:00Z");
        let fence = lead(&store).await;
        let fenced = objects.clone().fenced(fence.clone());
        let (kept, revision) = fenced
            .create_checked(Kind::Pod, pod("kept"), 0)
            .await
            .unwrap();

        // Another process takes leadership: a new incarnation of the key.
        store
            .delete(DeleteRequest {
                range: KeyRange::single(LEADER),
                prev_kv: false,
            })
            .await
            .unwrap();
        lead(&store).await;

        let lost = |result: ObjectResult<Revision>| {
            assert!(
                matches!(result, Err(ObjectError::LostLeadership { token }) if token == fence.create_revision),
                "{result:?}"
            );
        };
        lost(
            fenced
                .create_checked(Kind::Pod, pod("new"), 0)
                .await
                .map(|(_, revision)| revision),
        );
        let mut changed = kept.clone();
        changed["spec"]["nodeName"] = json!("n1");
        let at = ObjectRef {
            kind: Kind::Pod,
            tenant: Some("acme".into()),
            name: "kept".into(),
        };
        lost(
            fenced
                .replace_all(vec![Replacement {
                    at: at.clone(),
                    object: changed,
                    expected: revision,
                    lease: None,
                }])
                .await,
        );
        lost(
            fenced
                .delete_checked(&at, CompareTarget::ModRevision(revision))
                .await,
        );
        let writer = FencedWriter::new(
            objects.clone(),
            fence,
            Arc::new(FakeClock::new(objects.now())),
        );
        let refused = writer
            .create(&serde_json::from_value::<Pod>(pod("by-a-controller")).unwrap())
            .await;
        assert!(
            matches!(refused, Err(WriteError::LostLeadership { .. })),
            "{refused:?}"
        );
        let event = EventRecorder::new(fenced.clone(), "scheduler", Duration::from_secs(60))
            .record(
                &Involved {
                    kind: "Pod".into(),
                    tenant: "acme".into(),
                    name: "kept".into(),
                    uid: None,
                },
                EventType::Normal,
                "Scheduled",
                "Successfully assigned acme/kept to n1",
            )
            .await;
        assert!(event.is_err());

        // Nothing was written; an unfenced writer is not affected.
        assert_eq!(
            stored(&store, "/registry/pods/acme/kept").await.unwrap(),
            kept
        );
        assert!(stored(&store, "/registry/pods/acme/new").await.is_none());
        assert!(
            stored(&store, "/registry/pods/acme/by-a-controller")
                .await
                .is_none()
        );
        let (events, _) = objects
            .list_decoded(Kind::Event, Some("acme"), |_| Some(()))
            .await
            .unwrap();
        assert!(events.is_empty());
        objects
            .delete_checked(&at, CompareTarget::ModRevision(revision))
            .await
            .unwrap();
        store.close().await;
    }

    #[test]
    fn a_merge_patch_merges_objects_and_removes_nulls() {
        let mut target = json!({"a": {"b": 1, "c": 2}, "d": [1, 2]});
        merge_patch(&mut target, &json!({"a": {"b": null, "e": 3}, "d": [3]}));
        assert_eq!(target, json!({"a": {"c": 2, "e": 3}, "d": [3]}));
    }

    #[test]
    fn continue_tokens_round_trip_and_refuse_other_prefixes() {
        let token = ContinueToken::encode(42, b"/registry/pods/acme/web-1");
        let (revision, start) = ContinueToken::decode(&token, "/registry/pods/acme/").unwrap();
        assert_eq!(revision, 42);
        assert_eq!(start, b"/registry/pods/acme/web-1\0");
        assert!(ContinueToken::decode(&token, "/registry/pods/globex/").is_err());
        assert!(ContinueToken::decode("not-a-token", "/registry/pods/acme/").is_err());
    }
}
