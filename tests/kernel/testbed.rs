//! Checks of the test bed itself: the kernel has what the other kernel tests need, and the pod
//! helpers in `pods.rs` build working pods and clients.

use crate::pods::{
    ask_peer, ip, ipvsadm_path, require_ipvs, run, tcp_hello, udp_hello, ExternalClient, Pod,
    Protocol, TcpConversation,
};

#[test]
fn dummy_link_type_and_ipvs_exist() {
    require_ipvs();
    ip(&["link", "add", "d0", "type", "dummy"]);
    let link = ip(&["-o", "-d", "link", "show", "d0"]);
    assert!(link.contains("dummy"), "d0 is not a dummy link: {link}");
    ip(&["link", "del", "d0"]);
    let table = run(&ipvsadm_path(), &["-Ln"]);
    assert!(
        table.starts_with("IP Virtual Server version"),
        "unexpected `ipvsadm -Ln` output: {table}"
    );
}

#[test]
fn two_pods_answer_tcp_and_udp_with_their_names() {
    let web1 = Pod::start(
        "web-1",
        "10.244.0.11/24",
        "10.244.0.1",
        &[8080, 8081],
        &[5353],
    );
    let web2 = Pod::start("web-2", "10.244.0.12/24", "10.244.0.1", &[8080], &[5353]);

    assert_eq!(tcp_hello(web1.addr(8080)), "web-1");
    assert_eq!(tcp_hello(web1.addr(8081)), "web-1");
    assert_eq!(tcp_hello(web2.addr(8080)), "web-2");
    assert_eq!(udp_hello(web1.addr(5353)), "web-1");
    assert_eq!(udp_hello(web2.addr(5353)), "web-2");

    let (mut conversation, greeting) = TcpConversation::open(web2.addr(8080));
    assert_eq!(greeting, "web-2");
    assert_eq!(conversation.say("first"), "web-2: first");
    assert_eq!(conversation.say("second"), "web-2: second");
}

#[test]
fn pods_answer_over_ipv6() {
    let pod = Pod::start(
        "v6",
        "fd00:10:244::11/64",
        "fd00:10:244::1",
        &[8080],
        &[5353],
    );
    assert_eq!(tcp_hello(pod.addr(8080)), "v6");
    assert_eq!(udp_hello(pod.addr(5353)), "v6");
}

#[test]
fn external_client_reaches_a_pod_through_the_node() {
    let pod = Pod::start("web", "10.244.0.21/24", "10.244.0.1", &[8080], &[5353]);
    let client = ExternalClient::start("192.168.50.100/24", "192.168.50.10/24");
    // The pod's default route goes back through the node, so no NAT is needed for the reply.
    assert_eq!(client.tcp_hello(pod.addr(8080)), "web");
    assert_eq!(client.udp_hello(pod.addr(5353)), "web");
}

#[test]
fn dropping_a_pod_removes_its_namespace_and_link() {
    let pod = Pod::start("gone", "10.244.0.31/24", "10.244.0.1", &[8080], &[]);
    let (netns, link) = (pod.netns.clone(), pod.host_link.clone());
    assert!(ip(&["netns", "list"]).contains(&netns));
    drop(pod);
    assert!(
        !ip(&["netns", "list"]).contains(&netns),
        "netns {netns} is still there"
    );
    let links = ip(&["-o", "link", "show"]);
    assert!(
        !links.contains(&link),
        "link {link} is still there: {links}"
    );
}

/// A ruleset with everything ipvsd's nftables rules use: an `inet` table, nat chains on
/// prerouting, output and postrouting, filter chains on input, forward and output, meta mark,
/// l4proto and nfproto, `th dport`, concatenated sets of address . protocol . port (IPv4 and
/// IPv6, and with a trailing address), an anonymous interval set, ct state and original tuple,
/// `masquerade fully-random`, reject, fib, rule counters and a named counter.
const NFT_TEST_RULESET: &str = "
table inet testbed {
    set services {
        type ipv4_addr . inet_proto . inet_service
        elements = { 10.1.0.2 . tcp . 8080, 10.1.0.2 . udp . 8080 }
    }
    set services_v6 {
        type ipv6_addr . inet_proto . inet_service
        elements = { fd00:1::2 . tcp . 8080 }
    }
    set hairpin {
        type ipv4_addr . inet_proto . inet_service . ipv4_addr
        elements = { 10.1.0.2 . tcp . 8080 . 10.1.0.2 }
    }
    set hairpin_v6 {
        type ipv6_addr . inet_proto . inet_service . ipv6_addr
    }
    counter marked { }
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        ip saddr != { 10.1.0.0/24, 10.2.0.0/16 } ip daddr . meta l4proto . th dport @services meta mark set meta mark | 0x4000 counter name marked
        ip6 daddr . meta l4proto . th dport @services_v6 meta mark set meta mark | 0x4000 counter name marked
    }
    chain output {
        type nat hook output priority -100; policy accept;
        meta nfproto ipv6 ip6 daddr . meta l4proto . th dport @services_v6 meta mark set meta mark | 0x4000
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        meta mark & 0x4000 == 0x4000 counter masquerade fully-random
        ip daddr . meta l4proto . th dport . ip saddr @hairpin counter masquerade fully-random
        ip6 daddr . meta l4proto . th dport . ip6 saddr @hairpin_v6 counter masquerade fully-random
    }
    chain input {
        type filter hook input priority filter; policy accept;
        meta nfproto ipv4 ct state new fib daddr type local meta l4proto tcp th dport 9999 counter reject with tcp reset
        ct state new meta l4proto udp th dport 9999 counter reject
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related counter accept
        ct original ip daddr 10.1.0.2 counter accept
        ct original ip6 daddr fd00:1::2 counter accept
    }
    chain filter_output {
        type filter hook output priority filter; policy accept;
        counter
    }
}
";

