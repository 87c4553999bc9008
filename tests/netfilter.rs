//! The nftables side as plain functions: which set elements the virtual servers need, the
//! transactions that replace the table or change its elements, and their text.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipvs::{Protocol, Service, ServiceKey};
use ipvsd::model::{AddressKind, Desired, RealServer, ServiceRef, VirtualServer};
use ipvsd::netfilter::{self, ElementChanges, MasqueradeConfig, SetContents, Target, Transaction};

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
            .map(|(a, p)| RealServer::new(ip(a), *p))
            .collect(),
        origin: std::sync::Arc::new(ServiceRef {
            namespace: "default".into(),
            name: "web".into(),
            port_name: String::new(),
        }),
        kind,
        local_policy,
        local_destinations: local.iter().map(|(a, p)| (ip(a), *p)).collect(),
        source_ranges: None,
        cluster_ip: None,
    }
}

fn mk_desired(vss: Vec<VirtualServer>, bound: &[&str]) -> Desired {
    Desired {
        virtual_servers: vss
            .into_iter()
            .map(|vs| (vs.service.key, std::sync::Arc::new(vs)))
            .collect(),
        bound_addresses: bound.iter().map(|a| ip(a)).collect(),
        ..Desired::default()
    }
}

fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn masquerade_config() -> MasqueradeConfig {
    MasqueradeConfig {
        cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
        masquerade_all: false,
    }
}

fn set(targets: &[Target]) -> BTreeSet<Target> {
    targets.iter().copied().collect()
}

#[test]
fn cluster_ips_node_ports_and_local_endpoints_become_set_elements() {
    let pods = [("10.244.1.5", 8080), ("10.244.2.7", 8080)];
    let local = [("10.244.1.5", 8080)];
    let desired = mk_desired(
        vec![
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
        ],
        &["10.96.0.10", "fd00::10", "203.0.113.7", "198.51.100.9"],
    );
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
    // The port filter lets through the Service ports on bound addresses, not node ports.
    assert_eq!(
        elements.bound_services,
        set(&[
            target("10.96.0.10", Protocol::Tcp, 80),
            target("fd00::10", Protocol::Udp, 53),
            target("203.0.113.7", Protocol::Tcp, 80),
            target("198.51.100.9", Protocol::Sctp, 80),
        ])
    );

    let contents = elements.contents();
    assert_eq!(
        contents.set("hairpin-endpoints-v4"),
        strings(&[
            "10.244.1.5 . sctp . 8080 . 10.244.1.5",
            "10.244.1.5 . tcp . 8080 . 10.244.1.5"
        ])
    );
    assert_eq!(contents.set("service-addresses-v6"), strings(&["fd00::10"]));
    assert_eq!(
        contents.set("cluster-ips-v6"),
        strings(&["fd00::10 . udp . 53"])
    );
}

#[test]
fn source_ranges_and_local_policies_of_load_balancer_ips() {
    let pods = [("10.244.2.7", 8080)];
    let mut restricted = mk_vs(
        key("198.51.100.9", Protocol::Tcp, 443),
        AddressKind::LoadBalancer,
        false,
        &pods,
        &[],
    );
    restricted.source_ranges = Some(vec![
        "192.168.50.100/31".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ]);
    let mut local = mk_vs(
        key("198.51.100.10", Protocol::Tcp, 80),
        AddressKind::LoadBalancer,
        true,
        &[],
        &[],
    );
    local.cluster_ip = Some((ip("10.96.0.12"), 80));
    // An external IP of a Cluster policy needs no redirection: its virtual server has every
    // endpoint already.
    let mut cluster = mk_vs(
        key("203.0.113.7", Protocol::Tcp, 80),
        AddressKind::ExternalIp,
        false,
        &pods,
        &[],
    );
    cluster.cluster_ip = Some((ip("10.96.0.13"), 80));
    let desired = mk_desired(
        vec![restricted, local, cluster],
        &["198.51.100.9", "198.51.100.10", "203.0.113.7"],
    );
    let contents = netfilter::elements(&desired).contents();
    assert_eq!(
        contents.set("firewall-v4"),
        strings(&["198.51.100.9 . tcp . 443"])
    );
    // A range of the other family admits nobody of this one.
    assert_eq!(
        contents.set("firewall-allow-v4"),
        strings(&["198.51.100.9 . tcp . 443 . 192.168.50.100/31"])
    );
    assert_eq!(contents.set("firewall-allow-v6"), BTreeSet::new());
    assert_eq!(
        contents.set("local-policy-cluster-ips-v4"),
        strings(&["198.51.100.10 . tcp . 80 : 10.96.0.12 . 80"])
    );
    assert_eq!(
        contents.set("local-policy-services-v4"),
        strings(&["198.51.100.10 . tcp . 80"])
    );
}

