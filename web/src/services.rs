//! Services: the list (type, virtual address, ports, endpoints ready) and a
//! Service's page (its ports, load-balancer ingress, selector, and the
//! endpoints the endpoints controller keeps in its EndpointSlices, each
//! with its readiness and a link to its pod).

use actix_web::{HttpResponse, web};
use askama::Template;
use berth_api::objects::Kind;
use berth_api::objects::discovery::SERVICE_NAME_LABEL;
use berth_server::authz::{Target, Verb};
use serde_json::Value;

use crate::page::{self, Chrome, PageError, Permission, Viewer};
use crate::view::{self, EventRow};

/// Mounts the Service pages.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/services", web::get().to(list))
        .route("/t/{tenant}/services/{name}", web::get().to(detail));
}

/// One port of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRow {
    /// The port's name, or empty.
    pub name: String,
    /// The Service's port.
    pub port: i64,
    /// Where it goes on the pods: a number or a container port's name
    /// (the port itself when not given).
    pub target: String,
    /// `TCP` (the default), `UDP` or `SCTP`.
    pub protocol: String,
    /// The port on every node, or empty.
    pub node_port: String,
}

impl PortRow {
    /// As one line: `80 → 8080/TCP (node 30080)`.
    pub fn summary(&self) -> String {
        let mut text = format!("{} → {}/{}", self.port, self.target, self.protocol);
        if !self.node_port.is_empty() {
            text.push_str(&format!(" (node {})", self.node_port));
        }
        text
    }
}

/// A Service's ports.
pub fn ports(service: &Value) -> Vec<PortRow> {
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    let port = view::number(p, "/port");
                    let target = view::text(p, "/targetPort");
                    let protocol = view::text(p, "/protocol");
                    PortRow {
                        name: view::text(p, "/name"),
                        port,
                        target: if target.is_empty() {
                            port.to_string()
                        } else {
                            target
                        },
                        protocol: if protocol.is_empty() {
                            "TCP".into()
                        } else {
                            protocol
                        },
                        node_port: view::text(p, "/nodePort"),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One endpoint of a Service: one pod's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRow {
    /// The pod's address(es), comma-separated.
    pub address: String,
    /// Ready and not terminating: new connections go here.
    pub ready: bool,
    /// Ready, whether terminating or not.
    pub serving: bool,
    /// Being deleted.
    pub terminating: bool,
    /// The pod's name, or empty when the endpoint names none.
    pub pod: String,
    /// The node it runs on.
    pub node: String,
    /// Where its node publishes its ports: `10.0.0.5:31000/TCP, …`.
    pub published: String,
    /// The container ports of its slice: `8080/TCP`.
    pub ports: String,
}

/// The endpoints of the slices labelled for Service `name`, ready ones
/// first, then by pod.
pub fn endpoints(slices: &[Value], name: &str) -> Vec<EndpointRow> {
    let label = format!("/metadata/labels/{}", SERVICE_NAME_LABEL.replace('/', "~1"));
    let mut rows: Vec<EndpointRow> = slices
        .iter()
        .filter(|slice| view::text(slice, &label) == name)
        .flat_map(|slice| {
            let ports = port_list(slice.get("ports"));
            slice
                .get("endpoints")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |e| {
                    let host_ip = view::text(&e, "/hostIP");
                    let published = e
                        .get("hostPorts")
                        .and_then(Value::as_array)
                        .map(|list| {
                            list.iter()
                                .map(|p| format!("{host_ip}:{}", port_text(p)))
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default();
                    let flag = |path: &str| e.pointer(path).and_then(Value::as_bool);
                    EndpointRow {
                        address: e
                            .get("addresses")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            })
                            .unwrap_or_default(),
                        // Kubernetes reads a missing `ready` as ready.
                        ready: flag("/conditions/ready").unwrap_or(true),
                        serving: flag("/conditions/serving")
                            .or(flag("/conditions/ready"))
                            .unwrap_or(true),
                        terminating: flag("/conditions/terminating").unwrap_or(false),
                        pod: if view::text(&e, "/targetRef/kind") == "Pod" {
                            view::text(&e, "/targetRef/name")
                        } else {
                            String::new()
                        },
                        node: view::text(&e, "/nodeName"),
                        published,
                        ports: ports.clone(),
                    }
                })
        })
        .collect();
    rows.sort_by(|a, b| (!a.ready, &a.pod).cmp(&(!b.ready, &b.pod)));
    rows
}

