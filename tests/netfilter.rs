//! The nftables side as plain functions: which set elements the virtual servers need, the
//! transactions that replace the table or change its elements, and their text.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipvs::{Destination, Protocol, Service, ServiceKey};
use ipvsd::model::{AddressKind, Desired, ServiceRef, VirtualServer};
use ipvsd::netfilter::{self, ElementChanges, Elements, MasqueradeConfig, Target, Transaction};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(address: &str, protocol: Protocol, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        address: ip(address),
        protocol,
        port,
    }
}

fn target(address: &str, protocol: Protocol, port: u16) -> Target {
    (ip(address), protocol, port)
}

/// A virtual server of `kind` on address:port with the given real servers, those listed in
/// `local` running on this node.
fn mk_vs(
    key: ServiceKey,
    kind: AddressKind,
    local_policy: bool,
    destinations: &[(&str, u16)],
    local: &[(&str, u16)],
) -> VirtualServer {
    VirtualServer {
        service: Service::new(key, "rr"),
        destinations: destinations
            .iter()
            .map(|(a, p)| ((ip(a), *p), Destination::new(ip(a), *p)))
            .collect(),
        origin: ServiceRef {
            namespace: "default".into(),
            name: "web".into(),
            port_name: String::new(),
        },
        kind,
        local_policy,
        local_destinations: local.iter().map(|(a, p)| (ip(a), *p)).collect(),
    }
}

fn mk_desired(vss: Vec<VirtualServer>) -> Desired {
    Desired {
        virtual_servers: vss.into_iter().map(|vs| (vs.service.key, vs)).collect(),
        ..Desired::default()
    }
}

fn set(targets: &[Target]) -> BTreeSet<Target> {
    targets.iter().copied().collect()
}

#[test]
fn cluster_ips_node_ports_and_local_endpoints_become_set_elements() {
    let pods = [("10.244.1.5", 8080), ("10.244.2.7", 8080)];
    let local = [("10.244.1.5", 8080)];
    let desired = mk_desired(vec![
        mk_vs(
            key("10.96.0.10", Protocol::Tcp, 80),
            AddressKind::ClusterIp,
            false,
            &pods,
            &local,
        ),
        mk_vs(
            key("fd00::10", Protocol::Udp, 53),
            AddressKind::ClusterIp,
            false,
            &[],
            &[],
        ),
        mk_vs(
            key("192.168.50.11", Protocol::Tcp, 30080),
            AddressKind::NodePort,
            false,
            &pods,
            &local,
        ),
        // externalTrafficPolicy Local: the client keeps its address, no masquerade.
        mk_vs(
            key("192.168.50.11", Protocol::Tcp, 30081),
            AddressKind::NodePort,
            true,
            &pods,
            &local,
        ),
        mk_vs(
            key("203.0.113.7", Protocol::Tcp, 80),
            AddressKind::ExternalIp,
            false,
            &pods,
            &local,
        ),
        mk_vs(
            key("198.51.100.9", Protocol::Sctp, 80),
            AddressKind::LoadBalancer,
            true,
            &pods,
            &local,
        ),
    ]);
    let elements = netfilter::elements(&desired);
    assert_eq!(
        elements.cluster_ips,
        set(&[
            target("10.96.0.10", Protocol::Tcp, 80),
            target("fd00::10", Protocol::Udp, 53)
        ])
    );
    assert_eq!(
        elements.masquerade,
        set(&[
            target("192.168.50.11", Protocol::Tcp, 30080),
            target("203.0.113.7", Protocol::Tcp, 80),
        ])
    );
    // One element per local endpoint, protocol and target port, however many virtual servers
    // lead to it; the endpoint on another node needs none.
    assert_eq!(
        elements.hairpin,
        set(&[
            target("10.244.1.5", Protocol::Tcp, 8080),
            target("10.244.1.5", Protocol::Sctp, 8080),
        ])
    );
}

