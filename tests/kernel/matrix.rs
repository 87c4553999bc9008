//! The traffic matrix: which pod answers, and which source address it sees, for every kind of
//! client and Service address in a three-node cluster ([`crate::cluster`]), as kube-proxy's IPVS
//! mode behaves.
//!
//! Services (each with a TCP and a UDP port 80 to the pods' 8080, node port 3008x):
//!
//! - `web-cluster`: LoadBalancer, cluster IP 10.96.0.10, external IP 203.0.113.10, load-balancer
//!   IP 198.51.100.10, externalTrafficPolicy Cluster; endpoints web-a and web-b, both on node1.
//! - `web-local`: the same with externalTrafficPolicy Local (.11 addresses, node port 30081).
//! - `self`: ClusterIP 10.96.0.12 whose only endpoint is client-1, for the hairpin case.
//!
//! Clients: pods client-1 (node1, beside the endpoints) and client-2 (node2), the host network
//! of node1 and node2, and two outside clients that route the external and load-balancer IPs via
//! node1 (outside1) and node2 (outside2). node3 runs ipvsd and nothing else.
//!
//! The expected source address follows kube-proxy (pkg/proxy/ipvs, KUBE-MARK-MASQ): traffic is
//! masqueraded when it goes to a cluster IP from outside the cluster CIDR (a host-network client,
//! whose source is the cluster IP itself) or with `--masquerade-all`, to a node port, external or
//! load-balancer IP with externalTrafficPolicy Cluster, and when a pod reaches itself (hairpin).
//! Masqueraded, the pod sees the address of the node that balanced the request on the interface
//! toward the pod: 10.244.N.1 for a pod of that node, 192.168.50.1N for a pod of another. Not
//! masqueraded, it sees the client's own address. With externalTrafficPolicy Local a node without
//! a local endpoint answers outside clients nothing on its node port, external and load-balancer
//! IPs; in-cluster clients of the external and load-balancer IPs reach every endpoint, as of the
//! cluster IP (host-network ones masqueraded).

// Shared by kernel tests and the demo_cluster example: not every helper has a user in each.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cluster::{
    node_address, node_gateway, outside_address, pod_addresses, Cluster, ClusterSpec, PodSpec,
    CLUSTER_CIDR,
};
use crate::pods::{PeerAnswer, Protocol};

/// The Services' port.
pub const SERVICE_PORT: u16 = 80;
/// The pods' port (TCP and UDP).
pub const POD_PORT: u16 = 8080;
/// How many requests run at once: most take a fraction of a second, but one that gets no answer
/// waits for the client's 5 s timeout.
const PARALLEL_REQUESTS: usize = 8;
/// The nftables table ipvsd owns.
pub const NFT_FAMILY: &str = "inet";
pub const NFT_TABLE: &str = "ipvsd";

/// externalTrafficPolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Policy {
    Cluster,
    Local,
}

/// A Service of the matrix.
#[derive(Clone, Debug)]
pub struct Service {
    pub name: &'static str,
    pub cluster_ip: Ipv4Addr,
    /// For LoadBalancer Services: node port, external IP and load-balancer IP.
    pub external: Option<External>,
    pub policy: Policy,
    /// Pod names.
    pub endpoints: Vec<&'static str>,
}

#[derive(Clone, Copy, Debug)]
pub struct External {
    pub node_port: u16,
    pub external_ip: Ipv4Addr,
    pub load_balancer_ip: Ipv4Addr,
}

/// Who sends a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Client {
    /// A pod, by name.
    Pod(&'static str),
    /// The host network of node N.
    Host(u8),
    /// Outside client N, which routes the external and load-balancer IPs via node N.
    Outside(u8),
}

/// Which address of the Service a request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    ClusterIp,
    /// The node port on node N's underlay address.
    NodePort(u8),
    ExternalIp,
    LoadBalancerIp,
}

/// One request of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cell {
    pub protocol: Protocol,
    /// Index into [`Matrix::services`].
    pub service: usize,
    pub client: Client,
    pub target: Target,
}

/// What a request should get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// No answer at all (refused or timed out).
    NoAnswer,
    /// An answer from one of these pods, each seeing the given source address.
    Answer(BTreeMap<String, IpAddr>),
}

