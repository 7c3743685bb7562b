//! The Docker runtime: the pods bound to this node as containers on the
//! host's Docker engine (through `bollard`).
//!
//! - [`container_spec`]: a pod's container as a Docker container (labels,
//!   env from ConfigMaps and Secrets, limits, ports, hardening).
//! - [`pod_worker`]: one task per pod: images, init containers in order,
//!   restarts with back-off, graceful stop, adoption after a restart.
//! - [`pod_status`]: the pod status a worker makes of its containers.
//! - [`probes`]: startup, liveness and readiness probes, checked in tasks
//!   of their own.
//! - [`labels`]: how the agent knows its own containers and networks.
//! - [`volumes`]: a pod's volumes on the node (ConfigMap and Secret files,
//!   emptyDir, claims), with [`projection`] writing the files.
//!
//! Status follows the engine's event stream (one subscription for the
//! node, routed to the pod's worker by the container's labels); nothing
//! polls. Each tenant's containers join the tenant's own bridge network,
//! `berth-t-<tenant>`, made on first use and removed when unused.

mod attached_exec;
pub mod container_spec;
pub mod labels;
pub mod network;
pub mod pod_status;
pub mod pod_worker;
pub mod probes;
pub mod projection;
pub mod registry_auth;
pub mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_api::node::v1 as pb;
use berth_api::objects::pod::{PodStatus, PullPolicy};
use berth_api::quantity::Quantity;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{ContainerSummary, EventMessage};
use bollard::query_parameters::{
    CreateImageOptions, EventsOptions, ListContainersOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::container_spec::Hardening;
use self::network::TenantNetwork;
use self::pod_worker::{WorkerMessage, WorkerSettings};
use super::{
    AssignedPod, Change, ContainerStats, ExecOutput, LogRequest, LogStream, NodeFacts, OwnedPod,
    PodKey, PodNote, Runtime, RuntimeError, UsageFuture,
};
use crate::connection::{Backoff, NodeClient};
use crate::exec::{AttachRequest, ExecSession};
use crate::node_resources::NodeResources;
use crate::pressure::{self, HostSampler, PressureMonitor};
use crate::services::ServiceLinks;
use crate::settings::AgentSettings;
use crate::subnet::Subnet;

/// What went wrong talking to the Docker engine.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine could not be reached at all (the agent exits 2).
    #[error("cannot reach the Docker engine at {socket}: {source}")]
    EngineUnreachable {
        /// The address tried (`unix:///var/run/docker.sock`).
        socket: String,
        /// Why.
        #[source]
        source: bollard::errors::Error,
    },
    /// A call to the engine failed.
    #[error("docker {call}: {source}")]
    Call {
        /// Which call (`list containers`).
        call: &'static str,
        /// Why.
        #[source]
        source: bollard::errors::Error,
    },
    /// A setting of the Docker runtime cannot be used.
    #[error("{0}")]
    Setting(String),
}

fn call(call: &'static str) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    move |source| DockerError::Call { call, source }
}

/// What the engine and the node's settings give every pod worker.
pub struct Engine {
    /// The engine.
    pub docker: Docker,
    /// The node's name.
    pub node: String,
    /// Where ports are published, and the node's InternalIP.
    pub address: IpAddr,
    /// Limits every container gets.
    pub hardening: Hardening,
    /// Restart and image-pull back-off.
    pub workers: WorkerSettings,
    /// Held while a tenant network is made or used, and while an unused
    /// one is removed, so that one is never removed under a container
    /// about to join it.
    pub networks: tokio::sync::Mutex<()>,
    /// Where workers send status changes and notes.
    pub changes: mpsc::Sender<Change>,
    /// The pods' volumes on this node.
    pub volumes: volumes::NodeVolumes,
    /// Where tenant networks' subnets come from.
    pub network_pool: Subnet,
    /// This node's tenant networks, for the service plumbing.
    pub local_networks: watch::Sender<BTreeMap<String, TenantNetwork>>,
    /// The Services containers are told of (DNS and environment); `None`
    /// when the agent runs without Services.
    pub service_links: Option<Arc<ServiceLinks>>,
}

