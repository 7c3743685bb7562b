//! Container probes (`startupProbe`, `livenessProbe`, `readinessProbe`) as
//! kubelet runs them. Each check runs in a task of its own on its own timer,
//! so a slow one never holds up the pod worker; its results are counted in a
//! row against the probe's thresholds ([`Tally`], pure). The worker asks
//! [`Prober::take`] what a finished check means: notes for the pod's events,
//! and the kill of a run whose liveness or startup probe failed.
//!
//! Checks reach a container from the host: HTTP and TCP at its address on
//! the tenant bridge network (or, without one, at its published host
//! port), commands through Docker exec.

use std::net::IpAddr;
use std::time::Duration;

use berth_api::objects::defaults::{
    DEFAULT_PROBE_FAILURE_THRESHOLD, DEFAULT_PROBE_INITIAL_DELAY_SECONDS,
    DEFAULT_PROBE_PERIOD_SECONDS, DEFAULT_PROBE_SUCCESS_THRESHOLD, DEFAULT_PROBE_TIMEOUT_SECONDS,
};
use berth_api::objects::meta::IntOrString;
use berth_api::objects::pod::{
    Container, HttpGetAction, PortBindingStatus, Probe, Protocol, TcpSocketAction,
};
use bollard::Docker;
use bollard::query_parameters::StopContainerOptions;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::pod_status::{Slot, SlotState};

/// The most of a command's output or an HTTP answer a check reads, as
/// kubelet (10 KiB).
const MAX_OUTPUT: usize = 10 * 1024;

/// Which of a container's probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// Holds the others until it passes; failing, it kills the run.
    Startup,
    /// Failing, it kills the run.
    Liveness,
    /// Says whether the container takes traffic.
    Readiness,
}

impl ProbeKind {
    const ALL: [ProbeKind; 3] = [
        ProbeKind::Startup,
        ProbeKind::Liveness,
        ProbeKind::Readiness,
    ];

    fn slot(self) -> usize {
        self as usize
    }

    /// The container's probe of this kind.
    pub fn of(self, container: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Startup => container.startup_probe.as_ref(),
            ProbeKind::Liveness => container.liveness_probe.as_ref(),
            ProbeKind::Readiness => container.readiness_probe.as_ref(),
        }
    }

    /// Kubelet's word for it in events.
    pub fn word(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// A probe's timings, with Kubernetes' defaults where the spec has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// After the run's start, before the first check.
    pub initial_delay: Duration,
    /// Between checks.
    pub period: Duration,
    /// How long a check may take.
    pub timeout: Duration,
    /// Successes in a row that make it pass.
    pub success_threshold: u32,
    /// Failures in a row that make it fail.
    pub failure_threshold: u32,
}

impl Timings {
    /// The timings of `probe`.
    pub fn of(probe: &Probe) -> Timings {
        let seconds = |value: Option<i32>, default: i32| {
            Duration::from_secs(u64::try_from(value.unwrap_or(default)).unwrap_or(0))
        };
        let count = |value: Option<i32>, default: i32| {
            u32::try_from(value.unwrap_or(default)).unwrap_or(1).max(1)
        };
        Timings {
            initial_delay: seconds(
                probe.initial_delay_seconds,
                DEFAULT_PROBE_INITIAL_DELAY_SECONDS,
            ),
            period: seconds(probe.period_seconds, DEFAULT_PROBE_PERIOD_SECONDS)
                .max(Duration::from_secs(1)),
            timeout: seconds(probe.timeout_seconds, DEFAULT_PROBE_TIMEOUT_SECONDS)
                .max(Duration::from_secs(1)),
            success_threshold: count(probe.success_threshold, DEFAULT_PROBE_SUCCESS_THRESHOLD),
            failure_threshold: count(probe.failure_threshold, DEFAULT_PROBE_FAILURE_THRESHOLD),
        }
    }
}

/// What one check's result changed of its probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Nothing (yet).
    Steady,
    /// The probe passes now.
    Passed,
    /// The probe fails now; for liveness and startup, the run must go.
    Failed,
}

/// One probe's results in a row for one run of a container, and what they
/// amount to. Pure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    kind: ProbeKind,
    timings: Timings,
    /// What the probe says now: kubelet starts readiness and startup
    /// failing, liveness passing.
    passing: bool,
    last: Option<bool>,
    in_a_row: u32,
}

