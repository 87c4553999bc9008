//! The incremental model against the full one: random sequences of changes (Services of every
//! type and policy, EndpointSlices with ready, terminating, local and remote endpoints, node
//! addresses coming and going, virtual servers and health-check ports claimed twice, broken
//! objects) are applied to a [`ModelIndex`] one by one, and after each the index must hold what
//! [`desired`] computes from scratch. What the index says it touched must cover every
//! difference, and planning and diffing the nftables elements over the touched keys only must
//! give what planning and diffing everything gives.
//!
//! The sequences come from a small seeded generator, so a failure names a seed and a step that
//! reproduce it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use ipvsd::model::index::{ModelIndex, Touched};
use ipvsd::model::{desired, Desired, ModelConfig, NodePortAddresses};
use ipvsd::netfilter::{self, ElementIndex};
use ipvsd::node_addresses::{NodeAddresses, PrimaryAddresses};
use ipvsd::plan::{self, Actual, ActualDestination, ActualService, GracefulTermination, Ownership};
use ipvsd::source::{Delta, ObjectKey, Objects, Slice, Snapshot};
use k8s_openapi::api::core::v1::{
    ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort, ServiceSpec,
    ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// SplitMix64: small, seeded, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn maybe<T>(&mut self, percent: usize, value: impl FnOnce(&mut Rng) -> T) -> Option<T> {
        self.chance(percent).then(|| value(self))
    }
}

const NAMESPACES: &[&str] = &["default", "other"];
const SERVICE_NAMES: &[&str] = &["a", "b", "c", "d", "e", "f"];
const SLICE_NAMES: &[&str] = &["a-1", "a-2", "b-1", "c-1", "x-1", "x-2", "y-1"];
const NODE_ADDRESSES: &[&str] = &["192.168.0.1", "192.168.0.2", "fd00:1::1", "10.96.0.4"];
/// Few, so that Services share addresses and ports and claim each other's virtual servers.
const CLUSTER_IPS: &[&str] = &[
    "10.96.0.1",
    "10.96.0.1",
    "10.96.0.2",
    "10.96.0.3",
    "fd00:96::1",
    "10.96.0.1",
    "10.96.0.2",
    "10.96.0.3",
    "10.96.0.4",
    "fd00:96::1",
    "fd00:96::2",
    "",
    "None",
    "not-an-ip",
];
const OTHER_IPS: &[&str] = &[
    "203.0.113.1",
    "203.0.113.2",
    "192.168.0.1",
    "10.96.0.1",
    "fd00:99::1",
    "bad",
];
const ENDPOINTS_V4: &[&str] = &["10.244.0.1", "10.244.0.2", "10.244.1.1", "10.244.1.2"];
const ENDPOINTS_V6: &[&str] = &["fd00:244::1", "fd00:244::2"];

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    }
}

