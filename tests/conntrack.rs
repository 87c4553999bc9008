//! Which UDP conntrack entries are stale, case by case: entries, desired rules and the virtual
//! servers a sync changed in, the entries to delete out.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipvs::{Destination, Protocol, Request, Service, ServiceKey};
use ipvsd::conntrack::{stale_udp_entries, udp_key_changed_by, Entry, Tuple, IPPROTO_UDP};
use ipvsd::model::{AddressKind, Desired, RealServer, ServiceRef, VirtualServer};
use ipvsd::plan::Operation;

const IPPROTO_TCP: u8 = 6;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn mk_key(protocol: Protocol, address: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        address: ip(address),
        protocol,
        port,
    }
}

/// A desired virtual server with the given real servers ("address:port" or "[v6]:port").
fn mk_vs(key: ServiceKey, real_servers: &[&str]) -> VirtualServer {
    VirtualServer {
        service: Service::new(key, "rr"),
        destinations: real_servers
            .iter()
            .map(|rs| {
                let addr: std::net::SocketAddr = rs.parse().unwrap();
                RealServer::new(addr.ip(), addr.port())
            })
            .collect(),
        origin: std::sync::Arc::new(ServiceRef {
            namespace: "kube-system".into(),
            name: "kube-dns".into(),
            port_name: "dns".into(),
        }),
        kind: AddressKind::ClusterIp,
        local_policy: false,
        local_destinations: Default::default(),
        source_ranges: None,
        cluster_ip: None,
    }
}

fn mk_desired(vss: Vec<VirtualServer>) -> Desired {
    Desired {
        virtual_servers: vss
            .into_iter()
            .map(|vs| (vs.service.key, std::sync::Arc::new(vs)))
            .collect(),
        ..Desired::default()
    }
}

fn mk_tuple(protocol: u8, source: &str, destination: &str) -> Tuple {
    let source: std::net::SocketAddr = source.parse().unwrap();
    let destination: std::net::SocketAddr = destination.parse().unwrap();
    Tuple {
        protocol,
        source: source.ip(),
        source_port: source.port(),
        destination: destination.ip(),
        destination_port: destination.port(),
    }
}

/// An entry of a client to a Service address whose replies come from `reply_source` (a real
/// server once IPVS handled the first packet; the Service address itself when it had none).
fn mk_entry(protocol: u8, client: &str, service: &str, reply_source: &str) -> Entry {
    Entry {
        original: mk_tuple(protocol, client, service),
        reply: mk_tuple(protocol, reply_source, client),
        zone: 0,
    }
}

fn mk_udp(client: &str, service: &str, reply_source: &str) -> Entry {
    mk_entry(IPPROTO_UDP, client, service, reply_source)
}

fn keys(list: &[ServiceKey]) -> BTreeSet<ServiceKey> {
    list.iter().copied().collect()
}

#[test]
fn entries_to_a_removed_real_server_are_stale_and_those_to_current_ones_are_not() {
    let dns = mk_key(Protocol::Udp, "10.96.0.10", 53);
    let desired = mk_desired(vec![mk_vs(dns, &["10.244.1.7:53"])]);
    let to_old = mk_udp("10.244.2.5:40000", "10.96.0.10:53", "10.244.1.6:53");
    let to_new = mk_udp("10.244.2.5:40001", "10.96.0.10:53", "10.244.1.7:53");
    assert_eq!(
        stale_udp_entries(&[to_old, to_new], &desired, &keys(&[dns])),
        vec![to_old]
    );
}

#[test]
fn entries_made_while_the_service_had_no_endpoint_are_stale() {
    // Before the first endpoint nothing rewrote the reply: it comes from the Service address.
    let dns = mk_key(Protocol::Udp, "10.96.0.10", 53);
    let desired = mk_desired(vec![mk_vs(dns, &["10.244.1.7:53"])]);
    let before = mk_udp("10.244.2.5:40000", "10.96.0.10:53", "10.96.0.10:53");
    assert_eq!(
        stale_udp_entries(&[before], &desired, &keys(&[dns])),
        vec![before]
    );
}

#[test]
fn a_real_server_at_another_port_is_not_the_same_real_server() {
    let dns = mk_key(Protocol::Udp, "10.96.0.10", 53);
    let desired = mk_desired(vec![mk_vs(dns, &["10.244.1.7:5353"])]);
    let old_port = mk_udp("10.244.2.5:40000", "10.96.0.10:53", "10.244.1.7:53");
    let current = mk_udp("10.244.2.5:40001", "10.96.0.10:53", "10.244.1.7:5353");
    assert_eq!(
        stale_udp_entries(&[old_port, current], &desired, &keys(&[dns])),
        vec![old_port]
    );
}

