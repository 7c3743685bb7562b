//! The node API (`berth.node.v1.NodeService`, gRPC on `--grpc-addr` beside
//! the etcd API): what agents say to the control plane.
//!
//! - `credentials`: the bootstrap join token, issuing node credentials and
//!   resolving them to their node.
//! - `authorize`: the one decision of what a node credential may do, and
//!   which ConfigMaps and Secrets a pod references.
//! - `node_status`: the Node object and status an agent's calls write.
//! - `pods_by_node`: one store watch on every pod, fanned out to the nodes
//!   the pods are bound to.
//! - `config_changes`: one store watch on ConfigMaps and Secrets, so that
//!   the pods that use a changed one are sent to their nodes again.
//! - `services_watch`: every Service and EndpointSlice, listed and then
//!   followed, for each `WatchServices` stream.
//! - [`tunnels`]: the agents' `Streams` tunnels held by this process, and
//!   the log and exec requests running through them.
//! - this module: the RPCs (parse, authenticate, authorize, call, map
//!   errors).

mod authorize;
mod config_changes;
pub mod credentials;
mod node_status;
pub mod pods_by_node;
mod services_watch;
pub mod tunnels;

use berth_api::labels;
use berth_api::node::v1 as pb;
use berth_api::node::v1::node_service_server::{NodeService, NodeServiceServer};
use berth_api::objects::{Kind, Pod};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub use authorize::{NodeAction, PodReferences, ReferenceKind, node_may};
use config_changes::{ConfigChange, ConfigChanges};
use credentials::Credentials;
use node_status::ReportedCondition;
use pods_by_node::{ChangeKind, NodePodEvent, PodsByNode};
use services_watch::ServicesWatch;
use tunnels::Tunnels;

use crate::controllers::runtime::Informer;
use crate::events::{DEFAULT_EVENT_TTL, EventRecorder, EventType, Involved};
use crate::objects::{ObjectError, ObjectRef, Objects, SecretValues};
use crate::pod_metrics::{ContainerUsage, PodMetricsStore, Sample};
use crate::store::StoreError;
use crate::store::types::Revision;

/// How often a write that lost a race with another writer is tried again.
const MAX_ATTEMPTS: usize = 8;

/// How many notes one `RecordPodEvents` call may carry.
const MAX_NOTES: usize = 100;

/// The most pods one `ReportPodMetrics` call may carry.
const MAX_METRICS_PODS: usize = 1000;

/// How many converted events a `WatchPods` or `WatchServices` stream
/// buffers for its client.
const STREAM_BUFFER: usize = 64;

/// Why a node API call failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeApiError {
    /// No valid join token or node credential.
    #[error("{0}")]
    Unauthenticated(String),
    /// The node may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The object is not in the state the call is for.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Another writer kept winning.
    #[error("{0}")]
    Contended(String),
    /// An object operation failed.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<NodeApiError> for Status {
    fn from(error: NodeApiError) -> Status {
        match error {
            NodeApiError::Unauthenticated(m) => Status::unauthenticated(m),
            NodeApiError::PermissionDenied(m) => Status::permission_denied(m),
            NodeApiError::InvalidArgument(m) => Status::invalid_argument(m),
            NodeApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            NodeApiError::Contended(m) => Status::aborted(m),
            NodeApiError::Object(error) => object_status(error),
            NodeApiError::Store(error) => store_status(error),
        }
    }
}

fn object_status(error: ObjectError) -> Status {
    match error {
        ObjectError::Invalid { kind, errors } => {
            let details: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.reason))
                .collect();
            Status::invalid_argument(format!("the {kind} is invalid: {}", details.join("; ")))
        }
        ObjectError::Forbidden { .. } => Status::permission_denied(error.to_string()),
        ObjectError::NotFound { .. } => Status::not_found(error.to_string()),
        ObjectError::AlreadyExists { .. } => Status::already_exists(error.to_string()),
        ObjectError::Conflict(m) => Status::aborted(m),
        ObjectError::Taken { .. } => Status::already_exists(error.to_string()),
        ObjectError::Unprocessable { .. } => Status::invalid_argument(error.to_string()),
        ObjectError::Gone(m) => Status::out_of_range(m),
        ObjectError::Sealing(m) => Status::internal(m),
        ObjectError::LostLeadership { .. } => Status::unavailable(error.to_string()),
        ObjectError::Store(error) => store_status(error),
    }
}

