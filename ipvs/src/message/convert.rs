//! Conversions between the typed objects of this crate and their attributes.
//!
//! Reading is strict about what identifies an object (a service without family or address is an
//! error naming the missing attribute) and lenient about the rest (a missing counter reads as 0),
//! because the identity is what callers act on.

use std::net::IpAddr;

use netlink_packet_core::DecodeError;

use super::attr::{
    CmdAttr, DaemonAttr, DestAttr, InetAddr, SchedFlagsNla, Stats64Attr, StatsAttr, SvcAttr,
};
use crate::{
    DaemonState, Destination, Family, ForwardingMethod, Info, Protocol, Service, ServiceFlags,
    ServiceKey, Stats, SyncDaemon, Timeouts, Tunnel, TunnelFlags, TunnelType,
};

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u16 = 17;
/// `IPPROTO_SCTP`.
pub const IPPROTO_SCTP: u16 = 132;

/// `IP_VS_CONN_F_FWD_MASK`.
pub const IP_VS_CONN_F_FWD_MASK: u32 = 0x0007;
/// `IP_VS_CONN_F_MASQ`.
pub const IP_VS_CONN_F_MASQ: u32 = 0x0000;
/// `IP_VS_CONN_F_LOCALNODE`.
pub const IP_VS_CONN_F_LOCALNODE: u32 = 0x0001;
/// `IP_VS_CONN_F_TUNNEL`.
pub const IP_VS_CONN_F_TUNNEL: u32 = 0x0002;
/// `IP_VS_CONN_F_DROUTE`.
pub const IP_VS_CONN_F_DROUTE: u32 = 0x0003;

/// `IP_VS_CONN_F_TUNNEL_TYPE_IPIP`.
pub const IP_VS_CONN_F_TUNNEL_TYPE_IPIP: u8 = 0;
/// `IP_VS_CONN_F_TUNNEL_TYPE_GUE`.
pub const IP_VS_CONN_F_TUNNEL_TYPE_GUE: u8 = 1;
/// `IP_VS_CONN_F_TUNNEL_TYPE_GRE`.
pub const IP_VS_CONN_F_TUNNEL_TYPE_GRE: u8 = 2;

/// `IP_VS_STATE_MASTER`.
pub const IP_VS_STATE_MASTER: u32 = 1;
/// `IP_VS_STATE_BACKUP`.
pub const IP_VS_STATE_BACKUP: u32 = 2;

impl Family {
    /// The `AF_*` number of the family.
    pub fn to_af(self) -> u16 {
        match self {
            Family::Inet => AF_INET,
            Family::Inet6 => AF_INET6,
        }
    }

    /// The family of an `AF_*` number, if IPVS supports it.
    pub fn from_af(af: u16) -> Option<Family> {
        match af {
            AF_INET => Some(Family::Inet),
            AF_INET6 => Some(Family::Inet6),
            _ => None,
        }
    }
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u16 {
        match self {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
            Protocol::Sctp => IPPROTO_SCTP,
            Protocol::Other(n) => n,
        }
    }

    /// The protocol of an IP protocol number.
    pub fn from_number(n: u16) -> Protocol {
        match n {
            IPPROTO_TCP => Protocol::Tcp,
            IPPROTO_UDP => Protocol::Udp,
            IPPROTO_SCTP => Protocol::Sctp,
            other => Protocol::Other(other),
        }
    }
}

/// The `IPVS_SVC_ATTR_NETMASK` value of a prefix length: for IPv4 the mask as a `__be32` (its
/// bytes are `ff ff ff 00` for /24), for IPv6 the prefix length itself in host order — the
/// kernel's `ip_vs_genl_parse_service` copies the four bytes into `svc->netmask` either way and
/// IPv6 code compares that field against 128.
pub fn netmask_to_wire(family: Family, prefix: u8) -> u32 {
    match family {
        Family::Inet => {
            let prefix = u32::from(prefix.min(32));
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            u32::from_ne_bytes(mask.to_be_bytes())
        }
        Family::Inet6 => u32::from(prefix.min(128)),
    }
}

