//! The top-level attributes of a message, `IPVS_CMD_ATTR_*` (the nests of the other modules,
//! and the timeouts of `SET_CONFIG`), and `IPVS_INFO_ATTR_*`, which `GET_INFO`'s reply numbers
//! from 1 as well; conversions to and from [`Timeouts`] and [`Info`].

use netlink_packet_core::{
    emit_u32, parse_u32, DecodeError, DefaultNla, Emitable, ErrorContext, Nla, NlaBuffer,
    Parseable, NLA_F_NESTED,
};

use super::daemon::DaemonAttr;
use super::destination::DestAttr;
use super::parse_nlas;
use super::service::{missing, SvcAttr};
use crate::{Info, Timeouts};

/// `IPVS_CMD_ATTR_SERVICE`.
pub const IPVS_CMD_ATTR_SERVICE: u16 = 1;
/// `IPVS_CMD_ATTR_DEST`.
pub const IPVS_CMD_ATTR_DEST: u16 = 2;
/// `IPVS_CMD_ATTR_DAEMON`.
pub const IPVS_CMD_ATTR_DAEMON: u16 = 3;
/// `IPVS_CMD_ATTR_TIMEOUT_TCP`.
pub const IPVS_CMD_ATTR_TIMEOUT_TCP: u16 = 4;
/// `IPVS_CMD_ATTR_TIMEOUT_TCP_FIN`.
pub const IPVS_CMD_ATTR_TIMEOUT_TCP_FIN: u16 = 5;
/// `IPVS_CMD_ATTR_TIMEOUT_UDP`.
pub const IPVS_CMD_ATTR_TIMEOUT_UDP: u16 = 6;

/// `IPVS_INFO_ATTR_VERSION`.
pub const IPVS_INFO_ATTR_VERSION: u16 = 1;
/// `IPVS_INFO_ATTR_CONN_TAB_SIZE`.
pub const IPVS_INFO_ATTR_CONN_TAB_SIZE: u16 = 2;

/// Top-level attributes, `IPVS_CMD_ATTR_*`, and for `GET_INFO`/`SET_INFO` `IPVS_INFO_ATTR_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CmdAttr {
    /// `IPVS_CMD_ATTR_SERVICE` (nested).
    Service(Vec<SvcAttr>),
    /// `IPVS_CMD_ATTR_DEST` (nested).
    Dest(Vec<DestAttr>),
    /// `IPVS_CMD_ATTR_DAEMON` (nested).
    Daemon(Vec<DaemonAttr>),
    /// `IPVS_CMD_ATTR_TIMEOUT_TCP` (u32 seconds).
    TimeoutTcp(u32),
    /// `IPVS_CMD_ATTR_TIMEOUT_TCP_FIN` (u32 seconds).
    TimeoutTcpFin(u32),
    /// `IPVS_CMD_ATTR_TIMEOUT_UDP` (u32 seconds).
    TimeoutUdp(u32),
    /// `IPVS_INFO_ATTR_VERSION` (u32), in `SET_INFO` replies.
    InfoVersion(u32),
    /// `IPVS_INFO_ATTR_CONN_TAB_SIZE` (u32), in `SET_INFO` replies.
    InfoConnTabSize(u32),
    /// An attribute this crate does not know, kept as sent.
    Other(DefaultNla),
}