#[test]
fn the_table_text_holds_rules_for_both_families_and_the_elements() {
    let desired = mk_desired(
        vec![
            mk_vs(
                key("10.96.0.10", Protocol::Tcp, 80),
                AddressKind::ClusterIp,
                false,
                &[("10.244.1.5", 8080)],
                &[("10.244.1.5", 8080)],
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
                &[],
                &[],
            ),
        ],
        &["10.96.0.10", "fd00::10"],
    );
    let text =
        Transaction::Replace(netfilter::elements(&desired).contents()).render(&masquerade_config());
    print!("{text}");
    // Created, deleted and written again in one transaction: never half a table.
    assert!(text.starts_with("add table inet ipvsd\ndelete table inet ipvsd\ntable inet ipvsd {\n"));
    for line in [
        "\t\telements = { 10.96.0.10 . tcp . 80 }",
        "\t\telements = { fd00::10 . udp . 53 }",
        "\t\telements = { 192.168.50.11 . tcp . 30080 }",
        "\t\telements = { 10.244.1.5 . tcp . 8080 . 10.244.1.5 }",
        "\t\telements = { 10.96.0.10 }",
        "\t\tip daddr . meta l4proto . th dport @cluster-ips-v4 ip saddr != { 10.244.0.0/16 } jump mark-for-masquerade",
        "\t\tip6 daddr . meta l4proto . th dport @masquerade-services-v6 jump mark-for-masquerade",
        "\t\tip daddr . meta l4proto . th dport . ip saddr @hairpin-endpoints-v4 masquerade fully-random",
        "\t\tct state new ip daddr @service-addresses-v4 ip daddr . meta l4proto . th dport != @service-ports-v4 counter name \"port-filter-rejected\" reject",
        "\t\tip daddr . meta l4proto . th dport @firewall-v4 ip daddr . meta l4proto . th dport . ip saddr != @firewall-allow-v4 fib saddr type != local counter name \"source-range-dropped\" drop",
        "\t\tip saddr { 10.244.0.0/16 } dnat ip to ip daddr . meta l4proto . th dport map @local-policy-cluster-ips-v4",
    ] {
        assert!(text.lines().any(|l| l == line), "missing line {line:?} in\n{text}");
    }
    // No IPv6 cluster CIDR: IPv6 cluster-IP traffic from pods cannot be told from outside
    // traffic, so only the node's own is masqueraded (as kube-proxy, which masquerades none).
    assert!(!text.contains("ip6 saddr != {"), "{text}");
    assert!(!text.contains("ip6 saddr {"), "{text}");
}

#[test]
fn masquerade_all_masquerades_every_cluster_ip_packet() {
    let config = MasqueradeConfig {
        masquerade_all: true,
        ..masquerade_config()
    };
    let text = Transaction::Replace(SetContents::default()).render(&config);
    assert!(
        text.lines().any(|l| l
            == "\t\tip daddr . meta l4proto . th dport @cluster-ips-v4 jump mark-for-masquerade"),
        "{text}"
    );
    assert!(!text.contains("saddr != {"), "{text}");
    // Empty sets are declared without an element list, which nft would reject.
    assert!(!text.contains("elements = "), "{text}");
}