/// The pods of the matrix: the endpoints on node1 and one client pod on node1 and node2, all
/// serving TCP and UDP 8080.
pub fn pod_specs() -> Vec<PodSpec> {
    [("web-a", 1), ("web-b", 1), ("client-1", 1), ("client-2", 2)]
        .into_iter()
        .map(|(name, node)| PodSpec {
            name: name.to_owned(),
            node,
            tcp: vec![POD_PORT],
            udp: vec![POD_PORT],
        })
        .collect()
}

/// The cluster the matrix runs on: [`pod_specs`] and two outside clients.
pub fn cluster_spec() -> ClusterSpec {
    ClusterSpec {
        pods: pod_specs(),
        outside_clients: 2,
    }
}

/// The Services of the matrix (see the module documentation).
pub fn services() -> Vec<Service> {
    let web = |name, n: u8, policy| Service {
        name,
        cluster_ip: Ipv4Addr::new(10, 96, 0, 10 + n),
        external: Some(External {
            node_port: 30080 + u16::from(n),
            external_ip: Ipv4Addr::new(203, 0, 113, 10 + n),
            load_balancer_ip: Ipv4Addr::new(198, 51, 100, 10 + n),
        }),
        policy,
        endpoints: vec!["web-a", "web-b"],
    };
    vec![
        web("web-cluster", 0, Policy::Cluster),
        web("web-local", 1, Policy::Local),
        Service {
            name: "self",
            cluster_ip: Ipv4Addr::new(10, 96, 0, 12),
            external: None,
            policy: Policy::Cluster,
            endpoints: vec!["client-1"],
        },
    ]
}

/// Where the matrix's pods are, known before the cluster is built.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Pod name -> (node, address).
    pub pods: BTreeMap<String, (u8, Ipv4Addr)>,
}

impl Layout {
    pub fn of(spec: &ClusterSpec) -> Layout {
        Layout {
            pods: pod_addresses(spec),
        }
    }

    fn pod(&self, name: &str) -> (u8, Ipv4Addr) {
        *self
            .pods
            .get(name)
            .unwrap_or_else(|| panic!("the matrix has no pod {name}"))
    }
}

/// The Services and their EndpointSlices as YAML for `ipvsd --manifests`.
pub fn manifests(services: &[Service], layout: &Layout) -> String {
    let mut yaml = String::new();
    for service in services {
        let (kind, policy) = match service.external {
            Some(_) => ("LoadBalancer", format!("{:?}", service.policy)),
            None => ("ClusterIP", String::new()),
        };
        let _ = writeln!(
            yaml,
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n\
             spec:\n  type: {kind}\n  clusterIP: {ip}\n  clusterIPs:\n  - {ip}\n  \
             ipFamilies:\n  - IPv4\n  ipFamilyPolicy: SingleStack",
            name = service.name,
            ip = service.cluster_ip,
        );
        if let Some(external) = service.external {
            let _ = writeln!(
                yaml,
                "  externalTrafficPolicy: {policy}\n  externalIPs:\n  - {}",
                external.external_ip
            );
        }
        yaml.push_str("  ports:\n");
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let _ = writeln!(
                yaml,
                "  - name: {}\n    protocol: {}\n    port: {SERVICE_PORT}\n    targetPort: {POD_PORT}",
                protocol.name().to_lowercase(),
                protocol.name()
            );
            if let Some(external) = service.external {
                let _ = writeln!(yaml, "    nodePort: {}", external.node_port);
            }
        }
        if let Some(external) = service.external {
            let _ = writeln!(
                yaml,
                "status:\n  loadBalancer:\n    ingress:\n    - ip: {}",
                external.load_balancer_ip
            );
        }
        let _ = writeln!(
            yaml,
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  \
             name: {name}-slice\n  namespace: default\n  labels:\n    \
             kubernetes.io/service-name: {name}\naddressType: IPv4\nendpoints:",
            name = service.name
        );
        for pod in &service.endpoints {
            let (node, address) = layout.pod(pod);
            let _ = writeln!(
                yaml,
                "- addresses:\n  - {address}\n  conditions:\n    ready: true\n    serving: true\n    \
                 terminating: false\n  nodeName: node{node}\n  targetRef:\n    kind: Pod\n    \
                 name: {pod}\n    namespace: default"
            );
        }
        yaml.push_str("ports:\n");
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let _ = writeln!(
                yaml,
                "- name: {}\n  protocol: {}\n  port: {POD_PORT}",
                protocol.name().to_lowercase(),
                protocol.name()
            );
        }
        yaml.push_str("---\n");
    }
    yaml
}

