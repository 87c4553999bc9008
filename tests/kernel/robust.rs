//! What ipvsd must survive from outside: entries in the IPVS table it cannot read.

use std::net::IpAddr;

use ipvs::message::{CmdAttr, DestAttr, InetAddr, IpvsCmd, IpvsMessage, SchedFlagsNla, SvcAttr};
use ipvs::{Protocol, ServiceKey};
use netlink_packet_core::Emitable;

use std::collections::BTreeSet;
use std::time::Duration;

use crate::controller::{
    demo_rules, examples, ipvsd, run_demo_once, saved_rules, wait_until, Daemon,
};
use crate::pods::{addresses_of, ip, ipvsadm_path, require_ipvs, run, ExternalClient};

/// The IPVS family's generic-netlink id.
fn ipvs_family_id() -> u16 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        ipvs::Client::connect()
            .await
            .expect("connecting to IPVS")
            .family_id()
    })
}

/// Sends one IPVS request as raw bytes, bypassing the typed client (which cannot write what
/// this test writes), and returns the kernel's answer: 0 or a negative errno.
fn raw_request(message: &IpvsMessage) -> i32 {
    let family = ipvs_family_id();
    let body = message.buffer_len();
    let len = 16 + 4 + body;
    let mut buf = vec![0u8; len];
    buf[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    buf[4..6].copy_from_slice(&family.to_ne_bytes());
    // NLM_F_REQUEST | NLM_F_ACK
    buf[6..8].copy_from_slice(&5u16.to_ne_bytes());
    buf[8..12].copy_from_slice(&1u32.to_ne_bytes());
    buf[16] = message.cmd.into();
    buf[17] = ipvs::message::IPVS_GENL_VERSION;
    message.emit(&mut buf[20..]);
    let socket =
        netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_GENERIC).expect("netlink socket");
    socket
        .send_to(&buf, &netlink_sys::SocketAddr::new(0, 0), 0)
        .expect("sending the raw request");
    let mut answer = Vec::with_capacity(4096);
    socket.recv(&mut answer, 0).expect("reading the answer");
    assert!(answer.len() >= 20, "short answer {answer:?}");
    // NLMSG_ERROR: the error code follows the header.
    assert_eq!(
        u16::from_ne_bytes([answer[4], answer[5]]),
        2,
        "not an error message"
    );
    i32::from_ne_bytes([answer[16], answer[17], answer[18], answer[19]])
}

fn tcp(address: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        address: address.parse().unwrap(),
        protocol: Protocol::Tcp,
        port,
    }
}

/// Adds a destination with forwarding method `method` (4 to 7 are masked in but unknown:
/// `IP_VS_CONN_F_BYPASS` is 4).
fn add_destination_with_method(service: &ServiceKey, address: &str, port: u16, method: u32) {
    let address: IpAddr = address.parse().unwrap();
    let message = IpvsMessage::new(
        IpvsCmd::NewDest,
        vec![
            CmdAttr::Service(service.into()),
            CmdAttr::Dest(vec![
                DestAttr::AddrFamily(2),
                DestAttr::Addr(InetAddr::from(address)),
                DestAttr::Port(port),
                DestAttr::FwdMethod(method),
                DestAttr::Weight(1),
                DestAttr::UThresh(0),
                DestAttr::LThresh(0),
            ]),
        ],
    );
    assert_eq!(
        raw_request(&message),
        0,
        "adding a destination of method {method}"
    );
}

/// Tries to add an IPv6 service with a persistence mask of `prefix` bits; returns the kernel's
/// answer.
fn add_ipv6_service_with_mask(address: &str, prefix: u32) -> i32 {
    let key = tcp(address, 80);
    let mut attrs: Vec<SvcAttr> = (&key).into();
    attrs.extend([
        SvcAttr::SchedName("rr".into()),
        SvcAttr::Flags(SchedFlagsNla {
            flags: 1,
            mask: u32::MAX,
        }),
        SvcAttr::Timeout(300),
        SvcAttr::Netmask(prefix),
    ]);
    raw_request(&IpvsMessage::new(
        IpvsCmd::NewService,
        vec![CmdAttr::Service(attrs)],
    ))
}

fn foreign_lines() -> Vec<String> {
    saved_rules()
        .into_iter()
        .filter(|l| l.contains("10.1.2.3") || l.contains("fd00:1::1") || l.contains(".99:"))
        .collect()
}

