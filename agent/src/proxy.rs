//! The agent's L4 service proxy: the TCP listeners of Services (node ports
//! on the node's address, later virtual addresses) and the forwarding of
//! each accepted connection to one of the Service's endpoints, as
//! kube-proxy's userspace mode did, on tokio.
//!
//! The proxy owns no knowledge of Services: [`Proxy::apply`] takes the
//! whole desired [`ProxyTable`] and converges to it. New rules are bound,
//! removed rules' listeners close (their connections are left to finish),
//! and a rule whose backends change keeps its listener: the new backends
//! take effect for the next connection. Each [`Backend`] is one
//! EndpointSlice endpoint's `hostIP` and host port with its conditions
//! ([`Backend::from_conditions`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::subnet::Subnet;
use berth_api::objects::discovery::EndpointConditions;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client keeps its backend under `ClientIP` affinity when no
/// timeout is given: Kubernetes' default, three hours.
pub const DEFAULT_CLIENT_IP_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10_800);

/// How the proxy behaves; the same for every rule.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// How long a backend may take to accept before the next one is tried.
    pub connect_timeout: Duration,
    /// Connections one rule forwards at once; more are closed at accept,
    /// so that a flood cannot exhaust the agent's file descriptors.
    pub max_connections_per_rule: usize,
    /// How often a listen address that could not be bound is tried again.
    pub bind_retry: Duration,
}

impl Default for ProxySettings {
    fn default() -> ProxySettings {
        ProxySettings {
            connect_timeout: Duration::from_secs(2),
            max_connections_per_rule: 10_000,
            bind_retry: Duration::from_secs(5),
        }
    }
}

/// Everything the proxy should listen on and where each listener forwards.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxyTable {
    /// One rule per listen address.
    pub rules: Vec<ProxyRule>,
}

/// One listener and the backends its connections go to.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyRule {
    /// Who the rule serves, for logs and metrics (`tenant/service:port`).
    pub name: String,
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// Where connections go.
    pub backends: Vec<Backend>,
    /// Whether a client keeps its backend.
    pub affinity: SessionAffinity,
    /// Who may connect: a connection from elsewhere is closed at accept
    /// (a tenant's virtual addresses serve its own network only). `None`:
    /// anyone (node ports).
    pub clients: Option<Subnet>,
}

/// One endpoint of a rule, with its EndpointSlice conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Where it is reached (an endpoint's `hostIP` and host port).
    pub addr: SocketAddr,
    /// Ready and not terminating: new connections go here.
    pub ready: bool,
    /// Ready, whether terminating or not.
    pub serving: bool,
    /// Being deleted.
    pub terminating: bool,
}

impl Backend {
    /// A backend that is ready and not terminating.
    pub fn ready(addr: SocketAddr) -> Backend {
        Backend {
            addr,
            ready: true,
            serving: true,
            terminating: false,
        }
    }

    /// A backend as an EndpointSlice endpoint describes it, read as
    /// Kubernetes reads it: an unset `ready` means ready, an unset
    /// `serving` means as `ready`, an unset `terminating` means not.
    pub fn from_conditions(addr: SocketAddr, conditions: &EndpointConditions) -> Backend {
        let ready = conditions.ready.unwrap_or(true);
        Backend {
            addr,
            ready,
            serving: conditions.serving.unwrap_or(ready),
            terminating: conditions.terminating.unwrap_or(false),
        }
    }
}

/// A Service's `sessionAffinity`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionAffinity {
    /// Every connection is balanced on its own.
    #[default]
    None,
    /// A client address keeps its backend while that backend stays
    /// eligible and the client has connected within `timeout`.
    ClientIp {
        /// How long after its last connection a client keeps its backend.
        timeout: Duration,
    },
}

impl SessionAffinity {
    /// `ClientIP` with Kubernetes' default timeout.
    pub fn client_ip() -> SessionAffinity {
        SessionAffinity::ClientIp {
            timeout: DEFAULT_CLIENT_IP_AFFINITY_TIMEOUT,
        }
    }
}

/// The proxy's Prometheus figures, labelled by rule name.
#[derive(Clone)]
pub struct ProxyMetrics {
    /// Connections accepted on a rule's listener.
    pub connections_accepted: IntCounterVec,
    /// Connections closed without being forwarded, by why
    /// (`over_limit`, `no_backend`, `backends_failed`, `refused`: a client
    /// outside the rule's network).
    pub connections_dropped: IntCounterVec,
    /// Backend connect attempts that failed (refused or timed out).
    pub connect_failures: IntCounterVec,
    /// Connections being forwarded now.
    pub connections_active: IntGaugeVec,
    /// Attempts to bind a listen address that failed.
    pub bind_failures: IntCounterVec,
}

