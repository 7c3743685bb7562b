//! The endpoints controller: for each Service with a selector, the
//! EndpointSlices of the pods it selects, as Kubernetes' EndpointSlice
//! controller keeps them.
//!
//! Its core, [`desired_slices`], is a pure function of the Service and the
//! tenant's pods. Each pod that has an address and is not finished is an
//! endpoint: `ready` when its Ready condition holds and it is not being
//! deleted, `serving` when its Ready condition holds, `terminating` when it
//! has a `deletionTimestamp`; a pod that stops being Ready stays listed with
//! `ready: false`, and a deleted pod leaves at the next reconcile. A
//! `targetPort` given by name is resolved per pod, so pods that resolve it
//! differently go into different slices (one per port mapping), named
//! `{service}-{hash}` after the Service's uid and that mapping. Each
//! endpoint also carries where its node publishes those ports (`hostIP`,
//! `hostPorts`) from the pod's reported port bindings.
//!
//! Slices carry an owner reference to the Service, so the garbage
//! collector deletes them with it. A Service without a selector is left
//! alone, and so are slices the controller did not make (without its
//! `endpointslice.kubernetes.io/managed-by` label).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use berth_api::objects::discovery::{
    AddressType, Endpoint, EndpointConditions, EndpointPort, EndpointReference, EndpointSlice,
    MANAGED_BY_CONTROLLER, MANAGED_BY_LABEL, SERVICE_NAME_LABEL,
};
use berth_api::objects::meta::ConditionStatus;
use berth_api::objects::pod::PodPhase;
use berth_api::objects::{IntOrString, Kind, OwnerReference, Pod, Resource, Service};
use sha2::Digest;

use super::fenced::{FencedWriter, WriteError};
use super::gc::owner_index_value;
use super::runtime::{Action, Cache, Change, ObjectKey, OwnWrites, Reconciler};

/// The controller's name in metrics and logs.
pub const NAME: &str = "endpoints";

/// The index value of the objects of `tenant` (Services and pods).
pub fn tenant_index_value(tenant: &str) -> String {
    format!("tenant:{tenant}")
}

/// Why a Service's slices could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    /// A slice could not be created, replaced or deleted.
    #[error("{action} EndpointSlice {slice} of Service {service} failed: {source}")]
    SliceWriteFailed {
        /// What was being done.
        action: &'static str,
        /// The Service.
        service: ObjectKey,
        /// The slice's name.
        slice: String,
        /// The write's error.
        source: WriteError,
    },
}

/// Whether a pod takes part at all: bound, with an address, not finished.
fn is_endpoint(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    pod.spec.node_name.is_some()
        && status.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
        && !matches!(status.phase, Some(PodPhase::Succeeded | PodPhase::Failed))
}

/// Whether a pod's Ready condition holds.
fn is_ready(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|status| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True)
    })
}

/// Whether `service`'s selector picks `pod`: every pair is among its
/// labels (a Service's selector is a plain map, never empty here).
fn selects(service: &Service, pod: &Pod) -> bool {
    !service.spec.selector.is_empty()
        && service
            .spec
            .selector
            .iter()
            .all(|(key, value)| pod.metadata.labels.get(key) == Some(value))
}

/// The container port each of `service`'s ports reaches on `pod`; a port
/// whose `targetPort` names no container port of the pod is left out, as
/// Kubernetes does.
fn resolve_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let mut ports: Vec<EndpointPort> = service
        .spec
        .ports
        .iter()
        .filter_map(|port| {
            let protocol = port.protocol.unwrap_or_default();
            let number = match port.target_port.as_ref() {
                None => port.port,
                Some(IntOrString::Int(number)) => *number,
                Some(IntOrString::String(name)) => {
                    pod.spec
                        .containers
                        .iter()
                        .flat_map(|c| &c.ports)
                        .find(|p| {
                            p.name.as_deref() == Some(name.as_str())
                                && p.protocol.unwrap_or_default() == protocol
                        })?
                        .container_port
                }
            };
            Some(EndpointPort {
                name: port.name.clone().filter(|n| !n.is_empty()),
                port: number,
                protocol: Some(protocol),
            })
        })
        .collect();
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    ports
}