/// Why an image is not there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageProblem {
    /// Absent, and the policy forbids pulling.
    NeverPull(String),
    /// The pull failed.
    Pull(String),
}

impl Engine {
    /// Tells the session that something happened to a pod, for its events.
    /// Never waits: with the channel full, the note is dropped (and
    /// logged), as Kubernetes' event broadcaster drops events under load.
    pub fn note(&self, key: &PodKey, uid: &str, warning: bool, reason: &str, message: String) {
        let note = PodNote {
            key: key.clone(),
            uid: uid.to_owned(),
            warning,
            reason: reason.to_owned(),
            message,
        };
        if let Err(error) = self.changes.try_send(Change::Note(note)) {
            tracing::debug!(pod = %key, reason, %error, "a pod note was dropped");
        }
    }

    /// The id of `image` when the engine has it.
    pub async fn image_present(&self, image: &str) -> Option<String> {
        self.docker
            .inspect_image(image)
            .await
            .ok()
            .and_then(|info| info.id)
    }

    /// Pulls `image` (with `credentials` for its registry) and answers its
    /// id; the registry's own message when it fails.
    pub async fn pull(
        &self,
        image: &str,
        credentials: Option<DockerCredentials>,
    ) -> Result<String, ImageProblem> {
        let (from_image, tag) = split_reference(image);
        let options = CreateImageOptions {
            from_image: Some(from_image),
            tag,
            ..CreateImageOptions::default()
        };
        let mut pull = self.docker.create_image(Some(options), None, credentials);
        while let Some(progress) = pull.next().await {
            let failure = match progress {
                Ok(info) => info.error_detail.and_then(|detail| detail.message),
                Err(error) => Some(error.to_string()),
            };
            if let Some(message) = failure {
                return Err(ImageProblem::Pull(format!(
                    "failed to pull image \"{image}\": {message}"
                )));
            }
        }
        self.image_present(image).await.ok_or_else(|| {
            ImageProblem::Pull(format!("image \"{image}\" is absent after its pull"))
        })
    }

    /// Every container of this node's pods (of one pod, with `uid`).
    pub async fn containers(
        &self,
        uid: Option<&str>,
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        let mut pairs = vec![
            (labels::MANAGED_BY, labels::AGENT),
            (labels::NODE, self.node.as_str()),
        ];
        if let Some(uid) = uid {
            pairs.push((labels::POD_UID, uid));
        }
        let options = ListContainersOptions {
            all: true,
            filters: Some(labels::filter(&pairs)),
            ..ListContainersOptions::default()
        };
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(call("list containers"))
    }

    /// SIGTERM, SIGKILL after `grace`, then removal; a container already
    /// gone is no error.
    pub async fn stop_and_remove(&self, id: &str, grace: Duration) {
        let seconds = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let stop = StopContainerOptions {
            t: Some(seconds),
            signal: None,
        };
        if let Err(error) = self.docker.stop_container(id, Some(stop)).await
            && !gone(&error)
        {
            tracing::warn!(container = id, %error, "stopping a container failed");
        }
        self.remove(id).await;
    }

    /// Removes a container (forced, with its anonymous volumes).
    pub async fn remove(&self, id: &str) {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..RemoveContainerOptions::default()
        };
        if let Err(error) = self.docker.remove_container(id, Some(options)).await
            && !gone(&error)
        {
            tracing::warn!(container = id, %error, "removing a container failed");
        }
    }
}

/// Whether the engine says the container is not there (any more) or is
/// being removed already.
fn gone(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404 | 409 | 304,
            ..
        }
    )
}