/// The prefix length of an `IPVS_SVC_ATTR_NETMASK` value (see [`netmask_to_wire`]). A
/// non-contiguous IPv4 mask, which the kernel accepts, reads as the length of its leading ones.
pub fn netmask_from_wire(family: Family, wire: u32) -> Result<u8, DecodeError> {
    match family {
        Family::Inet => Ok(u32::from_be_bytes(wire.to_ne_bytes()).leading_ones() as u8),
        Family::Inet6 => u8::try_from(wire)
            .ok()
            .filter(|p| *p <= 128)
            .ok_or_else(|| {
                DecodeError::from(format!("IPVS_SVC_ATTR_NETMASK: IPv6 prefix {wire} > 128"))
            }),
    }
}

/// The attributes that identify a service: what get, delete and every destination command
/// carry.
pub fn service_key_attrs(key: &ServiceKey) -> Vec<SvcAttr> {
    match key {
        ServiceKey::Addr {
            address,
            protocol,
            port,
        } => vec![
            SvcAttr::Af(Family::of(address).to_af()),
            SvcAttr::Protocol(protocol.number()),
            SvcAttr::Addr(InetAddr::from(*address)),
            SvcAttr::Port(*port),
        ],
        ServiceKey::FwMark { mark, family } => {
            vec![SvcAttr::Af(family.to_af()), SvcAttr::Fwmark(*mark)]
        }
    }
}

/// Every attribute of a service a new or set command needs: the key, scheduler, flags (with a
/// full mask, so the kernel takes exactly these flags; never `HASHED`), timeout, netmask and the
/// PE name when there is one. The kernel refuses `NEW_SERVICE` unless all four settings are present.
pub fn service_attrs(service: &Service) -> Vec<SvcAttr> {
    let mut attrs = service_key_attrs(&service.key);
    attrs.push(SvcAttr::SchedName(service.scheduler.clone()));
    if let Some(pe) = &service.persistence_engine {
        attrs.push(SvcAttr::PeName(pe.clone()));
    }
    // HASHED is the kernel's own bookkeeping: a new service that arrives with it set is never
    // put in the lookup table (ip_vs_svc_hash refuses "already hashed" entries).
    attrs.push(SvcAttr::Flags(SchedFlagsNla {
        flags: service.flags.difference(ServiceFlags::HASHED).0,
        mask: u32::MAX,
    }));
    attrs.push(SvcAttr::Timeout(service.timeout));
    attrs.push(SvcAttr::Netmask(netmask_to_wire(
        service.key.family(),
        service.netmask,
    )));
    attrs
}

fn missing(what: &str, attr: &str) -> DecodeError {
    DecodeError::from(format!("{what} without {attr}"))
}

/// The key of a service whose other attributes may not read: what identifies it, when the
/// family is known and the identifying attributes are there.
pub fn service_key_from_attrs(attrs: &[SvcAttr]) -> Option<ServiceKey> {
    let mut af = None;
    let mut protocol = None;
    let mut addr = None;
    let mut port = None;
    let mut fwmark = None;
    for attr in attrs {
        match attr {
            SvcAttr::Af(v) => af = Some(*v),
            SvcAttr::Protocol(v) => protocol = Some(*v),
            SvcAttr::Addr(v) => addr = Some(*v),
            SvcAttr::Port(v) => port = Some(*v),
            SvcAttr::Fwmark(v) => fwmark = Some(*v),
            _ => {}
        }
    }
    let family = Family::from_af(af?)?;
    Some(match fwmark.filter(|m| *m != 0) {
        Some(mark) => ServiceKey::FwMark { mark, family },
        None => ServiceKey::Addr {
            address: addr?.to_ip(family == Family::Inet6),
            protocol: Protocol::from_number(protocol?),
            port: port?,
        },
    })
}

/// The address and port of a destination whose other attributes may not read, when its family
/// is known (its own, else `service_family`).
pub fn dest_address_from_attrs(
    attrs: &[DestAttr],
    service_family: Family,
) -> Option<(IpAddr, u16)> {
    let mut af = None;
    let mut addr = None;
    let mut port = None;
    for attr in attrs {
        match attr {
            DestAttr::AddrFamily(v) => af = Some(*v),
            DestAttr::Addr(v) => addr = Some(*v),
            DestAttr::Port(v) => port = Some(*v),
            _ => {}
        }
    }
    let family = match af {
        Some(af) => Family::from_af(af)?,
        None => service_family,
    };
    Some((addr?.to_ip(family == Family::Inet6), port?))
}

