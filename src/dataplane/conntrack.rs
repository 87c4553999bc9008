//! The kernel's connection tracking table over ctnetlink (`NETLINK_NETFILTER`, subsystem
//! `NFNL_SUBSYS_CTNETLINK`): dump the UDP entries, delete entries by their original tuple.
//!
//! The messages are netlink-packet-netfilter's (`IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`,
//! `IPCTNL_MSG_CT_DELETE`, the `CTA_*` attributes of `linux/netfilter/nfnetlink_conntrack.h`,
//! unknown ones kept as `Other`); this module turns them into [`Entry`]s and back, and does the
//! exchange. Each call opens its own socket: cleanups are rare (a UDP virtual server changed),
//! and a fresh socket never holds answers of an earlier, abandoned exchange.
//!
//! The dump asks for one address family at a time (the family in `nfgenmsg` filters on the
//! kernel's side) and keeps the UDP entries; deletes go in windows of [`DELETE_WINDOW`] requests
//! per datagram, each acknowledged, so thousands of entries (a busy DNS Service has one per
//! client port) cost a few round trips. An entry that is already gone (`ENOENT`: it timed out,
//! or IPVS dropped it) is not an error.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::{
    DecodeError, DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla, NLA_TYPE_MASK,
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple as CtaTuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::protocols::NETLINK_NETFILTER;
use netlink_sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};
use tracing::{debug, warn};

use crate::conntrack::{Entry, Tuple, IPPROTO_UDP};

/// `NFNETLINK_V0`: the version every nfnetlink request carries in `nfgenmsg`.
pub const NFNETLINK_V0: u8 = 0;
/// `CTA_ZONE`: the entry's conntrack zone, a big-endian u16 (kept as `Other` by
/// netlink-packet-netfilter).
pub const CTA_ZONE: u16 = 18;

/// Delete requests sent in one datagram before their acks are read: the acks must fit the
/// socket's receive buffer.
pub const DELETE_WINDOW: usize = 64;
/// How long one exchange with the kernel may take before it is abandoned.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a conntrack request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The netlink socket could not be opened.
    #[error("cannot open a netfilter netlink socket")]
    Open(#[source] io::Error),
    /// Sending a request failed.
    #[error("sending a conntrack {request} request")]
    Send {
        /// `dump` or `delete`.
        request: &'static str,
        #[source]
        source: io::Error,
    },
    /// Reading the kernel's answer failed.
    #[error("reading the answer to a conntrack {request} request")]
    Receive {
        /// `dump` or `delete`.
        request: &'static str,
        #[source]
        source: io::Error,
    },
    /// The kernel has no ctnetlink: it refused the dump as it refuses an unknown nfnetlink
    /// subsystem (`EINVAL`; the nf_conntrack_netlink module is missing and could not be loaded).
    #[error("the kernel has no conntrack netlink interface (is the nf_conntrack_netlink module available?)")]
    Unavailable(#[source] io::Error),
    /// The kernel answered with an error (e.g. `EPERM` without CAP_NET_ADMIN).
    #[error("the kernel refused a conntrack {request} request")]
    Refused {
        /// `dump` or `delete`.
        request: &'static str,
        #[source]
        source: io::Error,
    },
    /// An answer that is not a netlink message.
    #[error("malformed answer to a conntrack {request} request")]
    Malformed {
        /// `dump` or `delete`.
        request: &'static str,
        #[source]
        source: DecodeError,
    },
    /// The kernel did not finish answering in time.
    #[error("no complete answer to a conntrack {request} request within {EXCHANGE_TIMEOUT:?}")]
    TimedOut {
        /// `dump` or `delete`.
        request: &'static str,
    },
}

/// The UDP entries of the node's conntrack table, IPv4 then IPv6.
pub async fn udp_entries() -> Result<Vec<Entry>, ConntrackError> {
    within("dump", async {
        let socket = open()?;
        let mut entries = Vec::new();
        let mut skipped = 0;
        for (seq, family) in [
            (1, NetfilterProtoFamily::IPv4),
            (2, NetfilterProtoFamily::IPv6),
        ] {
            send(&socket, &dump_request(family, seq), "dump").await?;
            dump_answers(&socket, seq, &mut entries, &mut skipped).await?;
        }
        if skipped > 0 {
            warn!(
                skipped,
                "conntrack entries that could not be decoded were left out"
            );
        }
        Ok(entries)
    })
    .await
}

/// Deletes `entries` by their original tuple (and zone). Returns how many the kernel deleted;
/// those already gone are not counted and are not an error.
pub async fn delete(entries: &[Entry]) -> Result<usize, ConntrackError> {
    if entries.is_empty() {
        return Ok(0);
    }
    within("delete", async {
        let socket = open()?;
        let mut deleted = 0;
        let mut first_seq: u32 = 1;
        for window in entries.chunks(DELETE_WINDOW) {
            let mut datagram = Vec::new();
            for (i, entry) in window.iter().enumerate() {
                datagram.extend(delete_request(entry, first_seq + i as u32));
            }
            send(&socket, &datagram, "delete").await?;
            deleted += delete_answers(&socket, first_seq, window.len()).await?;
            first_seq += window.len() as u32;
        }
        Ok(deleted)
    })
    .await
}

async fn within<T>(
    request: &'static str,
    exchange: impl std::future::Future<Output = Result<T, ConntrackError>>,
) -> Result<T, ConntrackError> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .unwrap_or(Err(ConntrackError::TimedOut { request }))
}