#[test]
fn foreign_entries_the_crate_cannot_read_do_not_stop_syncing() {
    require_ipvs();
    let _node = ExternalClient::start("192.168.50.20/24", "192.168.50.10/24");
    let ipvsadm = ipvsadm_path();
    // A foreign virtual server with a real server of an unknown forwarding method.
    run(&ipvsadm, &["-A", "-t", "10.1.2.3:80", "-s", "rr"]);
    run(
        &ipvsadm,
        &["-a", "-t", "10.1.2.3:80", "-r", "192.168.50.20:80", "-m"],
    );
    add_destination_with_method(&tcp("10.1.2.3", 80), "192.168.50.21", 80, 4);
    // An IPv6 virtual server with a 129-bit persistence mask, if the kernel takes one (6.1
    // refuses masks outside 1..=128 on add: the decoder's side is covered by host tests).
    let mask_answer = add_ipv6_service_with_mask("fd00:1::1", 129);
    eprintln!("an IPv6 mask of 129 bits: the kernel answered {mask_answer}");
    let foreign = foreign_lines();
    assert!(foreign.len() >= 3, "{foreign:#?}");

    run_demo_once(&[]);
    let mut expected = demo_rules(&["192.168.50.10"]);
    expected.extend(foreign.iter().cloned());
    assert_eq!(saved_rules(), expected);

    // A real server of an unknown method inside one of ipvsd's own virtual servers: kept, and
    // the rest of the table still synced.
    add_destination_with_method(&tcp("10.96.0.10", 80), "10.244.0.99", 8080, 5);
    run(
        &ipvsadm,
        &["-d", "-t", "10.96.0.60:80", "-r", "10.244.0.11:8080"],
    );
    run_demo_once(&[]);
    let foreign = foreign_lines();
    assert!(
        foreign.iter().any(|l| l.contains("10.244.0.99:8080")),
        "the foreign real server was removed: {foreign:#?}"
    );
    let mut expected = demo_rules(&["192.168.50.10"]);
    expected.extend(foreign.iter().cloned());
    assert_eq!(saved_rules(), expected);

    // Listing the table works too.
    let listing = ipvsd(&["list"]);
    assert!(listing.contains("10.96.0.10:80"), "{listing}");
}

fn demo_service_addresses() -> BTreeSet<IpAddr> {
    [
        "10.96.0.10",
        "10.96.0.20",
        "10.96.0.30",
        "10.96.0.53",
        "10.96.0.60",
        "fd00:96::60",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect()
}

#[test]
fn a_deleted_dummy_interface_and_a_flushed_table_come_back_and_node_addresses_follow() {
    require_ipvs();
    let _node = ExternalClient::start("192.168.50.20/24", "192.168.50.10/24");
    let ipvsadm = ipvsadm_path();
    let daemon = Daemon::start_synced(
        &examples().join("demo"),
        &["--sync-period", "2s"],
        &demo_rules(&["192.168.50.10"]),
    );
    assert_eq!(addresses_of("kube-ipvs0"), demo_service_addresses());

    // What `kube-proxy --cleanup` does to a node: the dummy interface deleted, IPVS flushed.
    ip(&["link", "del", "kube-ipvs0"]);
    run(&ipvsadm, &["-C"]);
    let took = wait_until(
        "the dummy interface, its addresses and the rules back",
        Duration::from_secs(15),
        || {
            ip(&["-o", "link", "show"]).contains("kube-ipvs0")
                && addresses_of("kube-ipvs0") == demo_service_addresses()
                && saved_rules() == demo_rules(&["192.168.50.10"])
        },
    );
    eprintln!("repaired in {took:?}");
    let details = ip(&["-d", "-o", "link", "show", "kube-ipvs0"]);
    assert!(details.contains("dummy"), "{details}");

    // Deleted alone, between two repairs.
    ip(&["link", "del", "kube-ipvs0"]);
    wait_until(
        "the dummy interface back again",
        Duration::from_secs(15),
        || {
            ip(&["-o", "link", "show"]).contains("kube-ipvs0")
                && addresses_of("kube-ipvs0") == demo_service_addresses()
        },
    );

    // A node address removed, then added again: its NodePort goes and comes back.
    ip(&["link", "add", "eth9", "type", "dummy"]);
    ip(&["link", "set", "eth9", "up"]);
    ip(&["addr", "add", "192.168.60.10/24", "dev", "eth9"]);
    let both = demo_rules(&["192.168.50.10", "192.168.60.10"]);
    wait_until("the new node address", Duration::from_secs(5), || {
        saved_rules() == both
    });
    ip(&["addr", "del", "192.168.60.10/24", "dev", "eth9"]);
    wait_until("the removed node address", Duration::from_secs(5), || {
        saved_rules() == demo_rules(&["192.168.50.10"])
    });
    ip(&["addr", "add", "192.168.60.10/24", "dev", "eth9"]);
    wait_until(
        "the node address added again",
        Duration::from_secs(5),
        || saved_rules() == both,
    );
    assert!(daemon.terminate().success());
}

/// `count` ClusterIP Services, each with two ready endpoints, as one manifest file.
fn many_services(count: usize) -> String {
    let mut out = String::new();
    for i in 0..count {
        let (a, b) = (i / 250, i % 250 + 1);
        out.push_str(&format!(
            "apiVersion: v1
kind: Service
metadata:
  name: s{i}
  namespace: default
spec:
  type: ClusterIP
  clusterIP: 10.100.{a}.{b}
  clusterIPs: [10.100.{a}.{b}]
  ports:
  - name: http
    port: 80
    protocol: TCP
    targetPort: 8080
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: s{i}-x
  namespace: default
  labels:
    kubernetes.io/service-name: s{i}
addressType: IPv4
ports:
- name: http
  port: 8080
endpoints:
- addresses: [10.245.{a}.{b}]
  conditions: {{ready: true}}
- addresses: [10.246.{a}.{b}]
  conditions: {{ready: true}}
---
"
        ));
    }
    out
}

fn many_rules(count: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for i in 0..count {
        let (a, b) = (i / 250, i % 250 + 1);
        out.insert(format!("-A -t 10.100.{a}.{b}:80 -s rr"));
        out.insert(format!(
            "-a -t 10.100.{a}.{b}:80 -r 10.245.{a}.{b}:8080 -m -w 1"
        ));
        out.insert(format!(
            "-a -t 10.100.{a}.{b}:80 -r 10.246.{a}.{b}:8080 -m -w 1"
        ));
    }
    out
}

/// A LoadBalancer Service whose load-balancer IP is the node's own address, at a port outside
/// the NodePort range: nothing but ipvsd's record says that virtual server is ipvsd's.
const LB_ON_NODE_ADDRESS: &str = "apiVersion: v1
kind: Service
metadata:
  name: lb
  namespace: default
spec:
  type: LoadBalancer
  clusterIP: 10.96.1.1
  clusterIPs: [10.96.1.1]
  ports:
  - name: http
    port: 9000
    nodePort: 31000
    protocol: TCP
    targetPort: 8080
status:
  loadBalancer:
    ingress:
    - ip: 192.168.50.10
";

/// Virtual servers in the kernel, from /proc/net/ip_vs (cheap, unlike a full dump).
fn virtual_server_count() -> usize {
    std::fs::read_to_string("/proc/net/ip_vs")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("TCP") || l.starts_with("UDP"))
        .count()
}

