//! The real servers the model wants behind a virtual server, held in the smallest form that
//! says everything the model decides about them.
//!
//! The model holds the real servers of every virtual server for as long as ipvsd runs: 300,000
//! of them at 10,000 Services of 10 endpoints. As kernel [`Destination`]s in a `BTreeMap` they
//! took 49 MiB there: a `Destination` is 136 bytes, 80 of them counters a wanted real server
//! never has, and a map of a few entries still allocates a whole node of 11 slots. A
//! [`RealServer`] is 24 bytes and [`RealServers`] holds exactly its entries (7 MiB).

use std::net::IpAddr;
use std::sync::Arc;

use ipvs::{Destination, ForwardingMethod};

/// One real server the model wants behind a virtual server: what it decides, nothing the
/// kernel only reports.
///
/// ipvsd reaches every real server by NAT (pods are addressed directly; their replies come
/// back through this node) and sets no connection thresholds, so a real server's forwarding
/// method is always [`RealServer::FORWARDING`] and its thresholds always 0: neither is stored.
/// The plan turns it into the kernel's form with [`RealServer::to_destination`] and compares
/// it with what the kernel has with [`RealServer::settings_eq`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RealServer {
    /// Address of the endpoint.
    pub address: IpAddr,
    /// Port of the endpoint (the Service port's target port).
    pub port: u16,
    /// Weight; 0 stops new connections.
    pub weight: u32,
}

impl RealServer {
    /// How the kernel reaches every real server ipvsd wants: masquerading (NAT).
    pub const FORWARDING: ForwardingMethod = ForwardingMethod::Masquerade;

    /// A real server of weight 1, as the model makes every one: the schedulers share the
    /// connections out equally.
    pub fn new(address: IpAddr, port: u16) -> RealServer {
        RealServer {
            address,
            port,
            weight: 1,
        }
    }

    /// What identifies it within its virtual server: (address, port).
    pub fn key(&self) -> (IpAddr, u16) {
        (self.address, self.port)
    }

    /// The destination to send to the kernel to add or change it: its address, port and
    /// weight, masqueraded, no thresholds, the address's own family.
    pub fn to_destination(&self) -> Destination {
        Destination {
            forwarding: RealServer::FORWARDING,
            weight: self.weight,
            ..Destination::new(self.address, self.port)
        }
    }

    /// Whether the kernel's destination `have` already has the settings this real server
    /// wants, so no update is needed. It is [`Destination::settings_eq`] with what
    /// [`RealServer::to_destination`] would send, so both compare the same settings
    /// (forwarding, weight, thresholds) and cannot drift apart; address and port are the
    /// identity, matched by the caller.
    pub fn settings_eq(&self, have: &Destination) -> bool {
        have.settings_eq(&self.to_destination())
    }
}

/// The real servers of one virtual server, sorted by (address, port), each once.
///
/// A sorted slice rather than a map: the model builds a virtual server's real servers whole
/// and never changes them in place (a change makes a new virtual server), so nothing needs a
/// map's cheap insertion, and a slice holds its entries and nothing else (24 bytes per real
/// server). A lookup by (address, port), which the plan does per real server, is a binary
/// search over a handful of entries. Shared: a Service port's virtual servers (its cluster
/// IP, its node port on each node address, ...) have the same real servers, held once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RealServers(Arc<[RealServer]>);

impl RealServers {
    /// The real server at `address` and `port`, if it is one of these.
    pub fn get(&self, address: IpAddr, port: u16) -> Option<&RealServer> {
        self.0
            .binary_search_by_key(&(address, port), RealServer::key)
            .ok()
            .map(|i| &self.0[i])
    }

    /// Whether a real server at `address` and `port` is one of these.
    pub fn contains(&self, address: IpAddr, port: u16) -> bool {
        self.get(address, port).is_some()
    }