/// Kubernetes' default: `Always` for `:latest` or no tag, else
/// `IfNotPresent`.
/// What a container's image needs before the container can be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageStep {
    /// The engine has it (this id), and the policy lets it be used.
    Use(String),
    /// Pull it.
    Pull,
    /// Absent, and the policy forbids pulling: kubelet's message.
    NeverPull(String),
}

/// What `image` needs under `policy` (absent: Kubernetes' default for the
/// reference), given the id of the engine's copy if it has one.
pub fn image_step(image: &str, policy: Option<PullPolicy>, present: Option<String>) -> ImageStep {
    match (
        policy.unwrap_or_else(|| default_pull_policy(image)),
        present,
    ) {
        (PullPolicy::IfNotPresent | PullPolicy::Never, Some(id)) => ImageStep::Use(id),
        (PullPolicy::Never, None) => ImageStep::NeverPull(format!(
            "Container image \"{image}\" is not present with pull policy of Never"
        )),
        _ => ImageStep::Pull,
    }
}

fn default_pull_policy(image: &str) -> PullPolicy {
    if image.contains('@') {
        return PullPolicy::IfNotPresent;
    }
    match split_reference(image).1 {
        None => PullPolicy::Always,
        Some(tag) if tag == "latest" => PullPolicy::Always,
        Some(_) => PullPolicy::IfNotPresent,
    }
}

/// `repo[:tag]` as Docker's pull takes it: repository and tag apart (a
/// port in the registry's host is not a tag).
fn split_reference(image: &str) -> (String, Option<String>) {
    if image.contains('@') {
        return (image.to_owned(), None);
    }
    let last_slash = image.rfind('/').map_or(0, |at| at + 1);
    match image[last_slash..].rfind(':') {
        Some(at) => {
            let at = last_slash + at;
            (image[..at].to_owned(), Some(image[at + 1..].to_owned()))
        }
        None => (image.to_owned(), None),
    }
}

/// The Docker runtime of one node.
pub struct DockerRuntime {
    engine: Arc<Engine>,
    facts: NodeFacts,
    /// Reads the host's memory, disk and pid signals.
    sampler: HostSampler,
    /// Turns them into pressure conditions.
    pressure: PressureMonitor,
    workers: Arc<Mutex<HashMap<String, Worker>>>,
    changes: mpsc::Receiver<Change>,
    shutdown: CancellationToken,
    /// The event follower and the pod workers, so that the agent's exit
    /// waits for them.
    tasks: TaskTracker,
    /// The client of the node's latest registration, for the service
    /// watch.
    registered: watch::Sender<Option<NodeClient>>,
}

/// The engine at `socket` (`unix:///var/run/docker.sock`), once it has
/// answered a ping; [`DockerError::EngineUnreachable`] when it does not.
pub async fn engine(socket: &str) -> Result<Docker, DockerError> {
    let unreachable = |source| DockerError::EngineUnreachable {
        socket: socket.to_owned(),
        source,
    };
    let docker = Docker::connect_with_host(socket).map_err(unreachable)?;
    let docker = docker.negotiate_version().await.map_err(unreachable)?;
    docker.ping().await.map_err(unreachable)?;
    Ok(docker)
}

/// A pod's worker, by the pod's uid.
struct Worker {
    key: PodKey,
    /// `None` for a pod being removed without a worker of its own.
    messages: Option<mpsc::UnboundedSender<WorkerMessage>>,
}