#[test]
fn a_change_is_only_its_elements() {
    let mut actual = SetContents::default();
    actual.0.insert(
        "cluster-ips-v4".into(),
        strings(&["10.96.0.10 . tcp . 80", "10.96.0.11 . tcp . 80"]),
    );
    actual.0.insert(
        "local-policy-cluster-ips-v4".into(),
        strings(&["198.51.100.10 . tcp . 80 : 10.96.0.12 . 80"]),
    );
    let mut desired = actual.clone();
    desired
        .0
        .get_mut("cluster-ips-v4")
        .unwrap()
        .remove("10.96.0.11 . tcp . 80");
    desired
        .0
        .insert("cluster-ips-v6".into(), strings(&["fd00::12 . udp . 53"]));
    desired.0.insert(
        "local-policy-cluster-ips-v4".into(),
        strings(&["198.51.100.10 . tcp . 80 : 10.96.0.14 . 80"]),
    );

    let changes = netfilter::diff(&desired, &actual);
    assert_eq!(changes.len(), 4);
    let tx = Transaction::Change(changes.clone());
    assert_eq!(tx.elements(), 4);
    // A map entry is deleted by its key, then added with its new value.
    assert_eq!(
        tx.render(&MasqueradeConfig::default()),
        "delete element inet ipvsd cluster-ips-v4 { 10.96.0.11 . tcp . 80 }\n\
         delete element inet ipvsd local-policy-cluster-ips-v4 { 198.51.100.10 . tcp . 80 }\n\
         add element inet ipvsd cluster-ips-v6 { fd00::12 . udp . 53 }\n\
         add element inet ipvsd local-policy-cluster-ips-v4 { 198.51.100.10 . tcp . 80 : 10.96.0.14 . 80 }\n"
    );
    assert_eq!(tx.result(Some(&actual)), desired);
    assert!(netfilter::diff(&desired, &desired).is_empty());
    assert_eq!(
        Transaction::Change(ElementChanges::default()).render(&MasqueradeConfig::default()),
        ""
    );
}

#[test]
fn counters_are_read_from_nft_list_counters() {
    let text =
        "table inet ipvsd {\n\tcounter port-filter-rejected {\n\t\tpackets 12 bytes 720\n\t}\n\
                \tcounter source-range-dropped {\n\t\tpackets 0 bytes 0\n\t}\n}\n";
    let counters = netfilter::parse_counters(text);
    assert_eq!(
        counters,
        [
            ("port-filter-rejected".to_string(), 12),
            ("source-range-dropped".to_string(), 0)
        ]
        .into()
    );
    let table = Transaction::Replace(SetContents::default()).render(&masquerade_config());
    for counter in netfilter::COUNTERS {
        assert!(
            table.contains(&format!("\tcounter {counter} {{\n")),
            "{table}"
        );
    }
}

/// The cluster IP 10.96.0.10 alone, on its `cluster` key, with `endpoint` on this node.
fn mk_cluster_ip_only(cluster: ServiceKey, endpoint: &[(&str, u16)]) -> Desired {
    mk_desired(
        vec![mk_vs(
            cluster,
            AddressKind::ClusterIp,
            false,
            endpoint,
            endpoint,
        )],
        &["10.96.0.10"],
    )
}

#[test]
fn keyed_element_changes_keep_an_element_another_virtual_server_still_needs() {
    // The same local endpoint behind a cluster IP and a node port: one hairpin element.
    let cluster = key("10.96.0.10", Protocol::Tcp, 80);
    let node_port = key("192.168.1.10", Protocol::Tcp, 30080);
    let endpoint = [("10.244.0.7", 8080)];
    let both = mk_desired(
        vec![
            mk_vs(cluster, AddressKind::ClusterIp, false, &endpoint, &endpoint),
            mk_vs(
                node_port,
                AddressKind::NodePort,
                false,
                &endpoint,
                &endpoint,
            ),
        ],
        &["10.96.0.10"],
    );
    let mut index = netfilter::ElementIndex::of(&both);
    assert_eq!(index.contents(), netfilter::elements(&both).contents());

    // The node port goes: its own element goes, the shared hairpin element stays.
    let cluster_only = mk_cluster_ip_only(cluster, &endpoint);
    let changes = index.update(
        &cluster_only,
        &BTreeSet::from([node_port]),
        &BTreeSet::new(),
    );
    assert_eq!(
        changes,
        netfilter::diff(
            &netfilter::elements(&cluster_only).contents(),
            &netfilter::elements(&both).contents()
        )
    );
    assert!(changes.add.is_empty());
    assert_eq!(
        changes.delete.set("masquerade-services-v4"),
        BTreeSet::from(["192.168.1.10 . tcp . 30080".to_string()])
    );
    assert!(changes.delete.set("hairpin-endpoints-v4").is_empty());

    // The cluster IP and its address go too: now the hairpin element goes.
    let none = Desired::default();
    let changes = index.update(
        &none,
        &BTreeSet::from([cluster]),
        &BTreeSet::from([ip("10.96.0.10")]),
    );
    assert_eq!(
        changes.delete.set("hairpin-endpoints-v4"),
        BTreeSet::from(["10.244.0.7 . tcp . 8080 . 10.244.0.7".to_string()])
    );
    assert!(index.contents().is_empty());
}