/// The virtual servers each node must have before traffic is sent: for every Service and
/// protocol, its cluster IP, its node port on the node's underlay address, its external and
/// load-balancer IPs, each with its real servers (only the node's own endpoints for
/// externalTrafficPolicy Local).
pub fn expected_virtual_servers(
    services: &[Service],
    layout: &Layout,
    nodes: &[u8],
) -> BTreeMap<u8, BTreeMap<String, BTreeSet<String>>> {
    let mut all = BTreeMap::new();
    for &node in nodes {
        let mut table: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for service in services {
            let reals = |local: bool| -> BTreeSet<String> {
                service
                    .endpoints
                    .iter()
                    .map(|pod| layout.pod(pod))
                    .filter(|(pod_node, _)| !local || *pod_node == node)
                    .map(|(_, address)| format!("{address}:{POD_PORT}"))
                    .collect()
            };
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                let kind = match protocol {
                    Protocol::Tcp => "-t",
                    Protocol::Udp => "-u",
                };
                table.insert(
                    format!("{kind} {}:{SERVICE_PORT}", service.cluster_ip),
                    reals(false),
                );
                if let Some(external) = service.external {
                    let local = service.policy == Policy::Local;
                    for address in [
                        format!("{}:{}", node_address(node), external.node_port),
                        format!("{}:{SERVICE_PORT}", external.external_ip),
                        format!("{}:{SERVICE_PORT}", external.load_balancer_ip),
                    ] {
                        table.insert(format!("{kind} {address}"), reals(local));
                    }
                }
            }
        }
        all.insert(node, table);
    }
    all
}

/// The address a request of `cell` goes to.
pub fn target_address(services: &[Service], cell: &Cell) -> SocketAddr {
    let service = &services[cell.service];
    let external = || {
        service
            .external
            .unwrap_or_else(|| panic!("Service {} has no node port or external IPs", service.name))
    };
    let (ip, port) = match cell.target {
        Target::ClusterIp => (service.cluster_ip, SERVICE_PORT),
        Target::NodePort(node) => (node_address(node), external().node_port),
        Target::ExternalIp => (external().external_ip, SERVICE_PORT),
        Target::LoadBalancerIp => (external().load_balancer_ip, SERVICE_PORT),
    };
    SocketAddr::from((ip, port))
}

