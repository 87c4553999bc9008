//! Which of the node's UDP conntrack entries are stale after a change of the UDP virtual servers.
//!
//! With `net.ipv4.vs.conntrack=1` IPVS rewrites a conntrack entry's reply tuple to the real
//! server it chose, but only while the entry is unconfirmed, i.e. for its first packet. A UDP
//! client that keeps its source port (a resolver, a metrics agent) keeps its entry for as long as
//! it keeps sending: when its real server goes away, or when it started sending while the Service
//! had no endpoint (then the entry's reply comes from the Service address itself), the entry
//! still says where replies come from and they are lost until it times out (kubernetes#71514,
//! DNS broken for minutes after each CoreDNS rollout). Deleting such entries lets the next
//! datagram make a fresh one, which IPVS points at a current real server. This is kube-proxy's
//! `CleanStaleEntries`; [`stale_udp_entries`] picks the entries, the dataplane deletes them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipvs::{Protocol, ServiceKey};

use crate::model::{Desired, RealServers};

/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u8 = 17;

/// One direction of a conntrack entry: protocol, source and destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tuple {
    /// IP protocol number (`IPPROTO_UDP`, ...).
    pub protocol: u8,
    /// Source address.
    pub source: IpAddr,
    /// Source port.
    pub source_port: u16,
    /// Destination address.
    pub destination: IpAddr,
    /// Destination port.
    pub destination_port: u16,
}

/// A conntrack entry as far as cleaning up needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    /// The tuple of the first packet (client → Service address); the kernel finds the entry by
    /// it.
    pub original: Tuple,
    /// The tuple replies are expected with (real server → client, after IPVS rewrote it).
    pub reply: Tuple,
    /// The conntrack zone (`CTA_ZONE`); 0 is the default zone.
    pub zone: u16,
}

/// The entries among `entries` that send datagrams to the wrong place: those whose original
/// destination is the address and port of one of the UDP virtual servers `keys`, and whose
/// reply source (address and port) is not one of that virtual server's real servers in
/// `desired`. A key that `desired` no longer has counts as a virtual server without real
/// servers (it was deleted: every entry towards it is stale). Keys of other protocols and
/// firewall-mark keys are ignored.
pub fn stale_udp_entries(
    entries: &[Entry],
    desired: &Desired,
    keys: &BTreeSet<ServiceKey>,
) -> Vec<Entry> {
    // The real servers of each UDP key, by its address and port; `None` when `desired` no longer
    // has the virtual server.
    let mut real_servers: BTreeMap<(IpAddr, u16), Option<&RealServers>> = BTreeMap::new();
    for key in keys {
        let ServiceKey::Addr {
            address,
            protocol: Protocol::Udp,
            port,
        } = *key
        else {
            continue;
        };
        let current = desired.virtual_servers.get(key).map(|vs| &vs.destinations);
        real_servers.insert((address, port), current);
    }
    entries
        .iter()
        .filter(|e| e.original.protocol == IPPROTO_UDP)
        .filter(|e| {
            real_servers
                .get(&(e.original.destination, e.original.destination_port))
                .is_some_and(|current| {
                    !current.is_some_and(|r| r.contains(e.reply.source, e.reply.source_port))
                })
        })
        .copied()
        .collect()
}

/// The UDP virtual server an IPVS operation adds, changes or deletes, or whose real servers it
/// adds, changes or deletes: the ones whose conntrack entries may have gone stale.
pub fn udp_key_changed_by(op: &crate::plan::Operation) -> Option<ServiceKey> {
    let key = match op.request()? {
        // Zeroing counters changes no forwarding.
        ipvs::Request::Zero(_) => return None,
        request => request.service_key()?,
    };
    matches!(
        key,
        ServiceKey::Addr {
            protocol: Protocol::Udp,
            ..
        }
    )
    .then_some(key)
}
