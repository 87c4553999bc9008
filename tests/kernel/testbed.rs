//! Checks of the test bed itself: the kernel has what the other kernel tests need, and the pod
//! helpers in `pods.rs` build working pods and clients.

use crate::pods::{
    ip, ipvsadm_path, require_ipvs, run, tcp_hello, udp_hello, ExternalClient, Pod, TcpConversation,
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
