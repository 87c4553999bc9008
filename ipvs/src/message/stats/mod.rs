//! The counters nests, `IPVS_SVC_ATTR_STATS`/`IPVS_DEST_ATTR_STATS` (`IPVS_STATS_ATTR_*`,
//! mostly 32-bit) and `..._STATS64` (the same numbers, all 64-bit), and their conversions to
//! [`Stats`].

use netlink_packet_core::{
    emit_u32, emit_u64, parse_u32, parse_u64, DecodeError, DefaultNla, ErrorContext, Nla,
    NlaBuffer, Parseable,
};

use crate::Stats;

/// `IPVS_STATS_ATTR_CONNS`.
pub const IPVS_STATS_ATTR_CONNS: u16 = 1;
/// `IPVS_STATS_ATTR_INPKTS`.
pub const IPVS_STATS_ATTR_INPKTS: u16 = 2;
/// `IPVS_STATS_ATTR_OUTPKTS`.
pub const IPVS_STATS_ATTR_OUTPKTS: u16 = 3;
/// `IPVS_STATS_ATTR_INBYTES`.
pub const IPVS_STATS_ATTR_INBYTES: u16 = 4;
/// `IPVS_STATS_ATTR_OUTBYTES`.
pub const IPVS_STATS_ATTR_OUTBYTES: u16 = 5;
/// `IPVS_STATS_ATTR_CPS`.
pub const IPVS_STATS_ATTR_CPS: u16 = 6;
/// `IPVS_STATS_ATTR_INPPS`.
pub const IPVS_STATS_ATTR_INPPS: u16 = 7;
/// `IPVS_STATS_ATTR_OUTPPS`.
pub const IPVS_STATS_ATTR_OUTPPS: u16 = 8;
/// `IPVS_STATS_ATTR_INBPS`.
pub const IPVS_STATS_ATTR_INBPS: u16 = 9;
/// `IPVS_STATS_ATTR_OUTBPS`.
pub const IPVS_STATS_ATTR_OUTBPS: u16 = 10;

/// Counters of `IPVS_*_ATTR_STATS`, `IPVS_STATS_ATTR_*` with the widths of
/// `struct ip_vs_stats_user`: u32 except the two byte counters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatsAttr {
    /// `IPVS_STATS_ATTR_CONNS` (u32).
    Conns(u32),
    /// `IPVS_STATS_ATTR_INPKTS` (u32).
    InPkts(u32),
    /// `IPVS_STATS_ATTR_OUTPKTS` (u32).
    OutPkts(u32),
    /// `IPVS_STATS_ATTR_INBYTES` (u64).
    InBytes(u64),
    /// `IPVS_STATS_ATTR_OUTBYTES` (u64).
    OutBytes(u64),
    /// `IPVS_STATS_ATTR_CPS` (u32).
    Cps(u32),
    /// `IPVS_STATS_ATTR_INPPS` (u32).
    InPps(u32),
    /// `IPVS_STATS_ATTR_OUTPPS` (u32).
    OutPps(u32),
    /// `IPVS_STATS_ATTR_INBPS` (u32).
    InBps(u32),
    /// `IPVS_STATS_ATTR_OUTBPS` (u32).
    OutBps(u32),
    /// An attribute this crate does not know (`IPVS_STATS_ATTR_PAD` among them), kept as sent.
    Other(DefaultNla),
}

impl Nla for StatsAttr {
    fn value_len(&self) -> usize {
        match self {
            StatsAttr::InBytes(_) | StatsAttr::OutBytes(_) => 8,
            StatsAttr::Other(nla) => nla.value_len(),
            _ => 4,
        }
    }