impl DockerRuntime {
    /// Connects to the engine `settings` name (failing with
    /// [`DockerError::EngineUnreachable`] when it does not answer), reads
    /// the host's facts and follows the engine's events until `shutdown`.
    pub async fn connect(
        settings: &AgentSettings,
        service_links: Option<Arc<ServiceLinks>>,
        shutdown: CancellationToken,
    ) -> Result<DockerRuntime, DockerError> {
        let docker = engine(&settings.docker_host).await?;
        let info = docker.info().await.map_err(call("info"))?;
        let address = match settings.address {
            Some(address) => address,
            None => node_address().ok_or_else(|| {
                DockerError::Setting(
                    "--address: this host has no non-loopback address; give one".into(),
                )
            })?,
        };
        let default_memory = Quantity::parse(&settings.default_memory_limit)
            .ok()
            .and_then(|q| i64::try_from(q.value()).ok())
            .ok_or_else(|| DockerError::Setting("--default-memory-limit: not a quantity".into()))?;
        let volumes =
            volumes::NodeVolumes::new(&settings.state_dir, &settings.name).map_err(|error| {
                DockerError::Setting(format!(
                    "--state-dir: cannot use {}: {error}",
                    settings.state_dir.display()
                ))
            })?;
        let version = info.server_version.clone().unwrap_or_default();
        let capacity = NodeResources {
            cpu_milli: i128::from(info.ncpu.unwrap_or(1)) * 1000,
            memory: i128::from(info.mem_total.unwrap_or(0)),
            pods: i128::from(settings.max_pods),
            ephemeral_storage: pressure::filesystem(&settings.state_dir)
                .map(|filesystem| filesystem.space.capacity),
        };
        let allocatable = capacity.allocatable(&settings.reserved, &settings.eviction_hard);
        let facts = NodeFacts {
            capacity: capacity.to_proto(),
            allocatable: Some(allocatable.to_proto()),
            addresses: vec![pb::NodeAddress {
                r#type: "InternalIP".into(),
                address: address.to_string(),
            }],
            node_info: pb::NodeInfo {
                machine_id: read_trimmed("/etc/machine-id"),
                system_uuid: info.id.clone().unwrap_or_default(),
                boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
                kernel_version: info.kernel_version.clone().unwrap_or_default(),
                os_image: info.operating_system.clone().unwrap_or_default(),
                container_runtime_version: format!("docker://{version}"),
                agent_version: env!("CARGO_PKG_VERSION").into(),
                operating_system: info.os_type.clone().unwrap_or_else(|| "linux".into()),
                architecture: std::env::consts::ARCH.into(),
            },
            labels: [("berth.dev/runtime".to_owned(), "docker".to_owned())].into(),
        };
        let (sender, changes) = mpsc::channel(1024);
        let engine = Arc::new(Engine {
            docker,
            node: settings.name.clone(),
            address,
            hardening: Hardening {
                default_memory_bytes: default_memory,
                pids_limit: settings.pids_limit,
            },
            workers: WorkerSettings {
                backoff_initial: settings.restart_backoff,
                backoff_max: settings.restart_backoff_max,
            },
            networks: tokio::sync::Mutex::new(()),
            changes: sender,
            volumes,
            network_pool: settings.tenant_network_pool,
            local_networks: watch::Sender::new(BTreeMap::new()),
            service_links,
        });
        // The service plumbing starts from the networks there are.
        engine.refresh_networks().await;
        let workers = Arc::new(Mutex::new(HashMap::new()));
        let tasks = TaskTracker::new();
        tasks.spawn(follow_events(
            engine.clone(),
            workers.clone(),
            shutdown.clone(),
        ));
        tracing::info!(docker = version, %address, "connected to the Docker engine");
        let sampler = HostSampler {
            nodefs: settings.state_dir.clone(),
            imagefs: info.docker_root_dir.clone().map(PathBuf::from),
        };
        Ok(DockerRuntime {
            engine,
            facts,
            sampler,
            pressure: PressureMonitor::new(
                settings.eviction_hard.clone(),
                settings.pressure_transition_period,
            ),
            workers,
            changes,
            shutdown,
            tasks,
            registered: watch::Sender::new(None),
        })
    }

    /// The node's address (where node ports listen).
    pub fn address(&self) -> IpAddr {
        self.engine.address
    }