impl Nla for CmdAttr {
    fn value_len(&self) -> usize {
        match self {
            CmdAttr::Service(a) => a.as_slice().buffer_len(),
            CmdAttr::Dest(a) => a.as_slice().buffer_len(),
            CmdAttr::Daemon(a) => a.as_slice().buffer_len(),
            CmdAttr::TimeoutTcp(_)
            | CmdAttr::TimeoutTcpFin(_)
            | CmdAttr::TimeoutUdp(_)
            | CmdAttr::InfoVersion(_)
            | CmdAttr::InfoConnTabSize(_) => 4,
            CmdAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            CmdAttr::Service(_) => IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED,
            CmdAttr::Dest(_) => IPVS_CMD_ATTR_DEST | NLA_F_NESTED,
            CmdAttr::Daemon(_) => IPVS_CMD_ATTR_DAEMON | NLA_F_NESTED,
            CmdAttr::TimeoutTcp(_) => IPVS_CMD_ATTR_TIMEOUT_TCP,
            CmdAttr::TimeoutTcpFin(_) => IPVS_CMD_ATTR_TIMEOUT_TCP_FIN,
            CmdAttr::TimeoutUdp(_) => IPVS_CMD_ATTR_TIMEOUT_UDP,
            CmdAttr::InfoVersion(_) => IPVS_INFO_ATTR_VERSION,
            CmdAttr::InfoConnTabSize(_) => IPVS_INFO_ATTR_CONN_TAB_SIZE,
            CmdAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            CmdAttr::Service(a) => a.as_slice().emit(buffer),
            CmdAttr::Dest(a) => a.as_slice().emit(buffer),
            CmdAttr::Daemon(a) => a.as_slice().emit(buffer),
            CmdAttr::TimeoutTcp(v)
            | CmdAttr::TimeoutTcpFin(v)
            | CmdAttr::TimeoutUdp(v)
            | CmdAttr::InfoVersion(v)
            | CmdAttr::InfoConnTabSize(v) => emit_u32(buffer, *v).expect("4-byte value"),
            CmdAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for CmdAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<CmdAttr, DecodeError> {
        let value = buf.value();
        Ok(match buf.kind() {
            IPVS_CMD_ATTR_SERVICE => {
                CmdAttr::Service(parse_nlas(value, "IPVS_CMD_ATTR_SERVICE", |n| {
                    SvcAttr::parse(n)
                })?)
            }
            IPVS_CMD_ATTR_DEST => CmdAttr::Dest(parse_nlas(value, "IPVS_CMD_ATTR_DEST", |n| {
                DestAttr::parse(n)
            })?),
            IPVS_CMD_ATTR_DAEMON => {
                CmdAttr::Daemon(parse_nlas(value, "IPVS_CMD_ATTR_DAEMON", |n| {
                    DaemonAttr::parse(n)
                })?)
            }
            IPVS_CMD_ATTR_TIMEOUT_TCP => {
                CmdAttr::TimeoutTcp(parse_u32(value).context("IPVS_CMD_ATTR_TIMEOUT_TCP")?)
            }
            IPVS_CMD_ATTR_TIMEOUT_TCP_FIN => {
                CmdAttr::TimeoutTcpFin(parse_u32(value).context("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN")?)
            }
            IPVS_CMD_ATTR_TIMEOUT_UDP => {
                CmdAttr::TimeoutUdp(parse_u32(value).context("IPVS_CMD_ATTR_TIMEOUT_UDP")?)
            }
            _ => CmdAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl CmdAttr {
    /// Parses a top-level attribute of a `SET_INFO`/`GET_INFO` message.
    pub fn parse_info<T: AsRef<[u8]> + ?Sized>(
        buf: &NlaBuffer<&T>,
    ) -> Result<CmdAttr, DecodeError> {
        let value = buf.value();
        Ok(match buf.kind() {
            IPVS_INFO_ATTR_VERSION => {
                CmdAttr::InfoVersion(parse_u32(value).context("IPVS_INFO_ATTR_VERSION")?)
            }
            IPVS_INFO_ATTR_CONN_TAB_SIZE => {
                CmdAttr::InfoConnTabSize(parse_u32(value).context("IPVS_INFO_ATTR_CONN_TAB_SIZE")?)
            }
            _ => CmdAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// The timeouts to set: only the ones given and non-zero, since the kernel leaves absent ones
/// as they are.
impl From<&Timeouts> for Vec<CmdAttr> {
    fn from(t: &Timeouts) -> Vec<CmdAttr> {
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
}

/// Reads the timeouts of a `SET_CONFIG` reply.
impl From<&[CmdAttr]> for Timeouts {
    fn from(attrs: &[CmdAttr]) -> Timeouts {
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
}

/// Reads the `SET_INFO` reply.
impl TryFrom<&[CmdAttr]> for Info {
    type Error = DecodeError;

    fn try_from(attrs: &[CmdAttr]) -> Result<Info, DecodeError> {
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
}

#[cfg(test)]
mod tests;