/// What kube-proxy's IPVS mode gives `cell` (see the module documentation); `masquerade_all`
/// is `--masquerade-all`.
pub fn expected(
    services: &[Service],
    layout: &Layout,
    cell: &Cell,
    masquerade_all: bool,
) -> Expected {
    let service = &services[cell.service];
    let target = target_address(services, cell);
    // The node whose IPVS balances the request: the node port's node; for a Service address
    // (bound on every node), the client's node, or for an outside client the node it routes
    // the address through.
    let balancer = match (cell.target, cell.client) {
        (Target::NodePort(node), _) => node,
        (_, Client::Pod(pod)) => layout.pod(pod).0,
        (_, Client::Host(node)) => node,
        (Target::ClusterIp, Client::Outside(_)) => {
            panic!("outside clients have no route to cluster IPs")
        }
        (_, Client::Outside(via)) => via,
    };
    // externalTrafficPolicy Local keeps a request on the balancing node's endpoints, except
    // in-cluster clients of external and load-balancer IPs: those go to every endpoint, as to
    // the cluster IP (kube-proxy's iptables and nftables modes; its IPVS mode for pods, since
    // kubernetes PR #97081).
    let local_policy = service.policy == Policy::Local
        && match cell.target {
            Target::ClusterIp => false,
            Target::NodePort(_) => true,
            Target::ExternalIp | Target::LoadBalancerIp => {
                matches!(cell.client, Client::Outside(_))
            }
        };
    let candidates: Vec<(&str, u8)> = service
        .endpoints
        .iter()
        .map(|pod| (*pod, layout.pod(pod).0))
        .filter(|(_, node)| !local_policy || *node == balancer)
        .collect();
    if candidates.is_empty() {
        return Expected::NoAnswer;
    }
    // The source address the request leaves the client with.
    let (client_source, in_cluster_cidr) = match cell.client {
        Client::Pod(pod) => (layout.pod(pod).1, true),
        // A host-network client of an address of the node itself (a Service address on the
        // dummy interface, or its own node port) sends from that address; otherwise from its
        // underlay address.
        Client::Host(node) => match (cell.target, target.ip()) {
            (Target::NodePort(_), _) => (node_address(node), false),
            (_, IpAddr::V4(ip)) => (ip, false),
            (_, IpAddr::V6(_)) => unreachable!("the matrix is IPv4"),
        },
        Client::Outside(n) => (outside_address(n), false),
    };
    let answers = candidates
        .into_iter()
        .map(|(pod, node)| {
            let source = if masquerades(services, cell, pod, masquerade_all, in_cluster_cidr) {
                if node == balancer {
                    node_gateway(balancer)
                } else {
                    node_address(balancer)
                }
            } else {
                client_source
            };
            (pod.to_owned(), IpAddr::V4(source))
        })
        .collect();
    Expected::Answer(answers)
}

/// Whether kube-proxy masquerades the request of `cell` when `pod` gets it: to a cluster IP
/// from outside the cluster CIDR (or any with `--masquerade-all`), to the other addresses unless
/// externalTrafficPolicy is Local (but a host-network client of a Local external or
/// load-balancer IP is, as one of the cluster IP), and always when the pod is the client
/// (hairpin).
pub fn masquerades(
    services: &[Service],
    cell: &Cell,
    pod: &str,
    masquerade_all: bool,
    client_in_cluster_cidr: bool,
) -> bool {
    let hairpin = matches!(cell.client, Client::Pod(client) if client == pod);
    hairpin
        || match cell.target {
            Target::ClusterIp => masquerade_all || !client_in_cluster_cidr,
            Target::NodePort(_) => services[cell.service].policy == Policy::Cluster,
            Target::ExternalIp | Target::LoadBalancerIp => {
                services[cell.service].policy == Policy::Cluster
                    || matches!(cell.client, Client::Host(_))
            }
        }
}

/// The cells every matrix test runs, for one protocol: every client against the node ports of
/// node1 (endpoints) and node2 (none) of both web Services, and the in-cluster clients against
/// their cluster IPs (outside clients have no route to cluster IPs); the external and
/// load-balancer IPs from every client (the outside ones route them via node1 and via node2);
/// a pod reaching itself through `self`.
pub fn standard_cells(protocol: Protocol) -> Vec<Cell> {
    let services = services();
    let mut cells = Vec::new();
    let inside = [
        Client::Pod("client-1"),
        Client::Pod("client-2"),
        Client::Host(1),
        Client::Host(2),
    ];
    for (index, service) in services.iter().enumerate() {
        let mut add = |client, target| {
            cells.push(Cell {
                protocol,
                service: index,
                client,
                target,
            })
        };
        if service.external.is_none() {
            // The hairpin Service.
            add(Client::Pod("client-1"), Target::ClusterIp);
            continue;
        }
        for client in inside {
            add(client, Target::ClusterIp);
            add(client, Target::NodePort(1));
            add(client, Target::NodePort(2));
            add(client, Target::ExternalIp);
            add(client, Target::LoadBalancerIp);
        }
        for client in [Client::Outside(1), Client::Outside(2)] {
            add(client, Target::NodePort(1));
            add(client, Target::NodePort(2));
            add(client, Target::ExternalIp);
            add(client, Target::LoadBalancerIp);
        }
    }
    cells
}