#[test]
fn an_element_that_moves_to_another_set_is_deleted_from_one_and_added_to_the_other() {
    use netfilter::listing::ElementLookup;

    // A load-balancer IP of policy Cluster on a bound address, with a local endpoint that a
    // cluster IP of the same Service has too: its hairpin element has two contributors.
    let cluster = key("10.96.0.10", Protocol::Tcp, 80);
    let lb = key("203.0.113.10", Protocol::Tcp, 80);
    let endpoint = [("10.244.0.7", 8080)];
    let with_policy = |local_policy: bool| {
        let mut lb_vs = mk_vs(
            lb,
            AddressKind::LoadBalancer,
            local_policy,
            &endpoint,
            &endpoint,
        );
        lb_vs.cluster_ip = Some((ip("10.96.0.10"), 80));
        mk_desired(
            vec![
                mk_vs(cluster, AddressKind::ClusterIp, false, &endpoint, &endpoint),
                lb_vs,
            ],
            &["10.96.0.10", "203.0.113.10"],
        )
    };
    let cluster_policy = with_policy(false);
    let local_policy = with_policy(true);
    let mut index = netfilter::ElementIndex::of(&cluster_policy);
    assert_eq!(
        index.contents(),
        netfilter::elements(&cluster_policy).contents()
    );

    // Policy Local: the same element text leaves masquerade-services for the local-policy set
    // (and its map entry comes); the load balancer's other elements stay as they were.
    let lb_only = BTreeSet::from([lb]);
    let changes = index.update(&local_policy, &lb_only, &BTreeSet::new());
    assert_eq!(
        changes.delete.0,
        [(
            "masquerade-services-v4".to_string(),
            strings(&["203.0.113.10 . tcp . 80"])
        )]
        .into()
    );
    assert_eq!(
        changes.add.0,
        [
            (
                "local-policy-cluster-ips-v4".to_string(),
                strings(&["203.0.113.10 . tcp . 80 : 10.96.0.10 . 80"])
            ),
            (
                "local-policy-services-v4".to_string(),
                strings(&["203.0.113.10 . tcp . 80"])
            ),
        ]
        .into()
    );
    let expected = netfilter::elements(&local_policy).contents();
    assert_eq!(index.contents(), expected);
    // The index answers a comparison's lookups as the contents it stands for would.
    assert_eq!(index.set_names(), expected.set_names());
    for (set, element) in expected.iter() {
        assert!(index.holds(set, element), "{set}: {element}");
        assert_eq!(index.count(set), expected.count(set), "{set}");
    }
    assert!(!index.holds("masquerade-services-v4", "203.0.113.10 . tcp . 80"));
    assert_eq!(index.count("masquerade-services-v4"), 0);
    assert_eq!(index.count("no-such-set"), 0);

    // An update that changes nothing yields nothing; back to Cluster, the same changes undone.
    assert!(index
        .update(&local_policy, &lb_only, &BTreeSet::new())
        .is_empty());
    let back = index.update(&cluster_policy, &lb_only, &BTreeSet::new());
    assert_eq!((back.add, back.delete), (changes.delete, changes.add));
    assert_eq!(
        index.contents(),
        netfilter::elements(&cluster_policy).contents()
    );

    // The load balancer goes: the hairpin element it shares with the cluster IP stays.
    let cluster_only = mk_cluster_ip_only(cluster, &endpoint);
    let changes = index.update(
        &cluster_only,
        &lb_only,
        &BTreeSet::from([ip("203.0.113.10")]),
    );
    assert!(changes.add.is_empty());
    assert!(changes.delete.set("hairpin-endpoints-v4").is_empty());
    assert_eq!(
        changes,
        netfilter::diff(
            &netfilter::elements(&cluster_only).contents(),
            &netfilter::elements(&cluster_policy).contents()
        )
    );
    assert_eq!(
        index.contents(),
        netfilter::elements(&cluster_only).contents()
    );
}
