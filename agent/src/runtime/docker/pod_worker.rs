//! One task per pod: it makes the pod's containers (init containers first,
//! one after another), restarts them by the pod's `restartPolicy` with
//! Kubernetes' back-off, follows their events, probes them (`probes.rs`),
//! reports the pod's status, and stops them gracefully when the pod goes. On start it adopts the
//! containers an earlier agent process left for the same pod uid, so a
//! restart of the agent restarts nothing.

use std::sync::Arc;
use std::time::Duration;

use berth_api::objects::pod::{
    Container, ContainerStateTerminated, PodStatus, PortBindingStatus, Protocol, RestartPolicy,
};
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::CreateContainerOptions;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::container_spec::{self, Incarnation, Placement};
use super::pod_status::{Conditions, PodView, RestartBackoff, Slot, SlotState};
use super::probes::{Finished, Prober};
use super::{Engine, ImageProblem, ImageStep, image_step, labels, registry_auth};
use crate::runtime::{AssignedPod, Change, OwnedPod, PodKey, StatusReport};
use crate::session::sleep_until;

/// Back-off settings of every worker.
#[derive(Clone, Copy, Debug)]
pub struct WorkerSettings {
    /// The first wait before a restart (Kubernetes: 10 s).
    pub backoff_initial: Duration,
    /// The longest (Kubernetes: 5 min).
    pub backoff_max: Duration,
}

/// What a worker is told.
#[derive(Debug)]
pub enum WorkerMessage {
    /// The pod changed (its config objects, say).
    Update(Arc<AssignedPod>),
    /// The engine reported an event of this container.
    Container(String),
    /// Events may have been missed: look at every container again.
    Resync,
    /// Answer the current status.
    Inspect(oneshot::Sender<PodStatus>),
    /// Stop the pod's containers, within this grace period if one is
    /// given, and remove them.
    Stop(Option<Duration>),
}

/// One container of the pod, across its runs.
struct Tracked {
    slot: Slot,
    init: bool,
    /// Between runs that crashed.
    backoff: RestartBackoff,
    /// Between tries that never got to a run (pull, config, create).
    setup_backoff: RestartBackoff,
    /// When to (re)start it, while it waits.
    due: Option<Instant>,
    /// A state it takes later (`ImagePullBackOff` after `ErrImagePull`).
    later: Option<(Instant, SlotState)>,
    /// The container whose exit was already taken in.
    exit_seen: Option<String>,
}

/// A pod's worker.
pub struct PodWorker {
    engine: Arc<Engine>,
    pod: Arc<AssignedPod>,
    key: PodKey,
    uid: String,
    inits: Vec<Tracked>,
    mains: Vec<Tracked>,
    start_time: String,
    conditions: Conditions,
    last_sent: Option<PodStatus>,
    /// The main containers' probes.
    prober: Prober,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Docker's time (nanoseconds, or the zero time for "never") as RFC 3339
/// in seconds.
fn docker_time(text: Option<&str>) -> Option<String> {
    let parsed = chrono::DateTime::parse_from_rfc3339(text?).ok()?;
    (parsed.timestamp() > 0).then(|| {
        parsed
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    })
}

fn grace_of(pod: &AssignedPod) -> Duration {
    Duration::from_secs(pod.pod.termination_grace_seconds().unsigned_abs())
}

/// The grace period of a container that records none.
const DEFAULT_GRACE: Duration =
    Duration::from_secs(berth_api::objects::pod::DEFAULT_TERMINATION_GRACE_SECONDS.unsigned_abs());

impl PodWorker {
    /// A worker for `pod`; nothing happens before [`PodWorker::run`].
    pub fn new(engine: Arc<Engine>, pod: Arc<AssignedPod>) -> PodWorker {
        let settings = engine.workers;
        let tracked = |container: &Container, init: bool| Tracked {
            slot: Slot::new(&container.name, &container.image),
            init,
            backoff: RestartBackoff::new(settings.backoff_initial, settings.backoff_max),
            setup_backoff: RestartBackoff::new(settings.backoff_initial, settings.backoff_max),
            due: Some(Instant::now()),
            later: None,
            exit_seen: None,
        };
        let spec = &pod.pod.spec;
        let inits = spec
            .init_containers
            .iter()
            .map(|c| tracked(c, true))
            .collect();
        let mains = spec.containers.iter().map(|c| tracked(c, false)).collect();
        let address = engine.address.to_string();
        // An agent restart keeps the time the pod was first taken.
        let start_time = pod
            .pod
            .status
            .as_ref()
            .filter(|s| s.host_ip.as_deref() == Some(address.as_str()))
            .and_then(|s| s.start_time.clone())
            .unwrap_or_else(now_rfc3339);
        let prober = Prober::new(engine.docker.clone(), engine.address);
        PodWorker {
            key: pod.key(),
            uid: pod.uid().to_owned(),
            prober,
            engine,
            pod,
            inits,
            mains,
            start_time,
            conditions: Conditions::default(),
            last_sent: None,
        }
    }