#[test]
fn a_restart_after_kill_9_mid_sync_converges_and_removes_what_ipvsd_left_only() {
    require_ipvs();
    let _node = ExternalClient::start("192.168.50.20/24", "192.168.50.10/24");
    let ipvsadm = ipvsadm_path();
    // An operator's rules, on the node address and elsewhere.
    for rule in [
        "-A -t 192.168.50.10:8443 -s wlc",
        "-a -t 192.168.50.10:8443 -r 192.168.50.20:8443 -g -w 3",
        "-A -t 10.1.2.3:80 -s rr",
    ] {
        run(&ipvsadm, &rule.split_whitespace().collect::<Vec<_>>());
    }
    let foreign: BTreeSet<String> = saved_rules();
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("services.yaml");

    // A first run programs the load balancer on the node address.
    std::fs::write(&manifest, LB_ON_NODE_ADDRESS).unwrap();
    ipvsd(&[
        "run",
        "--once",
        "--node-name",
        "demo-node",
        "--manifests",
        dir.path().to_str().unwrap(),
    ]);
    assert!(saved_rules().contains("-A -t 192.168.50.10:9000 -s rr"));

    // While ipvsd is down the Service goes, and thousands come (3,400 virtual servers with two
    // real servers each: 10,200 rules): ipvsd is killed in the middle of programming them.
    const COUNT: usize = 3400;
    std::fs::write(&manifest, many_services(COUNT)).unwrap();
    let bound_before = addresses_of("kube-ipvs0");
    let daemon = Daemon::start(dir.path(), &[]);
    // Reading the manifests and building the model take minutes on a slow emulated host;
    // meanwhile the kernel is only looked at now and then, so as not to take the CPU ipvsd
    // needs. Its first sync binds the new Services' addresses before it writes their virtual
    // servers: the first of them bound says the writing is about to start.
    let started = std::time::Instant::now();
    while addresses_of("kube-ipvs0").is_subset(&bound_before) {
        assert!(
            started.elapsed() < Duration::from_secs(420),
            "ipvsd did not start its first sync within 420 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Then polled every millisecond (a read of /proc/net/ip_vs): binding 3,400 addresses can
    // take minutes there, but once ipvsd writes virtual servers the kernel takes thousands in
    // seconds, and the kill must land while it writes.
    let binding = std::time::Instant::now();
    while virtual_server_count() <= foreign_count(&foreign) + 20 {
        assert!(
            binding.elapsed() < Duration::from_secs(400),
            "ipvsd bound addresses but wrote no virtual servers within 400 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(daemon); // SIGKILL
    let partial = virtual_server_count();
    eprintln!("killed with {partial} virtual servers in the kernel");
    assert!(
        partial < COUNT,
        "the first sync was not interrupted: {partial}"
    );

    // The restart converges to exactly the desired table: the load balancer ipvsd left behind
    // is gone, every Service is there once, the operator's rules are untouched.
    let mut expected = many_rules(COUNT);
    expected.extend(foreign.iter().cloned());
    let daemon = Daemon::start(dir.path(), &[]);
    // Reading the manifests again is most of it on a slow emulated host (see above).
    wait_until("convergence", Duration::from_secs(420), || {
        virtual_server_count() == COUNT + foreign_count(&foreign)
    });
    let listing = run(&ipvsadm, &["-Sn"]);
    let lines: Vec<&str> = listing.lines().collect();
    let rules: BTreeSet<String> = lines.iter().map(|l| l.to_string()).collect();
    assert_eq!(lines.len(), rules.len(), "duplicated rules");
    let missing: Vec<_> = expected.difference(&rules).take(5).collect();
    let extra: Vec<_> = rules.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    let bound = addresses_of("kube-ipvs0");
    assert_eq!(bound.len(), COUNT, "bound addresses");
    assert!(daemon.terminate().success());
}

fn foreign_count(foreign: &BTreeSet<String>) -> usize {
    foreign.iter().filter(|l| l.starts_with("-A")).count()
}

#[test]
fn cleanup_removes_the_virtual_servers_only_the_ownership_record_names() {
    require_ipvs();
    let _node = ExternalClient::start("192.168.50.20/24", "192.168.50.10/24");
    let ipvsadm = ipvsadm_path();
    // An operator's virtual server on the node address, outside the NodePort range too.
    run(&ipvsadm, &["-A", "-t", "192.168.50.10:8443", "-s", "wlc"]);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("services.yaml"), LB_ON_NODE_ADDRESS).unwrap();
    ipvsd(&[
        "run",
        "--once",
        "--node-name",
        "demo-node",
        "--manifests",
        dir.path().to_str().unwrap(),
    ]);
    let record = std::path::Path::new("/run/ipvsd/owned-kube-ipvs0");
    assert!(record.exists(), "no ownership record after the run");
    assert!(saved_rules().contains("-A -t 192.168.50.10:9000 -s rr"));

    // Nothing but the record says the load balancer on the node address is ipvsd's.
    ipvsd(&["cleanup"]);
    let left = saved_rules();
    assert!(
        !left.iter().any(|l| l.contains("192.168.50.10:9000")),
        "the recorded virtual server stayed: {left:?}"
    );
    assert_eq!(
        left,
        BTreeSet::from(["-A -t 192.168.50.10:8443 -s wlc".to_string()]),
        "cleanup touched what is not ipvsd's"
    );
    assert!(!record.exists(), "the record outlived the cleanup");
}

/// `--nodeport-addresses primary`: NodePorts on the address the default route leaves by only,
/// following the route when it moves.
#[test]
fn nodeport_addresses_primary_puts_node_ports_where_the_default_route_leaves() {
    require_ipvs();
    for (dev, address) in [("eth8", "192.168.60.10/24"), ("eth9", "192.168.70.10/24")] {
        ip(&["link", "add", dev, "type", "dummy"]);
        ip(&["addr", "add", address, "dev", dev]);
        ip(&["link", "set", dev, "up"]);
    }
    ip(&[
        "route",
        "add",
        "default",
        "via",
        "192.168.60.1",
        "dev",
        "eth8",
    ]);
    let demo = examples().join("demo");
    let daemon = Daemon::start_synced(
        &demo,
        &["--nodeport-addresses", "primary"],
        &demo_rules(&["192.168.60.10"]),
    );

    replace_default_route(
        &["via", "192.168.70.1", "dev", "eth9"],
        "NodePorts moving with the default route",
        "192.168.70.10",
    );
    // A preferred source on the route names the primary address.
    ip(&["addr", "add", "192.168.70.11/24", "dev", "eth9"]);
    replace_default_route(
        &["via", "192.168.70.1", "dev", "eth9", "src", "192.168.70.11"],
        "NodePorts on the route's preferred source",
        "192.168.70.11",
    );

    // No default route: no primary address, no NodePorts.
    ip(&["route", "del", "default"]);
    wait_until(
        "NodePorts gone with the default route",
        Duration::from_secs(5),
        || saved_rules() == demo_rules(&[]),
    );
    assert!(daemon.terminate().success());
}

/// Replaces the default route by one with `route` (`ip route` words after `default`) and waits
/// until the demo's NodePorts are on `node` only.
fn replace_default_route(route: &[&str], what: &str, node: &str) {
    ip(&[&["route", "replace", "default"], route].concat());
    wait_until(what, Duration::from_secs(5), || {
        saved_rules() == demo_rules(&[node])
    });
}
