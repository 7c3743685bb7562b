//! The `sim` runtime: pods that only pretend to run, so that one process
//! can stand in for a thousand nodes, as KWOK does for Kubernetes.
//!
//! A pod handed to a simulated node "starts" after the configured delay:
//! its status turns Running and Ready (or, at the failure rate, failing).
//! A pod this node already reported (an agent restart finds it Running
//! with this node's address) is adopted as it is. Each container port is
//! "published" on the node's address, at its `hostPort` or at a port the
//! node picks from Docker's ephemeral range, and reported in the
//! containers' `portBindings` as the Docker runtime reports them, so that
//! Services have endpoints to list. The state of a node is
//! its pods' keys, uids and container names, and one timer heap.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_api::node::v1 as pb;
use berth_api::objects::meta::ConditionStatus;
use berth_api::objects::pod::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition, PodPhase, PodStatus, PortBindingStatus, RestartPolicy,
};
use tokio::time::Instant;

use super::{
    AssignedPod, Change, ContainerStats, ExecOutput, LogRequest, LogStream, NodeFacts, OwnedPod,
    PodKey, PodUsage, Runtime, RuntimeError, StatusReport, UsageFuture,
};
use crate::exec::{AttachRequest, ExecSession};
use crate::session::sleep_until;
use crate::settings::AgentSettings;

/// What every simulated node of a process shares.
#[derive(Debug)]
pub struct SimSettings {
    capacity: pb::Capacity,
    start_delay: Duration,
    failure_rate: f64,
    address: Option<IpAddr>,
    log_interval: Option<Duration>,
}

impl SimSettings {
    /// The sim settings of `settings`.
    pub fn from(settings: &AgentSettings) -> Arc<SimSettings> {
        Arc::new(SimSettings {
            capacity: pb::Capacity {
                cpu: settings.sim_cpu.clone(),
                memory: settings.sim_memory.clone(),
                pods: settings.sim_pods.to_string(),
                ephemeral_storage: String::new(),
            },
            start_delay: settings.sim_start_delay,
            failure_rate: settings.sim_failure_rate,
            address: settings.address,
            log_interval: settings.sim_log_interval,
        })
    }
}

/// One simulated node's runtime.
pub struct SimRuntime {
    settings: Arc<SimSettings>,
    name: String,
    host_ip: String,
    /// Which node of the fleet (from 1), for made-up addresses.
    number: u32,
    boot_id: String,
    pods: HashMap<PodKey, SimPod>,
    /// Pods waiting to "start", soonest first.
    starting: BinaryHeap<Reverse<(Instant, PodKey, String)>>,
    /// Pods stopped, not yet told to the session.
    stopped: VecDeque<OwnedPod>,
    next_pod_ip: u32,
    /// The last host port picked for a container port without one.
    next_host_port: u16,
}

/// The ports Docker picks published ports from (its ephemeral range).
const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 32768..=60999;

/// A simulated container.
struct SimContainer {
    name: String,
    image: String,
    /// Its ports as published on the node.
    ports: Vec<PortBindingStatus>,
}

/// A pod as a simulated node remembers it.
struct SimPod {
    uid: String,
    containers: Vec<SimContainer>,
    restart_always: bool,
    /// Its status has been produced (or was there when the node adopted it).
    reported: bool,
    /// How it "started" (address, failed or not, when), from which
    /// `inspect` remakes its status; kept small rather than the whole
    /// status, for a thousand nodes' pods in one process.
    started: Option<SimStart>,
}

/// How many lines a simulated container has written.
const SIM_LOG_LINES: u64 = 3;

/// A simulated container's output: a few numbered lines, the last
/// `tail_lines` of them, each with the time now when asked for.
fn synthetic_log(pod: &PodKey, request: &LogRequest) -> Vec<Vec<u8>> {
    let first = request
        .tail_lines
        .map_or(1, |tail| SIM_LOG_LINES.saturating_sub(tail) + 1);
    (first..=SIM_LOG_LINES)
        .map(|n| synthetic_line(pod, request, n))
        .collect()
}

/// Line `n` of a simulated container's output.
fn synthetic_line(pod: &PodKey, request: &LogRequest, n: u64) -> Vec<u8> {
    let line = format!("sim {pod} {}: line {n}\n", request.container);
    if request.timestamps {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        format!("{now} {line}").into_bytes()
    } else {
        line.into_bytes()
    }
}

/// How a simulated pod started.
struct SimStart {
    pod_ip: String,
    fails: bool,
    at: String,
}

