//! Destinations (real servers): where IPVS sends the connections of a service.

use std::net::IpAddr;

use crate::{Family, Stats};

/// How packets reach a destination (`IP_VS_CONN_F_FWD_MASK` bits of the connection flags).
/// Tunnel settings belong to the tunnel variant: a destination has them exactly when it is
/// tunnelled, so what is written reads back the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
}

/// Encapsulation of a tunnelling destination, `IP_VS_CONN_F_TUNNEL_TYPE_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
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

/// Tunnel checksum options, `IP_VS_TUNNEL_ENCAP_FLAG_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TunnelFlags(pub u16);

impl TunnelFlags {
    /// `IP_VS_TUNNEL_ENCAP_FLAG_NOCSUM`: no checksum.
    pub const NOCSUM: TunnelFlags = TunnelFlags(0x0000);
    /// `IP_VS_TUNNEL_ENCAP_FLAG_CSUM`: checksum.
    pub const CSUM: TunnelFlags = TunnelFlags(0x0001);
    /// `IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM`: remote checksum offload.
    pub const REMCSUM: TunnelFlags = TunnelFlags(0x0002);
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
    /// Active connections (read only).
    pub active_connections: u32,
    /// Inactive connections (read only).
    pub inactive_connections: u32,
    /// Persistent connection templates (read only).
    pub persistent_connections: u32,
    /// Counters (read only).
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
