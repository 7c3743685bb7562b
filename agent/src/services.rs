//! Services on this node: what kube-proxy and cluster DNS do, fed by the
//! server's `WatchServices` stream of every Service and EndpointSlice.
//!
//! [`NodeServices`] keeps the stream's objects and, after every change,
//! converges the node to them:
//! - each Service gets, on each of this node's tenant networks of its
//!   tenant, a virtual address from the network's services half
//!   ([`crate::runtime::docker::network`]): kept for the Service's life
//!   (in `<state-dir>/services/`, so a restarted agent keeps it), added to
//!   the bridge, and served by the proxy for that network's containers
//!   only;
//! - the [`Proxy`] listens on every `NodePort` (and a `LoadBalancer`'s own
//!   port) on the node's address for everyone, and on each virtual
//!   address, and forwards to the Service's endpoints: a pod on this node
//!   at its address on the bridge, a pod elsewhere at its node's published
//!   port;
//! - the [`Dns`] server on each network's gateway answers the tenant's
//!   Service names;
//! - [`ServiceLinks`] gives containers started afterwards Kubernetes'
//!   `<NAME>_SERVICE_HOST` environment.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use berth_api::node::v1 as pb;
use berth_api::objects::discovery::{EndpointSlice, SERVICE_NAME_LABEL};
use berth_api::objects::pod::Protocol;
use berth_api::objects::service::{Service, ServicePort, ServiceType, SessionAffinity};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

use crate::connection::{Backoff, NodeClient};
use crate::dns::{Dns, DnsListener, DnsTable, NamedPort, ServiceName};
use crate::proxy::{self, Backend, Proxy, ProxyRule, ProxyTable};
use crate::runtime::docker::network::{self, TenantNetwork};
use crate::subnet::Subnet;

/// How often the host's addresses and rules are set again whole.
const RESYNC: std::time::Duration = std::time::Duration::from_secs(60);

/// The port the DNS server listens on, on each network's gateway.
const DNS_PORT: u16 = 53;

/// A Service or slice by tenant and name.
type ObjectKey = (String, String);

/// What the node's service plumbing needs to know of the node.
#[derive(Clone, Debug)]
pub struct ServiceSettings {
    /// The node's name (EndpointSlice endpoints on it are local).
    pub node: String,
    /// The node's address: where node ports listen.
    pub address: IpAddr,
    /// The tenant networks' pool (isolation rules refuse the rest of it).
    pub pool: Subnet,
    /// Where virtual address assignments are kept.
    pub state_dir: PathBuf,
}

/// The Services a tenant's containers on this node are told of in their
/// environment; shared with the runtime.
#[derive(Debug, Default)]
pub struct ServiceLinks {
    tenants: RwLock<HashMap<String, Vec<LinkedService>>>,
    /// The tenant networks whose Services are in `tenants` (by name).
    networks: watch::Sender<BTreeSet<String>>,
}

/// One Service as a container's environment shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LinkedService {
    name: String,
    address: Ipv4Addr,
    /// TCP ports: name (if any) and number.
    ports: Vec<(Option<String>, u16)>,
}

impl ServiceLinks {
    /// Kubernetes' service environment variables (`WEB_SERVICE_HOST`,
    /// `WEB_SERVICE_PORT`, `WEB_PORT_8080_TCP_ADDR`, …) for a container of
    /// `tenant` starting now, as `NAME=value`.
    pub fn environment(&self, tenant: &str) -> Vec<String> {
        let tenants = self.tenants.read().unwrap_or_else(PoisonError::into_inner);
        let mut env = Vec::new();
        for service in tenants.get(tenant).into_iter().flatten() {
            let Some((_, first)) = service.ports.first() else {
                continue;
            };
            let prefix = service.name.to_uppercase().replace('-', "_");
            let host = service.address;
            env.push(format!("{prefix}_SERVICE_HOST={host}"));
            env.push(format!("{prefix}_SERVICE_PORT={first}"));
            env.push(format!("{prefix}_PORT=tcp://{host}:{first}"));
            for (name, port) in &service.ports {
                if let Some(name) = name {
                    let name = name.to_uppercase().replace('-', "_");
                    env.push(format!("{prefix}_SERVICE_PORT_{name}={port}"));
                }
                let link = format!("{prefix}_PORT_{port}_TCP");
                env.push(format!("{link}=tcp://{host}:{port}"));
                env.push(format!("{link}_PROTO=tcp"));
                env.push(format!("{link}_PORT={port}"));
                env.push(format!("{link}_ADDR={host}"));
            }
        }
        env
    }