fn store_status(error: StoreError) -> Status {
    match error {
        StoreError::Unavailable(_) => Status::unavailable(error.to_string()),
        other => Status::internal(other.to_string()),
    }
}

/// How long a tenant's Pod Security level is reused for the pods sent to
/// nodes before it is read again.
const LEVEL_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Tenants' Pod Security levels as recently read: a snapshot of thousands
/// of pods would otherwise read the tenants table once per pod.
#[derive(Clone, Default)]
struct TenantLevels(
    std::sync::Arc<
        std::sync::Mutex<
            std::collections::HashMap<String, (berth_api::pod_security::Level, std::time::Instant)>,
        >,
    >,
);

impl TenantLevels {
    /// `tenant`'s level, at most [`LEVEL_CACHE_TTL`] old.
    async fn of(
        &self,
        store: &crate::store::Store,
        tenant: &str,
    ) -> Result<berth_api::pod_security::Level, StoreError> {
        let now = std::time::Instant::now();
        let cached = self
            .0
            .lock()
            .ok()
            .and_then(|levels| levels.get(tenant).copied())
            .filter(|(_, read)| now.duration_since(*read) < LEVEL_CACHE_TTL);
        if let Some((level, _)) = cached {
            return Ok(level);
        }
        let level = crate::pod_security::tenant_level(store, tenant).await?;
        if let Ok(mut levels) = self.0.lock() {
            levels.insert(tenant.to_owned(), (level, now));
        }
        Ok(level)
    }
}

/// The node API's state; cheap to clone.
#[derive(Clone)]
pub struct NodeApi {
    objects: Objects,
    levels: TenantLevels,
    credentials: Credentials,
    pods: PodsByNode,
    config: ConfigChanges,
    tunnels: Tunnels,
    /// Where the pods' reported resource use is kept.
    metrics: PodMetricsStore,
    /// Writes the events agents report about their pods.
    events: EventRecorder,
    shutdown: CancellationToken,
}

impl NodeApi {
    /// Starts the node API's shared pod index over the process's pod
    /// informer `pods`; it and every open `WatchPods`, `WatchServices` and
    /// `Streams` stream stop at `shutdown`. Agents' tunnels are kept in
    /// `tunnels` and the pods' reported resource use in `metrics`, which
    /// the REST API reads.
    pub fn start(
        objects: Objects,
        pods: &Informer<Pod>,
        tunnels: Tunnels,
        metrics: PodMetricsStore,
        shutdown: CancellationToken,
    ) -> NodeApi {
        NodeApi {
            metrics,
            credentials: Credentials::new(objects.store().clone()),
            pods: PodsByNode::start(pods, shutdown.clone()),
            config: ConfigChanges::start(objects.clone(), shutdown.clone()),
            tunnels,
            levels: TenantLevels::default(),
            events: EventRecorder::new(objects.clone(), "berth-agent", DEFAULT_EVENT_TTL),
            objects,
            shutdown,
        }
    }

    /// The gRPC service, to add to the server's router.
    pub fn service(self) -> NodeServiceServer<NodeApi> {
        NodeServiceServer::new(self)
    }

    /// The node whose credential the request carries
    /// (`authorization: Bearer bnode_…`). Nothing else is accepted: user
    /// tokens have no business here.
    async fn caller<T>(&self, request: &Request<T>) -> Result<String, NodeApiError> {
        let unauthenticated = |m: &str| NodeApiError::Unauthenticated(m.to_owned());
        let header = request.metadata().get("authorization").ok_or_else(|| {
            unauthenticated("send the node credential: authorization: Bearer bnode_…")
        })?;
        let bearer = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .ok_or_else(|| {
                unauthenticated("the authorization header must be \"Bearer bnode_…\"")
            })?;
        if !bearer.starts_with(credentials::NODE_CREDENTIAL_PREFIX) {
            return Err(unauthenticated(
                "the node API accepts only node credentials (bnode_…), from Register",
            ));
        }
        self.credentials.node_of(bearer).await?.ok_or_else(|| {
            unauthenticated("the node credential is unknown or was replaced: register again")
        })
    }

