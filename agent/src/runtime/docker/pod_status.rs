//! What a pod worker knows of its containers, and the pod status it makes
//! of that: phase, conditions and container statuses, as Kubernetes'
//! kubelet words them. Also the restart back-off. Pure: no engine calls.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_api::objects::meta::ConditionStatus;
use berth_api::objects::pod::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition, PodPhase, PodStatus, PortBindingStatus,
};

/// One container of the pod as the worker tracks it, across its runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    /// Its name in the pod.
    pub name: String,
    /// The image as the spec names it.
    pub image: String,
    /// The image the engine resolved (`sha256:…`).
    pub image_id: String,
    /// The current run's container, if one was created.
    pub container_id: Option<String>,
    /// Restarts so far.
    pub restart_count: i32,
    /// What it does now.
    pub state: SlotState,
    /// How the run before ended.
    pub last_terminated: Option<ContainerStateTerminated>,
    /// Its address on the tenant network, while it runs.
    pub ip: Option<String>,
    /// Where its ports are published, while it runs.
    pub ports: Vec<PortBindingStatus>,
    /// Whether the current run passed its startup probe (true without one).
    pub startup_passed: bool,
    /// Whether the current run passes its readiness probe (true without
    /// one).
    pub readiness_passed: bool,
}

/// A container's state.
#[derive(Clone, Debug, PartialEq)]
pub enum SlotState {
    /// Not running, and it will be started (again).
    Waiting {
        /// One word (`ContainerCreating`, `CrashLoopBackOff`, …).
        reason: String,
        /// For humans.
        message: Option<String>,
    },
    /// Running since (RFC 3339).
    Running {
        /// RFC 3339.
        started_at: String,
    },
    /// Exited, and it will not be started again.
    Terminated(ContainerStateTerminated),
}

impl Slot {
    /// A container not created yet.
    pub fn new(name: &str, image: &str) -> Slot {
        Slot {
            name: name.to_owned(),
            image: image.to_owned(),
            image_id: String::new(),
            container_id: None,
            restart_count: 0,
            state: SlotState::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last_terminated: None,
            ip: None,
            ports: Vec::new(),
            startup_passed: true,
            readiness_passed: true,
        }
    }

    fn running(&self) -> bool {
        matches!(self.state, SlotState::Running { .. })
    }

    /// Running, and past its startup probe.
    fn started(&self) -> bool {
        self.running() && self.startup_passed
    }

    /// Started, and passing its readiness probe.
    fn ready(&self) -> bool {
        self.started() && self.readiness_passed
    }

    fn exited(&self) -> Option<i32> {
        match &self.state {
            SlotState::Terminated(t) => Some(t.exit_code),
            _ => None,
        }
    }

    fn status(&self) -> ContainerStatus {
        let state = match &self.state {
            SlotState::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..ContainerState::default()
            },
            SlotState::Running { started_at } => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started_at.clone()),
                }),
                ..ContainerState::default()
            },
            SlotState::Terminated(terminated) => ContainerState {
                terminated: Some(terminated.clone()),
                ..ContainerState::default()
            },
        };
        ContainerStatus {
            name: self.name.clone(),
            ready: self.ready(),
            restart_count: self.restart_count,
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            container_id: self
                .container_id
                .as_ref()
                .map(|id| format!("docker://{id}")),
            started: Some(self.started()),
            state: Some(state),
            last_state: self.last_terminated.as_ref().map(|t| ContainerState {
                terminated: Some(t.clone()),
                ..ContainerState::default()
            }),
            port_bindings: if self.running() {
                self.ports.clone()
            } else {
                Vec::new()
            },
        }
    }
}

