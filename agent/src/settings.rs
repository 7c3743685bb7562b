//! `berth agent`'s settings: each is a flag (some also an environment
//! variable) with its default here, the one place that knows it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use berth_api::duration::parse_duration;
use berth_api::quantity::Quantity;

use crate::node_resources::{DEFAULT_EVICTION_HARD, EvictionThresholds, Reservation};
use crate::runtime::docker::network::{DEFAULT_TENANT_NETWORK_POOL, TENANT_NETWORK_PREFIX};
use crate::subnet::{Subnet, SubnetError};

/// How the agent runs pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// Containers on the host's Docker engine.
    Docker,
    /// Pretend: pods "start" after a delay and report status, nothing runs.
    Sim,
}

/// The flags of `berth agent`.
#[derive(Clone, Debug, clap::Args)]
pub struct AgentArgs {
    /// The server's gRPC address (`http://HOST:PORT`, its `--grpc-addr`).
    #[arg(long, env = "BERTH_SERVER")]
    pub server: String,
    /// The join token (the server's `<data-dir>/node-token`, or one the
    /// platform admin created).
    #[arg(long, env = "BERTH_JOIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The node's name; with `--sim-nodes N` above 1, nodes are named
    /// `NAME-0` … `NAME-(N-1)`.
    #[arg(long, env = "BERTH_NODE_NAME")]
    pub name: String,
    /// How pods are run.
    #[arg(long, value_enum, default_value = "docker")]
    pub runtime: RuntimeKind,
    /// How many simulated nodes this process runs (`sim` only).
    #[arg(long, default_value_t = 1)]
    pub sim_nodes: u32,
    /// Node labels, `k=v,k2=v2`.
    #[arg(long, default_value = "")]
    pub labels: String,
    /// The node's address (InternalIP), where `docker` publishes container
    /// ports; by default the host's first non-loopback address (simulated
    /// nodes get made-up ones).
    #[arg(long)]
    pub address: Option<IpAddr>,
    /// The Docker engine (`docker` only).
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub docker_host: String,
    /// The memory limit of a container whose pod sets none (`docker`).
    #[arg(long, default_value = "512Mi")]
    pub default_memory_limit: String,
    /// The most processes one container may run (`docker`).
    #[arg(long, default_value_t = 1024)]
    pub pids_limit: i64,
    /// How many pods the node takes (`docker`).
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// What the host's own daemons keep back from pods, as kubelet's flag:
    /// `cpu=500m,memory=1Gi,ephemeral-storage=1Gi,pid=1000` (`docker`).
    #[arg(long, default_value = "")]
    pub system_reserved: String,
    /// What the node agent and the engine keep back from pods, in the same
    /// form; added to `--system-reserved` (`docker`).
    #[arg(long, default_value = "")]
    pub kube_reserved: String,
    /// Hard eviction thresholds, as kubelet's flag: the node reports
    /// MemoryPressure, DiskPressure or PIDPressure when a signal is below
    /// its threshold, and memory and ephemeral storage below them are not
    /// allocatable. Given thresholds replace the defaults whole (`docker`).
    #[arg(long, default_value = DEFAULT_EVICTION_HARD)]
    pub eviction_hard: String,
    /// How long a pressure condition stays True after its threshold was
    /// last crossed, so that it does not flap (`30s`, `5m`; `docker`).
    #[arg(long, default_value = "5m")]
    pub eviction_pressure_transition_period: String,
    /// Where the agent keeps its pods' ConfigMap, Secret and emptyDir
    /// volumes (`docker`); the Docker engine must see the same path.
    #[arg(
        long,
        env = "BERTH_AGENT_STATE_DIR",
        default_value = "/var/lib/berth-agent"
    )]
    pub state_dir: PathBuf,
    /// Where each tenant's bridge network on this node gets its subnet (a
    /// /23 each: containers in the lower half, the node's Service
    /// addresses in the upper); must not overlap the host's networks
    /// (`docker`).
    #[arg(long, default_value = DEFAULT_TENANT_NETWORK_POOL)]
    pub tenant_network_pool: String,
    /// The first wait before a crashed container is started again, in
    /// milliseconds (Kubernetes: 10 s); it doubles per crash.
    #[arg(long, default_value_t = 10_000)]
    pub restart_backoff_ms: u64,
    /// The longest wait before a restart, in milliseconds (Kubernetes: 5 min).
    #[arg(long, default_value_t = 300_000)]
    pub restart_backoff_max_ms: u64,
    /// Where to serve `/metrics` (none when not given).
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// How long a simulated pod takes to start, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub sim_start_delay_ms: u64,
    /// Milliseconds between the lines a simulated container writes while
    /// its log is followed; 0: it writes its first lines and then nothing.
    #[arg(long, default_value_t = 0)]
    pub sim_log_interval_ms: u64,
    /// The share of simulated pods that fail to start (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    pub sim_failure_rate: f64,
    /// Each simulated node's CPU capacity.
    #[arg(long, default_value = "4")]
    pub sim_cpu: String,
    /// Each simulated node's memory capacity.
    #[arg(long, default_value = "16Gi")]
    pub sim_memory: String,
    /// How many pods each simulated node takes.
    #[arg(long, default_value_t = 110)]
    pub sim_pods: u32,
    /// Milliseconds between heartbeats.
    #[arg(long, default_value_t = 10_000)]
    pub heartbeat_ms: u64,
}

