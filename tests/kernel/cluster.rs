//! A three-node cluster inside the test's network namespace, for kernel tests of traffic between
//! nodes, pods and outside clients.
//!
//! ```text
//!  outside1 192.168.50.101   outside2 192.168.50.102
//!        |                          |
//!  ======+=========== underlay bridge (in the test's namespace) ===========+=====
//!        |                          |                                      |
//!  node1 eth0 192.168.50.11   node2 eth0 192.168.50.12            node3 eth0 192.168.50.13
//!  pods 10.244.1.0/24         pods 10.244.2.0/24                  pods 10.244.3.0/24
//!   vpodK 10.244.1.1/32 --- pod eth0 10.244.1.X/32 (default via 10.244.1.1 onlink)
//! ```
//!
//! Each node is a network namespace with `eth0` on the underlay bridge, `ip_forward=1`, and a
//! route to every other node's pod CIDR via that node's underlay address (host-gateway routing).
//! Pods are namespaces behind their node, routed at layer 3 ([`Pod::start_behind`]): no bridge
//! between pods, and the node holds the gateway address `10.244.N.1` on each pod's veth end, so
//! it has an address toward its pods. Outside clients are namespaces on the underlay that know
//! only the /24 (no route to pod CIDRs); routes to Service addresses (external or load-balancer
//! IPs) via a chosen node are added per client. A node's host network is the node namespace
//! itself: a host-network client is `ip netns exec NODE pod_server --client-...`.
//!
//! [`Cluster::start_ipvsd`] runs `ipvsd run` in every node on manifests written to a temporary
//! directory. Every namespace and process made here is removed when the cluster is dropped; names
//! carry the test process's id and a counter, so they are unique in the VM.

// Shared by kernel tests and the demo_cluster example: not every helper has a user in each.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::pods::{
    ask_peer, ip, ip_batch, ip_batch_here, ipvsadm_path, remove_namespace, run, PeerAnswer, Pod,
    Protocol,
};

/// The cluster's pod CIDR, as `--cluster-cidr` gets it.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The underlay's prefix: nodes are .11, .12, .13, outside clients .101, .102, ...
pub const UNDERLAY_PREFIX: &str = "192.168.50";
/// How many nodes a cluster has.
pub const NODE_COUNT: usize = 3;
/// How long ipvsd may take to program every node.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

static NEXT_CLUSTER: AtomicU32 = AtomicU32::new(0);

/// A node: its name (`node1`, the name ipvsd and the EndpointSlices use), its namespace and
/// addresses.
#[derive(Clone, Debug)]
pub struct Node {
    /// `node1`, `node2`, `node3`.
    pub name: String,
    /// 1, 2, 3.
    pub index: u8,
    /// The node's network namespace (unique in the VM).
    pub netns: String,
    /// The node's address on the underlay (`eth0`): 192.168.50.1N.
    pub address: Ipv4Addr,
    /// The gateway address the node holds on every pod's veth end: 10.244.N.1.
    pub gateway: Ipv4Addr,
}

impl Node {
    /// The node's pod CIDR, 10.244.N.0/24.
    pub fn pod_cidr(&self) -> String {
        format!("10.244.{}.0/24", self.index)
    }
}

/// A client outside the cluster, on the underlay.
#[derive(Clone, Debug)]
pub struct Outside {
    /// `outside1`, `outside2`, ...
    pub name: String,
    pub netns: String,
    /// 192.168.50.(100 + index).
    pub address: Ipv4Addr,
}

/// A pod to start: its name (the pod server answers with it), its node (1-based) and ports.
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub name: String,
    pub node: u8,
    pub tcp: Vec<u16>,
    pub udp: Vec<u16>,
}

/// What to build: pods and the number of outside clients.
#[derive(Clone, Debug, Default)]
pub struct ClusterSpec {
    pub pods: Vec<PodSpec>,
    pub outside_clients: u8,
}

/// Node `index`'s underlay address, 192.168.50.1N.
pub fn node_address(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 50, 10 + index)
}

/// The gateway address node `index` holds toward its pods, 10.244.N.1.
pub fn node_gateway(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, index, 1)
}

/// Outside client `index`'s address, 192.168.50.(100 + index).
pub fn outside_address(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 50, 100 + index)
}