    /// Runs the pod until it is stopped (true: its containers are gone) or
    /// the agent shuts down (false: they keep running, for the next agent
    /// process to adopt).
    #[tracing::instrument(skip_all, fields(pod = %self.key, uid = self.uid))]
    pub async fn run(
        mut self,
        mut messages: mpsc::UnboundedReceiver<WorkerMessage>,
        shutdown: CancellationToken,
    ) -> bool {
        self.adopt().await;
        loop {
            self.converge().await;
            self.probe();
            self.publish().await;
            let wake = self
                .all()
                .flat_map(|t| [t.due, t.later.as_ref().map(|(at, _)| *at)])
                .flatten()
                .chain(self.prober.next_due())
                .min();
            tokio::select! {
                () = shutdown.cancelled() => return false,
                message = messages.recv() => match message {
                    None => return false,
                    Some(WorkerMessage::Stop(grace)) => {
                        self.terminate(grace).await;
                        return true;
                    }
                    Some(WorkerMessage::Update(pod)) => {
                        // Changed ConfigMaps and Secrets reach the files of
                        // running containers, which go on running.
                        self.engine.volumes.refresh(&pod).await;
                        self.pod = pod;
                        // A reference that was missing may be there now.
                        let now = Instant::now();
                        for tracked in self.all_mut() {
                            if matches!(&tracked.slot.state, SlotState::Waiting { reason, .. } if reason == "CreateContainerConfigError") {
                                tracked.due = Some(now);
                            }
                        }
                    }
                    Some(WorkerMessage::Container(id)) => self.observe_container(&id).await,
                    Some(WorkerMessage::Resync) => {
                        let ids: Vec<String> = self.all().filter_map(|t| t.slot.container_id.clone()).collect();
                        for id in ids {
                            self.observe_container(&id).await;
                        }
                    }
                    Some(WorkerMessage::Inspect(answer)) => {
                        let _ = answer.send(self.status());
                    }
                },
                finished = self.prober.finished() => self.take_probe(finished),
                () = sleep_until(wake) => {}
            }
        }
    }

    /// Has the prober follow the main containers' runs and start the
    /// checks that are due; they run in tasks of their own.
    fn probe(&mut self) {
        let slots: Vec<&Slot> = self.mains.iter().map(|t| &t.slot).collect();
        let containers = &self.pod.pod.spec.containers;
        let now = Instant::now();
        self.prober.follow(containers, &slots, now);
        self.prober.launch_due(containers, &slots, now);
    }

    /// Takes in a finished check: its events, and a kill when liveness or
    /// startup failed (the exit then goes the restart policy's way).
    fn take_probe(&mut self, finished: Finished) {
        let notes = self
            .prober
            .take(finished, &self.pod.pod.spec.containers, grace_of(&self.pod));
        for note in notes {
            self.note(note.warning, note.reason, note.message);
        }
    }

