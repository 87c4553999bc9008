//! The service nest, `IPVS_CMD_ATTR_SERVICE` (`IPVS_SVC_ATTR_*`), and its conversions to and
//! from [`ServiceKey`] and [`Service`].
//!
//! Reading is strict about what identifies a service (one without family or address is an
//! error naming the missing attribute) and lenient about the rest (a missing counter reads as
//! 0), because the identity is what callers act on.

use netlink_packet_core::{
    emit_u16, emit_u16_be, emit_u32, parse_u16, parse_u16_be, parse_u32, DecodeError, DefaultNla,
    Emitable, ErrorContext, Nla, NlaBuffer, Parseable, NLA_F_NESTED,
};

use super::nla::{emit_string, parse_c_string, InetAddr};
use super::parse_nlas;
use super::stats::{stats_of, Stats64Attr, StatsAttr};
use crate::{Family, Protocol, Service, ServiceFlags, ServiceKey};

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

/// `IPVS_SVC_ATTR_AF`.
pub const IPVS_SVC_ATTR_AF: u16 = 1;
/// `IPVS_SVC_ATTR_PROTOCOL`.
pub const IPVS_SVC_ATTR_PROTOCOL: u16 = 2;
/// `IPVS_SVC_ATTR_ADDR`.
pub const IPVS_SVC_ATTR_ADDR: u16 = 3;
/// `IPVS_SVC_ATTR_PORT`.
pub const IPVS_SVC_ATTR_PORT: u16 = 4;
/// `IPVS_SVC_ATTR_FWMARK`.
pub const IPVS_SVC_ATTR_FWMARK: u16 = 5;
/// `IPVS_SVC_ATTR_SCHED_NAME`.
pub const IPVS_SVC_ATTR_SCHED_NAME: u16 = 6;
/// `IPVS_SVC_ATTR_FLAGS`.
pub const IPVS_SVC_ATTR_FLAGS: u16 = 7;
/// `IPVS_SVC_ATTR_TIMEOUT`.
pub const IPVS_SVC_ATTR_TIMEOUT: u16 = 8;
/// `IPVS_SVC_ATTR_NETMASK`.
pub const IPVS_SVC_ATTR_NETMASK: u16 = 9;
/// `IPVS_SVC_ATTR_STATS`.
pub const IPVS_SVC_ATTR_STATS: u16 = 10;
/// `IPVS_SVC_ATTR_PE_NAME`.
pub const IPVS_SVC_ATTR_PE_NAME: u16 = 11;
/// `IPVS_SVC_ATTR_STATS64`: 12, not 11 (that is the PE name).
pub const IPVS_SVC_ATTR_STATS64: u16 = 12;

/// `struct ip_vs_flags`: the flags to set and the mask of flags the request speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SchedFlagsNla {
    /// Flag bits.
    pub flags: u32,
    /// Which bits of `flags` count.
    pub mask: u32,
}

/// Service attributes, `IPVS_SVC_ATTR_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SvcAttr {
    /// `IPVS_SVC_ATTR_AF` (u16): `AF_INET` or `AF_INET6`.
    Af(u16),
    /// `IPVS_SVC_ATTR_PROTOCOL` (u16): IP protocol number.
    Protocol(u16),
    /// `IPVS_SVC_ATTR_ADDR` (`union nf_inet_addr`).
    Addr(InetAddr),
    /// `IPVS_SVC_ATTR_PORT` (big-endian u16).
    Port(u16),
    /// `IPVS_SVC_ATTR_FWMARK` (u32).
    Fwmark(u32),
    /// `IPVS_SVC_ATTR_SCHED_NAME` (NUL-terminated string).
    SchedName(String),
    /// `IPVS_SVC_ATTR_FLAGS` (`struct ip_vs_flags`).
    Flags(SchedFlagsNla),
    /// `IPVS_SVC_ATTR_TIMEOUT` (u32 seconds).
    Timeout(u32),
    /// `IPVS_SVC_ATTR_NETMASK` (`__be32`), kept as the four bytes read in host order: for IPv4
    /// the mask in network order (`ff ff ff 00` for /24), for IPv6 the prefix length as a host
    /// u32 (see [`netmask_to_wire`]).
    Netmask(u32),
    /// `IPVS_SVC_ATTR_STATS` (nested, 32-bit counters).
    Stats(Vec<StatsAttr>),
    /// `IPVS_SVC_ATTR_PE_NAME` (NUL-terminated string).
    PeName(String),
    /// `IPVS_SVC_ATTR_STATS64` (nested, 64-bit counters).
    Stats64(Vec<Stats64Attr>),
    /// An attribute this crate does not know, kept as sent.
    Other(DefaultNla),
}

