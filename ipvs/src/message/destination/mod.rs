//! The destination nest, `IPVS_CMD_ATTR_DEST` (`IPVS_DEST_ATTR_*`), and its conversions to and
//! from [`Destination`].
//!
//! A destination command names its service in a second nest (`IPVS_CMD_ATTR_SERVICE`, see
//! [`super::service`]); a destination's address reads with its own family attribute, or its
//! service's when the kernel leaves it out.

use std::net::IpAddr;

use netlink_packet_core::{
    emit_u16, emit_u16_be, emit_u32, parse_u16, parse_u16_be, parse_u32, parse_u8, DecodeError,
    DefaultNla, Emitable, ErrorContext, Nla, NlaBuffer, Parseable, NLA_F_NESTED,
};

use super::nla::InetAddr;
use super::parse_nlas;
use super::service::missing;
use super::stats::{stats_of, Stats64Attr, StatsAttr};
use crate::{Destination, Family, ForwardingMethod, Tunnel, TunnelFlags, TunnelType};

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
/// `IP_VS_CONN_F_BYPASS`: the kernel's value for connections to a cache bypassing IPVS; it
/// masks it into a destination's method without refusing it.
pub const IP_VS_CONN_F_BYPASS: u32 = 0x0004;

/// `IP_VS_CONN_F_TUNNEL_TYPE_IPIP`.
pub const IP_VS_CONN_F_TUNNEL_TYPE_IPIP: u8 = 0;
/// `IP_VS_CONN_F_TUNNEL_TYPE_GUE`.
pub const IP_VS_CONN_F_TUNNEL_TYPE_GUE: u8 = 1;
/// `IP_VS_CONN_F_TUNNEL_TYPE_GRE`.
pub const IP_VS_CONN_F_TUNNEL_TYPE_GRE: u8 = 2;

/// `IPVS_DEST_ATTR_ADDR`.
pub const IPVS_DEST_ATTR_ADDR: u16 = 1;
/// `IPVS_DEST_ATTR_PORT`.
pub const IPVS_DEST_ATTR_PORT: u16 = 2;
/// `IPVS_DEST_ATTR_FWD_METHOD`.
pub const IPVS_DEST_ATTR_FWD_METHOD: u16 = 3;
/// `IPVS_DEST_ATTR_WEIGHT`.
pub const IPVS_DEST_ATTR_WEIGHT: u16 = 4;
/// `IPVS_DEST_ATTR_U_THRESH`.
pub const IPVS_DEST_ATTR_U_THRESH: u16 = 5;
/// `IPVS_DEST_ATTR_L_THRESH`.
pub const IPVS_DEST_ATTR_L_THRESH: u16 = 6;
/// `IPVS_DEST_ATTR_ACTIVE_CONNS`.
pub const IPVS_DEST_ATTR_ACTIVE_CONNS: u16 = 7;
/// `IPVS_DEST_ATTR_INACT_CONNS`.
pub const IPVS_DEST_ATTR_INACT_CONNS: u16 = 8;
/// `IPVS_DEST_ATTR_PERSIST_CONNS`.
pub const IPVS_DEST_ATTR_PERSIST_CONNS: u16 = 9;
/// `IPVS_DEST_ATTR_STATS`.
pub const IPVS_DEST_ATTR_STATS: u16 = 10;
/// `IPVS_DEST_ATTR_ADDR_FAMILY`.
pub const IPVS_DEST_ATTR_ADDR_FAMILY: u16 = 11;
/// `IPVS_DEST_ATTR_STATS64`.
pub const IPVS_DEST_ATTR_STATS64: u16 = 12;
/// `IPVS_DEST_ATTR_TUN_TYPE`.
pub const IPVS_DEST_ATTR_TUN_TYPE: u16 = 13;
/// `IPVS_DEST_ATTR_TUN_PORT`.
pub const IPVS_DEST_ATTR_TUN_PORT: u16 = 14;
/// `IPVS_DEST_ATTR_TUN_FLAGS`.
pub const IPVS_DEST_ATTR_TUN_FLAGS: u16 = 15;