/// A flag that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {message}")]
pub struct SettingsError {
    /// The flag, e.g. `--labels`.
    pub flag: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn invalid(flag: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        flag,
        message: message.into(),
    }
}

/// The settings after their checks.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// The server's gRPC URL, with its scheme.
    pub server: String,
    /// The join token.
    pub join_token: JoinToken,
    /// The node name (the prefix, for several simulated nodes).
    pub name: String,
    /// How pods are run.
    pub runtime: RuntimeKind,
    /// How many simulated nodes.
    pub sim_nodes: u32,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// The node's address, if given.
    pub address: Option<IpAddr>,
    /// The Docker engine's address.
    pub docker_host: String,
    /// The default container memory limit, as a quantity.
    pub default_memory_limit: String,
    /// The per-container process limit.
    pub pids_limit: i64,
    /// The node's pod capacity (`docker`).
    pub max_pods: u32,
    /// `--system-reserved` and `--kube-reserved` together (`docker`).
    pub reserved: Reservation,
    /// The hard eviction thresholds (`docker`).
    pub eviction_hard: EvictionThresholds,
    /// How long a pressure outlives its last crossing (`docker`).
    pub pressure_transition_period: Duration,
    /// Where pods' volumes are kept (`docker`).
    pub state_dir: PathBuf,
    /// Where tenant networks' subnets come from (`docker`).
    pub tenant_network_pool: Subnet,
    /// The first restart back-off.
    pub restart_backoff: Duration,
    /// The longest restart back-off.
    pub restart_backoff_max: Duration,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// A simulated pod's start delay.
    pub sim_start_delay: Duration,
    /// How often a followed simulated container writes a line, if at all.
    pub sim_log_interval: Option<Duration>,
    /// The share of simulated pods that fail.
    pub sim_failure_rate: f64,
    /// Each simulated node's CPU, as a quantity.
    pub sim_cpu: String,
    /// Each simulated node's memory, as a quantity.
    pub sim_memory: String,
    /// Each simulated node's pod capacity.
    pub sim_pods: u32,
    /// The heartbeat period.
    pub heartbeat: Duration,
}

/// A join token; `Debug` never shows it.
#[derive(Clone)]
pub struct JoinToken(pub String);

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinToken(***)")
    }
}

