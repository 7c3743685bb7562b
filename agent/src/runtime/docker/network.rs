//! Tenant networks: each tenant's containers on this node share a Docker
//! bridge network of their own, `berth-<node>-<tenant>`, with a subnet the
//! agent picks from `--tenant-network-pool` (a `/23` each).
//!
//! The subnet's lower half is where Docker gives containers their
//! addresses (the network's `ip_range`; the gateway, the host's end of the
//! bridge, is its first address). The upper half is never handed out by
//! Docker: it holds this node's virtual addresses of the tenant's
//! Services, which the agent adds to the bridge interface and the service
//! proxy binds ([`crate::services`]). A container reaches them on its own
//! link, so an address without a listener ends in a refused connection or
//! an unanswered ARP on the bridge, never in a packet routed off the
//! machine.
//!
//! The host side needs root and `NET_ADMIN`: addresses on bridges, and
//! the `INPUT` rules that keep one tenant's containers from the host
//! addresses of another tenant's networks (Docker's own rules only isolate
//! forwarded traffic between bridges, not traffic to the host itself).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use bollard::models::{ContainerCreateBody, HostConfig, Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions};
use tokio::process::Command;

use super::{DockerError, Engine, labels};
use crate::subnet::Subnet;

/// The prefix length of every tenant network.
pub const TENANT_NETWORK_PREFIX: u8 = 23;

/// The default `--tenant-network-pool` (k3s' cluster CIDR).
pub const DEFAULT_TENANT_NETWORK_POOL: &str = "10.42.0.0/16";

/// How long a container's creation waits for the Services of a network
/// made just now.
const LINKS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How often a free subnet is tried again when another network took it
/// meanwhile.
const CREATE_ATTEMPTS: usize = 16;

/// One tenant's bridge network on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantNetwork {
    /// The tenant.
    pub tenant: String,
    /// The Docker network's name.
    pub name: String,
    /// The bridge interface on the host (`br-<id>`).
    pub bridge: String,
    /// The whole subnet.
    pub subnet: Subnet,
    /// The host's address on the bridge: the containers' gateway and DNS
    /// server.
    pub gateway: Ipv4Addr,
    /// Where this node's virtual addresses of the tenant's Services come
    /// from (the subnet's upper half); `None` for a network made by an
    /// older agent, which has none.
    pub services: Option<Subnet>,
}

impl TenantNetwork {
    /// Reads a network as the engine describes it.
    fn from_engine(
        tenant: &str,
        name: &str,
        id: &str,
        ipam: Option<&Ipam>,
        options: Option<&HashMap<String, String>>,
    ) -> Option<TenantNetwork> {
        let config = ipam?.config.as_ref()?.first()?;
        let subnet: Subnet = config.subnet.as_deref()?.parse().ok()?;
        let gateway = match config.gateway.as_deref() {
            Some(gateway) => gateway.parse().ok()?,
            None => subnet.nth(1)?,
        };
        let pods: Option<Subnet> = config.ip_range.as_deref().and_then(|r| r.parse().ok());
        let services = pods
            .filter(|pods| {
                pods.prefix() == subnet.prefix() + 1 && pods.network() == subnet.network()
            })
            .and_then(|_| subnet.split(subnet.prefix() + 1).nth(1));
        let bridge = options
            .and_then(|o| o.get("com.docker.network.bridge.name"))
            .cloned()
            .unwrap_or_else(|| format!("br-{}", id.get(..12).unwrap_or(id)));
        Some(TenantNetwork {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            bridge,
            subnet,
            gateway,
            services,
        })
    }

    /// The addresses Services may get: the upper half less its first and
    /// last address.
    pub fn service_addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let half = self.services;
        let size = half.map_or(0, |h| h.size());
        (1..size.saturating_sub(1)).filter_map(move |i| half.and_then(|h| h.nth(i)))
    }
}

