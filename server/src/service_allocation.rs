//! Services' virtual addresses and node ports: the ranges they come from
//! (`--service-cidr`, `--service-node-port-range`) and their allocation as
//! part of the Service's own store transaction.
//!
//! Every allocation is a key in the revision log beside the Service,
//! `/registry/allocations/clusterips/{ip}` and
//! `/registry/allocations/nodeports/{port}`, whose value names its holder
//! (tenant, name, uid). [`crate::objects::Objects`] writes these keys in
//! the same transaction as the Service (create, update, delete), each
//! guarded by a compare, so two writers that want one port on any number
//! of server processes cannot both commit: the loser's compare fails and it
//! plans again, finding the port held.
//!
//! A Service can also leave without its allocations: a raw etcd delete, a
//! tenant's deletion. So a record is only as good as its holder: a record
//! whose Service is gone, is another incarnation (uid), or no longer claims
//! the address or port is *stale*, and anyone may take it over, in a
//! transaction that compares both the record and the holder's key as they
//! were read. Nothing leaks, and nothing is booked twice.
//!
//! The keys are outside every tenant's `/registry/{kind}/{tenant}/`
//! prefix, so over the etcd API only the platform admin reaches them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::str::FromStr;

use berth_api::objects::service::{Service, ServiceType};
use berth_api::objects::{FieldError, Kind};
use serde::{Deserialize, Serialize};

use crate::objects::ObjectRef;
use crate::store::types::{
    Compare, CompareOp, CompareTarget, DeleteRequest, KeyRange, KeyValue, Op, PutRequest,
    RangeRequest, Revision,
};
use crate::store::{Store, StoreError};

/// Where the records of virtual addresses live.
const CLUSTER_IP_PREFIX: &str = "/registry/allocations/clusterips/";
/// Where the records of node ports live.
const NODE_PORT_PREFIX: &str = "/registry/allocations/nodeports/";

/// The block virtual addresses come from (`--service-cidr`), IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceCidr {
    network: u32,
    prefix: u8,
}

impl ServiceCidr {
    /// The addresses a Service may get: all but the block's network and
    /// broadcast addresses.
    fn hosts(self) -> std::ops::RangeInclusive<u32> {
        let size = 1u64 << (32 - u32::from(self.prefix));
        let last = (u64::from(self.network) + size - 1) as u32;
        (self.network + 1)..=(last - 1)
    }

    /// Whether a Service may hold `ip`.
    pub fn admits(self, ip: Ipv4Addr) -> bool {
        self.hosts().contains(&u32::from(ip))
    }
}

impl std::fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

impl FromStr for ServiceCidr {
    type Err = String;

    /// `10.43.0.0/16`: an IPv4 block of at least 4 addresses (a prefix of
    /// 8 to 30), with no host bits set.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("{text:?} is not an IPv4 block such as 10.43.0.0/16");
        let (address, prefix) = text.trim().split_once('/').ok_or_else(invalid)?;
        let address: Ipv4Addr = address.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        if !(8..=30).contains(&prefix) {
            return Err(format!(
                "{text:?}: the prefix must be between /8 and /30, so that the block has room for Services"
            ));
        }
        let network = u32::from(address);
        let mask = u32::MAX << (32 - u32::from(prefix));
        if network & !mask != 0 {
            return Err(format!(
                "{text:?} has host bits set; the block starts at {}/{prefix}",
                Ipv4Addr::from(network & mask)
            ));
        }
        Ok(ServiceCidr { network, prefix })
    }
}

/// The node ports Services get (`--service-node-port-range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodePortRange {
    first: u16,
    last: u16,
}

impl NodePortRange {
    /// Whether a Service may hold `port`.
    pub fn admits(self, port: i32) -> bool {
        (i32::from(self.first)..=i32::from(self.last)).contains(&port)
    }
}

impl std::fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for NodePortRange {
    type Err = String;

    /// `30000-32767`: the first and last port, inclusive.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("{text:?} is not a port range such as 30000-32767");
        let (first, last) = text.trim().split_once('-').ok_or_else(invalid)?;
        let first: u16 = first.trim().parse().map_err(|_| invalid())?;
        let last: u16 = last.trim().parse().map_err(|_| invalid())?;
        if first == 0 || first > last {
            return Err(invalid());
        }
        Ok(NodePortRange { first, last })
    }
}

