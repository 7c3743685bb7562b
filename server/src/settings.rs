//! `berth server`'s settings: each is a flag, then an environment variable,
//! then a default, and this module is the one place that knows the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use berth_api::duration::parse_duration;

use crate::etcd::EtcdAuth;
use crate::service_allocation::{NodePortRange, ServiceCidr, ServiceRanges};
use crate::store::Backend;

/// The block Services' virtual addresses come from by default (k3s' own).
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";
/// The node ports NodePort and LoadBalancer Services get by default
/// (Kubernetes' own).
pub const DEFAULT_SERVICE_NODE_PORT_RANGE: &str = "30000-32767";

/// The settings as given on the command line or in the environment.
#[derive(Clone, Debug, clap::Args)]
pub struct ServerArgs {
    /// Where the server keeps its files (the SQLite database, generated
    /// secrets).
    #[arg(long, env = "BERTH_DATA_DIR", default_value = "./berth-data")]
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`; default
    /// `sqlite://<data-dir>/berth.db`.
    #[arg(long, env = "BERTH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Address for REST, the dashboard, `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "BERTH_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Address for gRPC: the etcd v3 API and the node API.
    #[arg(long, env = "BERTH_GRPC_ADDR", default_value = "127.0.0.1:2379")]
    pub grpc_addr: SocketAddr,
    /// Who may use the etcd API: `users` (a token from Auth.Authenticate on
    /// every call) or `none` (anyone, every key: local development only).
    #[arg(long, env = "BERTH_ETCD_AUTH", value_enum, default_value = "users")]
    pub etcd_auth: EtcdAuth,
    /// Milliseconds an idle etcd watch that asked for progress
    /// notifications waits before one (etcd's default: 10 minutes).
    #[arg(long, env = "BERTH_ETCD_PROGRESS_NOTIFY_MS", default_value_t = 600_000)]
    pub etcd_progress_notify_ms: u64,
    /// The platform admin created at first start.
    #[arg(long, env = "BERTH_ADMIN_EMAIL", default_value = "admin@berth.local")]
    pub admin_email: String,
    /// The first admin's password; generated, printed once and kept in
    /// `<data-dir>/admin-password` when not given. Ignored once an admin
    /// exists.
    #[arg(long, env = "BERTH_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<Password>,
    /// The AES-256 key that seals Secret values at rest: 32 bytes, raw, hex
    /// or base64. Generated at first start when absent (mode 0600).
    #[arg(long, env = "BERTH_ENCRYPTION_KEY_FILE")]
    pub encryption_key_file: Option<PathBuf>,
    /// Milliseconds between BOOKMARK events on an idle REST watch.
    #[arg(long, env = "BERTH_WATCH_BOOKMARK_MS", default_value_t = 10_000)]
    pub watch_bookmark_ms: u64,
    /// Seconds the controller leader's lease lasts: after a leader dies,
    /// another server process takes over within about this long (plus one
    /// second).
    #[arg(long, env = "BERTH_LEADER_LEASE_TTL_SECONDS", default_value_t = 10)]
    pub leader_lease_ttl_seconds: u64,
    /// Whether this process takes part in running the scheduler and the
    /// controllers (one elected leader runs them). `false` serves only the
    /// APIs.
    #[arg(long, env = "BERTH_CONTROLLERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub controllers: bool,
    /// How long a node may go without a heartbeat before it is marked
    /// NotReady (Ready=Unknown) and tainted `node.kubernetes.io/unreachable`
    /// (`40s`, `2m`, `500ms`…).
    #[arg(long, env = "BERTH_NODE_MONITOR_GRACE", default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace: std::time::Duration,
    /// How long the pods of a NotReady node stay before they are deleted and
    /// replaced elsewhere (unless a pod's toleration says otherwise).
    #[arg(long, env = "BERTH_POD_EVICTION_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub pod_eviction_timeout: std::time::Duration,
    /// The IPv4 block Services' virtual addresses are allocated from.
    /// Agents bind these addresses on bridges of their own, so it must not
    /// overlap a network the hosts route.
    #[arg(long, env = "BERTH_SERVICE_CIDR", default_value = DEFAULT_SERVICE_CIDR)]
    pub service_cidr: String,
    /// The ports NodePort and LoadBalancer Services are given on every
    /// node (`FIRST-LAST`).
    #[arg(long, env = "BERTH_SERVICE_NODE_PORT_RANGE", default_value = DEFAULT_SERVICE_NODE_PORT_RANGE)]
    pub service_node_port_range: String,
    /// How long an access token (from `/auth/login`, or behind a dashboard
    /// session) is good for.
    #[arg(long, env = "BERTH_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = parse_duration)]
    pub access_token_ttl: std::time::Duration,
    /// How long a dashboard session lasts without a request; every request
    /// moves the end on, so an active user is never signed out.
    #[arg(long, env = "BERTH_SESSION_IDLE_TIMEOUT", default_value = "12h", value_parser = parse_duration)]
    pub session_idle_timeout: std::time::Duration,
}