fn open() -> Result<TokioSocket, ConntrackError> {
    let mut socket = TokioSocket::new(NETLINK_NETFILTER).map_err(ConntrackError::Open)?;
    socket
        .socket_mut()
        .bind_auto()
        .map_err(ConntrackError::Open)?;
    // Error answers then echo only the request's header, not the whole request.
    if let Err(e) = socket.socket_ref().set_cap_ack(true) {
        debug!(error = %e, "NETLINK_CAP_ACK not available");
    }
    Ok(socket)
}

async fn send(
    socket: &TokioSocket,
    datagram: &[u8],
    request: &'static str,
) -> Result<(), ConntrackError> {
    let sent = socket
        .send_to(datagram, &SocketAddr::new(0, 0))
        .await
        .map_err(|source| ConntrackError::Send { request, source })?;
    if sent != datagram.len() {
        return Err(ConntrackError::Send {
            request,
            source: io::Error::other(format!("sent {sent} of {} bytes", datagram.len())),
        });
    }
    Ok(())
}

/// Reads whole datagrams and hands each netlink message in them to `each` until it says the
/// exchange is over.
async fn read_messages(
    socket: &TokioSocket,
    request: &'static str,
    mut each: impl FnMut(&[u8]) -> Result<bool, ConntrackError>,
) -> Result<(), ConntrackError> {
    loop {
        let (datagram, _) = socket
            .recv_from_full()
            .await
            .map_err(|source| ConntrackError::Receive { request, source })?;
        let mut offset = 0;
        while offset < datagram.len() {
            let rest = &datagram[offset..];
            let len = netlink_packet_core::NetlinkBuffer::new_checked(rest)
                .map_err(|source| ConntrackError::Malformed { request, source })?
                .length() as usize;
            if each(&rest[..len])? {
                return Ok(());
            }
            // Messages are 4-byte aligned; new_checked ensured len >= the header's 16 bytes.
            offset += len.div_ceil(4) * 4;
        }
    }
}