/// The addresses [`Cluster::start`] gives the pods of `spec`: on node N, in the order of the
/// spec, 10.244.N.10, .11, ... Known before the cluster exists (for manifests and expectations).
pub fn pod_addresses(spec: &ClusterSpec) -> BTreeMap<String, (u8, Ipv4Addr)> {
    let mut per_node = [0u8; NODE_COUNT + 1];
    let mut addresses = BTreeMap::new();
    for pod in &spec.pods {
        assert!(
            (1..=NODE_COUNT as u8).contains(&pod.node),
            "pod {}: there is no node{}",
            pod.name,
            pod.node
        );
        let slot = &mut per_node[usize::from(pod.node)];
        *slot += 1;
        let address = Ipv4Addr::new(10, 244, pod.node, 9 + *slot);
        assert!(
            addresses
                .insert(pod.name.clone(), (pod.node, address))
                .is_none(),
            "two pods are named {}",
            pod.name
        );
    }
    addresses
}

/// A running cluster; see the module documentation. Dropping it stops ipvsd and removes every
/// namespace it made.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub outside: Vec<Outside>,
    /// Pods by name.
    pub pods: BTreeMap<String, Pod>,
    /// The underlay bridge, in the test's namespace.
    pub bridge: String,
    /// Each pod's node index, by pod name.
    pod_nodes: BTreeMap<String, u8>,
    /// The ipvsd processes, one per node, once started.
    daemons: Vec<Child>,
    /// Manifests and ipvsd logs.
    workdir: tempfile::TempDir,
    /// How long building the cluster took.
    pub setup_time: Duration,
}