impl Nla for SvcAttr {
    fn value_len(&self) -> usize {
        match self {
            SvcAttr::Af(_) | SvcAttr::Protocol(_) | SvcAttr::Port(_) => 2,
            SvcAttr::Addr(_) => 16,
            SvcAttr::Fwmark(_) | SvcAttr::Timeout(_) | SvcAttr::Netmask(_) => 4,
            SvcAttr::SchedName(s) | SvcAttr::PeName(s) => s.len() + 1,
            SvcAttr::Flags(_) => 8,
            SvcAttr::Stats(a) => a.as_slice().buffer_len(),
            SvcAttr::Stats64(a) => a.as_slice().buffer_len(),
            SvcAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            SvcAttr::Af(_) => IPVS_SVC_ATTR_AF,
            SvcAttr::Protocol(_) => IPVS_SVC_ATTR_PROTOCOL,
            SvcAttr::Addr(_) => IPVS_SVC_ATTR_ADDR,
            SvcAttr::Port(_) => IPVS_SVC_ATTR_PORT,
            SvcAttr::Fwmark(_) => IPVS_SVC_ATTR_FWMARK,
            SvcAttr::SchedName(_) => IPVS_SVC_ATTR_SCHED_NAME,
            SvcAttr::Flags(_) => IPVS_SVC_ATTR_FLAGS,
            SvcAttr::Timeout(_) => IPVS_SVC_ATTR_TIMEOUT,
            SvcAttr::Netmask(_) => IPVS_SVC_ATTR_NETMASK,
            SvcAttr::Stats(_) => IPVS_SVC_ATTR_STATS | NLA_F_NESTED,
            SvcAttr::PeName(_) => IPVS_SVC_ATTR_PE_NAME,
            SvcAttr::Stats64(_) => IPVS_SVC_ATTR_STATS64 | NLA_F_NESTED,
            SvcAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            SvcAttr::Af(v) | SvcAttr::Protocol(v) => emit_u16(buffer, *v).expect("2 bytes"),
            SvcAttr::Port(v) => emit_u16_be(buffer, *v).expect("2 bytes"),
            SvcAttr::Addr(a) => buffer[..16].copy_from_slice(&a.0),
            SvcAttr::Fwmark(v) | SvcAttr::Timeout(v) | SvcAttr::Netmask(v) => {
                emit_u32(buffer, *v).expect("4 bytes")
            }
            SvcAttr::SchedName(s) | SvcAttr::PeName(s) => emit_string(buffer, s),
            SvcAttr::Flags(f) => {
                emit_u32(&mut buffer[..4], f.flags).expect("4 bytes");
                emit_u32(&mut buffer[4..8], f.mask).expect("4 bytes");
            }
            SvcAttr::Stats(a) => a.as_slice().emit(buffer),
            SvcAttr::Stats64(a) => a.as_slice().emit(buffer),
            SvcAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for SvcAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<SvcAttr, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            IPVS_SVC_ATTR_AF => SvcAttr::Af(parse_u16(v).context("IPVS_SVC_ATTR_AF")?),
            IPVS_SVC_ATTR_PROTOCOL => {
                SvcAttr::Protocol(parse_u16(v).context("IPVS_SVC_ATTR_PROTOCOL")?)
            }
            IPVS_SVC_ATTR_ADDR => SvcAttr::Addr(InetAddr::parse(v).context("IPVS_SVC_ATTR_ADDR")?),
            IPVS_SVC_ATTR_PORT => SvcAttr::Port(parse_u16_be(v).context("IPVS_SVC_ATTR_PORT")?),
            IPVS_SVC_ATTR_FWMARK => SvcAttr::Fwmark(parse_u32(v).context("IPVS_SVC_ATTR_FWMARK")?),
            IPVS_SVC_ATTR_SCHED_NAME => {
                SvcAttr::SchedName(parse_c_string(v).context("IPVS_SVC_ATTR_SCHED_NAME")?)
            }
            IPVS_SVC_ATTR_FLAGS => {
                if v.len() != 8 {
                    return Err(DecodeError::from(format!(
                        "IPVS_SVC_ATTR_FLAGS: {} bytes, expected 8",
                        v.len()
                    )));
                }
                SvcAttr::Flags(SchedFlagsNla {
                    flags: parse_u32(&v[..4]).context("IPVS_SVC_ATTR_FLAGS")?,
                    mask: parse_u32(&v[4..]).context("IPVS_SVC_ATTR_FLAGS")?,
                })
            }
            IPVS_SVC_ATTR_TIMEOUT => {
                SvcAttr::Timeout(parse_u32(v).context("IPVS_SVC_ATTR_TIMEOUT")?)
            }
            IPVS_SVC_ATTR_NETMASK => {
                SvcAttr::Netmask(parse_u32(v).context("IPVS_SVC_ATTR_NETMASK")?)
            }
            IPVS_SVC_ATTR_STATS => SvcAttr::Stats(parse_nlas(v, "IPVS_SVC_ATTR_STATS", |n| {
                StatsAttr::parse(n)
            })?),
            IPVS_SVC_ATTR_PE_NAME => {
                SvcAttr::PeName(parse_c_string(v).context("IPVS_SVC_ATTR_PE_NAME")?)
            }
            IPVS_SVC_ATTR_STATS64 => {
                SvcAttr::Stats64(parse_nlas(v, "IPVS_SVC_ATTR_STATS64", |n| {
                    Stats64Attr::parse(n)
                })?)
            }
            _ => SvcAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

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
impl From<&ServiceKey> for Vec<SvcAttr> {
    fn from(key: &ServiceKey) -> Vec<SvcAttr> {
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
}

/// Every attribute of a service a new or set command needs: the key, scheduler, flags (with a
/// full mask, so the kernel takes exactly these flags; never `HASHED`), timeout, netmask and the
/// PE name when there is one. The kernel refuses `NEW_SERVICE` unless all four settings are
/// present. Counters are never sent.
impl From<&Service> for Vec<SvcAttr> {
    fn from(service: &Service) -> Vec<SvcAttr> {
        let mut attrs = Vec::from(&service.key);
        attrs.push(SvcAttr::SchedName(service.scheduler.clone()));
        if let Some(pe) = &service.persistence_engine {
            attrs.push(SvcAttr::PeName(pe.clone()));
        }
        // HASHED is the kernel's own bookkeeping: a new service that arrives with it set is never
        // put in the lookup table (ip_vs_svc_hash refuses "already hashed" entries).
        attrs.push(SvcAttr::Flags(SchedFlagsNla {
            flags: service.flags.difference(ServiceFlags::HASHED).bits(),
            mask: u32::MAX,
        }));
        attrs.push(SvcAttr::Timeout(service.timeout));
        attrs.push(SvcAttr::Netmask(netmask_to_wire(
            service.key.family(),
            service.netmask,
        )));
        attrs
    }
}

pub(crate) fn missing(what: &str, attr: &str) -> DecodeError {
    DecodeError::from(format!("{what} without {attr}"))
}

/// The key of a service: its family and either its firewall mark or its address, protocol and
/// port. This reads even when the service's other attributes do not, which is how a dump names
/// an entry it cannot read.
impl TryFrom<&[SvcAttr]> for ServiceKey {
    type Error = DecodeError;

    fn try_from(attrs: &[SvcAttr]) -> Result<ServiceKey, DecodeError> {
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
        let af = af.ok_or_else(|| missing("service", "IPVS_SVC_ATTR_AF"))?;
        let family = Family::from_af(af)
            .ok_or_else(|| DecodeError::from(format!("service of unknown family {af}")))?;
        Ok(match fwmark.filter(|m| *m != 0) {
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
        })
    }
}

/// Reads a service from the attributes of a `NEW_SERVICE` dump message.
impl TryFrom<&[SvcAttr]> for Service {
    type Error = DecodeError;

    fn try_from(attrs: &[SvcAttr]) -> Result<Service, DecodeError> {
        let key = ServiceKey::try_from(attrs)?;
        let mut service = Service::new(key, "");
        let mut netmask = None;
        let mut stats32 = None;
        let mut stats64 = None;
        for attr in attrs {
            match attr {
                SvcAttr::SchedName(v) => service.scheduler = v.clone(),
                SvcAttr::Flags(f) => {
                    service.flags = ServiceFlags::from_bits_retain(f.flags & f.mask)
                }
                SvcAttr::Timeout(v) => service.timeout = *v,
                SvcAttr::Netmask(v) => netmask = Some(*v),
                SvcAttr::PeName(v) if !v.is_empty() => service.persistence_engine = Some(v.clone()),
                SvcAttr::Stats(v) => stats32 = Some(v.as_slice()),
                SvcAttr::Stats64(v) => stats64 = Some(v.as_slice()),
                _ => {}
            }
        }
        if let Some(wire) = netmask {
            service.netmask = netmask_from_wire(key.family(), wire)?;
        }
        service.stats = stats_of(stats64, stats32);
        Ok(service)
    }
}

#[cfg(test)]
mod tests;