impl SimRuntime {
    /// Simulated node `number` (from 1) of the fleet, named `name`.
    pub fn new(settings: Arc<SimSettings>, name: String, number: u32) -> SimRuntime {
        let host_ip = match settings.address {
            Some(ip) => ip.to_string(),
            None => format!(
                "172.{}.{}.{}",
                16 + ((number >> 16) & 0x0f),
                (number >> 8) & 0xff,
                number & 0xff
            ),
        };
        SimRuntime {
            settings,
            name,
            host_ip,
            number,
            boot_id: format!("{:032x}", rand::random::<u128>()),
            pods: HashMap::new(),
            starting: BinaryHeap::new(),
            stopped: VecDeque::new(),
            next_pod_ip: 0,
            next_host_port: *EPHEMERAL_PORTS.end(),
        }
    }

    /// The next made-up published port, round the ephemeral range.
    fn next_host_port(&mut self) -> i32 {
        self.next_host_port = if self.next_host_port >= *EPHEMERAL_PORTS.end() {
            *EPHEMERAL_PORTS.start()
        } else {
            self.next_host_port + 1
        };
        i32::from(self.next_host_port)
    }

    /// Whether `pod` already carries a status this node reported (an agent
    /// restart finds its pods running).
    fn reported_by_this_node(&self, pod: &AssignedPod) -> bool {
        pod.pod.status.as_ref().is_some_and(|status| {
            status.host_ip.as_deref() == Some(self.host_ip.as_str())
                && matches!(
                    status.phase,
                    Some(PodPhase::Running | PodPhase::Failed | PodPhase::Succeeded)
                )
        })
    }

    /// A made-up pod address in this node's /24-ish range.
    fn next_pod_ip(&mut self) -> String {
        self.next_pod_ip = self.next_pod_ip % 252 + 1;
        format!(
            "10.{}.{}.{}",
            (self.number >> 8) & 0xff,
            self.number & 0xff,
            self.next_pod_ip + 1
        )
    }

    /// The status of the first pod whose delay is over, if any is due.
    fn start_due_pod(&mut self) -> Option<StatusReport> {
        let now = Instant::now();
        while let Some(Reverse((at, _, _))) = self.starting.peek() {
            if *at > now {
                return None;
            }
            let Reverse((_, key, uid)) = self.starting.pop()?;
            if !self
                .pods
                .get(&key)
                .is_some_and(|p| p.uid == uid && !p.reported)
            {
                continue;
            }
            let start = SimStart {
                pod_ip: self.next_pod_ip(),
                fails: rand::random::<f64>() < self.settings.failure_rate,
                at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            };
            let pod = self.pods.get_mut(&key)?;
            let status = simulated_status(pod, &self.host_ip, &start);
            pod.reported = true;
            pod.started = Some(start);
            return Some(StatusReport { key, uid, status });
        }
        None
    }
}

impl Runtime for SimRuntime {
    fn facts(&self) -> NodeFacts {
        NodeFacts {
            capacity: self.settings.capacity.clone(),
            allocatable: None,
            addresses: vec![pb::NodeAddress {
                r#type: "InternalIP".into(),
                address: self.host_ip.clone(),
            }],
            node_info: pb::NodeInfo {
                machine_id: self.name.clone(),
                system_uuid: format!("sim-{}", self.number),
                boot_id: self.boot_id.clone(),
                kernel_version: "sim".into(),
                os_image: "berth sim".into(),
                container_runtime_version: "sim://1".into(),
                agent_version: env!("CARGO_PKG_VERSION").into(),
                operating_system: "linux".into(),
                architecture: std::env::consts::ARCH.into(),
            },
            labels: [("berth.dev/runtime".to_owned(), "sim".to_owned())].into(),
        }
    }

    async fn start(&mut self, pod: Arc<AssignedPod>) {
        let key = pod.key();
        let uid = pod.uid().to_owned();
        if self.pods.get(&key).is_some_and(|known| known.uid == uid) {
            return;
        }
        let adopted = self.reported_by_this_node(&pod);
        let spec = &pod.pod.spec;
        let sim_pod = SimPod {
            uid: uid.clone(),
            containers: spec
                .containers
                .iter()
                .map(|c| SimContainer {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    ports: c
                        .ports
                        .iter()
                        .map(|port| PortBindingStatus {
                            container_port: port.container_port,
                            protocol: port.protocol.unwrap_or_default(),
                            host_ip: self.host_ip.clone(),
                            host_port: match port.host_port {
                                Some(fixed) => fixed,
                                None => self.next_host_port(),
                            },
                        })
                        .collect(),
                })
                .collect(),
            restart_always: !matches!(
                spec.restart_policy,
                Some(RestartPolicy::Never | RestartPolicy::OnFailure)
            ),
            reported: adopted,
            started: None,
        };
        if !adopted {
            let due = Instant::now() + self.settings.start_delay;
            self.starting.push(Reverse((due, key.clone(), uid)));
        }
        self.pods.insert(key, sim_pod);
    }