    /// What the node's service plumbing follows: the client of the node's
    /// latest registration, and the node's tenant networks.
    pub fn service_feeds(
        &self,
    ) -> (
        watch::Receiver<Option<NodeClient>>,
        watch::Receiver<BTreeMap<String, TenantNetwork>>,
    ) {
        (
            self.registered.subscribe(),
            self.engine.local_networks.subscribe(),
        )
    }

    /// The runtime's tasks; after shutdown, wait for them to end.
    pub fn tasks(&self) -> TaskTracker {
        self.tasks.clone()
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Worker>> {
        self.workers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn container_of(&self, pod: &PodKey) -> Option<String> {
        self.workers()
            .iter()
            .find(|(_, worker)| worker.key == *pod)
            .map(|(uid, _)| uid.clone())
    }

    /// The id of `container` of the pod at `pod` (its current run, or the
    /// one before with `previous`).
    async fn container_id(
        &self,
        pod: &PodKey,
        container: &str,
        previous: bool,
    ) -> Result<String, RuntimeError> {
        let missing = || RuntimeError::NotFound(format!("container {container} of pod {pod}"));
        let uid = self.container_of(pod).ok_or_else(missing)?;
        let mut runs: Vec<(i32, String)> = self
            .engine
            .containers(Some(&uid))
            .await?
            .into_iter()
            .filter_map(|summary| {
                let labels = summary.labels.unwrap_or_default();
                (labels.get(labels::CONTAINER).map(String::as_str) == Some(container)).then(|| {
                    let count = labels
                        .get(labels::RESTART_COUNT)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    (count, summary.id.unwrap_or_default())
                })
            })
            .collect();
        runs.sort();
        runs.reverse();
        let index = usize::from(previous);
        runs.into_iter()
            .nth(index)
            .map(|(_, id)| id)
            .ok_or_else(missing)
    }
}

impl Runtime for DockerRuntime {
    fn facts(&self) -> NodeFacts {
        self.facts.clone()
    }

    fn registered(&mut self, client: &NodeClient) {
        self.registered.send_replace(Some(client.clone()));
    }

    fn node_conditions(&mut self) -> Vec<pb::NodeCondition> {
        let sample = self.sampler.sample();
        self.pressure.observe(&sample, std::time::Instant::now())
    }

    async fn start(&mut self, pod: Arc<AssignedPod>) {
        let uid = pod.uid().to_owned();
        let mut workers = self.workers();
        if let Some(worker) = workers.get(&uid) {
            if let Some(messages) = &worker.messages {
                let _ = messages.send(WorkerMessage::Update(pod));
            }
            return;
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        workers.insert(
            uid.clone(),
            Worker {
                key: pod.key(),
                messages: Some(sender),
            },
        );
        drop(workers);
        let registry = self.workers.clone();
        let worker = pod_worker::PodWorker::new(self.engine.clone(), pod);
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            let stopped = worker.run(receiver, shutdown).await;
            if stopped {
                registry
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&uid);
            }
        });
    }

