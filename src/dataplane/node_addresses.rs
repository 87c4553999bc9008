//! Reading the node's own addresses from the kernel and following their changes, for NodePort
//! virtual servers.

use std::future::Future;
use std::net::IpAddr;

use futures::FutureExt;
use neli::consts::rtnl::Rtm;
use neli::nl::Nlmsghdr;
use neli::rtnl::Ifaddrmsg;
use neli::types::Buffer;
use tokio::sync::watch;
use tracing::{info, warn};

use super::link::{validate_interface_name, LinkError};
use super::rtnetlink::{decode, AddressRecord, NetlinkFailure, RouteSocket};
use crate::node_addresses::NodeAddresses;

/// rtnetlink multicast groups carrying IPv4 and IPv6 address changes (RTNLGRP_IPV4_IFADDR,
/// RTNLGRP_IPV6_IFADDR from linux/rtnetlink.h).
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV6_IFADDR: u32 = 9;

/// `ifa_scope` of addresses that only the node itself can reach (127.0.0.1, ::1).
const RT_SCOPE_HOST: u8 = 254;

/// Receive buffer asked for the notification socket: a burst of address changes (a thousand
/// service addresses bound at start-up) should not overrun it. Overruns are still handled.
const NOTIFICATION_BUFFER_BYTES: usize = 1 << 20;

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

/// fe80::/10.
fn is_ipv6_link_local(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
}

/// Lists addresses of all interfaces except `exclude_interface` (ipvsd's dummy), without
/// loopback (by address or host scope) and IPv6 link-local ones.
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
    Ok((
        select_node_addresses(&records, |index| excluded.contains(index)),
        excluded,
    ))
}

/// Follows RTM_NEWADDR/RTM_DELADDR notifications and keeps `tx` holding the full, fresh set of
/// node addresses until `shutdown` resolves.
///
/// Each notification batch leads to a fresh listing rather than being applied: a listing is
/// always right, including after an overrun (ENOBUFS) that lost notifications. Batches that
/// only touch the dummy interface are skipped without listing, since binding a thousand
/// service addresses would otherwise mean a thousand listings.
pub async fn watch_node_addresses(
    exclude_interface: String,
    tx: watch::Sender<NodeAddresses>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), LinkError> {
    validate_interface_name(&exclude_interface)?;
    // Subscribe before the first listing so no change falls between the two.
    let mut notifications = RouteSocket::subscribed(&[RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR])
        .map_err(LinkError::Open)?;
    if let Err(err) = notifications.set_recv_buffer_size(NOTIFICATION_BUFFER_BYTES) {
        warn!(error = %err, "cannot enlarge the address notification buffer");
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
        if !needs_listing(batch, &excluded)? {
            continue;
        }
        // One listing covers every notification already queued: take them off the socket
        // first, so a burst (or the backlog after an overrun) costs one listing, not one each.
        for _ in 0..MAX_DRAINED_BATCHES {
            match notifications.notifications().now_or_never() {
                Some(batch) => {
                    needs_listing(batch, &excluded)?;
                }
                None => break,
            }
        }
        let (addresses, now_excluded) = list(&mut requests, &exclude_interface).await?;
        excluded = now_excluded;
        publish(&tx, addresses);
    }
}

/// Whether a batch of notifications can change the node addresses: batches only about the
/// dummy interface cannot; an overrun may have lost anything. Other socket errors end the watch.
fn needs_listing(
    batch: Result<Vec<Nlmsghdr<u16, Buffer>>, NetlinkFailure>,
    excluded: &ExcludedInterfaces,
) -> Result<bool, LinkError> {
    match batch {
        Ok(messages) => Ok(!messages.iter().all(|msg| {
            notification_interface(msg).is_some_and(|index| Some(index) == excluded.dummy)
        })),
        Err(err) if err.is_overrun() => {
            warn!("address notifications overran; listing addresses again");
            Ok(true)
        }
        Err(source) => Err(LinkError::Netlink {
            action: "follow address changes".to_owned(),
            source,
        }),
    }
}

/// The interface an RTM_NEWADDR/RTM_DELADDR notification is about; `None` for anything else.
fn notification_interface(msg: &Nlmsghdr<u16, Buffer>) -> Option<u32> {
    let ty = *msg.nl_type();
    if ty != u16::from(Rtm::Newaddr) && ty != u16::from(Rtm::Deladdr) {
        return None;
    }
    let header: Ifaddrmsg = decode(msg.get_payload()?).ok()?;
    Some(*header.ifa_index())
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
        info!(?added, ?removed, "node addresses changed");
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

    #[test]
    fn publish_sends_only_changes() {
        let (tx, mut rx) = watch::channel(NodeAddresses::default());
        publish(&tx, mk_node_addresses(&["192.0.2.1"]));
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), mk_node_addresses(&["192.0.2.1"]));
        publish(&tx, mk_node_addresses(&["192.0.2.1"]));
        assert!(!rx.has_changed().unwrap());
    }
}