    /// The real servers in (address, port) order.
    pub fn iter(&self) -> std::slice::Iter<'_, RealServer> {
        self.0.iter()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<RealServer> for RealServers {
    /// Sorts them by (address, port); of several at the same address and port (an endpoint
    /// listed by two slices) the last is kept, as inserting them into a map would.
    fn from_iter<I: IntoIterator<Item = RealServer>>(iter: I) -> RealServers {
        let mut all: Vec<RealServer> = iter.into_iter().collect();
        all.sort_by_key(RealServer::key);
        all.dedup_by(|later, kept| {
            let same = later.key() == kept.key();
            if same {
                *kept = *later;
            }
            same
        });
        RealServers(Arc::from(all))
    }
}

impl<'a> IntoIterator for &'a RealServers {
    type Item = &'a RealServer;
    type IntoIter = std::slice::Iter<'a, RealServer>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs::Tunnel;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_real_server_is_compact() {
        assert_eq!(std::mem::size_of::<RealServer>(), 24);
        assert_eq!(std::mem::size_of::<RealServers>(), 16);
    }

    #[test]
    fn sent_as_a_masqueraded_destination_with_its_weight() {
        let real = RealServer {
            weight: 3,
            ..RealServer::new(ip("10.244.0.7"), 8443)
        };
        assert_eq!(
            real.to_destination(),
            Destination {
                weight: 3,
                ..Destination::new(ip("10.244.0.7"), 8443)
            }
        );
        assert_eq!(
            RealServer::new(ip("fd00:244::7"), 80).to_destination(),
            Destination::new(ip("fd00:244::7"), 80)
        );
    }

    #[test]
    fn compared_with_the_kernel_on_the_settings_destination_settings_eq_compares() {
        let real = RealServer::new(ip("10.244.0.7"), 8443);
        let mut have = real.to_destination();
        // What the kernel only observes is no difference.
        have.active_connections = 3;
        have.inactive_connections = 4;
        have.persistent_connections = 5;
        have.stats.connections = 6;
        assert!(real.settings_eq(&have));
        // Each setting is.
        let changes: [fn(&mut Destination); 5] = [
            |d| d.forwarding = ForwardingMethod::DirectRoute,
            |d| d.forwarding = ForwardingMethod::Tunnel(Tunnel::default()),
            |d| d.weight = 0,
            |d| d.upper_threshold = 100,
            |d| d.lower_threshold = 10,
        ];
        for change in changes {
            let mut differs = have.clone();
            change(&mut differs);
            assert!(!real.settings_eq(&differs), "{differs:?}");
            assert_eq!(
                real.settings_eq(&differs),
                differs.settings_eq(&real.to_destination())
            );
        }
    }

    #[test]
    fn kept_sorted_and_once_each_and_found_by_address_and_port() {
        let real_servers: RealServers = [
            RealServer::new(ip("fd00:244::1"), 80),
            RealServer::new(ip("10.244.0.9"), 80),
            RealServer::new(ip("10.244.0.1"), 8080),
            RealServer::new(ip("10.244.0.1"), 80),
            RealServer {
                weight: 2,
                ..RealServer::new(ip("10.244.0.9"), 80)
            },
        ]
        .into_iter()
        .collect();
        let keys: Vec<(IpAddr, u16)> = real_servers.iter().map(RealServer::key).collect();
        assert_eq!(
            keys,
            [
                (ip("10.244.0.1"), 80),
                (ip("10.244.0.1"), 8080),
                (ip("10.244.0.9"), 80),
                (ip("fd00:244::1"), 80),
            ]
        );
        // The later of the two at 10.244.0.9:80, as a map would keep.
        assert_eq!(
            real_servers.get(ip("10.244.0.9"), 80).map(|r| r.weight),
            Some(2)
        );
        assert!(real_servers.contains(ip("fd00:244::1"), 80));
        assert!(!real_servers.contains(ip("10.244.0.1"), 81));
        assert!(!real_servers.contains(ip("10.244.0.2"), 80));
        assert_eq!(real_servers.len(), 4);
        assert!(RealServers::default().is_empty());
    }
}