    async fn stop(&mut self, pod: OwnedPod, grace: Option<Duration>) {
        let mut workers = self.workers();
        if let Some(worker) = workers.get(&pod.uid) {
            if let Some(messages) = &worker.messages {
                let _ = messages.send(WorkerMessage::Stop(grace));
            }
            return;
        }
        // Containers without a worker: an earlier agent's, for a pod that
        // is gone.
        workers.insert(
            pod.uid.clone(),
            Worker {
                key: pod.key.clone(),
                messages: None,
            },
        );
        drop(workers);
        let engine = self.engine.clone();
        let registry = self.workers.clone();
        self.tasks.spawn(async move {
            pod_worker::remove_leftovers(&engine, &pod, grace).await;
            registry
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&pod.uid);
        });
    }

    async fn next_change(&mut self) -> Change {
        match self.changes.recv().await {
            Some(change) => change,
            // The runtime holds a sender itself, so this never ends.
            None => std::future::pending().await,
        }
    }

    async fn inspect(&self, pod: &PodKey) -> Result<Option<PodStatus>, RuntimeError> {
        let Some(uid) = self.container_of(pod) else {
            return Ok(None);
        };
        let (answer, receive) = tokio::sync::oneshot::channel();
        if let Some(Some(messages)) = self.workers().get(&uid).map(|w| w.messages.clone()) {
            let _ = messages.send(WorkerMessage::Inspect(answer));
        }
        Ok(receive.await.ok())
    }

    async fn list(&self) -> Result<Vec<OwnedPod>, RuntimeError> {
        let mut owned: Vec<OwnedPod> = self
            .engine
            .containers(None)
            .await?
            .into_iter()
            .filter_map(|summary| labels::owner(&summary.labels.unwrap_or_default()))
            .collect();
        // Pods with volumes but no container (one that never started).
        owned.extend(self.engine.volumes.pods_with_volumes());
        owned.sort();
        owned.dedup();
        self.engine.refresh_networks().await;
        Ok(owned)
    }

    async fn logs(&self, pod: &PodKey, request: LogRequest) -> Result<LogStream, RuntimeError> {
        use bollard::query_parameters::LogsOptions;
        let id = self
            .container_id(pod, &request.container, request.previous)
            .await?;
        let since = request.since_seconds.map_or(0, |seconds| {
            let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
            let since = chrono::Utc::now().timestamp().saturating_sub(seconds);
            i32::try_from(since.max(1)).unwrap_or(i32::MAX)
        });
        let options = LogsOptions {
            follow: request.follow,
            stdout: true,
            stderr: true,
            since,
            timestamps: request.timestamps,
            tail: request
                .tail_lines
                .map_or_else(|| "all".to_owned(), |n| n.to_string()),
            ..LogsOptions::default()
        };
        // The engine's stream owns its own handle, not this runtime.
        let stream = self.engine.docker.logs(&id, Some(options));
        Ok(stream
            .map(|chunk| {
                chunk
                    .map(|chunk| chunk.into_bytes().to_vec())
                    .map_err(|e| call("logs")(e).into())
            })
            .boxed())
    }

    async fn exec(
        &self,
        pod: &PodKey,
        container: &str,
        command: Vec<String>,
    ) -> Result<ExecOutput, RuntimeError> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let id = self.container_id(pod, container, false).await?;
        let docker = &self.engine.docker;
        let exec = docker
            .create_exec(
                &id,
                CreateExecOptions {
                    cmd: Some(command),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..CreateExecOptions::default()
                },
            )
            .await
            .map_err(call("create exec"))?;
        let mut output = Vec::new();
        if let StartExecResults::Attached {
            output: mut stream, ..
        } = docker
            .start_exec(&exec.id, None)
            .await
            .map_err(call("start exec"))?
        {
            while let Some(chunk) = stream.next().await {
                output.extend_from_slice(&chunk.map_err(call("exec output"))?.into_bytes());
            }
        }
        let inspected = docker
            .inspect_exec(&exec.id)
            .await
            .map_err(call("inspect exec"))?;
        Ok(ExecOutput {
            exit_code: inspected.exit_code.unwrap_or(-1),
            output,
        })
    }

    async fn stats(&self, pod: &PodKey) -> Result<Vec<ContainerStats>, RuntimeError> {
        let uid = self
            .container_of(pod)
            .ok_or_else(|| RuntimeError::NotFound(pod.to_string()))?;
        pod_stats(&self.engine, &uid).await
    }

    async fn attach_exec(
        &self,
        pod: &PodKey,
        request: AttachRequest,
    ) -> Result<ExecSession, RuntimeError> {
        let id = self.container_id(pod, &request.container, false).await?;
        attached_exec::attach(&self.engine, &id, request).await
    }

    fn usage(&self, pods: Vec<PodKey>) -> UsageFuture {
        let pods = pods
            .into_iter()
            .filter_map(|key| self.container_of(&key).map(|uid| (key, uid)))
            .collect();
        Box::pin(attached_exec::usage(self.engine.clone(), pods))
    }
}

