//! The agent's DNS server for containers: cluster DNS for Services, one
//! listener (UDP and TCP) per tenant network on that network's gateway
//! address, which the tenant's containers are given as their DNS server.
//!
//! The server owns no knowledge of Services: [`Dns::apply`] takes the whole
//! desired [`DnsTable`] and converges to it. New listeners are bound,
//! removed ones closed, and the records every listener answers from are
//! swapped in whole for the next query. A query is answered for the tenant
//! of the listener it reached: that tenant's Services authoritatively, the
//! rest of the cluster's namespace NXDOMAIN (another tenant's Services
//! included), and every other name relayed to the node's own upstream
//! servers. A client outside the listener's subnet is refused, so that one
//! tenant's containers learn nothing from another tenant's listener.

mod handler;
mod names;
mod upstream;

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hickory_server::Server;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::subnet::Subnet;
use handler::QueryHandler;
use names::ServiceIndex;

/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Replies one TCP connection may have queued for sending.
const TCP_REPLY_QUEUE: usize = 32;

/// Queries one listener may have waiting on upstream servers at once;
/// more get SERVFAIL, so that a flood from one tenant cannot exhaust the
/// agent's sockets.
const MAX_FORWARDS_PER_LISTENER: usize = 256;

/// How the server answers; the same for every listener.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsSettings {
    /// Where names outside the cluster are asked, in order.
    pub upstreams: Vec<SocketAddr>,
    /// How long one upstream may take before the next is asked.
    pub upstream_timeout: Duration,
    /// The TTL of Service records: short, so that a changed Service is
    /// seen soon by clients that cache.
    pub ttl: u32,
}

impl Default for DnsSettings {
    fn default() -> DnsSettings {
        DnsSettings {
            upstreams: Vec::new(),
            upstream_timeout: Duration::from_secs(2),
            ttl: 5,
        }
    }
}

impl DnsSettings {
    /// The defaults, with the `nameserver`s of a resolv.conf(5) text (the
    /// host's) as upstreams on port 53, in their order. An address that
    /// does not parse (an IPv6 address with a zone) is skipped.
    pub fn from_resolv_conf(text: &str) -> DnsSettings {
        let upstreams = text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                match (words.next(), words.next()) {
                    (Some("nameserver"), Some(address)) => Some(address),
                    _ => None,
                }
            })
            .filter_map(|address| match address.parse::<std::net::IpAddr>() {
                Ok(ip) => Some(SocketAddr::new(ip, 53)),
                Err(_) => {
                    tracing::warn!(
                        address,
                        "a resolv.conf nameserver is not an address; skipped"
                    );
                    None
                }
            })
            .collect();
        DnsSettings {
            upstreams,
            ..DnsSettings::default()
        }
    }
}

/// Everything the server should listen on and answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DnsTable {
    /// One listener per tenant network.
    pub listeners: Vec<DnsListener>,
    /// The Services of every tenant; each listener answers its own
    /// tenant's.
    pub services: Vec<ServiceName>,
    /// Every tenant the node knows of, its listeners' included: names
    /// under any of them are never forwarded.
    pub tenants: BTreeSet<String>,
}

/// One tenant network's listener.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsListener {
    /// Whose Services it answers.
    pub tenant: String,
    /// Where it listens, UDP and TCP (the network's gateway, port 53).
    pub listen: SocketAddr,
    /// Who may ask: the tenant network; anyone else is refused.
    pub clients: Subnet,
}

/// A Service's name and what its records hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceName {
    /// Its tenant.
    pub tenant: String,
    /// Its name, a DNS label.
    pub name: String,
    /// The address its A record gives.
    pub address: Ipv4Addr,
    /// Its named ports, for SRV records.
    pub ports: Vec<NamedPort>,
}

/// A named TCP port of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    /// The port's name (`http` answers `_http._tcp.…`).
    pub name: String,
    /// The port.
    pub port: u16,
}

/// The DNS server's Prometheus figures.
#[derive(Clone)]
pub struct DnsMetrics {
    /// Queries by the asking listener's tenant and result: `answered`
    /// (records or no data for a Service name), `nxdomain`, `forwarded`
    /// (an upstream's answer relayed), `refused` (a client outside the
    /// listener's subnet), `failed` (no upstream answered, or a request
    /// the server does not take).
    pub queries: IntCounterVec,
    /// Upstream requests that failed (timed out, refused, unreadable),
    /// by upstream.
    pub upstream_failures: IntCounterVec,
    /// Attempts to bind a listen address that failed, by tenant.
    pub bind_failures: IntCounterVec,
}