/// The ranges the server allocates from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceRanges {
    /// Virtual addresses.
    pub cidr: ServiceCidr,
    /// Node ports.
    pub node_ports: NodePortRange,
}

impl Default for ServiceRanges {
    /// The defaults of `berth server` ([`crate::settings`] knows them).
    fn default() -> Self {
        use crate::settings::{DEFAULT_SERVICE_CIDR, DEFAULT_SERVICE_NODE_PORT_RANGE};
        ServiceRanges {
            cidr: DEFAULT_SERVICE_CIDR.parse().unwrap_or(ServiceCidr {
                network: u32::from(Ipv4Addr::new(10, 43, 0, 0)),
                prefix: 16,
            }),
            node_ports: DEFAULT_SERVICE_NODE_PORT_RANGE
                .parse()
                .unwrap_or(NodePortRange {
                    first: 30000,
                    last: 32767,
                }),
        }
    }
}

/// Why a Service's allocations cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum AllocationError {
    /// An address or port asked for is held by another Service, or none
    /// is left (409).
    #[error("{}", describe(.0))]
    Taken(Vec<FieldError>),
    /// An address or port asked for lies outside the server's ranges, or
    /// an allocated one was changed (422).
    #[error("{}", describe(.0))]
    Refused(Vec<FieldError>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Who holds an allocation, as its record says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    tenant: String,
    name: String,
    uid: String,
}

impl Holder {
    fn of(at: &ObjectRef, uid: &str) -> Holder {
        Holder {
            tenant: at.tenant.clone().unwrap_or_default(),
            name: at.name.clone(),
            uid: uid.to_owned(),
        }
    }

    fn service(&self) -> ObjectRef {
        ObjectRef {
            kind: Kind::Service,
            tenant: Some(self.tenant.clone()),
            name: self.name.clone(),
        }
    }
}

/// One allocatable thing: a virtual address or a node port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    ClusterIp(Ipv4Addr),
    NodePort(i32),
}

impl Slot {
    fn key(self) -> String {
        match self {
            Slot::ClusterIp(ip) => format!("{CLUSTER_IP_PREFIX}{ip}"),
            Slot::NodePort(port) => format!("{NODE_PORT_PREFIX}{port}"),
        }
    }

    fn describe(self) -> String {
        match self {
            Slot::ClusterIp(ip) => format!("address {ip}"),
            Slot::NodePort(port) => format!("node port {port}"),
        }
    }

    /// Whether `service` (as stored) claims this slot.
    fn claimed_by(self, service: &Service) -> bool {
        claimed_slots(service).contains(&self)
    }
}

/// Whether a Service of this type gets node ports.
fn needs_node_ports(service: &Service) -> bool {
    matches!(
        service.spec.type_,
        Some(ServiceType::NodePort | ServiceType::LoadBalancer)
    )
}

/// The address and node ports `service` claims in its spec.
fn claimed_slots(service: &Service) -> BTreeSet<Slot> {
    let mut slots = BTreeSet::new();
    if let Some(ip) = service
        .spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse().ok())
    {
        slots.insert(Slot::ClusterIp(ip));
    }
    if needs_node_ports(service) {
        slots.extend(
            service
                .spec
                .ports
                .iter()
                .filter_map(|p| p.node_port)
                .map(Slot::NodePort),
        );
    }
    slots
}

/// The compares and writes that go into the Service's own transaction.
#[derive(Clone, Debug, Default)]
pub struct AllocationPlan {
    /// Each record (and stale holder) as it was read.
    pub compares: Vec<Compare>,
    /// The records written or deleted.
    pub ops: Vec<Op>,
}

impl AllocationPlan {
    /// Whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.compares.is_empty() && self.ops.is_empty()
    }

    fn compare(&mut self, key: &str, target: CompareTarget) {
        self.compares.push(Compare {
            range: KeyRange::single(key),
            op: CompareOp::Equal,
            target,
        });
    }
}

/// What became of one attempt to claim a slot.
enum Claim {
    /// Ours now (once the transaction commits), or ours already.
    Claimed,
    /// A live Service holds it.
    HeldBy(Holder),
}

/// Allocates from [`ServiceRanges`] over the store.
#[derive(Clone)]
pub struct ServiceAllocator {
    store: Store,
    ranges: ServiceRanges,
}

