//! The `sim` runtime: nodes that pretend to run pods, so that one process
//! can stand in for a thousand nodes, as KWOK does for Kubernetes.
//!
//! Each simulated node registers on its own, holds its own credential,
//! heartbeats and watches its pods. A pod bound to it "starts" after the
//! configured delay: the node reports it Running and Ready (or, at the
//! failure rate, failing). Pods it no longer owns after a reconnect are
//! forgotten. One task per node; a node's state is its pods' keys, uids and
//! container names.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_api::node::v1 as pb;
use berth_api::node::v1::pod_event::Type;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use crate::connection::{self, Backoff, NodeClient};
use crate::metrics::AgentMetrics;
use crate::settings::AgentSettings;

/// What every simulated node of a process shares.
struct Fleet {
    channel: Channel,
    metrics: AgentMetrics,
    join_token: String,
    labels: BTreeMap<String, String>,
    capacity: pb::Capacity,
    start_delay: Duration,
    failure_rate: f64,
    heartbeat: Duration,
}

/// One simulated node.
pub struct SimNode {
    fleet: Arc<Fleet>,
    name: String,
    host_ip: String,
    /// Which node of the fleet (from 1), for made-up addresses.
    number: u32,
    pods: HashMap<String, SimPod>,
    /// Pods waiting to "start", soonest first.
    starting: BinaryHeap<Reverse<(Instant, String, String)>>,
    resource_version: i64,
    next_pod_ip: u32,
}

/// A pod as a simulated node remembers it.
struct SimPod {
    uid: String,
    tenant: String,
    name: String,
    containers: Vec<(String, String)>,
    restart_always: bool,
    /// Its status has been reported (or was there when the node adopted it).
    reported: bool,
    /// Counted in `pods_running`.
    running: bool,
}

/// Why a node's session ended.
enum SessionEnd {
    /// The agent is shutting down.
    Shutdown,
    /// The server no longer knows the credential or the Node: register
    /// again.
    Reregister(String),
}

impl SimNode {
    /// The nodes `settings` asks for, sharing `channel`: one named `NAME`,
    /// or `NAME-0` … `NAME-(N-1)`.
    pub fn fleet(
        settings: &AgentSettings,
        channel: Channel,
        metrics: AgentMetrics,
    ) -> Vec<SimNode> {
        let mut labels = settings.labels.clone();
        labels.insert("berth.dev/runtime".into(), "sim".into());
        let fleet = Arc::new(Fleet {
            channel,
            metrics,
            join_token: settings.join_token.0.clone(),
            labels,
            capacity: pb::Capacity {
                cpu: settings.sim_cpu.clone(),
                memory: settings.sim_memory.clone(),
                pods: settings.sim_pods.to_string(),
            },
            start_delay: settings.sim_start_delay,
            failure_rate: settings.sim_failure_rate,
            heartbeat: settings.heartbeat,
        });
        (0..settings.sim_nodes)
            .map(|i| {
                let number = i + 1;
                let name = if settings.sim_nodes == 1 {
                    settings.name.clone()
                } else {
                    format!("{}-{i}", settings.name)
                };
                let host_ip = match settings.address {
                    Some(IpAddr::V4(ip)) => ip.to_string(),
                    Some(IpAddr::V6(ip)) => ip.to_string(),
                    None => format!(
                        "172.{}.{}.{}",
                        16 + ((number >> 16) & 0x0f),
                        (number >> 8) & 0xff,
                        number & 0xff
                    ),
                };
                SimNode {
                    fleet: fleet.clone(),
                    name,
                    host_ip,
                    number,
                    pods: HashMap::new(),
                    starting: BinaryHeap::new(),
                    resource_version: 0,
                    next_pod_ip: 0,
                }
            })
            .collect()
    }