/// Reads a service from the attributes of a `NEW_SERVICE` dump message.
pub fn service_from_attrs(attrs: &[SvcAttr]) -> Result<Service, DecodeError> {
    let mut af = None;
    let mut protocol = None;
    let mut addr = None;
    let mut port = None;
    let mut fwmark = None;
    let mut sched = None;
    let mut flags = ServiceFlags::empty();
    let mut timeout = 0;
    let mut netmask = None;
    let mut pe = None;
    let mut stats32 = None;
    let mut stats64 = None;
    for attr in attrs {
        match attr {
            SvcAttr::Af(v) => af = Some(*v),
            SvcAttr::Protocol(v) => protocol = Some(*v),
            SvcAttr::Addr(v) => addr = Some(*v),
            SvcAttr::Port(v) => port = Some(*v),
            SvcAttr::Fwmark(v) => fwmark = Some(*v),
            SvcAttr::SchedName(v) => sched = Some(v.clone()),
            SvcAttr::Flags(f) => flags = ServiceFlags(f.flags & f.mask),
            SvcAttr::Timeout(v) => timeout = *v,
            SvcAttr::Netmask(v) => netmask = Some(*v),
            SvcAttr::PeName(v) => pe = Some(v.clone()),
            SvcAttr::Stats(v) => stats32 = Some(v),
            SvcAttr::Stats64(v) => stats64 = Some(v),
            SvcAttr::Other(_) => {}
        }
    }
    let af = af.ok_or_else(|| missing("service", "IPVS_SVC_ATTR_AF"))?;
    let family = Family::from_af(af)
        .ok_or_else(|| DecodeError::from(format!("service of unknown family {af}")))?;
    let key = match fwmark.filter(|m| *m != 0) {
        Some(mark) => ServiceKey::FwMark { mark, family },
        None => ServiceKey::Addr {
            address: addr
                .ok_or_else(|| missing("service", "IPVS_SVC_ATTR_ADDR"))?
                .to_ip(family == Family::Inet6),
            protocol: Protocol::from_number(
                protocol.ok_or_else(|| missing("service", "IPVS_SVC_ATTR_PROTOCOL"))?,
            ),
            port: port.ok_or_else(|| missing("service", "IPVS_SVC_ATTR_PORT"))?,
        },
    };
    let netmask = match netmask {
        Some(wire) => netmask_from_wire(family, wire)?,
        None => match family {
            Family::Inet => 32,
            Family::Inet6 => 128,
        },
    };
    let stats = match (stats64, stats32) {
        (Some(s), _) => stats_from_attrs64(s),
        (None, Some(s)) => stats_from_attrs32(s),
        (None, None) => Stats::default(),
    };
    Ok(Service {
        key,
        scheduler: sched.unwrap_or_default(),
        flags,
        timeout,
        netmask,
        persistence_engine: pe.filter(|p| !p.is_empty()),
        stats,
    })
}

/// The `IPVS_STATS_ATTR_*` counters, widened to 64 bits.
pub fn stats_from_attrs32(attrs: &[StatsAttr]) -> Stats {
    let mut s = Stats::default();
    for a in attrs {
        match a {
            StatsAttr::Conns(v) => s.connections = u64::from(*v),
            StatsAttr::InPkts(v) => s.packets_in = u64::from(*v),
            StatsAttr::OutPkts(v) => s.packets_out = u64::from(*v),
            StatsAttr::InBytes(v) => s.bytes_in = *v,
            StatsAttr::OutBytes(v) => s.bytes_out = *v,
            StatsAttr::Cps(v) => s.cps = u64::from(*v),
            StatsAttr::InPps(v) => s.packets_in_rate = u64::from(*v),
            StatsAttr::OutPps(v) => s.packets_out_rate = u64::from(*v),
            StatsAttr::InBps(v) => s.bytes_in_rate = u64::from(*v),
            StatsAttr::OutBps(v) => s.bytes_out_rate = u64::from(*v),
            StatsAttr::Other(_) => {}
        }
    }
    s
}

