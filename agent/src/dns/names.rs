//! The names the DNS server owns and what it answers for them. The rules
//! do no I/O, so that they are tested on their own.
//!
//! A tenant's container asks from its tenant's listener. A Service of that
//! tenant is answered under its short and its qualified names; every other
//! name in the cluster's namespace (another tenant's Services included) is
//! NXDOMAIN, so that nothing about a Service leaves the node or crosses
//! tenants; the rest of the world is for the upstream servers.

use std::collections::{BTreeSet, HashMap};

use hickory_server::proto::rr::rdata::{A, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};

use super::{NamedPort, ServiceName};

/// SRV weight of a Service's only target.
const SRV_WEIGHT: u16 = 100;

/// The Services and tenants a node knows, indexed for answering.
#[derive(Debug, Default)]
pub(super) struct ServiceIndex {
    /// Each tenant's Services by name; every key lowercase.
    services: HashMap<String, HashMap<String, ServiceEntry>>,
    /// Every tenant the node knows of, lowercase.
    tenants: BTreeSet<String>,
}

/// One Service as its records need it.
#[derive(Debug)]
struct ServiceEntry {
    address: std::net::Ipv4Addr,
    /// Port names lowercase.
    ports: Vec<NamedPort>,
    /// `name.tenant.svc.cluster.local.`, the target of its SRV records.
    qualified: Name,
}

/// What a question gets.
#[derive(Debug, PartialEq)]
pub(super) enum Resolution {
    /// A name the agent owns, with these records; none is NODATA.
    Records {
        /// The answer section.
        answers: Vec<Record>,
        /// The additional section (the address of an SRV target).
        additionals: Vec<Record>,
    },
    /// A name in the cluster's namespace that does not exist for the
    /// asking tenant.
    NxDomain,
    /// A name outside the cluster's namespace, for the upstream servers.
    Forward,
}

impl ServiceIndex {
    /// The index of `services`; `tenants` are every tenant the node knows
    /// of. A Service whose names are not valid DNS names is left out.
    pub(super) fn new(services: Vec<ServiceName>, tenants: BTreeSet<String>) -> ServiceIndex {
        let mut index = ServiceIndex {
            services: HashMap::new(),
            tenants: tenants.iter().map(|t| t.to_ascii_lowercase()).collect(),
        };
        for service in services {
            let tenant = service.tenant.to_ascii_lowercase();
            let name = service.name.to_ascii_lowercase();
            let qualified = match Name::from_labels([
                name.as_str(),
                tenant.as_str(),
                "svc",
                "cluster",
                "local",
            ]) {
                Ok(qualified) => qualified,
                Err(error) => {
                    tracing::warn!(tenant, service = name, %error, "a Service name is not a DNS name; it is not served");
                    continue;
                }
            };
            let ports = service
                .ports
                .into_iter()
                .map(|port| NamedPort {
                    name: port.name.to_ascii_lowercase(),
                    port: port.port,
                })
                .collect();
            index.tenants.insert(tenant.clone());
            index.services.entry(tenant).or_default().insert(
                name,
                ServiceEntry {
                    address: service.address,
                    ports,
                    qualified,
                },
            );
        }
        index
    }

    /// Adds a tenant that has no Service (a listener's own tenant).
    pub(super) fn add_tenant(&mut self, tenant: &str) {
        self.tenants.insert(tenant.to_ascii_lowercase());
    }

    /// What `tenant` (lowercase) gets when it asks for `name` and
    /// `query_type`; records carry `ttl` and the name as asked.
    pub(super) fn resolve(
        &self,
        tenant: &str,
        name: &Name,
        query_type: RecordType,
        ttl: u32,
    ) -> Resolution {
        let lowered: Vec<String> = name
            .iter()
            .map(|label| String::from_utf8_lossy(label).to_ascii_lowercase())
            .collect();
        let labels: Vec<&str> = lowered.iter().map(String::as_str).collect();
        // `_port._protocol.` before a Service's name asks for its SRV
        // records (RFC 2782).
        let (port, service_labels) = match labels.as_slice() {
            [port, protocol, rest @ ..] if port.starts_with('_') && protocol.starts_with('_') => {
                (Some((&port[1..], *protocol)), rest)
            }
            _ => (None, labels.as_slice()),
        };
        if let Some(service) = self.service(tenant, service_labels) {
            let Some((port_name, protocol)) = port else {
                return if query_type == RecordType::A {
                    records(vec![address_record(name.clone(), service, ttl)], vec![])
                } else {
                    records(vec![], vec![])
                };
            };
            // Only TCP ports are named in the table.
            let Some(port) = service
                .ports
                .iter()
                .find(|p| protocol == "_tcp" && p.name == port_name)
            else {
                return Resolution::NxDomain;
            };
            if query_type != RecordType::SRV {
                return records(vec![], vec![]);
            }
            let srv = SRV::new(0, SRV_WEIGHT, port.port, service.qualified.clone());
            return records(
                vec![Record::from_rdata(name.clone(), ttl, RData::SRV(srv))],
                vec![address_record(service.qualified.clone(), service, ttl)],
            );
        }
        if self.in_cluster_namespace(&labels) || self.in_cluster_namespace(service_labels) {
            Resolution::NxDomain
        } else {
            Resolution::Forward
        }
    }

