//! A node's session with the server, written once for every runtime:
//! register, heartbeat, follow the pod watch (as typed `berth_api` pods),
//! hand pods to the runtime and report the statuses it answers.
//!
//! One task per node. Statuses are reported at most once per pod per
//! [`REPORT_INTERVAL`]; a status equal to the last one reported is not sent
//! again. A pod event the agent cannot read is logged and counted
//! (`berth_agent_pod_events_dropped_total`), never silently dropped.

use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use berth_api::node::v1 as pb;
use berth_api::node::v1::pod_event::Type;
use berth_api::objects::meta::ConditionStatus;
use berth_api::objects::pod::{
    ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodPhase, PodStatus,
};
use berth_api::objects::{ConfigMap, Secret};
use berth_api::pod_security::{self, Level};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use crate::connection::{self, Backoff, NodeClient};
use crate::exec::AttachRequest;
use crate::metrics::AgentMetrics;
use crate::runtime::{
    AssignedPod, Change, LogRequest, OwnedPod, PodKey, PodNote, Runtime, RuntimeError, StatusReport,
};
use crate::tunnel::Tunnel;

/// The shortest time between two status reports of one pod.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(100);

/// How many notes wait for the server at most (one `RecordPodEvents`
/// call's worth).
const MAX_NOTES: usize = 100;

/// How long a status the server did not take waits before it is sent again.
const REPORT_RETRY: Duration = Duration::from_secs(1);

/// How often the running containers' resource use goes to the server.
pub const USAGE_INTERVAL: Duration = Duration::from_secs(10);

/// What every node session of a process shares.
pub struct SessionShared {
    /// The one channel to the server.
    pub channel: Channel,
    /// The agent's figures.
    pub metrics: AgentMetrics,
    /// The join token.
    pub join_token: String,
    /// The operator's node labels (`--labels`).
    pub labels: BTreeMap<String, String>,
    /// The heartbeat period.
    pub heartbeat: Duration,
}

/// One node: its name, its runtime and what it knows of its pods.
pub struct NodeSession<R> {
    shared: Arc<SessionShared>,
    name: String,
    runtime: R,
    pods: HashMap<PodKey, KnownPod>,
    resource_version: i64,
    /// Reports waiting for their slot (or a retry), by pod.
    waiting: HashMap<PodKey, StatusReport>,
    /// When each waiting report is due, soonest first.
    due: BinaryHeap<Reverse<(Instant, PodKey)>>,
    /// Notes for the server's events, sent after the current step.
    notes: Vec<pb::PodNote>,
    /// Terminating pods the runtime has stopped, to remove from the store
    /// after the current step.
    removals: Vec<OwnedPod>,
}

/// A pod as the session remembers it.
struct KnownPod {
    uid: String,
    /// Of the spec, the config objects and the deletion mark: a change
    /// goes to the runtime, a status-only change does not.
    fingerprint: u64,
    /// A hash of the status last reported (or found on the pod): a hash,
    /// not the status, for a thousand simulated nodes' pods in one process.
    reported: Option<u64>,
    /// When this agent last sent a status for it.
    last_sent: Option<Instant>,
    /// Counted in `pods_running`.
    running: bool,
    /// Being deleted: once the runtime has stopped it, the node removes it
    /// from the store.
    terminating: bool,
    /// The runtime holds nothing of it any more.
    stopped: bool,
}

/// Why a session ended.
enum SessionEnd {
    /// The agent is shutting down.
    Shutdown,
    /// The server no longer knows the credential or the Node: register
    /// again.
    Reregister(String),
}

impl<R: Runtime> NodeSession<R> {
    /// A session for node `name` running pods on `runtime`.
    pub fn new(shared: Arc<SessionShared>, name: String, runtime: R) -> NodeSession<R> {
        NodeSession {
            shared,
            name,
            runtime,
            pods: HashMap::new(),
            resource_version: 0,
            waiting: HashMap::new(),
            due: BinaryHeap::new(),
            notes: Vec::new(),
            removals: Vec::new(),
        }
    }