/// The 64-bit `IPVS_STATS_ATTR_*` counters.
pub fn stats_from_attrs64(attrs: &[Stats64Attr]) -> Stats {
    let mut s = Stats::default();
    for a in attrs {
        match a {
            Stats64Attr::Conns(v) => s.connections = *v,
            Stats64Attr::InPkts(v) => s.packets_in = *v,
            Stats64Attr::OutPkts(v) => s.packets_out = *v,
            Stats64Attr::InBytes(v) => s.bytes_in = *v,
            Stats64Attr::OutBytes(v) => s.bytes_out = *v,
            Stats64Attr::Cps(v) => s.cps = *v,
            Stats64Attr::InPps(v) => s.packets_in_rate = *v,
            Stats64Attr::OutPps(v) => s.packets_out_rate = *v,
            Stats64Attr::InBps(v) => s.bytes_in_rate = *v,
            Stats64Attr::OutBps(v) => s.bytes_out_rate = *v,
            Stats64Attr::Other(_) => {}
        }
    }
    s
}

/// The attributes of `stats` as 64-bit counters (what the kernel sends in `STATS64`).
pub fn stats_attrs64(s: &Stats) -> Vec<Stats64Attr> {
    vec![
        Stats64Attr::Conns(s.connections),
        Stats64Attr::InPkts(s.packets_in),
        Stats64Attr::OutPkts(s.packets_out),
        Stats64Attr::InBytes(s.bytes_in),
        Stats64Attr::OutBytes(s.bytes_out),
        Stats64Attr::Cps(s.cps),
        Stats64Attr::InPps(s.packets_in_rate),
        Stats64Attr::OutPps(s.packets_out_rate),
        Stats64Attr::InBps(s.bytes_in_rate),
        Stats64Attr::OutBps(s.bytes_out_rate),
    ]
}

fn fwd_to_wire(f: ForwardingMethod) -> u32 {
    match f {
        ForwardingMethod::Masquerade => IP_VS_CONN_F_MASQ,
        ForwardingMethod::Local => IP_VS_CONN_F_LOCALNODE,
        ForwardingMethod::Tunnel(_) => IP_VS_CONN_F_TUNNEL,
        ForwardingMethod::DirectRoute => IP_VS_CONN_F_DROUTE,
    }
}

fn tunnel_type_to_wire(t: TunnelType) -> u8 {
    match t {
        TunnelType::IpIp => IP_VS_CONN_F_TUNNEL_TYPE_IPIP,
        TunnelType::Gue => IP_VS_CONN_F_TUNNEL_TYPE_GUE,
        TunnelType::Gre => IP_VS_CONN_F_TUNNEL_TYPE_GRE,
        TunnelType::Other(n) => n,
    }
}

fn tunnel_type_from_wire(n: u8) -> TunnelType {
    match n {
        IP_VS_CONN_F_TUNNEL_TYPE_IPIP => TunnelType::IpIp,
        IP_VS_CONN_F_TUNNEL_TYPE_GUE => TunnelType::Gue,
        IP_VS_CONN_F_TUNNEL_TYPE_GRE => TunnelType::Gre,
        other => TunnelType::Other(other),
    }
}

/// The attributes identifying a destination (address, port, family): what delete carries.
pub fn dest_key_attrs(dest: &Destination) -> Vec<DestAttr> {
    let family = dest.family.unwrap_or_else(|| Family::of(&dest.address));
    vec![
        DestAttr::AddrFamily(family.to_af()),
        DestAttr::Addr(InetAddr::from(dest.address)),
        DestAttr::Port(dest.port),
    ]
}

/// Every settable attribute of a destination, for new and set commands.
pub fn dest_attrs(dest: &Destination) -> Vec<DestAttr> {
    let mut attrs = dest_key_attrs(dest);
    attrs.push(DestAttr::FwdMethod(fwd_to_wire(dest.forwarding)));
    attrs.push(DestAttr::Weight(dest.weight));
    attrs.push(DestAttr::UThresh(dest.upper_threshold));
    attrs.push(DestAttr::LThresh(dest.lower_threshold));
    if let ForwardingMethod::Tunnel(t) = &dest.forwarding {
        attrs.push(DestAttr::TunType(tunnel_type_to_wire(t.kind)));
        attrs.push(DestAttr::TunPort(t.port));
        attrs.push(DestAttr::TunFlags(t.flags.0));
    }
    attrs
}

