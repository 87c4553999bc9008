//! The sync daemon nest, `IPVS_CMD_ATTR_DAEMON` (`IPVS_DAEMON_ATTR_*`), and its conversions to
//! and from [`SyncDaemon`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    emit_u16, emit_u32, parse_u16, parse_u32, parse_u8, DecodeError, DefaultNla, ErrorContext, Nla,
    NlaBuffer, Parseable,
};

use super::nla::{emit_string, parse_c_string};
use super::service::missing;
use crate::{DaemonState, SyncDaemon};

/// `IP_VS_STATE_MASTER`.
pub const IP_VS_STATE_MASTER: u32 = 1;
/// `IP_VS_STATE_BACKUP`.
pub const IP_VS_STATE_BACKUP: u32 = 2;

/// `IPVS_DAEMON_ATTR_STATE`.
pub const IPVS_DAEMON_ATTR_STATE: u16 = 1;
/// `IPVS_DAEMON_ATTR_MCAST_IFN`.
pub const IPVS_DAEMON_ATTR_MCAST_IFN: u16 = 2;
/// `IPVS_DAEMON_ATTR_SYNC_ID`.
pub const IPVS_DAEMON_ATTR_SYNC_ID: u16 = 3;
/// `IPVS_DAEMON_ATTR_SYNC_MAXLEN`.
pub const IPVS_DAEMON_ATTR_SYNC_MAXLEN: u16 = 4;
/// `IPVS_DAEMON_ATTR_MCAST_GROUP`.
pub const IPVS_DAEMON_ATTR_MCAST_GROUP: u16 = 5;
/// `IPVS_DAEMON_ATTR_MCAST_GROUP6`.
pub const IPVS_DAEMON_ATTR_MCAST_GROUP6: u16 = 6;
/// `IPVS_DAEMON_ATTR_MCAST_PORT`.
pub const IPVS_DAEMON_ATTR_MCAST_PORT: u16 = 7;
/// `IPVS_DAEMON_ATTR_MCAST_TTL`.
pub const IPVS_DAEMON_ATTR_MCAST_TTL: u16 = 8;

/// Sync daemon attributes, `IPVS_DAEMON_ATTR_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DaemonAttr {
    /// `IPVS_DAEMON_ATTR_STATE` (u32, `IP_VS_STATE_MASTER` 1 / `IP_VS_STATE_BACKUP` 2).
    State(u32),
    /// `IPVS_DAEMON_ATTR_MCAST_IFN` (NUL-terminated string).
    McastIfn(String),
    /// `IPVS_DAEMON_ATTR_SYNC_ID` (u32).
    SyncId(u32),
    /// `IPVS_DAEMON_ATTR_SYNC_MAXLEN` (u16).
    SyncMaxLen(u16),
    /// `IPVS_DAEMON_ATTR_MCAST_GROUP` (`__be32` IPv4 address).
    McastGroup(Ipv4Addr),
    /// `IPVS_DAEMON_ATTR_MCAST_GROUP6` (`struct in6_addr`).
    McastGroup6(Ipv6Addr),
    /// `IPVS_DAEMON_ATTR_MCAST_PORT` (u16; the kernel reads it with `nla_get_u16`, host order).
    McastPort(u16),
    /// `IPVS_DAEMON_ATTR_MCAST_TTL` (u8).
    McastTtl(u8),
    /// An attribute this crate does not know, kept as sent.
    Other(DefaultNla),
}

