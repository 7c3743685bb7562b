//! The service load balancer controller: as k3s' ServiceLB does, every
//! `LoadBalancer` Service shows the InternalIP of every Ready node
//! (schedulable or not), sorted and without repeats, as its
//! `status.loadBalancer.ingress`; any other Service shows none. Berth has no
//! cloud load balancer: a LoadBalancer Service is served at its node ports
//! on every node, and the ingress tells clients which addresses those are.
//!
//! Its core, [`desired_ingress`], is a pure function of the Service and the
//! nodes. A Service's key is queued when the Service changes, and every
//! Service that is a LoadBalancer or still shows an ingress is queued when
//! a node changes what it lends: it joins, leaves, turns Ready or NotReady,
//! or changes its InternalIP (heartbeats alone change nothing). The status
//! is written through the fenced writer only when it differs, so the
//! write's own event finds nothing left to do.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use berth_api::objects::meta::ConditionStatus;
use berth_api::objects::service::{LoadBalancerIngress, LoadBalancerStatus, ServiceType};
use berth_api::objects::{Kind, Node, Service};

use super::fenced::{FencedWriter, WriteError};
use super::nodelifecycle::ready_status;
use super::runtime::{Action, Cache, Change, ObjectKey, OwnWrites, Reconciler};

/// The controller's name in metrics and logs.
pub const NAME: &str = "servicelb";

/// Why a Service's load balancer status could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum ServiceLbError {
    /// The status could not be written.
    #[error("writing the load balancer status of Service {service} failed: {source}")]
    StatusWriteFailed {
        /// The Service.
        service: ObjectKey,
        /// The write's error.
        source: WriteError,
    },
}

/// The addresses `node` lends to load balancers: its InternalIPs while it is
/// Ready.
fn lent_addresses(node: &Node) -> BTreeSet<IpAddr> {
    if ready_status(node) != Some(ConditionStatus::True) {
        return BTreeSet::new();
    }
    node.status
        .iter()
        .flat_map(|status| &status.addresses)
        .filter(|address| address.type_ == "InternalIP")
        .filter_map(|address| address.address.parse().ok())
        .collect()
}

/// The ingress `service` should show over `nodes`: an entry per address a
/// node lends, in address order, for a LoadBalancer Service; none for any
/// other.
pub fn desired_ingress(service: &Service, nodes: &[Arc<Node>]) -> Vec<LoadBalancerIngress> {
    if service.spec.type_ != Some(ServiceType::LoadBalancer) {
        return Vec::new();
    }
    let addresses: BTreeSet<IpAddr> = nodes.iter().flat_map(|n| lent_addresses(n)).collect();
    addresses
        .into_iter()
        .map(|ip| LoadBalancerIngress {
            ip: Some(ip.to_string()),
            hostname: None,
        })
        .collect()
}

/// The ingress `service` shows now.
fn shown_ingress(service: &Service) -> &[LoadBalancerIngress] {
    service
        .status
        .as_ref()
        .and_then(|status| status.load_balancer.as_ref())
        .map_or(&[], |load_balancer| &load_balancer.ingress)
}

/// Whether a node's change can move `service`'s ingress.
fn follows_nodes(service: &Service) -> bool {
    service.spec.type_ == Some(ServiceType::LoadBalancer) || !shown_ingress(service).is_empty()
}

/// Keeps every Service's `status.loadBalancer.ingress`.
pub struct ServiceLbController {
    services: Cache<Service>,
    nodes: Cache<Node>,
    writer: FencedWriter,
    own_writes: OwnWrites,
}

impl ServiceLbController {
    /// A controller over the caches of Services and nodes, writing through
    /// `writer`.
    pub fn new(
        services: Cache<Service>,
        nodes: Cache<Node>,
        writer: FencedWriter,
    ) -> ServiceLbController {
        ServiceLbController {
            services,
            nodes,
            writer,
            own_writes: OwnWrites::default(),
        }
    }
}

impl Reconciler for ServiceLbController {
    type Error = ServiceLbError;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, ServiceLbError> {
        // The cache has not seen this controller's last write; that write's
        // event brings the key back.
        if !self.own_writes.caught_up(key, |_| self.services.revision()) {
            return Ok(Action::Done);
        }
        let Some(service) = self.services.get(key) else {
            return Ok(Action::Done);
        };
        if service.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let desired = desired_ingress(&service, &self.nodes.list());
        if shown_ingress(&service) == desired.as_slice() {
            return Ok(Action::Done);
        }
        let mut updated = service.as_ref().clone();
        updated.status.get_or_insert_default().load_balancer =
            Some(LoadBalancerStatus { ingress: desired });
        let revision = self.writer.replace(&updated).await.map_err(|source| {
            ServiceLbError::StatusWriteFailed {
                service: key.clone(),
                source,
            }
        })?;
        self.own_writes.record(key, Kind::Service, revision);
        Ok(Action::Done)
    }
}

