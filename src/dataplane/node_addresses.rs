//! Reading the node's own addresses (and its primary ones, from the default routes) from the
//! kernel and following their changes, for NodePort virtual servers.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use futures::FutureExt;
use neli::consts::rtnl::Rtm;
use neli::nl::Nlmsghdr;
use neli::rtnl::{Ifaddrmsg, Rtmsg};
use neli::types::Buffer;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;
use tracing::{info, warn};

use super::link::{validate_interface_name, LinkError};
use super::rtnetlink::{
    decode, AddressRecord, NetlinkFailure, RouteFamily, RouteRecord, RouteSocket, RTN_UNICAST,
    RT_TABLE_MAIN,
};
use crate::node_addresses::{NodeAddresses, PrimaryAddresses};

/// rtnetlink multicast groups carrying IPv4 and IPv6 address and route changes
/// (RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE from
/// linux/rtnetlink.h). Routes matter for the primary addresses.
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_ROUTE: u32 = 11;

/// `ifa_scope` of addresses any host can reach (RT_SCOPE_UNIVERSE).
const RT_SCOPE_UNIVERSE: u8 = 0;
/// `ifa_scope` of addresses that only the node itself can reach (127.0.0.1, ::1).
const RT_SCOPE_HOST: u8 = 254;

/// Receive buffer asked for the notification socket: a burst of address changes (a thousand
/// service addresses bound at start-up) should not overrun it. Overruns are still handled.
pub const NOTIFICATION_BUFFER_BYTES: usize = 1 << 20;

/// Waits before listing the addresses again after a listing failed: doubling from the first
/// to the last.
const RELIST_RETRY_FIRST: Duration = Duration::from_millis(100);
const RELIST_RETRY_MAX: Duration = Duration::from_secs(5);

/// Most notification datagrams taken off the socket before listing; bounds the time between
/// listings while changes keep streaming in.
const MAX_DRAINED_BATCHES: usize = 4096;

/// Interfaces whose addresses are not node addresses, by index, as found at listing time. `lo`
/// is not one: as for kube-proxy, an address that is not a loopback one but is held on `lo` (a
/// routing-to-host setup, an anycast address) is a node address; the loopback addresses
/// themselves are left out by address and scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ExcludedInterfaces {
    /// ipvsd's dummy interface, if it exists.
    dummy: Option<u32>,
}

impl ExcludedInterfaces {
    fn contains(&self, index: u32) -> bool {
        self.dummy == Some(index)
    }
}

/// Picks the node addresses out of the address table: NodePorts must listen where clients
/// outside the node can connect, so addresses on the dummy (service addresses), loopback ones
/// and IPv6 link-local ones (ambiguous without a zone, and a zone cannot be part of a
/// virtual server) are left out.
fn select_node_addresses<'a>(
    records: impl IntoIterator<Item = &'a AddressRecord>,
    excluded: impl Fn(u32) -> bool,
) -> NodeAddresses {
    records
        .into_iter()
        .filter(|r| !excluded(r.interface_index))
        .filter(|r| r.scope != RT_SCOPE_HOST && !r.address.is_loopback())
        .filter(|r| !is_ipv6_link_local(r.address))
        .map(|r| r.address)
        .collect()
}

/// The primary address of each family, as kubelet picks a node IP without a cloud provider:
/// the default route of the main table (the lowest metric; the first listed among equals),
/// and its preferred source if it names one of the family, else the first global address
/// listed on its output interface. A family without a default route has none.
fn select_primary(routes: &[RouteRecord], records: &[AddressRecord]) -> PrimaryAddresses {
    let primary = |family: RouteFamily| {
        let route = routes
            .iter()
            .filter(|r| r.family == family && r.destination_len == 0)
            .filter(|r| r.kind == RTN_UNICAST && r.table == RT_TABLE_MAIN)
            .min_by_key(|r| r.metric)?;
        let of_family = |a: &IpAddr| a.is_ipv4() == (family == RouteFamily::Ipv4);
        route.preferred_source.filter(of_family).or_else(|| {
            records
                .iter()
                .filter(|r| Some(r.interface_index) == route.output_interface)
                .filter(|r| r.scope == RT_SCOPE_UNIVERSE && of_family(&r.address))
                .find(|r| !r.address.is_loopback() && !is_ipv6_link_local(r.address))
                .map(|r| r.address)
        })
    };
    PrimaryAddresses {
        ipv4: match primary(RouteFamily::Ipv4) {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        },
        ipv6: match primary(RouteFamily::Ipv6) {
            Some(IpAddr::V6(a)) => Some(a),
            _ => None,
        },
    }
}