    /// Registers, then serves the node until `shutdown`; registers again
    /// whenever the server forgets it, and waits with back-off while the
    /// server is away.
    #[tracing::instrument(skip_all, fields(node = %self.name))]
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new();
        loop {
            let registered = tokio::select! {
                () = shutdown.cancelled() => return,
                registered = self.register() => registered,
            };
            let client = match registered.and_then(|credential| {
                connection::authenticated(self.shared.channel.clone(), &credential)
            }) {
                Ok(client) => client,
                Err(status) => {
                    tracing::warn!(node = self.name, code = ?status.code(), message = status.message(), "registering failed; retrying");
                    if sleep_or_shutdown(backoff.next_delay(), &shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            backoff.reset();
            tracing::debug!(node = self.name, "registered");
            self.runtime.registered(&client);
            self.shared.metrics.nodes_registered.inc();
            let end = self.serve(client, &shutdown).await;
            self.shared.metrics.nodes_registered.dec();
            match end {
                SessionEnd::Shutdown => return,
                SessionEnd::Reregister(why) => {
                    tracing::info!(node = self.name, why, "registering again");
                    if sleep_or_shutdown(backoff.next_delay(), &shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    async fn register(&mut self) -> Result<String, Status> {
        let facts = self.runtime.facts();
        let conditions = self.runtime.node_conditions();
        let mut labels = self.shared.labels.clone();
        labels.extend(facts.labels);
        let mut addresses = facts.addresses;
        addresses.push(pb::NodeAddress {
            r#type: "Hostname".into(),
            address: self.name.clone(),
        });
        let request = pb::RegisterRequest {
            join_token: self.shared.join_token.clone(),
            node_name: self.name.clone(),
            capacity: Some(facts.capacity),
            labels: labels.into_iter().collect(),
            addresses,
            taints: Vec::new(),
            node_info: Some(facts.node_info),
            allocatable: facts.allocatable,
            conditions,
        };
        let response = connection::anonymous(self.shared.channel.clone())
            .register(request)
            .await?;
        Ok(response.into_inner().node_credential)
    }

    /// Heartbeats, follows the pod watch (reopening it with back-off) and
    /// reports the runtime's status changes, until shutdown or until the
    /// server forgets this node.
    async fn serve(&mut self, mut client: NodeClient, shutdown: &CancellationToken) -> SessionEnd {
        let period = self.shared.heartbeat;
        // Spread a fleet's heartbeats over the period.
        let first = Instant::now() + period.mul_f64(rand::random::<f64>().min(0.999));
        let mut heartbeat = tokio::time::interval_at(first, period);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch: Option<Streaming<pb::PodEvent>> = None;
        let mut reopen_at = Instant::now();
        let mut backoff = Backoff::new();
        // Pods seen since the watch (re)opened, until its snapshot ends.
        let mut seen: Option<HashSet<PodKey>> = None;
        let mut opened_once = false;
        // The tunnel the server's log requests come through.
        let mut tunnel: Option<Tunnel> = None;
        let mut tunnel_at = Instant::now();
        let mut tunnel_backoff = Backoff::new();
        let mut usage = tokio::time::interval_at(Instant::now() + USAGE_INTERVAL, USAGE_INTERVAL);
        usage.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The usage report on its way (one RPC; it ends on its own).
        let mut reporting: Option<JoinHandle<()>> = None;
        loop {
            if tunnel.is_none() && Instant::now() >= tunnel_at {
                match Tunnel::open(&mut client).await {
                    Ok(opened) => tunnel = Some(opened),
                    Err(status) if forgotten(&status) => {
                        return SessionEnd::Reregister(status.message().to_owned());
                    }
                    Err(status) => {
                        tracing::debug!(node = self.name, %status, "opening the tunnel failed");
                        tunnel_at = Instant::now() + tunnel_backoff.next_delay();
                    }
                }
            }
            if watch.is_none() && Instant::now() >= reopen_at {
                if opened_once {
                    self.shared.metrics.watch_reconnects.inc();
                }
                opened_once = true;
                let request = pb::WatchPodsRequest {
                    resource_version: self.resource_version,
                };
                match client.watch_pods(request).await {
                    Ok(stream) => {
                        watch = Some(stream.into_inner());
                        seen = Some(HashSet::new());
                    }
                    Err(status) if forgotten(&status) => {
                        return SessionEnd::Reregister(status.message().to_owned());
                    }
                    Err(status) => {
                        tracing::debug!(node = self.name, %status, "opening the pod watch failed");
                        reopen_at = Instant::now() + backoff.next_delay();
                    }
                }
            }
            if !self.notes.is_empty()
                && let Some(end) = self.send_notes(&mut client).await
            {
                return end;
            }
            if !self.removals.is_empty()
                && let Some(end) = self.send_removals(&mut client).await
            {
                return end;
            }
            let next_due = self.due.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                () = shutdown.cancelled() => return SessionEnd::Shutdown,
                _ = heartbeat.tick() => {
                    let beat = pb::HeartbeatRequest {
                        conditions: self.runtime.node_conditions(),
                        ..pb::HeartbeatRequest::default()
                    };
                    match client.heartbeat(beat).await {
                        Ok(_) => self.shared.metrics.heartbeats_sent.inc(),
                        Err(status) if forgotten(&status) => {
                            return SessionEnd::Reregister(status.message().to_owned());
                        }
                        Err(status) => {
                            self.shared.metrics.heartbeat_failures.inc();
                            tracing::debug!(node = self.name, %status, "heartbeat failed");
                        }
                    }
                }
                message = next_message(&mut watch) => match message {
                    Ok(Some(event)) => {
                        backoff.reset();
                        self.on_event(event, &mut seen).await;
                    }
                    Ok(None) => {
                        watch = None;
                        reopen_at = Instant::now() + backoff.next_delay();
                    }
                    Err(status) if forgotten(&status) => {
                        return SessionEnd::Reregister(status.message().to_owned());
                    }
                    Err(status) => {
                        tracing::debug!(node = self.name, %status, "the pod watch ended");
                        watch = None;
                        reopen_at = Instant::now() + backoff.next_delay();
                    }
                },
                change = self.runtime.next_change() => match change {
                    Change::Status(report) => {
                        if let Some(end) = self.offer(report, &mut client).await {
                            return end;
                        }
                    }
                    Change::Note(note) => self.note(note),
                    Change::Stopped(pod) => self.on_stopped(pod),
                },
                () = sleep_until(next_due) => {
                    if let Some(end) = self.send_due(&mut client).await {
                        return end;
                    }
                }
                () = tokio::time::sleep_until(reopen_at), if watch.is_none() => {}
                frame = next_frame(&mut tunnel) => match frame {
                    Ok(Some(frame)) => {
                        tunnel_backoff.reset();
                        if let Some(open) = tunnel.as_mut() {
                            self.on_frame(frame, open).await;
                        }
                    }
                    Ok(None) | Err(_) => {
                        tracing::debug!(node = self.name, "the tunnel closed; reopening");
                        tunnel = None;
                        tunnel_at = Instant::now() + tunnel_backoff.next_delay();
                    }
                },
                () = tokio::time::sleep_until(tunnel_at), if tunnel.is_none() => {}
                _ = usage.tick() => self.report_usage(&client, &mut reporting),
            }
        }
    }

    /// Takes in one request of the server's through the tunnel.
    async fn on_frame(&mut self, frame: pb::ServerFrame, tunnel: &mut Tunnel) {
        use pb::server_frame::Kind;
        let Some(kind) = frame.kind else {
            tracing::warn!(
                node = self.name,
                id = frame.id,
                "a tunnel request of no known kind was ignored"
            );
            return;
        };
        if let Some(input) = crate::exec::input_of(&kind) {
            tunnel.exec_input(frame.id, input);
            return;
        }
        match kind {
            Kind::Log(request) => {
                let key = self.held(&request.tenant, &request.pod, &request.uid);
                let opened = match key {
                    Ok(key) => {
                        let asked = LogRequest {
                            container: request.container,
                            follow: request.follow,
                            tail_lines: request.tail_lines.and_then(|n| u64::try_from(n).ok()),
                            since_seconds: request
                                .since_seconds
                                .and_then(|n| u64::try_from(n).ok()),
                            timestamps: request.timestamps,
                            previous: request.previous,
                        };
                        self.runtime.logs(&key, asked).await
                    }
                    Err(error) => Err(error),
                };
                match opened {
                    Ok(output) => tunnel.serve(frame.id, output),
                    Err(error) => tunnel.fail(frame.id, &error),
                }
            }
            Kind::Exec(request) => {
                let attached = match self.held(&request.tenant, &request.pod, &request.uid) {
                    Ok(key) => {
                        let asked = AttachRequest {
                            container: request.container,
                            command: request.command,
                            stdin: request.stdin,
                            tty: request.tty,
                        };
                        self.runtime.attach_exec(&key, asked).await
                    }
                    Err(error) => Err(error),
                };
                match attached {
                    Ok(session) => tunnel.serve_exec(frame.id, session),
                    Err(error) => tunnel.fail(frame.id, &error),
                }
            }
            Kind::Cancel(_) => tunnel.cancel(frame.id),
            Kind::Stdin(_) | Kind::Resize(_) | Kind::StdinEnd(_) => {}
        }
    }

    /// The key of the pod `tenant`/`name` when this node holds it with
    /// `uid` (a request for an earlier pod of the same name fails).
    fn held(&self, tenant: &str, name: &str, uid: &str) -> Result<PodKey, RuntimeError> {
        let key = PodKey {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
        };
        if self.pods.get(&key).is_some_and(|known| known.uid == uid) {
            Ok(key)
        } else {
            Err(RuntimeError::NotFound(format!("pod {key}")))
        }
    }

    /// Asks the runtime for the usage of every pod the node holds and
    /// reports it from a task of its own, unless the last report is still
    /// on its way.
    fn report_usage(&mut self, client: &NodeClient, reporting: &mut Option<JoinHandle<()>>) {
        if reporting.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let uids: HashMap<PodKey, String> = self
            .pods
            .iter()
            .filter(|(_, known)| known.running)
            .map(|(key, known)| (key.clone(), known.uid.clone()))
            .collect();
        if uids.is_empty() {
            return;
        }
        let sampled = self.runtime.usage(uids.keys().cloned().collect());
        let mut client = client.clone();
        let node = self.name.clone();
        *reporting = Some(tokio::spawn(async move {
            let pods: Vec<pb::PodMetrics> = sampled
                .await
                .into_iter()
                .filter_map(|usage| {
                    let uid = uids.get(&usage.key)?.clone();
                    Some(pb::PodMetrics {
                        tenant: usage.key.tenant,
                        pod: usage.key.name,
                        uid,
                        containers: usage
                            .containers
                            .into_iter()
                            .map(|c| pb::ContainerMetrics {
                                name: c.container,
                                cpu_cores: c.cpu_cores,
                                memory_bytes: c.memory_bytes,
                            })
                            .collect(),
                        window_seconds: usage.window_seconds,
                    })
                })
                .collect();
            if pods.is_empty() {
                return;
            }
            let request = pb::ReportPodMetricsRequest { pods };
            if let Err(status) = client.report_pod_metrics(request).await {
                tracing::debug!(node, %status, "reporting pod metrics failed");
            }
        }));
    }

    /// Takes in one watch event.
    async fn on_event(&mut self, event: pb::PodEvent, seen: &mut Option<HashSet<PodKey>>) {
        self.resource_version = self.resource_version.max(event.resource_version);
        match event.r#type() {
            Type::Added | Type::Modified => {
                let Some(assigned) = self.read_event(&event) else {
                    return;
                };
                let key = assigned.key();
                if let Some(seen) = seen {
                    seen.insert(key.clone());
                }
                let uid = assigned.uid().to_owned();
                let fingerprint = fingerprint(&event, &assigned.pod);
                if let Some(known) = self.pods.get(&key)
                    && known.uid == uid
                {
                    if known.fingerprint == fingerprint {
                        return;
                    }
                } else {
                    self.forget(&key).await;
                }
                let found = assigned.pod.status.as_ref();
                let running = found.is_some_and(running_and_ready);
                let found = found.map(status_hash);
                let known = self.pods.entry(key.clone()).or_insert_with(|| {
                    if running {
                        self.shared.metrics.pods_running.inc();
                    }
                    KnownPod {
                        uid: uid.clone(),
                        fingerprint,
                        reported: found,
                        last_sent: None,
                        running,
                        terminating: false,
                        stopped: false,
                    }
                });
                known.fingerprint = fingerprint;
                if assigned.pod.is_terminating() {
                    // Terminating: the containers stop within the grace
                    // the deletion gave; once they are gone this node
                    // removes the pod from the store.
                    known.terminating = true;
                    let grace = assigned
                        .pod
                        .metadata
                        .deletion_grace_period_seconds
                        .map(|seconds| Duration::from_secs(seconds.unsigned_abs()));
                    self.runtime.stop(OwnedPod { key, uid }, grace).await;
                } else if let Some(refusal) = pod_security_refusal(&event, &assigned.pod) {
                    self.refuse(key, uid, &assigned.pod, refusal);
                } else {
                    self.runtime.start(Arc::new(assigned)).await;
                }
            }
            Type::Deleted => match serde_json::from_str::<Pod>(&event.pod_json) {
                Ok(pod) => self.forget(&PodKey::of(&pod)).await,
                Err(error) => self.dropped("DELETED", &error),
            },
            Type::Bookmark => {
                if event.initial_events_end
                    && let Some(seen) = seen.take()
                {
                    self.forget_all_but(&seen).await;
                }
            }
            Type::Unspecified => {
                self.shared.metrics.pod_events_dropped.inc();
                tracing::error!(node = self.name, "a pod event of no known type was dropped");
            }
        }
    }

    /// The typed pod and config objects of an ADDED or MODIFIED event;
    /// `None` (logged and counted) when the pod cannot be read. A config
    /// object that cannot be read is left out, as if it were missing.
    fn read_event(&self, event: &pb::PodEvent) -> Option<AssignedPod> {
        let pod = match serde_json::from_str::<Pod>(&event.pod_json) {
            Ok(pod) => pod,
            Err(error) => {
                self.dropped("ADDED/MODIFIED", &error);
                return None;
            }
        };
        let mut assigned = AssignedPod {
            pod,
            ..AssignedPod::default()
        };
        for object in &event.config_maps {
            match serde_json::from_str::<ConfigMap>(&object.json) {
                Ok(config_map) => {
                    assigned.config_maps.insert(object.name.clone(), config_map);
                }
                Err(error) => self.dropped("ConfigMap", &error),
            }
        }
        for object in &event.secrets {
            match serde_json::from_str::<Secret>(&object.json) {
                Ok(secret) => {
                    assigned.secrets.insert(object.name.clone(), secret);
                }
                Err(error) => self.dropped("Secret", &error),
            }
        }
        Some(assigned)
    }

    fn dropped(&self, what: &str, error: &serde_json::Error) {
        self.shared.metrics.pod_events_dropped.inc();
        tracing::error!(node = self.name, what, %error, "a pod event could not be read and was dropped");
    }

    /// After the watch's snapshot: forgets the pods not in it, then stops
    /// what the runtime still holds for pods nobody asks for (an earlier
    /// agent process's containers, say).
    async fn forget_all_but(&mut self, seen: &HashSet<PodKey>) {
        let gone: Vec<PodKey> = self
            .pods
            .keys()
            .filter(|key| !seen.contains(*key))
            .cloned()
            .collect();
        for key in gone {
            tracing::debug!(
                node = self.name,
                pod = %key,
                "forgetting a pod this node no longer owns"
            );
            self.forget(&key).await;
        }
        match self.runtime.list().await {
            Ok(owned) => {
                for pod in owned {
                    if self
                        .pods
                        .get(&pod.key)
                        .is_none_or(|known| known.uid != pod.uid)
                    {
                        tracing::info!(node = self.name, pod = %pod.key, uid = pod.uid, "removing a pod no one asks for");
                        self.runtime.stop(pod, None).await;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(node = self.name, %error, "listing the runtime's pods failed");
            }
        }
    }

    /// Stops and forgets the pod at `key`, if known.
    async fn forget(&mut self, key: &PodKey) {
        if let Some(pod) = self.pods.remove(key) {
            if pod.running {
                self.shared.metrics.pods_running.dec();
            }
            self.waiting.remove(key);
            if !pod.stopped {
                let owned = OwnedPod {
                    key: key.clone(),
                    uid: pod.uid,
                };
                self.runtime.stop(owned, None).await;
            }
        }
    }

    /// Takes in that the runtime holds nothing more of `pod`: a
    /// terminating pod is then removed from the store.
    fn on_stopped(&mut self, pod: OwnedPod) {
        let Some(known) = self.pods.get_mut(&pod.key) else {
            return;
        };
        if known.uid != pod.uid {
            return;
        }
        known.stopped = true;
        if known.terminating {
            self.removals.push(pod);
        }
    }

    /// Removes the terminating pods whose containers are gone from the
    /// store. One the server will not remove (moved, another incarnation,
    /// no longer being deleted) is left to the watch; one that fails for
    /// another reason is tried again after the next step.
    async fn send_removals(&mut self, client: &mut NodeClient) -> Option<SessionEnd> {
        for pod in std::mem::take(&mut self.removals) {
            let request = pb::RemovePodRequest {
                tenant: pod.key.tenant.clone(),
                name: pod.key.name.clone(),
                uid: pod.uid.clone(),
            };
            match client.remove_pod(request).await {
                Ok(_) => {
                    self.shared.metrics.pods_removed.inc();
                    tracing::info!(node = self.name, pod = %pod.key, "the pod's containers are gone; removed it");
                }
                Err(status) if forgotten(&status) => {
                    return Some(SessionEnd::Reregister(status.message().to_owned()));
                }
                Err(status)
                    if matches!(
                        status.code(),
                        Code::PermissionDenied | Code::FailedPrecondition | Code::NotFound
                    ) =>
                {
                    tracing::debug!(node = self.name, pod = %pod.key, %status, "the pod was not removed");
                }
                Err(status) => {
                    tracing::debug!(node = self.name, pod = %pod.key, %status, "removing the pod failed; retrying");
                    self.removals.push(pod);
                }
            }
        }
        None
    }

    /// Holds back a pod its tenant's Pod Security level refuses (the API
    /// was bypassed, or the pod is older than the level): nothing of it
    /// reaches the runtime, and its status says why, for the next report.
    fn refuse(&mut self, key: PodKey, uid: String, pod: &Pod, refusal: String) {
        tracing::warn!(node = self.name, pod = %key, %refusal, "refused by Pod Security");
        self.shared.metrics.pods_refused.inc();
        let status = refused_status(pod, &refusal);
        self.note(PodNote {
            key: key.clone(),
            uid: uid.clone(),
            warning: true,
            reason: "FailedCreate".into(),
            message: format!("Error: {refusal}"),
        });
        if self
            .waiting
            .insert(
                key.clone(),
                StatusReport {
                    key: key.clone(),
                    uid,
                    status,
                },
            )
            .is_none()
        {
            self.due.push(Reverse((Instant::now(), key)));
        }
    }

    /// Keeps `note` for the server, when it is about a pod this node runs.
    fn note(&mut self, note: PodNote) {
        if self
            .pods
            .get(&note.key)
            .is_none_or(|known| known.uid != note.uid)
        {
            return;
        }
        // Past a full call's worth, notes go rather than memory.
        if self.notes.len() >= MAX_NOTES {
            self.shared.metrics.pod_notes_dropped.inc();
            return;
        }
        self.notes.push(pb::PodNote {
            tenant: note.key.tenant,
            pod: note.key.name,
            uid: note.uid,
            r#type: if note.warning { "Warning" } else { "Normal" }.into(),
            reason: note.reason,
            message: note.message,
        });
    }

    /// Sends the notes kept so far, in one call. Events are a courtesy: a
    /// call that fails loses its notes (counted), and nothing waits for a
    /// retry.
    async fn send_notes(&mut self, client: &mut NodeClient) -> Option<SessionEnd> {
        let notes = std::mem::take(&mut self.notes);
        let count = notes.len() as u64;
        match client
            .record_pod_events(pb::RecordPodEventsRequest { notes })
            .await
        {
            Ok(_) => None,
            Err(status) if forgotten(&status) => {
                Some(SessionEnd::Reregister(status.message().to_owned()))
            }
            Err(status) => {
                tracing::debug!(node = self.name, %status, "recording pod events failed");
                self.shared.metrics.pod_notes_dropped.inc_by(count);
                None
            }
        }
    }

    /// Sends `report` now, or keeps it until its pod's slot comes.
    async fn offer(&mut self, report: StatusReport, client: &mut NodeClient) -> Option<SessionEnd> {
        let known = self.pods.get(&report.key)?;
        if known.uid != report.uid || known.reported == Some(status_hash(&report.status)) {
            return None;
        }
        let now = Instant::now();
        let slot = known.last_sent.map(|at| at + REPORT_INTERVAL);
        match slot {
            Some(slot) if slot > now => {
                let key = report.key.clone();
                if self.waiting.insert(key.clone(), report).is_none() {
                    self.due.push(Reverse((slot, key)));
                }
                None
            }
            _ => self.send(report, client).await,
        }
    }

    /// Sends every waiting report whose time has come.
    async fn send_due(&mut self, client: &mut NodeClient) -> Option<SessionEnd> {
        let now = Instant::now();
        while let Some(Reverse((at, _))) = self.due.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, key))) = self.due.pop() else {
                break;
            };
            if let Some(report) = self.waiting.remove(&key)
                && let Some(end) = self.send(report, client).await
            {
                return Some(end);
            }
        }
        None
    }

    async fn send(&mut self, report: StatusReport, client: &mut NodeClient) -> Option<SessionEnd> {
        let status_json = match serde_json::to_string(&report.status) {
            Ok(json) => json,
            Err(error) => {
                tracing::error!(node = self.name, pod = %report.key, %error, "a status could not be written as JSON");
                return None;
            }
        };
        let sent = hash_text(&status_json);
        let request = pb::UpdatePodStatusRequest {
            tenant: report.key.tenant.clone(),
            name: report.key.name.clone(),
            status_json,
            resource_version: 0,
        };
        if let Some(known) = self.pods.get_mut(&report.key) {
            known.last_sent = Some(Instant::now());
        }
        match client.update_pod_status(request).await {
            Ok(_) => {
                self.shared.metrics.pod_status_updates.inc();
                let running = running_and_ready(&report.status);
                if let Some(known) = self.pods.get_mut(&report.key) {
                    if running != known.running {
                        if running {
                            self.shared.metrics.pods_running.inc();
                        } else {
                            self.shared.metrics.pods_running.dec();
                        }
                    }
                    known.running = running;
                    known.reported = Some(sent);
                }
                None
            }
            Err(status) if forgotten(&status) => {
                Some(SessionEnd::Reregister(status.message().to_owned()))
            }
            // Moved or deleted meanwhile: the watch will say so.
            Err(status) if status.code() == Code::PermissionDenied => {
                self.forget(&report.key).await;
                None
            }
            Err(status) => {
                tracing::debug!(node = self.name, pod = %report.key, %status, "reporting a pod's status failed; retrying");
                let key = report.key.clone();
                if self.waiting.insert(key.clone(), report).is_none() {
                    self.due.push(Reverse((Instant::now() + REPORT_RETRY, key)));
                }
                None
            }
        }
    }
}

/// Whether a status counts in `pods_running`: Running and Ready.
fn running_and_ready(status: &PodStatus) -> bool {
    status.phase == Some(PodPhase::Running)
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True)
}

/// A hash of a status, by its JSON.
fn status_hash(status: &PodStatus) -> u64 {
    hash_text(&serde_json::to_string(status).unwrap_or_default())
}

fn hash_text(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// A hash of what the runtime acts on: the spec, the deletion mark and the
/// config objects as sent.
/// Why the tenant's Pod Security level (sent with the pod) refuses a pod
/// this node has not started yet, if it does. A pod an agent already
/// started (it has a `startTime`) keeps running when the level is raised,
/// as Kubernetes keeps running pods.
fn pod_security_refusal(event: &pb::PodEvent, pod: &Pod) -> Option<String> {
    if pod.status.as_ref().is_some_and(|s| s.start_time.is_some()) {
        return None;
    }
    let level = match event.pod_security_level.as_str() {
        "" => Level::default(),
        name => match Level::parse(name) {
            Ok(level) => level,
            Err(unknown) => return Some(unknown.to_string()),
        },
    };
    let violations = pod_security::check(level, &pod.metadata, &pod.spec, "");
    (!violations.is_empty()).then(|| pod_security::message(level, &violations))
}

/// The status of a refused pod: Pending, every container waiting with
/// kubelet's `CreateContainerConfigError` and the refusal.
fn refused_status(pod: &Pod, refusal: &str) -> PodStatus {
    let waiting = |name: &str| ContainerStatus {
        name: name.to_owned(),
        image: String::new(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CreateContainerConfigError".into()),
                message: Some(refusal.to_owned()),
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    };
    PodStatus {
        phase: Some(PodPhase::Pending),
        reason: Some("Forbidden".into()),
        message: Some(refusal.to_owned()),
        conditions: pod
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default(),
        init_container_statuses: pod
            .spec
            .init_containers
            .iter()
            .map(|c| waiting(&c.name))
            .collect(),
        container_statuses: pod
            .spec
            .containers
            .iter()
            .map(|c| waiting(&c.name))
            .collect(),
        ..PodStatus::default()
    }
}

fn fingerprint(event: &pb::PodEvent, pod: &Pod) -> u64 {
    let mut hasher = DefaultHasher::new();
    event.pod_security_level.hash(&mut hasher);
    serde_json::to_string(&pod.spec)
        .unwrap_or_default()
        .hash(&mut hasher);
    pod.metadata.deletion_timestamp.hash(&mut hasher);
    for object in event.config_maps.iter().chain(&event.secrets) {
        object.name.hash(&mut hasher);
        object.json.hash(&mut hasher);
    }
    hasher.finish()
}

/// Whether the server no longer knows this node's credential or Node.
fn forgotten(status: &Status) -> bool {
    matches!(status.code(), Code::Unauthenticated | Code::NotFound)
}

/// The next message of the watch; never, without one.
async fn next_message(
    watch: &mut Option<Streaming<pb::PodEvent>>,
) -> Result<Option<pb::PodEvent>, Status> {
    match watch {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}

/// The tunnel's next frame; never, without a tunnel.
async fn next_frame(tunnel: &mut Option<Tunnel>) -> Result<Option<pb::ServerFrame>, Status> {
    match tunnel {
        Some(tunnel) => tunnel.next().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; never, without one.
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sleeps for `delay`; true when `shutdown` came first.
async fn sleep_or_shutdown(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::sim::{SimRuntime, SimSettings};

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        agent: crate::AgentArgs,
    }

    fn session() -> NodeSession<SimRuntime> {
        let registry = prometheus::Registry::new();
        let shared = Arc::new(SessionShared {
            // Never connected: these tests only feed events in.
            channel: connection::channel("http://127.0.0.1:9").unwrap(),
            metrics: AgentMetrics::new(&registry).unwrap(),
            join_token: "unused".into(),
            labels: BTreeMap::new(),
            heartbeat: Duration::from_secs(10),
        });
        let settings = <Flags as clap::Parser>::parse_from([
            "agent", "--server", "x", "--token", "t", "--name", "n",
        ])
        .agent
        .resolve()
        .unwrap();
        let runtime = SimRuntime::new(SimSettings::from(&settings), "n".into(), 1);
        NodeSession::new(shared, "n".into(), runtime)
    }

    fn event(kind: Type, pod_json: &str) -> pb::PodEvent {
        pb::PodEvent {
            r#type: kind.into(),
            pod_json: pod_json.into(),
            resource_version: 7,
            ..pb::PodEvent::default()
        }
    }

    const POD: &str = r#"{"metadata":{"name":"web","tenant":"acme","uid":"u1"},"spec":{"containers":[{"name":"main","image":"busybox:1"}]}}"#;

    #[tokio::test]
    async fn an_unreadable_pod_event_is_counted_not_silently_dropped() {
        let mut session = session();
        let mut seen = None;
        session
            .on_event(event(Type::Added, r#"{"metadata": 3}"#), &mut seen)
            .await;
        session
            .on_event(event(Type::Deleted, "not json"), &mut seen)
            .await;
        session
            .on_event(event(Type::Unspecified, ""), &mut seen)
            .await;
        assert_eq!(session.shared.metrics.pod_events_dropped.get(), 3);
        assert!(session.pods.is_empty());
        assert_eq!(session.resource_version, 7);
    }

    #[tokio::test]
    async fn a_pod_goes_to_the_runtime_until_it_is_deleted() {
        let mut session = session();
        let mut seen = Some(HashSet::new());
        session.on_event(event(Type::Added, POD), &mut seen).await;
        let key = PodKey {
            tenant: "acme".into(),
            name: "web".into(),
        };
        assert!(session.pods.contains_key(&key));
        assert!(seen.as_ref().is_some_and(|seen| seen.contains(&key)));
        assert_eq!(session.runtime.list().await.unwrap().len(), 1);
        assert_eq!(session.shared.metrics.pod_events_dropped.get(), 0);
        session.on_event(event(Type::Deleted, POD), &mut seen).await;
        assert!(session.pods.is_empty());
        assert!(session.runtime.list().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_end_of_the_snapshot_forgets_pods_not_in_it() {
        let mut session = session();
        let mut seen = Some(HashSet::new());
        session.on_event(event(Type::Added, POD), &mut seen).await;
        // The watch opens again; this time the snapshot is empty.
        let mut seen = Some(HashSet::new());
        let mut end = event(Type::Bookmark, "");
        end.initial_events_end = true;
        session.on_event(end, &mut seen).await;
        assert!(session.pods.is_empty());
        assert!(session.runtime.list().await.unwrap().is_empty());
    }
}