impl Engine {
    /// Points a container about to join `network` at the Services of its
    /// tenant: the agent's DNS server on the gateway, Kubernetes' search
    /// domains, and the Services' environment variables but those the
    /// container sets itself. Nothing without Services, or on a
    /// network made by an older agent.
    pub async fn link_services(&self, network: &TenantNetwork, body: &mut ContainerCreateBody) {
        let Some(links) = &self.service_links else {
            return;
        };
        if network.services.is_none() {
            return;
        }
        // A network made just now: its service addresses come at the next
        // convergence (unless the server is away).
        if !links.wait_for(&network.name, LINKS_WAIT).await {
            tracing::debug!(
                network = network.name,
                "the tenant's Services are not known yet"
            );
        }
        let host = body.host_config.get_or_insert_with(HostConfig::default);
        host.dns = Some(vec![network.gateway.to_string()]);
        host.dns_search = Some(vec![
            format!("{}.svc.cluster.local", network.tenant),
            "svc.cluster.local".into(),
            "cluster.local".into(),
        ]);
        let own = body.env.take().unwrap_or_default();
        let defined = |entry: &String| {
            let name = entry.split('=').next().unwrap_or_default();
            own.iter().any(|mine| mine.split('=').next() == Some(name))
        };
        let mut env: Vec<String> = links
            .environment(&network.tenant)
            .into_iter()
            .filter(|entry| !defined(entry))
            .collect();
        env.extend(own.iter().cloned());
        body.env = Some(env);
    }

    /// The name of `tenant`'s bridge network on this node.
    pub fn network_name(&self, tenant: &str) -> String {
        format!("berth-{}-{tenant}", self.node)
    }