/// A cluster with the matrix's pods, Services and routes, and ipvsd running and synced on
/// every node.
pub struct Matrix {
    pub cluster: Cluster,
    pub services: Vec<Service>,
    pub layout: Layout,
    /// Whether ipvsd got `--cluster-cidr` (an ipvsd without the flag runs without it).
    pub cluster_cidr: bool,
    /// Whether ipvsd got `--masquerade-all`.
    pub masquerade_all: bool,
    pub sync_time: Duration,
}

impl Matrix {
    /// Builds the cluster, routes the external and load-balancer IPs of outside client N via
    /// node N, starts ipvsd on every node (with `--masquerade-all` if asked, which this ipvsd
    /// must know) and waits until every node has its virtual servers (and, when ipvsd got
    /// `--cluster-cidr`, its nftables table).
    pub fn start(masquerade_all: bool) -> Matrix {
        let spec = cluster_spec();
        let layout = Layout::of(&spec);
        let services = services();
        let mut cluster = Cluster::start(&spec);
        for client in 1..=2u8 {
            for service in &services {
                if let Some(external) = service.external {
                    cluster.route_from_outside(client, external.external_ip, client);
                    cluster.route_from_outside(client, external.load_balancer_ip, client);
                }
            }
        }
        for (name, (_, address)) in &layout.pods {
            assert_eq!(cluster.pod_ip(name), *address, "pod {name}'s address");
        }
        let cluster_cidr = true;
        let mut extra = Vec::new();
        if masquerade_all {
            extra.push("--masquerade-all");
        }
        cluster.start_ipvsd(&manifests(&services, &layout), cluster_cidr, &extra);
        let nodes: Vec<u8> = cluster.nodes.iter().map(|n| n.index).collect();
        let mut sync_time =
            cluster.wait_for_virtual_servers(&expected_virtual_servers(&services, &layout, &nodes));
        if cluster_cidr {
            sync_time = sync_time.max(cluster.wait_for_nft_table(NFT_FAMILY, NFT_TABLE));
        }
        println!(
            "cluster: set up in {:.1?}, ipvsd synced on {} nodes in {:.1?} (cluster CIDR {}, \
             masquerade-all {})",
            cluster.setup_time,
            nodes.len(),
            sync_time,
            if cluster_cidr {
                CLUSTER_CIDR
            } else {
                "not given"
            },
            if masquerade_all { "on" } else { "off" },
        );
        Matrix {
            cluster,
            services,
            layout,
            cluster_cidr,
            masquerade_all,
            sync_time,
        }
    }

    /// The namespace a client sends from.
    fn client_netns(&self, client: Client) -> String {
        match client {
            Client::Pod(pod) => self.cluster.pod(pod).netns.clone(),
            Client::Host(node) => self.cluster.node(node).netns.clone(),
            Client::Outside(n) => self.cluster.outside(n).netns.clone(),
        }
    }

    /// Sends every cell's request (several at once), prints a line per cell as it completes and
    /// then the whole table in order, and returns the outcomes.
    pub fn run(&self, cells: &[Cell]) -> Vec<Outcome> {
        let started = Instant::now();
        let queue = Mutex::new(cells.iter());
        let outcomes = Mutex::new(Vec::new());
        println!("{}", Outcome::header());
        std::thread::scope(|scope| {
            for _ in 0..PARALLEL_REQUESTS.min(cells.len()) {
                scope.spawn(|| loop {
                    let Some(cell) = queue.lock().unwrap().next().copied() else {
                        break;
                    };
                    let expected =
                        expected(&self.services, &self.layout, &cell, self.masquerade_all);
                    let got = self.cluster.ask(
                        &self.client_netns(cell.client),
                        cell.protocol,
                        target_address(&self.services, &cell),
                    );
                    let outcome = Outcome {
                        cell,
                        target: target_address(&self.services, &cell),
                        service: self.services[cell.service].name,
                        policy: self.services[cell.service]
                            .external
                            .map(|_| self.services[cell.service].policy),
                        expected,
                        got,
                    };
                    let mut outcomes = outcomes.lock().unwrap();
                    println!("{}", outcome.row());
                    outcomes.push(outcome);
                });
            }
        });
        let mut outcomes = outcomes.into_inner().unwrap();
        outcomes.sort_by_key(|o| o.cell);
        let failed = outcomes.iter().filter(|o| !o.ok()).count();
        println!(
            "\n=== matrix: {} cells, {} ok, {failed} failed, in {:.1?}",
            outcomes.len(),
            outcomes.len() - failed,
            started.elapsed()
        );
        println!("{}", Outcome::header());
        for outcome in &outcomes {
            println!("{}", outcome.row());
        }
        outcomes
    }