/// Each running container's resource use of the pod whose containers carry
/// `uid`.
async fn pod_stats(engine: &Engine, uid: &str) -> Result<Vec<ContainerStats>, RuntimeError> {
    use bollard::models::ContainerSummaryStateEnum;
    use bollard::query_parameters::StatsOptions;
    let mut figures = Vec::new();
    for summary in engine.containers(Some(uid)).await? {
        if summary.state != Some(ContainerSummaryStateEnum::RUNNING) {
            continue;
        }
        let (Some(id), Some(name)) = (
            summary.id,
            summary
                .labels
                .and_then(|mut labels| labels.remove(labels::CONTAINER)),
        ) else {
            continue;
        };
        // Not streamed: one sample, with the one before it for CPU.
        let options = StatsOptions {
            stream: false,
            one_shot: false,
        };
        let mut samples = engine.docker.stats(&id, Some(options));
        if let Some(sample) = samples.next().await {
            let (cpu_cores, memory_bytes) = usage_of(&sample.map_err(call("stats"))?);
            figures.push(ContainerStats {
                container: name,
                cpu_cores,
                memory_bytes,
            });
        }
    }
    Ok(figures)
}

/// CPU in cores (between the sample and the one before it) and memory
/// working set in bytes (usage less inactive file pages, as kubelet
/// counts it) of one stats sample.
fn usage_of(sample: &bollard::models::ContainerStatsResponse) -> (f64, u64) {
    let total = |stats: &Option<bollard::models::ContainerCpuStats>| {
        let stats = stats.as_ref();
        (
            stats
                .and_then(|s| s.cpu_usage.as_ref())
                .and_then(|u| u.total_usage)
                .unwrap_or(0),
            stats.and_then(|s| s.system_cpu_usage).unwrap_or(0),
        )
    };
    let (used, system) = total(&sample.cpu_stats);
    let (used_before, system_before) = total(&sample.precpu_stats);
    let cpus = sample
        .cpu_stats
        .as_ref()
        .and_then(|s| s.online_cpus)
        .unwrap_or(1);
    let system_delta = system.saturating_sub(system_before);
    let cpu_cores = if system_delta == 0 {
        0.0
    } else {
        used.saturating_sub(used_before) as f64 / system_delta as f64 * f64::from(cpus)
    };
    let memory = sample.memory_stats.as_ref();
    let usage = memory.and_then(|m| m.usage).unwrap_or(0);
    let inactive = memory
        .and_then(|m| m.stats.as_ref())
        .and_then(|stats| {
            stats
                .get("inactive_file")
                .or_else(|| stats.get("total_inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    (cpu_cores, usage.saturating_sub(inactive))
}

/// Follows the engine's container events for this node's containers and
/// hands each to its pod's worker, until `shutdown`. After the stream
/// breaks it resumes from the last event's time and has every worker look
/// at its containers again, so that nothing is missed.
async fn follow_events(
    engine: Arc<Engine>,
    workers: Arc<Mutex<HashMap<String, Worker>>>,
    shutdown: CancellationToken,
) {
    let mut since: Option<i64> = None;
    let mut backoff = Backoff::new();
    loop {
        let mut filters = labels::filter(&[
            (labels::MANAGED_BY, labels::AGENT),
            (labels::NODE, engine.node.as_str()),
        ]);
        filters.insert("type".into(), vec!["container".into()]);
        filters.insert(
            "event".into(),
            vec!["start".into(), "die".into(), "oom".into(), "destroy".into()],
        );
        let options = EventsOptions {
            since: since.map(|s| s.to_string()),
            until: None,
            filters: Some(filters),
        };
        let mut events = engine.docker.events(Some(options));
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                event = events.next() => event,
            };
            match event {
                Some(Ok(event)) => {
                    backoff.reset();
                    since = event.time.or(since);
                    route(&workers, event);
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "the Docker event stream failed; following it again");
                    break;
                }
                None => break,
            }
        }
        for worker in workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            if let Some(messages) = &worker.messages {
                let _ = messages.send(WorkerMessage::Resync);
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Hands one container event to the worker of the pod its labels name.
fn route(workers: &Mutex<HashMap<String, Worker>>, event: EventMessage) {
    let Some(actor) = event.actor else {
        return;
    };
    let attributes = actor.attributes.unwrap_or_default();
    let (Some(id), Some(uid)) = (actor.id, attributes.get(labels::POD_UID)) else {
        return;
    };
    let workers = workers.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(Worker {
        messages: Some(messages),
        ..
    }) = workers.get(uid)
    {
        let _ = messages.send(WorkerMessage::Container(id));
    }
}

/// The first address of an interface that is up, not loopback and not one
/// of Docker's own bridges (IPv4 preferred).
fn node_address() -> Option<IpAddr> {
    let interfaces: Vec<_> = nix::ifaddrs::getifaddrs().ok()?.collect();
    let candidates = interfaces.iter().filter(|interface| {
        let name = interface.interface_name.as_str();
        interface
            .flags
            .contains(nix::net::if_::InterfaceFlags::IFF_UP)
            && !interface
                .flags
                .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
            && !name.starts_with("docker")
            && !name.starts_with("br-")
            && !name.starts_with("veth")
    });
    let addresses: Vec<IpAddr> = candidates
        .filter_map(|interface| {
            let address = interface.address.as_ref()?;
            if let Some(v4) = address.as_sockaddr_in() {
                return Some(IpAddr::V4(v4.ip()));
            }
            address
                .as_sockaddr_in6()
                .map(|v6| IpAddr::V6(v6.ip()))
                .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        })
        .collect();
    addresses
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| addresses.first())
        .copied()
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_into_repository_and_tag() {
        assert_eq!(
            split_reference("busybox:1.36"),
            ("busybox".into(), Some("1.36".into()))
        );
        assert_eq!(split_reference("busybox"), ("busybox".into(), None));
        assert_eq!(
            split_reference("127.0.0.1:5000/team/app:v2"),
            ("127.0.0.1:5000/team/app".into(), Some("v2".into()))
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app".into(), None)
        );
    }

    #[test]
    fn a_stats_sample_gives_cores_and_the_working_set() {
        use bollard::models::{
            ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats, ContainerStatsResponse,
        };
        let cpu = |used: u64, system: u64| ContainerCpuStats {
            cpu_usage: Some(ContainerCpuUsage {
                total_usage: Some(used),
                ..ContainerCpuUsage::default()
            }),
            system_cpu_usage: Some(system),
            online_cpus: Some(4),
            ..ContainerCpuStats::default()
        };
        let sample = ContainerStatsResponse {
            cpu_stats: Some(cpu(1_500, 10_000)),
            precpu_stats: Some(cpu(1_000, 8_000)),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(100 << 20),
                stats: Some([("inactive_file".to_owned(), 30 << 20)].into()),
                ..ContainerMemoryStats::default()
            }),
            ..ContainerStatsResponse::default()
        };
        let (cores, memory) = usage_of(&sample);
        assert!((cores - 1.0).abs() < 1e-9, "{cores}");
        assert_eq!(memory, 70 << 20);
    }

    #[test]
    fn latest_or_untagged_images_are_pulled_always_by_default() {
        assert_eq!(default_pull_policy("busybox"), PullPolicy::Always);
        assert_eq!(default_pull_policy("busybox:latest"), PullPolicy::Always);
        assert_eq!(default_pull_policy("busybox:1"), PullPolicy::IfNotPresent);
    }
}