async fn dump_answers(
    socket: &TokioSocket,
    seq: u32,
    entries: &mut Vec<Entry>,
    skipped: &mut usize,
) -> Result<(), ConntrackError> {
    read_messages(socket, "dump", |bytes| {
        let message = match NetlinkMessage::<NetfilterMessage>::deserialize(bytes) {
            Ok(m) => m,
            Err(_) => {
                *skipped += 1;
                return Ok(false);
            }
        };
        if message.header.sequence_number != seq {
            return Ok(false);
        }
        match message.payload {
            NetlinkPayload::Done(_) => Ok(true),
            // A dump request carries nothing but the family: EINVAL means no ctnetlink.
            NetlinkPayload::Error(e) if e.raw_code() == -libc::EINVAL => {
                Err(ConntrackError::Unavailable(e.to_io()))
            }
            NetlinkPayload::Error(e) if e.code.is_some() => Err(ConntrackError::Refused {
                request: "dump",
                source: e.to_io(),
            }),
            NetlinkPayload::InnerMessage(m) => {
                if let Some(entry) = entry_of(&m) {
                    if entry.original.protocol == IPPROTO_UDP {
                        entries.push(entry);
                    }
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    })
    .await
}

/// Reads the acks of `count` delete requests numbered from `first_seq`; returns how many
/// deleted an entry.
async fn delete_answers(
    socket: &TokioSocket,
    first_seq: u32,
    count: usize,
) -> Result<usize, ConntrackError> {
    let mut answered = 0;
    let mut deleted = 0;
    let mut refused = None;
    read_messages(socket, "delete", |bytes| {
        let message = NetlinkMessage::<NetfilterMessage>::deserialize(bytes).map_err(|source| {
            ConntrackError::Malformed {
                request: "delete",
                source,
            }
        })?;
        let index = message.header.sequence_number.wrapping_sub(first_seq) as usize;
        if let (NetlinkPayload::Error(e), true) = (&message.payload, index < count) {
            answered += 1;
            match e.code {
                None => deleted += 1,
                Some(code) if -code.get() == libc::ENOENT => {}
                Some(_) => {
                    refused.get_or_insert_with(|| e.to_io());
                }
            }
        }
        Ok(answered == count)
    })
    .await?;
    match refused {
        Some(source) => Err(ConntrackError::Refused {
            request: "delete",
            source,
        }),
        None => Ok(deleted),
    }
}

/// The bytes of an `IPCTNL_MSG_CT_GET` dump request for one address family.
pub fn dump_request(family: NetfilterProtoFamily, seq: u32) -> Vec<u8> {
    serialize(
        NetfilterMessage::new(
            NetfilterHeader::new(family, NFNETLINK_V0, 0),
            ConntrackMessage::Get(Vec::new()),
        ),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
    )
}

/// The bytes of an `IPCTNL_MSG_CT_DELETE` request for `entry`, by its original tuple and zone,
/// asking for an ack.
pub fn delete_request(entry: &Entry, seq: u32) -> Vec<u8> {
    let family = match entry.original.source {
        IpAddr::V4(_) => NetfilterProtoFamily::IPv4,
        IpAddr::V6(_) => NetfilterProtoFamily::IPv6,
    };
    let mut attributes = vec![ConntrackAttribute::CtaTupleOrig(cta_tuple(&entry.original))];
    if entry.zone != 0 {
        attributes.push(ConntrackAttribute::Other(DefaultNla::new(
            CTA_ZONE,
            entry.zone.to_be_bytes().to_vec(),
        )));
    }
    serialize(
        NetfilterMessage::new(
            NetfilterHeader::new(family, NFNETLINK_V0, 0),
            ConntrackMessage::Delete(attributes),
        ),
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
    )
}

fn serialize(message: NetfilterMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

/// `CTA_TUPLE_IP` and `CTA_TUPLE_PROTO` of a tuple.
fn cta_tuple(tuple: &Tuple) -> Vec<CtaTuple> {
    vec![
        CtaTuple::Ip(vec![
            IPTuple::SourceAddress(tuple.source),
            IPTuple::DestinationAddress(tuple.destination),
        ]),
        CtaTuple::Proto(vec![
            ProtoTuple::Protocol(Protocol::from(tuple.protocol)),
            ProtoTuple::SourcePort(tuple.source_port),
            ProtoTuple::DestinationPort(tuple.destination_port),
        ]),
    ]
}

/// The entry a conntrack message describes, if it has both tuples complete (ICMP entries, for
/// one, have no ports).
pub fn entry_of(message: &NetfilterMessage) -> Option<Entry> {
    let NetfilterMessageInner::Conntrack(ConntrackMessage::New(attributes)) = &message.inner else {
        return None;
    };
    let mut original = None;
    let mut reply = None;
    let mut zone = 0;
    for attribute in attributes {
        match attribute {
            ConntrackAttribute::CtaTupleOrig(t) => original = tuple_of(t),
            ConntrackAttribute::CtaTupleReply(t) => reply = tuple_of(t),
            ConntrackAttribute::Other(nla) if nla.kind() & NLA_TYPE_MASK == CTA_ZONE => {
                let mut value = vec![0; nla.value_len()];
                nla.emit_value(&mut value);
                if let Ok(bytes) = <[u8; 2]>::try_from(value.as_slice()) {
                    zone = u16::from_be_bytes(bytes);
                }
            }
            _ => {}
        }
    }
    Some(Entry {
        original: original?,
        reply: reply?,
        zone,
    })
}

fn tuple_of(parts: &[CtaTuple]) -> Option<Tuple> {
    let (mut source, mut destination) = (None, None);
    let (mut protocol, mut source_port, mut destination_port) = (None, None, None);
    for part in parts {
        match part {
            CtaTuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => source = Some(*a),
                        IPTuple::DestinationAddress(a) => destination = Some(*a),
                        _ => {}
                    }
                }
            }
            CtaTuple::Proto(protos) => {
                for proto in protos {
                    match proto {
                        ProtoTuple::Protocol(p) => protocol = Some(u8::from(*p)),
                        ProtoTuple::SourcePort(p) => source_port = Some(*p),
                        ProtoTuple::DestinationPort(p) => destination_port = Some(*p),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(Tuple {
        protocol: protocol?,
        source: source?,
        source_port: source_port?,
        destination: destination?,
        destination_port: destination_port?,
    })
}

#[cfg(test)]
mod tests;
