//! Services (ports, node ports, selector, virtual address) and the
//! EndpointSlices the server keeps for them.
//!
//! Whether a node port or a virtual address lies in the ranges the server
//! allocates from is the server's check (`--service-node-port-range`,
//! `--service-cidr`): those ranges are its settings, not the API's.

use std::collections::BTreeSet;

use super::{NameRule, collect, label_map, object_meta, port_number, port_reference};
use crate::labels;
use crate::objects::discovery::{AddressType, EndpointSlice};
use crate::objects::field::{FieldError, FieldPath};
use crate::objects::service::{Service, ServiceType};

/// A Service.
pub fn service(service: &Service) -> Vec<FieldError> {
    collect(|problems| {
        object_meta(&service.metadata, NameRule::Label, problems);
        let spec = &service.spec;
        let path = FieldPath::new("spec");
        let service_type = spec.type_.unwrap_or_default();
        let ports_path = path.child("ports");
        problems.check(
            !spec.ports.is_empty(),
            &ports_path,
            "at least one port is required",
        );
        let several = spec.ports.len() > 1;
        let mut names = BTreeSet::new();
        let mut ports = BTreeSet::new();
        for (i, port) in spec.ports.iter().enumerate() {
            let at = ports_path.index(i);
            match port.name.as_deref().filter(|n| !n.is_empty()) {
                None if several => problems.add(
                    &at.child("name"),
                    "required when the Service has more than one port",
                ),
                None => {}
                Some(name) if !labels::is_dns_label(name) => problems.add(
                    &at.child("name"),
                    "must be a DNS label: at most 63 lower-case letters, digits or '-', starting and ending with a letter or digit",
                ),
                Some(name) => problems.check(
                    names.insert(name),
                    &at.child("name"),
                    format!("{name:?} names another port of the Service"),
                ),
            }
            port_number(port.port, &at.child("port"), problems);
            let protocol = port.protocol.unwrap_or_default();
            problems.check(
                ports.insert((port.port, protocol)),
                &at.child("port"),
                format!("{} is exposed twice for the same protocol", port.port),
            );
            if let Some(target) = &port.target_port {
                port_reference(target, &at.child("targetPort"), problems);
            }
            if let Some(node_port) = port.node_port {
                let at = at.child("nodePort");
                if service_type == ServiceType::ClusterIP {
                    problems.add(&at, "may only be set when type is NodePort or LoadBalancer");
                } else {
                    port_number(node_port, &at, problems);
                }
            }
        }
        label_map(&spec.selector, &path.child("selector"), problems);
        let cluster_ip = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty());
        if let Some(ip) = cluster_ip {
            problems.check(
                ip == "None" || ip.parse::<std::net::Ipv4Addr>().is_ok(),
                &path.child("clusterIP"),
                format!("{ip:?} must be an IPv4 address, or None for a headless Service"),
            );
        }
        // Berth is single-stack: `clusterIPs` is `[clusterIP]`.
        let ips_path = path.child("clusterIPs");
        problems.check(
            spec.cluster_ips.len() <= 1,
            &ips_path,
            "at most one address: Berth's Services are IPv4 only",
        );
        if let (Some(first), Some(ip)) = (spec.cluster_ips.first(), cluster_ip) {
            problems.check(
                first == ip,
                &ips_path.index(0),
                format!("{first:?} must be the same as clusterIP, {ip:?}"),
            );
        }
    })
}

/// An EndpointSlice.
pub fn endpoint_slice(slice: &EndpointSlice) -> Vec<FieldError> {
    collect(|problems| {
        object_meta(&slice.metadata, NameRule::Subdomain, problems);
        problems.check(
            slice.address_type == AddressType::IPv4,
            &FieldPath::new("addressType"),
            "only IPv4 is supported",
        );
        let ports_path = FieldPath::new("ports");
        for (i, port) in slice.ports.iter().enumerate() {
            port_number(port.port, &ports_path.index(i).child("port"), problems);
        }
        let endpoints_path = FieldPath::new("endpoints");
        for (i, endpoint) in slice.endpoints.iter().enumerate() {
            let at = endpoints_path.index(i);
            let addresses = at.child("addresses");
            problems.check(
                !endpoint.addresses.is_empty(),
                &addresses,
                "at least one address is required",
            );
            for (j, address) in endpoint.addresses.iter().enumerate() {
                problems.check(
                    address.parse::<std::net::Ipv4Addr>().is_ok(),
                    &addresses.index(j),
                    format!("{address:?} is not an IPv4 address"),
                );
            }
            if let Some(host_ip) = &endpoint.host_ip {
                problems.check(
                    host_ip.parse::<std::net::IpAddr>().is_ok(),
                    &at.child("hostIP"),
                    format!("{host_ip:?} is not an IP address"),
                );
            }
            for (j, port) in endpoint.host_ports.iter().enumerate() {
                let port_at = at.child("hostPorts").index(j);
                port_number(port.port, &port_at.child("port"), problems);
                problems.check(
                    slice.ports.iter().any(|p| p.name == port.name),
                    &port_at.child("name"),
                    format!(
                        "{:?} names none of the slice's ports",
                        port.name.as_deref().unwrap_or_default()
                    ),
                );
            }
        }
    })
}
