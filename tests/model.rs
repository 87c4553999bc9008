//! The model's behaviour, case by case: each case is a small set of Services, EndpointSlices and
//! node addresses with the virtual servers, bound addresses and warnings it must give.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipvs::{ForwardingMethod, ServiceFlags};
use ipvsd::model::{desired, AddressKind, Desired, ModelConfig, NodePortAddresses, ServiceRef};
use ipvsd::node_addresses::{NodeAddresses, PrimaryAddresses};
use ipvsd::source::Snapshot;
use k8s_openapi::api::core::v1::{
    ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort, ServiceSpec,
    ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const NODE: &str = "node-a";

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    }
}

/// A Service of `service_type` in namespace "default" with the given cluster IPs and ports.
fn mk_service(
    name: &str,
    service_type: &str,
    cluster_ips: &[&str],
    ports: Vec<ServicePort>,
) -> Service {
    Service {
        metadata: meta("default", name),
        spec: Some(ServiceSpec {
            type_: Some(service_type.to_string()),
            cluster_ip: cluster_ips.first().map(|s| s.to_string()),
            cluster_ips: Some(cluster_ips.iter().map(|s| s.to_string()).collect()),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A Service port; `protocol` None leaves it to the TCP default.
fn mk_port(name: &str, port: i32, protocol: Option<&str>) -> ServicePort {
    ServicePort {
        name: (!name.is_empty()).then(|| name.to_string()),
        port,
        protocol: protocol.map(str::to_string),
        ..ServicePort::default()
    }
}

fn mk_node_port(name: &str, port: i32, node_port: i32) -> ServicePort {
    ServicePort {
        node_port: Some(node_port),
        ..mk_port(name, port, Some("TCP"))
    }
}

fn spec_mut(service: &mut Service) -> &mut ServiceSpec {
    service.spec.as_mut().expect("mk_service sets a spec")
}

fn label(meta: &mut ObjectMeta, key: &str, value: &str) {
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_string(), value.to_string());
}

fn annotate(service: &mut Service, key: &str, value: &str) {
    service
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_string(), value.to_string());
}

/// An endpoint with explicit conditions (None = unset) on `node`.
fn mk_endpoint(
    address: &str,
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
    node: &str,
) -> Endpoint {
    Endpoint {
        addresses: vec![address.to_string()],
        conditions: Some(EndpointConditions {
            ready,
            serving,
            terminating,
        }),
        node_name: Some(node.to_string()),
        ..Endpoint::default()
    }
}

fn ready(address: &str) -> Endpoint {
    mk_endpoint(address, Some(true), Some(true), Some(false), NODE)
}

fn ready_on(address: &str, node: &str) -> Endpoint {
    mk_endpoint(address, Some(true), Some(true), Some(false), node)
}

/// A slice of `service` in namespace "default" with named ports.
fn mk_slice(
    name: &str,
    service: &str,
    address_type: &str,
    ports: &[(&str, i32)],
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let mut metadata = meta("default", name);
    label(&mut metadata, "kubernetes.io/service-name", service);
    EndpointSlice {
        metadata,
        address_type: address_type.to_string(),
        endpoints: Some(endpoints),
        ports: Some(
            ports
                .iter()
                .map(|(n, p)| EndpointPort {
                    name: (!n.is_empty()).then(|| n.to_string()),
                    port: Some(*p),
                    protocol: Some("TCP".to_string()),
                    ..EndpointPort::default()
                })
                .collect(),
        ),
    }
}

fn nodes(addresses: &[&str]) -> NodeAddresses {
    addresses
        .iter()
        .map(|a| a.parse::<IpAddr>().unwrap())
        .collect()
}

fn config() -> ModelConfig {
    ModelConfig {
        node_name: NODE.to_string(),
        ..ModelConfig::default()
    }
}

fn socket(address: &IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// One line per virtual server: key, scheduler, flags, persistence, kind, origin, real servers.
fn summary(d: &Desired) -> Vec<String> {
    d.virtual_servers
        .iter()
        .map(|(key, vs)| {
            assert_eq!(*key, vs.service.key, "map key and service key agree");
            let s = &vs.service;
            let mut line = format!("{} {}", s.key, s.scheduler);
            let sched = s.flags.difference(ServiceFlags::PERSISTENT);
            if sched != ServiceFlags::empty() {
                line += &format!(" flags={:#x}", sched.bits());
            }
            if s.flags.contains(ServiceFlags::PERSISTENT) {
                line += &format!(" persistent {} mask {}", s.timeout, s.netmask);
            } else {
                assert_eq!(s.timeout, 0, "{line}: no timeout without persistence");
            }
            let kind = match vs.kind {
                AddressKind::ClusterIp => "cluster",
                AddressKind::NodePort => "nodeport",
                AddressKind::ExternalIp => "external",
                AddressKind::LoadBalancer => "lb",
            };
            line += &format!(" [{kind} {}] ->", vs.origin);
            for real in &vs.destinations {
                let dest = real.to_destination();
                assert_eq!(dest.forwarding, ForwardingMethod::Masquerade, "{line}");
                assert_eq!(dest.weight, 1, "{line}");
                line += &format!(" {}", socket(&real.address, real.port));
            }
            line
        })
        .collect()
}

struct Case {
    name: &'static str,
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
    nodes: NodeAddresses,
    config: ModelConfig,
    rules: &'static [&'static str],
    bound: &'static [&'static str],
    /// Each warning must contain the corresponding text; there must be exactly as many.
    warnings: &'static [&'static str],
}

impl Default for Case {
    fn default() -> Self {
        Case {
            name: "",
            services: Vec::new(),
            slices: Vec::new(),
            nodes: nodes(&["192.168.1.10"]),
            config: config(),
            rules: &[],
            bound: &[],
            warnings: &[],
        }
    }
}