    fn kind(&self) -> u16 {
        match self {
            StatsAttr::Conns(_) => IPVS_STATS_ATTR_CONNS,
            StatsAttr::InPkts(_) => IPVS_STATS_ATTR_INPKTS,
            StatsAttr::OutPkts(_) => IPVS_STATS_ATTR_OUTPKTS,
            StatsAttr::InBytes(_) => IPVS_STATS_ATTR_INBYTES,
            StatsAttr::OutBytes(_) => IPVS_STATS_ATTR_OUTBYTES,
            StatsAttr::Cps(_) => IPVS_STATS_ATTR_CPS,
            StatsAttr::InPps(_) => IPVS_STATS_ATTR_INPPS,
            StatsAttr::OutPps(_) => IPVS_STATS_ATTR_OUTPPS,
            StatsAttr::InBps(_) => IPVS_STATS_ATTR_INBPS,
            StatsAttr::OutBps(_) => IPVS_STATS_ATTR_OUTBPS,
            StatsAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            StatsAttr::InBytes(v) | StatsAttr::OutBytes(v) => {
                emit_u64(buffer, *v).expect("8 bytes")
            }
            StatsAttr::Conns(v)
            | StatsAttr::InPkts(v)
            | StatsAttr::OutPkts(v)
            | StatsAttr::Cps(v)
            | StatsAttr::InPps(v)
            | StatsAttr::OutPps(v)
            | StatsAttr::InBps(v)
            | StatsAttr::OutBps(v) => emit_u32(buffer, *v).expect("4 bytes"),
            StatsAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for StatsAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<StatsAttr, DecodeError> {
        let v = buf.value();
        let u32_of = |name: &str| parse_u32(v).context(name.to_string());
        Ok(match buf.kind() {
            IPVS_STATS_ATTR_CONNS => StatsAttr::Conns(u32_of("IPVS_STATS_ATTR_CONNS")?),
            IPVS_STATS_ATTR_INPKTS => StatsAttr::InPkts(u32_of("IPVS_STATS_ATTR_INPKTS")?),
            IPVS_STATS_ATTR_OUTPKTS => StatsAttr::OutPkts(u32_of("IPVS_STATS_ATTR_OUTPKTS")?),
            IPVS_STATS_ATTR_INBYTES => {
                StatsAttr::InBytes(parse_u64(v).context("IPVS_STATS_ATTR_INBYTES")?)
            }
            IPVS_STATS_ATTR_OUTBYTES => {
                StatsAttr::OutBytes(parse_u64(v).context("IPVS_STATS_ATTR_OUTBYTES")?)
            }
            IPVS_STATS_ATTR_CPS => StatsAttr::Cps(u32_of("IPVS_STATS_ATTR_CPS")?),
            IPVS_STATS_ATTR_INPPS => StatsAttr::InPps(u32_of("IPVS_STATS_ATTR_INPPS")?),
            IPVS_STATS_ATTR_OUTPPS => StatsAttr::OutPps(u32_of("IPVS_STATS_ATTR_OUTPPS")?),
            IPVS_STATS_ATTR_INBPS => StatsAttr::InBps(u32_of("IPVS_STATS_ATTR_INBPS")?),
            IPVS_STATS_ATTR_OUTBPS => StatsAttr::OutBps(u32_of("IPVS_STATS_ATTR_OUTBPS")?),
            _ => StatsAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// Counters of `IPVS_*_ATTR_STATS64`: the same `IPVS_STATS_ATTR_*` numbers, every one a u64
/// (`struct ip_vs_kstats`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stats64Attr {
    /// `IPVS_STATS_ATTR_CONNS`.
    Conns(u64),
    /// `IPVS_STATS_ATTR_INPKTS`.
    InPkts(u64),
    /// `IPVS_STATS_ATTR_OUTPKTS`.
    OutPkts(u64),
    /// `IPVS_STATS_ATTR_INBYTES`.
    InBytes(u64),
    /// `IPVS_STATS_ATTR_OUTBYTES`.
    OutBytes(u64),
    /// `IPVS_STATS_ATTR_CPS`.
    Cps(u64),
    /// `IPVS_STATS_ATTR_INPPS`.
    InPps(u64),
    /// `IPVS_STATS_ATTR_OUTPPS`.
    OutPps(u64),
    /// `IPVS_STATS_ATTR_INBPS`.
    InBps(u64),
    /// `IPVS_STATS_ATTR_OUTBPS`.
    OutBps(u64),
    /// An attribute this crate does not know (`IPVS_STATS_ATTR_PAD` among them), kept as sent.
    Other(DefaultNla),
}

impl Nla for Stats64Attr {
    fn value_len(&self) -> usize {
        match self {
            Stats64Attr::Other(nla) => nla.value_len(),
            _ => 8,
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Stats64Attr::Conns(_) => IPVS_STATS_ATTR_CONNS,
            Stats64Attr::InPkts(_) => IPVS_STATS_ATTR_INPKTS,
            Stats64Attr::OutPkts(_) => IPVS_STATS_ATTR_OUTPKTS,
            Stats64Attr::InBytes(_) => IPVS_STATS_ATTR_INBYTES,
            Stats64Attr::OutBytes(_) => IPVS_STATS_ATTR_OUTBYTES,
            Stats64Attr::Cps(_) => IPVS_STATS_ATTR_CPS,
            Stats64Attr::InPps(_) => IPVS_STATS_ATTR_INPPS,
            Stats64Attr::OutPps(_) => IPVS_STATS_ATTR_OUTPPS,
            Stats64Attr::InBps(_) => IPVS_STATS_ATTR_INBPS,
            Stats64Attr::OutBps(_) => IPVS_STATS_ATTR_OUTBPS,
            Stats64Attr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Stats64Attr::Conns(v)
            | Stats64Attr::InPkts(v)
            | Stats64Attr::OutPkts(v)
            | Stats64Attr::InBytes(v)
            | Stats64Attr::OutBytes(v)
            | Stats64Attr::Cps(v)
            | Stats64Attr::InPps(v)
            | Stats64Attr::OutPps(v)
            | Stats64Attr::InBps(v)
            | Stats64Attr::OutBps(v) => emit_u64(buffer, *v).expect("8 bytes"),
            Stats64Attr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for Stats64Attr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Stats64Attr, DecodeError> {
        let v = buf.value();
        let u64_of = |name: &str| parse_u64(v).context(name.to_string());
        Ok(match buf.kind() {
            IPVS_STATS_ATTR_CONNS => Stats64Attr::Conns(u64_of("IPVS_STATS_ATTR_CONNS")?),
            IPVS_STATS_ATTR_INPKTS => Stats64Attr::InPkts(u64_of("IPVS_STATS_ATTR_INPKTS")?),
            IPVS_STATS_ATTR_OUTPKTS => Stats64Attr::OutPkts(u64_of("IPVS_STATS_ATTR_OUTPKTS")?),
            IPVS_STATS_ATTR_INBYTES => Stats64Attr::InBytes(u64_of("IPVS_STATS_ATTR_INBYTES")?),
            IPVS_STATS_ATTR_OUTBYTES => Stats64Attr::OutBytes(u64_of("IPVS_STATS_ATTR_OUTBYTES")?),
            IPVS_STATS_ATTR_CPS => Stats64Attr::Cps(u64_of("IPVS_STATS_ATTR_CPS")?),
            IPVS_STATS_ATTR_INPPS => Stats64Attr::InPps(u64_of("IPVS_STATS_ATTR_INPPS")?),
            IPVS_STATS_ATTR_OUTPPS => Stats64Attr::OutPps(u64_of("IPVS_STATS_ATTR_OUTPPS")?),
            IPVS_STATS_ATTR_INBPS => Stats64Attr::InBps(u64_of("IPVS_STATS_ATTR_INBPS")?),
            IPVS_STATS_ATTR_OUTBPS => Stats64Attr::OutBps(u64_of("IPVS_STATS_ATTR_OUTBPS")?),
            _ => Stats64Attr::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl From<&[StatsAttr]> for Stats {
    /// The `IPVS_STATS_ATTR_*` counters, widened to 64 bits; a missing one reads as 0.
    fn from(attrs: &[StatsAttr]) -> Stats {
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
}

impl From<&[Stats64Attr]> for Stats {
    /// The 64-bit `IPVS_STATS_ATTR_*` counters; a missing one reads as 0.
    fn from(attrs: &[Stats64Attr]) -> Stats {
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
}

impl From<&Stats> for Vec<Stats64Attr> {
    /// The counters as 64-bit attributes (what the kernel sends in `STATS64`).
    fn from(s: &Stats) -> Vec<Stats64Attr> {
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
}

/// The counters of a service or destination: the 64-bit ones when the kernel sent them, else the
/// 32-bit ones widened, else zero.
pub(crate) fn stats_of(stats64: Option<&[Stats64Attr]>, stats32: Option<&[StatsAttr]>) -> Stats {
    match (stats64, stats32) {
        (Some(s), _) => Stats::from(s),
        (None, Some(s)) => Stats::from(s),
        (None, None) => Stats::default(),
    }
}

#[cfg(test)]
mod tests;