    #[tracing::instrument(skip_all, fields(node = request.node_name))]
    async fn register_node(
        &self,
        request: pb::RegisterRequest,
    ) -> Result<pb::RegisterResponse, NodeApiError> {
        if !self
            .credentials
            .join_token_is_live(&request.join_token)
            .await?
        {
            return Err(NodeApiError::Unauthenticated(
                "the join token is unknown, expired or revoked".into(),
            ));
        }
        if !labels::is_dns_subdomain(&request.node_name) {
            return Err(NodeApiError::InvalidArgument(format!(
                "node_name {:?} is not a valid name (lowercase letters, digits, '-' and '.')",
                request.node_name
            )));
        }
        let (_, registered) = self
            .objects
            .decode(Some(Kind::Node), node_status::registered_node(&request))?;
        let conditions = ReportedCondition::from_agent(&request.conditions)
            .map_err(NodeApiError::InvalidArgument)?;
        let at = node_ref(&request.node_name);
        self.write_registration(&at, &registered).await?;
        let now = now_rfc3339();
        let resource_version = self
            .change_status(&at, |status| {
                node_status::report_registration(status, &request, &conditions, &now);
                Ok(())
            })
            .await?;
        let node_credential = self.credentials.issue(&request.node_name).await?;
        tracing::info!("node registered");
        Ok(pb::RegisterResponse {
            node_credential,
            resource_version,
        })
    }