impl ServiceAllocator {
    /// An allocator over `store` within `ranges`.
    pub fn new(store: Store, ranges: ServiceRanges) -> ServiceAllocator {
        ServiceAllocator { store, ranges }
    }

    /// The ranges it allocates from.
    pub fn ranges(&self) -> ServiceRanges {
        self.ranges
    }

    /// Plans the allocations of the Service at `at` (uid `uid`) going from
    /// `before` (none for a create) to `after`, filling in `after`'s
    /// address and node ports. Requested values are honoured when free and
    /// in range; allocated ones must not change.
    pub async fn plan(
        &self,
        at: &ObjectRef,
        uid: &str,
        before: Option<&Service>,
        after: &mut Service,
    ) -> Result<AllocationPlan, AllocationError> {
        let holder = Holder::of(at, uid);
        let mut plan = AllocationPlan::default();
        let mut refused = Vec::new();
        let held: BTreeSet<Slot> = before.map(claimed_slots).unwrap_or_default();
        let mut wanted = BTreeSet::new();

        // The virtual address.
        let ip_field = "spec.clusterIP";
        // A Service stored without one (before Berth allocated them) gets
        // one as if it were new.
        let allocated = before.and_then(|b| b.spec.cluster_ip.clone().filter(|ip| !ip.is_empty()));
        match allocated {
            Some(allocated) if after.spec.cluster_ip.as_deref() != Some(allocated.as_str()) => {
                refused.push(FieldError {
                    field: ip_field.into(),
                    reason: format!("field is immutable: it is {allocated}"),
                });
            }
            Some(_) => {}
            None => match after.spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty()) {
                Some("None") => {}
                Some(requested) => match requested.parse::<Ipv4Addr>() {
                    Ok(ip) if self.ranges.cidr.admits(ip) => {
                        let slot = Slot::ClusterIp(ip);
                        match self.claim(slot, &holder, &mut plan).await? {
                            Claim::Claimed => {
                                wanted.insert(slot);
                            }
                            Claim::HeldBy(other) => return Err(taken(ip_field, slot, &other)),
                        }
                    }
                    _ => refused.push(FieldError {
                        field: ip_field.into(),
                        reason: format!(
                            "{requested} is not in the service range {} (--service-cidr)",
                            self.ranges.cidr
                        ),
                    }),
                },
                None => {
                    let slot = self
                        .pick(Pool::ClusterIps, ip_field, &holder, &wanted, &mut plan)
                        .await?;
                    wanted.insert(slot);
                    if let Slot::ClusterIp(ip) = slot {
                        after.spec.cluster_ip = Some(ip.to_string());
                    }
                }
            },
        }
        after.spec.cluster_ips = after.spec.cluster_ip.iter().cloned().collect();