/// What became of a query, as [`DnsMetrics::queries`] counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Answered,
    NxDomain,
    Forwarded,
    Refused,
    Failed,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Answered,
        Outcome::NxDomain,
        Outcome::Forwarded,
        Outcome::Refused,
        Outcome::Failed,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::NxDomain => "nxdomain",
            Outcome::Forwarded => "forwarded",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

impl DnsMetrics {
    /// The figures, registered in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<DnsMetrics> {
        let metrics = DnsMetrics {
            queries: IntCounterVec::new(
                Opts::new(
                    "berth_agent_dns_queries_total",
                    "DNS queries from containers, by tenant and result.",
                ),
                &["tenant", "result"],
            )?,
            upstream_failures: IntCounterVec::new(
                Opts::new(
                    "berth_agent_dns_upstream_failures_total",
                    "Forwarded DNS queries an upstream server did not answer in time or usably.",
                ),
                &["upstream"],
            )?,
            bind_failures: IntCounterVec::new(
                Opts::new(
                    "berth_agent_dns_bind_failures_total",
                    "Attempts to listen for a tenant's DNS that failed.",
                ),
                &["tenant"],
            )?,
        };
        registry.register(Box::new(metrics.queries.clone()))?;
        registry.register(Box::new(metrics.upstream_failures.clone()))?;
        registry.register(Box::new(metrics.bind_failures.clone()))?;
        Ok(metrics)
    }

    /// The figures of `tenant`, looked up once rather than on every query.
    fn for_tenant(&self, tenant: &str) -> TenantMetrics {
        TenantMetrics {
            queries: Outcome::ALL
                .map(|outcome| self.queries.with_label_values(&[tenant, outcome.label()])),
            bind_failures: self.bind_failures.with_label_values(&[tenant]),
        }
    }

    /// Drops the series of `tenant`, so that tenants that leave the node
    /// do not pile up series.
    fn forget_tenant(&self, tenant: &str) {
        for outcome in Outcome::ALL {
            let _ = self.queries.remove_label_values(&[tenant, outcome.label()]);
        }
        let _ = self.bind_failures.remove_label_values(&[tenant]);
    }
}

/// One tenant's series of [`DnsMetrics`].
struct TenantMetrics {
    /// By [`Outcome`], in the order of [`Outcome::ALL`].
    queries: [IntCounter; 5],
    bind_failures: IntCounter,
}

impl TenantMetrics {
    fn count(&self, outcome: Outcome) {
        self.queries[outcome as usize].inc();
    }
}

/// What every query is answered from; [`Dns::apply`] swaps it in whole.
#[derive(Default)]
struct Snapshot {
    /// Each listener's tenant and clients, by listen address.
    listeners: HashMap<SocketAddr, Scope>,
    index: ServiceIndex,
}

/// Whom a listener answers for and whom it answers.
struct Scope {
    /// Lowercase.
    tenant: String,
    clients: Subnet,
    metrics: TenantMetrics,
}

/// What every listener's queries need.
struct Shared {
    settings: DnsSettings,
    metrics: DnsMetrics,
    snapshot: RwLock<Arc<Snapshot>>,
    /// [`MAX_FORWARDS_PER_LISTENER`], but for tests.
    max_forwards: usize,
}

impl Shared {
    fn snapshot(&self) -> Arc<Snapshot> {
        // The lock guards a single pointer swap, which a panic cannot
        // leave half done.
        self.snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `snapshot` in place for the next query; returns the one it
    /// replaces.
    fn replace_snapshot(&self, snapshot: Arc<Snapshot>) -> Arc<Snapshot> {
        let mut current = self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut current, snapshot)
    }
}

/// The DNS server: listeners converged to the last table given to
/// [`Dns::apply`], until its shutdown token is cancelled.
pub struct Dns {
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    listeners: tokio::sync::Mutex<HashMap<SocketAddr, RunningListener>>,
}

/// A bound listener, served by its own task.
struct RunningListener {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Dns {
    /// A server with no listeners; they all close when `shutdown` is
    /// cancelled.
    pub fn new(settings: DnsSettings, metrics: DnsMetrics, shutdown: CancellationToken) -> Dns {
        Dns::with_forward_limit(settings, metrics, shutdown, MAX_FORWARDS_PER_LISTENER)
    }