impl ProxyMetrics {
    /// The figures, registered in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<ProxyMetrics> {
        let metrics = ProxyMetrics {
            connections_accepted: IntCounterVec::new(
                Opts::new(
                    "berth_agent_proxy_connections_accepted_total",
                    "Connections accepted by the service proxy.",
                ),
                &["rule"],
            )?,
            connections_dropped: IntCounterVec::new(
                Opts::new(
                    "berth_agent_proxy_connections_dropped_total",
                    "Connections the service proxy closed without forwarding them.",
                ),
                &["rule", "reason"],
            )?,
            connect_failures: IntCounterVec::new(
                Opts::new(
                    "berth_agent_proxy_backend_connect_failures_total",
                    "Backend connect attempts that were refused or timed out.",
                ),
                &["rule"],
            )?,
            connections_active: IntGaugeVec::new(
                Opts::new(
                    "berth_agent_proxy_connections_active",
                    "Connections the service proxy is forwarding.",
                ),
                &["rule"],
            )?,
            bind_failures: IntCounterVec::new(
                Opts::new(
                    "berth_agent_proxy_bind_failures_total",
                    "Attempts to listen on a service address that failed.",
                ),
                &["rule"],
            )?,
        };
        registry.register(Box::new(metrics.connections_accepted.clone()))?;
        registry.register(Box::new(metrics.connections_dropped.clone()))?;
        registry.register(Box::new(metrics.connect_failures.clone()))?;
        registry.register(Box::new(metrics.connections_active.clone()))?;
        registry.register(Box::new(metrics.bind_failures.clone()))?;
        Ok(metrics)
    }

    /// The figures of the rule `name`, looked up once rather than on
    /// every connection.
    fn for_rule(&self, name: &str) -> RuleMetrics {
        let dropped = |reason| self.connections_dropped.with_label_values(&[name, reason]);
        RuleMetrics {
            accepted: self.connections_accepted.with_label_values(&[name]),
            over_limit: dropped("over_limit"),
            no_backend: dropped("no_backend"),
            backends_failed: dropped("backends_failed"),
            refused: dropped("refused"),
            connect_failures: self.connect_failures.with_label_values(&[name]),
            active: self.connections_active.with_label_values(&[name]),
            bind_failures: self.bind_failures.with_label_values(&[name]),
        }
    }

    /// Drops the series of the rule `name`, so that Services that come and
    /// go do not pile up series. Connections of the rule that still run
    /// count on in handles that are no longer exported.
    fn forget_rule(&self, name: &str) {
        for reason in ["over_limit", "no_backend", "backends_failed", "refused"] {
            let _ = self
                .connections_dropped
                .remove_label_values(&[name, reason]);
        }
        let _ = self.connections_accepted.remove_label_values(&[name]);
        let _ = self.connect_failures.remove_label_values(&[name]);
        let _ = self.connections_active.remove_label_values(&[name]);
        let _ = self.bind_failures.remove_label_values(&[name]);
    }
}

/// One rule's series of [`ProxyMetrics`].
struct RuleMetrics {
    accepted: IntCounter,
    over_limit: IntCounter,
    no_backend: IntCounter,
    backends_failed: IntCounter,
    refused: IntCounter,
    connect_failures: IntCounter,
    active: IntGauge,
    bind_failures: IntCounter,
}

/// The service proxy: listeners and connections, converged to the last
/// table given to [`Proxy::apply`], until its shutdown token is cancelled.
pub struct Proxy {
    shared: Arc<Shared>,
    rules: tokio::sync::Mutex<HashMap<SocketAddr, RunningRule>>,
}