    /// Panics listing every failed cell (after printing the nodes' nftables rulesets, which
    /// usually explain a wrong source address).
    pub fn assert_all_ok(&self, outcomes: &[Outcome]) {
        let failed: Vec<String> = outcomes
            .iter()
            .filter(|o| !o.ok())
            .map(Outcome::row)
            .collect();
        if failed.is_empty() {
            return;
        }
        for node in &self.cluster.nodes {
            let ruleset = self.cluster.nft_ruleset(node.index);
            let ruleset = if ruleset.trim().is_empty() {
                "(empty)"
            } else {
                &ruleset
            };
            println!("--- nft list ruleset on {}:\n{ruleset}", node.name);
        }
        panic!(
            "{} of {} cells failed:\n{}\n{}",
            failed.len(),
            outcomes.len(),
            Outcome::header(),
            failed.join("\n")
        );
    }
}

/// One cell's result.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub cell: Cell,
    pub target: SocketAddr,
    pub service: &'static str,
    /// externalTrafficPolicy; None for a ClusterIP Service.
    pub policy: Option<Policy>,
    pub expected: Expected,
    pub got: Result<PeerAnswer, String>,
}

impl Outcome {
    /// Whether the answer (or its absence) is the expected one.
    pub fn ok(&self) -> bool {
        match (&self.expected, &self.got) {
            (Expected::NoAnswer, Err(_)) => true,
            (Expected::Answer(pods), Ok(answer)) => pods.get(&answer.pod) == Some(&answer.peer),
            _ => false,
        }
    }

    fn header() -> String {
        format!(
            "{:<4} {:<4} {:<7} {:<11} {:<34} {:<34} {:<30} Service",
            "", "", "eTP", "client", "address", "expected", "got"
        )
    }

    /// One line: protocol, policy, client, address, expected, got, ok/FAIL.
    pub fn row(&self) -> String {
        let got = match &self.got {
            Ok(answer) => format!("{} saw {}", answer.pod, answer.peer),
            Err(e) => format!("no answer ({})", short_error(e)),
        };
        format!(
            "{:<4} {:<4} {:<7} {:<11} {:<34} {:<34} {:<30} {}",
            self.cell.protocol.name(),
            if self.ok() { "ok" } else { "FAIL" },
            self.policy
                .map_or_else(|| "-".to_owned(), |p| format!("{p:?}")),
            self.cell.client.to_string(),
            format!("{} {}", self.cell.target, self.target),
            self.expected.to_string(),
            got,
            self.service,
        )
    }
}

/// The gist of a client error: "refused", "timed out", or the message.
fn short_error(error: &str) -> String {
    if error.contains("refused") {
        "refused".to_owned()
    } else if error.contains("timed out") || error.contains("Resource temporarily unavailable") {
        "timeout".to_owned()
    } else {
        error.to_owned()
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::Pod(pod) => write!(f, "{pod}"),
            Client::Host(node) => write!(f, "host{node}"),
            Client::Outside(n) => write!(f, "outside{n}"),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::ClusterIp => write!(f, "CIP"),
            Target::NodePort(node) => write!(f, "NP{node}"),
            Target::ExternalIp => write!(f, "EIP"),
            Target::LoadBalancerIp => write!(f, "LB"),
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::NoAnswer => write!(f, "no answer"),
            Expected::Answer(pods) => {
                // Pods that would see the same source share it: "web-a|web-b saw 10.244.1.1".
                let mut by_source: BTreeMap<IpAddr, Vec<&str>> = BTreeMap::new();
                for (pod, source) in pods {
                    by_source.entry(*source).or_default().push(pod);
                }
                let parts: Vec<String> = by_source
                    .iter()
                    .map(|(source, pods)| format!("{} saw {source}", pods.join("|")))
                    .collect();
                write!(f, "{}", parts.join(", "))
            }
        }
    }
}