#[test]
fn only_the_given_virtual_servers_are_looked_at() {
    let dns = mk_key(Protocol::Udp, "10.96.0.10", 53);
    let syslog = mk_key(Protocol::Udp, "10.96.0.20", 514);
    let desired = mk_desired(vec![
        mk_vs(dns, &["10.244.1.7:53"]),
        mk_vs(syslog, &["10.244.1.8:514"]),
    ]);
    let dns_stale = mk_udp("10.244.2.5:40000", "10.96.0.10:53", "10.244.1.6:53");
    let syslog_stale = mk_udp("10.244.2.5:40000", "10.96.0.20:514", "10.244.1.9:514");
    assert_eq!(
        stale_udp_entries(&[dns_stale, syslog_stale], &desired, &keys(&[dns])),
        vec![dns_stale]
    );
}

#[test]
fn tcp_entries_and_tcp_virtual_servers_are_left_alone() {
    let dns_udp = mk_key(Protocol::Udp, "10.96.0.10", 53);
    let dns_tcp = mk_key(Protocol::Tcp, "10.96.0.10", 53);
    let desired = mk_desired(vec![
        mk_vs(dns_udp, &["10.244.1.7:53"]),
        mk_vs(dns_tcp, &["10.244.1.7:53"]),
    ]);
    // A TCP connection to the removed pod drains on its own (graceful termination).
    let tcp = mk_entry(
        IPPROTO_TCP,
        "10.244.2.5:40000",
        "10.96.0.10:53",
        "10.244.1.6:53",
    );
    assert!(stale_udp_entries(&[tcp], &desired, &keys(&[dns_udp, dns_tcp])).is_empty());
}

#[test]
fn node_ports_and_ipv6_are_matched_by_address_and_port() {
    let node_port = mk_key(Protocol::Udp, "192.168.50.10", 30053);
    let v6 = mk_key(Protocol::Udp, "fd00:96::10", 53);
    let desired = mk_desired(vec![
        mk_vs(node_port, &["10.244.1.7:53"]),
        mk_vs(v6, &["[fd00:244::7]:53"]),
    ]);
    let entries = [
        mk_udp(
            "192.168.50.20:40000",
            "192.168.50.10:30053",
            "10.244.1.6:53",
        ),
        mk_udp(
            "192.168.50.20:40001",
            "192.168.50.10:30053",
            "10.244.1.7:53",
        ),
        // Another node address at the same port is another virtual server.
        mk_udp(
            "192.168.50.20:40002",
            "192.168.60.10:30053",
            "10.244.1.6:53",
        ),
        mk_udp(
            "[fd00:50::20]:40000",
            "[fd00:96::10]:53",
            "[fd00:244::6]:53",
        ),
        mk_udp(
            "[fd00:50::20]:40001",
            "[fd00:96::10]:53",
            "[fd00:244::7]:53",
        ),
    ];
    assert_eq!(
        stale_udp_entries(&entries, &desired, &keys(&[node_port, v6])),
        vec![entries[0], entries[3]]
    );
}

#[test]
fn every_entry_to_a_deleted_virtual_server_is_stale() {
    let dns = mk_key(Protocol::Udp, "10.96.0.10", 53);
    let entry = mk_udp("10.244.2.5:40000", "10.96.0.10:53", "10.244.1.7:53");
    assert_eq!(
        stale_udp_entries(&[entry], &Desired::default(), &keys(&[dns])),
        vec![entry]
    );
}

#[test]
fn udp_operations_name_their_virtual_server_and_others_none() {
    let dns = mk_key(Protocol::Udp, "10.96.0.10", 53);
    let web = mk_key(Protocol::Tcp, "10.96.0.20", 80);
    let real = Destination::new(ip("10.244.1.7"), 53);
    for op in [
        Operation::Ipvs(Request::AddService(Service::new(dns, "rr"))),
        Operation::Ipvs(Request::UpdateService(Service::new(dns, "wrr"))),
        Operation::Ipvs(Request::DeleteService(dns)),
        Operation::Ipvs(Request::AddDestination(dns, real.clone())),
        Operation::Ipvs(Request::UpdateDestination(dns, real.clone())),
        Operation::Ipvs(Request::DeleteDestination(dns, real.clone())),
    ] {
        assert_eq!(udp_key_changed_by(&op), Some(dns), "{op}");
    }
    for op in [
        Operation::Ipvs(Request::AddService(Service::new(web, "rr"))),
        Operation::Ipvs(Request::DeleteDestination(web, real)),
        Operation::Ipvs(Request::AddService(Service::new(
            ServiceKey::FwMark {
                mark: 7,
                family: ipvs::Family::Inet,
            },
            "rr",
        ))),
        Operation::BindAddress(ip("10.96.0.10")),
    ] {
        assert_eq!(udp_key_changed_by(&op), None, "{op}");
    }
}