    /// Registers, then serves the node until `shutdown`; registers again
    /// whenever the server forgets it, and waits with back-off while the
    /// server is away.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new();
        loop {
            let registered = tokio::select! {
                () = shutdown.cancelled() => return,
                registered = self.register() => registered,
            };
            let client = match registered.and_then(|credential| {
                connection::authenticated(self.fleet.channel.clone(), &credential)
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
            self.fleet.metrics.nodes_registered.inc();
            let end = self.serve(client, &shutdown).await;
            self.fleet.metrics.nodes_registered.dec();
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

    async fn register(&self) -> Result<String, Status> {
        let request = pb::RegisterRequest {
            join_token: self.fleet.join_token.clone(),
            node_name: self.name.clone(),
            capacity: Some(self.fleet.capacity.clone()),
            labels: self
                .fleet
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            addresses: vec![
                pb::NodeAddress {
                    r#type: "InternalIP".into(),
                    address: self.host_ip.clone(),
                },
                pb::NodeAddress {
                    r#type: "Hostname".into(),
                    address: self.name.clone(),
                },
            ],
            taints: Vec::new(),
            node_info: Some(pb::NodeInfo {
                machine_id: self.name.clone(),
                system_uuid: format!("sim-{}", self.number),
                boot_id: format!("{:032x}", rand::random::<u128>()),
                kernel_version: "sim".into(),
                os_image: "berth sim".into(),
                container_runtime_version: "sim://1".into(),
                agent_version: env!("CARGO_PKG_VERSION").into(),
                operating_system: "linux".into(),
                architecture: std::env::consts::ARCH.into(),
            }),
        };
        let response = connection::anonymous(self.fleet.channel.clone())
            .register(request)
            .await?;
        Ok(response.into_inner().node_credential)
    }

    /// Heartbeats, follows the pod watch (reopening it with back-off) and
    /// starts pods as they come due, until shutdown or until the server
    /// forgets this node.
    async fn serve(&mut self, mut client: NodeClient, shutdown: &CancellationToken) -> SessionEnd {
        let period = self.fleet.heartbeat;
        // Spread a fleet's heartbeats over the period.
        let first = Instant::now() + period.mul_f64(rand::random::<f64>().min(0.999));
        let mut heartbeat = tokio::time::interval_at(first, period);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch: Option<Streaming<pb::PodEvent>> = None;
        let mut reopen_at = Instant::now();
        let mut backoff = Backoff::new();
        // Pods seen since the watch (re)opened, until its snapshot ends.
        let mut seen: Option<HashSet<String>> = None;
        let mut opened_once = false;
        loop {
            if watch.is_none() && Instant::now() >= reopen_at {
                if opened_once {
                    self.fleet.metrics.watch_reconnects.inc();
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
            let next_start = self.starting.peek().map(|Reverse((at, _, _))| *at);
            tokio::select! {
                () = shutdown.cancelled() => return SessionEnd::Shutdown,
                _ = heartbeat.tick() => {
                    match client.heartbeat(pb::HeartbeatRequest::default()).await {
                        Ok(_) => self.fleet.metrics.heartbeats_sent.inc(),
                        Err(status) if forgotten(&status) => {
                            return SessionEnd::Reregister(status.message().to_owned());
                        }
                        Err(status) => {
                            self.fleet.metrics.heartbeat_failures.inc();
                            tracing::debug!(node = self.name, %status, "heartbeat failed");
                        }
                    }
                }
                message = next_message(&mut watch) => match message {
                    Ok(Some(event)) => {
                        backoff.reset();
                        self.on_event(event, &mut seen);
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
                () = sleep_until(next_start) => {
                    if let Some(end) = self.start_due_pods(&mut client).await {
                        return end;
                    }
                }
                () = tokio::time::sleep_until(reopen_at), if watch.is_none() => {}
            }
        }
    }

    /// Takes in one watch event.
    fn on_event(&mut self, event: pb::PodEvent, seen: &mut Option<HashSet<String>>) {
        self.resource_version = self.resource_version.max(event.resource_version);
        match event.r#type() {
            Type::Added | Type::Modified => {
                let Ok(pod) = serde_json::from_str::<Value>(&event.pod_json) else {
                    return;
                };
                let key = pod_key(&pod);
                if let Some(seen) = seen {
                    seen.insert(key.clone());
                }
                let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
                if self.pods.get(&key).is_some_and(|known| known.uid == uid) {
                    return;
                }
                self.forget(&key);
                let adopted = self.reported_by_this_node(&pod);
                let running = adopted && pod["status"]["phase"] == "Running";
                if running {
                    self.fleet.metrics.pods_running.inc();
                }
                let sim_pod = SimPod {
                    uid: uid.to_owned(),
                    tenant: pod["metadata"]["tenant"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    name: pod["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    containers: pod["spec"]["containers"]
                        .as_array()
                        .map(|containers| {
                            containers
                                .iter()
                                .map(|c| {
                                    (
                                        c["name"].as_str().unwrap_or_default().to_owned(),
                                        c["image"].as_str().unwrap_or_default().to_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    restart_always: !matches!(
                        pod["spec"]["restartPolicy"].as_str(),
                        Some("Never" | "OnFailure")
                    ),
                    reported: adopted,
                    running,
                };
                if !adopted {
                    let due = Instant::now() + self.fleet.start_delay;
                    self.starting
                        .push(Reverse((due, key.clone(), sim_pod.uid.clone())));
                }
                self.pods.insert(key, sim_pod);
            }
            Type::Deleted => {
                if let Ok(pod) = serde_json::from_str::<Value>(&event.pod_json) {
                    self.forget(&pod_key(&pod));
                }
            }
            Type::Bookmark => {
                if event.initial_events_end
                    && let Some(seen) = seen.take()
                {
                    let gone: Vec<String> = self
                        .pods
                        .keys()
                        .filter(|key| !seen.contains(*key))
                        .cloned()
                        .collect();
                    for key in gone {
                        tracing::debug!(
                            node = self.name,
                            pod = key,
                            "forgetting a pod this node no longer owns"
                        );
                        self.forget(&key);
                    }
                }
            }
            Type::Unspecified => {}
        }
    }

    /// Whether `pod` already carries a status this node reported (an agent
    /// restart finds its pods running).
    fn reported_by_this_node(&self, pod: &Value) -> bool {
        let status = &pod["status"];
        status["hostIP"] == self.host_ip.as_str()
            && matches!(
                status["phase"].as_str(),
                Some("Running" | "Failed" | "Succeeded")
            )
    }

    fn forget(&mut self, key: &str) {
        if let Some(pod) = self.pods.remove(key)
            && pod.running
        {
            self.fleet.metrics.pods_running.dec();
        }
    }

    /// Reports every pod whose start delay is over.
    async fn start_due_pods(&mut self, client: &mut NodeClient) -> Option<SessionEnd> {
        let now = Instant::now();
        while let Some(Reverse((at, key, uid))) = self.starting.peek().cloned() {
            if at > now {
                break;
            }
            self.starting.pop();
            if !self
                .pods
                .get(&key)
                .is_some_and(|p| p.uid == uid && !p.reported)
            {
                continue;
            }
            let pod_ip = self.next_pod_ip();
            let Some(pod) = self.pods.get(&key) else {
                continue;
            };
            let fails = rand::random::<f64>() < self.fleet.failure_rate;
            let status = simulated_status(pod, &self.host_ip, &pod_ip, fails);
            let request = pb::UpdatePodStatusRequest {
                tenant: pod.tenant.clone(),
                name: pod.name.clone(),
                status_json: status.to_string(),
                resource_version: 0,
            };
            match client.update_pod_status(request).await {
                Ok(_) => {
                    self.fleet.metrics.pod_status_updates.inc();
                    let running = !fails;
                    if let Some(pod) = self.pods.get_mut(&key) {
                        pod.reported = true;
                        pod.running = running;
                    }
                    if running {
                        self.fleet.metrics.pods_running.inc();
                    }
                }
                Err(status) if forgotten(&status) => {
                    return Some(SessionEnd::Reregister(status.message().to_owned()));
                }
                // Moved or deleted meanwhile: the watch will say so.
                Err(status) if status.code() == Code::PermissionDenied => {
                    self.forget(&key);
                }
                Err(status) => {
                    tracing::debug!(node = self.name, pod = key, %status, "reporting a pod's status failed; retrying");
                    self.starting.push(Reverse((
                        Instant::now() + Duration::from_secs(1),
                        key,
                        uid,
                    )));
                }
            }
        }
        None
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
}

/// The status a simulated pod reports: Running and Ready, or, when it
/// fails, Failed (restartPolicy Never/OnFailure) or crash-looping.
fn simulated_status(pod: &SimPod, host_ip: &str, pod_ip: &str, fails: bool) -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let condition = |type_: &str, ok: bool| json!({"type": type_, "status": if ok { "True" } else { "False" }, "lastTransitionTime": now});
    let containers: Vec<Value> = pod
        .containers
        .iter()
        .map(|(name, image)| {
            let state = if !fails {
                json!({"running": {"startedAt": now}})
            } else if pod.restart_always {
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": "simulated failure"}})
            } else {
                json!({"terminated": {"exitCode": 1, "reason": "Error", "message": "simulated failure", "startedAt": now, "finishedAt": now}})
            };
            json!({
                "name": name,
                "image": image,
                "imageID": format!("sim://{image}"),
                "containerID": format!("sim://{}/{name}", pod.uid),
                "ready": !fails,
                "started": !fails,
                "restartCount": if fails && pod.restart_always { 1 } else { 0 },
                "state": state,
            })
        })
        .collect();
    let phase = if fails && !pod.restart_always {
        "Failed"
    } else {
        "Running"
    };
    json!({
        "phase": phase,
        "conditions": [
            condition("PodScheduled", true),
            condition("Initialized", true),
            condition("ContainersReady", !fails),
            condition("Ready", !fails),
        ],
        "hostIP": host_ip,
        "podIP": pod_ip,
        "startTime": now,
        "containerStatuses": containers,
    })
}

/// `tenant/name`.
fn pod_key(pod: &Value) -> String {
    format!(
        "{}/{}",
        pod["metadata"]["tenant"].as_str().unwrap_or_default(),
        pod["metadata"]["name"].as_str().unwrap_or_default()
    )
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

/// Sleeps until `at`; never, without one.
async fn sleep_until(at: Option<Instant>) {
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

    fn sim_pod(restart_always: bool) -> SimPod {
        SimPod {
            uid: "u1".into(),
            tenant: "acme".into(),
            name: "web".into(),
            containers: vec![("web".into(), "busybox".into())],
            restart_always,
            reported: false,
            running: false,
        }
    }

    #[test]
    fn a_started_pod_is_running_and_ready_with_addresses() {
        let status = simulated_status(&sim_pod(true), "172.16.0.1", "10.0.1.2", false);
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
        let looping = simulated_status(&sim_pod(true), "h", "p", true);
        assert_eq!(looping["phase"], "Running");
        assert_eq!(
            looping["containerStatuses"][0]["state"]["waiting"]["reason"],
            "CrashLoopBackOff"
        );
        let failed = simulated_status(&sim_pod(false), "h", "p", true);
        assert_eq!(failed["phase"], "Failed");
        assert_eq!(
            failed["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            1
        );
    }
}