    fn with_forward_limit(
        settings: DnsSettings,
        metrics: DnsMetrics,
        shutdown: CancellationToken,
        max_forwards: usize,
    ) -> Dns {
        Dns {
            shared: Arc::new(Shared {
                settings,
                metrics,
                snapshot: RwLock::new(Arc::new(Snapshot::default())),
                max_forwards,
            }),
            shutdown,
            tasks: TaskTracker::new(),
            listeners: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Converges to `table`: the records are swapped in whole for the
    /// next query, removed listeners are closed (their address answers no
    /// more once this returns) and new ones are bound, UDP and TCP on
    /// `listen`. Returns the listen addresses that could not be bound,
    /// each logged and counted; the next apply tries them again. Of two
    /// listeners on one address, the first is kept.
    #[tracing::instrument(skip_all, fields(listeners = table.listeners.len(), services = table.services.len()))]
    pub async fn apply(&self, table: DnsTable) -> Vec<SocketAddr> {
        let mut running = self.listeners.lock().await;
        let mut index = ServiceIndex::new(table.services, table.tenants);
        let mut scopes: HashMap<SocketAddr, Scope> = HashMap::new();
        for listener in table.listeners {
            let tenant = listener.tenant.to_ascii_lowercase();
            if let Some(kept) = scopes.get(&listener.listen) {
                tracing::warn!(
                    listen = %listener.listen,
                    kept = kept.tenant,
                    ignored = tenant,
                    "two DNS listeners on one address; the first is kept"
                );
                continue;
            }
            index.add_tenant(&tenant);
            scopes.insert(
                listener.listen,
                Scope {
                    metrics: self.shared.metrics.for_tenant(&tenant),
                    tenant,
                    clients: listener.clients,
                },
            );
        }
        let snapshot = Arc::new(Snapshot {
            listeners: scopes,
            index,
        });
        let previous = self.shared.replace_snapshot(snapshot.clone());

        // A listener whose task ended on its own lost its sockets: it is
        // closed here and bound again below.
        let closing: Vec<SocketAddr> = running
            .iter()
            .filter(|(listen, listener)| {
                !snapshot.listeners.contains_key(listen) || listener.task.is_finished()
            })
            .map(|(listen, _)| *listen)
            .collect();
        for listen in closing {
            if let Some(listener) = running.remove(&listen) {
                listener.stop.cancel();
                let _ = listener.task.await;
                tracing::info!(%listen, "DNS listener closed");
            }
        }

        let mut unbound = Vec::new();
        for (listen, scope) in &snapshot.listeners {
            if running.contains_key(listen) {
                continue;
            }
            match bind(*listen).await {
                Ok((udp, tcp)) => {
                    tracing::info!(tenant = scope.tenant, %listen, "DNS listener bound");
                    let stop = self.shutdown.child_token();
                    let task = self.tasks.spawn(serve(
                        self.shared.clone(),
                        *listen,
                        udp,
                        tcp,
                        stop.clone(),
                    ));
                    running.insert(*listen, RunningListener { stop, task });
                }
                Err(error) => {
                    scope.metrics.bind_failures.inc();
                    tracing::warn!(
                        tenant = scope.tenant,
                        %listen,
                        %error,
                        "cannot listen for a tenant's DNS; tried again at the next apply"
                    );
                    unbound.push(*listen);
                }
            }
        }
        unbound.sort();

        for scope in previous.listeners.values() {
            if !snapshot
                .listeners
                .values()
                .any(|kept| kept.tenant == scope.tenant)
            {
                self.shared.metrics.forget_tenant(&scope.tenant);
            }
        }
        unbound
    }

    /// Waits, after shutdown, until every listener has closed.
    pub async fn stopped(&self) {
        self.shutdown.cancelled().await;
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// A UDP socket and a TCP listener on `listen`.
async fn bind(listen: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let tcp = if listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted agent binds again while the old process's connections
    // are in TIME_WAIT.
    tcp.set_reuseaddr(true)?;
    tcp.bind(listen)?;
    let tcp = tcp.listen(1024)?;
    let udp = UdpSocket::bind(listen).await?;
    Ok((udp, tcp))
}

/// Answers queries on `udp` and `tcp` until `stop`, or until the server
/// fails on its own (logged; the next apply binds the address again).
async fn serve(
    shared: Arc<Shared>,
    listen: SocketAddr,
    udp: UdpSocket,
    tcp: TcpListener,
    stop: CancellationToken,
) {
    let mut server = Server::new(QueryHandler::new(shared, listen));
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_REPLY_QUEUE);
    let server_stop = server.shutdown_token().clone();
    tokio::select! {
        () = stop.cancelled() => server_stop.cancel(),
        ended = server.block_until_done() => {
            tracing::warn!(%listen, result = ?ended, "a DNS listener stopped on its own");
            return;
        }
    }
    // Dropping the server's tasks ends the queries in flight and closes
    // the sockets.
    if let Err(error) = server.block_until_done().await {
        tracing::debug!(%listen, %error, "a DNS listener closed with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;

    use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_server::proto::rr::rdata::{A, SRV};
    use hickory_server::proto::rr::{Name, RData, Record, RecordType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Every wait in these tests ends within this.
    const PATIENCE: Duration = Duration::from_secs(5);
    /// How long the fake upstream's silence lasts before the server gives up.
    const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(300);
    pub(super) const WEB: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
    pub(super) const API: Ipv4Addr = Ipv4Addr::new(10, 96, 1, 10);
    /// Service `web` of tenant `acme` under each of its names, as clients
    /// may spell them.
    pub(super) const WEB_NAMES: [&str; 6] = [
        "web",
        "web.acme",
        "web.acme.svc",
        "web.acme.svc.cluster.local",
        "web.acme.svc.cluster.local.",
        "Web.ACME.svc.Cluster.local.",
    ];
    /// Service `api` of tenant `beta` under names that `acme` may try.
    pub(super) const API_NAMES: [&str; 5] = [
        "api",
        "api.beta",
        "api.beta.svc",
        "api.beta.svc.cluster.local",
        "_http._tcp.api.beta",
    ];
    /// What the fake upstream answers for every name (documentation
    /// addresses: only data in a message, never a destination).
    const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    /// A loopback address whose UDP and TCP ports are both free now.
    fn free_address() -> SocketAddr {
        for _ in 0..100 {
            let probe = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a probe");
            let addr = probe.local_addr().expect("probe address");
            if std::net::TcpListener::bind(addr).is_ok() {
                return addr;
            }
        }
        panic!("no loopback port free for both UDP and TCP");
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Transport {
        Udp,
        Tcp,
    }

    const TRANSPORTS: [Transport; 2] = [Transport::Udp, Transport::Tcp];

    fn question(name: &str, query_type: RecordType) -> Message {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(
            Name::from_ascii(name).expect("a name"),
            query_type,
        ));
        message
    }

    /// Sends `message` from `source` to `server`; the reply, or `None`
    /// when none comes (nothing listens, or silence).
    async fn exchange(
        transport: Transport,
        source: Ipv4Addr,
        server: SocketAddr,
        message: &Message,
    ) -> Option<Message> {
        let query = message.to_vec().expect("encode the query");
        let reply = tokio::time::timeout(PATIENCE, async {
            match transport {
                Transport::Udp => {
                    let socket = UdpSocket::bind((source, 0)).await?;
                    socket.connect(server).await?;
                    socket.send(&query).await?;
                    let mut reply = vec![0; usize::from(u16::MAX)];
                    let len = socket.recv(&mut reply).await?;
                    reply.truncate(len);
                    Ok::<_, std::io::Error>(reply)
                }
                Transport::Tcp => {
                    let socket = TcpSocket::new_v4()?;
                    socket.bind((source, 0).into())?;
                    let mut stream = socket.connect(server).await?;
                    write_framed(&mut stream, &query).await?;
                    read_framed(&mut stream).await
                }
            }
        })
        .await
        .ok()?
        .ok()?;
        Some(Message::from_vec(&reply).expect("the reply is a DNS message"))
    }

    async fn write_framed(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<()> {
        let len = u16::try_from(message.len()).expect("a message fits a frame");
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(message).await
    }

    async fn read_framed(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        let len = stream.read_u16().await?;
        let mut message = vec![0; usize::from(len)];
        stream.read_exact(&mut message).await?;
        Ok(message)
    }

    /// Asks `server` from 127.0.0.1 and expects a reply to that question.
    async fn ask(
        transport: Transport,
        server: SocketAddr,
        name: &str,
        query_type: RecordType,
    ) -> Message {
        let query = question(name, query_type);
        let reply = exchange(transport, Ipv4Addr::LOCALHOST, server, &query)
            .await
            .unwrap_or_else(|| panic!("no reply to {name} over {transport:?}"));
        assert_eq!(reply.metadata.id, query.metadata.id);
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        reply
    }

    fn addresses(records: &[Record]) -> Vec<Ipv4Addr> {
        records
            .iter()
            .filter_map(|record| match &record.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    /// An upstream DNS server on a loopback port, UDP and TCP, answering
    /// every name with [`UPSTREAM_ANSWER`], `large.…` with 60 addresses
    /// and never answering `silent.…`; it keeps every query it receives.
    struct FakeUpstream {
        addr: SocketAddr,
        received: Received,
    }

    /// Every query an upstream received, and how.
    type Received = Arc<Mutex<Vec<(Transport, Vec<u8>)>>>;

    impl FakeUpstream {
        async fn start() -> FakeUpstream {
            let addr = free_address();
            let udp = UdpSocket::bind(addr).await.expect("bind the upstream");
            let tcp = TcpListener::bind(addr)
                .await
                .expect("listen as the upstream");
            let received = Received::default();
            let seen = received.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0; usize::from(u16::MAX)];
                while let Ok((len, from)) = udp.recv_from(&mut buffer).await {
                    let query = buffer[..len].to_vec();
                    seen.lock()
                        .expect("lock")
                        .push((Transport::Udp, query.clone()));
                    if let Some(answer) = FakeUpstream::answer(&query) {
                        let _ = udp.send_to(&answer, from).await;
                    }
                }
            });
            let seen = received.clone();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = tcp.accept().await {
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        while let Ok(query) = read_framed(&mut stream).await {
                            seen.lock()
                                .expect("lock")
                                .push((Transport::Tcp, query.clone()));
                            match FakeUpstream::answer(&query) {
                                Some(answer) => {
                                    let _ = write_framed(&mut stream, &answer).await;
                                }
                                None => std::future::pending::<()>().await,
                            }
                        }
                    });
                }
            });
            FakeUpstream { addr, received }
        }

        fn answer(query: &[u8]) -> Option<Vec<u8>> {
            let query = Message::from_vec(query).expect("the server relays DNS messages");
            let asked = query.queries.first().expect("a question").name().clone();
            let first = asked.iter().next().unwrap_or_default();
            if first == b"silent" {
                return None;
            }
            let count = if first == b"large" { 60 } else { 1 };
            let mut answer = Message::response(query.metadata.id, OpCode::Query);
            answer.metadata.recursion_desired = query.metadata.recursion_desired;
            answer.metadata.recursion_available = true;
            answer.add_queries(query.queries.clone());
            for _ in 0..count {
                answer.add_answer(Record::from_rdata(
                    asked.clone(),
                    300,
                    RData::A(A(UPSTREAM_ANSWER)),
                ));
            }
            Some(answer.to_vec().expect("encode the answer"))
        }

        fn received(&self) -> Vec<(Transport, Vec<u8>)> {
            self.received.lock().expect("lock").clone()
        }
    }

    struct Harness {
        dns: Dns,
        registry: Registry,
        metrics: DnsMetrics,
        shutdown: CancellationToken,
    }

    fn harness(upstreams: Vec<SocketAddr>) -> Harness {
        harness_with_forward_limit(upstreams, MAX_FORWARDS_PER_LISTENER)
    }

    fn harness_with_forward_limit(upstreams: Vec<SocketAddr>, max_forwards: usize) -> Harness {
        let registry = Registry::new();
        let metrics = DnsMetrics::new(&registry).expect("metrics");
        let shutdown = CancellationToken::new();
        let settings = DnsSettings {
            upstreams,
            upstream_timeout: UPSTREAM_TIMEOUT,
            ..DnsSettings::default()
        };
        Harness {
            dns: Dns::with_forward_limit(settings, metrics.clone(), shutdown.clone(), max_forwards),
            registry,
            metrics,
            shutdown,
        }
    }

    impl Harness {
        fn queries(&self, tenant: &str, result: &str) -> u64 {
            self.metrics
                .queries
                .with_label_values(&[tenant, result])
                .get()
        }
    }

    fn listener(tenant: &str, listen: SocketAddr, clients: &str) -> DnsListener {
        DnsListener {
            tenant: tenant.to_owned(),
            listen,
            clients: clients.parse().expect("a subnet"),
        }
    }

    /// Tenant `acme`'s Service `web` with port `http` 80, and tenant
    /// `beta`'s Service `api`.
    pub(super) fn services() -> Vec<ServiceName> {
        vec![
            ServiceName {
                tenant: "acme".into(),
                name: "web".into(),
                address: WEB,
                ports: vec![NamedPort {
                    name: "http".into(),
                    port: 80,
                }],
            },
            ServiceName {
                tenant: "beta".into(),
                name: "api".into(),
                address: API,
                ports: vec![],
            },
        ]
    }

    /// Tenant `acme` listening on `listen` for `clients`, with Service
    /// `web`; tenant `beta` with Service `api` and no listener.
    fn table(listen: SocketAddr, clients: &str) -> DnsTable {
        DnsTable {
            listeners: vec![listener("acme", listen, clients)],
            services: services(),
            tenants: BTreeSet::from(["acme".into(), "beta".into()]),
        }
    }

    /// A server with [`table`] applied on a free address, for clients on
    /// 127.0.0.1.
    async fn serving(upstreams: Vec<SocketAddr>) -> (Harness, SocketAddr) {
        let h = harness(upstreams);
        let listen = free_address();
        let unbound = h.dns.apply(table(listen, "127.0.0.1/32")).await;
        assert!(unbound.is_empty());
        (h, listen)
    }

    #[tokio::test]
    async fn a_service_is_answered_under_its_four_names_over_udp_and_tcp() {
        let (h, listen) = serving(vec![]).await;
        for transport in TRANSPORTS {
            for name in WEB_NAMES {
                let reply = ask(transport, listen, name, RecordType::A).await;
                assert_eq!(
                    reply.metadata.response_code,
                    ResponseCode::NoError,
                    "{name}"
                );
                assert!(reply.metadata.authoritative, "{name}");
                assert_eq!(addresses(&reply.answers), vec![WEB], "{name}");
                assert_eq!(reply.answers[0].ttl, 5);
                // The name as asked, its case kept.
                assert_eq!(
                    reply.answers[0].name.to_ascii().trim_end_matches('.'),
                    name.trim_end_matches('.')
                );
            }
        }
        assert_eq!(h.queries("acme", "answered"), 12);
    }

    #[tokio::test]
    async fn other_types_on_a_service_name_are_answered_with_no_data() {
        let (_h, listen) = serving(vec![]).await;
        for query_type in [RecordType::AAAA, RecordType::TXT] {
            let reply = ask(Transport::Udp, listen, "web.acme", query_type).await;
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
            assert!(reply.metadata.authoritative);
            assert!(reply.answers.is_empty());
        }
    }

    #[tokio::test]
    async fn srv_gives_the_named_port_with_the_target_address_alongside() {
        let (_h, listen) = serving(vec![]).await;
        let target = Name::from_ascii("web.acme.svc.cluster.local.").expect("name");
        for transport in TRANSPORTS {
            for name in ["_http._tcp.web", "_http._tcp.web.acme.svc.cluster.local"] {
                let reply = ask(transport, listen, name, RecordType::SRV).await;
                assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
                assert_eq!(reply.answers.len(), 1);
                assert_eq!(
                    reply.answers[0].data,
                    RData::SRV(SRV::new(0, 100, 80, target.clone()))
                );
                assert_eq!(addresses(&reply.additionals), vec![WEB]);
                assert_eq!(reply.additionals[0].name, target);
            }
        }
        let unknown = ask(Transport::Udp, listen, "_grpc._tcp.web", RecordType::SRV).await;
        assert_eq!(unknown.metadata.response_code, ResponseCode::NXDomain);
    }

    #[tokio::test]
    async fn other_tenants_services_and_cluster_names_are_nxdomain_and_never_forwarded() {
        let upstream = FakeUpstream::start().await;
        let (h, listen) = serving(vec![upstream.addr]).await;
        for transport in TRANSPORTS {
            let cluster_names = ["db.acme", "x.cluster.local", "anything.svc"];
            for name in API_NAMES.into_iter().chain(cluster_names) {
                let reply = ask(transport, listen, name, RecordType::A).await;
                assert_eq!(
                    reply.metadata.response_code,
                    ResponseCode::NXDomain,
                    "{name}"
                );
                assert!(reply.metadata.authoritative, "{name}");
                assert!(reply.answers.is_empty(), "{name}");
            }
        }
        assert!(upstream.received().is_empty());
        assert_eq!(h.queries("acme", "nxdomain"), 16);
    }

    #[tokio::test]
    async fn a_client_outside_the_listener_subnet_is_refused_and_learns_nothing() {
        let upstream = FakeUpstream::start().await;
        let h = harness(vec![upstream.addr]);
        let listen = free_address();
        h.dns.apply(table(listen, "127.0.0.2/32")).await;
        for transport in TRANSPORTS {
            for name in ["web", "web.acme.svc.cluster.local", "example.com"] {
                let query = question(name, RecordType::A);
                let refused = exchange(transport, Ipv4Addr::LOCALHOST, listen, &query)
                    .await
                    .expect("a reply");
                assert_eq!(
                    refused.metadata.response_code,
                    ResponseCode::Refused,
                    "{name}"
                );
                assert!(refused.answers.is_empty() && refused.additionals.is_empty());
            }
            let inside = exchange(
                transport,
                Ipv4Addr::new(127, 0, 0, 2),
                listen,
                &question("web", RecordType::A),
            )
            .await
            .expect("a reply");
            assert_eq!(addresses(&inside.answers), vec![WEB]);
        }
        assert!(upstream.received().is_empty());
        assert_eq!(h.queries("acme", "refused"), 6);
        assert_eq!(h.queries("acme", "answered"), 2);
    }

    #[tokio::test]
    async fn other_names_are_relayed_to_the_upstream_as_sent_over_the_clients_transport() {
        let upstream = FakeUpstream::start().await;
        let (h, listen) = serving(vec![upstream.addr]).await;
        for (i, transport) in TRANSPORTS.into_iter().enumerate() {
            let query = question("www.example.com", RecordType::A);
            let reply = exchange(transport, Ipv4Addr::LOCALHOST, listen, &query)
                .await
                .expect("a reply");
            assert_eq!(reply.metadata.id, query.metadata.id);
            assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
            assert!(!reply.metadata.authoritative);
            assert_eq!(addresses(&reply.answers), vec![UPSTREAM_ANSWER]);
            assert_eq!(
                upstream.received()[i],
                (transport, query.to_vec().expect("encode"))
            );
        }
        assert_eq!(h.queries("acme", "forwarded"), 2);
    }

    #[tokio::test]
    async fn an_upstream_that_fails_is_passed_over_for_the_next() {
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind a silent upstream");
        let refusing = free_address();
        let upstream = FakeUpstream::start().await;
        let (h, listen) = serving(vec![
            silent.local_addr().expect("address"),
            refusing,
            upstream.addr,
        ])
        .await;
        let reply = ask(Transport::Udp, listen, "example.com", RecordType::A).await;
        assert_eq!(addresses(&reply.answers), vec![UPSTREAM_ANSWER]);
        for failed in [silent.local_addr().expect("address"), refusing] {
            assert_eq!(
                h.metrics
                    .upstream_failures
                    .with_label_values(&[&failed.to_string()])
                    .get(),
                1
            );
        }
    }

    #[tokio::test]
    async fn servfail_when_no_upstream_answers_in_time() {
        let upstream = FakeUpstream::start().await;
        let (h, listen) = serving(vec![upstream.addr]).await;
        for transport in TRANSPORTS {
            let started = tokio::time::Instant::now();
            let reply = ask(transport, listen, "silent.example.com", RecordType::A).await;
            assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
            assert!(started.elapsed() >= UPSTREAM_TIMEOUT);
        }
        assert_eq!(upstream.received().len(), 2);
        assert_eq!(h.queries("acme", "failed"), 2);
    }

    #[tokio::test]
    async fn servfail_at_once_when_there_is_no_upstream() {
        let (h, listen) = serving(vec![]).await;
        let started = tokio::time::Instant::now();
        let reply = ask(Transport::Udp, listen, "example.com", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        assert!(started.elapsed() < UPSTREAM_TIMEOUT);
        assert_eq!(h.queries("acme", "failed"), 1);
    }

    #[tokio::test]
    async fn queries_beyond_the_forward_limit_get_servfail_at_once() {
        let upstream = FakeUpstream::start().await;
        let h = harness_with_forward_limit(vec![upstream.addr], 1);
        let listen = free_address();
        h.dns.apply(table(listen, "127.0.0.1/32")).await;

        let waiting = tokio::spawn(async move {
            ask(Transport::Udp, listen, "silent.example.com", RecordType::A).await
        });
        tokio::time::timeout(PATIENCE, async {
            while upstream.received().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the upstream is asked");
        let started = tokio::time::Instant::now();
        let over = ask(Transport::Udp, listen, "example.com", RecordType::A).await;
        assert_eq!(over.metadata.response_code, ResponseCode::ServFail);
        assert!(started.elapsed() < UPSTREAM_TIMEOUT);
        assert_eq!(upstream.received().len(), 1);

        let waited = waiting.await.expect("the first query ends");
        assert_eq!(waited.metadata.response_code, ResponseCode::ServFail);
        // The permit is back: the next query is forwarded.
        let after = ask(Transport::Udp, listen, "example.com", RecordType::A).await;
        assert_eq!(addresses(&after.answers), vec![UPSTREAM_ANSWER]);
        assert_eq!(h.queries("acme", "failed"), 2);
        assert_eq!(h.queries("acme", "forwarded"), 1);
    }

    #[tokio::test]
    async fn a_udp_reply_larger_than_the_client_takes_is_truncated_and_whole_over_tcp() {
        let upstream = FakeUpstream::start().await;
        let (_h, listen) = serving(vec![upstream.addr]).await;

        let small = ask(Transport::Udp, listen, "large.example.com", RecordType::A).await;
        assert!(small.metadata.truncation);
        assert!(small.answers.len() < 60);
        assert!(small.edns.is_none());

        let whole = ask(Transport::Tcp, listen, "large.example.com", RecordType::A).await;
        assert!(!whole.metadata.truncation);
        assert_eq!(whole.answers.len(), 60);

        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        let mut query = question("large.example.com", RecordType::A);
        query.set_edns(edns);
        let large = exchange(Transport::Udp, Ipv4Addr::LOCALHOST, listen, &query)
            .await
            .expect("a reply");
        assert!(!large.metadata.truncation);
        assert_eq!(large.answers.len(), 60);
        assert_eq!(large.edns.expect("an OPT record").max_payload(), 4096);
    }

    #[tokio::test]
    async fn an_edns_version_the_server_does_not_speak_gets_badvers() {
        let (_h, listen) = serving(vec![]).await;
        let mut edns = Edns::new();
        edns.set_version(1);
        let mut query = question("web", RecordType::A);
        query.set_edns(edns);
        let reply = exchange(Transport::Udp, Ipv4Addr::LOCALHOST, listen, &query)
            .await
            .expect("a reply");
        // BADVERS shares its code, 16, with BADSIG, which it reads as.
        assert_eq!(
            u16::from(reply.metadata.response_code),
            u16::from(ResponseCode::BADVERS)
        );
        assert!(reply.answers.is_empty());
    }

    #[tokio::test]
    async fn a_changed_table_changes_answers_and_a_removed_listener_stops_answering() {
        let h = harness(vec![]);
        let acme = free_address();
        let beta = free_address();
        let mut first = table(acme, "127.0.0.0/8");
        first.listeners.push(listener("beta", beta, "127.0.0.0/8"));
        assert!(h.dns.apply(first.clone()).await.is_empty());
        let api = ask(Transport::Udp, beta, "api", RecordType::A).await;
        assert_eq!(addresses(&api.answers), vec![API]);
        // A tenant's own listener does not answer another tenant's names.
        let web = ask(Transport::Udp, beta, "web.acme", RecordType::A).await;
        assert_eq!(web.metadata.response_code, ResponseCode::NXDomain);

        let moved = Ipv4Addr::new(10, 96, 0, 11);
        let mut second = table(acme, "127.0.0.0/8");
        second.services[0].address = moved;
        assert!(h.dns.apply(second).await.is_empty());

        for transport in TRANSPORTS {
            let web = ask(transport, acme, "web", RecordType::A).await;
            assert_eq!(addresses(&web.answers), vec![moved]);
            let gone = exchange(
                transport,
                Ipv4Addr::LOCALHOST,
                beta,
                &question("api", RecordType::A),
            )
            .await;
            assert!(gone.is_none(), "{transport:?}: {gone:?}");
        }
        let tenants: Vec<String> = h
            .registry
            .gather()
            .iter()
            .flat_map(|family| family.get_metric())
            .flat_map(|metric| metric.get_label())
            .filter(|label| label.name() == "tenant")
            .map(|label| label.value().to_owned())
            .collect();
        assert!(tenants.iter().any(|t| t == "acme"));
        assert!(!tenants.iter().any(|t| t == "beta"));
    }

    #[tokio::test]
    async fn an_address_in_use_is_reported_and_bound_at_a_later_apply() {
        let h = harness(vec![]);
        let holder = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("hold a port");
        let taken = holder.local_addr().expect("held address");
        let free = free_address();
        let mut both = table(free, "127.0.0.1/32");
        both.listeners.push(listener("beta", taken, "127.0.0.1/32"));

        assert_eq!(h.dns.apply(both.clone()).await, vec![taken]);
        assert_eq!(
            h.metrics.bind_failures.with_label_values(&["beta"]).get(),
            1
        );
        let web = ask(Transport::Udp, free, "web", RecordType::A).await;
        assert_eq!(addresses(&web.answers), vec![WEB]);

        drop(holder);
        assert!(h.dns.apply(both).await.is_empty());
        let api = ask(Transport::Tcp, taken, "api", RecordType::A).await;
        assert_eq!(addresses(&api.answers), vec![API]);
    }

    #[tokio::test]
    async fn shutdown_closes_every_listener() {
        let (h, listen) = serving(vec![]).await;
        ask(Transport::Udp, listen, "web", RecordType::A).await;

        h.shutdown.cancel();
        tokio::time::timeout(PATIENCE, h.dns.stopped())
            .await
            .expect("every listener closes");
        for transport in TRANSPORTS {
            let reply = exchange(
                transport,
                Ipv4Addr::LOCALHOST,
                listen,
                &question("web", RecordType::A),
            )
            .await;
            assert!(reply.is_none(), "{transport:?}");
        }
    }

    #[test]
    fn resolv_conf_nameservers_become_the_upstreams_on_port_53() {
        let settings = DnsSettings::from_resolv_conf(
            "# generated\nsearch example.com\nnameserver 127.0.0.53\n\
             options edns0\nnameserver ::1\nnameserver fe80::1%eth0\n; nameserver 127.0.0.9\n",
        );
        assert_eq!(
            settings.upstreams,
            vec![
                "127.0.0.53:53".parse::<SocketAddr>().expect("address"),
                "[::1]:53".parse().expect("address"),
            ]
        );
        assert_eq!(settings.ttl, 5);
        assert_eq!(settings.upstream_timeout, Duration::from_secs(2));
    }
}