impl Cluster {
    /// Builds the underlay, the nodes, the outside clients and the pods (servers listening).
    pub fn start(spec: &ClusterSpec) -> Cluster {
        let started = Instant::now();
        let id = NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("c{}x{id}", std::process::id());
        let bridge = format!("ul{id}");
        let workdir = tempfile::tempdir().expect("cannot make a temporary directory");
        // Built empty first, so that Drop cleans up after a failure at any step.
        let mut cluster = Cluster {
            nodes: Vec::new(),
            outside: Vec::new(),
            pods: BTreeMap::new(),
            bridge: bridge.clone(),
            pod_nodes: BTreeMap::new(),
            daemons: Vec::new(),
            workdir,
            setup_time: Duration::ZERO,
        };
        let mut underlay = vec![
            format!("link add {bridge} type bridge"),
            format!("link set {bridge} up"),
        ];
        for index in 1..=NODE_COUNT as u8 {
            let node = Node {
                name: format!("node{index}"),
                index,
                netns: format!("{prefix}-node{index}"),
                address: node_address(index),
                gateway: node_gateway(index),
            };
            ip(&["netns", "add", &node.netns]);
            cluster.nodes.push(node.clone());
            underlay.push(format!(
                "link add {bridge}n{index} type veth peer name eth0 netns {}",
                node.netns
            ));
            underlay.push(format!("link set {bridge}n{index} master {bridge} up"));
        }
        for index in 1..=spec.outside_clients {
            let client = Outside {
                name: format!("outside{index}"),
                netns: format!("{prefix}-outside{index}"),
                address: outside_address(index),
            };
            ip(&["netns", "add", &client.netns]);
            cluster.outside.push(client.clone());
            underlay.push(format!(
                "link add {bridge}o{index} type veth peer name eth0 netns {}",
                client.netns
            ));
            underlay.push(format!("link set {bridge}o{index} master {bridge} up"));
        }
        ip_batch_here(&underlay);

        for node in &cluster.nodes {
            let mut commands = vec![
                "link set lo up".to_owned(),
                format!("addr add {}/24 dev eth0", node.address),
                "link set eth0 up".to_owned(),
            ];
            for other in cluster.nodes.iter().filter(|o| o.index != node.index) {
                commands.push(format!(
                    "route add {} via {} dev eth0",
                    other.pod_cidr(),
                    other.address
                ));
            }
            ip_batch(&node.netns, &commands);
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &node.netns,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                ],
            );
        }
        for client in &cluster.outside {
            ip_batch(
                &client.netns,
                &[
                    "link set lo up".to_owned(),
                    format!("addr add {}/24 dev eth0", client.address),
                    "link set eth0 up".to_owned(),
                ],
            );
        }

        let addresses = pod_addresses(spec);
        for pod in &spec.pods {
            let node = cluster.node(pod.node).clone();
            let address = addresses[&pod.name].1;
            let started = Pod::start_behind(
                &node.netns,
                &pod.name,
                address,
                node.gateway,
                &format!("vpod{}", address.octets()[3]),
                &pod.tcp,
                &pod.udp,
            );
            cluster.pod_nodes.insert(pod.name.clone(), pod.node);
            cluster.pods.insert(pod.name.clone(), started);
        }
        cluster.setup_time = started.elapsed();
        cluster
    }

    /// Node `index` (1-based).
    pub fn node(&self, index: u8) -> &Node {
        &self.nodes[usize::from(index) - 1]
    }

    /// Outside client `index` (1-based).
    pub fn outside(&self, index: u8) -> &Outside {
        &self.outside[usize::from(index) - 1]
    }

    /// A pod by name.
    pub fn pod(&self, name: &str) -> &Pod {
        self.pods
            .get(name)
            .unwrap_or_else(|| panic!("the cluster has no pod {name}"))
    }

    /// The node (1-based) a pod runs on.
    pub fn node_of(&self, pod: &str) -> u8 {
        self.pod_nodes[pod]
    }

    /// The pod's address.
    pub fn pod_ip(&self, name: &str) -> Ipv4Addr {
        match self.pod(name).ip {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(ip) => panic!("pod {name} has the IPv6 address {ip}"),
        }
    }

    /// Routes `destination` (/32) from outside client `client` via node `node`'s underlay
    /// address, as a router in front of the cluster would for an external or load-balancer IP.
    pub fn route_from_outside(&self, client: u8, destination: Ipv4Addr, node: u8) {
        let via = self.node(node).address.to_string();
        ip(&[
            "-n",
            &self.outside(client).netns,
            "route",
            "add",
            &format!("{destination}/32"),
            "via",
            &via,
            "dev",
            "eth0",
        ]);
    }

    /// Writes the manifests (YAML: Services and EndpointSlices) and starts `ipvsd run` on every
    /// node with `--node-name nodeN --cluster-cidr 10.244.0.0/16` (unless `cluster_cidr` is
    /// false), health and metrics off, a 50 ms
    /// minimum sync period, and `extra` arguments. Logs go to a file per node ([`Self::logs`]).
    pub fn start_ipvsd(&mut self, manifests: &str, cluster_cidr: bool, extra: &[&str]) {
        assert!(self.daemons.is_empty(), "ipvsd is already running");
        let dir = self.workdir.path().join("manifests");
        std::fs::create_dir_all(&dir).expect("cannot make the manifests directory");
        std::fs::write(dir.join("cluster.yaml"), manifests).expect("cannot write the manifests");
        for node in self.nodes.clone() {
            let log = std::fs::File::create(self.log_path(&node))
                .expect("cannot create an ipvsd log file");
            let mut command = Command::new("ip");
            command
                .args(["netns", "exec", &node.netns])
                .arg(ipvsd_bin())
                .args(["run", "--manifests"])
                .arg(&dir)
                .args(["--node-name", &node.name])
                .args(["--health-address", "", "--metrics-address", ""])
                .args(["--min-sync-period", "50ms"]);
            if cluster_cidr {
                command.args(["--cluster-cidr", CLUSTER_CIDR]);
            }
            command
                .args(extra)
                // A log file, not a terminal: no colour codes.
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            let child = command
                .spawn()
                .unwrap_or_else(|e| panic!("{}: cannot start ipvsd: {e}", node.name));
            self.daemons.push(child);
        }
    }

    /// Replaces the manifests ipvsd follows (after [`Self::start_ipvsd`]).
    pub fn rewrite_manifests(&self, manifests: &str) {
        let path = self.workdir.path().join("manifests").join("cluster.yaml");
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, manifests).expect("cannot write the manifests");
        std::fs::rename(&temporary, &path).expect("cannot replace the manifests");
    }

    fn log_path(&self, node: &Node) -> PathBuf {
        self.workdir.path().join(format!("ipvsd-{}.log", node.name))
    }

    /// The log (standard error) of ipvsd on node `index`.
    pub fn logs(&self, index: u8) -> String {
        std::fs::read_to_string(self.log_path(self.node(index))).unwrap_or_default()
    }

    /// Panics (with its log) if ipvsd has exited on some node.
    pub fn check_ipvsd_running(&mut self) {
        for (i, child) in self.daemons.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                let index = i as u8 + 1;
                panic!(
                    "ipvsd on node{index} exited with {status}; its log:\n{}",
                    self.logs(index)
                );
            }
        }
    }

    /// Waits until the IPVS table of every node holds `expected[node]`: for each virtual server
    /// (`-t 10.96.0.10:80` as `ipvsadm -Sn` writes it), exactly these real servers
    /// (`10.244.1.10:8080`). Other virtual servers may exist. Panics after a minute, or at once if
    /// ipvsd exits, with the tables and logs. Returns how long it took.
    pub fn wait_for_virtual_servers(
        &mut self,
        expected: &BTreeMap<u8, BTreeMap<String, BTreeSet<String>>>,
    ) -> Duration {
        let start = Instant::now();
        let mut pending: BTreeSet<u8> = expected.keys().copied().collect();
        loop {
            self.check_ipvsd_running();
            pending.retain(|index| {
                let table = saved_table(&self.node(*index).netns);
                expected[index]
                    .iter()
                    .any(|(service, reals)| table.get(service) != Some(reals))
            });
            if pending.is_empty() {
                return start.elapsed();
            }
            if start.elapsed() > SYNC_TIMEOUT {
                let mut report = String::new();
                for index in &pending {
                    let node = self.node(*index);
                    let table = saved_table(&node.netns);
                    for (service, reals) in &expected[index] {
                        if table.get(service) != Some(reals) {
                            report.push_str(&format!(
                                "{}: {service}: want {reals:?}, have {:?}\n",
                                node.name,
                                table.get(service)
                            ));
                        }
                    }
                    report.push_str(&format!(
                        "--- ipvsd log of {}:\n{}\n",
                        node.name,
                        self.logs(*index)
                    ));
                }
                panic!("ipvsd did not program the nodes within {SYNC_TIMEOUT:?}:\n{report}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every node has the nftables table `family name` (e.g. `inet ipvsd`); panics
    /// after a minute with what `nft list tables` says.
    pub fn wait_for_nft_table(&mut self, family: &str, name: &str) -> Duration {
        let start = Instant::now();
        let wanted = format!("table {family} {name}");
        let mut pending: Vec<Node> = self.nodes.clone();
        loop {
            self.check_ipvsd_running();
            pending.retain(|node| !nft(&node.netns, &["list", "tables"]).contains(&wanted));
            if pending.is_empty() {
                return start.elapsed();
            }
            if start.elapsed() > SYNC_TIMEOUT {
                let node = &pending[0];
                panic!(
                    "{}: no nftables {wanted} within {SYNC_TIMEOUT:?}; `nft list tables`:\n{}\n\
                     --- ipvsd log:\n{}",
                    node.name,
                    nft(&node.netns, &["list", "tables"]),
                    self.logs(node.index)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `ipvsadm -Ln` of node `index`.
    pub fn ipvsadm_list(&self, index: u8) -> String {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.node(index).netns,
                &ipvsadm_path(),
                "-Ln",
            ],
        )
    }

    /// `nft list table FAMILY NAME` of node `index`, or None if the node has no such table.
    pub fn nft_table(&self, index: u8, family: &str, name: &str) -> Option<String> {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.node(index).netns])
            .args(["nft", "list", "table", family, name])
            .stdin(Stdio::null())
            .output()
            .expect("cannot run nft");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `nft list ruleset` of node `index`.
    pub fn nft_ruleset(&self, index: u8) -> String {
        nft(&self.node(index).netns, &["list", "ruleset"])
    }

    /// Asks from namespace `netns` (see [`ask_peer`]).
    pub fn ask(
        &self,
        netns: &str,
        protocol: Protocol,
        target: SocketAddr,
    ) -> Result<PeerAnswer, String> {
        ask_peer(netns, protocol, target)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() && !self.daemons.is_empty() {
            for node in &self.nodes {
                let log = std::fs::read_to_string(self.log_path(node)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                eprintln!("--- last lines of ipvsd's log on {}:", node.name);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        // Pods first: their namespaces hold veth ends in the nodes'.
        self.pods.clear();
        for client in &self.outside {
            remove_namespace(&client.netns);
        }
        for node in &self.nodes {
            remove_namespace(&node.netns);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// The ipvsd binary: `$IPVSD_BIN` (the test bed sets it), else the one cargo built beside this
/// test binary or example.
pub fn ipvsd_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("IPVSD_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("cannot find this program's path");
    // target/debug/deps/kernel-HASH or target/debug/examples/demo_cluster: ipvsd is in target/debug.
    exe.parent()
        .and_then(|dir| dir.parent())
        .map(|profile| profile.join("ipvsd"))
        .filter(|path| path.exists())
        .expect("IPVSD_BIN is not set and no ipvsd is built beside this program")
}

/// `ipvsadm -Sn` in a namespace, as virtual server (`-t 10.96.0.10:80`) -> real servers
/// (`10.244.1.10:8080`).
pub fn saved_table(netns: &str) -> BTreeMap<String, BTreeSet<String>> {
    let text = run("ip", &["netns", "exec", netns, &ipvsadm_path(), "-Sn"]);
    let mut table: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["-A", kind, service, ..] => {
                table.entry(format!("{kind} {service}")).or_default();
            }
            ["-a", kind, service, "-r", real, ..] => {
                table
                    .entry(format!("{kind} {service}"))
                    .or_default()
                    .insert((*real).to_owned());
            }
            _ => {}
        }
    }
    table
}

/// Runs `nft ARGS` in a namespace; panics if it fails.
pub fn nft(netns: &str, args: &[&str]) -> String {
    let mut full = vec!["netns", "exec", netns, "nft"];
    full.extend_from_slice(args);
    run("ip", &full)
}