fn web_slice() -> EndpointSlice {
    mk_slice(
        "web-1",
        "web",
        "IPv4",
        &[("http", 8080)],
        vec![ready("10.244.0.11"), ready("10.244.0.12")],
    )
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "cluster IP service with ready endpoints",
            services: vec![mk_service("web", "ClusterIP", &["10.96.0.10"], vec![mk_port("http", 80, Some("TCP"))])],
            slices: vec![web_slice()],
            rules: &["tcp 10.96.0.10:80 rr [cluster default/web:http] -> 10.244.0.11:8080 10.244.0.12:8080"],
            bound: &["10.96.0.10"],
            ..Case::default()
        },
        Case {
            name: "type and protocol default to ClusterIP and TCP; UDP and SCTP kept",
            services: vec![{
                let mut s = mk_service(
                    "multi",
                    "ClusterIP",
                    &["10.96.0.11"],
                    vec![mk_port("a", 80, None), mk_port("b", 53, Some("UDP")), mk_port("c", 9, Some("SCTP"))],
                );
                spec_mut(&mut s).type_ = None;
                s
            }],
            rules: &[
                "tcp 10.96.0.11:80 rr [cluster default/multi:a] ->",
                "udp 10.96.0.11:53 rr [cluster default/multi:b] ->",
                "sctp 10.96.0.11:9 rr [cluster default/multi:c] ->",
            ],
            bound: &["10.96.0.11"],
            ..Case::default()
        },
        Case {
            name: "dual stack: each family's virtual server gets that family's endpoints",
            services: vec![mk_service("dual", "ClusterIP", &["10.96.0.60", "fd00:96::60"], vec![mk_port("http", 80, None)])],
            slices: vec![
                mk_slice("dual-4", "dual", "IPv4", &[("http", 8080)], vec![ready("10.244.0.11")]),
                mk_slice("dual-6", "dual", "IPv6", &[("http", 8080)], vec![ready("fd00:244::11")]),
            ],
            rules: &[
                "tcp 10.96.0.60:80 rr [cluster default/dual:http] -> 10.244.0.11:8080",
                "tcp [fd00:96::60]:80 rr [cluster default/dual:http] -> [fd00:244::11]:8080",
            ],
            bound: &["10.96.0.60", "fd00:96::60"],
            ..Case::default()
        },
        Case {
            name: "spec.clusterIP is used when spec.clusterIPs is absent",
            services: vec![{
                let mut s = mk_service("old", "ClusterIP", &["10.96.0.12"], vec![mk_port("", 80, None)]);
                spec_mut(&mut s).cluster_ips = None;
                s
            }],
            rules: &["tcp 10.96.0.12:80 rr [cluster default/old] ->"],
            bound: &["10.96.0.12"],
            ..Case::default()
        },
        Case {
            name: "a Service without a cluster IP is warned about; its node ports still apply",
            services: vec![mk_service("web", "NodePort", &[], vec![mk_node_port("http", 80, 30080)])],
            slices: vec![web_slice()],
            rules: &["tcp 192.168.1.10:30080 rr [nodeport default/web:http] -> 10.244.0.11:8080 10.244.0.12:8080"],
            warnings: &["Service default/web: no cluster IP"],
            ..Case::default()
        },
        Case {
            name: "headless, headless-labelled and ExternalName Services are skipped",
            services: vec![
                mk_service("headless", "ClusterIP", &["None"], vec![mk_port("http", 80, None)]),
                {
                    let mut s = mk_service("labelled", "ClusterIP", &["10.96.0.13"], vec![mk_port("http", 80, None)]);
                    label(&mut s.metadata, "service.kubernetes.io/headless", "");
                    s
                },
                {
                    let mut s = mk_service("ext", "ExternalName", &[], vec![mk_port("http", 80, None)]);
                    spec_mut(&mut s).external_name = Some("example.com".to_string());
                    s
                },
            ],
            ..Case::default()
        },
        Case {
            name: "service-proxy-name: other proxies' Services skipped, ours and unlabelled kept",
            services: vec![
                {
                    let mut s = mk_service("theirs", "ClusterIP", &["10.96.0.14"], vec![mk_port("http", 80, None)]);
                    label(&mut s.metadata, "service.kubernetes.io/service-proxy-name", "cilium");
                    s
                },
                {
                    let mut s = mk_service("ours", "ClusterIP", &["10.96.0.15"], vec![mk_port("http", 80, None)]);
                    label(&mut s.metadata, "service.kubernetes.io/service-proxy-name", "ipvsd");
                    s
                },
                mk_service("plain", "ClusterIP", &["10.96.0.16"], vec![mk_port("http", 80, None)]),
            ],
            config: ModelConfig {
                service_proxy_name: Some("ipvsd".to_string()),
                ..config()
            },
            rules: &[
                "tcp 10.96.0.15:80 rr [cluster default/ours:http] ->",
                "tcp 10.96.0.16:80 rr [cluster default/plain:http] ->",
            ],
            bound: &["10.96.0.15", "10.96.0.16"],
            ..Case::default()
        },
        Case {
            name: "a labelled Service is skipped when no proxy name is configured",
            services: vec![{
                let mut s = mk_service("theirs", "ClusterIP", &["10.96.0.14"], vec![mk_port("http", 80, None)]);
                label(&mut s.metadata, "service.kubernetes.io/service-proxy-name", "ipvsd");
                s
            }],
            ..Case::default()
        },
        Case {
            name: "NodePort: one virtual server per node address of the Service's family",
            services: vec![mk_service("web", "NodePort", &["10.96.0.10"], vec![mk_node_port("http", 80, 30080)])],
            slices: vec![web_slice()],
            nodes: nodes(&["192.168.1.10", "172.17.0.1", "fd00::10"]),
            rules: &[
                "tcp 10.96.0.10:80 rr [cluster default/web:http] -> 10.244.0.11:8080 10.244.0.12:8080",
                "tcp 172.17.0.1:30080 rr [nodeport default/web:http] -> 10.244.0.11:8080 10.244.0.12:8080",
                "tcp 192.168.1.10:30080 rr [nodeport default/web:http] -> 10.244.0.11:8080 10.244.0.12:8080",
            ],
            bound: &["10.96.0.10"],
            ..Case::default()
        },
        Case {
            name: "nodeport_addresses restricts the node addresses used",
            services: vec![mk_service("web", "NodePort", &["10.96.0.10"], vec![mk_node_port("http", 80, 30080)])],
            nodes: nodes(&["192.168.1.10", "172.17.0.1"]),
            config: ModelConfig {
                nodeport_addresses: NodePortAddresses::Cidrs(vec!["192.168.0.0/16".parse().unwrap()]),
                ..config()
            },
            rules: &[
                "tcp 10.96.0.10:80 rr [cluster default/web:http] ->",
                "tcp 192.168.1.10:30080 rr [nodeport default/web:http] ->",
            ],
            bound: &["10.96.0.10"],
            ..Case::default()
        },
        Case {
            name: "nodeport_addresses apply per family: a family without a CIDR keeps all its addresses",
            services: vec![mk_service("web", "NodePort", &["10.96.0.10", "fd00:96::10"], vec![mk_node_port("http", 80, 30080)])],
            nodes: nodes(&["192.168.1.10", "172.17.0.1", "2001:db8::10"]),
            config: ModelConfig {
                nodeport_addresses: NodePortAddresses::Cidrs(vec!["192.168.0.0/16".parse().unwrap()]),
                ..config()
            },
            rules: &[
                "tcp 10.96.0.10:80 rr [cluster default/web:http] ->",
                "tcp 192.168.1.10:30080 rr [nodeport default/web:http] ->",
                "tcp [2001:db8::10]:30080 rr [nodeport default/web:http] ->",
                "tcp [fd00:96::10]:80 rr [cluster default/web:http] ->",
            ],
            bound: &["10.96.0.10", "fd00:96::10"],
            ..Case::default()
        },
        Case {
            name: "nodeport_addresses primary keeps the primary address of each family only",
            services: vec![mk_service("web", "NodePort", &["10.96.0.10", "fd00:96::10"], vec![mk_node_port("http", 80, 30080)])],
            nodes: nodes(&["192.168.1.10", "172.17.0.1", "2001:db8::10", "fd00::10"]).with_primary(PrimaryAddresses {
                ipv4: Some("172.17.0.1".parse().unwrap()),
                ipv6: Some("2001:db8::10".parse().unwrap()),
            }),
            config: ModelConfig { nodeport_addresses: NodePortAddresses::Primary, ..config() },
            rules: &[
                "tcp 10.96.0.10:80 rr [cluster default/web:http] ->",
                "tcp 172.17.0.1:30080 rr [nodeport default/web:http] ->",
                "tcp [2001:db8::10]:30080 rr [nodeport default/web:http] ->",
                "tcp [fd00:96::10]:80 rr [cluster default/web:http] ->",
            ],
            bound: &["10.96.0.10", "fd00:96::10"],
            ..Case::default()
        },
        Case {
            name: "nodeport_addresses primary: a family without a primary address (no default route) gets no NodePorts",
            services: vec![mk_service("web", "NodePort", &["10.96.0.10", "fd00:96::10"], vec![mk_node_port("http", 80, 30080)])],
            nodes: nodes(&["192.168.1.10", "2001:db8::10"]).with_primary(PrimaryAddresses {
                ipv4: Some("192.168.1.10".parse().unwrap()),
                ipv6: None,
            }),
            config: ModelConfig { nodeport_addresses: NodePortAddresses::Primary, ..config() },
            rules: &[
                "tcp 10.96.0.10:80 rr [cluster default/web:http] ->",
                "tcp 192.168.1.10:30080 rr [nodeport default/web:http] ->",
                "tcp [fd00:96::10]:80 rr [cluster default/web:http] ->",
            ],
            bound: &["10.96.0.10", "fd00:96::10"],
            ..Case::default()
        },
        Case {
            name: "nodeport_addresses primary: a primary address that is not a node address (on the dummy) gets no NodePort",
            services: vec![mk_service("web", "NodePort", &["10.96.0.10"], vec![mk_node_port("http", 80, 30080)])],
            nodes: nodes(&["192.168.1.10"]).with_primary(PrimaryAddresses {
                ipv4: Some("10.96.0.10".parse().unwrap()),
                ipv6: None,
            }),
            config: ModelConfig { nodeport_addresses: NodePortAddresses::Primary, ..config() },
            rules: &["tcp 10.96.0.10:80 rr [cluster default/web:http] ->"],
            bound: &["10.96.0.10"],
            ..Case::default()
        },
        Case {
            name: "external and load-balancer IPs of a family the Service does not have are ignored with a warning",
            services: vec![{
                let mut s = mk_service("lb", "LoadBalancer", &["10.96.0.17"], vec![mk_node_port("http", 80, 30081)]);
                spec_mut(&mut s).external_ips = Some(vec!["203.0.113.5".to_string(), "2001:db8::5".to_string()]);
                s.status = Some(ServiceStatus {
                    load_balancer: Some(LoadBalancerStatus {
                        ingress: Some(vec![LoadBalancerIngress { ip: Some("2001:db8::7".to_string()), ..Default::default() }]),
                    }),
                    conditions: None,
                });
                s
            }],
            rules: &[
                "tcp 10.96.0.17:80 rr [cluster default/lb:http] ->",
                "tcp 192.168.1.10:30081 rr [nodeport default/lb:http] ->",
                "tcp 203.0.113.5:80 rr [external default/lb:http] ->",
            ],
            bound: &["10.96.0.17", "203.0.113.5"],
            warnings: &[
                "Service default/lb: spec.externalIPs 2001:db8::5 is not of the Service's IP families, ignored",
                "Service default/lb: status.loadBalancer.ingress 2001:db8::7 is not of the Service's IP families, ignored",
            ],
            ..Case::default()
        },
        Case {
            name: "LoadBalancer: node ports, external IPs and ingress IPs; node addresses not bound; ipMode Proxy skipped",
            services: vec![{
                let mut s = mk_service("lb", "LoadBalancer", &["10.96.0.17"], vec![mk_node_port("http", 80, 30081)]);
                spec_mut(&mut s).external_ips = Some(vec!["203.0.113.5".to_string(), "192.168.1.10".to_string()]);
                s.status = Some(ServiceStatus {
                    load_balancer: Some(LoadBalancerStatus {
                        ingress: Some(vec![
                            LoadBalancerIngress { ip: Some("198.51.100.7".to_string()), ..Default::default() },
                            LoadBalancerIngress {
                                ip: Some("198.51.100.8".to_string()),
                                ip_mode: Some("Proxy".to_string()),
                                ..Default::default()
                            },
                            LoadBalancerIngress { hostname: Some("lb.example.com".to_string()), ..Default::default() },
                        ]),
                    }),
                    conditions: None,
                });
                s
            }],
            rules: &[
                "tcp 10.96.0.17:80 rr [cluster default/lb:http] ->",
                "tcp 192.168.1.10:80 rr [external default/lb:http] ->",
                "tcp 192.168.1.10:30081 rr [nodeport default/lb:http] ->",
                "tcp 198.51.100.7:80 rr [lb default/lb:http] ->",
                "tcp 203.0.113.5:80 rr [external default/lb:http] ->",
            ],
            bound: &["10.96.0.17", "198.51.100.7", "203.0.113.5"],
            ..Case::default()
        },
        Case {
            name: "ports are matched by name: named target ports resolve per port",
            services: vec![mk_service(
                "app",
                "ClusterIP",
                &["10.96.0.18"],
                vec![mk_port("http", 80, None), mk_port("metrics", 9100, None)],
            )],
            slices: vec![mk_slice(
                "app-1",
                "app",
                "IPv4",
                &[("metrics", 9090), ("http", 8080)],
                vec![ready("10.244.0.11")],
            )],
            rules: &[
                "tcp 10.96.0.18:80 rr [cluster default/app:http] -> 10.244.0.11:8080",
                "tcp 10.96.0.18:9100 rr [cluster default/app:metrics] -> 10.244.0.11:9090",
            ],
            bound: &["10.96.0.18"],
            ..Case::default()
        },
        Case {
            name: "ready endpoints only; ready unset counts as ready",
            services: vec![mk_service("web", "ClusterIP", &["10.96.0.10"], vec![mk_port("http", 80, None)])],
            slices: vec![mk_slice(
                "web-1",
                "web",
                "IPv4",
                &[("http", 8080)],
                vec![
                    mk_endpoint("10.244.0.11", None, None, None, NODE),
                    mk_endpoint("10.244.0.12", Some(false), Some(false), Some(false), NODE),
                    mk_endpoint("10.244.0.13", Some(false), Some(true), Some(true), NODE),
                    Endpoint { addresses: vec!["10.244.0.14".to_string()], ..Endpoint::default() },
                ],
            )],
            rules: &["tcp 10.96.0.10:80 rr [cluster default/web:http] -> 10.244.0.11:8080 10.244.0.14:8080"],
            bound: &["10.96.0.10"],
            ..Case::default()
        },
        Case {
            name: "no ready endpoint: the serving terminating ones are used",
            services: vec![mk_service("web", "ClusterIP", &["10.96.0.10"], vec![mk_port("http", 80, None)])],
            slices: vec![mk_slice(
                "web-1",
                "web",
                "IPv4",
                &[("http", 8080)],
                vec![
                    mk_endpoint("10.244.0.12", Some(false), Some(false), Some(true), NODE),
                    mk_endpoint("10.244.0.13", Some(false), Some(true), Some(true), NODE),
                    mk_endpoint("10.244.0.14", Some(false), Some(true), Some(false), NODE),
                ],
            )],
            rules: &["tcp 10.96.0.10:80 rr [cluster default/web:http] -> 10.244.0.13:8080"],
            bound: &["10.96.0.10"],
            ..Case::default()
        },
        Case {
            name: "externalTrafficPolicy Local: node port and external get this node's endpoints only",
            services: vec![{
                let mut s = mk_service("web", "NodePort", &["10.96.0.10"], vec![mk_node_port("http", 80, 30080)]);
                spec_mut(&mut s).external_traffic_policy = Some("Local".to_string());
                spec_mut(&mut s).external_ips = Some(vec!["203.0.113.5".to_string()]);
                s
            }],
            slices: vec![mk_slice(
                "web-1",
                "web",
                "IPv4",
                &[("http", 8080)],
                vec![ready_on("10.244.0.11", NODE), ready_on("10.244.1.11", "node-b")],
            )],
            rules: &[
                "tcp 10.96.0.10:80 rr [cluster default/web:http] -> 10.244.0.11:8080 10.244.1.11:8080",
                "tcp 192.168.1.10:30080 rr [nodeport default/web:http] -> 10.244.0.11:8080",
                "tcp 203.0.113.5:80 rr [external default/web:http] -> 10.244.0.11:8080",
            ],
            bound: &["10.96.0.10", "203.0.113.5"],
            ..Case::default()
        },
        Case {
            name: "internalTrafficPolicy Local: cluster IP gets this node's endpoints only",
            services: vec![{
                let mut s = mk_service("web", "NodePort", &["10.96.0.10"], vec![mk_node_port("http", 80, 30080)]);
                spec_mut(&mut s).internal_traffic_policy = Some("Local".to_string());
                s
            }],
            slices: vec![mk_slice(
                "web-1",
                "web",
                "IPv4",
                &[("http", 8080)],
                vec![ready_on("10.244.0.11", NODE), ready_on("10.244.1.11", "node-b")],
            )],
            rules: &[
                "tcp 10.96.0.10:80 rr [cluster default/web:http] -> 10.244.0.11:8080",
                "tcp 192.168.1.10:30080 rr [nodeport default/web:http] -> 10.244.0.11:8080 10.244.1.11:8080",
            ],
            bound: &["10.96.0.10"],
            ..Case::default()
        },
        Case {
            name: "Local policy with no local endpoint falls back to this node's terminating ones, never to other nodes",
            services: vec![{
                let mut s = mk_service("web", "ClusterIP", &["10.96.0.10"], vec![mk_port("http", 80, None)]);
                spec_mut(&mut s).internal_traffic_policy = Some("Local".to_string());
                s
            }],
            slices: vec![mk_slice(
                "web-1",
                "web",
                "IPv4",
                &[("http", 8080)],
                vec![
                    ready_on("10.244.1.11", "node-b"),
                    mk_endpoint("10.244.0.12", Some(false), Some(true), Some(true), NODE),
                ],
            )],
            rules: &["tcp 10.96.0.10:80 rr [cluster default/web:http] -> 10.244.0.12:8080"],
            bound: &["10.96.0.10"],
            ..Case::default()
        },
        Case {
            name: "endpoints repeated across slices are merged; other Services' and namespaces' slices ignored",
            services: vec![mk_service("web", "ClusterIP", &["10.96.0.10"], vec![mk_port("http", 80, None)])],
            slices: vec![
                web_slice(),
                mk_slice("web-2", "web", "IPv4", &[("http", 8080)], vec![ready("10.244.0.12"), ready("10.244.0.13")]),
                mk_slice("api-1", "api", "IPv4", &[("http", 8080)], vec![ready("10.244.0.99")]),
                {
                    let mut s = mk_slice("web-x", "web", "IPv4", &[("http", 8080)], vec![ready("10.244.0.98")]);
                    s.metadata.namespace = Some("other".to_string());
                    s
                },
                mk_slice("web-fqdn", "web", "FQDN", &[("http", 8080)], vec![ready("web.example.com")]),
            ],
            rules: &["tcp 10.96.0.10:80 rr [cluster default/web:http] -> 10.244.0.11:8080 10.244.0.12:8080 10.244.0.13:8080"],
            bound: &["10.96.0.10"],
            ..Case::default()
        },
        Case {
            name: "session affinity ClientIP: persistent, default timeout, full netmask per family",
            services: vec![{
                let mut s = mk_service("sticky", "ClusterIP", &["10.96.0.20", "fd00:96::20"], vec![mk_port("https", 443, None)]);
                spec_mut(&mut s).session_affinity = Some("ClientIP".to_string());
                s
            }],
            rules: &[
                "tcp 10.96.0.20:443 rr persistent 10800 mask 32 [cluster default/sticky:https] ->",
                "tcp [fd00:96::20]:443 rr persistent 10800 mask 128 [cluster default/sticky:https] ->",
            ],
            bound: &["10.96.0.20", "fd00:96::20"],
            ..Case::default()
        },
        Case {
            name: "session affinity timeout from sessionAffinityConfig; out of range warns and defaults",
            services: vec![
                {
                    let mut s = mk_service("sticky", "ClusterIP", &["10.96.0.20"], vec![mk_port("https", 443, None)]);
                    spec_mut(&mut s).session_affinity = Some("ClientIP".to_string());
                    spec_mut(&mut s).session_affinity_config = Some(SessionAffinityConfig {
                        client_ip: Some(ClientIPConfig { timeout_seconds: Some(600) }),
                    });
                    s
                },
                {
                    let mut s = mk_service("sticky2", "ClusterIP", &["10.96.0.21"], vec![mk_port("https", 443, None)]);
                    spec_mut(&mut s).session_affinity = Some("ClientIP".to_string());
                    spec_mut(&mut s).session_affinity_config = Some(SessionAffinityConfig {
                        client_ip: Some(ClientIPConfig { timeout_seconds: Some(0) }),
                    });
                    s
                },
            ],
            rules: &[
                "tcp 10.96.0.20:443 rr persistent 600 mask 32 [cluster default/sticky:https] ->",
                "tcp 10.96.0.21:443 rr persistent 10800 mask 32 [cluster default/sticky2:https] ->",
            ],
            bound: &["10.96.0.20", "10.96.0.21"],
            warnings: &["Service default/sticky2: spec.sessionAffinityConfig.clientIP.timeoutSeconds 0 out of range"],
            ..Case::default()
        },
        Case {
            name: "configured scheduler and flags apply; annotations override them",
            services: vec![
                mk_service("plain", "ClusterIP", &["10.96.0.31"], vec![mk_port("http", 80, None)]),
                {
                    let mut s = mk_service("hashed", "ClusterIP", &["10.96.0.30"], vec![mk_port("http", 80, None)]);
                    annotate(&mut s, "ipvsd.io/scheduler", "mh");
                    annotate(&mut s, "ipvsd.io/scheduler-flags", "mh-port");
                    s
                },
                {
                    let mut s = mk_service("noflags", "ClusterIP", &["10.96.0.32"], vec![mk_port("http", 80, None)]);
                    annotate(&mut s, "ipvsd.io/scheduler-flags", "");
                    s
                },
            ],
            config: ModelConfig {
                scheduler: "sh".to_string(),
                scheduler_flags: ServiceFlags::SCHED1 | ServiceFlags::SCHED2,
                ..config()
            },
            rules: &[
                "tcp 10.96.0.30:80 mh flags=0x10 [cluster default/hashed:http] ->",
                "tcp 10.96.0.31:80 sh flags=0x18 [cluster default/plain:http] ->",
                "tcp 10.96.0.32:80 sh [cluster default/noflags:http] ->",
            ],
            bound: &["10.96.0.30", "10.96.0.31", "10.96.0.32"],
            ..Case::default()
        },
        Case {
            name: "bad scheduler annotations warn, name the Service, and the defaults apply",
            services: vec![
                {
                    let mut s = mk_service("badsched", "ClusterIP", &["10.96.0.33"], vec![mk_port("http", 80, None)]);
                    annotate(&mut s, "ipvsd.io/scheduler", "Round Robin");
                    s
                },
                {
                    let mut s = mk_service("badflags", "ClusterIP", &["10.96.0.34"], vec![mk_port("http", 80, None)]);
                    annotate(&mut s, "ipvsd.io/scheduler", "mh");
                    annotate(&mut s, "ipvsd.io/scheduler-flags", "mh-port,turbo");
                    s
                },
            ],
            rules: &[
                "tcp 10.96.0.33:80 rr [cluster default/badsched:http] ->",
                "tcp 10.96.0.34:80 mh [cluster default/badflags:http] ->",
            ],
            bound: &["10.96.0.33", "10.96.0.34"],
            warnings: &[
                "Service default/badflags: annotation ipvsd.io/scheduler-flags: unknown scheduler flag \"turbo\"",
                "Service default/badsched: annotation ipvsd.io/scheduler \"Round Robin\" is not a scheduler name",
            ],
            ..Case::default()
        },
        Case {
            name: "a scheduler the kernel lacks: a warning naming the Service, and the default",
            services: vec![{
                let mut s = mk_service("exotic", "ClusterIP", &["10.96.0.35"], vec![mk_port("http", 80, None)]);
                annotate(&mut s, "ipvsd.io/scheduler", "nosuch");
                s
            }],
            config: ModelConfig {
                unavailable_schedulers: ["nosuch".to_string()].into(),
                ..config()
            },
            rules: &["tcp 10.96.0.35:80 rr [cluster default/exotic:http] ->"],
            bound: &["10.96.0.35"],
            warnings: &[
                "Service default/exotic: annotation ipvsd.io/scheduler: the kernel has no scheduler \"nosuch\", using \"rr\"",
            ],
            ..Case::default()
        },
        Case {
            name: "bad data inside a Service: the bad part is skipped with a warning, the rest applies",
            services: vec![{
                let mut s = mk_service(
                    "broken",
                    "NodePort",
                    &["10.96.0.999", "fd00:96::40"],
                    vec![mk_port("big", 70000, None), mk_node_port("http", 80, 99999), mk_port("dns", 53, Some("ICMP"))],
                );
                spec_mut(&mut s).external_ips = Some(vec!["not-an-ip".to_string()]);
                s
            }],
            slices: vec![mk_slice(
                "broken-1",
                "broken",
                "IPv6",
                &[("http", 8080)],
                vec![ready("fd00:244::11"), ready("fd00:244::zz"), ready("10.244.0.11")],
            )],
            rules: &["tcp [fd00:96::40]:80 rr [cluster default/broken:http] -> [fd00:244::11]:8080"],
            bound: &["fd00:96::40"],
            warnings: &[
                "EndpointSlice default/broken-1: endpoints[1].addresses[0] \"fd00:244::zz\" is not an IP address",
                "EndpointSlice default/broken-1: endpoints[2].addresses[0] 10.244.0.11 does not match",
                "Service default/broken: spec.clusterIPs[0] \"10.96.0.999\" is not an IP address",
                "Service default/broken: spec.externalIPs[0] \"not-an-ip\" is not an IP address",
                "Service default/broken: spec.ports[0].port 70000 out of range",
                "Service default/broken: spec.ports[1].nodePort 99999 out of range",
                "Service default/broken: spec.ports[2].protocol \"ICMP\" is not TCP, UDP or SCTP",
            ],
            ..Case::default()
        },
        Case {
            name: "objects missing their essentials are skipped with a warning, never a panic",
            services: vec![
                Service { metadata: ObjectMeta::default(), spec: Some(ServiceSpec::default()), status: None },
                Service { metadata: meta("default", "nospec"), spec: None, status: None },
                mk_service("web", "ClusterIP", &["10.96.0.10"], vec![mk_port("http", 80, None)]),
            ],
            slices: vec![
                {
                    let mut s = web_slice();
                    s.metadata.labels = None;
                    s.metadata.name = Some("orphan".to_string());
                    s
                },
                {
                    let mut s = web_slice();
                    s.endpoints = None;
                    s.ports = None;
                    s
                },
            ],
            rules: &["tcp 10.96.0.10:80 rr [cluster default/web:http] ->"],
            bound: &["10.96.0.10"],
            warnings: &[
                "EndpointSlice default/orphan: no kubernetes.io/service-name label",
                "Service default/<unnamed>: no metadata.name",
                "Service default/nospec: no spec",
            ],
            ..Case::default()
        },
        Case {
            name: "two Services claiming one virtual server: the first by namespace/name keeps it",
            services: vec![
                {
                    let mut s = mk_service("zeta", "ClusterIP", &["10.96.0.51"], vec![mk_port("http", 80, None)]);
                    spec_mut(&mut s).external_ips = Some(vec!["203.0.113.9".to_string()]);
                    s
                },
                {
                    let mut s = mk_service("alpha", "ClusterIP", &["10.96.0.50"], vec![mk_port("http", 80, None)]);
                    spec_mut(&mut s).external_ips = Some(vec!["203.0.113.9".to_string()]);
                    s
                },
            ],
            rules: &[
                "tcp 10.96.0.50:80 rr [cluster default/alpha:http] ->",
                "tcp 10.96.0.51:80 rr [cluster default/zeta:http] ->",
                "tcp 203.0.113.9:80 rr [external default/alpha:http] ->",
            ],
            bound: &["10.96.0.50", "10.96.0.51", "203.0.113.9"],
            warnings: &["Service default/zeta: external IP tcp 203.0.113.9:80 is already used by default/alpha:http"],
            ..Case::default()
        },
    ]
}