/// A password given as a setting; `Debug` never shows it.
#[derive(Clone)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl std::str::FromStr for Password {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Password(s.to_owned()))
    }
}

/// Settings after their checks, ready to use.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// The data directory, which exists and is writable.
    pub data_dir: PathBuf,
    /// The database URL, of a known scheme.
    pub database_url: String,
    /// The HTTP listen address.
    pub http_addr: SocketAddr,
    /// The gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Who may use the etcd API.
    pub etcd_auth: EtcdAuth,
    /// The idle interval of etcd watch progress notifications.
    pub etcd_progress_notify: std::time::Duration,
    /// The first admin's email.
    pub admin_email: String,
    /// The first admin's password, if given.
    pub admin_password: Option<Password>,
    /// Where the key that seals Secret values is (or will be made).
    pub encryption_key_file: PathBuf,
    /// The interval of BOOKMARK events on REST watches.
    pub watch_bookmark_interval: std::time::Duration,
    /// How long the controller leader's lease lasts.
    pub leader_lease_ttl: std::time::Duration,
    /// Whether this process runs the control loops when elected.
    pub controllers: bool,
    /// Heartbeat silence after which a node is NotReady.
    pub node_monitor_grace: std::time::Duration,
    /// How long a NotReady node keeps its pods.
    pub pod_eviction_timeout: std::time::Duration,
    /// Where Services' virtual addresses and node ports come from.
    pub service_ranges: ServiceRanges,
    /// How long an access token is good for.
    pub access_token_ttl: std::time::Duration,
    /// How long an idle dashboard session lasts.
    pub session_idle_timeout: std::time::Duration,
}

/// A setting that cannot be used, named as the user gave it.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct SettingsError {
    /// The flag, e.g. `--database-url`.
    pub setting: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl SettingsError {
    /// An error about `setting`.
    pub fn new(setting: &'static str, message: impl Into<String>) -> Self {
        SettingsError {
            setting,
            message: message.into(),
        }
    }
}

impl ServerArgs {
    /// Checks the settings and fills in derived defaults. Creates the data
    /// directory if it is missing.
    pub fn resolve(self) -> Result<ServerSettings, SettingsError> {
        ensure_writable_dir(&self.data_dir)
            .map_err(|message| SettingsError::new("--data-dir", message))?;
        let database_url = match self.database_url {
            Some(url) => url,
            None => format!("sqlite://{}", self.data_dir.join("berth.db").display()),
        };
        if !self.admin_email.contains('@') {
            return Err(SettingsError::new(
                "--admin-email",
                format!("{:?} is not an email address", self.admin_email),
            ));
        }
        if self.admin_password.as_ref().is_some_and(|p| p.0.len() < 8) {
            return Err(SettingsError::new(
                "--admin-password",
                "must be at least 8 characters",
            ));
        }
        if Backend::of_url(&database_url).is_none() {
            return Err(SettingsError::new(
                "--database-url",
                format!(
                    "unknown scheme in {:?}; use sqlite://PATH or postgres://…",
                    redact_url(&database_url)
                ),
            ));
        }
        let cidr: ServiceCidr = self
            .service_cidr
            .parse()
            .map_err(|message| SettingsError::new("--service-cidr", message))?;
        let node_ports: NodePortRange = self
            .service_node_port_range
            .parse()
            .map_err(|message| SettingsError::new("--service-node-port-range", message))?;
        Ok(ServerSettings {
            data_dir: self.data_dir.clone(),
            database_url,
            http_addr: self.http_addr,
            grpc_addr: self.grpc_addr,
            etcd_auth: self.etcd_auth,
            etcd_progress_notify: std::time::Duration::from_millis(
                self.etcd_progress_notify_ms.max(1),
            ),
            admin_email: self.admin_email,
            admin_password: self.admin_password,
            encryption_key_file: self
                .encryption_key_file
                .unwrap_or_else(|| self.data_dir.join("encryption.key")),
            watch_bookmark_interval: std::time::Duration::from_millis(
                self.watch_bookmark_ms.max(10),
            ),
            // Below 2 s renewals (a third of the TTL) would race the expiry.
            leader_lease_ttl: std::time::Duration::from_secs(self.leader_lease_ttl_seconds.max(2)),
            controllers: self.controllers,
            node_monitor_grace: self.node_monitor_grace,
            pod_eviction_timeout: self.pod_eviction_timeout,
            service_ranges: ServiceRanges { cidr, node_ports },
            // JWTs count whole seconds.
            access_token_ttl: self.access_token_ttl.max(std::time::Duration::from_secs(1)),
            session_idle_timeout: self
                .session_idle_timeout
                .max(std::time::Duration::from_secs(60)),
        })
    }
}

fn ensure_writable_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("{} is not writable: {e}", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// A database URL with its password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}