    /// The Service of `tenant` that `labels` name, under any of
    /// `name`, `name.tenant`, `name.tenant.svc` and
    /// `name.tenant.svc.cluster.local`.
    fn service(&self, tenant: &str, labels: &[&str]) -> Option<&ServiceEntry> {
        let name = match labels {
            [name] => name,
            [name, t] | [name, t, "svc"] | [name, t, "svc", "cluster", "local"] if *t == tenant => {
                name
            }
            _ => return None,
        };
        self.services.get(tenant)?.get(*name)
    }

    /// Whether `labels` fall in the cluster's namespace, which is never
    /// asked of the upstream servers: single labels (short Service names),
    /// `cluster.local` and below, `…svc`, and a tenant's `x.tenant` and
    /// `x.tenant.svc…`, whichever tenant.
    fn in_cluster_namespace(&self, labels: &[&str]) -> bool {
        match labels {
            [_] | [.., "cluster", "local"] | [.., "svc"] => true,
            [_, tenant] | [_, tenant, "svc", ..] => self.tenants.contains(*tenant),
            _ => false,
        }
    }
}

fn records(answers: Vec<Record>, additionals: Vec<Record>) -> Resolution {
    Resolution::Records {
        answers,
        additionals,
    }
}

fn address_record(owner: Name, service: &ServiceEntry, ttl: u32) -> Record {
    Record::from_rdata(owner, ttl, RData::A(A(service.address)))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::Ipv4Addr;

    use crate::dns::tests::{API_NAMES, WEB, WEB_NAMES, services};

    fn index() -> ServiceIndex {
        ServiceIndex::new(
            services(),
            BTreeSet::from(["acme".into(), "beta".into(), "gamma".into()]),
        )
    }

    fn resolve(name: &str, query_type: RecordType) -> Resolution {
        index().resolve(
            "acme",
            &Name::from_ascii(name).expect("name"),
            query_type,
            5,
        )
    }

    fn addresses(resolution: &Resolution) -> Vec<(String, Ipv4Addr)> {
        let Resolution::Records { answers, .. } = resolution else {
            panic!("not records: {resolution:?}");
        };
        answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some((r.name.to_string(), a.0)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_service_answers_under_its_four_names_in_any_case() {
        for name in WEB_NAMES {
            let resolution = resolve(name, RecordType::A);
            let expected = Name::from_ascii(name).expect("name").to_string();
            assert_eq!(addresses(&resolution), vec![(expected, WEB)], "{name}");
        }
    }

    #[test]
    fn other_types_on_a_service_name_have_no_data() {
        for query_type in [RecordType::AAAA, RecordType::TXT, RecordType::MX] {
            assert_eq!(
                resolve("web.acme", query_type),
                records(vec![], vec![]),
                "{query_type}"
            );
        }
    }

    #[test]
    fn srv_names_a_tcp_port_and_brings_the_target_address() {
        let Resolution::Records {
            answers,
            additionals,
        } = resolve("_http._tcp.web.acme.svc.cluster.local", RecordType::SRV)
        else {
            panic!("no records");
        };
        let target = Name::from_ascii("web.acme.svc.cluster.local.").expect("name");
        assert_eq!(answers.len(), 1);
        assert_eq!(
            answers[0].data,
            RData::SRV(SRV::new(0, 100, 80, target.clone()))
        );
        assert_eq!(additionals.len(), 1);
        assert_eq!(additionals[0].name, target);
        assert_eq!(additionals[0].data, RData::A(A(WEB)));
        for name in ["_http._tcp.web", "_HTTP._Tcp.Web.acme"] {
            assert!(
                matches!(resolve(name, RecordType::SRV), Resolution::Records { .. }),
                "{name}"
            );
        }
        assert_eq!(
            resolve("_http._tcp.web", RecordType::A),
            records(vec![], vec![])
        );
        for unknown in ["_grpc._tcp.web", "_http._udp.web.acme", "_._tcp.web"] {
            assert_eq!(
                resolve(unknown, RecordType::SRV),
                Resolution::NxDomain,
                "{unknown}"
            );
        }
    }

    #[test]
    fn the_cluster_namespace_is_nxdomain_and_never_forwarded() {
        let no_service = [
            "db",
            "db.acme",
            "db.gamma.svc",
            "db.gamma.svc.example.com",
            "x.cluster.local",
            "cluster.local",
            "local",
            "anything.svc",
            "_dns._udp.web",
        ];
        for name in API_NAMES.into_iter().chain(no_service) {
            assert_eq!(resolve(name, RecordType::A), Resolution::NxDomain, "{name}");
        }
    }

    #[test]
    fn names_outside_the_cluster_are_forwarded() {
        for name in [
            "example.com",
            "www.example.com",
            "web.example.com",
            "acme.example.com",
            "_http._tcp.example.com",
            ".",
        ] {
            assert_eq!(resolve(name, RecordType::A), Resolution::Forward, "{name}");
        }
    }
}