#[test]
fn model_cases() {
    let mut failures = Vec::new();
    for case in cases() {
        let snapshot = Snapshot {
            services: case.services,
            endpoint_slices: case.slices,
        };
        let got = desired(&snapshot, &case.nodes, &case.config);
        let rules = summary(&got);
        let bound: Vec<String> = got.bound_addresses.iter().map(|a| a.to_string()).collect();
        let mut warnings = got.warnings.clone();
        warnings.sort();
        let warnings_match = warnings.len() == case.warnings.len()
            && warnings
                .iter()
                .zip(case.warnings)
                .all(|(w, want)| w.contains(want));
        if rules != case.rules || bound != case.bound || !warnings_match {
            failures.push(format!(
                "case {:?}\n  rules:    {rules:#?}\n  expected: {:#?}\n  bound: {bound:?} expected {:?}\n  warnings: {warnings:#?}\n  expected: {:#?}",
                case.name, case.rules, case.bound, case.warnings
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_service_without_endpoints_still_gets_its_virtual_servers() {
    let snapshot = Snapshot {
        services: vec![mk_service(
            "web",
            "NodePort",
            &["10.96.0.10"],
            vec![mk_node_port("http", 80, 30080)],
        )],
        endpoint_slices: vec![],
    };
    let got = desired(&snapshot, &nodes(&["192.168.1.10"]), &config());
    assert_eq!(got.virtual_servers.len(), 2);
    assert!(got
        .virtual_servers
        .values()
        .all(|vs| vs.destinations.is_empty()));
}

#[test]
fn the_result_does_not_depend_on_input_order() {
    let services = vec![
        mk_service(
            "b",
            "NodePort",
            &["10.96.0.2"],
            vec![mk_node_port("http", 80, 30002)],
        ),
        mk_service(
            "a",
            "ClusterIP",
            &["10.96.0.1"],
            vec![mk_port("http", 80, None)],
        ),
    ];
    let slices = vec![
        mk_slice(
            "b-1",
            "b",
            "IPv4",
            &[("http", 8080)],
            vec![ready("10.244.0.3"), ready("10.244.0.2")],
        ),
        mk_slice(
            "a-1",
            "a",
            "IPv4",
            &[("http", 8080)],
            vec![ready("10.244.0.1")],
        ),
    ];
    let forward = Snapshot {
        services: services.clone(),
        endpoint_slices: slices.clone(),
    };
    let backward = Snapshot {
        services: services.into_iter().rev().collect(),
        endpoint_slices: slices.into_iter().rev().collect(),
    };
    let n = nodes(&["192.168.1.10"]);
    assert_eq!(
        desired(&forward, &n, &config()),
        desired(&backward, &n, &config())
    );
}

#[test]
fn service_ref_names_namespace_name_and_port() {
    let named = ServiceRef {
        namespace: "kube-system".into(),
        name: "dns".into(),
        port_name: "dns-tcp".into(),
    };
    assert_eq!(named.to_string(), "kube-system/dns:dns-tcp");
    let unnamed = ServiceRef {
        namespace: "default".into(),
        name: "web".into(),
        port_name: String::new(),
    };
    assert_eq!(unnamed.to_string(), "default/web");
}

#[test]
fn default_config_is_round_robin_without_flags() {
    let c = ModelConfig::default();
    assert_eq!(c.scheduler, "rr");
    assert_eq!(c.scheduler_flags, ServiceFlags::empty());
    assert!(c.nodeport_addresses.is_all());
    assert_eq!(c.service_proxy_name, None);
}

/// A small deterministic generator, so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, pool: &[T]) -> T {
        pool[self.below(pool.len() as u64) as usize]
    }
    /// Usually a good value, sometimes a bad one, sometimes nothing.
    fn mostly<T: Copy>(&mut self, good: &[T], bad: &[T]) -> Option<T> {
        match self.below(8) {
            0 => None,
            1 => Some(self.pick(bad)),
            _ => Some(self.pick(good)),
        }
    }
}

/// Services and slices assembled from good and bad values: the model must not panic, and what it
/// produces must still be consistent.
#[test]
fn garbage_in_gives_warnings_not_panics_and_consistent_rules() {
    let (good_ips, bad_ips) = (
        ["10.96.0.1", "10.96.0.2", "fd00:96::1", "192.168.1.10"],
        ["None", "", "garbage", "999.1.1.1", "::ffff:1.2.3.4"],
    );
    let (good_pod_ips, bad_pod_ips) = (
        ["10.244.0.1", "10.244.0.2", "10.244.0.3", "fd00:244::1"],
        ["nope", "10.244.0.256", ""],
    );
    let (good_ports, bad_ports) = ([80, 443, 1, 65535], [-1, 0, 65536, i32::MAX, i32::MIN]);
    let (good_types, bad_types) = (
        ["ClusterIP", "NodePort", "LoadBalancer"],
        ["ExternalName", "Weird"],
    );
    let (good_protocols, bad_protocols) = (["TCP", "UDP", "SCTP"], ["ICMP", ""]);
    let names = ["http", "dns", ""];
    let (good_families, bad_families) = (["IPv4", "IPv6"], ["FQDN", "IPX"]);
    let (good_policies, bad_policies) = (["Local", "Cluster"], ["Other"]);
    let (good_schedulers, bad_schedulers) = (["mh", "wlc", "rr"], ["", "RR", "a-b"]);
    let (good_flags, bad_flags) = (["mh-port", "", "flag-1,flag-3"], ["bogus", "mh-port,x"]);
    let node_names = [NODE, "node-b", ""];
    let conditions = [true, false];
    let node_set = nodes(&["192.168.1.10", "fd00::10"]);
    let (mut made, mut with_destinations, mut warned) = (0, 0, 0);
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut services = Vec::new();
        let mut slices = Vec::new();
        for i in 0..4 {
            let name = format!("s{}", i % 3);
            let cluster: Vec<&str> = (0..1 + rng.below(2))
                .filter_map(|_| rng.mostly(&good_ips, &bad_ips))
                .collect();
            let port_list = (0..1 + rng.below(2))
                .map(|_| ServicePort {
                    name: Some(rng.pick(&names).to_string()),
                    port: rng.mostly(&good_ports, &bad_ports).unwrap_or(0),
                    node_port: rng.mostly(&[30080, 30443], &bad_ports),
                    protocol: rng
                        .mostly(&good_protocols, &bad_protocols)
                        .map(str::to_string),
                    ..ServicePort::default()
                })
                .collect();
            let service_type = rng.mostly(&good_types, &bad_types).unwrap_or("ClusterIP");
            let mut s = mk_service(&name, service_type, &cluster, port_list);
            let spec = spec_mut(&mut s);
            if rng.below(3) == 0 {
                spec.cluster_ips = None;
            }
            spec.external_ips = rng
                .mostly(&good_ips, &bad_ips)
                .map(|ip| vec![ip.to_string()]);
            spec.external_traffic_policy = rng
                .mostly(&good_policies, &bad_policies)
                .map(str::to_string);
            spec.internal_traffic_policy = rng
                .mostly(&good_policies, &bad_policies)
                .map(str::to_string);
            if rng.below(2) == 0 {
                spec.session_affinity = Some("ClientIP".into());
                spec.session_affinity_config = Some(SessionAffinityConfig {
                    client_ip: Some(ClientIPConfig {
                        timeout_seconds: rng.mostly(&[60, 86400], &[0, -5, 86401]),
                    }),
                });
            }
            if let Some(v) = rng.mostly(&good_schedulers, &bad_schedulers) {
                annotate(&mut s, "ipvsd.io/scheduler", v);
            }
            if let Some(v) = rng.mostly(&good_flags, &bad_flags) {
                annotate(&mut s, "ipvsd.io/scheduler-flags", v);
            }
            s.status = Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(vec![LoadBalancerIngress {
                        ip: rng.mostly(&good_ips, &bad_ips).map(str::to_string),
                        ..Default::default()
                    }]),
                }),
                conditions: None,
            });
            services.push(s);

            let endpoints = (0..rng.below(4))
                .map(|_| Endpoint {
                    addresses: rng
                        .mostly(&good_pod_ips, &bad_pod_ips)
                        .map(|a| vec![a.to_string()])
                        .unwrap_or_default(),
                    conditions: Some(EndpointConditions {
                        ready: rng.mostly(&[true], &[false]),
                        serving: rng.mostly(&conditions, &conditions),
                        terminating: rng.mostly(&conditions, &conditions),
                    }),
                    node_name: Some(rng.pick(&node_names).to_string()),
                    ..Endpoint::default()
                })
                .collect();
            let family = rng.mostly(&good_families, &bad_families).unwrap_or("IPv4");
            let mut slice = mk_slice(&format!("{name}-{i}"), &name, family, &[], endpoints);
            slice.ports = Some(
                (0..1 + rng.below(2))
                    .map(|_| EndpointPort {
                        name: Some(rng.pick(&names).to_string()),
                        port: rng.mostly(&[8080, 5353], &[0, 70000, -1]),
                        ..EndpointPort::default()
                    })
                    .collect(),
            );
            slices.push(slice);
        }
        let snapshot = Snapshot {
            services,
            endpoint_slices: slices,
        };
        let got = desired(&snapshot, &node_set, &config());
        made += got.virtual_servers.len();
        with_destinations += got
            .virtual_servers
            .values()
            .filter(|vs| !vs.destinations.is_empty())
            .count();
        warned += got.warnings.len();
        for (key, vs) in &got.virtual_servers {
            let ipvs::ServiceKey::Addr { address, port, .. } = key else {
                panic!("seed {seed}: the model made a firewall-mark service");
            };
            assert_ne!(*port, 0, "seed {seed}: {key}");
            assert!(!address.is_unspecified(), "seed {seed}: {key}");
            let is_v6 = address.is_ipv6();
            let full = if is_v6 { 128 } else { 32 };
            assert_eq!(vs.service.netmask, full, "seed {seed}: {key}");
            for real in &vs.destinations {
                assert_eq!(
                    real.address.is_ipv6(),
                    is_v6,
                    "seed {seed}: {key} has a real server of the other family"
                );
                assert_ne!(real.port, 0, "seed {seed}: {key}");
            }
            if vs.kind != AddressKind::NodePort {
                assert!(
                    node_set.contains(address) || got.bound_addresses.contains(address),
                    "seed {seed}: {key} is neither a node address nor bound"
                );
            }
            let scheduler = &vs.service.scheduler;
            assert!(
                ["rr", "mh", "wlc"].contains(&scheduler.as_str()),
                "seed {seed}: scheduler {scheduler:?}"
            );
        }
        for address in &got.bound_addresses {
            assert!(
                !node_set.contains(address),
                "seed {seed}: node address {address} bound"
            );
        }
    }
    // The generator must reach the interesting paths, not only the rejections.
    assert!(
        made > 300 && with_destinations > 100 && warned > 100,
        "{made} virtual servers, {with_destinations} with real servers, {warned} warnings"
    );
}