        // The node ports.
        if needs_node_ports(after) {
            let mut requested_here = BTreeSet::new();
            for (i, port) in after.spec.ports.iter().enumerate() {
                let Some(node_port) = port.node_port else {
                    continue;
                };
                let field = format!("spec.ports[{i}].nodePort");
                let slot = Slot::NodePort(node_port);
                if !requested_here.insert(node_port) {
                    refused.push(FieldError {
                        field,
                        reason: format!("{node_port} is given to another port of the Service too"),
                    });
                    continue;
                }
                wanted.insert(slot);
                if held.contains(&slot) {
                    continue;
                }
                if !self.ranges.node_ports.admits(node_port) {
                    refused.push(FieldError {
                        field,
                        reason: format!(
                            "{node_port} is not in the node port range {} (--service-node-port-range)",
                            self.ranges.node_ports
                        ),
                    });
                    continue;
                }
                if let Claim::HeldBy(other) = self.claim(slot, &holder, &mut plan).await? {
                    return Err(taken(&field, slot, &other));
                }
            }
            if refused.is_empty() {
                for i in 0..after.spec.ports.len() {
                    if after.spec.ports[i].node_port.is_some() {
                        continue;
                    }
                    let field = format!("spec.ports[{i}].nodePort");
                    let slot = self
                        .pick(Pool::NodePorts, &field, &holder, &wanted, &mut plan)
                        .await?;
                    wanted.insert(slot);
                    if let Slot::NodePort(port) = slot {
                        after.spec.ports[i].node_port = Some(port);
                    }
                }
            }
        }
        if !refused.is_empty() {
            return Err(AllocationError::Refused(refused));
        }
        for slot in held.difference(&wanted) {
            self.release(*slot, &holder, &mut plan).await?;
        }
        Ok(plan)
    }

    /// Plans freeing everything the Service at `at` holds (it is being
    /// deleted): each record that still names it goes, compared as read.
    pub async fn plan_release(
        &self,
        at: &ObjectRef,
        stored: &Service,
    ) -> Result<AllocationPlan, AllocationError> {
        let holder = Holder::of(at, stored.metadata.uid.as_deref().unwrap_or_default());
        let mut plan = AllocationPlan::default();
        for slot in claimed_slots(stored) {
            self.release(slot, &holder, &mut plan).await?;
        }
        Ok(plan)
    }

    /// Claims `slot` for `holder` if it is free or stale.
    async fn claim(
        &self,
        slot: Slot,
        holder: &Holder,
        plan: &mut AllocationPlan,
    ) -> Result<Claim, AllocationError> {
        let key = slot.key();
        let record = self.store.get(key.as_bytes(), 0).await?;
        let Some(record) = record else {
            plan.compare(&key, CompareTarget::CreateRevision(0));
            plan.ops.push(put(&key, holder));
            return Ok(Claim::Claimed);
        };
        let current = read_holder(&record);
        if current.as_ref() == Some(holder) {
            plan.compare(&key, CompareTarget::ModRevision(record.mod_revision));
            return Ok(Claim::Claimed);
        }
        if let Some(current) = &current {
            match self.live_holder(slot, current).await? {
                Liveness::Live => return Ok(Claim::HeldBy(current.clone())),
                Liveness::Stale { holder_revision } => {
                    // The holder must still be as read: one that came back
                    // in between keeps its slot.
                    plan.compare(
                        &current.service().key(),
                        CompareTarget::ModRevision(holder_revision),
                    );
                }
            }
        }
        plan.compare(&key, CompareTarget::ModRevision(record.mod_revision));
        plan.ops.push(put(&key, holder));
        Ok(Claim::Claimed)
    }

    /// Frees `slot` if its record names `holder`.
    async fn release(
        &self,
        slot: Slot,
        holder: &Holder,
        plan: &mut AllocationPlan,
    ) -> Result<(), AllocationError> {
        let key = slot.key();
        if let Some(record) = self.store.get(key.as_bytes(), 0).await?
            && read_holder(&record).as_ref() == Some(holder)
        {
            plan.compare(&key, CompareTarget::ModRevision(record.mod_revision));
            plan.ops.push(Op::Delete(DeleteRequest {
                range: KeyRange::single(key),
                prev_kv: false,
            }));
        }
        Ok(())
    }

    /// Whether `holder` still holds `slot`: its Service exists, is that
    /// incarnation, and claims the slot.
    async fn live_holder(&self, slot: Slot, holder: &Holder) -> Result<Liveness, StoreError> {
        let Some(kv) = self.store.get(holder.service().key().as_bytes(), 0).await? else {
            return Ok(Liveness::Stale { holder_revision: 0 });
        };
        let live = serde_json::from_slice::<Service>(&kv.value).is_ok_and(|service| {
            service.metadata.uid.as_deref() == Some(holder.uid.as_str())
                && slot.claimed_by(&service)
        });
        Ok(if live {
            Liveness::Live
        } else {
            Liveness::Stale {
                holder_revision: kv.mod_revision,
            }
        })
    }

    /// Picks a slot of `pool` for the field `field`, from a random start:
    /// first one that never had a record, then one whose record is stale.
    async fn pick(
        &self,
        pool: Pool,
        field: &str,
        holder: &Holder,
        chosen: &BTreeSet<Slot>,
        plan: &mut AllocationPlan,
    ) -> Result<Slot, AllocationError> {
        let (range, prefix, make): (_, _, fn(u32) -> Slot) = match pool {
            Pool::ClusterIps => (self.ranges.cidr.hosts(), CLUSTER_IP_PREFIX, |n| {
                Slot::ClusterIp(Ipv4Addr::from(n))
            }),
            Pool::NodePorts => (
                u32::from(self.ranges.node_ports.first)..=u32::from(self.ranges.node_ports.last),
                NODE_PORT_PREFIX,
                |n| Slot::NodePort(n as i32),
            ),
        };
        let recorded: BTreeSet<Slot> = self
            .store
            .range(RangeRequest {
                range: KeyRange::prefix(prefix),
                keys_only: true,
                ..RangeRequest::default()
            })
            .await?
            .kvs
            .iter()
            .filter_map(|kv| parse_slot(&kv.key))
            .collect();
        let start = rand::random_range(range.clone());
        let size = u64::from(range.end() - range.start()) + 1;
        let in_order = (0..size).map(|step| {
            let offset = (u64::from(start - range.start()) + step) % size;
            make(range.start() + offset as u32)
        });
        // A free one without a record first: no holder to read.
        let fresh = in_order
            .clone()
            .find(|slot| !recorded.contains(slot) && !chosen.contains(slot));
        if let Some(slot) = fresh {
            plan.compare(&slot.key(), CompareTarget::CreateRevision(0));
            plan.ops.push(put(&slot.key(), holder));
            return Ok(slot);
        }
        for slot in in_order.filter(|slot| !chosen.contains(slot)) {
            if let Claim::Claimed = self.claim(slot, holder, plan).await? {
                return Ok(slot);
            }
        }
        let reason = match pool {
            Pool::ClusterIps => format!(
                "no free address is left in the service range {}",
                self.ranges.cidr
            ),
            Pool::NodePorts => format!(
                "no free node port is left in the range {}",
                self.ranges.node_ports
            ),
        };
        Err(AllocationError::Taken(vec![FieldError {
            field: field.into(),
            reason,
        }]))
    }
}