fn random_service(rng: &mut Rng, namespace: &str, name: &str) -> Service {
    let mut metadata = meta(namespace, name);
    let mut labels = BTreeMap::new();
    if rng.chance(5) {
        labels.insert(
            "service.kubernetes.io/service-proxy-name".to_string(),
            rng.pick(&["ipvsd", "other"]).to_string(),
        );
    }
    if rng.chance(3) {
        labels.insert("service.kubernetes.io/headless".to_string(), String::new());
    }
    metadata.labels = (!labels.is_empty()).then_some(labels);
    let mut annotations = BTreeMap::new();
    if rng.chance(15) {
        annotations.insert(
            "ipvsd.io/scheduler".to_string(),
            rng.pick(&["mh", "sh", "nosuch", "BAD"]).to_string(),
        );
    }
    if rng.chance(10) {
        annotations.insert(
            "ipvsd.io/scheduler-flags".to_string(),
            rng.pick(&["sh-port", "bogus"]).to_string(),
        );
    }
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);

    let service_type = *rng.pick(&[
        "ClusterIP",
        "ClusterIP",
        "NodePort",
        "ClusterIP",
        "NodePort",
        "LoadBalancer",
        "LoadBalancer",
        "ExternalName",
        "Weird",
    ]);
    let mut cluster_ips = vec![rng.pick(CLUSTER_IPS).to_string()];
    if rng.chance(20) {
        cluster_ips.push(rng.pick(CLUSTER_IPS).to_string());
    }
    let ports = (0..1 + rng.below(2))
        .map(|i| ServicePort {
            name: Some(["http", "dns", "extra"][i].to_string()).filter(|_| rng.chance(90)),
            port: *rng.pick(&[80, 80, 80, 443, 53, 53, 0, 70000]),
            protocol: rng.maybe(60, |rng| {
                rng.pick(&["TCP", "TCP", "UDP", "UDP", "SCTP", "ICMP"])
                    .to_string()
            }),
            node_port: match service_type {
                "NodePort" | "LoadBalancer" => *rng.pick(&[
                    Some(30001),
                    Some(30002),
                    Some(30001 + i as i32),
                    None,
                    Some(0),
                    Some(70000),
                ]),
                _ => None,
            },
            ..ServicePort::default()
        })
        .collect();
    let local = |rng: &mut Rng| rng.maybe(40, |rng| rng.pick(&["Local", "Cluster"]).to_string());
    let spec = ServiceSpec {
        type_: Some(service_type.to_string()),
        cluster_ip: cluster_ips.first().cloned(),
        cluster_ips: rng.maybe(70, |_| cluster_ips),
        ports: Some(ports),
        external_ips: rng.maybe(20, |rng| vec![rng.pick(OTHER_IPS).to_string()]),
        external_traffic_policy: if service_type == "LoadBalancer" && rng.chance(50) {
            Some("Local".to_string())
        } else {
            local(rng)
        },
        internal_traffic_policy: local(rng),
        health_check_node_port: rng.maybe(50, |rng| *rng.pick(&[32001, 32002, 70000])),
        session_affinity: rng.maybe(20, |_| "ClientIP".to_string()),
        session_affinity_config: rng.maybe(10, |rng| SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(*rng.pick(&[0, 60, 100000])),
            }),
        }),
        load_balancer_source_ranges: rng.maybe(20, |rng| {
            vec![rng
                .pick(&["198.51.100.0/24", "2001:db8::/32", "nonsense"])
                .to_string()]
        }),
        ..ServiceSpec::default()
    };
    let ingress: Vec<LoadBalancerIngress> = (0..rng.below(3))
        .map(|_| LoadBalancerIngress {
            ip: rng.maybe(90, |rng| rng.pick(OTHER_IPS).to_string()),
            ip_mode: rng.maybe(20, |rng| rng.pick(&["VIP", "Proxy"]).to_string()),
            ..LoadBalancerIngress::default()
        })
        .collect();
    Service {
        metadata,
        spec: rng.maybe(97, |_| spec),
        status: Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(ingress),
            }),
            ..ServiceStatus::default()
        }),
    }
}

fn random_slice(rng: &mut Rng, namespace: &str, name: &str) -> EndpointSlice {
    let mut metadata = meta(namespace, name);
    if rng.chance(95) {
        // Mostly the Service the name says, sometimes another: a slice can move.
        let service = if rng.chance(80) {
            name.split('-').next().unwrap().to_string()
        } else {
            rng.pick(SERVICE_NAMES).to_string()
        };
        metadata.labels = Some(BTreeMap::from([(
            "kubernetes.io/service-name".to_string(),
            service,
        )]));
    }
    let address_type = match rng.below(20) {
        0 => "FQDN",
        1 => "Bogus",
        2..=5 => "IPv6",
        _ => "IPv4",
    };
    let addresses = if address_type == "IPv6" {
        ENDPOINTS_V6
    } else {
        ENDPOINTS_V4
    };
    let ports = (0..1 + rng.below(2))
        .map(|i| EndpointPort {
            name: Some(["http", "dns", "other"][i].to_string()).filter(|_| rng.chance(90)),
            port: rng.maybe(95, |rng| {
                if rng.chance(5) {
                    *rng.pick(&[0, 70000])
                } else {
                    *rng.pick(&[8080, 5353, 8443])
                }
            }),
            ..EndpointPort::default()
        })
        .collect();
    let endpoints = (0..1 + rng.below(4))
        .map(|_| {
            let address = if rng.chance(5) {
                rng.pick(&["garbage", "fd00:244::9", "10.244.9.9"])
                    .to_string()
            } else {
                rng.pick(addresses).to_string()
            };
            Endpoint {
                addresses: if rng.chance(3) { vec![] } else { vec![address] },
                conditions: rng.maybe(80, |rng| EndpointConditions {
                    ready: rng.maybe(70, |rng| rng.chance(60)),
                    serving: rng.maybe(50, |rng| rng.chance(60)),
                    terminating: rng.maybe(50, |rng| rng.chance(40)),
                }),
                node_name: rng.maybe(80, |rng| rng.pick(&["node-a", "node-b"]).to_string()),
                ..Endpoint::default()
            }
        })
        .collect();
    EndpointSlice {
        metadata,
        address_type: address_type.to_string(),
        endpoints: Some(endpoints),
        ports: Some(ports),
    }
}