    /// Creates the Node, or merges the registration into the existing one.
    async fn write_registration(
        &self,
        at: &ObjectRef,
        registered: &Value,
    ) -> Result<(), NodeApiError> {
        for _ in 0..MAX_ATTEMPTS {
            match self.objects.get(at, SecretValues::Redact).await {
                Err(ObjectError::NotFound { .. }) => {
                    match self
                        .objects
                        .create(Kind::Node, None, registered.clone(), SecretValues::Redact)
                        .await
                    {
                        Ok(_) => return Ok(()),
                        Err(ObjectError::AlreadyExists { .. }) => continue,
                        Err(error) => return Err(error.into()),
                    }
                }
                Ok(existing) => {
                    let merged = node_status::merge_registration(&existing, registered);
                    if merged == existing {
                        return Ok(());
                    }
                    let (_, merged) = self.objects.decode(Some(Kind::Node), merged)?;
                    match self.objects.update(at, merged, SecretValues::Redact).await {
                        Ok(_) => return Ok(()),
                        Err(ObjectError::Conflict(_)) => continue,
                        Err(error) => return Err(error.into()),
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(contended(at))
    }

    /// Changes an object's status with `change`, retrying when another
    /// writer got there first; answers the new resourceVersion.
    async fn change_status(
        &self,
        at: &ObjectRef,
        change: impl Fn(&mut Value) -> Result<(), NodeApiError>,
    ) -> Result<Revision, NodeApiError> {
        for _ in 0..MAX_ATTEMPTS {
            let current = self.objects.get(at, SecretValues::Redact).await?;
            let mut status = current.get("status").cloned().unwrap_or_else(|| json!({}));
            change(&mut status)?;
            let expected = resource_version_of(&current);
            match self.objects.update_status(at, status, Some(expected)).await {
                Ok(updated) => return Ok(resource_version_of(&updated)),
                Err(ObjectError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(contended(at))
    }

    #[tracing::instrument(skip_all, fields(node))]
    async fn record_heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<pb::HeartbeatResponse, NodeApiError> {
        let node = self.caller(&request).await?;
        tracing::Span::current().record("node", node.as_str());
        authorize(&node, NodeAction::WriteNodeStatus { node: &node })?;
        let request = request.into_inner();
        let conditions = ReportedCondition::from_agent(&request.conditions)
            .map_err(NodeApiError::InvalidArgument)?;
        let now = now_rfc3339();
        self.change_status(&node_ref(&node), |status| {
            node_status::report_conditions(status, &conditions, &now);
            node_status::report_resources(
                status,
                request.capacity.as_ref(),
                request.allocatable.as_ref(),
            );
            Ok(())
        })
        .await?;
        Ok(pb::HeartbeatResponse {})
    }

    #[tracing::instrument(skip_all, fields(node))]
    async fn write_node_status(
        &self,
        request: Request<pb::UpdateNodeStatusRequest>,
    ) -> Result<pb::UpdateNodeStatusResponse, NodeApiError> {
        let node = self.caller(&request).await?;
        tracing::Span::current().record("node", node.as_str());
        authorize(&node, NodeAction::WriteNodeStatus { node: &node })?;
        let status = parse_status(&request.get_ref().status_json)?;
        let resource_version = self
            .change_status(&node_ref(&node), |current| {
                *current = status.clone();
                Ok(())
            })
            .await?;
        Ok(pb::UpdateNodeStatusResponse { resource_version })
    }

    #[tracing::instrument(skip_all, fields(node, tenant = request.get_ref().tenant, pod = request.get_ref().name))]
    async fn write_pod_status(
        &self,
        request: Request<pb::UpdatePodStatusRequest>,
    ) -> Result<pb::UpdatePodStatusResponse, NodeApiError> {
        let node = self.caller(&request).await?;
        tracing::Span::current().record("node", node.as_str());
        let request = request.into_inner();
        let status = parse_status(&request.status_json)?;
        let at = pod_ref(&request.tenant, &request.name)?;
        for _ in 0..MAX_ATTEMPTS {
            // A pod the node may not see does not exist, as far as it knows.
            let Some(pod) = self.bound_pod(&node, &at).await? else {
                return Err(not_bound(&at, &node));
            };
            // The write is pinned to the version that was authorized, so a
            // pod rebound meanwhile is never written by its old node.
            let current = resource_version_of(&pod);
            let expected = match request.resource_version {
                0 => current,
                given => given,
            };
            match self
                .objects
                .update_status(&at, status.clone(), Some(expected))
                .await
            {
                Ok(updated) => {
                    return Ok(pb::UpdatePodStatusResponse {
                        resource_version: resource_version_of(&updated),
                    });
                }
                Err(ObjectError::Conflict(_)) if request.resource_version == 0 => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(contended(&at))
    }

    /// The pod at `at`, if it exists; refused when it is not bound to
    /// `node`.
    async fn bound_pod(&self, node: &str, at: &ObjectRef) -> Result<Option<Value>, NodeApiError> {
        let pod = match self.objects.get(at, SecretValues::Redact).await {
            Ok(pod) => pod,
            Err(ObjectError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        if !node_may(node, NodeAction::WritePodStatus { pod: &pod }) {
            return Err(not_bound(at, node));
        }
        Ok(Some(pod))
    }

    /// Removes a terminating pod bound to the caller's node, of the uid it
    /// names, whose containers the node has stopped. A pod of another uid,
    /// or one not being deleted, is left alone: the node's watch will show
    /// it what is there now.
    #[tracing::instrument(skip_all, fields(node))]
    async fn remove_stopped(
        &self,
        request: Request<pb::RemovePodRequest>,
    ) -> Result<pb::RemovePodResponse, NodeApiError> {
        let node = self.caller(&request).await?;
        tracing::Span::current().record("node", node.as_str());
        let request = request.into_inner();
        let at = pod_ref(&request.tenant, &request.name)?;
        if request.uid.is_empty() {
            return Err(NodeApiError::InvalidArgument("uid is required".into()));
        }
        for _ in 0..MAX_ATTEMPTS {
            // Gone already (force-deleted): what was asked is done.
            let Some(pod) = self.bound_pod(&node, &at).await? else {
                return Ok(pb::RemovePodResponse {});
            };
            if pod["metadata"]["uid"].as_str() != Some(request.uid.as_str()) {
                return Err(NodeApiError::FailedPrecondition(format!(
                    "pod {}/{} is now another incarnation than {}",
                    request.tenant, request.name, request.uid
                )));
            }
            if pod["metadata"]["deletionTimestamp"].is_null() {
                return Err(NodeApiError::FailedPrecondition(format!(
                    "pod {}/{} is not being deleted",
                    request.tenant, request.name
                )));
            }
            match self
                .objects
                .remove_stopped_pod(&at, resource_version_of(&pod))
                .await
            {
                Ok(()) => return Ok(pb::RemovePodResponse {}),
                Err(ObjectError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(contended(&at))
    }

    /// Records the notes about pods bound to the caller's node (and of the
    /// uid it names) as events on those pods; others are dropped.
    #[tracing::instrument(skip_all, fields(node, notes = request.get_ref().notes.len()))]
    async fn record_notes(
        &self,
        request: Request<pb::RecordPodEventsRequest>,
    ) -> Result<pb::RecordPodEventsResponse, NodeApiError> {
        let node = self.caller(&request).await?;
        tracing::Span::current().record("node", node.as_str());
        let notes = request.into_inner().notes;
        if notes.len() > MAX_NOTES {
            return Err(NodeApiError::InvalidArgument(format!(
                "at most {MAX_NOTES} notes per call, not {}",
                notes.len()
            )));
        }
        let recorder = self.events.clone().on_host(&node);
        let mut recorded = 0;
        for note in notes {
            let kind = match note.r#type.as_str() {
                "Normal" => EventType::Normal,
                "Warning" => EventType::Warning,
                other => {
                    return Err(NodeApiError::InvalidArgument(format!(
                        "a note's type is Normal or Warning, not {other:?}"
                    )));
                }
            };
            if note.reason.is_empty() || note.reason.len() > 128 || note.message.len() > 1024 {
                return Err(NodeApiError::InvalidArgument(
                    "a note needs a reason (at most 128 bytes) and a message of at most 1024 bytes"
                        .into(),
                ));
            }
            if !self
                .holds_pod(&node, &note.tenant, &note.pod, &note.uid)
                .await?
            {
                continue;
            }
            let involved = Involved {
                kind: Kind::Pod.name().to_owned(),
                tenant: note.tenant,
                name: note.pod,
                uid: Some(note.uid),
            };
            recorder
                .record(&involved, kind, &note.reason, &note.message)
                .await?;
            recorded += 1;
        }
        Ok(pb::RecordPodEventsResponse { recorded })
    }

    /// Whether the pod `tenant`/`name` exists with `uid` and is bound to
    /// `node`, so that the node may report about it (as about its status).
    async fn holds_pod(
        &self,
        node: &str,
        tenant: &str,
        name: &str,
        uid: &str,
    ) -> Result<bool, NodeApiError> {
        let at = ObjectRef {
            kind: Kind::Pod,
            tenant: Some(tenant.to_owned()),
            name: name.to_owned(),
        };
        let pod = match self.objects.get(&at, SecretValues::Redact).await {
            Ok(pod) => pod,
            Err(ObjectError::NotFound { .. }) => return Ok(false),
            Err(error) => return Err(error.into()),
        };
        Ok(node_may(node, NodeAction::WritePodStatus { pod: &pod })
            && pod["metadata"]["uid"].as_str() == Some(uid))
    }

    /// Keeps the figures of pods bound to the caller's node (and of the uid
    /// they name); others are dropped.
    #[tracing::instrument(skip_all, fields(node, pods = request.get_ref().pods.len()))]
    async fn record_metrics(
        &self,
        request: Request<pb::ReportPodMetricsRequest>,
    ) -> Result<pb::ReportPodMetricsResponse, NodeApiError> {
        let node = self.caller(&request).await?;
        tracing::Span::current().record("node", node.as_str());
        let pods = request.into_inner().pods;
        if pods.len() > MAX_METRICS_PODS {
            return Err(NodeApiError::InvalidArgument(format!(
                "at most {MAX_METRICS_PODS} pods per call, not {}",
                pods.len()
            )));
        }
        let at = chrono::Utc::now();
        let mut recorded = 0;
        for figures in pods {
            let window = std::time::Duration::try_from_secs_f64(figures.window_seconds)
                .ok()
                .filter(|window| !window.is_zero());
            let valid = figures
                .containers
                .iter()
                .all(|c| c.cpu_cores.is_finite() && c.cpu_cores >= 0.0);
            let Some(window) = window.filter(|_| valid) else {
                return Err(NodeApiError::InvalidArgument(format!(
                    "pod {}/{}: the window must be positive and CPU figures finite and not negative",
                    figures.tenant, figures.pod
                )));
            };
            if !self
                .holds_pod(&node, &figures.tenant, &figures.pod, &figures.uid)
                .await?
            {
                continue;
            }
            let containers = figures
                .containers
                .into_iter()
                .map(|c| ContainerUsage {
                    name: c.name,
                    cpu_cores: c.cpu_cores,
                    memory_bytes: c.memory_bytes,
                })
                .collect();
            self.metrics.record(
                &figures.tenant,
                &figures.pod,
                &figures.uid,
                Sample {
                    at,
                    window,
                    containers,
                },
            );
            recorded += 1;
        }
        Ok(pb::ReportPodMetricsResponse { recorded })
    }

    /// The wire form of an event, with the ConfigMaps and Secrets the pod
    /// references (those the node may read and that exist).
    async fn pod_event(
        &self,
        node: &str,
        event: NodePodEvent,
    ) -> Result<pb::PodEvent, NodeApiError> {
        use pb::pod_event::Type;
        let (kind, pod, revision) = match event {
            NodePodEvent::Bookmark {
                revision,
                initial_events_end,
            } => {
                return Ok(pb::PodEvent {
                    r#type: Type::Bookmark.into(),
                    resource_version: revision,
                    initial_events_end,
                    ..pb::PodEvent::default()
                });
            }
            NodePodEvent::Change {
                kind,
                pod,
                revision,
            } => (kind, pod, revision),
        };
        let r#type = match kind {
            ChangeKind::Added => Type::Added,
            ChangeKind::Modified => Type::Modified,
            ChangeKind::Deleted => Type::Deleted,
        };
        let mut event = pb::PodEvent {
            r#type: r#type.into(),
            pod_json: pod.json().to_string(),
            resource_version: revision,
            ..pb::PodEvent::default()
        };
        if kind == ChangeKind::Deleted {
            return Ok(event);
        }
        let pod = &pod.pod;
        let tenant = pod.metadata.tenant.as_deref().unwrap_or_default();
        event.pod_security_level = self
            .levels
            .of(self.objects.store(), tenant)
            .await?
            .name()
            .to_owned();
        let references = PodReferences::of_pod(pod);
        for (reference, kind, into) in [
            (
                ReferenceKind::ConfigMap,
                Kind::ConfigMap,
                &mut event.config_maps,
            ),
            (ReferenceKind::Secret, Kind::Secret, &mut event.secrets),
        ] {
            for name in references.names(reference) {
                let action = NodeAction::ReadReference {
                    pod,
                    kind: reference,
                    name,
                };
                if !node_may(node, action) {
                    continue;
                }
                let at = ObjectRef {
                    kind,
                    tenant: Some(tenant.to_owned()),
                    name: name.to_owned(),
                };
                match self.objects.get(&at, SecretValues::Reveal).await {
                    Ok(object) => into.push(pb::ConfigObject {
                        tenant: tenant.to_owned(),
                        name: name.to_owned(),
                        json: object.to_string(),
                    }),
                    // Missing (perhaps optional): the agent decides.
                    Err(ObjectError::NotFound { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
        Ok(event)
    }

    /// The pods of `node` that reference what `change` names.
    fn pods_using(&self, node: &str, change: &ConfigChange) -> Vec<pods_by_node::PodDoc> {
        self.pods
            .pods_of(node)
            .into_iter()
            .filter(|doc| {
                doc.pod.metadata.tenant.as_deref() == Some(change.tenant.as_str())
                    && PodReferences::of_pod(&doc.pod)
                        .names(change.kind)
                        .any(|name| name == change.name)
            })
            .collect()
    }

    /// Sends a subscription's events to one `WatchPods` client until it
    /// goes away, the subscription ends or the server shuts down.
    async fn forward(
        self,
        node: String,
        subscription: pods_by_node::Subscription,
        client: mpsc::Sender<Result<pb::PodEvent, Status>>,
    ) {
        let pods_by_node::Subscription { initial, mut live } = subscription;
        let mut config = self.config.subscribe();
        for event in initial {
            let converted = self.pod_event(&node, event).await.map_err(Status::from);
            let failed = converted.is_err();
            if client.send(converted).await.is_err() || failed {
                return;
            }
        }
        loop {
            let event = tokio::select! {
                () = self.shutdown.cancelled() => {
                    let _ = client.send(Err(Status::unavailable("the server is shutting down"))).await;
                    return;
                }
                () = client.closed() => return,
                event = live.recv() => event,
                change = config.recv() => {
                    let resent = match change {
                        Ok(change) => self.pods_using(&node, &change),
                        // Changes were missed: every pod goes again.
                        Err(_) => self.pods.pods_of(&node),
                    };
                    for pod in resent {
                        let event = NodePodEvent::Change {
                            kind: ChangeKind::Modified,
                            revision: pod.revision,
                            pod,
                        };
                        let converted = self.pod_event(&node, event).await.map_err(Status::from);
                        let failed = converted.is_err();
                        if client.send(converted).await.is_err() || failed {
                            return;
                        }
                    }
                    continue;
                }
            };
            let Some(event) = event else {
                let _ = client
                    .send(Err(Status::aborted(
                        "the watch fell behind: watch again from the last resource_version",
                    )))
                    .await;
                return;
            };
            let converted = self.pod_event(&node, event).await.map_err(Status::from);
            let failed = converted.is_err();
            if client.send(converted).await.is_err() || failed {
                return;
            }
        }
    }
}

/// Hands an agent's tunnel frames to the requests they answer until the
/// agent goes away or the server shuts down, then forgets the tunnel.
async fn relay_tunnel(
    tunnels: Tunnels,
    attached: tunnels::Attached,
    mut inbound: tonic::Streaming<pb::AgentFrame>,
    shutdown: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            () = shutdown.cancelled() => break,
            frame = inbound.message() => frame,
        };
        match frame {
            Ok(Some(frame)) => tunnels.deliver(&attached, frame).await,
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(node = attached.node, %status, "a tunnel ended");
                break;
            }
        }
    }
    tunnels.detach(&attached);
}

fn authorize(node: &str, action: NodeAction<'_>) -> Result<(), NodeApiError> {
    if node_may(node, action) {
        Ok(())
    } else {
        Err(NodeApiError::PermissionDenied(format!(
            "node {node} may not do this"
        )))
    }
}

fn node_ref(name: &str) -> ObjectRef {
    ObjectRef {
        kind: Kind::Node,
        tenant: None,
        name: name.to_owned(),
    }
}

/// The pod a node names, checked.
fn pod_ref(tenant: &str, name: &str) -> Result<ObjectRef, NodeApiError> {
    if tenant.is_empty() || name.is_empty() {
        return Err(NodeApiError::InvalidArgument(
            "tenant and name are required".into(),
        ));
    }
    Ok(ObjectRef {
        kind: Kind::Pod,
        tenant: Some(tenant.to_owned()),
        name: name.to_owned(),
    })
}

fn not_bound(at: &ObjectRef, node: &str) -> NodeApiError {
    NodeApiError::PermissionDenied(format!(
        "pod {}/{} is not bound to node {node}",
        at.tenant.as_deref().unwrap_or_default(),
        at.name
    ))
}

fn contended(at: &ObjectRef) -> NodeApiError {
    NodeApiError::Contended(format!(
        "{} {:?} kept changing; try again",
        at.kind.name(),
        at.name
    ))
}

fn parse_status(json: &str) -> Result<Value, NodeApiError> {
    let status: Value = serde_json::from_str(json)
        .map_err(|e| NodeApiError::InvalidArgument(format!("status_json is not JSON: {e}")))?;
    if !status.is_object() {
        return Err(NodeApiError::InvalidArgument(
            "status_json must be a JSON object".into(),
        ));
    }
    Ok(status)
}

fn resource_version_of(object: &Value) -> Revision {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or_default()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        Ok(Response::new(
            self.register_node(request.into_inner()).await?,
        ))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Ok(Response::new(self.record_heartbeat(request).await?))
    }

    type WatchPodsStream = tokio_stream::wrappers::ReceiverStream<Result<pb::PodEvent, Status>>;

    #[tracing::instrument(skip_all, fields(node))]
    async fn watch_pods(
        &self,
        request: Request<pb::WatchPodsRequest>,
    ) -> Result<Response<Self::WatchPodsStream>, Status> {
        let node = self.caller(&request).await?;
        tracing::Span::current().record("node", node.as_str());
        authorize(&node, NodeAction::WatchPodsOf { node: &node })?;
        let subscription = self
            .pods
            .subscribe(&node, request.get_ref().resource_version.max(0))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let (client, stream) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(self.clone().forward(node, subscription, client));
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            stream,
        )))
    }

    type StreamsStream = futures::stream::BoxStream<'static, Result<pb::ServerFrame, Status>>;

    #[tracing::instrument(skip_all, fields(node))]
    async fn streams(
        &self,
        request: Request<tonic::Streaming<pb::AgentFrame>>,
    ) -> Result<Response<Self::StreamsStream>, Status> {
        use futures::StreamExt;
        let node = self.caller(&request).await?;
        tracing::Span::current().record("node", node.as_str());
        authorize(&node, NodeAction::OpenTunnelOf { node: &node })?;
        let (attached, to_agent) = self.tunnels.attach(&node);
        tracing::debug!("tunnel opened");
        tokio::spawn(relay_tunnel(
            self.tunnels.clone(),
            attached,
            request.into_inner(),
            self.shutdown.clone(),
        ));
        let frames = tokio_stream::wrappers::ReceiverStream::new(to_agent)
            .take_until(self.shutdown.clone().cancelled_owned());
        Ok(Response::new(frames.boxed()))
    }

    async fn update_pod_status(
        &self,
        request: Request<pb::UpdatePodStatusRequest>,
    ) -> Result<Response<pb::UpdatePodStatusResponse>, Status> {
        Ok(Response::new(self.write_pod_status(request).await?))
    }

    async fn update_node_status(
        &self,
        request: Request<pb::UpdateNodeStatusRequest>,
    ) -> Result<Response<pb::UpdateNodeStatusResponse>, Status> {
        Ok(Response::new(self.write_node_status(request).await?))
    }

    async fn record_pod_events(
        &self,
        request: Request<pb::RecordPodEventsRequest>,
    ) -> Result<Response<pb::RecordPodEventsResponse>, Status> {
        Ok(Response::new(self.record_notes(request).await?))
    }

    async fn report_pod_metrics(
        &self,
        request: Request<pb::ReportPodMetricsRequest>,
    ) -> Result<Response<pb::ReportPodMetricsResponse>, Status> {
        Ok(Response::new(self.record_metrics(request).await?))
    }

    async fn remove_pod(
        &self,
        request: Request<pb::RemovePodRequest>,
    ) -> Result<Response<pb::RemovePodResponse>, Status> {
        Ok(Response::new(self.remove_stopped(request).await?))
    }

    type WatchServicesStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::ServiceEvent, Status>>;

    #[tracing::instrument(skip_all, fields(node))]
    async fn watch_services(
        &self,
        request: Request<pb::WatchServicesRequest>,
    ) -> Result<Response<Self::WatchServicesStream>, Status> {
        let node = self.caller(&request).await?;
        tracing::Span::current().record("node", node.as_str());
        authorize(&node, NodeAction::WatchServices)?;
        let watch = ServicesWatch::open(self.objects.clone()).await?;
        let (client, stream) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(watch.forward(
            client,
            self.shutdown.clone(),
            services_watch::BOOKMARK_INTERVAL,
        ));
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            stream,
        )))
    }
}