/// The matrix as markdown tables (one per externalTrafficPolicy), for the test bed's README:
/// what the pod sees, per client and Service address. Made from [`expected`], so the README
/// and the tests can't disagree.
pub fn markdown() -> String {
    let services = services();
    let layout = Layout::of(&cluster_spec());
    let targets = [
        (Target::ClusterIp, "cluster IP"),
        (Target::NodePort(1), "NodePort on node1"),
        (Target::NodePort(2), "NodePort on node2"),
        (Target::ExternalIp, "external IP"),
        (Target::LoadBalancerIp, "load-balancer IP"),
    ];
    let clients = [
        (Client::Pod("client-1"), "pod on node1 (client-1)"),
        (Client::Pod("client-2"), "pod on node2 (client-2)"),
        (Client::Host(1), "host network of node1"),
        (Client::Host(2), "host network of node2"),
        (Client::Outside(1), "outside, via node1"),
        (Client::Outside(2), "outside, via node2"),
    ];
    let cells: BTreeSet<Cell> = standard_cells(Protocol::Tcp).into_iter().collect();
    // What a pod sees: in bold the address of the node that masqueraded the request, else the
    // client's own address.
    let seen = |cell: &Cell, pod: &str, source: IpAddr| -> String {
        let in_cluster_cidr = matches!(cell.client, Client::Pod(_));
        if !masquerades(&services, cell, pod, false, in_cluster_cidr) {
            return format!("own {source}");
        }
        let node = (1..=3u8)
            .find(|n| {
                source == IpAddr::V4(node_gateway(*n)) || source == IpAddr::V4(node_address(*n))
            })
            .expect("a masqueraded source is a node address");
        format!("**node{node} {source}**")
    };
    let mut out = String::new();
    for (index, service) in services.iter().enumerate() {
        if service.external.is_none() {
            continue;
        }
        let _ = writeln!(
            out,
            "externalTrafficPolicy **{:?}** (Service `{}`):\n",
            service.policy, service.name
        );
        out.push_str("| client |");
        for (_, title) in &targets {
            let _ = write!(out, " {title} |");
        }
        out.push_str("\n| --- |");
        for _ in &targets {
            out.push_str(" --- |");
        }
        out.push('\n');
        for (client, title) in &clients {
            let _ = write!(out, "| {title} |");
            for (target, _) in &targets {
                let cell = Cell {
                    protocol: Protocol::Tcp,
                    service: index,
                    client: *client,
                    target: *target,
                };
                let text = if !cells.contains(&cell) {
                    match (cell.client, cell.target) {
                        (Client::Outside(_), Target::ClusterIp) => "no route".to_owned(),
                        _ => "not tested".to_owned(),
                    }
                } else {
                    match expected(&services, &layout, &cell, false) {
                        Expected::NoAnswer => "no answer".to_owned(),
                        Expected::Answer(pods) => {
                            let texts: BTreeSet<String> = pods
                                .iter()
                                .map(|(pod, source)| seen(&cell, pod, *source))
                                .collect();
                            texts.into_iter().collect::<Vec<_>>().join(", ")
                        }
                    }
                };
                let _ = write!(out, " {text} |");
            }
            out.push('\n');
        }
        out.push('\n');
    }
    let hairpin = Cell {
        protocol: Protocol::Tcp,
        service: services
            .iter()
            .position(|s| s.external.is_none())
            .expect("the hairpin Service"),
        client: Client::Pod("client-1"),
        target: Target::ClusterIp,
    };
    if let Expected::Answer(pods) = expected(&services, &layout, &hairpin, false) {
        let _ = writeln!(
            out,
            "Hairpin: client-1 to the cluster IP of `self`, whose only endpoint is client-1: \
             client-1 sees {}.\n",
            pods.iter()
                .map(|(pod, source)| seen(&hairpin, pod, *source))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out.push_str(
        "In-cluster clients of external and load-balancer IPs with externalTrafficPolicy Local \
         reach every endpoint, as of the cluster IP: kube-proxy's iptables and nftables modes do \
         this; its IPVS mode does it for pods since kubernetes PR #97081, not for the host \
         network (kubernetes#93456).\n",
    );
    out
}