    /// Waits (at most `limit`) until the Services of the tenant network
    /// `network` are known: a network made just now gets its service
    /// addresses at the next convergence. Whether they are.
    pub async fn wait_for(&self, network: &str, limit: std::time::Duration) -> bool {
        let mut networks = self.networks.subscribe();
        tokio::time::timeout(limit, networks.wait_for(|known| known.contains(network)))
            .await
            .is_ok_and(|known| known.is_ok())
    }

    fn replace(&self, links: HashMap<String, Vec<LinkedService>>, networks: BTreeSet<String>) {
        *self.tenants.write().unwrap_or_else(PoisonError::into_inner) = links;
        self.networks.send_if_modified(|known| {
            let changed = *known != networks;
            *known = networks;
            changed
        });
    }
}

/// The node's Services: the objects from the server and the addresses
/// given out on this node.
pub struct NodeServices {
    settings: ServiceSettings,
    proxy: Proxy,
    dns: Dns,
    links: Arc<ServiceLinks>,
    services: BTreeMap<ObjectKey, Service>,
    slices: BTreeMap<ObjectKey, EndpointSlice>,
    /// Per network name: Service uid → its virtual address there.
    assigned: BTreeMap<String, BTreeMap<String, Ipv4Addr>>,
    /// What the host was last given (addresses per network, and the
    /// networks isolated), so that the host's tools run only on a change
    /// or at a resync.
    plumbed: Plumbed,
}

/// The host state the agent last set.
#[derive(Default)]
struct Plumbed {
    addresses: BTreeMap<String, Vec<Ipv4Addr>>,
    /// `None`: not known, set them.
    isolated: Option<Vec<TenantNetwork>>,
}

/// The objects of a snapshot being received.
#[derive(Default)]
struct Snapshot {
    services: BTreeMap<ObjectKey, Service>,
    slices: BTreeMap<ObjectKey, EndpointSlice>,
}

impl NodeServices {
    /// The plumbing of a node, serving nothing until the first snapshot.
    pub fn new(
        settings: ServiceSettings,
        proxy: Proxy,
        dns: Dns,
        links: Arc<ServiceLinks>,
    ) -> NodeServices {
        NodeServices {
            settings,
            proxy,
            dns,
            links,
            services: BTreeMap::new(),
            slices: BTreeMap::new(),
            assigned: BTreeMap::new(),
            plumbed: Plumbed::default(),
        }
    }