/// The kernel as if it held `desired` exactly, with some real servers having connections (so
/// that retiring them drains rather than deletes).
fn programmed(desired: &Desired, rng: &mut Rng) -> Actual {
    Actual {
        services: desired
            .virtual_servers
            .iter()
            .map(|(key, vs)| {
                let destinations = vs
                    .destinations
                    .iter()
                    .map(|r| {
                        let mut d = ActualDestination::from(r.to_destination());
                        d.active_connections = if rng.chance(30) { 2 } else { 0 };
                        d
                    })
                    .collect();
                (
                    *key,
                    ActualService {
                        service: vs.service.clone(),
                        destinations,
                    },
                )
            })
            .collect(),
        bound_addresses: desired.bound_addresses.clone(),
        undecodable: Vec::new(),
    }
}

struct World {
    services: BTreeMap<ObjectKey, Arc<Service>>,
    slices: BTreeMap<ObjectKey, Arc<Slice>>,
    nodes: NodeAddresses,
}

impl World {
    fn snapshot(&self, rng: &mut Rng) -> Snapshot {
        let mut services: Vec<Service> = self.services.values().map(|s| (**s).clone()).collect();
        let mut endpoint_slices: Vec<EndpointSlice> = self
            .slices
            .values()
            .map(|s| EndpointSlice::from((**s).clone()))
            .collect();
        // The order a source lists objects in must not matter.
        shuffle(&mut services, rng);
        shuffle(&mut endpoint_slices, rng);
        Snapshot {
            services,
            endpoint_slices,
        }
    }
}

fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i + 1);
        items.swap(i, j);
    }
}