    /// Makes `tenant`'s network unless it exists, and answers it; the
    /// caller holds [`Engine::networks`].
    pub async fn ensure_network(&self, tenant: &str) -> Result<TenantNetwork, DockerError> {
        let name = self.network_name(tenant);
        let mut last_error = None;
        // Subnets the engine refused: another network holds them, though
        // it may not be listed yet (one being made at this moment).
        let mut refused = Vec::new();
        for _ in 0..CREATE_ATTEMPTS {
            if let Some(network) = self.inspect_network(tenant, &name).await? {
                self.networks_changed(|networks| {
                    networks.insert(tenant.to_owned(), network.clone());
                });
                return Ok(network);
            }
            let subnet = self.free_subnet(&refused).await?;
            let request = NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(subnet.to_string()),
                        ip_range: subnet
                            .split(subnet.prefix() + 1)
                            .next()
                            .map(|pods| pods.to_string()),
                        gateway: subnet.nth(1).map(|g| g.to_string()),
                        ..IpamConfig::default()
                    }]),
                    ..Ipam::default()
                }),
                labels: Some(HashMap::from([
                    (labels::MANAGED_BY.to_owned(), labels::AGENT.to_owned()),
                    (labels::NODE.to_owned(), self.node.clone()),
                    (labels::TENANT.to_owned(), tenant.to_owned()),
                ])),
                ..NetworkCreateRequest::default()
            };
            match self.docker.create_network(request).await {
                Ok(_) => tracing::info!(network = name, %subnet, "created the tenant network"),
                // Made meanwhile, or the subnet was taken meanwhile (by
                // another agent on this engine): look again.
                Err(error @ bollard::errors::Error::DockerResponseServerError { .. }) => {
                    tracing::debug!(network = name, %subnet, %error, "creating the tenant network failed; trying again");
                    refused.push(subnet);
                    last_error = Some(error);
                }
                Err(source) => {
                    return Err(DockerError::Call {
                        call: "create network",
                        source,
                    });
                }
            }
        }
        Err(match last_error {
            Some(source) => DockerError::Call {
                call: "create network",
                source,
            },
            None => DockerError::Setting(format!("the network {name} could not be made")),
        })
    }

    /// `tenant`'s network named `name`, if the engine has it.
    async fn inspect_network(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<TenantNetwork>, DockerError> {
        match self.docker.inspect_network(name, None).await {
            Ok(inspected) => Ok(TenantNetwork::from_engine(
                tenant,
                name,
                inspected.id.as_deref().unwrap_or_default(),
                inspected.ipam.as_ref(),
                inspected.options.as_ref(),
            )
            .or_else(|| {
                tracing::warn!(network = name, "the tenant network has no IPv4 subnet");
                None
            })),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(source) => Err(DockerError::Call {
                call: "inspect network",
                source,
            }),
        }
    }

    /// The first `/23` of the pool that no network on the engine, no route
    /// of the host and none of `refused` overlaps.
    async fn free_subnet(&self, refused: &[Subnet]) -> Result<Subnet, DockerError> {
        let networks = self
            .docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(|source| DockerError::Call {
                call: "list networks",
                source,
            })?;
        let mut taken: Vec<Subnet> = networks
            .iter()
            .filter_map(|n| n.ipam.as_ref()?.config.as_ref())
            .flatten()
            .filter_map(|c| c.subnet.as_deref()?.parse().ok())
            .collect();
        taken.extend(host_routes());
        taken.extend_from_slice(refused);
        self.network_pool
            .split(TENANT_NETWORK_PREFIX)
            .find(|candidate| !taken.iter().any(|t| t.overlaps(candidate)))
            .ok_or_else(|| {
                DockerError::Setting(format!(
                    "--tenant-network-pool: no free /{TENANT_NETWORK_PREFIX} is left in {}",
                    self.network_pool
                ))
            })
    }

    /// Removes `tenant`'s network when no container uses it any more.
    pub async fn release_network(&self, tenant: &str) {
        let _held = self.networks.lock().await;
        let name = self.network_name(tenant);
        if self.remove_network_if_unused(&name).await {
            self.networks_changed(|networks| {
                networks.remove(tenant);
            });
        }
    }

    /// Whether the network is gone now.
    async fn remove_network_if_unused(&self, name: &str) -> bool {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "network".to_owned(),
                vec![name.to_owned()],
            )])),
            ..ListContainersOptions::default()
        };
        match self.docker.list_containers(Some(options)).await {
            Ok(users) if users.is_empty() => match self.docker.remove_network(name).await {
                Ok(()) => {
                    tracing::info!(network = name, "removed the unused tenant network");
                    true
                }
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => true,
                Err(error) => {
                    tracing::debug!(network = name, %error, "the tenant network stays");
                    false
                }
            },
            Ok(_) => false,
            Err(error) => {
                tracing::warn!(network = name, %error, "listing a network's containers failed");
                false
            }
        }
    }

    /// Removes this node's tenant networks that no container uses, and
    /// learns the ones that stay.
    pub(super) async fn refresh_networks(&self) {
        let options = ListNetworksOptions {
            filters: Some(labels::filter(&[
                (labels::MANAGED_BY, labels::AGENT),
                (labels::NODE, &self.node),
            ])),
        };
        let networks = match self.docker.list_networks(Some(options)).await {
            Ok(networks) => networks,
            Err(error) => {
                tracing::warn!(%error, "listing tenant networks failed");
                return;
            }
        };
        let _held = self.networks.lock().await;
        let mut kept = BTreeMap::new();
        for network in networks {
            let (Some(name), Some(tenant)) = (
                network.name.as_deref(),
                network.labels.as_ref().and_then(|l| l.get(labels::TENANT)),
            ) else {
                continue;
            };
            if self.remove_network_if_unused(name).await || name != self.network_name(tenant) {
                continue;
            }
            if let Some(found) = TenantNetwork::from_engine(
                tenant,
                name,
                network.id.as_deref().unwrap_or_default(),
                network.ipam.as_ref(),
                network.options.as_ref(),
            ) {
                kept.insert(tenant.clone(), found);
            }
        }
        self.networks_changed(|networks| *networks = kept);
    }

    /// Changes the set of this node's tenant networks that the service
    /// plumbing follows; it is told only when something changed.
    fn networks_changed(&self, change: impl FnOnce(&mut BTreeMap<String, TenantNetwork>)) {
        self.local_networks.send_if_modified(|networks| {
            let before = networks.clone();
            change(networks);
            *networks != before
        });
    }
}

/// The IPv4 routes of the host (`/proc/net/route`), but the default route:
/// a tenant network must not shadow a network the host reaches.
fn host_routes() -> Vec<Subnet> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let destination = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            // The file has the addresses' bytes as one native integer.
            let destination = Ipv4Addr::from(destination.to_ne_bytes());
            let prefix = u32::from(Ipv4Addr::from(mask.to_ne_bytes())).leading_ones() as u8;
            (prefix > 0).then(|| Subnet::containing(destination, prefix))?
        })
        .collect()
}