    /// Follows the server's Services (with the client of the node's
    /// latest registration) and the node's tenant networks until
    /// `shutdown`, converging the node after each change.
    pub async fn run(
        mut self,
        mut client: watch::Receiver<Option<NodeClient>>,
        mut networks: watch::Receiver<BTreeMap<String, TenantNetwork>>,
        shutdown: CancellationToken,
    ) {
        let mut stream: Option<Streaming<pb::ServiceEvent>> = None;
        let mut snapshot: Option<Snapshot> = None;
        let mut backoff = Backoff::new();
        let mut reopen_at = Instant::now();
        let mut synced = false;
        // Now and then the host is set again whole, in case something
        // else changed it.
        let mut resync = tokio::time::interval(RESYNC);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if stream.is_none() && Instant::now() >= reopen_at {
                let current = client.borrow_and_update().clone();
                match current {
                    None => reopen_at = Instant::now() + std::time::Duration::from_secs(3600),
                    Some(mut current) => {
                        match current.watch_services(pb::WatchServicesRequest {}).await {
                            Ok(opened) => {
                                stream = Some(opened.into_inner());
                                snapshot = Some(Snapshot::default());
                            }
                            Err(status) => {
                                tracing::debug!(%status, "opening the service watch failed");
                                reopen_at = Instant::now() + backoff.next_delay();
                            }
                        }
                    }
                }
            }
            let mut dirty = false;
            tokio::select! {
                () = shutdown.cancelled() => break,
                changed = client.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    // Registered again: watch with the new credential.
                    stream = None;
                    reopen_at = Instant::now();
                }
                changed = networks.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    dirty = true;
                }
                _ = resync.tick() => {
                    self.plumbed = Plumbed::default();
                    dirty = true;
                }
                message = next_event(&mut stream) => match message {
                    Some(event) => {
                        backoff.reset();
                        dirty = self.receive(event, &mut snapshot);
                        // Take what else has arrived before converging once.
                        while let Some(Some(event)) = stream
                            .as_mut()
                            .and_then(|s| futures::FutureExt::now_or_never(s.message()))
                            .map(|m| m.ok().flatten())
                        {
                            dirty |= self.receive(event, &mut snapshot);
                        }
                    }
                    None => {
                        tracing::debug!("the service watch ended; watching again");
                        stream = None;
                        snapshot = None;
                        reopen_at = Instant::now() + backoff.next_delay();
                    }
                },
                () = tokio::time::sleep_until(reopen_at), if stream.is_none() => {}
            }
            if dirty && snapshot.is_none() {
                synced = true;
            }
            if dirty && synced {
                let current = networks.borrow_and_update().clone();
                self.converge(&current).await;
            }
        }
    }

    /// Takes one event; whether the node must converge now.
    fn receive(&mut self, event: pb::ServiceEvent, snapshot: &mut Option<Snapshot>) -> bool {
        use pb::service_event::Type;
        let kind = event.r#type();
        if kind == Type::Bookmark {
            if event.initial_events_end
                && let Some(done) = snapshot.take()
            {
                self.services = done.services;
                self.slices = done.slices;
                return true;
            }
            return false;
        }
        let (services, slices) = match snapshot.as_mut() {
            Some(snapshot) => (&mut snapshot.services, &mut snapshot.slices),
            None => (&mut self.services, &mut self.slices),
        };
        let deleted = kind == Type::Deleted;
        let parsed = match event.kind.as_str() {
            "Service" => serde_json::from_str::<Service>(&event.object_json).map(|service| {
                let key = key_of(&service.metadata);
                if deleted {
                    services.remove(&key);
                } else {
                    services.insert(key, service);
                }
            }),
            "EndpointSlice" => {
                serde_json::from_str::<EndpointSlice>(&event.object_json).map(|slice| {
                    let key = key_of(&slice.metadata);
                    if deleted {
                        slices.remove(&key);
                    } else {
                        slices.insert(key, slice);
                    }
                })
            }
            other => {
                tracing::debug!(kind = other, "an unknown kind in the service watch");
                return false;
            }
        };
        if let Err(error) = parsed {
            tracing::warn!(kind = event.kind, %error, "a service watch object could not be read");
            return false;
        }
        snapshot.is_none()
    }

    /// Makes the node serve the Services it holds.
    #[tracing::instrument(skip_all, fields(services = self.services.len()))]
    async fn converge(&mut self, networks: &BTreeMap<String, TenantNetwork>) {
        let served: Vec<&TenantNetwork> = networks
            .values()
            .filter(|network| network.services.is_some())
            .collect();
        // Virtual addresses, on the bridges before anything binds them.
        let mut addresses: BTreeMap<ObjectKey, (Ipv4Addr, Subnet)> = BTreeMap::new();
        for network in &served {
            let wanted: Vec<(&ObjectKey, &Service)> = self
                .services
                .iter()
                .filter(|((tenant, _), service)| {
                    *tenant == network.tenant && has_virtual_address(service)
                })
                .collect();
            let assigned = self
                .assigned
                .entry(network.name.clone())
                .or_insert_with(|| load_assignments(&self.settings.state_dir, network));
            if assign(assigned, network, &wanted) {
                save_assignments(&self.settings.state_dir, network, assigned);
            }
            for (key, service) in &wanted {
                if let Some(address) = assigned.get(&uid_of(service)) {
                    addresses.insert((*key).clone(), (*address, network.subnet));
                }
            }
            let mut on_bridge: Vec<Ipv4Addr> = assigned.values().copied().collect();
            on_bridge.sort();
            if self.plumbed.addresses.get(&network.name) != Some(&on_bridge) {
                match network::converge_addresses(network, &on_bridge).await {
                    Ok(()) => {
                        self.plumbed
                            .addresses
                            .insert(network.name.clone(), on_bridge);
                    }
                    Err(error) => {
                        self.plumbed.addresses.remove(&network.name);
                        tracing::warn!(network = network.name, %error, "service addresses could not be set");
                    }
                }
            }
        }
        self.assigned
            .retain(|name, _| served.iter().any(|network| network.name == *name));
        self.plumbed
            .addresses
            .retain(|name, _| served.iter().any(|network| network.name == *name));
        let isolated: Vec<TenantNetwork> = served.iter().map(|n| (*n).clone()).collect();
        if self.plumbed.isolated.as_ref() != Some(&isolated) {
            match network::converge_isolation(&served, self.settings.pool, &self.settings.node)
                .await
            {
                Ok(()) => self.plumbed.isolated = Some(isolated),
                Err(error) => {
                    self.plumbed.isolated = None;
                    tracing::warn!(%error, "tenant isolation rules could not be set");
                }
            }
        }

        let table = self.proxy_table(&addresses);
        for unbound in self.proxy.apply(table).await {
            tracing::debug!(%unbound, "a service listener waits for its address");
        }

        let mut tenants: BTreeSet<String> = self
            .services
            .keys()
            .map(|(tenant, _)| tenant.clone())
            .collect();
        tenants.extend(networks.keys().cloned());
        let dns = DnsTable {
            listeners: served
                .iter()
                .map(|network| DnsListener {
                    tenant: network.tenant.clone(),
                    listen: SocketAddr::from((network.gateway, DNS_PORT)),
                    clients: network.subnet,
                })
                .collect(),
            services: addresses
                .iter()
                .map(|((tenant, name), (address, _))| ServiceName {
                    tenant: tenant.clone(),
                    name: name.clone(),
                    address: *address,
                    ports: tcp_ports(&self.services[&(tenant.clone(), name.clone())])
                        .filter_map(|port| {
                            Some(NamedPort {
                                name: port.name.clone().filter(|n| !n.is_empty())?,
                                port: u16::try_from(port.port).ok()?,
                            })
                        })
                        .collect(),
                })
                .collect(),
            tenants,
        };
        for unbound in self.dns.apply(dns).await {
            tracing::warn!(%unbound, "the DNS server cannot listen there");
        }

        let mut links: HashMap<String, Vec<LinkedService>> = HashMap::new();
        for ((tenant, name), (address, _)) in &addresses {
            let service = &self.services[&(tenant.clone(), name.clone())];
            links
                .entry(tenant.clone())
                .or_default()
                .push(LinkedService {
                    name: name.clone(),
                    address: *address,
                    ports: tcp_ports(service)
                        .filter_map(|p| Some((p.name.clone(), u16::try_from(p.port).ok()?)))
                        .collect(),
                });
        }
        let converged = served.iter().map(|network| network.name.clone()).collect();
        self.links.replace(links, converged);
    }

    /// The proxy's rules: node ports for everyone, virtual addresses for
    /// their network.
    fn proxy_table(&self, addresses: &BTreeMap<ObjectKey, (Ipv4Addr, Subnet)>) -> ProxyTable {
        let mut rules = Vec::new();
        for (key, service) in &self.services {
            let (tenant, name) = key;
            let affinity = match service.spec.session_affinity {
                Some(SessionAffinity::ClientIp) => proxy::SessionAffinity::client_ip(),
                _ => proxy::SessionAffinity::None,
            };
            let kind = service.spec.type_.unwrap_or_default();
            for port in tcp_ports(service) {
                let backends = self.backends(key, port);
                let rule_name = format!(
                    "{tenant}/{name}:{}",
                    port.name
                        .clone()
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| port.port.to_string())
                );
                let mut rule = |listen: SocketAddr, clients: Option<Subnet>| {
                    rules.push(ProxyRule {
                        name: rule_name.clone(),
                        listen,
                        backends: backends.clone(),
                        affinity,
                        clients,
                    });
                };
                let Ok(service_port) = u16::try_from(port.port) else {
                    continue;
                };
                if kind != ServiceType::ClusterIP
                    && let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok())
                {
                    rule(SocketAddr::new(self.settings.address, node_port), None);
                }
                if kind == ServiceType::LoadBalancer {
                    rule(SocketAddr::new(self.settings.address, service_port), None);
                }
                if let Some((address, subnet)) = addresses.get(key) {
                    rule(SocketAddr::from((*address, service_port)), Some(*subnet));
                }
            }
        }
        ProxyTable { rules }
    }

    /// Where the connections of `port` of the Service at `key` go: each
    /// endpoint of its slices, on this node at the pod's address, on
    /// another at its node's published port.
    fn backends(&self, key: &ObjectKey, port: &ServicePort) -> Vec<Backend> {
        backends_of(self.slices.values(), &self.settings.node, key, port)
    }
}

