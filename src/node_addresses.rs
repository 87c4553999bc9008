//! The node's own addresses: where NodePort virtual servers listen.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The node's addresses as the kernel reports them. `--nodeport-addresses` is applied by the
/// model, not here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAddresses {
    /// Addresses of the node's interfaces, already without those on ipvsd's dummy interface,
    /// loopback and IPv6 link-local ones.
    pub addresses: BTreeSet<IpAddr>,
    /// The node's primary address of each family, as kubelet picks a node IP without a cloud
    /// provider: the one the default route leaves with.
    pub primary: PrimaryAddresses,
}

/// Per family, the address on the interface holding the default route (its preferred source if
/// it names one, else the interface's first global address); `None` for a family without a
/// default route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrimaryAddresses {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

impl PrimaryAddresses {
    /// Whether `addr` is the primary address of its family.
    pub fn contains(&self, addr: &IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.ipv4 == Some(*a),
            IpAddr::V6(a) => self.ipv6 == Some(*a),
        }
    }

    /// The primary addresses there are, IPv4 first.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> {
        self.ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.ipv6.map(IpAddr::V6))
    }
}

impl NodeAddresses {
    /// Whether `addr` is one of the node's addresses.
    pub fn contains(&self, addr: &IpAddr) -> bool {
        self.addresses.contains(addr)
    }

    /// The addresses in order.
    pub fn iter(&self) -> impl Iterator<Item = &IpAddr> {
        self.addresses.iter()
    }

    /// The same addresses with `primary` as the primary ones.
    pub fn with_primary(self, primary: PrimaryAddresses) -> NodeAddresses {
        NodeAddresses { primary, ..self }
    }
}

impl FromIterator<IpAddr> for NodeAddresses {
    fn from_iter<T: IntoIterator<Item = IpAddr>>(iter: T) -> Self {
        NodeAddresses {
            addresses: iter.into_iter().collect(),
            primary: PrimaryAddresses::default(),
        }
    }
}

impl From<BTreeSet<IpAddr>> for NodeAddresses {
    fn from(addresses: BTreeSet<IpAddr>) -> Self {
        NodeAddresses {
            addresses,
            primary: PrimaryAddresses::default(),
        }
    }
}