impl Nla for DaemonAttr {
    fn value_len(&self) -> usize {
        match self {
            DaemonAttr::State(_) | DaemonAttr::SyncId(_) | DaemonAttr::McastGroup(_) => 4,
            DaemonAttr::McastIfn(s) => s.len() + 1,
            DaemonAttr::SyncMaxLen(_) | DaemonAttr::McastPort(_) => 2,
            DaemonAttr::McastGroup6(_) => 16,
            DaemonAttr::McastTtl(_) => 1,
            DaemonAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DaemonAttr::State(_) => IPVS_DAEMON_ATTR_STATE,
            DaemonAttr::McastIfn(_) => IPVS_DAEMON_ATTR_MCAST_IFN,
            DaemonAttr::SyncId(_) => IPVS_DAEMON_ATTR_SYNC_ID,
            DaemonAttr::SyncMaxLen(_) => IPVS_DAEMON_ATTR_SYNC_MAXLEN,
            DaemonAttr::McastGroup(_) => IPVS_DAEMON_ATTR_MCAST_GROUP,
            DaemonAttr::McastGroup6(_) => IPVS_DAEMON_ATTR_MCAST_GROUP6,
            DaemonAttr::McastPort(_) => IPVS_DAEMON_ATTR_MCAST_PORT,
            DaemonAttr::McastTtl(_) => IPVS_DAEMON_ATTR_MCAST_TTL,
            DaemonAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            DaemonAttr::State(v) | DaemonAttr::SyncId(v) => emit_u32(buffer, *v).expect("4 bytes"),
            DaemonAttr::McastIfn(s) => emit_string(buffer, s),
            DaemonAttr::SyncMaxLen(v) | DaemonAttr::McastPort(v) => {
                emit_u16(buffer, *v).expect("2 bytes")
            }
            DaemonAttr::McastGroup(a) => buffer[..4].copy_from_slice(&a.octets()),
            DaemonAttr::McastGroup6(a) => buffer[..16].copy_from_slice(&a.octets()),
            DaemonAttr::McastTtl(v) => buffer[0] = *v,
            DaemonAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DaemonAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<DaemonAttr, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            IPVS_DAEMON_ATTR_STATE => {
                DaemonAttr::State(parse_u32(v).context("IPVS_DAEMON_ATTR_STATE")?)
            }
            IPVS_DAEMON_ATTR_MCAST_IFN => {
                DaemonAttr::McastIfn(parse_c_string(v).context("IPVS_DAEMON_ATTR_MCAST_IFN")?)
            }
            IPVS_DAEMON_ATTR_SYNC_ID => {
                DaemonAttr::SyncId(parse_u32(v).context("IPVS_DAEMON_ATTR_SYNC_ID")?)
            }
            IPVS_DAEMON_ATTR_SYNC_MAXLEN => {
                DaemonAttr::SyncMaxLen(parse_u16(v).context("IPVS_DAEMON_ATTR_SYNC_MAXLEN")?)
            }
            IPVS_DAEMON_ATTR_MCAST_GROUP => {
                let octets: [u8; 4] = v.try_into().map_err(|_| {
                    DecodeError::from(format!(
                        "IPVS_DAEMON_ATTR_MCAST_GROUP: {} bytes, expected 4",
                        v.len()
                    ))
                })?;
                DaemonAttr::McastGroup(Ipv4Addr::from(octets))
            }
            IPVS_DAEMON_ATTR_MCAST_GROUP6 => {
                let octets: [u8; 16] = v.try_into().map_err(|_| {
                    DecodeError::from(format!(
                        "IPVS_DAEMON_ATTR_MCAST_GROUP6: {} bytes, expected 16",
                        v.len()
                    ))
                })?;
                DaemonAttr::McastGroup6(Ipv6Addr::from(octets))
            }
            IPVS_DAEMON_ATTR_MCAST_PORT => {
                DaemonAttr::McastPort(parse_u16(v).context("IPVS_DAEMON_ATTR_MCAST_PORT")?)
            }
            IPVS_DAEMON_ATTR_MCAST_TTL => {
                DaemonAttr::McastTtl(parse_u8(v).context("IPVS_DAEMON_ATTR_MCAST_TTL")?)
            }
            _ => DaemonAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

impl From<DaemonState> for u32 {
    fn from(state: DaemonState) -> u32 {
        match state {
            DaemonState::Master => IP_VS_STATE_MASTER,
            DaemonState::Backup => IP_VS_STATE_BACKUP,
        }
    }
}

impl TryFrom<u32> for DaemonState {
    type Error = DecodeError;

    fn try_from(state: u32) -> Result<DaemonState, DecodeError> {
        match state {
            IP_VS_STATE_MASTER => Ok(DaemonState::Master),
            IP_VS_STATE_BACKUP => Ok(DaemonState::Backup),
            other => Err(DecodeError::from(format!(
                "IPVS_DAEMON_ATTR_STATE: unknown state {other}"
            ))),
        }
    }
}

/// The attribute naming the daemon to stop: its role.
impl From<DaemonState> for Vec<DaemonAttr> {
    fn from(state: DaemonState) -> Vec<DaemonAttr> {
        vec![DaemonAttr::State(state.into())]
    }
}

/// The attributes of a sync daemon to start: the options given, the kernel's defaults for the
/// others.
impl From<&SyncDaemon> for Vec<DaemonAttr> {
    fn from(d: &SyncDaemon) -> Vec<DaemonAttr> {
        let mut attrs = vec![
            DaemonAttr::State(d.state.into()),
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
}

/// Reads a sync daemon from the attributes of a `NEW_DAEMON` dump message.
impl TryFrom<&[DaemonAttr]> for SyncDaemon {
    type Error = DecodeError;

    fn try_from(attrs: &[DaemonAttr]) -> Result<SyncDaemon, DecodeError> {
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
        d.state = DaemonState::try_from(
            state.ok_or_else(|| missing("sync daemon", "IPVS_DAEMON_ATTR_STATE"))?,
        )?;
        Ok(d)
    }
}

#[cfg(test)]
mod tests;