#[test]
fn load_balancers_with_a_local_policy_get_a_health_check_counting_local_endpoints() {
    let lb = |name: &str, ip: &str, health_port: i32, policy: &str| {
        let mut s = mk_service(
            name,
            "LoadBalancer",
            &[ip],
            vec![mk_node_port("http", 80, 30000 + health_port % 1000)],
        );
        let spec = spec_mut(&mut s);
        spec.external_traffic_policy = Some(policy.to_string());
        spec.health_check_node_port = Some(health_port);
        s
    };
    let snapshot = Snapshot {
        services: vec![
            lb("local", "10.96.0.10", 32001, "Local"),
            // The API allocates none for a Cluster policy; a stray one is not served.
            lb("cluster", "10.96.0.11", 32002, "Cluster"),
            lb("same-port", "10.96.0.12", 32001, "Local"),
            lb("bad-port", "10.96.0.13", 70000, "Local"),
        ],
        endpoint_slices: vec![mk_slice(
            "local-1",
            "local",
            "IPv4",
            &[("http", 8080)],
            vec![
                ready("10.244.0.11"),
                ready("10.244.0.12"),
                ready_on("10.244.1.13", "other-node"),
                // Not ready while others are: not an endpoint the node serves.
                mk_endpoint("10.244.0.14", Some(false), Some(false), Some(false), NODE),
            ],
        )],
    };
    let got = desired(&snapshot, &nodes(&["192.168.1.10"]), &config());
    assert_eq!(
        got.health_checks.keys().copied().collect::<Vec<_>>(),
        [32001],
        "{:?}",
        got.health_checks
    );
    let check = &got.health_checks[&32001];
    assert_eq!(
        (check.namespace.as_str(), check.name.as_str()),
        ("default", "local")
    );
    assert_eq!(check.local_endpoints, 2);
    let warnings = got.warnings.join("\n");
    assert!(warnings.contains("Service default/same-port: spec.healthCheckNodePort 32001 is already used by default/local"), "{warnings}");
    assert!(
        warnings.contains("Service default/bad-port: spec.healthCheckNodePort 70000 out of range"),
        "{warnings}"
    );
}

