//! Decoding whole datagrams of kernel answers into typed objects.
//!
//! This is the path every byte the kernel sends takes (the client uses the same steps one
//! message at a time); the fuzz target and its regression test drive it with arbitrary input.

use netlink_packet_core::{DecodeError, NetlinkBuffer, NetlinkMessage, NetlinkPayload};

use super::{CmdAttr, IpvsCmd, RawGenlFrame};
use crate::{Destination, Family, Info, Service, SyncDaemon, Timeouts};

/// One decoded netlink message of a kernel answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// A service of a `GET_SERVICE` answer.
    Service(Service),
    /// A destination of a `GET_DEST` answer.
    Destination(Destination),
    /// A sync daemon of a `GET_DAEMON` answer.
    Daemon(SyncDaemon),
    /// The timeouts of a `GET_CONFIG` answer.
    Timeouts(Timeouts),
    /// The `GET_INFO` answer.
    Info(Info),
    /// An ack (`NLMSG_ERROR` with 0).
    Ack,
    /// A refusal: the negative errno.
    Refused(i32),
    /// The end of a dump.
    Done,
    /// Anything else (no-op, overrun, an IPVS command that is not an answer).
    Other,
}

/// Decodes every netlink message of a datagram. A message that does not decode is an error in
/// its place; a broken length ends the walk, since the next message cannot be found.
/// `service_family` reads destination addresses that come without their own family.
pub fn decode_datagram(buf: &[u8], service_family: Family) -> Vec<Result<Reply, DecodeError>> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        let rest = &buf[offset..];
        let len = match NetlinkBuffer::new_checked(rest) {
            Ok(b) => b.length() as usize,
            Err(e) => {
                out.push(Err(e));
                break;
            }
        };
        out.push(decode_message(&rest[..len], service_family));
        // Messages are 4-byte aligned; a zero length would never advance.
        offset += len.max(16).div_ceil(4) * 4;
    }
    out
}

/// Decodes one netlink message.
pub fn decode_message(buf: &[u8], service_family: Family) -> Result<Reply, DecodeError> {
    let message = NetlinkMessage::<RawGenlFrame>::deserialize(buf)?;
    match message.payload {
        NetlinkPayload::Error(e) => Ok(match e.code {
            None => Reply::Ack,
            Some(code) => Reply::Refused(code.get()),
        }),
        NetlinkPayload::Done(_) => Ok(Reply::Done),
        NetlinkPayload::InnerMessage(frame) => {
            let ipvs = frame.to_ipvs()?.payload;
            let attrs = &ipvs.attrs;
            match ipvs.cmd {
                IpvsCmd::NewService => {
                    let Some(svc) = attrs.iter().find_map(|a| match a {
                        CmdAttr::Service(s) => Some(s),
                        _ => None,
                    }) else {
                        return Err("service answer without IPVS_CMD_ATTR_SERVICE".into());
                    };
                    Service::try_from(svc.as_slice()).map(Reply::Service)
                }
                IpvsCmd::NewDest => {
                    let Some(dest) = attrs.iter().find_map(|a| match a {
                        CmdAttr::Dest(d) => Some(d),
                        _ => None,
                    }) else {
                        return Err("destination answer without IPVS_CMD_ATTR_DEST".into());
                    };
                    Destination::try_from((dest.as_slice(), service_family)).map(Reply::Destination)
                }
                IpvsCmd::NewDaemon => {
                    let Some(daemon) = attrs.iter().find_map(|a| match a {
                        CmdAttr::Daemon(d) => Some(d),
                        _ => None,
                    }) else {
                        return Err("daemon answer without IPVS_CMD_ATTR_DAEMON".into());
                    };
                    SyncDaemon::try_from(daemon.as_slice()).map(Reply::Daemon)
                }
                IpvsCmd::SetConfig => Ok(Reply::Timeouts(Timeouts::from(attrs.as_slice()))),
                IpvsCmd::SetInfo => Info::try_from(attrs.as_slice()).map(Reply::Info),
                _ => Ok(Reply::Other),
            }
        }
        _ => Ok(Reply::Other),
    }
}