/// fe80::/10.
fn is_ipv6_link_local(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
}

/// Lists addresses of all interfaces except `exclude_interface` (ipvsd's dummy), without
/// loopback (by address or host scope) and IPv6 link-local ones, and the primary addresses.
pub async fn node_addresses(exclude_interface: &str) -> Result<NodeAddresses, LinkError> {
    validate_interface_name(exclude_interface)?;
    let mut socket = RouteSocket::open().map_err(LinkError::Open)?;
    list(&mut socket, exclude_interface)
        .await
        .map(|(addresses, _)| addresses)
}

async fn list(
    socket: &mut RouteSocket,
    exclude_interface: &str,
) -> Result<(NodeAddresses, ExcludedInterfaces), LinkError> {
    let dummy = socket
        .link_by_name(exclude_interface)
        .await
        .map(|link| link.map(|l| l.index))
        .map_err(LinkError::netlink_action(format!(
            "look up interface {exclude_interface}"
        )))?;
    let excluded = ExcludedInterfaces { dummy };
    let records = socket
        .addresses(None)
        .await
        .map_err(LinkError::netlink_action("list node addresses".to_owned()))?;
    let mut routes = Vec::new();
    for family in [RouteFamily::Ipv4, RouteFamily::Ipv6] {
        routes.extend(
            socket
                .main_routes(family)
                .await
                .map_err(LinkError::netlink_action(format!(
                    "list the {family:?} routes"
                )))?,
        );
    }
    let addresses = select_node_addresses(&records, |index| excluded.contains(index))
        .with_primary(select_primary(&routes, &records));
    Ok((addresses, excluded))
}

/// How the address watcher runs.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The interface whose addresses are not node addresses (ipvsd's dummy).
    pub exclude_interface: String,
    /// Receive buffer asked for the notification socket ([`NOTIFICATION_BUFFER_BYTES`]; the
    /// kernel caps it at `net.core.rmem_max` and doubles it).
    pub receive_buffer_bytes: usize,
    /// Counts overruns of the notification socket, each followed by a fresh listing.
    pub overruns: Counter,
}

impl WatchOptions {
    /// The defaults, excluding `exclude_interface`.
    pub fn new(exclude_interface: String) -> WatchOptions {
        WatchOptions {
            exclude_interface,
            receive_buffer_bytes: NOTIFICATION_BUFFER_BYTES,
            overruns: Counter::default(),
        }
    }
}

/// Follows RTM_NEWADDR/RTM_DELADDR notifications and keeps `tx` holding the full, fresh set of
/// node addresses until `shutdown` resolves, with the default [`WatchOptions`].
pub async fn watch_node_addresses(
    exclude_interface: String,
    tx: watch::Sender<NodeAddresses>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), LinkError> {
    watch_node_addresses_with(WatchOptions::new(exclude_interface), tx, shutdown).await
}

