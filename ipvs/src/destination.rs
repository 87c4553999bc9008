//! Destinations (real servers): where IPVS sends the connections of a service.

use std::fmt;
use std::net::IpAddr;

use crate::{Family, Stats};

/// How packets reach a destination (`IP_VS_CONN_F_FWD_MASK` bits of the connection flags).
/// Tunnel settings belong to the tunnel variant: a destination has them exactly when it is
/// tunnelled, so what is written reads back the same. Displayed with ipvsadm's names (`Masq`,
/// `Local`, `Tunnel`, `Route`), then `Bypass` and `Unknown(N)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ForwardingMethod {
    /// NAT, `IP_VS_CONN_F_MASQ` (ipvsadm `-m`, shown as `Masq`).
    Masquerade,
    /// Local node, `IP_VS_CONN_F_LOCALNODE` (shown as `Local`).
    Local,
    /// IP tunnelling, `IP_VS_CONN_F_TUNNEL` (ipvsadm `-i`, shown as `Tunnel`), with its
    /// encapsulation ([`Tunnel::default`] is the kernel's: IP in IP, no checksum).
    Tunnel(Tunnel),
    /// Direct routing, `IP_VS_CONN_F_DROUTE` (ipvsadm `-g`, shown as `Route`).
    DirectRoute,
    /// `IP_VS_CONN_F_BYPASS` (4): the kernel's value for traffic bypassing IPVS. It masks it
    /// into a destination's method without refusing it, so another program may have set it;
    /// ipvsadm has no name for it.
    Bypass,
    /// Another value of the 3-bit field (5 to 7), which the kernel takes without a meaning,
    /// kept as read.
    Other(u32),
}

impl fmt::Display for ForwardingMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardingMethod::Masquerade => f.write_str("Masq"),
            ForwardingMethod::Local => f.write_str("Local"),
            ForwardingMethod::Tunnel(_) => f.write_str("Tunnel"),
            ForwardingMethod::DirectRoute => f.write_str("Route"),
            ForwardingMethod::Bypass => f.write_str("Bypass"),
            ForwardingMethod::Other(n) => write!(f, "Unknown({n})"),
        }
    }
}

/// Encapsulation of a tunnelling destination, `IP_VS_CONN_F_TUNNEL_TYPE_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[non_exhaustive]
pub enum TunnelType {
    /// IP in IP (0).
    #[default]
    IpIp,
    /// Generic UDP encapsulation (1).
    Gue,
    /// Generic routing encapsulation (2).
    Gre,
    /// A type this crate does not know, kept as sent.
    Other(u8),
}

bitflags::bitflags! {
    /// Tunnel checksum options, `IP_VS_TUNNEL_ENCAP_FLAG_*`. No bit set is
    /// [`TunnelFlags::NOCSUM`]; bits without a name are kept as read
    /// ([`TunnelFlags::from_bits_retain`]). Displayed as `CSUM | REMCSUM` (bitflags' text
    /// format), `NOCSUM` when empty.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
    pub struct TunnelFlags: u16 {
        /// `IP_VS_TUNNEL_ENCAP_FLAG_CSUM`: checksum.
        const CSUM = 0x0001;
        /// `IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM`: remote checksum offload.
        const REMCSUM = 0x0002;
        // The kernel owns the other bits: keep them.
        const _ = !0;
    }
}

impl TunnelFlags {
    /// `IP_VS_TUNNEL_ENCAP_FLAG_NOCSUM`: no checksum (no bit set).
    pub const NOCSUM: TunnelFlags = TunnelFlags::empty();
}

impl fmt::Display for TunnelFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("NOCSUM");
        }
        bitflags::parser::to_writer(self, f)
    }
}

/// Tunnel settings of a destination forwarded by [`ForwardingMethod::Tunnel`]. The default
/// is what the kernel gives a tunnel without settings: IP in IP, port 0, no checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tunnel {
    /// Encapsulation.
    pub kind: TunnelType,
    /// Destination UDP port of GUE encapsulation (big-endian on the wire).
    pub port: u16,
    /// Checksum options.
    pub flags: TunnelFlags,
}

/// A destination of a service, as sent to and read from the kernel.
///
/// Address, port and family identify it within its service; forwarding, weight and thresholds
/// are its settings; the connection counts and [`Destination::stats`] are only observed (read
/// from the kernel, never sent). Comparing what is wanted with what the kernel has is
/// [`Destination::settings_eq`]; `==` compares everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Real server address.
    pub address: IpAddr,
    /// Real server port.
    pub port: u16,
    /// Address family of the destination when it differs from the service's (tunnel and route
    /// can mix families); `None` means the address's own family.
    pub family: Option<Family>,
    /// Forwarding method.
    pub forwarding: ForwardingMethod,
    /// Weight; 0 stops new connections (quiescent).
    pub weight: u32,
    /// Upper connection threshold; 0 means none.
    pub upper_threshold: u32,
    /// Lower connection threshold; 0 means none.
    pub lower_threshold: u32,
    /// Active connections (observed, never sent).
    pub active_connections: u32,
    /// Inactive connections (observed, never sent).
    pub inactive_connections: u32,
    /// Persistent connection templates (observed, never sent).
    pub persistent_connections: u32,
    /// Counters (observed, never sent).
    pub stats: Stats,
}

impl Destination {
    /// A masqueraded destination of weight 1, no thresholds.
    pub fn new(address: IpAddr, port: u16) -> Destination {
        Destination {
            address,
            port,
            family: None,
            forwarding: ForwardingMethod::Masquerade,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
            active_connections: 0,
            inactive_connections: 0,
            persistent_connections: 0,
            stats: Stats::default(),
        }
    }
}

impl Destination {
    /// Whether both destinations have the same settings: forwarding method (with a tunnel's
    /// settings), weight and thresholds. Address, port and family are the identity, compared
    /// apart; connection counts and counters are observed, never compared.
    pub fn settings_eq(&self, other: &Destination) -> bool {
        self.forwarding == other.forwarding
            && self.weight == other.weight
            && self.upper_threshold == other.upper_threshold
            && self.lower_threshold == other.lower_threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_leave_what_is_observed_out() {
        let wanted = Destination::new("10.244.0.1".parse().unwrap(), 80);
        let mut read = wanted.clone();
        read.active_connections = 3;
        read.inactive_connections = 4;
        read.persistent_connections = 5;
        read.stats.connections = 6;
        assert!(read.settings_eq(&wanted));
        read.forwarding = ForwardingMethod::Tunnel(Tunnel::default());
        assert!(!read.settings_eq(&wanted));
    }

    #[test]
    fn methods_and_flags_display() {
        assert_eq!(ForwardingMethod::Masquerade.to_string(), "Masq");
        assert_eq!(ForwardingMethod::Bypass.to_string(), "Bypass");
        assert_eq!(ForwardingMethod::Other(5).to_string(), "Unknown(5)");
        assert_eq!(TunnelFlags::NOCSUM.to_string(), "NOCSUM");
        assert_eq!(
            (TunnelFlags::CSUM | TunnelFlags::REMCSUM).to_string(),
            "CSUM | REMCSUM"
        );
        assert_eq!(TunnelFlags::from_bits_retain(0x10).bits(), 0x10);
    }
}