#[test]
fn load_balancer_source_ranges_apply_to_load_balancer_ips_only() {
    let mut s = mk_service(
        "lb",
        "LoadBalancer",
        &["10.96.0.10"],
        vec![mk_node_port("http", 80, 30080)],
    );
    spec_mut(&mut s).load_balancer_source_ranges =
        Some(vec!["192.168.50.0/24".into(), "nonsense".into()]);
    spec_mut(&mut s).external_ips = Some(vec!["203.0.113.7".into()]);
    s.status = Some(k8s_openapi::api::core::v1::ServiceStatus {
        load_balancer: Some(k8s_openapi::api::core::v1::LoadBalancerStatus {
            ingress: Some(vec![k8s_openapi::api::core::v1::LoadBalancerIngress {
                ip: Some("198.51.100.9".into()),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    let got = desired(
        &Snapshot {
            services: vec![s],
            endpoint_slices: vec![],
        },
        &nodes(&["192.168.1.10"]),
        &config(),
    );
    for vs in got.virtual_servers.values() {
        let expected = (vs.kind == AddressKind::LoadBalancer)
            .then(|| vec!["192.168.50.0/24".parse().unwrap()]);
        assert_eq!(vs.source_ranges, expected, "{:?}", vs.service.key);
        // External and load-balancer IPs know the cluster IP in-cluster clients go to.
        let cluster_ip = matches!(vs.kind, AddressKind::ExternalIp | AddressKind::LoadBalancer)
            .then(|| ("10.96.0.10".parse().unwrap(), 80));
        assert_eq!(vs.cluster_ip, cluster_ip, "{:?}", vs.service.key);
    }
    assert!(
        got.warnings
            .iter()
            .any(|w| w.contains("spec.loadBalancerSourceRanges[1] \"nonsense\" is not a CIDR")),
        "{:?}",
        got.warnings
    );
}

#[test]
fn the_hostname_gives_a_lowercase_node_name() {
    assert_eq!(
        ipvsd::model::node_name_of_hostname("Worker-1.Example\n"),
        "worker-1.example"
    );
}

/// Thousands of broken Services among good ones: every good one is programmed, every bad one is
/// named in a warning, and the warnings stay small whatever the size of the bad values (a
/// 100 KiB annotation must not be copied into each warning, then into the log, every sync).
#[test]
fn thousands_of_bad_objects_among_good_ones() {
    const GOOD: usize = 2000;
    const BAD: usize = 2000;
    let huge = "x".repeat(100 * 1024);
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for i in 0..GOOD {
        let ip = format!("10.100.{}.{}", i / 250, i % 250 + 1);
        let name = format!("a-good{i}");
        services.push(mk_service(
            &name,
            "ClusterIP",
            &[&ip],
            vec![mk_port("http", 80, None)],
        ));
        slices.push(mk_slice(
            &format!("{name}-1"),
            &name,
            "IPv4",
            &[("http", 8080)],
            vec![ready(&format!("10.244.{}.{}", i / 250, i % 250 + 1))],
        ));
    }
    for i in 0..BAD {
        let name = format!("bad{i}");
        let ip = format!("10.101.{}.{}", i / 250, i % 250 + 1);
        let s = match i % 6 {
            0 => mk_service(
                &name,
                "ClusterIP",
                &["999.1.1.1"],
                vec![mk_port("http", 80, None)],
            ),
            1 => mk_service(
                &name,
                "ClusterIP",
                &[&ip],
                vec![mk_port("http", 70000, None)],
            ),
            2 => {
                let mut s = mk_service(&name, "ClusterIP", &[&ip], vec![mk_port("http", 80, None)]);
                annotate(&mut s, "ipvsd.io/scheduler", &huge);
                s
            }
            3 => {
                let mut s = mk_service(&name, "ClusterIP", &[&ip], vec![mk_port("http", 80, None)]);
                annotate(&mut s, "ipvsd.io/scheduler-flags", &huge);
                s
            }
            4 => {
                // The same virtual server as a good Service (whose name sorts first).
                let taken = format!("10.100.{}.{}", i % GOOD / 250, i % GOOD % 250 + 1);
                mk_service(
                    &name,
                    "ClusterIP",
                    &[&taken],
                    vec![mk_port("http", 80, None)],
                )
            }
            _ => {
                let mut s = mk_service(&name, "ClusterIP", &[&ip], vec![mk_port("http", 80, None)]);
                spec_mut(&mut s).external_ips = Some(vec![huge.clone()]);
                s
            }
        };
        services.push(s);
    }
    let snapshot = Snapshot {
        services,
        endpoint_slices: slices,
    };
    let got = desired(&snapshot, &nodes(&["192.168.1.10"]), &config());
    for i in 0..GOOD {
        let key = ipvs::ServiceKey::Addr {
            address: format!("10.100.{}.{}", i / 250, i % 250 + 1)
                .parse()
                .unwrap(),
            protocol: ipvs::Protocol::Tcp,
            port: 80,
        };
        let vs = got
            .virtual_servers
            .get(&key)
            .expect("a good Service is programmed");
        assert_eq!(vs.origin.name, format!("a-good{i}"));
        assert_eq!(vs.destinations.len(), 1);
    }
    for i in 0..BAD {
        let name = format!("default/bad{i}:");
        assert!(
            got.warnings.iter().any(|w| w.contains(&name)),
            "no warning names bad{i}"
        );
    }
    let longest = got.warnings.iter().map(String::len).max().unwrap_or(0);
    assert!(longest < 1024, "a warning of {longest} bytes");
    let total: usize = got.warnings.iter().map(String::len).sum();
    assert!(total < BAD * 512, "{total} bytes of warnings");
}