/// Reads a destination from the attributes of a `NEW_DEST` dump message. `service_family` reads
/// the address when the kernel leaves out `IPVS_DEST_ATTR_ADDR_FAMILY` (kernels before 4.x).
pub fn dest_from_attrs(
    attrs: &[DestAttr],
    service_family: Family,
) -> Result<Destination, DecodeError> {
    let mut addr = None;
    let mut port = None;
    let mut fwd = None;
    let mut af = None;
    let mut tun_type = None;
    let mut tun_port = 0;
    let mut tun_flags = 0;
    let mut stats32 = None;
    let mut stats64 = None;
    let mut d = Destination::new(IpAddr::from([0, 0, 0, 0]), 0);
    for attr in attrs {
        match attr {
            DestAttr::Addr(v) => addr = Some(*v),
            DestAttr::Port(v) => port = Some(*v),
            DestAttr::FwdMethod(v) => fwd = Some(*v),
            DestAttr::Weight(v) => d.weight = *v,
            DestAttr::UThresh(v) => d.upper_threshold = *v,
            DestAttr::LThresh(v) => d.lower_threshold = *v,
            DestAttr::ActiveConns(v) => d.active_connections = *v,
            DestAttr::InactConns(v) => d.inactive_connections = *v,
            DestAttr::PersistConns(v) => d.persistent_connections = *v,
            DestAttr::Stats(v) => stats32 = Some(v),
            DestAttr::AddrFamily(v) => af = Some(*v),
            DestAttr::Stats64(v) => stats64 = Some(v),
            DestAttr::TunType(v) => tun_type = Some(*v),
            DestAttr::TunPort(v) => tun_port = *v,
            DestAttr::TunFlags(v) => tun_flags = *v,
            DestAttr::Other(_) => {}
        }
    }
    let family = match af {
        Some(af) => Family::from_af(af)
            .ok_or_else(|| DecodeError::from(format!("destination of unknown family {af}")))?,
        None => service_family,
    };
    d.address = addr
        .ok_or_else(|| missing("destination", "IPVS_DEST_ATTR_ADDR"))?
        .to_ip(family == Family::Inet6);
    d.port = port.ok_or_else(|| missing("destination", "IPVS_DEST_ATTR_PORT"))?;
    let fwd = fwd.ok_or_else(|| missing("destination", "IPVS_DEST_ATTR_FWD_METHOD"))?;
    d.forwarding = match fwd & IP_VS_CONN_F_FWD_MASK {
        IP_VS_CONN_F_MASQ => ForwardingMethod::Masquerade,
        IP_VS_CONN_F_LOCALNODE => ForwardingMethod::Local,
        // A kernel too old to send the settings has only IP in IP tunnels.
        IP_VS_CONN_F_TUNNEL => ForwardingMethod::Tunnel(Tunnel {
            kind: tunnel_type_from_wire(tun_type.unwrap_or(IP_VS_CONN_F_TUNNEL_TYPE_IPIP)),
            port: tun_port,
            flags: TunnelFlags(tun_flags),
        }),
        IP_VS_CONN_F_DROUTE => ForwardingMethod::DirectRoute,
        other => {
            return Err(DecodeError::from(format!(
                "IPVS_DEST_ATTR_FWD_METHOD: unknown forwarding method {other}"
            )))
        }
    };
    d.stats = match (stats64, stats32) {
        (Some(s), _) => stats_from_attrs64(s),
        (None, Some(s)) => stats_from_attrs32(s),
        (None, None) => Stats::default(),
    };
    Ok(d)
}

fn state_to_wire(state: DaemonState) -> u32 {
    match state {
        DaemonState::Master => IP_VS_STATE_MASTER,
        DaemonState::Backup => IP_VS_STATE_BACKUP,
    }
}

