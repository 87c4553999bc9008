//! The node's own addresses: where NodePort virtual servers listen.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// Addresses of the node's interfaces, already without those on ipvsd's dummy interface, loopback
/// and IPv6 link-local ones. `--nodeport-addresses` is applied by the model, not here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAddresses(pub BTreeSet<IpAddr>);

impl NodeAddresses {
    /// Whether `addr` is one of the node's addresses.
    pub fn contains(&self, addr: &IpAddr) -> bool {
        self.0.contains(addr)
    }

    /// The addresses in order.
    pub fn iter(&self) -> impl Iterator<Item = &IpAddr> {
        self.0.iter()
    }
}

impl FromIterator<IpAddr> for NodeAddresses {
    fn from_iter<T: IntoIterator<Item = IpAddr>>(iter: T) -> Self {
        NodeAddresses(iter.into_iter().collect())
    }
}