/// Destination attributes, `IPVS_DEST_ATTR_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DestAttr {
    /// `IPVS_DEST_ATTR_ADDR` (`union nf_inet_addr`).
    Addr(InetAddr),
    /// `IPVS_DEST_ATTR_PORT` (big-endian u16).
    Port(u16),
    /// `IPVS_DEST_ATTR_FWD_METHOD` (u32, `IP_VS_CONN_F_*` forwarding bits).
    FwdMethod(u32),
    /// `IPVS_DEST_ATTR_WEIGHT` (u32; the kernel takes it as a signed int).
    Weight(u32),
    /// `IPVS_DEST_ATTR_U_THRESH` (u32).
    UThresh(u32),
    /// `IPVS_DEST_ATTR_L_THRESH` (u32).
    LThresh(u32),
    /// `IPVS_DEST_ATTR_ACTIVE_CONNS` (u32).
    ActiveConns(u32),
    /// `IPVS_DEST_ATTR_INACT_CONNS` (u32).
    InactConns(u32),
    /// `IPVS_DEST_ATTR_PERSIST_CONNS` (u32).
    PersistConns(u32),
    /// `IPVS_DEST_ATTR_STATS` (nested, 32-bit counters).
    Stats(Vec<StatsAttr>),
    /// `IPVS_DEST_ATTR_ADDR_FAMILY` (u16).
    AddrFamily(u16),
    /// `IPVS_DEST_ATTR_STATS64` (nested, 64-bit counters).
    Stats64(Vec<Stats64Attr>),
    /// `IPVS_DEST_ATTR_TUN_TYPE` (u8).
    TunType(u8),
    /// `IPVS_DEST_ATTR_TUN_PORT` (big-endian u16).
    TunPort(u16),
    /// `IPVS_DEST_ATTR_TUN_FLAGS` (u16).
    TunFlags(u16),
    /// An attribute this crate does not know, kept as sent.
    Other(DefaultNla),
}

