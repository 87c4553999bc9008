//! The multi-node demo, run in the test bed VM by `testbed/demo-cluster`: builds the three-node
//! cluster of the kernel tests (tests/kernel/cluster.rs: nodes, pods and outside clients as
//! network namespaces on a bridge), runs `ipvsd run` on every node with the traffic matrix's
//! Services (tests/kernel/matrix.rs), prints node1's IPVS table and ipvsd's nftables table, then
//! which pod answered a few requests and which source address it saw, beside what kube-proxy's
//! IPVS mode gives.
//!
//! ```text
//! demo_cluster [--all] [--masquerade-all]   in the VM, as root
//! demo_cluster --markdown                   anywhere: the matrix as markdown tables
//! ```
//!
//! `--all` sends the whole matrix (TCP and UDP) instead of a few requests; `--masquerade-all`
//! passes that flag to ipvsd. Exits 1 if an answer differs from the expected one.

#![forbid(unsafe_code)]

#[path = "../tests/kernel/cluster.rs"]
mod cluster;
#[path = "../tests/kernel/matrix.rs"]
mod matrix;
#[path = "../tests/kernel/pods.rs"]
mod pods;

use std::process::ExitCode;

use matrix::{standard_cells, Cell, Client, Matrix, Target, NFT_FAMILY, NFT_TABLE};
use pods::Protocol;

const USAGE: &str = "usage: demo_cluster [--all] [--masquerade-all] | --markdown";

/// A few telling requests: a pod to a cluster IP across nodes (the client's address is kept),
/// the host network to a cluster IP and outside clients to node ports and external and
/// load-balancer IPs (masqueraded, or kept with externalTrafficPolicy Local), a node without a
/// local endpoint (no answer) and a pod reaching itself (hairpin).
fn a_few_cells() -> Vec<Cell> {
    let (web_cluster, web_local, hairpin) = (0, 1, 2);
    let cell = |protocol, service, client, target| Cell {
        protocol,
        service,
        client,
        target,
    };
    vec![
        cell(
            Protocol::Tcp,
            web_cluster,
            Client::Pod("client-2"),
            Target::ClusterIp,
        ),
        cell(
            Protocol::Tcp,
            web_cluster,
            Client::Host(2),
            Target::ClusterIp,
        ),
        cell(
            Protocol::Tcp,
            web_cluster,
            Client::Outside(1),
            Target::NodePort(2),
        ),
        cell(
            Protocol::Udp,
            web_cluster,
            Client::Outside(2),
            Target::ExternalIp,
        ),
        cell(
            Protocol::Tcp,
            web_local,
            Client::Outside(1),
            Target::LoadBalancerIp,
        ),
        cell(
            Protocol::Tcp,
            web_local,
            Client::Outside(2),
            Target::LoadBalancerIp,
        ),
        cell(
            Protocol::Tcp,
            hairpin,
            Client::Pod("client-1"),
            Target::ClusterIp,
        ),
    ]
}

fn heading(text: &str) {
    println!("\n=== {text}");
}

fn main() -> ExitCode {
    let mut all = false;
    let mut masquerade_all = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--markdown" => {
                print!("{}", matrix::markdown());
                return ExitCode::SUCCESS;
            }
            "--all" => all = true,
            "--masquerade-all" => masquerade_all = true,
            _ => {
                eprintln!("demo_cluster: unexpected argument {arg:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    pods::require_ipvs();

    heading("cluster: node1-3 at 192.168.50.11-13, pods in 10.244.N.0/24, outside clients at 192.168.50.101-102");
    let matrix = Matrix::start(masquerade_all);
    for (name, (node, address)) in &matrix.layout.pods {
        println!("pod {name} on node{node} at {address}");
    }

    heading("node1: ipvsadm -Ln");
    print!("{}", matrix.cluster.ipvsadm_list(1));

    heading(&format!("node1: nft list table {NFT_FAMILY} {NFT_TABLE}"));
    match matrix.cluster.nft_table(1, NFT_FAMILY, NFT_TABLE) {
        Some(table) => print!("{table}"),
        None => println!("no table {NFT_FAMILY} {NFT_TABLE}"),
    }

    heading("requests: which pod answered and the source address it saw");
    let cells = if all {
        let mut cells = standard_cells(Protocol::Tcp);
        cells.extend(standard_cells(Protocol::Udp));
        cells
    } else {
        a_few_cells()
    };
    let outcomes = matrix.run(&cells);
    if outcomes.iter().all(|o| o.ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
