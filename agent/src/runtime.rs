//! What a runtime is to the node session: the [`Runtime`] trait and the
//! typed values that cross it. The session (`session.rs`) speaks to the
//! server; a runtime runs pods and says when their status changed.
//!
//! - [`sim`]: pods that only pretend to run, many nodes per process.
//! - [`docker`]: real containers on the host's Docker engine.
//!
//! A runtime is told what to run ([`Runtime::start`], [`Runtime::stop`]) and
//! answers status changes and notes through [`Runtime::next_change`], which the
//! session awaits beside its watch and heartbeats. Docker fills it from its
//! event stream, the sim from its start timers; neither is polled.

pub mod docker;
pub mod sim;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_api::node::v1 as pb;
use berth_api::objects::pod::{Pod, PodStatus};
use berth_api::objects::{ConfigMap, Secret};

use crate::exec::{AttachRequest, ExecSession};

/// A pod's place: its tenant and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodKey {
    /// The tenant.
    pub tenant: String,
    /// The pod's name.
    pub name: String,
}

impl PodKey {
    /// The key of `pod`.
    pub fn of(pod: &Pod) -> PodKey {
        PodKey {
            tenant: pod.metadata.tenant.clone().unwrap_or_default(),
            name: pod.metadata.name.clone(),
        }
    }
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.name)
    }
}

/// A pod the server bound to this node, with the ConfigMaps and Secrets it
/// references (by name; a missing one is absent).
#[derive(Clone, Debug, Default)]
pub struct AssignedPod {
    /// The pod, as the server holds it (its status too).
    pub pod: Pod,
    /// Referenced ConfigMaps the server sent.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Referenced Secrets the server sent, values decrypted.
    pub secrets: BTreeMap<String, Secret>,
}

impl AssignedPod {
    /// Its key.
    pub fn key(&self) -> PodKey {
        PodKey::of(&self.pod)
    }

    /// Its uid (empty when the server sent none).
    pub fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or_default()
    }
}

/// A pod's new status, from the runtime.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusReport {
    /// Which pod.
    pub key: PodKey,
    /// Which incarnation of it; a report for another uid is stale.
    pub uid: String,
    /// The whole status.
    pub status: PodStatus,
}

/// Something that happened to a pod, which the server records as an Event
/// on it (`Pulling`, `Unhealthy`, `BackOff`, …), as kubelet does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNote {
    /// Which pod.
    pub key: PodKey,
    /// Which incarnation of it.
    pub uid: String,
    /// A `Warning` rather than `Normal` event.
    pub warning: bool,
    /// Kubernetes' reason.
    pub reason: String,
    /// What happened, in Kubernetes' words.
    pub message: String,
}

/// What a runtime has to tell the session.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A pod's status changed.
    Status(StatusReport),
    /// Something happened to a pod that users should hear of.
    Note(PodNote),
    /// Nothing is left of a pod the runtime was told to stop: its
    /// containers are gone.
    Stopped(OwnedPod),
}

/// A pod the runtime holds something of (containers, timers).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OwnedPod {
    /// Which pod.
    pub key: PodKey,
    /// Which incarnation.
    pub uid: String,
}

/// What a node tells the server when it registers.
#[derive(Clone, Debug, Default)]
pub struct NodeFacts {
    /// Its capacity.
    pub capacity: pb::Capacity,
    /// What pods may use of it; `None`: all of the capacity.
    pub allocatable: Option<pb::Capacity>,
    /// Its addresses (InternalIP first).
    pub addresses: Vec<pb::NodeAddress>,
    /// Versions and ids.
    pub node_info: pb::NodeInfo,
    /// Labels the runtime adds to the operator's (`berth.dev/runtime`).
    pub labels: BTreeMap<String, String>,
}

/// What `logs` is asked for: one container's output so far, and with
/// `follow` what it writes from then on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRequest {
    /// The container's name in the pod.
    pub container: String,
    /// Keep streaming what the container writes, until it stops.
    pub follow: bool,
    /// Only the last lines.
    pub tail_lines: Option<u64>,
    /// Only what was written in the last seconds.
    pub since_seconds: Option<u64>,
    /// With each line's time.
    pub timestamps: bool,
    /// The previous run's output instead.
    pub previous: bool,
}

/// A container's output as it comes, in chunks of any size; it ends when
/// the output does (with `follow`, when the container stops). It holds
/// nothing of the runtime, so the session can hand it to a task of its own.
pub type LogStream = futures::stream::BoxStream<'static, Result<Vec<u8>, RuntimeError>>;

/// One container's resource use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerStats {
    /// The container's name in the pod.
    pub container: String,
    /// CPU in cores.
    pub cpu_cores: f64,
    /// Memory working set in bytes.
    pub memory_bytes: u64,
}