/// Why the host's network cannot be changed by this process, if it
/// cannot: Services need root and `NET_ADMIN`.
pub fn missing_privileges() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("the agent does not run as root".into());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_NET_ADMIN: u64 = 12;
    if effective & (1 << CAP_NET_ADMIN) == 0 {
        return Some("the agent lacks the NET_ADMIN capability".into());
    }
    for tool in ["ip", "iptables", "iptables-restore"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// A host command failed.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {message}")]
pub struct HostError {
    command: String,
    message: String,
}

async fn run(program: &str, args: &[&str]) -> Result<String, HostError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|e| HostError {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(HostError {
            command,
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Makes the service addresses on `network`'s bridge exactly `wanted`
/// (only addresses of its services half are touched).
pub async fn converge_addresses(
    network: &TenantNetwork,
    wanted: &[Ipv4Addr],
) -> Result<(), HostError> {
    let Some(half) = network.services else {
        return Ok(());
    };
    let shown = run("ip", &["-4", "-o", "addr", "show", "dev", &network.bridge]).await?;
    let present: Vec<Ipv4Addr> = shown
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .filter(|address| half.contains(*address))
        .collect();
    for address in wanted.iter().filter(|a| !present.contains(a)) {
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{address}/32"),
                "dev",
                &network.bridge,
            ],
        )
        .await?;
    }
    for address in present.iter().filter(|a| !wanted.contains(a)) {
        run(
            "ip",
            &[
                "addr",
                "del",
                &format!("{address}/32"),
                "dev",
                &network.bridge,
            ],
        )
        .await?;
    }
    Ok(())
}

/// The `INPUT` rules of one tenant network: what arrives on its bridge
/// for its own subnet goes on; for any other address of the pool it is
/// refused (a TCP reset, or ICMP port unreachable). Written as `iptables
/// -S` prints them, so that the rules present compare with these.
fn isolation_rules(network: &TenantNetwork, pool: Subnet, node: &str) -> Vec<Vec<String>> {
    let comment = format!("berth:{node}:{}", network.tenant);
    let rule = |destination: String, protocol: &[&str], target: &[&str]| -> Vec<String> {
        let mut rule = vec![
            "-d".to_owned(),
            destination,
            "-i".into(),
            network.bridge.clone(),
        ];
        rule.extend(protocol.iter().map(|s| s.to_string()));
        rule.extend(["-m", "comment", "--comment", &comment].map(str::to_owned));
        rule.extend(target.iter().map(|s| s.to_string()));
        rule
    };
    vec![
        rule(network.subnet.to_string(), &[], &["-j", "RETURN"]),
        rule(
            pool.to_string(),
            &["-p", "tcp"],
            &["-j", "REJECT", "--reject-with", "tcp-reset"],
        ),
        rule(
            pool.to_string(),
            &[],
            &["-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
        ),
    ]
}

/// The chain of node `node`'s isolation rules: `BERTH-ISO-` and a hash of
/// the name (a chain name has at most 28 characters), so that agents
/// sharing a host keep apart.
pub fn isolation_chain(node: &str) -> String {
    // FNV-1a: stable across builds, unlike std's hasher.
    let hash = node.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    format!("BERTH-ISO-{hash:08x}")
}

/// Makes node `node`'s isolation chain hold exactly the rules of
/// `networks`, replaced in one step (`iptables-restore --noflush`), so
/// that no packet ever meets a network's refusals without the rule that
/// lets its own traffic through; and has `INPUT` jump to it first.
pub async fn converge_isolation(
    networks: &[&TenantNetwork],
    pool: Subnet,
    node: &str,
) -> Result<(), HostError> {
    let chain = isolation_chain(node);
    let wanted: Vec<String> = networks
        .iter()
        .flat_map(|network| isolation_rules(network, pool, node))
        .map(|rule| format!("-A {chain} {}", rule.join(" ")))
        .collect();
    let present: Option<Vec<String>> =
        run("iptables", &["-w", "-S", &chain])
            .await
            .ok()
            .map(|listed| {
                listed
                    .lines()
                    .filter(|line| line.starts_with("-A "))
                    .map(|line| line.replace('"', ""))
                    .collect()
            });
    if present.as_ref() != Some(&wanted) {
        let mut input = format!("*filter\n:{chain} - [0:0]\n");
        for rule in &wanted {
            input.push_str(rule);
            input.push('\n');
        }
        input.push_str("COMMIT\n");
        run_with_input("iptables-restore", &["-w", "--noflush"], &input).await?;
    }
    let comment = format!("berth:{node}");
    let jump = [
        "INPUT",
        "-m",
        "comment",
        "--comment",
        &comment,
        "-j",
        &chain,
    ];
    let check: Vec<&str> = ["-w", "-C"].into_iter().chain(jump).collect();
    if run("iptables", &check).await.is_err() {
        let insert: Vec<&str> = ["-w", "-I"]
            .into_iter()
            .chain(["INPUT", "1"])
            .chain(jump.into_iter().skip(1))
            .collect();
        run("iptables", &insert).await?;
    }
    Ok(())
}

/// Runs `program` with `input` on its standard input.
async fn run_with_input(program: &str, args: &[&str], input: &str) -> Result<(), HostError> {
    use tokio::io::AsyncWriteExt;
    let command = format!("{program} {}", args.join(" "));
    let failed = |message: String| HostError {
        command: command.clone(),
        message,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| failed(e.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(subnet: &str, range: Option<&str>) -> Ipam {
        Ipam {
            config: Some(vec![IpamConfig {
                subnet: Some(subnet.into()),
                ip_range: range.map(str::to_owned),
                gateway: None,
                ..IpamConfig::default()
            }]),
            ..Ipam::default()
        }
    }

    #[test]
    fn a_network_made_by_the_agent_has_its_upper_half_for_services() {
        let network = TenantNetwork::from_engine(
            "acme",
            "berth-n1-acme",
            "0123456789abcdef",
            Some(&ipam("10.42.2.0/23", Some("10.42.2.0/24"))),
            None,
        )
        .unwrap();
        assert_eq!(network.bridge, "br-0123456789ab");
        assert_eq!(network.gateway, "10.42.2.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(network.services.unwrap().to_string(), "10.42.3.0/24");
        let addresses: Vec<Ipv4Addr> = network.service_addresses().collect();
        assert_eq!(addresses.len(), 254);
        assert_eq!(addresses[0].to_string(), "10.42.3.1");
        assert_eq!(addresses[253].to_string(), "10.42.3.254");

        let older = TenantNetwork::from_engine(
            "acme",
            "berth-t-acme",
            "0123456789abcdef",
            Some(&ipam("172.18.0.0/16", None)),
            None,
        )
        .unwrap();
        assert_eq!(older.services, None);
        assert_eq!(older.service_addresses().count(), 0);
    }

    #[test]
    fn each_node_has_its_own_isolation_chain_within_iptables_limits() {
        let first = isolation_chain("node-a");
        assert_eq!(first, isolation_chain("node-a"));
        assert_ne!(first, isolation_chain("node-b"));
        assert!(first.len() <= 28, "{first}");
        assert!(first.starts_with("BERTH-ISO-"));
    }

    #[test]
    fn routes_are_read_from_the_kernels_table() {
        // Whatever the host has, each route is a subnet and the default
        // route is left out.
        for route in host_routes() {
            assert!(route.prefix() > 0);
        }
    }

    #[test]
    fn isolation_rules_let_a_network_reach_itself_and_refuse_the_rest_of_the_pool() {
        let network = TenantNetwork {
            tenant: "acme".into(),
            name: "berth-n1-acme".into(),
            bridge: "br-0123456789ab".into(),
            subnet: "10.42.2.0/23".parse().unwrap(),
            gateway: "10.42.2.1".parse().unwrap(),
            services: Some("10.42.3.0/24".parse().unwrap()),
        };
        let rules = isolation_rules(&network, "10.42.0.0/16".parse().unwrap(), "n1");
        let text: Vec<String> = rules.iter().map(|r| r.join(" ")).collect();
        assert_eq!(
            text,
            [
                "-d 10.42.2.0/23 -i br-0123456789ab -m comment --comment berth:n1:acme -j RETURN",
                "-d 10.42.0.0/16 -i br-0123456789ab -p tcp -m comment --comment berth:n1:acme \
                 -j REJECT --reject-with tcp-reset",
                "-d 10.42.0.0/16 -i br-0123456789ab -m comment --comment berth:n1:acme \
                 -j REJECT --reject-with icmp-port-unreachable",
            ]
        );
    }
}