fn port_text(port: &Value) -> String {
    let protocol = view::text(port, "/protocol");
    format!(
        "{}/{}",
        view::number(port, "/port"),
        if protocol.is_empty() {
            "TCP"
        } else {
            &protocol
        }
    )
}

fn port_list(ports: Option<&Value>) -> String {
    ports
        .and_then(Value::as_array)
        .map(|list| list.iter().map(port_text).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// The Service's load-balancer ingress addresses, comma-separated.
pub fn ingress(service: &Value) -> String {
    service
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|i| {
                    let ip = view::text(i, "/ip");
                    if ip.is_empty() {
                        view::text(i, "/hostname")
                    } else {
                        ip
                    }
                })
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// One row of the Service list.
struct ServiceRow {
    name: String,
    kind: String,
    cluster_ip: String,
    ports: String,
    ingress: String,
    ready: usize,
    total: usize,
    tone: &'static str,
    selector: String,
    age: String,
}

fn service_type(service: &Value) -> String {
    let kind = view::text(service, "/spec/type");
    if kind.is_empty() {
        "ClusterIP".into()
    } else {
        kind
    }
}

/// How a Service's endpoints look: none ready is bad when it selects pods.
fn endpoints_tone(ready: usize, selector: &str) -> &'static str {
    view::tone(ready > 0, ready == 0 && !selector.is_empty())
}

fn service_row(service: &Value, slices: &[Value]) -> ServiceRow {
    let name = view::name(service);
    let endpoints = endpoints(slices, &name);
    let ready = endpoints.iter().filter(|e| e.ready).count();
    let selector = view::pairs(service, "/spec/selector").join(", ");
    ServiceRow {
        kind: service_type(service),
        cluster_ip: view::text(service, "/spec/clusterIP"),
        ports: ports(service)
            .iter()
            .map(PortRow::summary)
            .collect::<Vec<_>>()
            .join(", "),
        ingress: ingress(service),
        ready,
        total: endpoints.len(),
        tone: endpoints_tone(ready, &selector),
        selector,
        age: view::age(service),
        name,
    }
}

#[derive(Template)]
#[template(path = "services.html")]
struct ListPage {
    chrome: Chrome,
    live: String,
    rv: i64,
    rows: Vec<ServiceRow>,
}

async fn list(viewer: Viewer, tenant: web::Path<String>) -> Result<HttpResponse, PageError> {
    let tenant = tenant.into_inner();
    viewer.open(&tenant)?;
    let t = Some(tenant.as_str());
    let (services, rv) = viewer.list(Kind::Service, t).await?;
    let (slices, _) = viewer.list(Kind::EndpointSlice, t).await?;
    let mut rows: Vec<ServiceRow> = services.iter().map(|s| service_row(s, &slices)).collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    page::render(&ListPage {
        chrome: viewer
            .chrome(t, "services", format!("{tenant} · Services"))
            .await?,
        live: format!("/live?tenant={tenant}&kinds=services,endpointslices"),
        rv,
        rows,
    })
}

#[derive(Template)]
#[template(path = "service.html")]
struct DetailPage {
    chrome: Chrome,
    live: String,
    rv: i64,
    name: String,
    kind: String,
    cluster_ip: String,
    ingress: String,
    selector: String,
    affinity: String,
    age: String,
    ports: Vec<PortRow>,
    endpoints: Vec<EndpointRow>,
    ready: usize,
    tone: &'static str,
    events: Vec<EventRow>,
    yaml: String,
    api: String,
    delete: Permission,
}

async fn detail(
    viewer: Viewer,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (tenant, name) = path.into_inner();
    viewer.open(&tenant)?;
    let t = Some(tenant.as_str());
    let service = viewer.get(Kind::Service, t, &name).await?;
    let (slices, rv) = viewer.list(Kind::EndpointSlice, t).await?;
    let (events, _) = viewer
        .list_named(Kind::Event, &tenant, &format!("{name}."))
        .await?;
    let endpoints = endpoints(&slices, &name);
    let ready = endpoints.iter().filter(|e| e.ready).count();
    let selector = view::pairs(&service, "/spec/selector").join(", ");
    let events = view::event_rows(&events)
        .into_iter()
        .filter(|e| e.object_kind == "Service" && e.object_name == name)
        .take(30)
        .collect();
    let mut shown = service.clone();
    if let Some(metadata) = shown.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    page::render(&DetailPage {
        chrome: viewer
            .chrome(t, "services", format!("{name} · Service"))
            .await?,
        live: format!("/live?tenant={tenant}&kinds=services,endpointslices,events"),
        rv,
        kind: service_type(&service),
        cluster_ip: view::text(&service, "/spec/clusterIP"),
        ingress: ingress(&service),
        tone: endpoints_tone(ready, &selector),
        selector,
        affinity: view::text(&service, "/spec/sessionAffinity"),
        age: view::age(&service),
        ports: ports(&service),
        ready,
        endpoints,
        events,
        yaml: view::yaml(&shown),
        api: format!("/api/v1/tenants/{tenant}/services/{name}"),
        delete: viewer.permission(
            t,
            Target::Object(Kind::Service),
            Verb::Delete,
            "delete services",
        ),
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_port_without_target_or_protocol_goes_to_the_same_port_over_tcp() {
        let service = json!({"spec": {"type": "NodePort", "ports": [
            {"port": 80, "nodePort": 30080},
            {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "UDP"}
        ]}});
        let rows = ports(&service);
        assert_eq!(rows[0].summary(), "80 → 80/TCP (node 30080)");
        assert_eq!(rows[1].summary(), "9090 → metrics/UDP");
        assert_eq!(rows[1].name, "metrics");
    }

    #[test]
    fn endpoints_come_from_the_service_s_slices_ready_first_with_their_pods() {
        let slices = vec![
            json!({
                "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
                "ports": [{"port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["10.1.0.4"], "conditions": {"ready": false, "serving": false, "terminating": false},
                     "nodeName": "n1", "targetRef": {"kind": "Pod", "name": "web-2"}},
                    {"addresses": ["10.1.0.3"], "conditions": {"ready": true, "serving": true, "terminating": false},
                     "nodeName": "n2", "targetRef": {"kind": "Pod", "name": "web-1"},
                     "hostIP": "192.168.1.2", "hostPorts": [{"port": 31000, "protocol": "TCP"}]}
                ]
            }),
            json!({
                "metadata": {"name": "db-xyz", "labels": {"kubernetes.io/service-name": "db"}},
                "endpoints": [{"addresses": ["10.1.0.9"], "conditions": {"ready": true}}]
            }),
        ];
        let rows = endpoints(&slices, "web");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].pod, "web-1");
        assert!(rows[0].ready);
        assert_eq!(rows[0].published, "192.168.1.2:31000/TCP");
        assert_eq!(rows[0].ports, "8080/TCP");
        assert_eq!(rows[1].pod, "web-2");
        assert!(!rows[1].ready);
        assert_eq!(rows[1].address, "10.1.0.4");
    }

    #[test]
    fn a_service_that_selects_pods_but_has_none_ready_looks_bad() {
        assert_eq!(endpoints_tone(0, "app=web"), "bad");
        assert_eq!(endpoints_tone(0, ""), "warn");
        assert_eq!(endpoints_tone(2, "app=web"), "ok");
    }

    #[test]
    fn load_balancer_ingress_lists_addresses_or_host_names() {
        let service = json!({"status": {"loadBalancer": {"ingress": [
            {"ip": "192.168.1.10"}, {"hostname": "lb.example.com"}
        ]}}});
        assert_eq!(ingress(&service), "192.168.1.10, lb.example.com");
    }
}