/// Follows address and default-route notifications and keeps `tx` holding the full, fresh set
/// of node addresses and primary addresses until `shutdown` resolves.
///
/// Each notification batch leads to a fresh listing rather than being applied: a listing is
/// always right, including after an overrun (ENOBUFS) that lost notifications. Batches that
/// only touch the dummy interface or routes other than default ones are skipped without
/// listing, since binding a thousand service addresses would otherwise mean a thousand listings.
pub async fn watch_node_addresses_with(
    options: WatchOptions,
    tx: watch::Sender<NodeAddresses>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), LinkError> {
    let WatchOptions {
        exclude_interface,
        receive_buffer_bytes,
        overruns,
    } = options;
    validate_interface_name(&exclude_interface)?;
    // Subscribe before the first listing so no change falls between the two.
    let mut notifications = RouteSocket::subscribed(&[
        RTNLGRP_IPV4_IFADDR,
        RTNLGRP_IPV4_ROUTE,
        RTNLGRP_IPV6_IFADDR,
        RTNLGRP_IPV6_ROUTE,
    ])
    .map_err(LinkError::Open)?;
    if let Err(err) = notifications.set_recv_buffer_size(receive_buffer_bytes) {
        warn!(error = %err, bytes = receive_buffer_bytes, "cannot set the address notification buffer");
    }
    let mut requests = RouteSocket::open().map_err(LinkError::Open)?;
    let (addresses, mut excluded) = list(&mut requests, &exclude_interface).await?;
    publish(&tx, addresses);

    tokio::pin!(shutdown);
    loop {
        let batch = tokio::select! {
            () = &mut shutdown => return Ok(()),
            batch = notifications.notifications() => batch,
        };
        if !needs_listing(batch, &excluded, &overruns)? {
            continue;
        }
        // One listing covers every notification already queued: take them off the socket
        // first, so a burst (or the backlog after an overrun) costs one listing, not one each.
        for _ in 0..MAX_DRAINED_BATCHES {
            match notifications.notifications().now_or_never() {
                Some(batch) => {
                    needs_listing(batch, &excluded, &overruns)?;
                }
                None => break,
            }
        }
        // A listing can fail while the tables keep changing (a dump interrupted time after
        // time during a burst): keep the last addresses and list again, rather than stop
        // following them.
        let mut retry = RELIST_RETRY_FIRST;
        let (addresses, now_excluded) = loop {
            match list(&mut requests, &exclude_interface).await {
                Ok(listed) => break listed,
                Err(err) => {
                    warn!(
                        error = %err,
                        retry_in = ?retry,
                        "cannot list node addresses; keeping the last ones and listing again"
                    );
                    tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(RELIST_RETRY_MAX);
                }
            }
        };
        excluded = now_excluded;
        publish(&tx, addresses);
    }
}

/// Whether a batch of notifications can change the node addresses: batches only about the
/// dummy interface's addresses or about routes other than default ones cannot; an overrun may
/// have lost anything (it is counted in `overruns`). Other socket errors end the watch.
fn needs_listing(
    batch: Result<Vec<Nlmsghdr<u16, Buffer>>, NetlinkFailure>,
    excluded: &ExcludedInterfaces,
    overruns: &Counter,
) -> Result<bool, LinkError> {
    match batch {
        Ok(messages) => Ok(!messages.iter().all(|msg| irrelevant(msg, excluded))),
        Err(err) if err.is_overrun() => {
            let total = overruns.inc() + 1;
            warn!(
                overruns = total,
                "address notifications overran (ENOBUFS); listing addresses and routes again"
            );
            Ok(true)
        }
        Err(source) => Err(LinkError::Netlink {
            action: "follow address changes".to_owned(),
            source,
        }),
    }
}

/// Whether a notification cannot change the node or primary addresses: an address of the
/// dummy interface, or a route that is not a default one. Anything unreadable may.
fn irrelevant(msg: &Nlmsghdr<u16, Buffer>, excluded: &ExcludedInterfaces) -> bool {
    let ty = *msg.nl_type();
    let Some(body) = msg.get_payload() else {
        return false;
    };
    if ty == u16::from(Rtm::Newaddr) || ty == u16::from(Rtm::Deladdr) {
        decode::<Ifaddrmsg>(body).is_ok_and(|header| excluded.contains(*header.ifa_index()))
    } else if ty == u16::from(Rtm::Newroute) || ty == u16::from(Rtm::Delroute) {
        decode::<Rtmsg>(body).is_ok_and(|header| *header.rtm_dst_len() != 0)
    } else {
        false
    }
}