/// What is allocated from.
#[derive(Clone, Copy, Debug)]
enum Pool {
    ClusterIps,
    NodePorts,
}

/// Whether a record's holder still holds it.
enum Liveness {
    Live,
    /// Its holder's key, as read (0: absent).
    Stale {
        holder_revision: Revision,
    },
}

fn put(key: &str, holder: &Holder) -> Op {
    Op::Put(PutRequest {
        key: key.as_bytes().to_vec(),
        value: serde_json::to_vec(holder).unwrap_or_default(),
        ..PutRequest::default()
    })
}

fn read_holder(record: &KeyValue) -> Option<Holder> {
    serde_json::from_slice(&record.value).ok()
}

fn parse_slot(key: &[u8]) -> Option<Slot> {
    let key = std::str::from_utf8(key).ok()?;
    if let Some(ip) = key.strip_prefix(CLUSTER_IP_PREFIX) {
        return ip.parse().ok().map(Slot::ClusterIp);
    }
    key.strip_prefix(NODE_PORT_PREFIX)?
        .parse()
        .ok()
        .map(Slot::NodePort)
}

fn taken(field: &str, slot: Slot, holder: &Holder) -> AllocationError {
    AllocationError::Taken(vec![FieldError {
        field: field.into(),
        reason: format!(
            "{} is already allocated to Service {}/{}",
            slot.describe(),
            holder.tenant,
            holder.name
        ),
    }])
}

/// A Service update as the user sent it, with what the server allocated
/// kept where the user left it out (as Kubernetes does): the address, and
/// the node port of each port that keeps its number and protocol while
/// the type still has node ports. So applying the same manifest again
/// changes nothing.
pub fn keep_allocated(stored: &Service, user: &mut Service) {
    let spec = &mut user.spec;
    if spec.cluster_ip.as_deref().is_none_or(str::is_empty) {
        spec.cluster_ip.clone_from(&stored.spec.cluster_ip);
        if spec.cluster_ips.is_empty() {
            spec.cluster_ips.clone_from(&stored.spec.cluster_ips);
        }
    }
    if needs_node_ports(stored) && needs_node_ports(user) {
        for port in user.spec.ports.iter_mut().filter(|p| p.node_port.is_none()) {
            port.node_port = stored
                .spec
                .ports
                .iter()
                .find(|old| old.port == port.port && old.protocol == port.protocol)
                .and_then(|old| old.node_port);
        }
    }
}