impl AgentArgs {
    /// Checks the flags.
    pub fn resolve(self) -> Result<AgentSettings, SettingsError> {
        let server = if self.server.contains("://") {
            self.server
        } else {
            format!("http://{}", self.server)
        };
        if self.token.trim().is_empty() {
            return Err(invalid("--token", "required"));
        }
        if !berth_api::labels::is_dns_subdomain(&self.name) {
            return Err(invalid(
                "--name",
                format!(
                    "{:?} is not a valid node name (lowercase letters, digits, '-', '.')",
                    self.name
                ),
            ));
        }
        if self.sim_nodes == 0 {
            return Err(invalid("--sim-nodes", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.sim_failure_rate) {
            return Err(invalid("--sim-failure-rate", "must be between 0.0 and 1.0"));
        }
        for (flag, quantity) in [
            ("--sim-cpu", &self.sim_cpu),
            ("--sim-memory", &self.sim_memory),
        ] {
            Quantity::parse(quantity).map_err(|e| invalid(flag, format!("{quantity:?}: {e}")))?;
        }
        match Quantity::parse(&self.default_memory_limit) {
            Ok(q) if q.value() >= 6 * 1024 * 1024 => {}
            Ok(_) => {
                return Err(invalid(
                    "--default-memory-limit",
                    "Docker needs at least 6Mi",
                ));
            }
            Err(e) => {
                return Err(invalid(
                    "--default-memory-limit",
                    format!("{:?}: {e}", self.default_memory_limit),
                ));
            }
        }
        if self.pids_limit < 1 {
            return Err(invalid("--pids-limit", "must be at least 1"));
        }
        if self.restart_backoff_ms == 0 || self.restart_backoff_max_ms < self.restart_backoff_ms {
            return Err(invalid(
                "--restart-backoff-max-ms",
                "must be at least --restart-backoff-ms, which must be above 0",
            ));
        }
        if !self.state_dir.is_absolute() {
            return Err(invalid("--state-dir", "must be an absolute path"));
        }
        if self.heartbeat_ms < 10 {
            return Err(invalid("--heartbeat-ms", "must be at least 10"));
        }
        let reserved = Reservation::parse(&self.system_reserved)
            .map_err(|e| invalid("--system-reserved", e))?
            .plus(
                Reservation::parse(&self.kube_reserved)
                    .map_err(|e| invalid("--kube-reserved", e))?,
            );
        let eviction_hard = EvictionThresholds::parse(&self.eviction_hard)
            .map_err(|e| invalid("--eviction-hard", e))?;
        let tenant_network_pool: Subnet = self
            .tenant_network_pool
            .parse()
            .map_err(|e: SubnetError| invalid("--tenant-network-pool", e.to_string()))?;
        if tenant_network_pool.prefix() > TENANT_NETWORK_PREFIX {
            return Err(invalid(
                "--tenant-network-pool",
                format!(
                    "{tenant_network_pool} is smaller than one /{TENANT_NETWORK_PREFIX} tenant network"
                ),
            ));
        }
        let pressure_transition_period = parse_duration(&self.eviction_pressure_transition_period)
            .map_err(|e| invalid("--eviction-pressure-transition-period", e))?;
        Ok(AgentSettings {
            server,
            join_token: JoinToken(self.token.trim().to_owned()),
            name: self.name,
            runtime: self.runtime,
            sim_nodes: self.sim_nodes,
            labels: parse_labels(&self.labels)?,
            address: self.address,
            docker_host: self.docker_host,
            default_memory_limit: self.default_memory_limit,
            pids_limit: self.pids_limit,
            max_pods: self.max_pods,
            reserved,
            eviction_hard,
            pressure_transition_period,
            state_dir: self.state_dir,
            tenant_network_pool,
            restart_backoff: Duration::from_millis(self.restart_backoff_ms),
            restart_backoff_max: Duration::from_millis(self.restart_backoff_max_ms),
            metrics_addr: self.metrics_addr,
            sim_start_delay: Duration::from_millis(self.sim_start_delay_ms),
            sim_log_interval: (self.sim_log_interval_ms > 0)
                .then(|| Duration::from_millis(self.sim_log_interval_ms)),
            sim_failure_rate: self.sim_failure_rate,
            sim_cpu: self.sim_cpu,
            sim_memory: self.sim_memory,
            sim_pods: self.sim_pods,
            heartbeat: Duration::from_millis(self.heartbeat_ms),
        })
    }
}

/// `k=v,k2=v2` as a map; each key and value checked as a label.
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, SettingsError> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| invalid("--labels", format!("{pair:?} is not key=value")))?;
        berth_api::labels::validate_key(key)
            .map_err(|e| invalid("--labels", format!("{key:?}: {e}")))?;
        berth_api::labels::validate_value(value)
            .map_err(|e| invalid("--labels", format!("{value:?}: {e}")))?;
        labels.insert(key.to_owned(), value.to_owned());
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_parsed_and_checked() {
        let labels = parse_labels("zone=a, disk=ssd").unwrap();
        assert_eq!(labels["zone"], "a");
        assert_eq!(labels["disk"], "ssd");
        assert!(parse_labels("").unwrap().is_empty());
        assert!(parse_labels("novalue").is_err());
        assert!(parse_labels("bad key=x").is_err());
    }
}