/// nftables works in the VM: `nft -f -`, `nft list ruleset` and `nft -j list ruleset` in a
/// namespace, the modules load on demand through their aliases, and a router namespace with
/// the ruleset above masquerades (IPv4 and IPv6), rejects and counts between two others.
#[test]
fn nftables_masquerades_rejects_and_counts_between_namespaces() {
    require_ipvs();
    for (alias, module) in [
        ("nft-chain-1-nat", "nft_chain_nat"),
        ("nft-expr-masq", "nft_masq"),
        ("nft-expr-1-fib", "nft_fib_inet"),
    ] {
        let resolved = run("modprobe", &["-R", alias]);
        assert_eq!(resolved.trim(), module, "modprobe -R {alias}");
    }
    // The test's namespace routes between a client (10.0.0.2) and a server (10.1.0.2) that has
    // no route back to the client: only masqueraded requests get answers.
    let server = Pod::start("srv", "10.1.0.2/24", "10.1.0.1", &[8080], &[8080]);
    ip(&[
        "addr",
        "add",
        "fd00:1::1/64",
        "dev",
        &server.host_link,
        "nodad",
    ]);
    ip(&["-n", &server.netns, "route", "del", "default"]);
    ip(&[
        "-n",
        &server.netns,
        "addr",
        "add",
        "fd00:1::2/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    let client = ExternalClient::start("10.0.0.2/24", "10.0.0.1/24");
    ip(&[
        "addr",
        "add",
        "fd00:0::1/64",
        "dev",
        &client.host_link,
        "nodad",
    ]);
    ip(&[
        "-n",
        &client.netns,
        "addr",
        "add",
        "fd00:0::2/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    ip(&[
        "-n",
        &client.netns,
        "route",
        "add",
        "default",
        "via",
        "fd00::1",
        "dev",
        "eth0",
    ]);

    let mut nft = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run nft");
    std::io::Write::write_all(
        &mut nft.stdin.take().expect("piped"),
        NFT_TEST_RULESET.as_bytes(),
    )
    .expect("cannot write the ruleset to nft");
    assert!(nft.wait().expect("nft -f -").success(), "nft -f - failed");
    let listed = run("nft", &["list", "ruleset"]);
    assert!(
        listed.contains("masquerade fully-random") && listed.contains("ct original"),
        "nft list ruleset lost rules:\n{listed}"
    );

    let router_v4: std::net::IpAddr = "10.1.0.1".parse().unwrap();
    let router_v6: std::net::IpAddr = "fd00:1::1".parse().unwrap();
    for (protocol, target, source) in [
        (Protocol::Tcp, "10.1.0.2:8080", router_v4),
        (Protocol::Udp, "10.1.0.2:8080", router_v4),
        (Protocol::Tcp, "[fd00:1::2]:8080", router_v6),
    ] {
        let answer = ask_peer(&client.netns, protocol, target.parse().unwrap())
            .unwrap_or_else(|e| panic!("{protocol:?} {target}: {e}"));
        assert_eq!(
            (answer.pod.as_str(), answer.peer),
            ("srv", source),
            "{protocol:?} {target}: the server should see the router's address"
        );
    }
    // Rejected at once: a TCP reset and an ICMP port unreachable.
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let error = ask_peer(&client.netns, protocol, "10.0.0.1:9999".parse().unwrap())
            .expect_err("port 9999 is rejected");
        assert!(error.contains("refused"), "{protocol:?}: {error}");
    }

    let json: serde_json::Value =
        serde_json::from_str(&run("nft", &["-j", "list", "ruleset"])).expect("nft -j is JSON");
    let items = json["nftables"].as_array().expect("nftables array");
    let marked = items
        .iter()
        .find_map(|item| item.get("counter").filter(|c| c["name"] == "marked"))
        .expect("the named counter");
    assert_eq!(marked["packets"], 3, "marked requests: {marked}");
    // The counters of the masquerade rules and the rejects counted.
    let counted = |chain: &str| -> u64 {
        items
            .iter()
            .filter_map(|item| item.get("rule"))
            .filter(|rule| rule["chain"] == chain)
            .flat_map(|rule| rule["expr"].as_array().cloned().unwrap_or_default())
            .filter_map(|expr| expr.get("counter").and_then(|c| c["packets"].as_u64()))
            .sum()
    };
    assert!(counted("postrouting") >= 3, "postrouting counters");
    assert_eq!(counted("input"), 2, "input counters");
    assert!(counted("forward") > 0, "forward counters");
    run("nft", &["delete", "table", "inet", "testbed"]);
    assert_eq!(run("nft", &["list", "ruleset"]).trim(), "");
}

/// The underlay of the cluster tests: a bridge joins two namespaces.
#[test]
fn bridge_joins_namespaces() {
    require_ipvs();
    ip(&["link", "add", "br0", "type", "bridge"]);
    ip(&["link", "set", "br0", "up"]);
    let a = ExternalClient::start("192.168.60.1/24", "192.168.60.254/24");
    let b = ExternalClient::start("192.168.60.2/24", "192.168.60.253/24");
    for link in [&a.host_link, &b.host_link] {
        ip(&["addr", "flush", "dev", link]);
        ip(&["link", "set", link, "master", "br0"]);
    }
    // The node-side addresses are gone: only the bridge joins the two.
    run(
        "ip",
        &[
            "netns",
            "exec",
            &a.netns,
            "ping",
            "-c1",
            "-W5",
            "192.168.60.2",
        ],
    );
}
