//! Services: ports, node ports, selector.

use std::collections::BTreeSet;

use super::{NameRule, collect, label_map, object_meta, port_number, port_reference};
use crate::labels;
use crate::objects::field::{FieldError, FieldPath};
use crate::objects::service::{Service, ServiceType};

/// The range node ports are taken from, as in Kubernetes.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<i32> = 30000..=32767;

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
                    problems.check(
                        NODE_PORT_RANGE.contains(&node_port),
                        &at,
                        format!(
                            "{node_port} is outside the node port range {}-{}",
                            NODE_PORT_RANGE.start(),
                            NODE_PORT_RANGE.end()
                        ),
                    );
                }
            }
        }
        label_map(&spec.selector, &path.child("selector"), problems);
        if let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty()) {
            problems.check(
                ip == "None" || ip.parse::<std::net::IpAddr>().is_ok(),
                &path.child("clusterIP"),
                format!("{ip:?} must be an IP address, or None for a headless Service"),
            );
        }
    })
}