impl Tally {
    /// A run's first tally of a probe.
    pub fn new(kind: ProbeKind, timings: Timings) -> Tally {
        Tally {
            kind,
            timings,
            passing: kind == ProbeKind::Liveness,
            last: None,
            in_a_row: 0,
        }
    }

    /// Whether the probe passes.
    pub fn passing(&self) -> bool {
        self.passing
    }

    /// Takes in one check's result.
    pub fn record(&mut self, success: bool) -> Turn {
        if self.last == Some(success) {
            self.in_a_row = self.in_a_row.saturating_add(1);
        } else {
            self.last = Some(success);
            self.in_a_row = 1;
        }
        let threshold = if success {
            self.timings.success_threshold
        } else {
            self.timings.failure_threshold
        };
        if self.in_a_row < threshold {
            return Turn::Steady;
        }
        let was_passing = std::mem::replace(&mut self.passing, success);
        match (success, self.kind) {
            (true, _) if was_passing => Turn::Steady,
            (true, _) => Turn::Passed,
            (false, ProbeKind::Readiness) if !was_passing => Turn::Steady,
            (false, ProbeKind::Readiness) => Turn::Failed,
            // The run is killed; its next failures count afresh.
            (false, ProbeKind::Liveness | ProbeKind::Startup) => {
                self.in_a_row = 0;
                Turn::Failed
            }
        }
    }
}

/// One probe of one run: its tally and its timer.
#[derive(Debug)]
struct Schedule {
    tally: Tally,
    /// When the next check is due.
    next: Instant,
    /// A check is running.
    in_flight: bool,
}

/// The probes of one run of a container.
#[derive(Debug)]
struct Run {
    container_id: String,
    /// By [`ProbeKind::slot`].
    probes: [Option<Schedule>; 3],
    /// Killed after a failed liveness or startup probe: no more checks.
    on_hold: bool,
}

impl Run {
    fn new(container: &Container, container_id: &str, started: Instant) -> Run {
        let probes = ProbeKind::ALL.map(|kind| {
            kind.of(container).map(|probe| {
                let timings = Timings::of(probe);
                Schedule {
                    tally: Tally::new(kind, timings),
                    next: started + timings.initial_delay,
                    in_flight: false,
                }
            })
        });
        Run {
            container_id: container_id.to_owned(),
            probes,
            on_hold: false,
        }
    }

    fn passing(&self, kind: ProbeKind) -> bool {
        self.probes[kind.slot()]
            .as_ref()
            .is_none_or(|probe| probe.tally.passing())
    }

    /// The probes whose checks may run now: the startup probe until it
    /// passes, then the others.
    fn active(&self) -> impl Iterator<Item = (ProbeKind, &Schedule)> {
        let started = self.passing(ProbeKind::Startup);
        ProbeKind::ALL
            .into_iter()
            .filter(move |kind| !self.on_hold && (*kind == ProbeKind::Startup) != started)
            .filter_map(|kind| Some((kind, self.probes[kind.slot()].as_ref()?)))
            .filter(|(_, probe)| !probe.in_flight)
    }
}

/// A finished check or kill, from the prober's tasks.
#[derive(Debug)]
pub enum Finished {
    /// A check ended.
    Checked {
        /// The container's index among the pod's containers.
        index: usize,
        /// The run it checked.
        container_id: String,
        /// Which probe.
        kind: ProbeKind,
        /// `Err` with kubelet's words for what failed.
        result: Result<(), String>,
    },
    /// A run killed after a failed probe has stopped.
    Killed,
}

/// Something users should hear of, as an event on the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeNote {
    /// A `Warning` rather than `Normal` event.
    pub warning: bool,
    /// Kubernetes' reason.
    pub reason: &'static str,
    /// Kubelet's words.
    pub message: String,
}

/// The probes of one pod's containers: which run each follows, their
/// timers, and the tasks of checks and kills in flight (which end with the
/// prober).
pub struct Prober {
    docker: Docker,
    /// The node's address, where ports are published.
    node: IpAddr,
    /// By the container's index in the pod.
    runs: Vec<Option<Run>>,
    tasks: JoinSet<Finished>,
}