    async fn stop(&mut self, pod: OwnedPod, _grace: Option<Duration>) {
        if self
            .pods
            .get(&pod.key)
            .is_some_and(|known| known.uid == pod.uid)
        {
            self.pods.remove(&pod.key);
        }
        self.stopped.push_back(pod);
    }

    async fn next_change(&mut self) -> Change {
        if let Some(pod) = self.stopped.pop_front() {
            return Change::Stopped(pod);
        }
        loop {
            let next = self.starting.peek().map(|Reverse((at, _, _))| *at);
            // Cancel-safe: nothing is taken off the heap before the sleep
            // is over, and what follows it does not wait.
            sleep_until(next).await;
            if let Some(report) = self.start_due_pod() {
                return Change::Status(report);
            }
        }
    }

    async fn inspect(&self, pod: &PodKey) -> Result<Option<PodStatus>, RuntimeError> {
        // An adopted pod has no simulated start here: its status is the
        // one the server holds.
        Ok(self.pods.get(pod).and_then(|p| {
            let start = p.started.as_ref()?;
            Some(simulated_status(p, &self.host_ip, start))
        }))
    }

    async fn list(&self) -> Result<Vec<OwnedPod>, RuntimeError> {
        Ok(self
            .pods
            .iter()
            .map(|(key, pod)| OwnedPod {
                key: key.clone(),
                uid: pod.uid.clone(),
            })
            .collect())
    }

    async fn logs(&self, pod: &PodKey, request: LogRequest) -> Result<LogStream, RuntimeError> {
        use futures::StreamExt;
        let missing =
            || RuntimeError::NotFound(format!("container {} of pod {pod}", request.container));
        let sim_pod = self.pods.get(pod).ok_or_else(missing)?;
        if request.previous
            || !sim_pod
                .containers
                .iter()
                .any(|container| container.name == request.container)
        {
            return Err(missing());
        }
        let lines = synthetic_log(pod, &request);
        let written = futures::stream::iter(lines.into_iter().map(Ok));
        Ok(if request.follow {
            match self.settings.log_interval {
                // A chatty container: another line every interval.
                Some(interval) => {
                    let pod = pod.clone();
                    let ticks = futures::stream::unfold(SIM_LOG_LINES, move |n| {
                        let line = synthetic_line(&pod, &request, n + 1);
                        async move {
                            tokio::time::sleep(interval).await;
                            Some((Ok(line), n + 1))
                        }
                    });
                    written.chain(ticks).boxed()
                }
                // A quiet container: nothing more until the reader goes.
                None => written.chain(futures::stream::pending()).boxed(),
            }
        } else {
            written.boxed()
        })
    }

    async fn exec(
        &self,
        _pod: &PodKey,
        _container: &str,
        _command: Vec<String>,
    ) -> Result<ExecOutput, RuntimeError> {
        Err(RuntimeError::Unsupported {
            runtime: "sim",
            operation: "exec",
        })
    }

    async fn stats(&self, pod: &PodKey) -> Result<Vec<ContainerStats>, RuntimeError> {
        let sim_pod = self
            .pods
            .get(pod)
            .ok_or_else(|| RuntimeError::NotFound(pod.to_string()))?;
        Ok(synthetic_stats(sim_pod))
    }

    async fn attach_exec(
        &self,
        _pod: &PodKey,
        _request: AttachRequest,
    ) -> Result<ExecSession, RuntimeError> {
        Err(RuntimeError::Unsupported {
            runtime: "sim",
            operation: "exec",
        })
    }

    fn usage(&self, pods: Vec<PodKey>) -> UsageFuture {
        let figures = pods
            .into_iter()
            .filter_map(|key| {
                let sim_pod = self.pods.get(&key)?;
                // Only pods that "run": started, and not failed.
                sim_pod.started.as_ref().filter(|start| !start.fails)?;
                Some(PodUsage {
                    containers: synthetic_stats(sim_pod),
                    key,
                    window_seconds: SIM_USAGE_WINDOW_SECONDS,
                })
            })
            .collect();
        Box::pin(std::future::ready(figures))
    }
}

