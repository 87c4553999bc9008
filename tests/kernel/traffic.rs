//! The traffic matrix in a three-node cluster (see `matrix.rs`): for every client and Service
//! address, which pod answers and which source address it sees, as kube-proxy's IPVS mode gives
//! them. The cells that need masquerading prove ipvsd's nftables rules.

use std::net::{IpAddr, SocketAddr};

use crate::cluster::{Cluster, ClusterSpec, PodSpec};
use crate::matrix::{standard_cells, Cell, Client, Matrix, Target};
use crate::pods::{require_ipvs, Protocol};

/// The cluster alone, without ipvsd: pods reach pods on other nodes directly (host-gateway
/// routes, no NAT), nodes reach pods, outside clients reach nodes but not pods.
#[test]
fn cluster_routes_pods_across_nodes_without_nat() {
    require_ipvs();
    let spec = ClusterSpec {
        pods: vec![
            PodSpec {
                name: "p1".to_owned(),
                node: 1,
                tcp: vec![8080],
                udp: vec![8080],
            },
            PodSpec {
                name: "p3".to_owned(),
                node: 3,
                tcp: vec![8080],
                udp: vec![],
            },
        ],
        outside_clients: 1,
    };
    let cluster = Cluster::start(&spec);
    println!("cluster set up in {:.1?}", cluster.setup_time);
    let p1 = cluster.pod("p1");
    let p3 = cluster.pod("p3");
    let to_p1 = SocketAddr::new(p1.ip, 8080);
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let answer = cluster
            .ask(&p3.netns, protocol, to_p1)
            .unwrap_or_else(|e| panic!("p3 -> p1 over {protocol:?}: {e}"));
        assert_eq!((answer.pod.as_str(), answer.peer), ("p1", p3.ip));
    }
    // From node2's host network: routed via node1, the source is node2's underlay address.
    let answer = cluster
        .ask(&cluster.node(2).netns, Protocol::Tcp, to_p1)
        .expect("node2 -> p1");
    assert_eq!(answer.peer, IpAddr::V4(cluster.node(2).address));
    // From node1 to its own pod: the gateway address on the pod's veth is the source.
    let answer = cluster
        .ask(&cluster.node(1).netns, Protocol::Tcp, to_p1)
        .expect("node1 -> p1");
    assert_eq!(answer.peer, IpAddr::V4(cluster.node(1).gateway));
    // The outside client knows only the underlay: pods are unreachable, nodes are not.
    let outside = cluster.outside(1);
    let error = cluster
        .ask(&outside.netns, Protocol::Tcp, to_p1)
        .expect_err("an outside client has no route to pods");
    assert!(error.contains("unreachable"), "unexpected error: {error}");
    crate::pods::run(
        "ip",
        &[
            "netns",
            "exec",
            &outside.netns,
            "ping",
            "-c1",
            "-W5",
            &cluster.node(3).address.to_string(),
        ],
    );
}

fn run_matrix(protocol: Protocol) {
    require_ipvs();
    let matrix = Matrix::start(false);
    let outcomes = matrix.run(&standard_cells(protocol));
    matrix.assert_all_ok(&outcomes);
}

/// Every client against every address of the TCP Services, both external traffic policies, and
/// the hairpin case.
#[test]
fn tcp_matrix() {
    run_matrix(Protocol::Tcp);
}

/// The same over UDP.
#[test]
fn udp_matrix() {
    run_matrix(Protocol::Udp);
}

/// With `--masquerade-all` pods reaching a cluster IP are masqueraded too; node ports with
/// externalTrafficPolicy Local still keep the client's address.
#[test]
fn masquerade_all_masquerades_pods_to_cluster_ips() {
    require_ipvs();
    let matrix = Matrix::start(true);
    let mut cells = Vec::new();
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        for client in [Client::Pod("client-1"), Client::Pod("client-2")] {
            cells.push(Cell {
                protocol,
                service: 0,
                client,
                target: Target::ClusterIp,
            });
        }
        for client in [Client::Pod("client-2"), Client::Outside(1)] {
            cells.push(Cell {
                protocol,
                service: 1,
                client,
                target: Target::NodePort(1),
            });
        }
    }
    let outcomes = matrix.run(&cells);
    matrix.assert_all_ok(&outcomes);
}