    fn all(&self) -> impl Iterator<Item = &Tracked> {
        self.inits.iter().chain(&self.mains)
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut Tracked> {
        self.inits.iter_mut().chain(&mut self.mains)
    }

    fn tracked_mut(&mut self, init: bool, index: usize) -> Option<&mut Tracked> {
        if init {
            self.inits.get_mut(index)
        } else {
            self.mains.get_mut(index)
        }
    }

    /// Takes in what an earlier agent process left: per container, the
    /// newest run is current, the one before gives `lastState`, older ones
    /// go.
    async fn adopt(&mut self) {
        let found = match self.engine.containers(Some(&self.uid)).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "listing the pod's containers failed");
                return;
            }
        };
        if found.is_empty() {
            return;
        }
        let mut runs: Vec<(bool, String, i32, String)> = found
            .into_iter()
            .filter_map(|summary| {
                let labels = summary.labels.unwrap_or_default();
                Some((
                    labels.get(labels::INIT).map(String::as_str) == Some("true"),
                    labels.get(labels::CONTAINER)?.clone(),
                    labels.get(labels::RESTART_COUNT)?.parse().ok()?,
                    summary.id?,
                ))
            })
            .collect();
        // Newest first.
        runs.sort_by_key(|run| std::cmp::Reverse(run.2));
        let mut adopted_main = false;
        for init in [true, false] {
            let count = if init {
                self.inits.len()
            } else {
                self.mains.len()
            };
            for index in 0..count {
                let Some(name) = self.tracked_mut(init, index).map(|t| t.slot.name.clone()) else {
                    continue;
                };
                let mine: Vec<&(bool, String, i32, String)> = runs
                    .iter()
                    .filter(|(i, n, _, _)| *i == init && *n == name)
                    .collect();
                let Some((_, _, count, current)) = mine.first().copied() else {
                    continue;
                };
                adopted_main |= !init;
                let previous = match mine.get(1) {
                    Some((_, _, _, id)) => self.inspect(id).await.and_then(|i| terminated_of(&i)),
                    None => None,
                };
                for (_, _, _, old) in mine.iter().skip(2) {
                    self.engine.remove(old).await;
                }
                if let Some(tracked) = self.tracked_mut(init, index) {
                    tracked.slot.container_id = Some(current.clone());
                    tracked.slot.restart_count = *count;
                    tracked.slot.last_terminated = previous;
                    tracked.due = None;
                }
                let current = current.clone();
                self.observe_container(&current).await;
                self.start_if_never_started(init, index, &current).await;
            }
        }
        if adopted_main {
            // The pod was initialised before; init containers that are
            // gone are not run again.
            for tracked in &mut self.inits {
                if tracked.slot.container_id.is_none() {
                    tracked.slot.state = SlotState::Terminated(ContainerStateTerminated {
                        exit_code: 0,
                        reason: Some("Completed".into()),
                        ..ContainerStateTerminated::default()
                    });
                    tracked.due = None;
                }
            }
        }
        tracing::info!("adopted the pod's containers");
    }

    /// An earlier agent process may have died between creating a
    /// container and starting it: start it now, or make a new run when
    /// that fails.
    async fn start_if_never_started(&mut self, init: bool, index: usize, id: &str) {
        let engine = self.engine.clone();
        let Some(tracked) = self.tracked_mut(init, index) else {
            return;
        };
        // An exited container (whose exit was taken in) waits for its
        // back-off and a new run instead.
        let created_only = tracked.exit_seen.as_deref() != Some(id)
            && matches!(&tracked.slot.state, SlotState::Waiting { reason, .. } if reason == "ContainerCreating");
        if !created_only {
            return;
        }
        if let Err(error) = engine.docker.start_container(id, None).await {
            tracing::warn!(container = tracked.slot.name, id, %error, "starting an adopted container failed; making a new one");
            tracked.due = Some(Instant::now());
            return;
        }
        self.observe_container(id).await;
    }

    /// Starts what is due: the next init container, or (once every init
    /// container completed) each main container whose time has come.
    async fn converge(&mut self) {
        let now = Instant::now();
        for tracked in self.all_mut() {
            if let Some((at, _)) = &tracked.later
                && *at <= now
                && let Some((_, state)) = tracked.later.take()
            {
                tracked.slot.state = state;
            }
        }
        let mut next_init = None;
        for (index, tracked) in self.inits.iter().enumerate() {
            match &tracked.slot.state {
                SlotState::Terminated(t) if t.exit_code == 0 => continue,
                SlotState::Terminated(_) => return,
                SlotState::Running { .. } => return,
                SlotState::Waiting { .. } => {
                    next_init = Some(index);
                    break;
                }
            }
        }
        if let Some(index) = next_init {
            if self.inits[index].due.is_some_and(|due| due <= now) {
                self.run_container(true, index).await;
            }
            return;
        }
        for index in 0..self.mains.len() {
            let tracked = &self.mains[index];
            if matches!(tracked.slot.state, SlotState::Waiting { .. })
                && tracked.due.is_some_and(|due| due <= now)
            {
                self.run_container(false, index).await;
            }
        }
    }

    /// Pulls, creates and starts one run of a container; on failure the
    /// container waits with the reason, and tries again after back-off.
    async fn run_container(&mut self, init: bool, index: usize) {
        let pod = self.pod.clone();
        let specs = if init {
            &pod.pod.spec.init_containers
        } else {
            &pod.pod.spec.containers
        };
        let Some(spec) = specs.get(index) else {
            return;
        };
        let engine = self.engine.clone();
        let image = self.image_for(spec).await;
        let Some(tracked) = self.tracked_mut(init, index) else {
            return;
        };
        tracked.due = None;
        tracked.later = None;
        let image_id = match image {
            Ok(id) => id,
            Err(problem) => {
                let delay = tracked.setup_backoff.next_delay();
                let now = Instant::now();
                tracked.due = Some(now + delay);
                let (reason, message) = match problem {
                    ImageProblem::NeverPull(message) => ("ErrImageNeverPull", message),
                    ImageProblem::Pull(message) => ("ErrImagePull", message),
                };
                tracing::info!(
                    container = spec.name,
                    reason,
                    message,
                    "the image is not there"
                );
                tracked.slot.state = SlotState::Waiting {
                    reason: reason.into(),
                    message: Some(message.clone()),
                };
                if reason == "ErrImagePull" {
                    // As kubelet: the pull's error first, then the wait.
                    tracked.later = Some((
                        now + Duration::from_millis(500).min(delay),
                        SlotState::Waiting {
                            reason: "ImagePullBackOff".into(),
                            message: Some(format!(
                                "Back-off pulling image \"{}\": {message}",
                                spec.image
                            )),
                        },
                    ));
                }
                return;
            }
        };
        tracked.slot.image_id = image_id;
        let restart_count = if tracked.slot.container_id.is_some() {
            tracked.slot.restart_count + 1
        } else {
            tracked.slot.restart_count
        };
        let placement_network = engine.network_name(&self.key.tenant);
        let which = Incarnation {
            container: spec,
            init,
            restart_count,
        };
        let prepared = engine.volumes.prepare(&engine.docker, &pod).await;
        let mut body = match prepared.and_then(|volumes| {
            let placement = Placement {
                node: &engine.node,
                network: &placement_network,
                address: engine.address,
                volumes: &volumes,
            };
            container_spec::container_body(&pod, which, &placement, &engine.hardening)
        }) {
            Ok(body) => body,
            Err(error) => {
                let Some(tracked) = self.tracked_mut(init, index) else {
                    return;
                };
                tracked.due = Some(Instant::now() + tracked.setup_backoff.next_delay());
                tracked.slot.state = SlotState::Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: Some(error.0.clone()),
                };
                self.note(true, "Failed", format!("Error: {}", error.0));
                return;
            }
        };
        let name = format!(
            "berth_{}_{}_{}_{}_{}",
            self.key.tenant,
            self.key.name,
            spec.name,
            self.uid.get(..8).unwrap_or(&self.uid),
            restart_count
        );
        let created = {
            let _held = engine.networks.lock().await;
            match engine.ensure_network(&self.key.tenant).await {
                Ok(network) => {
                    engine.link_services(&network, &mut body).await;
                    engine
                        .docker
                        .create_container(
                            Some(CreateContainerOptions {
                                name: Some(name.clone()),
                                ..CreateContainerOptions::default()
                            }),
                            body,
                        )
                        .await
                        .map(|created| created.id)
                        .map_err(|e| e.to_string())
                }
                Err(error) => Err(error.to_string()),
            }
        };
        let id = match created {
            Ok(id) => id,
            Err(message) => {
                self.wait_after_failure(init, index, "CreateContainerError", message);
                return;
            }
        };
        if let Err(error) = engine.docker.start_container(&id, None).await {
            engine.remove(&id).await;
            self.wait_after_failure(init, index, "RunContainerError", error.to_string());
            return;
        }
        let Some(tracked) = self.tracked_mut(init, index) else {
            return;
        };
        let previous = tracked.slot.container_id.replace(id.clone());
        tracked.slot.restart_count = restart_count;
        tracked.setup_backoff.reset();
        tracked.slot.state = SlotState::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        };
        tracing::info!(
            container = spec.name,
            id,
            restart_count,
            "started a container"
        );
        self.note(false, "Started", format!("Started container {}", spec.name));
        // Kubernetes keeps one previous run (for `lastState` and previous
        // logs); the one before it goes.
        if let Some(previous) = previous {
            self.remove_runs_before(&spec.name, init, &previous, &id)
                .await;
        }
        self.observe_container(&id).await;
    }

    /// The id of `spec`'s image, pulled first when its policy asks (with
    /// the credentials of the pod's pull Secrets), with kubelet's events.
    async fn image_for(&self, spec: &Container) -> Result<String, ImageProblem> {
        let image = spec.image.as_str();
        let present = self.engine.image_present(image).await;
        match image_step(image, spec.image_pull_policy, present) {
            ImageStep::Use(id) => {
                self.note(
                    false,
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                );
                Ok(id)
            }
            ImageStep::NeverPull(message) => {
                self.note(true, "ErrImageNeverPull", message.clone());
                Err(ImageProblem::NeverPull(message))
            }
            ImageStep::Pull => {
                let credentials = self.pull_credentials(image);
                self.note(false, "Pulling", format!("Pulling image \"{image}\""));
                let started = Instant::now();
                match self.engine.pull(image, credentials).await {
                    Ok(id) => {
                        self.note(
                            false,
                            "Pulled",
                            format!(
                                "Successfully pulled image \"{image}\" in {:.3}s",
                                started.elapsed().as_secs_f64()
                            ),
                        );
                        Ok(id)
                    }
                    Err(problem) => {
                        let message = match &problem {
                            ImageProblem::Pull(message) | ImageProblem::NeverPull(message) => {
                                message.clone()
                            }
                        };
                        self.note(true, "Failed", message);
                        self.note(true, "Failed", "Error: ErrImagePull".into());
                        self.note(
                            false,
                            "BackOff",
                            format!("Back-off pulling image \"{image}\""),
                        );
                        Err(problem)
                    }
                }
            }
        }
    }

    /// The credentials for pulling `image` from the pod's `imagePullSecrets`.
    /// A missing or unreadable one is a warning, and the pull goes on
    /// without it, as kubelet's does.
    fn pull_credentials(&self, image: &str) -> Option<bollard::auth::DockerCredentials> {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for reference in &self.pod.pod.spec.image_pull_secrets {
            match self.pod.secrets.get(&reference.name) {
                Some(secret) => found.push(secret),
                None => missing.push(reference.name.as_str()),
            }
        }
        if !missing.is_empty() {
            self.note(
                true,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    missing.join(", ")
                ),
            );
        }
        match registry_auth::credentials_for(image, &found) {
            Ok(credentials) => credentials,
            Err(message) => {
                self.note(true, "FailedToRetrieveImagePullSecret", message);
                None
            }
        }
    }

    /// Tells the session something happened to this pod, for its events.
    fn note(&self, warning: bool, reason: &str, message: String) {
        self.engine
            .note(&self.key, &self.uid, warning, reason, message);
    }

    fn wait_after_failure(&mut self, init: bool, index: usize, reason: &str, message: String) {
        tracing::warn!(reason, message, "a container could not be started");
        self.note(true, "Failed", format!("Error: {message}"));
        if let Some(tracked) = self.tracked_mut(init, index) {
            tracked.due = Some(Instant::now() + tracked.setup_backoff.next_delay());
            tracked.slot.state = SlotState::Waiting {
                reason: reason.into(),
                message: Some(message),
            };
        }
    }

    /// Removes runs of a container other than `keep` and `current`.
    async fn remove_runs_before(&self, container: &str, init: bool, keep: &str, current: &str) {
        let Ok(found) = self.engine.containers(Some(&self.uid)).await else {
            return;
        };
        for summary in found {
            let labels = summary.labels.unwrap_or_default();
            let same = labels.get(labels::CONTAINER).map(String::as_str) == Some(container)
                && (labels.get(labels::INIT).map(String::as_str) == Some("true")) == init;
            if let Some(id) = summary.id
                && same
                && id != keep
                && id != current
            {
                self.engine.remove(&id).await;
            }
        }
    }

    async fn inspect(&self, id: &str) -> Option<ContainerInspectResponse> {
        self.engine.docker.inspect_container(id, None).await.ok()
    }

    /// Looks at one of the pod's containers after an event and takes in
    /// what changed: running (with its address and ports) or exited (then
    /// the restart policy decides).
    async fn observe_container(&mut self, id: &str) {
        let Some((init, index)) = self.position_of(id) else {
            return;
        };
        let inspected = self.inspect(id).await;
        let policy = self.pod.pod.spec.restart_policy.unwrap_or_default();
        let pod_name = format!("{}_{}({})", self.key.name, self.key.tenant, self.uid);
        let network = self.engine.network_name(&self.key.tenant);
        let Some(tracked) = self.tracked_mut(init, index) else {
            return;
        };
        let Some(inspected) = inspected else {
            // Removed behind the agent's back: make it again.
            tracing::warn!(
                container = tracked.slot.name,
                id,
                "the container is gone; making it again"
            );
            tracked.slot.state = SlotState::Waiting {
                reason: "ContainerCreating".into(),
                message: Some("the container was removed".into()),
            };
            tracked.due = Some(Instant::now());
            return;
        };
        if let Some(image) = &inspected.image {
            tracked.slot.image_id.clone_from(image);
        }
        let state = inspected.state.clone().unwrap_or_default();
        if state.running == Some(true) {
            tracked.slot.state = SlotState::Running {
                started_at: docker_time(state.started_at.as_deref()).unwrap_or_else(now_rfc3339),
            };
            let settings = inspected.network_settings.unwrap_or_default();
            tracked.slot.ip = settings
                .networks
                .as_ref()
                .and_then(|networks| networks.get(&network))
                .and_then(|endpoint| endpoint.ip_address.clone())
                .filter(|ip| !ip.is_empty());
            tracked.slot.ports = published_ports(settings.ports.unwrap_or_default());
            return;
        }
        let Some(terminated) = terminated_of(&inspected) else {
            // Created, not started yet: its start event follows.
            return;
        };
        if tracked.exit_seen.as_deref() == Some(id) {
            return;
        }
        tracked.exit_seen = Some(id.to_owned());
        tracked.slot.ip = None;
        tracked.slot.ports.clear();
        let failed = terminated.exit_code != 0;
        let restart = if tracked.init {
            failed && policy != RestartPolicy::Never
        } else {
            match policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => failed,
                RestartPolicy::Never => false,
            }
        };
        tracing::info!(
            container = tracked.slot.name,
            exit_code = terminated.exit_code,
            reason = terminated.reason,
            restart,
            "a container exited"
        );
        if !restart {
            tracked.slot.state = SlotState::Terminated(terminated);
            return;
        }
        let ran_for = run_length(&terminated);
        let delay = tracked.backoff.after_run(ran_for);
        tracked.slot.state = SlotState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some(format!(
                "back-off {} restarting failed container={} pod={pod_name}",
                humanize(delay),
                tracked.slot.name
            )),
        };
        tracked.slot.last_terminated = Some(terminated);
        tracked.due = Some(Instant::now() + delay);
        let message = format!(
            "Back-off restarting failed container {} in pod {pod_name}",
            tracked.slot.name
        );
        self.note(true, "BackOff", message);
    }

    fn position_of(&self, id: &str) -> Option<(bool, usize)> {
        let is = |t: &Tracked| t.slot.container_id.as_deref() == Some(id);
        if let Some(index) = self.inits.iter().position(is) {
            return Some((true, index));
        }
        self.mains.iter().position(is).map(|index| (false, index))
    }

    fn status(&mut self) -> PodStatus {
        let inits: Vec<Slot> = self.inits.iter().map(|t| t.slot.clone()).collect();
        let containers = &self.pod.pod.spec.containers;
        let mains: Vec<Slot> = self
            .mains
            .iter()
            .zip(containers)
            .enumerate()
            .map(|(index, (t, container))| {
                let mut slot = t.slot.clone();
                (slot.startup_passed, slot.readiness_passed) = self.prober.gates(index, container);
                slot
            })
            .collect();
        let now = now_rfc3339();
        let host_ip = self.engine.address.to_string();
        let view = PodView {
            inits: &inits,
            mains: &mains,
            host_ip: &host_ip,
            start_time: &self.start_time,
            now: &now,
        };
        super::pod_status::pod_status(&view, &mut self.conditions)
    }

    /// Sends the status when it changed.
    async fn publish(&mut self) {
        let status = self.status();
        if self.last_sent.as_ref() == Some(&status) {
            return;
        }
        self.last_sent = Some(status.clone());
        let report = StatusReport {
            key: self.key.clone(),
            uid: self.uid.clone(),
            status,
        };
        let _ = self.engine.changes.send(Change::Status(report)).await;
    }

    /// SIGTERM to every container, SIGKILL after the grace period, then
    /// removal; the tenant network goes when nothing uses it any more.
    async fn terminate(&mut self, grace: Option<Duration>) {
        let grace = grace.map_or_else(|| grace_of(&self.pod), |g| g.min(grace_of(&self.pod)));
        tracing::info!(grace_seconds = grace.as_secs(), "stopping the pod");
        remove_leftovers(
            &self.engine,
            &OwnedPod {
                key: self.key.clone(),
                uid: self.uid.clone(),
            },
            Some(grace),
        )
        .await;
    }
}