/// Where the connections of `port` of the Service at `key` go, from
/// `slices`: each endpoint of the Service's slices, on node `node` at the
/// pod's address and container port, on another node at its `hostIP` and
/// host port.
fn backends_of<'a>(
    slices: impl Iterator<Item = &'a EndpointSlice>,
    node: &str,
    key: &ObjectKey,
    port: &ServicePort,
) -> Vec<Backend> {
    let (tenant, name) = key;
    let port_name = port.name.as_deref().unwrap_or("");
    let mut backends = Vec::new();
    for slice in slices.filter(|slice| {
        slice.metadata.tenant.as_deref() == Some(tenant)
            && slice.metadata.labels.get(SERVICE_NAME_LABEL) == Some(name)
    }) {
        let Some(slice_port) = slice
            .ports
            .iter()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let local = endpoint.node_name.as_deref() == Some(node);
            let addr = if local {
                endpoint
                    .addresses
                    .first()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .zip(u16::try_from(slice_port.port).ok())
            } else {
                endpoint
                    .host_ip
                    .as_deref()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .zip(
                        endpoint
                            .host_ports
                            .iter()
                            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
                            .and_then(|p| u16::try_from(p.port).ok()),
                    )
            };
            if let Some((ip, port)) = addr {
                backends.push(Backend::from_conditions(
                    SocketAddr::new(ip, port),
                    &endpoint.conditions,
                ));
            }
        }
    }
    backends.sort_by_key(|b| b.addr);
    backends
}