#[test]
fn the_table_text_holds_rules_for_both_families_and_the_elements() {
    let elements = Elements {
        cluster_ips: set(&[
            target("10.96.0.10", Protocol::Tcp, 80),
            target("fd00::10", Protocol::Udp, 53),
        ]),
        masquerade: set(&[target("192.168.50.11", Protocol::Tcp, 30080)]),
        hairpin: set(&[target("10.244.1.5", Protocol::Tcp, 8080)]),
    };
    let config = MasqueradeConfig {
        cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
        masquerade_all: false,
    };
    let text = Transaction::Replace(elements).render(&config);
    print!("{text}");
    // Created, deleted and written again in one transaction: never half a table.
    assert!(text.starts_with("add table inet ipvsd\ndelete table inet ipvsd\ntable inet ipvsd {\n"));
    for line in [
        "\t\telements = { 10.96.0.10 . tcp . 80 }",
        "\t\telements = { fd00::10 . udp . 53 }",
        "\t\telements = { 192.168.50.11 . tcp . 30080 }",
        "\t\telements = { 10.244.1.5 . tcp . 8080 . 10.244.1.5 }",
        "\t\tip daddr . meta l4proto . th dport @cluster-ips-v4 ip saddr != { 10.244.0.0/16 } jump mark-for-masquerade",
        "\t\tip6 daddr . meta l4proto . th dport @masquerade-services-v6 jump mark-for-masquerade",
        "\t\tip daddr . meta l4proto . th dport . ip saddr @hairpin-endpoints-v4 masquerade fully-random",
    ] {
        assert!(text.lines().any(|l| l == line), "missing line {line:?} in\n{text}");
    }
    // No IPv6 cluster CIDR: IPv6 cluster-IP traffic from pods cannot be told from outside
    // traffic, so only the node's own is masqueraded (as kube-proxy, which masquerades none).
    assert!(!text.contains("ip6 saddr !="), "{text}");
}

#[test]
fn masquerade_all_masquerades_every_cluster_ip_packet() {
    let config = MasqueradeConfig {
        cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
        masquerade_all: true,
    };
    let text = Transaction::Replace(Elements::default()).render(&config);
    assert!(
        text.lines().any(|l| l
            == "\t\tip daddr . meta l4proto . th dport @cluster-ips-v4 jump mark-for-masquerade"),
        "{text}"
    );
    assert!(!text.contains("saddr !="), "{text}");
    // Empty sets are declared without an element list, which nft would reject.
    assert!(!text.contains("elements = "), "{text}");
}

#[test]
fn a_change_is_only_its_elements() {
    let actual = Elements {
        cluster_ips: set(&[
            target("10.96.0.10", Protocol::Tcp, 80),
            target("10.96.0.11", Protocol::Tcp, 80),
        ]),
        masquerade: set(&[target("192.168.50.11", Protocol::Tcp, 30080)]),
        hairpin: BTreeSet::new(),
    };
    let mut desired = actual.clone();
    desired
        .cluster_ips
        .remove(&target("10.96.0.11", Protocol::Tcp, 80));
    desired
        .cluster_ips
        .insert(target("fd00::12", Protocol::Udp, 53));
    desired
        .hairpin
        .insert(target("10.244.1.5", Protocol::Tcp, 8080));

    let changes = netfilter::diff(&desired, &actual);
    assert_eq!(changes.len(), 3);
    let tx = Transaction::Change(changes.clone());
    assert_eq!(tx.elements(), 3);
    assert_eq!(
        tx.render(&MasqueradeConfig::default()),
        "delete element inet ipvsd cluster-ips-v4 { 10.96.0.11 . tcp . 80 }\n\
         add element inet ipvsd cluster-ips-v6 { fd00::12 . udp . 53 }\n\
         add element inet ipvsd hairpin-endpoints-v4 { 10.244.1.5 . tcp . 8080 . 10.244.1.5 }\n"
    );
    assert_eq!(tx.result(Some(&actual)), desired);
    assert!(netfilter::diff(&desired, &desired).is_empty());
    assert_eq!(
        Transaction::Change(ElementChanges::default()).render(&MasqueradeConfig::default()),
        ""
    );
}