impl Nla for DestAttr {
    fn value_len(&self) -> usize {
        match self {
            DestAttr::Addr(_) => 16,
            DestAttr::Port(_) | DestAttr::AddrFamily(_) | DestAttr::TunPort(_) => 2,
            DestAttr::TunFlags(_) => 2,
            DestAttr::TunType(_) => 1,
            DestAttr::FwdMethod(_)
            | DestAttr::Weight(_)
            | DestAttr::UThresh(_)
            | DestAttr::LThresh(_)
            | DestAttr::ActiveConns(_)
            | DestAttr::InactConns(_)
            | DestAttr::PersistConns(_) => 4,
            DestAttr::Stats(a) => a.as_slice().buffer_len(),
            DestAttr::Stats64(a) => a.as_slice().buffer_len(),
            DestAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DestAttr::Addr(_) => IPVS_DEST_ATTR_ADDR,
            DestAttr::Port(_) => IPVS_DEST_ATTR_PORT,
            DestAttr::FwdMethod(_) => IPVS_DEST_ATTR_FWD_METHOD,
            DestAttr::Weight(_) => IPVS_DEST_ATTR_WEIGHT,
            DestAttr::UThresh(_) => IPVS_DEST_ATTR_U_THRESH,
            DestAttr::LThresh(_) => IPVS_DEST_ATTR_L_THRESH,
            DestAttr::ActiveConns(_) => IPVS_DEST_ATTR_ACTIVE_CONNS,
            DestAttr::InactConns(_) => IPVS_DEST_ATTR_INACT_CONNS,
            DestAttr::PersistConns(_) => IPVS_DEST_ATTR_PERSIST_CONNS,
            DestAttr::Stats(_) => IPVS_DEST_ATTR_STATS | NLA_F_NESTED,
            DestAttr::AddrFamily(_) => IPVS_DEST_ATTR_ADDR_FAMILY,
            DestAttr::Stats64(_) => IPVS_DEST_ATTR_STATS64 | NLA_F_NESTED,
            DestAttr::TunType(_) => IPVS_DEST_ATTR_TUN_TYPE,
            DestAttr::TunPort(_) => IPVS_DEST_ATTR_TUN_PORT,
            DestAttr::TunFlags(_) => IPVS_DEST_ATTR_TUN_FLAGS,
            DestAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            DestAttr::Addr(a) => buffer[..16].copy_from_slice(&a.0),
            DestAttr::Port(v) | DestAttr::TunPort(v) => emit_u16_be(buffer, *v).expect("2 bytes"),
            DestAttr::AddrFamily(v) | DestAttr::TunFlags(v) => {
                emit_u16(buffer, *v).expect("2 bytes")
            }
            DestAttr::TunType(v) => buffer[0] = *v,
            DestAttr::FwdMethod(v)
            | DestAttr::Weight(v)
            | DestAttr::UThresh(v)
            | DestAttr::LThresh(v)
            | DestAttr::ActiveConns(v)
            | DestAttr::InactConns(v)
            | DestAttr::PersistConns(v) => emit_u32(buffer, *v).expect("4 bytes"),
            DestAttr::Stats(a) => a.as_slice().emit(buffer),
            DestAttr::Stats64(a) => a.as_slice().emit(buffer),
            DestAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DestAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<DestAttr, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            IPVS_DEST_ATTR_ADDR => {
                DestAttr::Addr(InetAddr::parse(v).context("IPVS_DEST_ATTR_ADDR")?)
            }
            IPVS_DEST_ATTR_PORT => DestAttr::Port(parse_u16_be(v).context("IPVS_DEST_ATTR_PORT")?),
            IPVS_DEST_ATTR_FWD_METHOD => {
                DestAttr::FwdMethod(parse_u32(v).context("IPVS_DEST_ATTR_FWD_METHOD")?)
            }
            IPVS_DEST_ATTR_WEIGHT => {
                DestAttr::Weight(parse_u32(v).context("IPVS_DEST_ATTR_WEIGHT")?)
            }
            IPVS_DEST_ATTR_U_THRESH => {
                DestAttr::UThresh(parse_u32(v).context("IPVS_DEST_ATTR_U_THRESH")?)
            }
            IPVS_DEST_ATTR_L_THRESH => {
                DestAttr::LThresh(parse_u32(v).context("IPVS_DEST_ATTR_L_THRESH")?)
            }
            IPVS_DEST_ATTR_ACTIVE_CONNS => {
                DestAttr::ActiveConns(parse_u32(v).context("IPVS_DEST_ATTR_ACTIVE_CONNS")?)
            }
            IPVS_DEST_ATTR_INACT_CONNS => {
                DestAttr::InactConns(parse_u32(v).context("IPVS_DEST_ATTR_INACT_CONNS")?)
            }
            IPVS_DEST_ATTR_PERSIST_CONNS => {
                DestAttr::PersistConns(parse_u32(v).context("IPVS_DEST_ATTR_PERSIST_CONNS")?)
            }
            IPVS_DEST_ATTR_STATS => DestAttr::Stats(parse_nlas(v, "IPVS_DEST_ATTR_STATS", |n| {
                StatsAttr::parse(n)
            })?),
            IPVS_DEST_ATTR_ADDR_FAMILY => {
                DestAttr::AddrFamily(parse_u16(v).context("IPVS_DEST_ATTR_ADDR_FAMILY")?)
            }
            IPVS_DEST_ATTR_STATS64 => {
                DestAttr::Stats64(parse_nlas(v, "IPVS_DEST_ATTR_STATS64", |n| {
                    Stats64Attr::parse(n)
                })?)
            }
            IPVS_DEST_ATTR_TUN_TYPE => {
                DestAttr::TunType(parse_u8(v).context("IPVS_DEST_ATTR_TUN_TYPE")?)
            }
            IPVS_DEST_ATTR_TUN_PORT => {
                DestAttr::TunPort(parse_u16_be(v).context("IPVS_DEST_ATTR_TUN_PORT")?)
            }
            IPVS_DEST_ATTR_TUN_FLAGS => {
                DestAttr::TunFlags(parse_u16(v).context("IPVS_DEST_ATTR_TUN_FLAGS")?)
            }
            _ => DestAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl From<TunnelType> for u8 {
    fn from(t: TunnelType) -> u8 {
        match t {
            TunnelType::IpIp => IP_VS_CONN_F_TUNNEL_TYPE_IPIP,
            TunnelType::Gue => IP_VS_CONN_F_TUNNEL_TYPE_GUE,
            TunnelType::Gre => IP_VS_CONN_F_TUNNEL_TYPE_GRE,
            TunnelType::Other(n) => n,
        }
    }
}

impl From<u8> for TunnelType {
    fn from(n: u8) -> TunnelType {
        match n {
            IP_VS_CONN_F_TUNNEL_TYPE_IPIP => TunnelType::IpIp,
            IP_VS_CONN_F_TUNNEL_TYPE_GUE => TunnelType::Gue,
            IP_VS_CONN_F_TUNNEL_TYPE_GRE => TunnelType::Gre,
            other => TunnelType::Other(other),
        }
    }
}

/// The `IPVS_DEST_ATTR_FWD_METHOD` value of a method (its tunnel settings travel apart).
impl From<ForwardingMethod> for u32 {
    fn from(f: ForwardingMethod) -> u32 {
        match f {
            ForwardingMethod::Masquerade => IP_VS_CONN_F_MASQ,
            ForwardingMethod::Local => IP_VS_CONN_F_LOCALNODE,
            ForwardingMethod::Tunnel(_) => IP_VS_CONN_F_TUNNEL,
            ForwardingMethod::DirectRoute => IP_VS_CONN_F_DROUTE,
            ForwardingMethod::Bypass => IP_VS_CONN_F_BYPASS,
            ForwardingMethod::Other(n) => n & IP_VS_CONN_F_FWD_MASK,
        }
    }
}

/// The attributes identifying a destination (family, address, port): what delete carries.
pub fn dest_key_attrs(dest: &Destination) -> Vec<DestAttr> {
    let family = dest.family.unwrap_or_else(|| Family::of(&dest.address));
    vec![
        DestAttr::AddrFamily(family.to_af()),
        DestAttr::Addr(InetAddr::from(dest.address)),
        DestAttr::Port(dest.port),
    ]
}

/// Every settable attribute of a destination, for new and set commands: the key, forwarding
/// method, weight, thresholds and the tunnel settings of a tunnel. Connection counts and
/// counters are never sent.
impl From<&Destination> for Vec<DestAttr> {
    fn from(dest: &Destination) -> Vec<DestAttr> {
        let mut attrs = dest_key_attrs(dest);
        attrs.push(DestAttr::FwdMethod(dest.forwarding.into()));
        attrs.push(DestAttr::Weight(dest.weight));
        attrs.push(DestAttr::UThresh(dest.upper_threshold));
        attrs.push(DestAttr::LThresh(dest.lower_threshold));
        if let ForwardingMethod::Tunnel(t) = &dest.forwarding {
            attrs.push(DestAttr::TunType(t.kind.into()));
            attrs.push(DestAttr::TunPort(t.port));
            attrs.push(DestAttr::TunFlags(t.flags.bits()));
        }
        attrs
    }
}

/// The family a destination's address reads with: its own, else its service's.
fn family_of(attrs: &[DestAttr], service_family: Family) -> Result<Family, DecodeError> {
    let af = attrs.iter().find_map(|a| match a {
        DestAttr::AddrFamily(v) => Some(*v),
        _ => None,
    });
    match af {
        Some(af) => Family::from_af(af)
            .ok_or_else(|| DecodeError::from(format!("destination of unknown family {af}"))),
        None => Ok(service_family),
    }
}

/// The address and port of a destination whose other attributes may not read, when its family
/// is known (its own, else `service_family`): how a dump names an entry it cannot read.
pub fn dest_address_from_attrs(
    attrs: &[DestAttr],
    service_family: Family,
) -> Option<(IpAddr, u16)> {
    let family = family_of(attrs, service_family).ok()?;
    let addr = attrs.iter().find_map(|a| match a {
        DestAttr::Addr(v) => Some(*v),
        _ => None,
    })?;
    let port = attrs.iter().find_map(|a| match a {
        DestAttr::Port(v) => Some(*v),
        _ => None,
    })?;
    Some((addr.to_ip(family == Family::Inet6), port))
}

/// Reads a destination from the attributes of a `NEW_DEST` dump message and the family of its
/// service, which reads the address when the kernel leaves out `IPVS_DEST_ATTR_ADDR_FAMILY`
/// (kernels before 4.x).
impl TryFrom<(&[DestAttr], Family)> for Destination {
    type Error = DecodeError;

    fn try_from(
        (attrs, service_family): (&[DestAttr], Family),
    ) -> Result<Destination, DecodeError> {
        let family = family_of(attrs, service_family)?;
        let mut addr = None;
        let mut port = None;
        let mut fwd = None;
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
                DestAttr::Stats(v) => stats32 = Some(v.as_slice()),
                DestAttr::Stats64(v) => stats64 = Some(v.as_slice()),
                DestAttr::TunType(v) => tun_type = Some(*v),
                DestAttr::TunPort(v) => tun_port = *v,
                DestAttr::TunFlags(v) => tun_flags = *v,
                DestAttr::AddrFamily(_) | DestAttr::Other(_) => {}
            }
        }
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
                kind: TunnelType::from(tun_type.unwrap_or(IP_VS_CONN_F_TUNNEL_TYPE_IPIP)),
                port: tun_port,
                flags: TunnelFlags::from_bits_retain(tun_flags),
            }),
            IP_VS_CONN_F_DROUTE => ForwardingMethod::DirectRoute,
            IP_VS_CONN_F_BYPASS => ForwardingMethod::Bypass,
            other => ForwardingMethod::Other(other),
        };
        d.stats = stats_of(stats64, stats32);
        Ok(d)
    }
}

#[cfg(test)]
mod tests;