/// One random change: to the objects (a [`Delta`] of one or a few), or to the node addresses.
enum Change {
    Objects(Delta),
    Nodes(NodeAddresses),
    /// The kernel turns out not to have a scheduler Services ask for.
    SchedulerUnavailable(&'static str),
}

fn random_change(rng: &mut Rng, world: &World) -> Change {
    if rng.chance(1) {
        return Change::SchedulerUnavailable(["mh", "sh"][rng.below(2)]);
    }
    if rng.chance(10) {
        let mut nodes = world.nodes.clone();
        if rng.chance(30) {
            // The default route moves, or goes.
            nodes.primary.ipv4 = [None, Some("192.168.0.1"), Some("192.168.0.2")][rng.below(3)]
                .map(|a| a.parse().unwrap());
            nodes.primary.ipv6 = rng.maybe(50, |_| "fd00:1::1".parse().unwrap());
        } else {
            let address: IpAddr = rng.pick(NODE_ADDRESSES).parse().unwrap();
            if !nodes.addresses.remove(&address) {
                nodes.addresses.insert(address);
            }
        }
        return Change::Nodes(nodes);
    }
    let mut delta = Delta::default();
    let count = if rng.chance(15) { 2 + rng.below(4) } else { 1 };
    for _ in 0..count {
        let namespace = *rng.pick(NAMESPACES);
        if rng.chance(45) {
            let key = ObjectKey::new(namespace, *rng.pick(SERVICE_NAMES));
            let service =
                (!rng.chance(25)).then(|| Arc::new(random_service(rng, &key.namespace, &key.name)));
            delta.services.insert(key, service);
        } else {
            let key = ObjectKey::new(namespace, *rng.pick(SLICE_NAMES));
            let slice = if rng.chance(20) {
                None
            } else if let (Some(old), true) = (world.slices.get(&key), rng.chance(50)) {
                // An endpoint's readiness flips, the commonest change there is.
                let mut slice = (**old).clone();
                if let Some(endpoint) = slice.endpoints.iter_mut().flatten().next() {
                    let conditions = endpoint.conditions.get_or_insert_with(Default::default);
                    conditions.ready = Some(!conditions.ready.unwrap_or(true));
                    conditions.terminating = Some(rng.chance(50));
                }
                Some(Arc::new(slice))
            } else {
                Some(Arc::new(Slice::from(random_slice(
                    rng,
                    &key.namespace,
                    &key.name,
                ))))
            };
            delta.endpoint_slices.insert(key, slice);
        }
    }
    Change::Objects(delta)
}

fn config(rng: &mut Rng) -> ModelConfig {
    ModelConfig {
        node_name: "node-a".to_string(),
        service_proxy_name: rng.maybe(50, |_| "ipvsd".to_string()),
        nodeport_addresses: match rng.below(3) {
            0 => NodePortAddresses::Cidrs(vec!["192.168.0.1/32".parse().unwrap()]),
            1 => NodePortAddresses::Primary,
            _ => NodePortAddresses::default(),
        },
        unavailable_schedulers: BTreeSet::from(["nosuch".to_string()]),
        ..ModelConfig::default()
    }
}

/// Asserts that `touched` names every difference between `before` and `after`.
fn assert_covers(touched: &Touched, before: &Desired, after: &Desired, what: &str) {
    let keys: BTreeSet<_> = before
        .virtual_servers
        .keys()
        .chain(after.virtual_servers.keys())
        .collect();
    for key in keys {
        if before.virtual_servers.get(key) != after.virtual_servers.get(key) {
            assert!(
                touched.virtual_servers.contains(key),
                "{what}: {key} changed but was not touched"
            );
        }
    }
    for address in before
        .bound_addresses
        .symmetric_difference(&after.bound_addresses)
    {
        assert!(
            touched.bound_addresses.contains(address),
            "{what}: {address} bound or unbound but not touched"
        );
    }
    if before.health_checks != after.health_checks {
        assert!(touched.health_checks, "{what}: health checks changed");
    }
    if before.warnings != after.warnings {
        assert!(touched.warnings, "{what}: warnings changed");
    }
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let mut config = config(&mut rng);
    let mut world = World {
        services: BTreeMap::new(),
        slices: BTreeMap::new(),
        nodes: NodeAddresses::from_iter(["192.168.0.1".parse().unwrap()]).with_primary(
            PrimaryAddresses {
                ipv4: Some("192.168.0.1".parse().unwrap()),
                ipv6: None,
            },
        ),
    };
    let mut index = ModelIndex::new(config.clone(), world.nodes.clone());
    let mut elements = ElementIndex::default();
    for step in 0..steps {
        let what = format!("seed {seed} step {step}");
        let before = index.desired().clone();
        let touched = match random_change(&mut rng, &world) {
            Change::Objects(delta) => {
                for (key, service) in &delta.services {
                    match service {
                        Some(s) => world.services.insert(key.clone(), s.clone()),
                        None => world.services.remove(key),
                    };
                }
                for (key, slice) in &delta.endpoint_slices {
                    match slice {
                        Some(s) => world.slices.insert(key.clone(), s.clone()),
                        None => world.slices.remove(key),
                    };
                }
                index.apply(&delta)
            }
            Change::SchedulerUnavailable(name) => {
                config.unavailable_schedulers.insert(name.to_string());
                index.scheduler_unavailable(name)
            }
            Change::Nodes(nodes) => {
                world.nodes = nodes.clone();
                index.set_nodes(nodes)
            }
        };
        let nodes = world.nodes.clone();
        let expected = desired(&world.snapshot(&mut rng), &nodes, &config);
        assert_eq!(*index.desired(), expected, "{what}: the index differs");
        assert_covers(&touched, &before, &expected, &what);

        // The nftables elements of the touched keys only, against all of them.
        let changes = elements.update(
            &expected,
            &touched.virtual_servers,
            &touched.bound_addresses,
        );
        let all_before = netfilter::elements(&before).contents();
        let all_after = netfilter::elements(&expected).contents();
        assert_eq!(elements.contents(), all_after, "{what}: elements");
        assert_eq!(
            elements.digests(),
            all_after.digests(),
            "{what}: set digests"
        );
        assert_eq!(
            changes,
            netfilter::diff(&all_after, &all_before),
            "{what}: element changes"
        );

        // The plan of the touched keys only, on a kernel that held the rules before.
        let actual = programmed(&before, &mut rng);
        let ownership = Ownership {
            node_addresses: nodes.clone(),
            managed: before.virtual_servers.keys().copied().collect(),
            ..Ownership::default()
        };
        let graceful = GracefulTermination::default();
        let now = Instant::now();
        assert_eq!(
            plan::plan_keys(
                &expected,
                &actual,
                &ownership,
                &graceful,
                now,
                &touched.virtual_servers,
                &touched.bound_addresses,
            ),
            plan::plan(&expected, &actual, &ownership, &graceful, now),
            "{what}: keyed plan"
        );
    }
    // Built from scratch, the index is the same.
    let objects = Objects {
        services: world.services.clone(),
        endpoint_slices: world.slices.clone(),
    };
    let rebuilt = ModelIndex::build(config, world.nodes.clone(), &objects);
    assert_eq!(rebuilt.desired(), index.desired(), "seed {seed}: rebuilt");
}

#[test]
fn incremental_model_equals_the_full_computation_after_every_change() {
    for seed in 0..60 {
        run(seed, 250);
    }
}

/// Work proportional to the change: among 10,000 Services, one slice change recomputes one
/// Service and touches its virtual server only; a new node address recomputes the Services with
/// node ports only.
#[test]
fn a_change_among_ten_thousand_services_recomputes_only_what_it_concerns() {
    const SERVICES: usize = 10_000;
    const NODE_PORTS: usize = 10;
    let cluster_ip = |i: usize| format!("10.96.{}.{}", i / 250, i % 250 + 1);
    let service = |i: usize| Service {
        metadata: meta("default", &format!("s{i}")),
        spec: Some(ServiceSpec {
            type_: Some(
                if i < NODE_PORTS {
                    "NodePort"
                } else {
                    "ClusterIP"
                }
                .to_string(),
            ),
            cluster_ip: Some(cluster_ip(i)),
            ports: Some(vec![ServicePort {
                port: 80,
                node_port: (i < NODE_PORTS).then_some(30000 + i as i32),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    let slice = |i: usize, endpoints: &[&str]| {
        let mut metadata = meta("default", &format!("s{i}-1"));
        metadata.labels = Some(BTreeMap::from([(
            "kubernetes.io/service-name".to_string(),
            format!("s{i}"),
        )]));
        EndpointSlice {
            metadata,
            address_type: "IPv4".to_string(),
            endpoints: Some(
                endpoints
                    .iter()
                    .map(|a| Endpoint {
                        addresses: vec![a.to_string()],
                        ..Endpoint::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![EndpointPort {
                port: Some(8080),
                ..EndpointPort::default()
            }]),
        }
    };
    let objects = Objects::from_snapshot(Snapshot {
        services: (0..SERVICES).map(service).collect(),
        endpoint_slices: (0..SERVICES).map(|i| slice(i, &["10.244.0.1"])).collect(),
    });
    let config = ModelConfig::default();
    let nodes = NodeAddresses::from_iter(["192.168.0.1".parse().unwrap()]);
    let mut index = ModelIndex::build(config, nodes, &objects);
    assert_eq!(index.desired().virtual_servers.len(), SERVICES + NODE_PORTS);

    let changed = 5000;
    let mut delta = Delta::default();
    delta.endpoint_slices.insert(
        ObjectKey::new("default", format!("s{changed}-1")),
        Some(Arc::new(Slice::from(slice(
            changed,
            &["10.244.0.1", "10.244.0.2"],
        )))),
    );
    let touched = index.apply(&delta);
    assert_eq!(touched.recomputed, 1);
    let key = ipvs::ServiceKey::Addr {
        address: cluster_ip(changed).parse().unwrap(),
        protocol: ipvs::Protocol::Tcp,
        port: 80,
    };
    assert_eq!(touched.virtual_servers, BTreeSet::from([key]));
    assert!(touched.bound_addresses.is_empty());
    assert_eq!(index.desired().virtual_servers[&key].destinations.len(), 2);

    let nodes = NodeAddresses::from_iter([
        "192.168.0.1".parse().unwrap(),
        "192.168.0.2".parse().unwrap(),
    ]);
    let touched = index.set_nodes(nodes);
    assert_eq!(touched.recomputed, NODE_PORTS);
    // Their virtual servers: on the cluster IP, and on the first and the new node address.
    assert_eq!(touched.virtual_servers.len(), 3 * NODE_PORTS);
    assert_eq!(
        index.desired().virtual_servers.len(),
        SERVICES + 2 * NODE_PORTS
    );
}