/// The resource use of one pod's running containers, measured apart from
/// the session (see [`Runtime::usage`]).
#[derive(Clone, Debug, PartialEq)]
pub struct PodUsage {
    /// Which pod.
    pub key: PodKey,
    /// Its running containers' figures.
    pub containers: Vec<ContainerStats>,
    /// Over how long the CPU figures were measured, in seconds.
    pub window_seconds: f64,
}

/// What [`Runtime::usage`] answers: a future that holds nothing of the
/// runtime, so the session can await it in a task of its own.
pub type UsageFuture = futures::future::BoxFuture<'static, Vec<PodUsage>>;

/// A command's outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit code.
    pub exit_code: i64,
    /// stdout and stderr, interleaved.
    pub output: Vec<u8>,
}

/// Why a runtime could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// This runtime does not do that.
    #[error("the {runtime} runtime does not support {operation}")]
    Unsupported {
        /// The runtime.
        runtime: &'static str,
        /// What was asked.
        operation: &'static str,
    },
    /// No such pod or container here.
    #[error("{0} is not running on this node")]
    NotFound(String),
    /// The Docker engine refused or failed.
    #[error(transparent)]
    Docker(#[from] docker::DockerError),
}

/// A way of running pods. The session calls it from one task; `start` and
/// `stop` must return quickly (long work belongs to the runtime's own
/// tasks), and `next_change` must be cancel-safe, because the session
/// awaits it in a `select!`.
pub trait Runtime: Send + 'static {
    /// What the node registers with.
    fn facts(&self) -> NodeFacts;

    /// Runs `pod`, or takes in its changed spec or config objects. Called
    /// for each new pod, and again when the server sends it changed.
    fn start(&mut self, pod: Arc<AssignedPod>) -> impl Future<Output = ()> + Send;

    /// Stops `pod` gracefully and removes what it left: SIGTERM, then
    /// SIGKILL after `grace` (`None`: the pod's own grace period). No
    /// status is reported for it afterwards; [`Change::Stopped`] says when
    /// nothing is left of it, also of a pod the runtime held nothing of.
    fn stop(&mut self, pod: OwnedPod, grace: Option<Duration>) -> impl Future<Output = ()> + Send;

    /// The next status change or note; pending while there is none.
    fn next_change(&mut self) -> impl Future<Output = Change> + Send;

    /// The pod's status as the runtime sees it now.
    fn inspect(
        &self,
        pod: &PodKey,
    ) -> impl Future<Output = Result<Option<PodStatus>, RuntimeError>> + Send;

    /// Every pod the runtime holds something of, also what an earlier
    /// process of the agent left behind.
    fn list(&self) -> impl Future<Output = Result<Vec<OwnedPod>, RuntimeError>> + Send;

    /// A container's output, as a stream. Finding the container happens
    /// here (a missing one fails at once); reading it, in the stream.
    fn logs(
        &self,
        pod: &PodKey,
        request: LogRequest,
    ) -> impl Future<Output = Result<LogStream, RuntimeError>> + Send;

    /// Runs `command` in a container and waits for it.
    fn exec(
        &self,
        pod: &PodKey,
        container: &str,
        command: Vec<String>,
    ) -> impl Future<Output = Result<ExecOutput, RuntimeError>> + Send;

    /// Each container's resource use now.
    fn stats(
        &self,
        pod: &PodKey,
    ) -> impl Future<Output = Result<Vec<ContainerStats>, RuntimeError>> + Send;

    /// Runs a command in a container, attached: its output as it comes,
    /// its input, its exit code ([`crate::exec`]). Finding the container
    /// and starting the command happen here.
    fn attach_exec(
        &self,
        pod: &PodKey,
        request: AttachRequest,
    ) -> impl Future<Output = Result<ExecSession, RuntimeError>> + Send;

    /// The resource use of `pods`' running containers, for the server's
    /// metrics; pods the runtime cannot measure are left out.
    fn usage(&self, pods: Vec<PodKey>) -> UsageFuture;

    /// The node's conditions besides Ready (`MemoryPressure`,
    /// `DiskPressure`, `PIDPressure`) as of now, sent with registration and
    /// each heartbeat. Called from the session's loop, so it must be quick.
    /// None by default: a node that runs nothing real is under no pressure.
    fn node_conditions(&mut self) -> Vec<pb::NodeCondition> {
        Vec::new()
    }

    /// The node has registered (again): `client` carries its credential,
    /// for calls of the runtime's own (the Docker runtime's service watch).
    fn registered(&mut self, _client: &crate::connection::NodeClient) {}
}