impl Prober {
    /// A prober that checks through `docker` and reaches published ports
    /// at `node`.
    pub fn new(docker: Docker, node: IpAddr) -> Prober {
        Prober {
            docker,
            node,
            runs: Vec::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Follows the containers' runs: a run that began gets fresh probes
    /// (its initial delay counted from its start), one that ended has none.
    pub fn follow(&mut self, containers: &[Container], slots: &[&Slot], now: Instant) {
        self.runs.resize_with(slots.len(), || None);
        for ((run, slot), container) in self.runs.iter_mut().zip(slots).zip(containers) {
            let current = match (&slot.state, &slot.container_id) {
                (SlotState::Running { started_at }, Some(id)) => Some((id, started_at)),
                _ => None,
            };
            match current {
                Some((id, _)) if run.as_ref().is_some_and(|r| r.container_id == *id) => {}
                Some((id, started_at)) => {
                    *run = Some(Run::new(container, id, started_instant(started_at, now)));
                }
                None => *run = None,
            }
        }
    }

    /// Starts the checks that are due, each in a task of its own.
    pub fn launch_due(&mut self, containers: &[Container], slots: &[&Slot], now: Instant) {
        for (index, run) in self.runs.iter_mut().enumerate() {
            let (Some(run), Some(container), Some(slot)) =
                (run.as_mut(), containers.get(index), slots.get(index))
            else {
                continue;
            };
            let due: Vec<ProbeKind> = run
                .active()
                .filter(|(_, probe)| probe.next <= now)
                .map(|(kind, _)| kind)
                .collect();
            for kind in due {
                let (Some(schedule), Some(probe)) =
                    (run.probes[kind.slot()].as_mut(), kind.of(container))
                else {
                    continue;
                };
                schedule.in_flight = true;
                schedule.next = now + schedule.tally.timings.period;
                let target = Target {
                    docker: self.docker.clone(),
                    container: container.clone(),
                    container_id: run.container_id.clone(),
                    ip: slot.ip.as_deref().and_then(|ip| ip.parse().ok()),
                    bindings: slot.ports.clone(),
                    node: self.node,
                };
                let probe = probe.clone();
                let container_id = run.container_id.clone();
                let timeout = schedule.tally.timings.timeout;
                self.tasks.spawn(async move {
                    let result = check(&probe, &target, timeout).await;
                    Finished::Checked {
                        index,
                        container_id,
                        kind,
                        result,
                    }
                });
            }
        }
    }

    /// When the next check is due, if any is waiting.
    pub fn next_due(&self) -> Option<Instant> {
        self.runs
            .iter()
            .flatten()
            .flat_map(|run| run.active().map(|(_, probe)| probe.next))
            .min()
    }

    /// The next check or kill that finishes; pending while none runs.
    /// Cancel-safe.
    pub async fn finished(&mut self) -> Finished {
        loop {
            match self.tasks.join_next().await {
                Some(Ok(finished)) => return finished,
                Some(Err(error)) => tracing::warn!(%error, "a probe task ended abnormally"),
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Takes in a finished check: the notes it makes, and for a failed
    /// liveness or startup probe, SIGTERM to the run (SIGKILL after the
    /// probe's grace period, else `pod_grace`), which the restart policy
    /// then handles as any exit.
    pub fn take(
        &mut self,
        finished: Finished,
        containers: &[Container],
        pod_grace: Duration,
    ) -> Vec<ProbeNote> {
        let Finished::Checked {
            index,
            container_id,
            kind,
            result,
        } = finished
        else {
            return Vec::new();
        };
        let (Some(Some(run)), Some(container)) = (self.runs.get_mut(index), containers.get(index))
        else {
            return Vec::new();
        };
        // A check of an earlier run, or of one being killed, says nothing.
        if run.container_id != container_id || run.on_hold {
            return Vec::new();
        }
        let Some(schedule) = run.probes[kind.slot()].as_mut() else {
            return Vec::new();
        };
        schedule.in_flight = false;
        let turn = schedule.tally.record(result.is_ok());
        let mut notes = Vec::new();
        if let Err(detail) = &result {
            tracing::debug!(
                container = container.name,
                probe = kind.word(),
                detail,
                "a probe failed"
            );
            notes.push(ProbeNote {
                warning: true,
                reason: "Unhealthy",
                message: format!("{} probe failed: {detail}", kind.word()),
            });
        }
        if turn != Turn::Steady {
            tracing::info!(
                container = container.name,
                probe = kind.word(),
                ?turn,
                "a probe turned"
            );
        }
        if turn == Turn::Failed && kind != ProbeKind::Readiness {
            run.on_hold = true;
            let grace = kind
                .of(container)
                .and_then(|probe| probe.termination_grace_period_seconds)
                .map_or(pod_grace, |seconds| {
                    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
                });
            notes.push(ProbeNote {
                warning: false,
                reason: "Killing",
                message: format!(
                    "Container {} failed {} probe, will be restarted",
                    container.name,
                    kind.word().to_lowercase()
                ),
            });
            let docker = self.docker.clone();
            let id = run.container_id.clone();
            self.tasks.spawn(async move {
                let options = StopContainerOptions {
                    t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
                    signal: None,
                };
                if let Err(error) = docker.stop_container(&id, Some(options)).await {
                    tracing::warn!(container = id, %error, "stopping an unhealthy container failed");
                }
                Finished::Killed
            });
        }
        notes
    }

    /// Whether container `index`'s current run passed its startup probe,
    /// and whether it passes its readiness probe; a probe the container
    /// lacks passes.
    pub fn gates(&self, index: usize, container: &Container) -> (bool, bool) {
        match self.runs.get(index).and_then(Option::as_ref) {
            Some(run) => (
                run.passing(ProbeKind::Startup),
                run.passing(ProbeKind::Readiness),
            ),
            None => (
                container.startup_probe.is_none(),
                container.readiness_probe.is_none(),
            ),
        }
    }
}

/// The instant a run began, from its start time (RFC 3339): a run the
/// agent adopts started before the agent did.
fn started_instant(started_at: &str, now: Instant) -> Instant {
    let ago = chrono::DateTime::parse_from_rfc3339(started_at)
        .ok()
        .and_then(|at| {
            (chrono::Utc::now() - at.with_timezone(&chrono::Utc))
                .to_std()
                .ok()
        })
        .unwrap_or_default();
    now.checked_sub(ago).unwrap_or(now)
}

/// What a check reaches, taken when it is launched.
struct Target {
    docker: Docker,
    container: Container,
    container_id: String,
    /// The run's address on the tenant network.
    ip: Option<IpAddr>,
    /// Where its ports are published.
    bindings: Vec<PortBindingStatus>,
    /// The node's address.
    node: IpAddr,
}

impl Target {
    /// Where to connect for `port` (a number or a container port's name)
    /// and `host` (the spec's, else the run's address, else the published
    /// port): host and port.
    fn endpoint(&self, port: &IntOrString, host: Option<&str>) -> Result<(String, u16), String> {
        let port = container_port(&self.container, port)?;
        if let Some(host) = host.filter(|h| !h.is_empty()) {
            return Ok((host.to_owned(), port));
        }
        if let Some(ip) = self.ip {
            return Ok((ip.to_string(), port));
        }
        let binding = self
            .bindings
            .iter()
            .find(|b| b.container_port == i32::from(port) && b.protocol == Protocol::Tcp)
            .ok_or_else(|| {
                format!(
                    "container {} has no address on its tenant network and does not publish port {port}",
                    self.container.name
                )
            })?;
        let host = match binding.host_ip.parse::<IpAddr>() {
            Ok(ip) if !ip.is_unspecified() => ip,
            _ => self.node,
        };
        let port = u16::try_from(binding.host_port)
            .map_err(|_| format!("published port {} is out of range", binding.host_port))?;
        Ok((host.to_string(), port))
    }
}

/// `port` as a number: itself, or the number of the container's port of
/// that name.
fn container_port(container: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(number) => u16::try_from(*number)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("port {number} is not a port number (1 to 65535)")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| {
                format!(
                    "port {name:?} is not the name of a port of container {}",
                    container.name
                )
            }),
    }
}

/// `host:port`, an IPv6 address in brackets, as Go writes it.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Runs one check of `probe` against `target` within `timeout`.
async fn check(probe: &Probe, target: &Target, timeout: Duration) -> Result<(), String> {
    if let Some(action) = &probe.exec {
        let shown = action.command.join(" ");
        return tokio::time::timeout(timeout, exec(target, &action.command))
            .await
            .unwrap_or_else(|_| Err(format!("command {shown:?} timed out")));
    }
    if let Some(action) = &probe.tcp_socket {
        return tcp(target, action, timeout).await;
    }
    if let Some(action) = &probe.http_get {
        return http_get(target, action, timeout).await;
    }
    Err("the probe has no handler: one of httpGet, tcpSocket or exec".into())
}

/// Connects within `timeout`, or answers Go's words for why not
/// (`dial tcp 10.0.0.5:8080: connect: connection refused`).
async fn dial(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let shown = host_port(host, port);
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(format!("dial tcp {shown}: {}", dial_error(&error))),
        Err(_) => Err(format!("dial tcp {shown}: i/o timeout")),
    }
}

/// An error of `connect` in Go's words.
fn dial_error(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        ErrorKind::TimedOut => "i/o timeout".into(),
        ErrorKind::HostUnreachable => "connect: no route to host".into(),
        ErrorKind::NetworkUnreachable => "connect: network is unreachable".into(),
        _ => {
            let text = error.to_string();
            match text.find(" (os error") {
                Some(at) => text[..at].to_lowercase(),
                None => text,
            }
        }
    }
}

async fn tcp(target: &Target, action: &TcpSocketAction, timeout: Duration) -> Result<(), String> {
    let (host, port) = target.endpoint(&action.port, action.host.as_deref())?;
    dial(&host, port, timeout).await.map(drop)
}

/// A GET whose answer must be 200–399 (a redirect is not followed, and
/// counts as success).
async fn http_get(
    target: &Target,
    action: &HttpGetAction,
    timeout: Duration,
) -> Result<(), String> {
    let scheme = action.scheme.as_deref().unwrap_or("HTTP");
    if !scheme.eq_ignore_ascii_case("HTTP") {
        return Err(format!(
            "scheme {scheme:?} is not supported by this agent's probes: use HTTP"
        ));
    }
    let (host, port) = target.endpoint(&action.port, action.host.as_deref())?;
    let authority = host_port(&host, port);
    let path = match action.path.as_deref() {
        None | Some("") => "/".to_owned(),
        Some(path) if path.starts_with('/') => path.to_owned(),
        Some(path) => format!("/{path}"),
    };
    let url = format!("http://{authority}{path}");
    let request = http_request(&path, &authority, action)?;
    let deadline = Instant::now() + timeout;
    let mut stream = dial(&host, port, timeout)
        .await
        .map_err(|dialled| format!("Get {url:?}: {dialled}"))?;
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        let mut buffer = [0_u8; 1024];
        while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < MAX_OUTPUT {
            let read = stream.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..read]);
        }
        Ok::<_, std::io::Error>(answer)
    };
    let answer = match tokio::time::timeout_at(deadline, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => return Err(format!("Get {url:?}: {}", dial_error(&error))),
        Err(_) => {
            return Err(format!(
                "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ));
        }
    };
    match status_code(&answer) {
        Some(code) if (200..400).contains(&code) => Ok(()),
        Some(code) => Err(format!("HTTP probe failed with statuscode: {code}")),
        None if answer.is_empty() => Err(format!("Get {url:?}: EOF")),
        None => Err(format!("Get {url:?}: malformed HTTP response")),
    }
}

/// The request a GET probe sends: kubelet's headers, which the probe's own
/// replace (`Host` too).
fn http_request(path: &str, authority: &str, action: &HttpGetAction) -> Result<String, String> {
    let mut headers = vec![
        ("Host".to_owned(), authority.to_owned()),
        (
            "User-Agent".to_owned(),
            format!("kube-probe/{}", env!("CARGO_PKG_VERSION")),
        ),
        ("Accept".to_owned(), "*/*".to_owned()),
    ];
    for header in &action.http_headers {
        let broken = |text: &str| text.contains(['\r', '\n']);
        if broken(&header.name) || broken(&header.value) || header.name.contains(':') {
            return Err(format!(
                "httpHeaders: {:?} is not a valid header name and value",
                header.name
            ));
        }
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case(&header.name));
        headers.push((header.name.clone(), header.value.clone()));
    }
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    Ok(request)
}

