//! What kube-proxy guards besides balancing, on the three-node cluster: host ports do not answer
//! on Service addresses, load-balancer IPs admit only their source ranges, and health-check node
//! ports tell load balancers which nodes have endpoints.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, ClusterSpec, PodSpec};
use crate::pods::{pod_server_path, require_ipvs, run, Protocol};

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const LB_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const HEALTH_PORT: u16 = 32100;

/// A LoadBalancer Service `web` (port 80 → 8080, nodePort 30080) with the cluster, external and
/// load-balancer IPs above, extra spec lines, and one endpoint per `(address, node)`.
fn web_service(spec_extra: &str, endpoints: &[(Ipv4Addr, u8)]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  \
         type: LoadBalancer\n  clusterIP: {CLUSTER_IP}\n  clusterIPs:\n  - {CLUSTER_IP}\n  \
         externalIPs:\n  - {EXTERNAL_IP}\n{spec_extra}  ports:\n  - name: http\n    port: 80\n    \
         targetPort: 8080\n    nodePort: 30080\nstatus:\n  loadBalancer:\n    ingress:\n    \
         - ip: {LB_IP}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  \
         name: web-1\n  namespace: shop\n  labels:\n    kubernetes.io/service-name: web\n\
         addressType: IPv4\nports:\n- name: http\n  port: 8080\n  protocol: TCP\nendpoints:\n"
    );
    for (address, node) in endpoints {
        let _ = writeln!(
            yaml,
            "- addresses:\n  - {address}\n  conditions:\n    ready: true\n  nodeName: node{node}"
        );
    }
    yaml
}

/// A cluster with pod `web` (8080) on node2, a client pod on node1, two outside clients that
/// route the cluster, external and load-balancer IPs via node1, and ipvsd on every node.
fn cluster_with_web(spec_extra: &str) -> Cluster {
    let spec = ClusterSpec {
        pods: vec![
            PodSpec {
                name: "web".into(),
                node: 2,
                tcp: vec![8080],
                udp: vec![],
            },
            PodSpec {
                name: "client".into(),
                node: 1,
                tcp: vec![9090],
                udp: vec![],
            },
        ],
        outside_clients: 2,
    };
    let mut cluster = Cluster::start(&spec);
    for client in 1..=2 {
        for address in [CLUSTER_IP, EXTERNAL_IP, LB_IP] {
            cluster.route_from_outside(client, address, 1);
        }
    }
    let web = cluster.pod_ip("web");
    cluster.start_ipvsd(&web_service(spec_extra, &[(web, 2)]), true, &[]);
    let lb = format!("-t {LB_IP}:80");
    // With a Local policy only node2, where the pod runs, has it behind the load-balancer IP.
    let local = spec_extra.contains("externalTrafficPolicy: Local");
    let expected = (1..=3)
        .map(|node| {
            let reals = if local && node != 2 {
                Default::default()
            } else {
                [format!("{web}:8080")].into()
            };
            (node, [(lb.clone(), reals)].into())
        })
        .collect();
    cluster.wait_for_virtual_servers(&expected);
    cluster.wait_for_nft_table("inet", "ipvsd");
    cluster
}

/// A TCP server on a node's host network, like sshd on all addresses; killed on drop.
struct HostListener(Child);