/// The pod's conditions with the times they last changed, kept by the
/// worker so that an unchanged condition keeps its time.
#[derive(Clone, Debug, Default)]
pub struct Conditions(BTreeMap<&'static str, (ConditionStatus, String)>);

impl Conditions {
    fn set(&mut self, type_: &'static str, holds: bool, now: &str) -> PodCondition {
        let status = if holds {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        let entry = self
            .0
            .entry(type_)
            .or_insert_with(|| (status, now.to_owned()));
        if entry.0 != status {
            *entry = (status, now.to_owned());
        }
        PodCondition {
            type_: type_.to_owned(),
            status,
            last_transition_time: Some(entry.1.clone()),
            ..PodCondition::default()
        }
    }
}

/// Everything the status is made of.
pub struct PodView<'a> {
    /// Init containers, in order.
    pub inits: &'a [Slot],
    /// The other containers.
    pub mains: &'a [Slot],
    /// The node's address.
    pub host_ip: &'a str,
    /// When the agent took the pod (RFC 3339).
    pub start_time: &'a str,
    /// Now (RFC 3339), for conditions that change.
    pub now: &'a str,
}

/// The pod status of `view`; `conditions` keeps transition times.
pub fn pod_status(view: &PodView<'_>, conditions: &mut Conditions) -> PodStatus {
    let initialized = view.inits.iter().all(|s| s.exited() == Some(0));
    let init_failed = view
        .inits
        .iter()
        .any(|s| s.exited().is_some_and(|c| c != 0));
    let ready = initialized && !view.mains.is_empty() && view.mains.iter().all(Slot::ready);
    let all_exited = view.mains.iter().all(|s| s.exited().is_some());
    let phase = if init_failed {
        PodPhase::Failed
    } else if !initialized {
        PodPhase::Pending
    } else if !view.mains.is_empty() && all_exited {
        if view.mains.iter().all(|s| s.exited() == Some(0)) {
            PodPhase::Succeeded
        } else {
            PodPhase::Failed
        }
    } else if view
        .mains
        .iter()
        .any(|s| s.running() || s.restart_count > 0 || s.last_terminated.is_some())
    {
        PodPhase::Running
    } else {
        PodPhase::Pending
    };
    let pod_ip = view
        .mains
        .iter()
        .chain(view.inits)
        .find_map(|s| s.ip.clone().filter(|_| s.running()));
    PodStatus {
        phase: Some(phase),
        conditions: vec![
            conditions.set("PodScheduled", true, view.now),
            conditions.set("Initialized", initialized, view.now),
            not_ready(
                conditions.set("ContainersReady", ready, view.now),
                view.mains,
            ),
            not_ready(conditions.set("Ready", ready, view.now), view.mains),
        ],
        host_ip: Some(view.host_ip.to_owned()),
        pod_ip,
        start_time: Some(view.start_time.to_owned()),
        container_statuses: view.mains.iter().map(Slot::status).collect(),
        init_container_statuses: view.inits.iter().map(Slot::status).collect(),
        ..PodStatus::default()
    }
}

/// A readiness condition that does not hold names, as kubelet does, the
/// containers that are not ready.
fn not_ready(condition: PodCondition, mains: &[Slot]) -> PodCondition {
    if condition.status == ConditionStatus::True {
        return condition;
    }
    let unready: Vec<&str> = mains
        .iter()
        .filter(|s| !s.ready())
        .map(|s| s.name.as_str())
        .collect();
    if unready.is_empty() {
        return condition;
    }
    PodCondition {
        reason: Some("ContainersNotReady".into()),
        message: Some(format!(
            "containers with unready status: [{}]",
            unready.join(" ")
        )),
        ..condition
    }
}

/// Kubernetes' restart back-off: `initial`, doubling up to `max`; a run
/// of ten minutes or more starts it over.
#[derive(Clone, Debug, PartialEq)]
pub struct RestartBackoff {
    initial: Duration,
    max: Duration,
    last: Option<Duration>,
}

/// A run this long resets the back-off.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

impl RestartBackoff {
    /// A fresh back-off.
    pub fn new(initial: Duration, max: Duration) -> RestartBackoff {
        RestartBackoff {
            initial,
            max,
            last: None,
        }
    }

    /// The wait before the next start, after a run that lasted `ran_for`.
    pub fn after_run(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= BACKOFF_RESET_AFTER {
            self.last = None;
        }
        self.next_delay()
    }

    /// The wait before the next try, after a failure that was not a run
    /// (an image pull).
    pub fn next_delay(&mut self) -> Duration {
        let delay = match self.last {
            None => self.initial,
            Some(last) => (last * 2).min(self.max),
        };
        self.last = Some(delay);
        delay
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(name: &str) -> Slot {
        Slot {
            state: SlotState::Running {
                started_at: "t0".into(),
            },
            ip: Some("172.20.0.2".into()),
            ..Slot::new(name, "img")
        }
    }

    fn exited(name: &str, code: i32) -> Slot {
        Slot {
            state: SlotState::Terminated(ContainerStateTerminated {
                exit_code: code,
                ..ContainerStateTerminated::default()
            }),
            ..Slot::new(name, "img")
        }
    }

    fn status(inits: &[Slot], mains: &[Slot], conditions: &mut Conditions) -> PodStatus {
        let view = PodView {
            inits,
            mains,
            host_ip: "127.0.0.1",
            start_time: "t0",
            now: "t1",
        };
        pod_status(&view, conditions)
    }

    fn condition(status: &PodStatus, type_: &str) -> ConditionStatus {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap()
            .status
    }

    #[test]
    fn a_pod_is_pending_then_running_and_ready_then_done() {
        let mut conditions = Conditions::default();
        let creating = status(&[], &[Slot::new("web", "img")], &mut conditions);
        assert_eq!(creating.phase, Some(PodPhase::Pending));
        assert_eq!(condition(&creating, "Ready"), ConditionStatus::False);
        let up = status(&[exited("init", 0)], &[running("web")], &mut conditions);
        assert_eq!(up.phase, Some(PodPhase::Running));
        assert_eq!(condition(&up, "Initialized"), ConditionStatus::True);
        assert_eq!(condition(&up, "Ready"), ConditionStatus::True);
        assert_eq!(up.pod_ip.as_deref(), Some("172.20.0.2"));
        assert_eq!(up.container_statuses[0].container_id, None);
        let done = status(&[], &[exited("web", 0)], &mut conditions);
        assert_eq!(done.phase, Some(PodPhase::Succeeded));
        let failed = status(&[], &[exited("web", 0), exited("b", 2)], &mut conditions);
        assert_eq!(failed.phase, Some(PodPhase::Failed));
    }

    #[test]
    fn a_crash_looping_container_keeps_the_pod_running_but_not_ready() {
        let looping = Slot {
            restart_count: 1,
            state: SlotState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: None,
            },
            ..Slot::new("web", "img")
        };
        let status = status(&[], &[looping], &mut Conditions::default());
        assert_eq!(status.phase, Some(PodPhase::Running));
        assert_eq!(
            condition(&status, "ContainersReady"),
            ConditionStatus::False
        );
    }

    #[test]
    fn a_running_container_is_started_and_ready_only_when_its_probes_pass() {
        let mut conditions = Conditions::default();
        let starting = Slot {
            startup_passed: false,
            readiness_passed: false,
            ..running("web")
        };
        let pod = status(&[], std::slice::from_ref(&starting), &mut conditions);
        assert_eq!(pod.container_statuses[0].started, Some(false));
        assert!(!pod.container_statuses[0].ready);
        assert_eq!(condition(&pod, "ContainersReady"), ConditionStatus::False);
        assert_eq!(pod.phase, Some(PodPhase::Running));
        let started = Slot {
            startup_passed: true,
            ..starting
        };
        let pod = status(&[], std::slice::from_ref(&started), &mut conditions);
        assert_eq!(pod.container_statuses[0].started, Some(true));
        assert_eq!(condition(&pod, "Ready"), ConditionStatus::False);
        let ready_condition = pod.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            ready_condition.reason.as_deref(),
            Some("ContainersNotReady")
        );
        assert_eq!(
            ready_condition.message.as_deref(),
            Some("containers with unready status: [web]")
        );
        let ready = Slot {
            readiness_passed: true,
            ..started
        };
        let pod = status(&[], &[ready], &mut conditions);
        assert!(pod.container_statuses[0].ready);
        assert_eq!(condition(&pod, "Ready"), ConditionStatus::True);
    }

    #[test]
    fn a_failed_init_container_holds_the_others_and_fails_the_pod() {
        let status = status(
            &[exited("init", 1)],
            &[Slot::new("web", "img")],
            &mut Conditions::default(),
        );
        assert_eq!(status.phase, Some(PodPhase::Failed));
        assert_eq!(condition(&status, "Initialized"), ConditionStatus::False);
    }

    #[test]
    fn a_condition_keeps_its_time_until_it_changes() {
        let mut conditions = Conditions::default();
        let first = conditions.set("Ready", false, "t1");
        let same = conditions.set("Ready", false, "t2");
        let changed = conditions.set("Ready", true, "t3");
        assert_eq!(first.last_transition_time, same.last_transition_time);
        assert_eq!(changed.last_transition_time.as_deref(), Some("t3"));
    }

    #[test]
    fn back_off_doubles_to_its_ceiling_and_resets_after_a_long_run() {
        let mut backoff = RestartBackoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let short = Duration::from_secs(1);
        let delays: Vec<u64> = (0..7).map(|_| backoff.after_run(short).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff.after_run(Duration::from_secs(600)).as_secs(), 10);
    }
}