/// What every listener and connection task needs.
struct Shared {
    settings: ProxySettings,
    metrics: ProxyMetrics,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// A rule whose listener task runs.
struct RunningRule {
    state: Arc<RuleState>,
    /// Stops the listener only; connections end on shutdown alone.
    stop: CancellationToken,
    listener: JoinHandle<()>,
}

/// A rule's part shared between `apply` and its tasks.
struct RuleState {
    name: String,
    listen: SocketAddr,
    clients: Option<Subnet>,
    balancer: Mutex<Balancer>,
    /// One permit per connection being forwarded.
    slots: Arc<Semaphore>,
    metrics: RuleMetrics,
}

impl RuleState {
    fn balancer(&self) -> std::sync::MutexGuard<'_, Balancer> {
        // The balancer's state stays consistent at every step, so a panic
        // elsewhere while it was locked does not spoil it.
        self.balancer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Proxy {
    /// A proxy with no rules; its listeners and connections end when
    /// `shutdown` is cancelled.
    pub fn new(
        settings: ProxySettings,
        metrics: ProxyMetrics,
        shutdown: CancellationToken,
    ) -> Proxy {
        Proxy {
            shared: Arc::new(Shared {
                settings,
                metrics,
                shutdown,
                tasks: TaskTracker::new(),
            }),
            rules: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Converges to `table`: binds the listeners of new rules, closes those
    /// of removed rules (after which their address refuses connections;
    /// their established connections go on) and gives changed rules their
    /// new backends for the next connection. A rule whose name changes is
    /// closed and bound again. Returns the listen addresses that could not
    /// be bound; each is logged, counted and tried again every
    /// `bind_retry` without holding up the others. Of two rules with one
    /// listen address, the first is kept.
    #[tracing::instrument(skip_all, fields(rules = table.rules.len()))]
    pub async fn apply(&self, table: ProxyTable) -> Vec<SocketAddr> {
        let mut running = self.rules.lock().await;
        let mut desired: HashMap<SocketAddr, ProxyRule> = HashMap::new();
        for rule in table.rules {
            if let Some(kept) = desired.get(&rule.listen) {
                tracing::warn!(
                    listen = %rule.listen,
                    kept = kept.name,
                    ignored = rule.name,
                    "two proxy rules listen on one address; the first is kept"
                );
                continue;
            }
            desired.insert(rule.listen, rule);
        }

        let gone: Vec<SocketAddr> = running
            .iter()
            .filter(|(listen, rule)| {
                desired.get(listen).is_none_or(|wanted| {
                    wanted.name != rule.state.name || wanted.clients != rule.state.clients
                })
            })
            .map(|(listen, _)| *listen)
            .collect();
        let mut removed_names = Vec::new();
        for listen in gone {
            if let Some(rule) = running.remove(&listen) {
                rule.stop.cancel();
                // The listener is closed once its task has returned, so the
                // caller may rely on the address refusing connections.
                let _ = rule.listener.await;
                tracing::info!(rule = rule.state.name, %listen, "proxy rule removed");
                removed_names.push(rule.state.name.clone());
            }
        }

        let mut unbound = Vec::new();
        for (listen, rule) in desired {
            if let Some(existing) = running.get(&listen) {
                existing
                    .state
                    .balancer()
                    .update(rule.backends, rule.affinity);
                continue;
            }
            let state = Arc::new(RuleState {
                listen,
                clients: rule.clients,
                balancer: Mutex::new(Balancer::new(rule.backends, rule.affinity)),
                slots: Arc::new(Semaphore::new(
                    self.shared
                        .settings
                        .max_connections_per_rule
                        .min(Semaphore::MAX_PERMITS),
                )),
                metrics: self.shared.metrics.for_rule(&rule.name),
                name: rule.name,
            });
            let listener = match bind(listen) {
                Ok(listener) => {
                    tracing::info!(rule = state.name, %listen, "proxy rule listening");
                    Some(listener)
                }
                Err(error) => {
                    state.metrics.bind_failures.inc();
                    tracing::warn!(
                        rule = state.name,
                        %listen,
                        %error,
                        retry = ?self.shared.settings.bind_retry,
                        "cannot listen for a proxy rule; retrying"
                    );
                    unbound.push(listen);
                    None
                }
            };
            let stop = self.shared.shutdown.child_token();
            let task = self.shared.tasks.spawn(run_listener(
                self.shared.clone(),
                state.clone(),
                listener,
                stop.clone(),
            ));
            running.insert(
                listen,
                RunningRule {
                    state,
                    stop,
                    listener: task,
                },
            );
        }
        // A name may serve several listen addresses (a LoadBalancer's node
        // port and its own port); its series stay while one of them does.
        for name in removed_names {
            if !running.values().any(|rule| rule.state.name == name) {
                self.shared.metrics.forget_rule(&name);
            }
        }
        unbound
    }

    /// Waits, after shutdown, until every listener and connection has
    /// ended.
    pub async fn stopped(&self) {
        self.shared.shutdown.cancelled().await;
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

/// A listening socket on `listen`, with a backlog deep enough for bursts
/// of connection setups.
fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match listen {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // A restarted agent binds again while the old process's connections
    // are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(1024)
}

/// Binds `listen` if `listener` is not bound yet, then accepts until
/// `stop`; every accepted connection is forwarded on its own task.
async fn run_listener(
    shared: Arc<Shared>,
    state: Arc<RuleState>,
    listener: Option<TcpListener>,
    stop: CancellationToken,
) {
    let listener = match listener {
        Some(listener) => listener,
        None => loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(shared.settings.bind_retry) => {}
            }
            match bind(state.listen) {
                Ok(listener) => {
                    tracing::info!(rule = state.name, listen = %state.listen, "proxy rule listening");
                    break listener;
                }
                Err(error) => {
                    // Logged once, when the rule was applied; counted every time.
                    state.metrics.bind_failures.inc();
                    tracing::debug!(rule = state.name, listen = %state.listen, %error, "still cannot listen");
                }
            }
        },
    };
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (client, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, mostly: pausing lets connections
                // end instead of spinning on the error.
                tracing::warn!(rule = state.name, %error, "accepting a proxied connection failed");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        state.metrics.accepted.inc();
        if let Some(clients) = state.clients {
            let allowed = match peer.ip() {
                IpAddr::V4(address) => clients.contains(address),
                IpAddr::V6(address) => address
                    .to_ipv4_mapped()
                    .is_some_and(|address| clients.contains(address)),
            };
            if !allowed {
                state.metrics.refused.inc();
                tracing::debug!(rule = state.name, %peer, "a client outside the rule's network; closing");
                continue;
            }
        }
        let Ok(slot) = state.slots.clone().try_acquire_owned() else {
            state.metrics.over_limit.inc();
            tracing::debug!(rule = state.name, %peer, "connection limit reached; closing");
            continue;
        };
        shared
            .tasks
            .spawn(forward(shared.clone(), state.clone(), client, peer, slot));
    }
}

/// Counts a connection as active for as long as it lives.
struct ActiveConnection {
    gauge: prometheus::IntGauge,
    _slot: OwnedSemaphorePermit,
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Connects `client` to the first backend that accepts, in the balancer's
/// order, and copies both ways until both sides are done or shutdown.
async fn forward(
    shared: Arc<Shared>,
    state: Arc<RuleState>,
    mut client: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) {
    let gauge = state.metrics.active.clone();
    gauge.inc();
    let _active = ActiveConnection { gauge, _slot: slot };

    let candidates = state.balancer().candidates(peer.ip(), Instant::now());
    if candidates.is_empty() {
        state.metrics.no_backend.inc();
        tracing::debug!(rule = state.name, %peer, "no backend is ready or serving; closing");
        return;
    }
    let mut connected = None;
    for backend in candidates {
        match tokio::time::timeout(shared.settings.connect_timeout, TcpStream::connect(backend))
            .await
        {
            Ok(Ok(stream)) => {
                connected = Some((backend, stream));
                break;
            }
            Ok(Err(error)) => {
                tracing::debug!(rule = state.name, %backend, %error, "backend connect failed; trying the next");
            }
            Err(_) => {
                tracing::debug!(rule = state.name, %backend, "backend connect timed out; trying the next");
            }
        }
        state.metrics.connect_failures.inc();
    }
    let Some((backend, mut upstream)) = connected else {
        state.metrics.backends_failed.inc();
        tracing::debug!(rule = state.name, %peer, "every backend failed; closing");
        return;
    };
    state
        .balancer()
        .connected(peer.ip(), backend, Instant::now());
    // Small writes (requests, handshakes) must not wait for Nagle.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tokio::select! {
        () = shared.shutdown.cancelled() => {}
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(error) = copied {
                tracing::debug!(rule = state.name, %peer, %backend, %error, "proxied connection ended with an error");
            }
        }
    }
}

/// How a rule picks backends: round robin over the eligible ones, with
/// `ClientIP` stickiness. Time is passed in so that tests need no sleeps.
struct Balancer {
    backends: Vec<Backend>,
    affinity: SessionAffinity,
    /// Where the next round robin pick starts.
    cursor: usize,
    /// Each client address's backend and when it last connected.
    sticky: HashMap<IpAddr, (SocketAddr, Instant)>,
    last_pruned: Option<Instant>,
}

/// How often expired affinity entries are dropped.
const AFFINITY_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

impl Balancer {
    fn new(backends: Vec<Backend>, affinity: SessionAffinity) -> Balancer {
        Balancer {
            backends,
            affinity,
            cursor: 0,
            sticky: HashMap::new(),
            last_pruned: None,
        }
    }

    /// New backends and affinity; clients keep their backend if it stays.
    fn update(&mut self, backends: Vec<Backend>, affinity: SessionAffinity) {
        if affinity != self.affinity {
            self.sticky.clear();
        }
        self.backends = backends;
        self.affinity = affinity;
    }

    /// The backends a connection from `client` tries, in order: the ready
    /// ones, or when none is ready the serving terminating ones (as
    /// Kubernetes falls back), starting with the client's sticky backend
    /// and then round robin. Empty when none is eligible.
    fn candidates(&mut self, client: IpAddr, now: Instant) -> Vec<SocketAddr> {
        let mut pool: Vec<SocketAddr> = self
            .backends
            .iter()
            .filter(|b| b.ready)
            .map(|b| b.addr)
            .collect();
        if pool.is_empty() {
            pool = self
                .backends
                .iter()
                .filter(|b| b.serving && b.terminating)
                .map(|b| b.addr)
                .collect();
        }
        if pool.is_empty() {
            return pool;
        }
        if let Some(sticky) = self.sticky_backend(client, now)
            && let Some(at) = pool.iter().position(|addr| *addr == sticky)
        {
            // The sticky backend first, then the others as a fallback.
            pool[..=at].rotate_right(1);
            return pool;
        }
        let start = self.cursor % pool.len();
        self.cursor = self.cursor.wrapping_add(1);
        pool.rotate_left(start);
        pool
    }

    /// The backend `client` sticks to, if affinity is on and has not
    /// expired.
    fn sticky_backend(&mut self, client: IpAddr, now: Instant) -> Option<SocketAddr> {
        let SessionAffinity::ClientIp { timeout } = self.affinity else {
            return None;
        };
        if self
            .last_pruned
            .is_none_or(|at| now.saturating_duration_since(at) >= AFFINITY_PRUNE_INTERVAL)
        {
            self.sticky
                .retain(|_, (_, last)| now.saturating_duration_since(*last) < timeout);
            self.last_pruned = Some(now);
        }
        let (backend, last) = self.sticky.get(&client)?;
        (now.saturating_duration_since(*last) < timeout).then_some(*backend)
    }

    /// Records that `client` reached `backend`, which it sticks to from now
    /// under `ClientIP`.
    fn connected(&mut self, client: IpAddr, backend: SocketAddr, now: Instant) {
        if matches!(self.affinity, SessionAffinity::ClientIp { .. }) {
            self.sticky.insert(client, (backend, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    /// Every wait in these tests ends within this.
    const PATIENCE: Duration = Duration::from_secs(5);

    /// A backend that answers each connection with its id on a line, then
    /// echoes what it reads until the client closes.
    async fn echo_backend(id: &'static str) -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind a backend");
        let addr = listener.local_addr().expect("backend address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    if write.write_all(format!("{id}\n").as_bytes()).await.is_ok() {
                        let _ = tokio::io::copy(&mut read, &mut write).await;
                    }
                    let _ = write.shutdown().await;
                });
            }
        });
        addr
    }

    /// Ready echo backends, one per id.
    async fn ready_backends<const N: usize>(ids: [&'static str; N]) -> Vec<Backend> {
        let mut backends = Vec::new();
        for id in ids {
            backends.push(Backend::ready(echo_backend(id).await));
        }
        backends
    }

    /// A loopback port nothing listens on now.
    async fn free_port() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind a probe");
        listener.local_addr().expect("probe address")
    }

    struct Harness {
        proxy: Proxy,
        registry: Registry,
        metrics: ProxyMetrics,
        shutdown: CancellationToken,
    }

    fn harness(settings: ProxySettings) -> Harness {
        let registry = Registry::new();
        let metrics = ProxyMetrics::new(&registry).expect("metrics");
        let shutdown = CancellationToken::new();
        Harness {
            proxy: Proxy::new(settings, metrics.clone(), shutdown.clone()),
            registry,
            metrics,
            shutdown,
        }
    }

    fn rule(name: &str, listen: SocketAddr, backends: Vec<Backend>) -> ProxyRule {
        ProxyRule {
            name: name.to_owned(),
            listen,
            backends,
            affinity: SessionAffinity::None,
            clients: None,
        }
    }

    fn table(rules: Vec<ProxyRule>) -> ProxyTable {
        ProxyTable { rules }
    }

    /// A connection through the proxy, from `source` (any loopback
    /// address), with the id line of the backend it reached read.
    struct Client {
        stream: BufReader<TcpStream>,
        backend: String,
    }

    async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<Client> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        let stream = tokio::time::timeout(PATIENCE, socket.connect(to))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        let mut stream = BufReader::new(stream);
        let mut backend = String::new();
        tokio::time::timeout(PATIENCE, stream.read_line(&mut backend))
            .await
            .map_err(|_| std::io::Error::other("no answer"))??;
        if backend.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before any backend answered",
            ));
        }
        Ok(Client {
            stream,
            backend: backend.trim_end().to_owned(),
        })
    }

    async fn connect(to: SocketAddr) -> Client {
        connect_from(Ipv4Addr::LOCALHOST, to)
            .await
            .expect("a connection through the proxy")
    }

    impl Client {
        /// Sends a line and expects it echoed.
        async fn echoes(&mut self, line: &str) -> bool {
            if self
                .stream
                .get_mut()
                .write_all(format!("{line}\n").as_bytes())
                .await
                .is_err()
            {
                return false;
            }
            let mut answer = String::new();
            matches!(
                tokio::time::timeout(PATIENCE, self.stream.read_line(&mut answer)).await,
                Ok(Ok(_))
            ) && answer.trim_end() == line
        }
    }

    /// Connects and expects the proxy to close the connection without
    /// forwarding it.
    async fn closed_without_answer(to: SocketAddr) -> bool {
        let mut stream = tokio::time::timeout(PATIENCE, TcpStream::connect(to))
            .await
            .expect("connect in time")
            .expect("the listener accepts");
        let mut buffer = [0u8; 16];
        matches!(
            tokio::time::timeout(PATIENCE, stream.read(&mut buffer)).await,
            Ok(Ok(0))
        )
    }

    #[tokio::test]
    async fn connections_go_round_robin_over_every_ready_backend() {
        let h = harness(ProxySettings::default());
        let backends = ready_backends(["a", "b", "c"]).await;
        let listen = free_port().await;
        let unbound = h
            .proxy
            .apply(table(vec![rule("t/web:80", listen, backends)]))
            .await;
        assert!(unbound.is_empty());

        let mut seen = BTreeMap::new();
        let mut order = Vec::new();
        for _ in 0..9 {
            let client = connect(listen).await;
            *seen.entry(client.backend.clone()).or_insert(0) += 1;
            order.push(client.backend);
        }
        assert_eq!(
            seen,
            BTreeMap::from([("a".into(), 3), ("b".into(), 3), ("c".into(), 3)])
        );
        assert_eq!(order[..3], order[3..6]);
        assert_eq!(
            h.metrics
                .connections_accepted
                .with_label_values(&["t/web:80"])
                .get(),
            9
        );
    }

    #[tokio::test]
    async fn a_rule_for_one_network_closes_connections_from_elsewhere() {
        let h = harness(ProxySettings::default());
        let backends = ready_backends(["a"]).await;
        let listen = free_port().await;
        let mut only_two = rule("t/web:80", listen, backends.clone());
        only_two.clients = Some("127.0.0.2/32".parse().unwrap());
        assert!(h.proxy.apply(table(vec![only_two])).await.is_empty());
        let refused = connect_from(Ipv4Addr::LOCALHOST, listen).await;
        assert!(refused.is_err(), "127.0.0.1 is outside 127.0.0.2/32");
        let allowed = connect_from(Ipv4Addr::new(127, 0, 0, 2), listen)
            .await
            .expect("127.0.0.2 may connect");
        assert_eq!(allowed.backend, "a");
        assert_eq!(
            h.metrics
                .connections_dropped
                .with_label_values(&["t/web:80", "refused"])
                .get(),
            1
        );

        // Widening the network binds the rule again with it.
        let mut loopback = rule("t/web:80", listen, backends);
        loopback.clients = Some("127.0.0.0/8".parse().unwrap());
        assert!(h.proxy.apply(table(vec![loopback])).await.is_empty());
        assert_eq!(connect(listen).await.backend, "a");
    }

    #[tokio::test]
    async fn a_refused_backend_is_skipped_and_the_connection_still_succeeds() {
        let h = harness(ProxySettings::default());
        let refused = free_port().await;
        let backends = vec![
            Backend::ready(refused),
            Backend::ready(echo_backend("a").await),
        ];
        let listen = free_port().await;
        h.proxy
            .apply(table(vec![rule("t/web:80", listen, backends)]))
            .await;

        for _ in 0..4 {
            assert_eq!(connect(listen).await.backend, "a");
        }
        // Two of the four connections started at the refused backend.
        assert_eq!(
            h.metrics
                .connect_failures
                .with_label_values(&["t/web:80"])
                .get(),
            2
        );
    }

    #[tokio::test]
    async fn a_backend_that_does_not_answer_in_time_is_skipped() {
        // A listener that never accepts, whose accept queue is full: Linux
        // drops further SYNs, so a connect to it neither succeeds nor fails.
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .expect("bind");
        let silent = socket.listen(0).expect("listen");
        let silent_addr = silent.local_addr().expect("address");
        let mut queued = Vec::new();
        let mut full = false;
        for _ in 0..16 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(silent_addr))
                .await
            {
                Ok(Ok(stream)) => queued.push(stream),
                Ok(Err(error)) => panic!("connect to the silent listener failed: {error}"),
                Err(_) => {
                    full = true;
                    break;
                }
            }
        }
        assert!(full, "the silent listener's queue never filled");

        let h = harness(ProxySettings {
            connect_timeout: Duration::from_millis(200),
            ..ProxySettings::default()
        });
        let backends = vec![
            Backend::ready(silent_addr),
            Backend::ready(echo_backend("a").await),
        ];
        let listen = free_port().await;
        h.proxy
            .apply(table(vec![rule("t/web:80", listen, backends)]))
            .await;

        let started = Instant::now();
        assert_eq!(connect(listen).await.backend, "a");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(
            h.metrics
                .connect_failures
                .with_label_values(&["t/web:80"])
                .get(),
            1
        );
        drop(queued);
    }

    #[tokio::test]
    async fn a_client_address_sticks_to_one_backend_under_client_ip_affinity() {
        let h = harness(ProxySettings::default());
        let backends = ready_backends(["a", "b", "c"]).await;
        let listen = free_port().await;
        let mut sticky = rule("t/web:80", listen, backends);
        sticky.affinity = SessionAffinity::client_ip();
        h.proxy.apply(table(vec![sticky])).await;

        let first = Ipv4Addr::new(127, 0, 0, 2);
        let second = Ipv4Addr::new(127, 0, 0, 3);
        let mut seen: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
        for _ in 0..10 {
            for source in [first, second] {
                let client = connect_from(source, listen).await.expect("connect");
                seen.entry(source).or_default().push(client.backend);
            }
        }
        for (source, backends) in &seen {
            assert_eq!(backends.len(), 10);
            assert!(
                backends.iter().all(|b| *b == backends[0]),
                "{source} moved between backends: {backends:?}"
            );
        }
        assert_ne!(
            seen[&first][0], seen[&second][0],
            "both clients went to one backend"
        );
    }

    #[tokio::test]
    async fn client_ip_affinity_ends_after_its_timeout_or_when_the_backend_leaves() {
        let a: SocketAddr = "127.0.0.1:1001".parse().expect("address");
        let b: SocketAddr = "127.0.0.1:1002".parse().expect("address");
        let client: IpAddr = "127.0.0.2".parse().expect("address");
        let timeout = Duration::from_secs(60);
        let mut balancer = Balancer::new(
            vec![Backend::ready(a), Backend::ready(b)],
            SessionAffinity::ClientIp { timeout },
        );
        let start = Instant::now();
        assert_eq!(balancer.candidates(client, start), vec![a, b]);
        balancer.connected(client, b, start);
        assert_eq!(balancer.candidates(client, start + timeout / 2)[0], b);
        balancer.connected(client, b, start + timeout / 2);
        // The timeout runs from the last connection.
        assert_eq!(balancer.candidates(client, start + timeout)[0], b);
        // Past it, round robin again: the cursor was used once, so `b`.
        let expired = start + timeout / 2 + timeout;
        let after = balancer.candidates(client, expired);
        assert_eq!(after, vec![b, a]);

        balancer.connected(client, a, expired);
        balancer.update(
            vec![Backend::ready(b)],
            SessionAffinity::ClientIp { timeout },
        );
        assert_eq!(balancer.candidates(client, expired), vec![b]);
    }

    #[tokio::test]
    async fn a_removed_backend_gets_no_new_connections_and_keeps_its_established_one() {
        let h = harness(ProxySettings::default());
        let a = Backend::ready(echo_backend("a").await);
        let b = Backend::ready(echo_backend("b").await);
        let listen = free_port().await;
        h.proxy
            .apply(table(vec![rule("t/web:80", listen, vec![a, b])]))
            .await;

        let mut long = connect(listen).await;
        assert_eq!(long.backend, "a");
        h.proxy
            .apply(table(vec![rule("t/web:80", listen, vec![b])]))
            .await;

        for _ in 0..6 {
            assert_eq!(connect(listen).await.backend, "b");
        }
        assert!(long.echoes("still here").await);
    }

    #[tokio::test]
    async fn a_removed_rule_closes_its_listener_and_lets_its_connection_finish() {
        let h = harness(ProxySettings::default());
        let a = Backend::ready(echo_backend("a").await);
        let listen = free_port().await;
        let other = free_port().await;
        h.proxy
            .apply(table(vec![
                rule("t/web:80", listen, vec![a]),
                rule("t/api:80", other, vec![a]),
            ]))
            .await;
        let mut in_flight = connect(listen).await;

        h.proxy
            .apply(table(vec![rule("t/api:80", other, vec![a])]))
            .await;

        let refused = TcpStream::connect(listen).await.expect_err("refused");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(in_flight.echoes("finishing").await);
        // Half-close: the client is done sending and still reads the rest.
        in_flight
            .stream
            .get_mut()
            .shutdown()
            .await
            .expect("shut down writes");
        let mut rest = String::new();
        let read = tokio::time::timeout(PATIENCE, in_flight.stream.read_to_string(&mut rest))
            .await
            .expect("the backend closes in time");
        assert!(read.is_ok());
        assert_eq!(connect(other).await.backend, "a");

        let exported: Vec<String> = h
            .registry
            .gather()
            .iter()
            .flat_map(|family| family.get_metric())
            .flat_map(|metric| metric.get_label())
            .map(|label| label.value().to_owned())
            .collect();
        assert!(!exported.iter().any(|rule| rule == "t/web:80"));
        assert!(exported.iter().any(|rule| rule == "t/api:80"));
    }

    #[tokio::test]
    async fn a_rule_renamed_on_its_address_is_bound_again_at_once() {
        let h = harness(ProxySettings::default());
        let backends = ready_backends(["a", "b"]).await;
        let listen = free_port().await;
        h.proxy
            .apply(table(vec![rule("t/web:80", listen, vec![backends[0]])]))
            .await;
        assert_eq!(connect(listen).await.backend, "a");

        let unbound = h
            .proxy
            .apply(table(vec![rule("t/site:80", listen, vec![backends[1]])]))
            .await;
        assert!(unbound.is_empty());
        assert_eq!(connect(listen).await.backend, "b");
        assert_eq!(
            h.metrics
                .connections_accepted
                .with_label_values(&["t/site:80"])
                .get(),
            1
        );
    }

    #[tokio::test]
    async fn with_no_ready_backend_a_serving_terminating_one_takes_the_connection() {
        let h = harness(ProxySettings::default());
        let not_ready = Backend {
            ready: false,
            serving: false,
            terminating: false,
            ..Backend::ready(echo_backend("not-ready").await)
        };
        let draining = Backend {
            ready: false,
            serving: true,
            terminating: true,
            ..Backend::ready(echo_backend("draining").await)
        };
        let listen = free_port().await;
        h.proxy
            .apply(table(vec![rule(
                "t/web:80",
                listen,
                vec![not_ready, draining],
            )]))
            .await;
        for _ in 0..3 {
            assert_eq!(connect(listen).await.backend, "draining");
        }

        let gone = Backend {
            serving: false,
            ..draining
        };
        h.proxy
            .apply(table(vec![rule("t/web:80", listen, vec![not_ready, gone])]))
            .await;
        assert!(closed_without_answer(listen).await);
        assert_eq!(
            h.metrics
                .connections_dropped
                .with_label_values(&["t/web:80", "no_backend"])
                .get(),
            1
        );
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_and_counted() {
        let h = harness(ProxySettings {
            max_connections_per_rule: 2,
            ..ProxySettings::default()
        });
        let a = Backend::ready(echo_backend("a").await);
        let listen = free_port().await;
        h.proxy
            .apply(table(vec![rule("t/web:80", listen, vec![a])]))
            .await;

        let first = connect(listen).await;
        let _second = connect(listen).await;
        assert!(closed_without_answer(listen).await);
        assert_eq!(
            h.metrics
                .connections_dropped
                .with_label_values(&["t/web:80", "over_limit"])
                .get(),
            1
        );

        drop(first);
        let active = h
            .metrics
            .connections_active
            .with_label_values(&["t/web:80"]);
        for _ in 0..250 {
            if active.get() < 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(active.get(), 1);
        assert_eq!(connect(listen).await.backend, "a");
    }

    #[tokio::test]
    async fn an_address_in_use_is_retried_without_holding_up_other_rules() {
        let h = harness(ProxySettings {
            bind_retry: Duration::from_millis(50),
            ..ProxySettings::default()
        });
        let a = Backend::ready(echo_backend("a").await);
        let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("hold a port");
        let taken = holder.local_addr().expect("held address");
        let free = free_port().await;

        let unbound = h
            .proxy
            .apply(table(vec![
                rule("t/taken:80", taken, vec![a]),
                rule("t/free:80", free, vec![a]),
            ]))
            .await;
        assert_eq!(unbound, vec![taken]);
        assert_eq!(connect(free).await.backend, "a");
        assert!(
            h.metrics
                .bind_failures
                .with_label_values(&["t/taken:80"])
                .get()
                >= 1
        );

        drop(holder);
        let mut reached = None;
        for _ in 0..100 {
            if let Ok(client) = connect_from(Ipv4Addr::LOCALHOST, taken).await {
                reached = Some(client.backend);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(reached.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn shutdown_closes_listeners_and_connections() {
        let h = harness(ProxySettings::default());
        let a = Backend::ready(echo_backend("a").await);
        let listen = free_port().await;
        h.proxy
            .apply(table(vec![rule("t/web:80", listen, vec![a])]))
            .await;
        let mut client = connect(listen).await;

        h.shutdown.cancel();
        tokio::time::timeout(PATIENCE, h.proxy.stopped())
            .await
            .expect("every task ends");

        let refused = TcpStream::connect(listen).await.expect_err("refused");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        let mut buffer = [0u8; 8];
        let read = tokio::time::timeout(PATIENCE, client.stream.read(&mut buffer))
            .await
            .expect("closed in time");
        assert!(matches!(read, Ok(0) | Err(_)));
    }

    #[test]
    fn endpoint_conditions_are_read_as_kubernetes_reads_them() {
        let addr: SocketAddr = "127.0.0.1:30080".parse().expect("address");
        let unset = Backend::from_conditions(addr, &EndpointConditions::default());
        assert_eq!(unset, Backend::ready(addr));
        let draining = Backend::from_conditions(
            addr,
            &EndpointConditions {
                ready: Some(false),
                serving: Some(true),
                terminating: Some(true),
            },
        );
        assert!(!draining.ready && draining.serving && draining.terminating);
        let not_ready = Backend::from_conditions(
            addr,
            &EndpointConditions {
                ready: Some(false),
                ..EndpointConditions::default()
            },
        );
        assert!(!not_ready.ready && !not_ready.serving && !not_ready.terminating);
    }
}