/// Stops and removes every container of `pod` on this node (each within
/// `grace`, or the grace period recorded on it), then its volumes (not its
/// claims) and its tenant network if unused; then says the pod is gone.
pub async fn remove_leftovers(engine: &Engine, pod: &OwnedPod, grace: Option<Duration>) {
    let found = match engine.containers(Some(&pod.uid)).await {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(pod = %pod.key, %error, "listing a pod's containers failed");
            return;
        }
    };
    let stops = found.into_iter().filter_map(|summary| {
        let recorded = summary
            .labels
            .as_ref()
            .and_then(|labels| labels.get(labels::GRACE_SECONDS))
            .and_then(|g| g.parse::<u64>().ok())
            .map_or(DEFAULT_GRACE, Duration::from_secs);
        let grace = grace.map_or(recorded, |g| g.min(recorded));
        let id = summary.id?;
        Some(async move { engine.stop_and_remove(&id, grace).await })
    });
    futures::future::join_all(stops).await;
    tracing::info!(pod = %pod.key, uid = pod.uid, "removed the pod's containers");
    engine.volumes.remove_pod(&pod.uid).await;
    engine.release_network(&pod.key.tenant).await;
    let _ = engine.changes.send(Change::Stopped(pod.clone())).await;
}

/// How a container that is not running ended; `None` while it has not
/// run yet.
fn terminated_of(inspected: &ContainerInspectResponse) -> Option<ContainerStateTerminated> {
    let state = inspected.state.as_ref()?;
    if state.running == Some(true) {
        return None;
    }
    let finished_at = docker_time(state.finished_at.as_deref())?;
    let exit_code = i32::try_from(state.exit_code.unwrap_or(0)).unwrap_or(i32::MAX);
    let reason = if state.oom_killed == Some(true) {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    Some(ContainerStateTerminated {
        exit_code,
        signal: None,
        reason: Some(reason.into()),
        message: state.error.clone().filter(|e| !e.is_empty()),
        started_at: docker_time(state.started_at.as_deref()),
        finished_at: Some(finished_at),
        container_id: inspected.id.as_ref().map(|id| format!("docker://{id}")),
    })
}

/// How long a run lasted.
fn run_length(terminated: &ContainerStateTerminated) -> Duration {
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    match (
        parse(&terminated.started_at),
        parse(&terminated.finished_at),
    ) {
        (Some(start), Some(end)) => (end - start).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

/// `10s`, `1m20s`, as kubelet writes a back-off.
fn humanize(delay: Duration) -> String {
    let seconds = delay.as_secs();
    if seconds >= 60 {
        format!("{}m{}s", seconds / 60, seconds % 60)
    } else if seconds > 0 {
        format!("{seconds}s")
    } else {
        format!("{}ms", delay.as_millis())
    }
}

/// The engine's port map as status bindings.
fn published_ports(ports: bollard::models::PortMap) -> Vec<PortBindingStatus> {
    let mut bindings: Vec<PortBindingStatus> = ports
        .into_iter()
        .flat_map(|(key, bound)| {
            let (port, protocol) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let container_port = port.parse().unwrap_or(0);
            let protocol = match protocol {
                "udp" => Protocol::Udp,
                "sctp" => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            bound
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |binding| {
                    Some(PortBindingStatus {
                        container_port,
                        protocol,
                        host_ip: binding.host_ip.unwrap_or_default(),
                        host_port: binding.host_port?.parse().ok()?,
                    })
                })
        })
        .collect();
    bindings.sort_by(|a, b| {
        (a.container_port, a.protocol, &a.host_ip).cmp(&(b.container_port, b.protocol, &b.host_ip))
    });
    bindings
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerState, PortBinding};

    #[test]
    fn an_exit_is_read_with_its_reason_and_times() {
        let inspected = |code: i64, oom: bool| ContainerInspectResponse {
            id: Some("abc".into()),
            state: Some(ContainerState {
                running: Some(false),
                exit_code: Some(code),
                oom_killed: Some(oom),
                started_at: Some("2025-01-01T00:00:00.123456789Z".into()),
                finished_at: Some("2025-01-01T00:00:12.5Z".into()),
                ..ContainerState::default()
            }),
            ..ContainerInspectResponse::default()
        };
        let failed = terminated_of(&inspected(1, false)).unwrap();
        assert_eq!(failed.reason.as_deref(), Some("Error"));
        assert_eq!(failed.exit_code, 1);
        assert_eq!(failed.started_at.as_deref(), Some("2025-01-01T00:00:00Z"));
        assert_eq!(failed.container_id.as_deref(), Some("docker://abc"));
        assert_eq!(run_length(&failed), Duration::from_secs(12));
        let done = terminated_of(&inspected(0, false)).unwrap();
        assert_eq!(done.reason.as_deref(), Some("Completed"));
        let killed = terminated_of(&inspected(137, true)).unwrap();
        assert_eq!(killed.reason.as_deref(), Some("OOMKilled"));
    }

    #[test]
    fn a_container_never_started_has_not_terminated() {
        let created = ContainerInspectResponse {
            state: Some(ContainerState {
                running: Some(false),
                finished_at: Some("0001-01-01T00:00:00Z".into()),
                ..ContainerState::default()
            }),
            ..ContainerInspectResponse::default()
        };
        assert_eq!(terminated_of(&created), None);
    }

    #[test]
    fn published_ports_become_status_bindings() {
        let ports = [(
            "8080/tcp".to_owned(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some("49153".into()),
            }]),
        )]
        .into();
        assert_eq!(
            published_ports(ports),
            [PortBindingStatus {
                container_port: 8080,
                protocol: Protocol::Tcp,
                host_ip: "127.0.0.1".into(),
                host_port: 49153,
            }]
        );
    }

    #[test]
    fn back_off_reads_as_kubelet_writes_it() {
        assert_eq!(humanize(Duration::from_secs(10)), "10s");
        assert_eq!(humanize(Duration::from_secs(80)), "1m20s");
        assert_eq!(humanize(Duration::from_millis(500)), "500ms");
    }
}