/// The status code of an answer's first line (`HTTP/1.1 200 OK`).
fn status_code(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    words
        .next()
        .filter(|version| version.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

/// Runs `command` in the run through Docker exec: exit 0 passes; anything
/// else fails with what the command wrote (kubelet's detail).
async fn exec(target: &Target, command: &[String]) -> Result<(), String> {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    let docker = &target.docker;
    let exec = docker
        .create_exec(
            &target.container_id,
            CreateExecOptions {
                cmd: Some(command.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..CreateExecOptions::default()
            },
        )
        .await
        .map_err(|error| format!("exec {:?}: {error}", command.join(" ")))?;
    let mut output = Vec::new();
    let started = docker
        .start_exec(&exec.id, None)
        .await
        .map_err(|error| format!("exec {:?}: {error}", command.join(" ")))?;
    if let StartExecResults::Attached {
        output: mut stream, ..
    } = started
    {
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else { break };
            let room = MAX_OUTPUT.saturating_sub(output.len());
            let bytes = chunk.into_bytes();
            output.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }
    let inspected = docker
        .inspect_exec(&exec.id)
        .await
        .map_err(|error| format!("exec {:?}: {error}", command.join(" ")))?;
    match inspected.exit_code {
        Some(0) => Ok(()),
        code => {
            let text = String::from_utf8_lossy(&output).trim_end().to_owned();
            if text.is_empty() {
                let code = code.map_or_else(|| "unknown".to_owned(), |c| c.to_string());
                Err(format!(
                    "command {:?} exited with code {code}",
                    command.join(" ")
                ))
            } else {
                Err(text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::objects::pod::{ContainerPort, ExecAction, HttpHeader};

    fn timings(success: u32, failure: u32) -> Timings {
        Timings {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    fn record(tally: &mut Tally, results: &[bool]) -> Vec<Turn> {
        results.iter().map(|r| tally.record(*r)).collect()
    }

    #[test]
    fn liveness_passes_until_failures_in_a_row_reach_the_threshold() {
        let mut tally = Tally::new(ProbeKind::Liveness, timings(1, 3));
        assert!(tally.passing());
        let turns = record(&mut tally, &[false, false, true, false, false]);
        assert!(turns.iter().all(|t| *t == Turn::Steady), "{turns:?}");
        assert!(
            tally.passing(),
            "a success in between starts the count over"
        );
        assert_eq!(tally.record(false), Turn::Failed);
        assert!(!tally.passing());
        // The killed run's later failures count afresh.
        assert_eq!(
            record(&mut tally, &[false, false, false]),
            [Turn::Steady, Turn::Steady, Turn::Failed]
        );
    }

    #[test]
    fn readiness_starts_failing_and_turns_with_each_threshold() {
        let mut tally = Tally::new(ProbeKind::Readiness, timings(2, 2));
        assert!(!tally.passing());
        assert_eq!(
            record(&mut tally, &[false, false, true, true, true]),
            [
                Turn::Steady,
                Turn::Steady,
                Turn::Steady,
                Turn::Passed,
                Turn::Steady
            ]
        );
        assert!(tally.passing());
        assert_eq!(
            record(&mut tally, &[false, true, false, false, false]),
            [
                Turn::Steady,
                Turn::Steady,
                Turn::Steady,
                Turn::Failed,
                Turn::Steady
            ]
        );
        assert!(!tally.passing());
    }

    #[test]
    fn startup_passes_once_and_fails_at_its_threshold() {
        let mut started = Tally::new(ProbeKind::Startup, timings(1, 3));
        assert!(!started.passing());
        assert_eq!(
            record(&mut started, &[false, true]),
            [Turn::Steady, Turn::Passed]
        );
        let mut never = Tally::new(ProbeKind::Startup, timings(1, 2));
        assert_eq!(
            record(&mut never, &[false, false]),
            [Turn::Steady, Turn::Failed]
        );
    }

    #[test]
    fn timings_take_kubernetes_defaults() {
        let defaults = Timings::of(&Probe::default());
        assert_eq!(
            defaults,
            Timings {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
        let set = Timings::of(&Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(2),
            failure_threshold: Some(1),
            ..Probe::default()
        });
        assert_eq!(set.initial_delay, Duration::from_secs(5));
        assert_eq!(set.period, Duration::from_secs(2));
        assert_eq!(set.failure_threshold, 1);
    }

    fn web() -> Container {
        Container {
            name: "web".into(),
            ports: vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..ContainerPort::default()
            }],
            readiness_probe: Some(Probe {
                exec: Some(ExecAction {
                    command: vec!["true".into()],
                }),
                period_seconds: Some(1),
                ..Probe::default()
            }),
            ..Container::default()
        }
    }

    fn target(ip: Option<&str>, bindings: Vec<PortBindingStatus>) -> Target {
        Target {
            docker: Docker::connect_with_http(
                "http://127.0.0.1:9",
                1,
                bollard::API_DEFAULT_VERSION,
            )
            .expect("a client that is never called"),
            container: web(),
            container_id: "abc".into(),
            ip: ip.map(|ip| ip.parse().unwrap()),
            bindings,
            node: "192.0.2.7".parse().unwrap(),
        }
    }

    #[test]
    fn a_probe_reaches_the_run_by_address_else_by_its_published_port() {
        let http = IntOrString::String("http".into());
        assert_eq!(
            target(Some("172.18.0.3"), Vec::new()).endpoint(&http, None),
            Ok(("172.18.0.3".into(), 8080))
        );
        assert_eq!(
            target(Some("172.18.0.3"), Vec::new())
                .endpoint(&IntOrString::Int(81), Some("example.test")),
            Ok(("example.test".into(), 81))
        );
        let published = PortBindingStatus {
            container_port: 8080,
            protocol: Protocol::Tcp,
            host_ip: "0.0.0.0".into(),
            host_port: 49153,
        };
        assert_eq!(
            target(None, vec![published]).endpoint(&http, None),
            Ok(("192.0.2.7".into(), 49153))
        );
        let unpublished = target(None, Vec::new()).endpoint(&http, None).unwrap_err();
        assert!(
            unpublished.contains("does not publish port 8080"),
            "{unpublished}"
        );
        let unnamed = target(None, Vec::new())
            .endpoint(&IntOrString::String("admin".into()), None)
            .unwrap_err();
        assert_eq!(
            unnamed,
            "port \"admin\" is not the name of a port of container web"
        );
    }

    #[test]
    fn a_get_carries_kubelets_headers_unless_the_probe_replaces_them() {
        let action = HttpGetAction {
            http_headers: vec![
                HttpHeader {
                    name: "host".into(),
                    value: "app.example".into(),
                },
                HttpHeader {
                    name: "X-Probe".into(),
                    value: "1".into(),
                },
            ],
            ..HttpGetAction::default()
        };
        let request = http_request("/healthz", "10.0.0.5:8080", &action).unwrap();
        assert!(
            request.starts_with("GET /healthz HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("\r\nhost: app.example\r\n"), "{request}");
        assert!(!request.contains("10.0.0.5"), "{request}");
        assert!(request.contains("User-Agent: kube-probe/"), "{request}");
        assert!(request.contains("\r\nX-Probe: 1\r\n"), "{request}");
        assert!(request.ends_with("\r\n\r\n"), "{request}");
        let injected = HttpGetAction {
            http_headers: vec![HttpHeader {
                name: "X".into(),
                value: "1\r\nEvil: yes".into(),
            }],
            ..HttpGetAction::default()
        };
        assert!(http_request("/", "h:1", &injected).is_err());
    }

    #[test]
    fn a_status_line_gives_its_code() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"HTTP/1.0 500\r\n"), Some(500));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
    }

    #[tokio::test]
    async fn tcp_and_http_checks_answer_in_kubelets_words() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answers = ["HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 500 Oops\r\n\r\n"];
        let server = tokio::spawn(async move {
            for answer in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = vec![0_u8; 1024];
                let _ = socket.read(&mut request).await;
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
            // One more connection for the TCP check.
            let _ = listener.accept().await;
        });
        let at = target(Some("127.0.0.1"), Vec::new());
        let get = HttpGetAction {
            path: Some("healthz".into()),
            port: IntOrString::Int(i32::from(port)),
            ..HttpGetAction::default()
        };
        let second = Duration::from_secs(1);
        assert_eq!(http_get(&at, &get, second).await, Ok(()));
        assert_eq!(
            http_get(&at, &get, second).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
        let tcp_action = TcpSocketAction {
            port: IntOrString::Int(i32::from(port)),
            host: None,
        };
        assert_eq!(tcp(&at, &tcp_action, second).await, Ok(()));
        server.await.unwrap();
        // Nobody listens there any more.
        assert_eq!(
            tcp(&at, &tcp_action, second).await,
            Err(format!(
                "dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
        assert_eq!(
            http_get(&at, &get, second).await,
            Err(format!(
                "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }
}