/// A Service turned from `NodePort` or `LoadBalancer` into `ClusterIP`
/// loses the node ports it held, which would otherwise fail validation
/// (as Kubernetes drops them). Works on the user's JSON before it is
/// decoded, so that nothing else of it is touched.
pub fn drop_node_ports_for_type(stored: &serde_json::Value, user: &mut serde_json::Value) {
    let needs = |v: &serde_json::Value| {
        matches!(
            v["spec"]["type"].as_str(),
            Some("NodePort" | "LoadBalancer")
        )
    };
    if !needs(stored) || needs(user) {
        return;
    }
    let held: Vec<serde_json::Value> = stored["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|port| port.get("nodePort").cloned())
        .collect();
    for port in user["spec"]["ports"].as_array_mut().into_iter().flatten() {
        if let Some(port) = port.as_object_mut()
            && port.get("nodePort").is_some_and(|n| held.contains(n))
        {
            port.remove("nodePort");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_cidr_is_an_ipv4_block_without_host_bits() {
        let cidr: ServiceCidr = "10.43.0.0/16".parse().unwrap();
        assert_eq!(cidr.to_string(), "10.43.0.0/16");
        assert!(cidr.admits("10.43.0.1".parse().unwrap()));
        assert!(cidr.admits("10.43.255.254".parse().unwrap()));
        assert!(!cidr.admits("10.43.0.0".parse().unwrap()), "the network");
        assert!(
            !cidr.admits("10.43.255.255".parse().unwrap()),
            "the broadcast"
        );
        assert!(!cidr.admits("10.44.0.1".parse().unwrap()));
        for bad in [
            "10.43.0.1/16",
            "10.43.0.0",
            "10.43.0.0/31",
            "fd00::/64",
            "x/16",
        ] {
            assert!(bad.parse::<ServiceCidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_node_port_range_is_two_ports_in_order() {
        let range: NodePortRange = "30000-32767".parse().unwrap();
        assert!(range.admits(30000) && range.admits(32767));
        assert!(!range.admits(29999) && !range.admits(32768));
        for bad in ["32767-30000", "0-10", "30000", "a-b", "30000-70000"] {
            assert!(bad.parse::<NodePortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_defaults_parse() {
        let ranges = ServiceRanges::default();
        assert_eq!(
            ranges.cidr.to_string(),
            crate::settings::DEFAULT_SERVICE_CIDR
        );
        assert_eq!(
            ranges.node_ports.to_string(),
            crate::settings::DEFAULT_SERVICE_NODE_PORT_RANGE
        );
    }

    fn node_port_service(ports: &[(i32, Option<i32>)]) -> Service {
        let mut service = Service::default();
        service.spec.type_ = Some(ServiceType::NodePort);
        service.spec.cluster_ip = Some("10.43.0.7".into());
        service.spec.cluster_ips = vec!["10.43.0.7".into()];
        service.spec.ports = ports
            .iter()
            .map(
                |(port, node_port)| berth_api::objects::service::ServicePort {
                    port: *port,
                    node_port: *node_port,
                    protocol: Some(berth_api::objects::pod::Protocol::Tcp),
                    ..Default::default()
                },
            )
            .collect();
        service
    }

    #[test]
    fn an_update_that_leaves_allocations_out_keeps_them() {
        let stored = node_port_service(&[(80, Some(30080)), (443, Some(30443))]);
        let mut user = node_port_service(&[(80, None), (8443, None)]);
        user.spec.cluster_ip = None;
        user.spec.cluster_ips = vec![];
        keep_allocated(&stored, &mut user);
        assert_eq!(user.spec.cluster_ip.as_deref(), Some("10.43.0.7"));
        assert_eq!(user.spec.ports[0].node_port, Some(30080));
        assert_eq!(user.spec.ports[1].node_port, None, "a new port is new");
    }

    #[test]
    fn turning_into_cluster_ip_drops_the_held_node_ports() {
        let stored = serde_json::json!({"spec": {"type": "NodePort",
            "ports": [{"port": 80, "nodePort": 30080}]}});
        let mut user = serde_json::json!({"spec": {"type": "ClusterIP",
            "ports": [{"port": 80, "nodePort": 30080, "bogus": 1}]}});
        drop_node_ports_for_type(&stored, &mut user);
        assert_eq!(
            user["spec"]["ports"][0],
            serde_json::json!({"port": 80, "bogus": 1}),
            "only the held node port goes; the rest is left for validation"
        );
    }
}