/// Maps a node's change to the Services whose ingress it can move: none
/// when the node lends the same addresses before and after, otherwise every
/// LoadBalancer Service and every Service that still shows an ingress.
pub fn services_moved_by(
    services: Cache<Service>,
) -> impl Fn(&Change<'_, Node>) -> Vec<ObjectKey> + Send + Sync + 'static {
    move |change| {
        let lent = |node: Option<&Arc<Node>>| node.map(|n| lent_addresses(n)).unwrap_or_default();
        if lent(change.old) == lent(change.new) {
            return Vec::new();
        }
        services
            .list()
            .iter()
            .filter(|service| follows_nodes(service))
            .map(|service| ObjectKey::of(service.as_ref()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use berth_api::objects::Resource;
    use berth_api::objects::node::{NodeAddress, NodeCondition, NodeStatus};
    use berth_api::objects::service::ServiceStatus;

    use super::*;

    fn node(name: &str, ready: ConditionStatus, addresses: &[(&str, &str)]) -> Arc<Node> {
        let mut node = Node::named(name);
        node.status = Some(NodeStatus {
            addresses: addresses
                .iter()
                .map(|(type_, address)| NodeAddress {
                    type_: (*type_).into(),
                    address: (*address).into(),
                })
                .collect(),
            conditions: vec![NodeCondition {
                type_: "Ready".into(),
                status: ready,
                ..NodeCondition::default()
            }],
            ..NodeStatus::default()
        });
        Arc::new(node)
    }

    fn service(type_: ServiceType) -> Service {
        let mut service = Service::named("web");
        service.metadata.tenant = Some("acme".into());
        service.spec.type_ = Some(type_);
        service
    }

    fn ips(ingress: &[LoadBalancerIngress]) -> Vec<&str> {
        ingress.iter().filter_map(|i| i.ip.as_deref()).collect()
    }

    #[test]
    fn a_load_balancer_shows_the_internal_ips_of_ready_nodes_in_order_once_each() {
        let mut cordoned = node("c", ConditionStatus::True, &[("InternalIP", "192.0.2.9")]);
        Arc::make_mut(&mut cordoned).spec.unschedulable = Some(true);
        let nodes = [
            node(
                "a",
                ConditionStatus::True,
                &[("InternalIP", "192.0.2.10"), ("ExternalIP", "203.0.113.1")],
            ),
            node("b", ConditionStatus::True, &[("InternalIP", "192.0.2.10")]),
            cordoned,
            node("d", ConditionStatus::False, &[("InternalIP", "192.0.2.4")]),
            node(
                "e",
                ConditionStatus::Unknown,
                &[("InternalIP", "192.0.2.5")],
            ),
            node("f", ConditionStatus::True, &[("InternalIP", "not-an-ip")]),
        ];
        let ingress = desired_ingress(&service(ServiceType::LoadBalancer), &nodes);
        assert_eq!(ips(&ingress), ["192.0.2.9", "192.0.2.10"]);
        assert!(ingress.iter().all(|i| i.hostname.is_none()));
    }

    #[test]
    fn other_services_show_no_ingress() {
        let nodes = [node(
            "a",
            ConditionStatus::True,
            &[("InternalIP", "192.0.2.10")],
        )];
        for type_ in [ServiceType::ClusterIP, ServiceType::NodePort] {
            assert_eq!(desired_ingress(&service(type_), &nodes), vec![]);
        }
    }

    #[test]
    fn only_a_node_that_changes_what_it_lends_moves_load_balancers() {
        let services: Cache<Service> = Cache::new(None);
        let mut was_balanced = service(ServiceType::ClusterIP);
        was_balanced.metadata.name = "was-balanced".into();
        was_balanced.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: vec![LoadBalancerIngress {
                    ip: Some("192.0.2.10".into()),
                    hostname: None,
                }],
            }),
        });
        let mut plain = service(ServiceType::ClusterIP);
        plain.metadata.name = "plain".into();
        services.replace(
            [service(ServiceType::LoadBalancer), was_balanced, plain]
                .into_iter()
                .map(|s| (ObjectKey::of(&s), s, 1))
                .collect(),
            1,
        );
        let moved = services_moved_by(services);
        let key = ObjectKey {
            tenant: None,
            name: "a".into(),
        };
        let ready = node("a", ConditionStatus::True, &[("InternalIP", "192.0.2.10")]);
        let mut beat = ready.as_ref().clone();
        beat.status.as_mut().unwrap().conditions[0].last_heartbeat_time =
            Some("2026-01-01T00:00:00Z".into());
        let beat = Arc::new(beat);
        let not_ready = node(
            "a",
            ConditionStatus::Unknown,
            &[("InternalIP", "192.0.2.10")],
        );
        let change = |old, new| Change {
            key: &key,
            old,
            new,
            revision: 0,
        };
        assert_eq!(moved(&change(Some(&ready), Some(&beat))), vec![]);
        let expected = vec![
            ObjectKey::namespaced("acme", "was-balanced"),
            ObjectKey::namespaced("acme", "web"),
        ];
        assert_eq!(moved(&change(Some(&ready), Some(&not_ready))), expected);
        assert_eq!(moved(&change(None, Some(&ready))), expected);
        assert_eq!(moved(&change(Some(&ready), None)), expected);
        assert_eq!(moved(&change(Some(&not_ready), None)), vec![]);
    }
}