impl HostListener {
    fn start(netns: &str, port: u16) -> HostListener {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(pod_server_path())
            .args(["--name", "host", "--tcp", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting a host listener");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready", "the host listener did not start");
        HostListener(child)
    }
}

impl Drop for HostListener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn host_ports_do_not_answer_on_service_addresses() {
    require_ipvs();
    let cluster = cluster_with_web("");
    let _sshd = HostListener::start(&cluster.node(1).netns, 2222);
    let pod = cluster.pod("client").netns.clone();
    let node1 = cluster.node(1).netns.clone();
    let outside = cluster.outside(1).netns.clone();
    let mut report = String::new();
    let mut failures = 0;
    for (who, netns) in [
        ("pod on node1", &pod),
        ("node1", &node1),
        ("outside1", &outside),
    ] {
        for (what, address) in [
            ("cluster IP", CLUSTER_IP),
            ("external IP", EXTERNAL_IP),
            ("load-balancer IP", LB_IP),
            ("node1's address", cluster.node(1).address),
        ] {
            let host_port = cluster.ask(netns, Protocol::Tcp, SocketAddr::from((address, 2222)));
            let service = cluster.ask(netns, Protocol::Tcp, SocketAddr::from((address, 80)));
            let node_address = address == cluster.node(1).address;
            // The node's own address keeps its host ports and has no Service on port 80.
            let ok = host_port.is_ok() == node_address && service.is_ok() != node_address;
            if !ok {
                failures += 1;
            }
            let _ = writeln!(
                report,
                "{} {who:>12} -> {what:<16} :2222 {:<24} :80 {}",
                if ok { "ok  " } else { "FAIL" },
                format!("{host_port:?}")
                    .chars()
                    .take(24)
                    .collect::<String>(),
                format!("{service:?}").chars().take(40).collect::<String>()
            );
        }
    }
    println!("{report}");
    assert_eq!(
        failures, 0,
        "host port 2222 on Service addresses:\n{report}"
    );
    // Counted where /metrics reads it (ipvsd_nftables_packets_total{counter="port-filter-rejected"}).
    let counters = run(
        "ip",
        &[
            "netns", "exec", &node1, "nft", "list", "counters", "table", "inet", "ipvsd",
        ],
    );
    let rejected = ipvsd::netfilter::parse_counters(&counters)["port-filter-rejected"];
    assert!(rejected >= 9, "{counters}");
}

#[test]
fn a_load_balancer_ip_admits_only_its_source_ranges() {
    require_ipvs();
    let cluster = cluster_with_web("  loadBalancerSourceRanges:\n  - 192.168.50.101/32\n");
    let lb = SocketAddr::from((LB_IP, 80));
    let allowed = cluster.ask(&cluster.outside(1).netns, Protocol::Tcp, lb);
    assert_eq!(allowed.map(|a| a.pod), Ok("web".to_string()));
    let started = Instant::now();
    let refused = cluster.ask(&cluster.outside(2).netns, Protocol::Tcp, lb);
    assert!(refused.is_err(), "outside2 got {refused:?}");
    // Dropped, not refused: the client waits out its timeout.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "answered in {:?}",
        started.elapsed()
    );
    // The external IP of the same Service has no ranges: everyone may use it.
    let external = cluster.ask(
        &cluster.outside(2).netns,
        Protocol::Tcp,
        SocketAddr::from((EXTERNAL_IP, 80)),
    );
    assert_eq!(external.map(|a| a.pod), Ok("web".to_string()));
    // The node's own traffic to the load-balancer IP leaves from an address outside the ranges.
    let from_node = cluster.ask(&cluster.node(1).netns, Protocol::Tcp, lb);
    assert!(from_node.is_err(), "node1 got {from_node:?}");
    let counters = run(
        "ip",
        &[
            "netns",
            "exec",
            &cluster.node(1).netns,
            "nft",
            "list",
            "chain",
            "inet",
            "ipvsd",
            "filter-prerouting",
        ],
    );
    println!("{counters}");
}

/// `GET /healthz` on address:port from `netns` with busybox nc: (status, body), or None when
/// nothing answers.
fn health_check(netns: &str, address: Ipv4Addr, port: u16) -> Option<(u16, String)> {
    let output = Command::new("ip")
        .args(["netns", "exec", netns, "sh", "-c"])
        .arg(format!(
            "printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {address} {port}"
        ))
        .stdin(Stdio::null())
        .output()
        .expect("running nc");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Some((status, body))
}

#[test]
fn health_check_node_ports_say_which_nodes_have_endpoints() {
    require_ipvs();
    let spec = format!("  externalTrafficPolicy: Local\n  healthCheckNodePort: {HEALTH_PORT}\n");
    let cluster = cluster_with_web(&spec);
    let outside = cluster.outside(1).netns.clone();
    let wait_for = |node: u8, want: Option<u16>| -> Option<(u16, String)> {
        let started = Instant::now();
        loop {
            let got = health_check(&outside, cluster.node(node).address, HEALTH_PORT);
            if got.as_ref().map(|(status, _)| *status) == want {
                return got;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "node{node}: {got:?}, want {want:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let (_, body) = wait_for(2, Some(200)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(
        json,
        serde_json::json!({"service": {"namespace": "shop", "name": "web"}, "localEndpoints": 1, "serviceProxyHealthy": true})
    );
    for node in [1, 3] {
        let (_, body) = wait_for(node, Some(503)).unwrap();
        assert!(body.contains("\"localEndpoints\":0"), "node{node}: {body}");
    }
    // The Service goes: so do its health-check servers.
    cluster.rewrite_manifests("");
    for node in 1..=3 {
        wait_for(node, None);
    }
}