fn publish(tx: &watch::Sender<NodeAddresses>, addresses: NodeAddresses) {
    tx.send_if_modified(|current| {
        if *current == addresses {
            return false;
        }
        let added: Vec<String> = addresses
            .iter()
            .filter(|a| !current.contains(a))
            .map(ToString::to_string)
            .collect();
        let removed: Vec<String> = current
            .iter()
            .filter(|a| !addresses.contains(a))
            .map(ToString::to_string)
            .collect();
        info!(?added, ?removed, primary = ?addresses.primary, "node addresses changed");
        *current = addresses;
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const LO: u32 = 1;
    const ETH0: u32 = 2;
    const DUMMY: u32 = 3;

    fn mk_record(interface_index: u32, address: &str, prefix_len: u8, scope: u8) -> AddressRecord {
        AddressRecord {
            interface_index,
            address: address.parse().unwrap(),
            prefix_len,
            scope,
        }
    }

    fn mk_node_addresses(addresses: &[&str]) -> NodeAddresses {
        addresses.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn excluded() -> ExcludedInterfaces {
        ExcludedInterfaces { dummy: Some(DUMMY) }
    }

    #[test]
    fn keeps_global_addresses_of_real_interfaces() {
        let records = [
            mk_record(ETH0, "192.168.1.10", 24, 0),
            mk_record(ETH0, "2001:db8::10", 64, 0),
            mk_record(ETH0, "fd00::10", 64, 0),
        ];
        let got = select_node_addresses(&records, |i| excluded().contains(i));
        assert_eq!(
            got,
            mk_node_addresses(&["192.168.1.10", "2001:db8::10", "fd00::10"])
        );
    }

    #[test]
    fn leaves_out_loopback_link_local_and_dummy_addresses() {
        let records = [
            mk_record(LO, "127.0.0.1", 8, RT_SCOPE_HOST),
            mk_record(LO, "::1", 128, RT_SCOPE_HOST),
            mk_record(ETH0, "fe80::1c2:3ff:fe04:506", 64, 253),
            mk_record(ETH0, "febf::1", 64, 0),
            mk_record(DUMMY, "10.96.0.1", 32, 0),
            mk_record(DUMMY, "fd00:96::1", 128, 0),
            mk_record(ETH0, "192.168.1.10", 24, 0),
        ];
        let got = select_node_addresses(&records, |i| excluded().contains(i));
        assert_eq!(got, mk_node_addresses(&["192.168.1.10"]));
    }

    #[test]
    fn loopback_addresses_are_left_out_on_any_interface() {
        let records = [
            mk_record(ETH0, "127.0.0.53", 8, 0),
            mk_record(ETH0, "10.0.0.1", 8, RT_SCOPE_HOST),
        ];
        let got = select_node_addresses(&records, |_| false);
        assert_eq!(got, NodeAddresses::default());
    }

    #[test]
    fn without_a_dummy_nothing_is_excluded() {
        let none = ExcludedInterfaces { dummy: None };
        assert!(!none.contains(LO));
        assert!(!none.contains(DUMMY));
        let records = [mk_record(DUMMY, "10.96.0.1", 32, 0)];
        let got = select_node_addresses(&records, |i| none.contains(i));
        assert_eq!(got, mk_node_addresses(&["10.96.0.1"]));
    }

    #[test]
    fn non_loopback_addresses_on_lo_are_node_addresses() {
        // Routing-to-host setups put the node's service address on lo; kube-proxy keeps it.
        let records = [
            mk_record(LO, "127.0.0.1", 8, RT_SCOPE_HOST),
            mk_record(LO, "::1", 128, RT_SCOPE_HOST),
            mk_record(LO, "10.255.0.1", 32, 0),
            mk_record(LO, "2001:db8:ff::1", 128, 0),
        ];
        let got = select_node_addresses(&records, |i| excluded().contains(i));
        assert_eq!(got, mk_node_addresses(&["10.255.0.1", "2001:db8:ff::1"]));
    }

    #[test]
    fn link_local_prefix_is_fe80_slash_10() {
        assert!(is_ipv6_link_local("fe80::1".parse().unwrap()));
        assert!(is_ipv6_link_local("febf:ffff::1".parse().unwrap()));
        assert!(!is_ipv6_link_local("fec0::1".parse().unwrap()));
        assert!(!is_ipv6_link_local("169.254.1.1".parse().unwrap()));
    }

    fn mk_route(family: RouteFamily, oif: u32, prefsrc: Option<&str>, metric: u32) -> RouteRecord {
        RouteRecord {
            family,
            destination_len: 0,
            table: RT_TABLE_MAIN,
            kind: RTN_UNICAST,
            output_interface: Some(oif),
            preferred_source: prefsrc.map(|a| a.parse().unwrap()),
            metric,
        }
    }

    const ETH1: u32 = 4;

    fn two_interfaces() -> Vec<AddressRecord> {
        vec![
            mk_record(LO, "127.0.0.1", 8, RT_SCOPE_HOST),
            mk_record(ETH0, "fe80::1", 64, 253),
            mk_record(ETH0, "192.168.1.10", 24, 0),
            mk_record(ETH0, "192.168.1.11", 24, 0),
            mk_record(ETH0, "2001:db8::10", 64, 0),
            mk_record(ETH1, "10.0.0.10", 24, 0),
            mk_record(ETH1, "fd00::10", 64, 0),
        ]
    }

    #[test]
    fn primary_is_the_first_global_address_of_the_default_route_interface() {
        let routes = [
            mk_route(RouteFamily::Ipv4, ETH0, None, 0),
            mk_route(RouteFamily::Ipv6, ETH1, None, 1024),
        ];
        let got = select_primary(&routes, &two_interfaces());
        assert_eq!(got.ipv4, Some("192.168.1.10".parse().unwrap()));
        assert_eq!(got.ipv6, Some("fd00::10".parse().unwrap()));
    }

    #[test]
    fn primary_prefers_the_routes_preferred_source_and_the_lowest_metric() {
        let routes = [
            mk_route(RouteFamily::Ipv4, ETH1, None, 200),
            mk_route(RouteFamily::Ipv4, ETH0, Some("192.168.1.11"), 100),
            mk_route(RouteFamily::Ipv4, ETH0, None, 100),
        ];
        let got = select_primary(&routes, &two_interfaces());
        assert_eq!(got.ipv4, Some("192.168.1.11".parse().unwrap()));
    }

    #[test]
    fn without_a_default_route_a_family_has_no_primary() {
        let mut not_default = mk_route(RouteFamily::Ipv4, ETH0, None, 0);
        not_default.destination_len = 24;
        let mut other_table = mk_route(RouteFamily::Ipv4, ETH0, None, 0);
        other_table.table = 100;
        let mut unreachable = mk_route(RouteFamily::Ipv6, ETH0, None, 0);
        unreachable.kind = 7; // RTN_UNREACHABLE
        let got = select_primary(&[not_default, other_table, unreachable], &two_interfaces());
        assert_eq!(got, PrimaryAddresses::default());
        assert_eq!(
            select_primary(&[], &two_interfaces()),
            PrimaryAddresses::default()
        );
    }

    #[test]
    fn a_default_route_on_an_interface_without_a_global_address_gives_no_primary() {
        let routes = [mk_route(RouteFamily::Ipv6, LO, None, 0)];
        assert_eq!(select_primary(&routes, &two_interfaces()).ipv6, None);
    }

    #[test]
    fn publish_sends_only_changes() {
        let (tx, mut rx) = watch::channel(NodeAddresses::default());
        publish(&tx, mk_node_addresses(&["192.0.2.1"]));
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), mk_node_addresses(&["192.0.2.1"]));
        publish(&tx, mk_node_addresses(&["192.0.2.1"]));
        assert!(!rx.has_changed().unwrap());
        // A new primary address alone is a change.
        let primary = PrimaryAddresses {
            ipv4: Some("192.0.2.1".parse().unwrap()),
            ipv6: None,
        };
        publish(&tx, mk_node_addresses(&["192.0.2.1"]).with_primary(primary));
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().primary, primary);
    }
}