/// The attributes of a sync daemon to start.
pub fn daemon_attrs(d: &SyncDaemon) -> Vec<DaemonAttr> {
    let mut attrs = vec![
        DaemonAttr::State(state_to_wire(d.state)),
        DaemonAttr::McastIfn(d.interface.clone()),
        DaemonAttr::SyncId(d.sync_id),
    ];
    if let Some(v) = d.max_len {
        attrs.push(DaemonAttr::SyncMaxLen(v));
    }
    match d.group {
        Some(IpAddr::V4(a)) => attrs.push(DaemonAttr::McastGroup(a)),
        Some(IpAddr::V6(a)) => attrs.push(DaemonAttr::McastGroup6(a)),
        None => {}
    }
    if let Some(v) = d.port {
        attrs.push(DaemonAttr::McastPort(v));
    }
    if let Some(v) = d.ttl {
        attrs.push(DaemonAttr::McastTtl(v));
    }
    attrs
}

/// The attribute naming the daemon to stop.
pub fn daemon_state_attrs(state: DaemonState) -> Vec<DaemonAttr> {
    vec![DaemonAttr::State(state_to_wire(state))]
}

/// Reads a sync daemon from the attributes of a `NEW_DAEMON` dump message.
pub fn daemon_from_attrs(attrs: &[DaemonAttr]) -> Result<SyncDaemon, DecodeError> {
    let mut state = None;
    let mut d = SyncDaemon {
        state: DaemonState::Master,
        interface: String::new(),
        sync_id: 0,
        max_len: None,
        group: None,
        port: None,
        ttl: None,
    };
    for attr in attrs {
        match attr {
            DaemonAttr::State(v) => state = Some(*v),
            DaemonAttr::McastIfn(v) => d.interface = v.clone(),
            DaemonAttr::SyncId(v) => d.sync_id = *v,
            DaemonAttr::SyncMaxLen(v) => d.max_len = Some(*v),
            DaemonAttr::McastGroup(v) => d.group = Some(IpAddr::V4(*v)),
            DaemonAttr::McastGroup6(v) => d.group = Some(IpAddr::V6(*v)),
            DaemonAttr::McastPort(v) => d.port = Some(*v),
            DaemonAttr::McastTtl(v) => d.ttl = Some(*v),
            DaemonAttr::Other(_) => {}
        }
    }
    d.state = match state.ok_or_else(|| missing("sync daemon", "IPVS_DAEMON_ATTR_STATE"))? {
        IP_VS_STATE_MASTER => DaemonState::Master,
        IP_VS_STATE_BACKUP => DaemonState::Backup,
        other => {
            return Err(DecodeError::from(format!(
                "IPVS_DAEMON_ATTR_STATE: unknown state {other}"
            )))
        }
    };
    Ok(d)
}

/// The timeouts to set: only the ones given and non-zero, since the kernel leaves absent ones
/// as they are.
pub fn timeouts_attrs(t: &Timeouts) -> Vec<CmdAttr> {
    let mut attrs = Vec::new();
    if let Some(v) = t.tcp.filter(|v| *v != 0) {
        attrs.push(CmdAttr::TimeoutTcp(v));
    }
    if let Some(v) = t.tcp_fin.filter(|v| *v != 0) {
        attrs.push(CmdAttr::TimeoutTcpFin(v));
    }
    if let Some(v) = t.udp.filter(|v| *v != 0) {
        attrs.push(CmdAttr::TimeoutUdp(v));
    }
    attrs
}

/// Reads the timeouts of a `SET_CONFIG` reply.
pub fn timeouts_from_attrs(attrs: &[CmdAttr]) -> Timeouts {
    let mut t = Timeouts::default();
    for a in attrs {
        match a {
            CmdAttr::TimeoutTcp(v) => t.tcp = Some(*v),
            CmdAttr::TimeoutTcpFin(v) => t.tcp_fin = Some(*v),
            CmdAttr::TimeoutUdp(v) => t.udp = Some(*v),
            _ => {}
        }
    }
    t
}

/// Reads the `SET_INFO` reply.
pub fn info_from_attrs(attrs: &[CmdAttr]) -> Result<Info, DecodeError> {
    let mut version = None;
    let mut size = None;
    for a in attrs {
        match a {
            CmdAttr::InfoVersion(v) => version = Some(*v),
            CmdAttr::InfoConnTabSize(v) => size = Some(*v),
            _ => {}
        }
    }
    Ok(Info {
        version: version.ok_or_else(|| missing("info", "IPVS_INFO_ATTR_VERSION"))?,
        connection_table_size: size
            .ok_or_else(|| missing("info", "IPVS_INFO_ATTR_CONN_TAB_SIZE"))?,
    })
}