/// Where `pod`'s node publishes each of `ports`: the node address, and a
/// host port per port that has one.
fn published(pod: &Pod, ports: &[EndpointPort]) -> (Option<String>, Vec<EndpointPort>) {
    let status = pod.status.as_ref();
    let bindings: Vec<_> = status
        .into_iter()
        .flat_map(|s| &s.container_statuses)
        .flat_map(|c| &c.port_bindings)
        .collect();
    let mut host_ip = None;
    let mut host_ports = Vec::new();
    for port in ports {
        let protocol = port.protocol.unwrap_or_default();
        let Some(binding) = bindings
            .iter()
            .find(|b| b.container_port == port.port && b.protocol == protocol)
        else {
            continue;
        };
        // A binding on every address is reached at the node's own.
        let specific = binding
            .host_ip
            .parse::<IpAddr>()
            .ok()
            .filter(|ip| !ip.is_unspecified());
        if host_ip.is_none() {
            host_ip = specific
                .map(|ip| ip.to_string())
                .or_else(|| status.and_then(|s| s.host_ip.clone()));
        }
        host_ports.push(EndpointPort {
            name: port.name.clone(),
            port: binding.host_port,
            protocol: Some(protocol),
        });
    }
    (host_ip, host_ports)
}

/// `pod` as an endpoint of a slice with `ports`.
fn endpoint(pod: &Pod, ports: &[EndpointPort]) -> Endpoint {
    let ready = is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let (host_ip, host_ports) = published(pod, ports);
    Endpoint {
        addresses: pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .into_iter()
            .collect(),
        conditions: EndpointConditions {
            ready: Some(ready && !terminating),
            serving: Some(ready),
            terminating: Some(terminating),
        },
        node_name: pod.spec.node_name.clone(),
        target_ref: Some(EndpointReference {
            kind: Kind::Pod.name().into(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
        }),
        host_ip,
        host_ports,
    }
}

/// The name of `service`'s slice for one port mapping: stable for the
/// Service's incarnation and the mapping, so a reconcile finds it again.
fn slice_name(service: &Service, ports: &[EndpointPort]) -> String {
    let mut hash = sha2::Sha256::new();
    hash.update(service.metadata.uid.as_deref().unwrap_or_default());
    for port in ports {
        hash.update(format!(
            "|{}:{}:{:?}",
            port.name.as_deref().unwrap_or_default(),
            port.port,
            port.protocol
        ));
    }
    let digest = hex::encode(hash.finalize());
    format!("{}-{}", service.metadata.name, &digest[..10])
}

/// The slices `service` should have over `pods` (any pods: those of other
/// tenants and those it does not select are passed over), in name order,
/// without server-managed fields. With no endpoint at all there is one
/// empty slice, as Kubernetes keeps.
pub fn desired_slices(service: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSlice> {
    let tenant = service.metadata.tenant.as_deref();
    let mut groups: BTreeMap<Vec<EndpointPort>, Vec<Endpoint>> = BTreeMap::new();
    let mut members: Vec<&Pod> = pods
        .iter()
        .map(AsRef::as_ref)
        .filter(|pod| pod.metadata.tenant.as_deref() == tenant)
        .filter(|pod| selects(service, pod) && is_endpoint(pod))
        .collect();
    members.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for pod in members {
        let ports = resolve_ports(service, pod);
        let endpoint = endpoint(pod, &ports);
        groups.entry(ports).or_default().push(endpoint);
    }
    if groups.is_empty() {
        groups.insert(Vec::new(), Vec::new());
    }
    let mut slices: Vec<EndpointSlice> = groups
        .into_iter()
        .map(|(ports, endpoints)| {
            let mut slice = EndpointSlice::named(&slice_name(service, &ports));
            let meta = &mut slice.metadata;
            meta.tenant = service.metadata.tenant.clone();
            meta.labels = [
                (SERVICE_NAME_LABEL.to_owned(), service.metadata.name.clone()),
                (
                    MANAGED_BY_LABEL.to_owned(),
                    MANAGED_BY_CONTROLLER.to_owned(),
                ),
            ]
            .into();
            meta.owner_references = vec![OwnerReference {
                api_version: Kind::Service.api_version().into(),
                kind: Kind::Service.name().into(),
                name: service.metadata.name.clone(),
                uid: service.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }];
            slice.address_type = AddressType::IPv4;
            slice.endpoints = endpoints;
            slice.ports = ports;
            slice
        })
        .collect();
    slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    slices
}

/// Whether `stored` already says what `desired` says.
fn same_content(stored: &EndpointSlice, desired: &EndpointSlice) -> bool {
    stored.address_type == desired.address_type
        && stored.endpoints == desired.endpoints
        && stored.ports == desired.ports
        && stored.metadata.labels == desired.metadata.labels
        && stored.metadata.owner_references == desired.metadata.owner_references
}

/// Keeps every selecting Service's slices.
pub struct EndpointsController {
    services: Cache<Service>,
    pods: Cache<Pod>,
    slices: Cache<EndpointSlice>,
    writer: FencedWriter,
    own_writes: OwnWrites,
}

impl EndpointsController {
    /// A controller over the caches of Services, pods (indexed by
    /// [`tenant_index_value`]) and slices (indexed by owner), writing
    /// through `writer`.
    pub fn new(
        services: Cache<Service>,
        pods: Cache<Pod>,
        slices: Cache<EndpointSlice>,
        writer: FencedWriter,
    ) -> EndpointsController {
        EndpointsController {
            services,
            pods,
            slices,
            writer,
            own_writes: OwnWrites::default(),
        }
    }

    fn failed(
        key: &ObjectKey,
        action: &'static str,
        slice: &str,
    ) -> impl FnOnce(WriteError) -> EndpointsError {
        let service = key.clone();
        let slice = slice.to_owned();
        move |source| EndpointsError::SliceWriteFailed {
            action,
            service,
            slice,
            source,
        }
    }
}

impl Reconciler for EndpointsController {
    type Error = EndpointsError;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, EndpointsError> {
        // The slice cache has not seen this controller's last write; that
        // write's event brings the key back.
        if !self.own_writes.caught_up(key, |_| self.slices.revision()) {
            return Ok(Action::Done);
        }
        // A deleted Service's slices go with it through the collector.
        let Some(service) = self.services.get(key) else {
            return Ok(Action::Done);
        };
        if service.spec.selector.is_empty() || service.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let uid = service.metadata.uid.clone().unwrap_or_default();
        let tenant = key.tenant.as_deref().unwrap_or_default();
        let pods = self.pods.indexed(&tenant_index_value(tenant));
        let desired = desired_slices(&service, &pods);
        let existing: Vec<Arc<EndpointSlice>> = self
            .slices
            .indexed(&owner_index_value(&uid))
            .into_iter()
            .filter(|slice| {
                slice
                    .metadata
                    .labels
                    .get(MANAGED_BY_LABEL)
                    .map(String::as_str)
                    == Some(MANAGED_BY_CONTROLLER)
            })
            .collect();
        let wanted: BTreeSet<&str> = desired.iter().map(|s| s.metadata.name.as_str()).collect();
        for slice in desired.iter() {
            let name = slice.metadata.name.as_str();
            let stored = existing.iter().find(|s| s.metadata.name == name);
            let revision = match stored {
                None => {
                    let created = self
                        .writer
                        .create(slice)
                        .await
                        .map_err(Self::failed(key, "creating", name))?;
                    created
                        .metadata
                        .resource_version
                        .as_deref()
                        .and_then(|rv| rv.parse().ok())
                        .unwrap_or_default()
                }
                Some(stored) if same_content(stored, slice) => continue,
                Some(stored) => {
                    let mut updated = stored.as_ref().clone();
                    updated.address_type = slice.address_type;
                    updated.endpoints.clone_from(&slice.endpoints);
                    updated.ports.clone_from(&slice.ports);
                    updated.metadata.labels.clone_from(&slice.metadata.labels);
                    updated
                        .metadata
                        .owner_references
                        .clone_from(&slice.metadata.owner_references);
                    self.writer
                        .replace(&updated)
                        .await
                        .map_err(Self::failed(key, "updating", name))?
                }
            };
            self.own_writes.record(key, Kind::EndpointSlice, revision);
        }
        for stale in existing
            .iter()
            .filter(|s| !wanted.contains(s.metadata.name.as_str()))
        {
            let slice_key = ObjectKey::of(stale.as_ref());
            let Some(created) = self.slices.create_revision(&slice_key) else {
                continue;
            };
            let revision = self
                .writer
                .delete::<EndpointSlice>(&slice_key, created)
                .await
                .map_err(Self::failed(key, "deleting", &stale.metadata.name))?;
            self.own_writes.record(key, Kind::EndpointSlice, revision);
        }
        Ok(Action::Done)
    }
}

/// Maps a pod's change to the Services of its tenant that select it,
/// before or after the change.
pub fn selecting_services(
    services: Cache<Service>,
) -> impl Fn(&Change<'_, Pod>) -> Vec<ObjectKey> + Send + Sync + 'static {
    move |change| {
        let Some(tenant) = change.key.tenant.as_deref() else {
            return Vec::new();
        };
        services
            .indexed(&tenant_index_value(tenant))
            .iter()
            .filter(|service| {
                change
                    .old
                    .into_iter()
                    .chain(change.new)
                    .any(|pod| selects(service, pod))
            })
            .map(|service| ObjectKey::of(service.as_ref()))
            .collect()
    }
}

/// The index values of a Service: its tenant.
pub fn service_index(service: &Service) -> Vec<String> {
    service
        .metadata
        .tenant
        .as_deref()
        .map(tenant_index_value)
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use berth_api::objects::pod::{
        Container, ContainerPort, ContainerStatus, PodCondition, PodStatus, PortBindingStatus,
        Protocol,
    };
    use berth_api::objects::service::ServicePort;

    use super::*;

    fn service(target: IntOrString) -> Service {
        let mut service = Service::named("web");
        service.metadata.tenant = Some("acme".into());
        service.metadata.uid = Some("svc-uid".into());
        service.spec.selector = [("app".to_owned(), "web".to_owned())].into();
        service.spec.ports = vec![ServicePort {
            name: Some("http".into()),
            port: 80,
            protocol: Some(Protocol::Tcp),
            target_port: Some(target),
            ..ServicePort::default()
        }];
        service
    }

    fn pod(name: &str, ready: bool, container_port: i32, host_port: i32) -> Arc<Pod> {
        let mut pod = Pod::named(name);
        pod.metadata.tenant = Some("acme".into());
        pod.metadata.uid = Some(format!("uid-{name}"));
        pod.metadata.labels = [("app".to_owned(), "web".to_owned())].into();
        pod.spec.node_name = Some("node-1".into());
        pod.spec.containers = vec![Container {
            name: "web".into(),
            ports: vec![ContainerPort {
                name: Some("http".into()),
                container_port,
                ..ContainerPort::default()
            }],
            ..Container::default()
        }];
        pod.status = Some(PodStatus {
            phase: Some(PodPhase::Running),
            pod_ip: Some("10.0.1.5".into()),
            host_ip: Some("192.168.1.10".into()),
            conditions: vec![PodCondition {
                type_: "Ready".into(),
                status: if ready {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                },
                ..PodCondition::default()
            }],
            container_statuses: vec![ContainerStatus {
                name: "web".into(),
                port_bindings: vec![PortBindingStatus {
                    container_port,
                    protocol: Protocol::Tcp,
                    host_ip: "0.0.0.0".into(),
                    host_port,
                }],
                ..ContainerStatus::default()
            }],
            ..PodStatus::default()
        });
        Arc::new(pod)
    }

    #[test]
    fn ready_and_not_ready_pods_are_listed_with_their_conditions_and_host_ports() {
        let pods = [pod("a", true, 8080, 32001), pod("b", false, 8080, 32002)];
        let slices = desired_slices(&service(IntOrString::Int(8080)), &pods);
        assert_eq!(slices.len(), 1);
        let slice = &slices[0];
        assert!(slice.metadata.name.starts_with("web-"));
        assert_eq!(slice.metadata.labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(slice.metadata.owner_references[0].uid, "svc-uid");
        assert_eq!(slice.ports[0].port, 8080);
        let [a, b] = &slice.endpoints[..] else {
            panic!("two endpoints: {:?}", slice.endpoints);
        };
        assert_eq!(
            (
                a.conditions.ready,
                a.conditions.serving,
                a.conditions.terminating
            ),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(
            (b.conditions.ready, b.conditions.serving),
            (Some(false), Some(false))
        );
        assert_eq!(a.addresses, ["10.0.1.5"]);
        assert_eq!(
            a.host_ip.as_deref(),
            Some("192.168.1.10"),
            "a binding on every address is reached at the node's"
        );
        assert_eq!(a.host_ports[0].port, 32001);
        assert_eq!(a.host_ports[0].name.as_deref(), Some("http"));
    }

    #[test]
    fn a_terminating_pod_is_not_ready_but_serves_while_it_is_ready() {
        let mut terminating = pod("a", true, 8080, 32001).as_ref().clone();
        terminating.metadata.deletion_timestamp = Some("2025-01-01T00:00:00Z".into());
        let slices = desired_slices(&service(IntOrString::Int(8080)), &[Arc::new(terminating)]);
        let conditions = &slices[0].endpoints[0].conditions;
        assert_eq!(
            (conditions.ready, conditions.serving, conditions.terminating),
            (Some(false), Some(true), Some(true))
        );
    }

    #[test]
    fn a_named_target_port_is_resolved_per_pod_into_a_slice_per_mapping() {
        let pods = [
            pod("a", true, 8080, 32001),
            pod("b", true, 9090, 32002),
            pod("c", true, 8080, 32003),
        ];
        let slices = desired_slices(&service(IntOrString::String("http".into())), &pods);
        assert_eq!(slices.len(), 2);
        let by_port: BTreeMap<i32, Vec<String>> = slices
            .iter()
            .map(|s| {
                let names = s
                    .endpoints
                    .iter()
                    .map(|e| e.target_ref.as_ref().unwrap().name.clone())
                    .collect();
                (s.ports[0].port, names)
            })
            .collect();
        assert_eq!(by_port[&8080], ["a", "c"]);
        assert_eq!(by_port[&9090], ["b"]);
    }

    #[test]
    fn pods_without_an_address_of_other_tenants_or_not_selected_are_not_endpoints() {
        let mut no_ip = pod("a", true, 8080, 32001).as_ref().clone();
        if let Some(status) = no_ip.status.as_mut() {
            status.pod_ip = None;
        }
        let mut foreign = pod("b", true, 8080, 32002).as_ref().clone();
        foreign.metadata.tenant = Some("globex".into());
        let mut other = pod("c", true, 8080, 32003).as_ref().clone();
        other.metadata.labels = [("app".to_owned(), "db".to_owned())].into();
        let slices = desired_slices(
            &service(IntOrString::Int(8080)),
            &[Arc::new(no_ip), Arc::new(foreign), Arc::new(other)],
        );
        assert_eq!(slices.len(), 1, "one empty slice");
        assert!(slices[0].endpoints.is_empty() && slices[0].ports.is_empty());
    }

    #[test]
    fn the_desired_slices_are_valid_objects() {
        let slices = desired_slices(
            &service(IntOrString::Int(8080)),
            &[pod("a", true, 8080, 32001)],
        );
        for slice in slices {
            assert_eq!(slice.validate(), vec![], "{slice:?}");
        }
    }
}