/// The next event of the watch, if one is open; `None` when it ended or
/// failed. Never ready without a watch.
async fn next_event(stream: &mut Option<Streaming<pb::ServiceEvent>>) -> Option<pb::ServiceEvent> {
    match stream {
        Some(stream) => stream.message().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

fn key_of(meta: &berth_api::objects::meta::ObjectMeta) -> ObjectKey {
    (meta.tenant.clone().unwrap_or_default(), meta.name.clone())
}

fn uid_of(service: &Service) -> String {
    service
        .metadata
        .uid
        .clone()
        .unwrap_or_else(|| service.metadata.name.clone())
}

/// Whether the Service is given an address (a headless one is not).
fn has_virtual_address(service: &Service) -> bool {
    service
        .spec
        .cluster_ip
        .as_deref()
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

/// The Service's TCP ports (the proxy forwards TCP only).
fn tcp_ports(service: &Service) -> impl Iterator<Item = &ServicePort> {
    service
        .spec
        .ports
        .iter()
        .filter(|port| port.protocol.unwrap_or_default() == Protocol::Tcp)
}

/// Gives each wanted Service an address on `network` and forgets the
/// others; whether anything changed. A new Service starts looking at a
/// place its cluster address picks, so that addresses are spread out and
/// rarely reused at once.
fn assign(
    assigned: &mut BTreeMap<String, Ipv4Addr>,
    network: &TenantNetwork,
    wanted: &[(&ObjectKey, &Service)],
) -> bool {
    let uids: BTreeSet<String> = wanted.iter().map(|(_, s)| uid_of(s)).collect();
    let before = assigned.len();
    assigned.retain(|uid, _| uids.contains(uid));
    let mut changed = assigned.len() != before;
    let free: Vec<Ipv4Addr> = network.service_addresses().collect();
    if free.is_empty() {
        return changed;
    }
    for (key, service) in wanted {
        let uid = uid_of(service);
        if assigned.contains_key(&uid) {
            continue;
        }
        let used: BTreeSet<Ipv4Addr> = assigned.values().copied().collect();
        let start = service
            .spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            .map_or(0, |ip| u32::from(ip) as usize % free.len());
        let pick = (0..free.len())
            .map(|i| free[(start + i) % free.len()])
            .find(|address| !used.contains(address));
        match pick {
            Some(address) => {
                assigned.insert(uid, address);
                changed = true;
            }
            None => tracing::warn!(
                service = %format!("{}/{}", key.0, key.1),
                network = network.name,
                "no service address is left on the tenant network"
            ),
        }
    }
    changed
}

fn assignments_path(state_dir: &std::path::Path, network: &TenantNetwork) -> PathBuf {
    state_dir
        .join("services")
        .join(format!("{}.json", network.name))
}

/// The addresses given out on `network` before (by an earlier run of the
/// agent), those still inside its services half.
fn load_assignments(
    state_dir: &std::path::Path,
    network: &TenantNetwork,
) -> BTreeMap<String, Ipv4Addr> {
    let path = assignments_path(state_dir, network);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return BTreeMap::new();
    };
    let mut assigned: BTreeMap<String, Ipv4Addr> = serde_json::from_str(&text).unwrap_or_else(|error| {
        tracing::warn!(path = %path.display(), %error, "service addresses on record could not be read");
        BTreeMap::new()
    });
    assigned.retain(|_, address| network.services.is_some_and(|half| half.contains(*address)));
    assigned
}

/// Records the addresses given out on `network` (written whole, then
/// renamed into place).
fn save_assignments(
    state_dir: &std::path::Path,
    network: &TenantNetwork,
    assigned: &BTreeMap<String, Ipv4Addr>,
) {
    let path = assignments_path(state_dir, network);
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_vec(assigned)?)?;
        std::fs::rename(&partial, &path)
    };
    if let Err(error) = write() {
        tracing::warn!(path = %path.display(), %error, "service addresses could not be recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn network() -> TenantNetwork {
        TenantNetwork {
            tenant: "acme".into(),
            name: "berth-n1-acme".into(),
            bridge: "br-0123456789ab".into(),
            subnet: "10.42.2.0/23".parse().unwrap(),
            gateway: "10.42.2.1".parse().unwrap(),
            services: Some("10.42.3.0/24".parse().unwrap()),
        }
    }

    fn service(name: &str, uid: &str, cluster_ip: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "tenant": "acme", "uid": uid},
            "spec": {"clusterIP": cluster_ip, "ports": [
                {"name": "http", "port": 8080},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ]}
        }))
        .unwrap()
    }

    #[test]
    fn addresses_are_kept_for_a_services_life_and_never_shared() {
        let network = network();
        let web = service("web", "u1", "10.43.0.10");
        let api = service("api", "u2", "10.43.1.10");
        let keys = [
            ("acme".to_owned(), "web".to_owned()),
            ("acme".to_owned(), "api".to_owned()),
        ];
        let mut assigned = BTreeMap::new();
        assert!(assign(
            &mut assigned,
            &network,
            &[(&keys[0], &web), (&keys[1], &api)]
        ));
        let first = assigned["u1"];
        assert!(network.services.unwrap().contains(first));
        assert_ne!(
            assigned["u1"], assigned["u2"],
            "two Services never share one"
        );
        // Nothing new: nothing changes.
        assert!(!assign(
            &mut assigned,
            &network,
            &[(&keys[0], &web), (&keys[1], &api)]
        ));
        // api goes; web keeps its address.
        assert!(assign(&mut assigned, &network, &[(&keys[0], &web)]));
        assert_eq!(assigned.len(), 1);
        assert_eq!(assigned["u1"], first);
    }

    #[test]
    fn assignments_survive_a_restart_of_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let network = network();
        let mut assigned = BTreeMap::from([
            ("u1".to_owned(), "10.42.3.7".parse().unwrap()),
            // Outside the services half: dropped on load.
            ("u2".to_owned(), "10.42.2.7".parse().unwrap()),
        ]);
        save_assignments(dir.path(), &network, &assigned);
        assigned.remove("u2");
        assert_eq!(load_assignments(dir.path(), &network), assigned);
    }

    #[test]
    fn the_environment_names_each_service_as_kubernetes_does() {
        let links = ServiceLinks::default();
        links.replace(
            HashMap::from([(
                "acme".to_owned(),
                vec![LinkedService {
                    name: "web-api".into(),
                    address: "10.42.3.7".parse().unwrap(),
                    ports: vec![(Some("http".into()), 8080), (None, 9090)],
                }],
            )]),
            BTreeSet::new(),
        );
        let env = links.environment("acme");
        for expected in [
            "WEB_API_SERVICE_HOST=10.42.3.7",
            "WEB_API_SERVICE_PORT=8080",
            "WEB_API_SERVICE_PORT_HTTP=8080",
            "WEB_API_PORT=tcp://10.42.3.7:8080",
            "WEB_API_PORT_9090_TCP=tcp://10.42.3.7:9090",
            "WEB_API_PORT_9090_TCP_PROTO=tcp",
            "WEB_API_PORT_9090_TCP_PORT=9090",
            "WEB_API_PORT_9090_TCP_ADDR=10.42.3.7",
        ] {
            assert!(env.iter().any(|e| e == expected), "{expected} in {env:?}");
        }
        assert!(links.environment("other").is_empty());
    }

    #[test]
    fn a_local_endpoint_is_reached_on_the_bridge_and_a_remote_one_at_its_nodes_port() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "tenant": "acme",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.42.2.5"], "nodeName": "n1", "conditions": {"ready": true},
                 "hostIP": "127.0.0.2", "hostPorts": [{"name": "http", "port": 32001}]},
                {"addresses": ["10.42.4.7"], "nodeName": "n2",
                 "conditions": {"ready": false, "serving": true, "terminating": true},
                 "hostIP": "127.0.0.3", "hostPorts": [{"name": "http", "port": 32002}]},
                {"addresses": ["10.42.4.8"], "nodeName": "n2", "conditions": {"ready": true},
                 "hostIP": "127.0.0.3"}
            ]
        }))
        .unwrap();
        let other: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "api-abc", "tenant": "acme",
                         "labels": {"kubernetes.io/service-name": "api"}},
            "ports": [{"name": "http", "port": 9090}],
            "endpoints": [{"addresses": ["10.42.2.9"], "nodeName": "n1"}]
        }))
        .unwrap();
        let port = service("web", "u1", "10.43.0.10").spec.ports[0].clone();
        let key = ("acme".to_owned(), "web".to_owned());
        let backends = backends_of([&slice, &other].into_iter(), "n1", &key, &port);
        let addresses: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
        // The third endpoint publishes no port: another node cannot reach it.
        assert_eq!(addresses, ["10.42.2.5:8080", "127.0.0.3:32002"]);
        assert!(backends[0].ready);
        assert!(!backends[1].ready && backends[1].serving && backends[1].terminating);
    }

    #[test]
    fn headless_services_get_no_address_and_udp_ports_are_not_proxied() {
        let headless = service("db", "u3", "None");
        assert!(!has_virtual_address(&headless));
        assert!(has_virtual_address(&service("web", "u1", "10.43.0.10")));
        let ports: Vec<i32> = tcp_ports(&headless).map(|p| p.port).collect();
        assert_eq!(ports, [8080]);
    }
}