/// The window the sim's steady figures claim.
const SIM_USAGE_WINDOW_SECONDS: f64 = 10.0;

/// Synthetic figures, steady per container, so the same path the Docker
/// runtime fills has something to carry.
fn synthetic_stats(sim_pod: &SimPod) -> Vec<ContainerStats> {
    sim_pod
        .containers
        .iter()
        .map(|container| ContainerStats {
            container: container.name.clone(),
            cpu_cores: 0.01,
            memory_bytes: 16 * 1024 * 1024,
        })
        .collect()
}

/// The status a simulated pod reports: Running and Ready, or, when it
/// fails, Failed (restartPolicy Never/OnFailure) or crash-looping.
fn simulated_status(pod: &SimPod, host_ip: &str, start: &SimStart) -> PodStatus {
    let (now, fails) = (&start.at, start.fails);
    let condition = |type_: &str, ok: bool| PodCondition {
        type_: type_.to_owned(),
        status: if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        last_transition_time: Some(now.clone()),
        ..PodCondition::default()
    };
    let container_statuses = pod
        .containers
        .iter()
        .map(|container| {
            let (name, image) = (&container.name, &container.image);
            let state = if !fails {
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(now.clone()),
                    }),
                    ..ContainerState::default()
                }
            } else if pod.restart_always {
                ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("CrashLoopBackOff".into()),
                        message: Some("simulated failure".into()),
                    }),
                    ..ContainerState::default()
                }
            } else {
                ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 1,
                        reason: Some("Error".into()),
                        message: Some("simulated failure".into()),
                        started_at: Some(now.clone()),
                        finished_at: Some(now.clone()),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }
            };
            ContainerStatus {
                name: name.clone(),
                image: image.clone(),
                image_id: format!("sim://{image}"),
                container_id: Some(format!("sim://{}/{name}", pod.uid)),
                ready: !fails,
                started: Some(!fails),
                restart_count: if fails && pod.restart_always { 1 } else { 0 },
                state: Some(state),
                port_bindings: if fails {
                    Vec::new()
                } else {
                    container.ports.clone()
                },
                ..ContainerStatus::default()
            }
        })
        .collect();
    let phase = if fails && !pod.restart_always {
        PodPhase::Failed
    } else {
        PodPhase::Running
    };
    PodStatus {
        phase: Some(phase),
        conditions: vec![
            condition("PodScheduled", true),
            condition("Initialized", true),
            condition("ContainersReady", !fails),
            condition("Ready", !fails),
        ],
        host_ip: Some(host_ip.to_owned()),
        pod_ip: Some(start.pod_ip.clone()),
        start_time: Some(now.clone()),
        container_statuses,
        ..PodStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim_pod(restart_always: bool) -> SimPod {
        SimPod {
            uid: "u1".into(),
            containers: vec![SimContainer {
                name: "web".into(),
                image: "busybox".into(),
                ports: vec![PortBindingStatus {
                    container_port: 80,
                    protocol: berth_api::objects::pod::Protocol::Tcp,
                    host_ip: "172.16.0.1".into(),
                    host_port: 32768,
                }],
            }],
            restart_always,
            reported: false,
            started: None,
        }
    }

    fn start(pod_ip: &str, fails: bool) -> SimStart {
        SimStart {
            pod_ip: pod_ip.into(),
            fails,
            at: "2025-01-01T00:00:00Z".into(),
        }
    }

    fn json(status: &PodStatus) -> serde_json::Value {
        serde_json::to_value(status).unwrap()
    }

    fn runtime(delay_ms: u64) -> SimRuntime {
        let settings = Arc::new(SimSettings {
            capacity: pb::Capacity::default(),
            start_delay: Duration::from_millis(delay_ms),
            failure_rate: 0.0,
            address: None,
            log_interval: None,
        });
        SimRuntime::new(settings, "sim-0".into(), 1)
    }

    fn assigned(name: &str, status: Option<PodStatus>) -> Arc<AssignedPod> {
        let mut pod = berth_api::objects::pod::Pod::default();
        pod.metadata.name = name.into();
        pod.metadata.tenant = Some("acme".into());
        pod.metadata.uid = Some(format!("uid-{name}"));
        pod.spec.containers = vec![berth_api::objects::pod::Container {
            name: "main".into(),
            image: "busybox:1".into(),
            ..Default::default()
        }];
        pod.status = status;
        Arc::new(AssignedPod {
            pod,
            ..AssignedPod::default()
        })
    }

    /// The next change within `within`, if one comes.
    async fn change_within(runtime: &mut SimRuntime, within: Duration) -> Option<StatusReport> {
        match tokio::time::timeout(within, runtime.next_change()).await {
            Ok(Change::Status(report)) => Some(report),
            Ok(Change::Note(note)) => panic!("the sim runtime took no notes, yet: {note:?}"),
            Ok(Change::Stopped(pod)) => panic!("{} was stopped, unasked", pod.key),
            Err(_) => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_running_pod_reports_its_ports_published_on_the_node() {
        let mut sim = runtime(0);
        let mut pod = assigned("web", None).as_ref().clone();
        pod.pod.spec.containers[0].ports = vec![
            berth_api::objects::pod::ContainerPort {
                container_port: 8080,
                ..Default::default()
            },
            berth_api::objects::pod::ContainerPort {
                container_port: 9090,
                host_port: Some(9999),
                ..Default::default()
            },
        ];
        sim.start(Arc::new(pod)).await;
        let report = change_within(&mut sim, Duration::from_millis(100))
            .await
            .expect("a report");
        let bindings = &report.status.container_statuses[0].port_bindings;
        let host_ip = report.status.host_ip.clone().unwrap();
        assert_eq!(bindings.len(), 2);
        assert_eq!(bindings[0].container_port, 8080);
        assert!(EPHEMERAL_PORTS.contains(&(bindings[0].host_port as u16)));
        assert_eq!(
            (bindings[1].container_port, bindings[1].host_port),
            (9090, 9999),
            "a hostPort is published as given"
        );
        assert!(bindings.iter().all(|b| b.host_ip == host_ip));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_reports_running_once_its_start_delay_is_over() {
        let mut sim = runtime(500);
        sim.start(assigned("web", None)).await;
        assert!(
            change_within(&mut sim, Duration::from_millis(400))
                .await
                .is_none()
        );
        let report = change_within(&mut sim, Duration::from_millis(200))
            .await
            .expect("a report after the delay");
        assert_eq!(report.key.name, "web");
        assert_eq!(report.uid, "uid-web");
        assert_eq!(report.status.phase, Some(PodPhase::Running));
        assert_eq!(sim.inspect(&report.key).await.unwrap(), Some(report.status));
        assert!(
            change_within(&mut sim, Duration::from_secs(5))
                .await
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_pod_reports_nothing_and_an_adopted_one_is_not_started_again() {
        let mut sim = runtime(100);
        let stopped = assigned("gone", None);
        sim.start(stopped.clone()).await;
        let owned = OwnedPod {
            key: stopped.key(),
            uid: stopped.uid().to_owned(),
        };
        sim.stop(owned.clone(), None).await;
        assert_eq!(sim.next_change().await, Change::Stopped(owned));
        let reported_here = PodStatus {
            phase: Some(PodPhase::Running),
            host_ip: Some(sim.host_ip.clone()),
            ..PodStatus::default()
        };
        sim.start(assigned("kept", Some(reported_here))).await;
        assert!(
            change_within(&mut sim, Duration::from_secs(5))
                .await
                .is_none()
        );
        let owned = sim.list().await.unwrap();
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0].key.name, "kept");
    }

    #[test]
    fn a_started_pod_is_running_and_ready_with_addresses() {
        let status = json(&simulated_status(
            &sim_pod(true),
            "172.16.0.1",
            &start("10.0.1.2", false),
        ));
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["hostIP"], "172.16.0.1");
        assert_eq!(status["podIP"], "10.0.1.2");
        let ready = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(status["containerStatuses"][0]["ready"], true);
        assert!(status["containerStatuses"][0]["state"]["running"].is_object());
    }

    #[test]
    fn a_failing_pod_crash_loops_or_fails_by_its_restart_policy() {
        let looping = json(&simulated_status(&sim_pod(true), "h", &start("p", true)));
        assert_eq!(looping["phase"], "Running");
        assert_eq!(
            looping["containerStatuses"][0]["state"]["waiting"]["reason"],
            "CrashLoopBackOff"
        );
        let failed = json(&simulated_status(&sim_pod(false), "h", &start("p", true)));
        assert_eq!(failed["phase"], "Failed");
        assert_eq!(
            failed["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            1
        );
    }
}
