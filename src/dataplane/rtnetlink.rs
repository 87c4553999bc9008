//! The rtnetlink transport that the dummy interface ([`super::link`]) and the node address
//! listing and watcher ([`super::node_addresses`]) share: a socket with its own sequence
//! numbers, request/ack exchanges, a window of requests in flight, dumps retried when the kernel
//! says they were interrupted, and the typed reads of link and address messages. It knows
//! nothing of ipvsd's policy (which interface, which addresses).
//!
//! The exchange is written directly on neli's tokio socket rather than on its router: a
//! request/reply pair must be cancellable (a dropped future leaves only replies with an old
//! sequence number, which the next exchange skips), and the address watcher must see the
//! kernel's ENOBUFS overrun report, which the router does not pass on to multicast listeners.

use std::collections::HashMap;
use std::io::{self, Cursor};
use std::net::IpAddr;

use neli::consts::nl::{NlmF, Nlmsg, NlmsgerrAttr};
use neli::consts::rtnl::{
    Ifa, Ifla, IflaInfo, RtAddrFamily, RtScope, RtTable, Rta, Rtm, Rtn, Rtprot,
};
use neli::consts::socket::NlFamily;
use neli::err::{BuilderError, DeError, Nlmsgerr, SocketError};
use neli::nl::{NlPayload, Nlmsghdr, NlmsghdrBuilder};
use neli::rtnl::{
    Ifaddrmsg, IfaddrmsgBuilder, Ifinfomsg, IfinfomsgBuilder, Rtattr, RtattrBuilder, Rtmsg,
    RtmsgBuilder,
};
use neli::socket::asynchronous::NlSocketHandle;
use neli::types::{Buffer, RtBuffer};
use neli::utils::Groups;
use neli::{FromBytesWithInput, Size, ToBytes};
use tracing::debug;

/// Requests sent before their acks are read: the acks of a window (and an error each, at worst)
/// must fit the socket's receive buffer.
const REQUEST_WINDOW: usize = 128;

/// How often a dump that the kernel marks as interrupted (NLM_F_DUMP_INTR: the table changed
/// while it was being read) is retried before giving up.
const DUMP_ATTEMPTS: usize = 5;

/// Why one rtnetlink exchange failed; [`LinkError`](super::link::LinkError) says what was being done.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkFailure {
    /// The kernel answered with an error code; `detail` carries its extended-ack message, if any.
    #[error("the kernel refused the request{detail}")]
    Refused {
        detail: String,
        #[source]
        source: io::Error,
    },
    /// Sending to or receiving from the netlink socket failed.
    #[error("netlink socket error")]
    Socket(#[source] SocketError),
    /// A reply could not be decoded.
    #[error("malformed netlink reply")]
    Malformed(#[source] DeError),
    /// The request could not be encoded.
    #[error("cannot encode the netlink request")]
    Encode(#[source] BuilderError),
    /// The table kept changing while it was dumped.
    #[error("dump interrupted by concurrent changes {DUMP_ATTEMPTS} times in a row")]
    DumpInterrupted,
}

impl NetlinkFailure {
    /// The errno the kernel answered with, if this is a refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkFailure::Refused { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Whether the kernel reported that the socket's receive buffer overran (ENOBUFS): the
    /// multicast notifications that did not fit are lost.
    pub fn is_overrun(&self) -> bool {
        matches!(self, NetlinkFailure::Socket(SocketError::Io(io)) if io.raw_os_error() == Some(libc::ENOBUFS))
    }

    fn refused<M>(err: &Nlmsgerr<M>) -> Self {
        let message = err
            .ext_ack()
            .get_attr_handle()
            .get_attr_payload_as_with_len::<String>(NlmsgerrAttr::Msg)
            .ok();
        NetlinkFailure::Refused {
            detail: message.map(|m| format!(" ({m})")).unwrap_or_default(),
            source: io::Error::from_raw_os_error(-*err.error()),
        }
    }
}

impl From<SocketError> for NetlinkFailure {
    fn from(err: SocketError) -> Self {
        NetlinkFailure::Socket(err)
    }
}

impl From<DeError> for NetlinkFailure {
    fn from(err: DeError) -> Self {
        NetlinkFailure::Malformed(err)
    }
}

pub(crate) fn encode_err<E>(err: E) -> NetlinkFailure
where
    BuilderError: From<E>,
{
    NetlinkFailure::Encode(BuilderError::from(err))
}

/// One address as the kernel reports it in RTM_NEWADDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRecord {
    /// Index of the interface holding the address.
    pub interface_index: u32,
    pub address: IpAddr,
    pub prefix_len: u8,
    /// `ifa_scope`: RT_SCOPE_HOST (254) marks loopback-only addresses.
    pub scope: u8,
}

impl AddressRecord {
    /// Reads an address message. For IPv4 the local address is IFA_LOCAL (IFA_ADDRESS is the
    /// peer on point-to-point links); IPv6 sends IFA_LOCAL only when there is a peer.
    /// Returns `None` for families other than IPv4/IPv6 or a message without an address.
    pub(crate) fn from_message(msg: &Ifaddrmsg) -> Option<AddressRecord> {
        let mut local = None;
        let mut address = None;
        for attr in msg.rtattrs().iter() {
            let slot = match attr.rta_type() {
                Ifa::Local => &mut local,
                Ifa::Address => &mut address,
                _ => continue,
            };
            *slot = ip_from_bytes(attr.rta_payload().as_ref());
        }
        let address = local.or(address)?;
        let family_matches = matches!(
            (msg.ifa_family(), &address),
            (RtAddrFamily::Inet, IpAddr::V4(_)) | (RtAddrFamily::Inet6, IpAddr::V6(_))
        );
        family_matches.then(|| AddressRecord {
            interface_index: *msg.ifa_index(),
            address,
            prefix_len: *msg.ifa_prefixlen(),
            scope: u8::from(*msg.ifa_scope()),
        })
    }
}

/// The main routing table's id (RT_TABLE_MAIN), where `ip route` puts routes by default.
pub(crate) const RT_TABLE_MAIN: u32 = 254;

/// One route as the kernel reports it in RTM_NEWROUTE: what picking the primary address needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRecord {
    pub family: RouteFamily,
    /// Length of the destination prefix: 0 for a default route.
    pub destination_len: u8,
    /// Routing table id (RTA_TABLE when present, else `rtm_table`).
    pub table: u32,
    /// `rtm_type`: 1 (RTN_UNICAST) for a route that forwards.
    pub kind: u8,
    /// RTA_OIF, or the first next hop's interface of a multipath route.
    pub output_interface: Option<u32>,
    /// RTA_PREFSRC: the source address the route prefers.
    pub preferred_source: Option<IpAddr>,
    /// RTA_PRIORITY, the metric (lower wins); 0 when absent.
    pub metric: u32,
}

/// The address family of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteFamily {
    Ipv4,
    Ipv6,
}

/// RTN_UNICAST.
pub(crate) const RTN_UNICAST: u8 = 1;

impl RouteRecord {
    /// Reads a route message; `None` for families other than IPv4/IPv6.
    pub(crate) fn from_message(msg: &Rtmsg) -> Option<RouteRecord> {
        let family = match msg.rtm_family() {
            RtAddrFamily::Inet => RouteFamily::Ipv4,
            RtAddrFamily::Inet6 => RouteFamily::Ipv6,
            _ => return None,
        };
        let mut record = RouteRecord {
            family,
            destination_len: *msg.rtm_dst_len(),
            table: u32::from(u8::from(*msg.rtm_table())),
            kind: u8::from(*msg.rtm_type()),
            output_interface: None,
            preferred_source: None,
            metric: 0,
        };
        for attr in msg.rtattrs().iter() {
            let payload = attr.rta_payload().as_ref();
            match attr.rta_type() {
                Rta::Table => record.table = u32_from_bytes(payload).unwrap_or(record.table),
                Rta::Oif => record.output_interface = u32_from_bytes(payload),
                Rta::Prefsrc => record.preferred_source = ip_from_bytes(payload),
                Rta::Priority => record.metric = u32_from_bytes(payload).unwrap_or(0),
                Rta::Multipath if record.output_interface.is_none() => {
                    record.output_interface = first_next_hop_interface(payload);
                }
                _ => {}
            }
        }
        Some(record)
    }
}

/// The interface of the first `struct rtnexthop` of an RTA_MULTIPATH payload
/// (`rtnh_len: u16, rtnh_flags: u8, rtnh_hops: u8, rtnh_ifindex: i32`).
fn first_next_hop_interface(payload: &[u8]) -> Option<u32> {
    let index = u32_from_bytes(payload.get(4..8)?)?;
    (index != 0).then_some(index)
}

fn u32_from_bytes(bytes: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(bytes).ok().map(u32::from_ne_bytes)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// What a link lookup returns: enough to tell whether it is the dummy we expect.
#[derive(Debug, Clone)]
pub(crate) struct LinkRecord {
    pub(crate) index: u32,
    /// IFLA_INFO_KIND ("dummy", "veth", ...); physical devices have none.
    pub(crate) kind: Option<String>,
    /// IFLA_ADDRESS, the hardware address.
    pub(crate) hardware_address: Option<Vec<u8>>,
}

impl LinkRecord {
    pub(crate) fn from_message(msg: &Ifinfomsg) -> LinkRecord {
        let kind = msg
            .rtattrs()
            .iter()
            .find(|attr| *attr.rta_type() == Ifla::Linkinfo)
            .and_then(|info| info.get_attr_handle::<IflaInfo>().ok())
            .and_then(|info| {
                info.get_attr_payload_as_with_len::<String>(IflaInfo::Kind)
                    .ok()
            })
            .map(|kind| kind.trim_end_matches('\0').to_owned());
        let hardware_address = msg
            .rtattrs()
            .iter()
            .find(|attr| *attr.rta_type() == Ifla::Address)
            .map(|attr| attr.rta_payload().as_ref().to_vec());
        LinkRecord {
            // Interface indexes are positive ints in the kernel.
            index: u32::try_from(*msg.ifi_index()).unwrap_or_default(),
            kind,
            hardware_address,
        }
    }
}

/// An rtnetlink socket with its own sequence numbers. One exchange runs at a time (`&mut self`:
/// one request, one dump, or one window of [`RouteSocket::requests`]); replies carrying another sequence number belong to an exchange whose future
/// was dropped and are skipped.
pub(crate) struct RouteSocket {
    socket: NlSocketHandle,
    next_seq: u32,
    /// Sequence number of a dump whose end has not been read yet. The kernel runs one dump
    /// per socket at a time and refuses another with EBUSY, so a dump abandoned by a dropped
    /// future is read to its end before the next request.
    unfinished_dump: Option<u32>,
}

impl RouteSocket {
    /// Opens a socket for requests.
    pub(crate) fn open() -> Result<RouteSocket, NetlinkFailure> {
        Self::with_groups(Groups::empty())
    }

    /// Opens a socket that also receives the given rtnetlink multicast groups (RTNLGRP_*).
    pub(crate) fn subscribed(groups: &[u32]) -> Result<RouteSocket, NetlinkFailure> {
        Self::with_groups(Groups::new_groups(groups))
    }

    fn with_groups(groups: Groups) -> Result<RouteSocket, NetlinkFailure> {
        let socket = NlSocketHandle::connect(NlFamily::Route, None, groups)?;
        // Extended acks give the kernel's own words for a refusal; strict checking makes the
        // kernel filter address dumps by interface. Both are optional: replies are still
        // filtered here and refusals still carry their errno.
        if let Err(err) = socket.enable_ext_ack(true) {
            debug!(error = %err, "extended netlink acks unavailable");
        }
        if let Err(err) = socket.enable_strict_checking(true) {
            debug!(error = %err, "strict rtnetlink checking unavailable");
        }
        Ok(RouteSocket {
            socket,
            next_seq: 1,
            unfinished_dump: None,
        })
    }

    /// Asks the kernel for a larger receive buffer so bursts of notifications overrun less.
    pub(crate) fn set_recv_buffer_size(&self, bytes: usize) -> Result<(), NetlinkFailure> {
        Ok(self.socket.set_recv_buffer_size(bytes)?)
    }

    async fn send<P>(&mut self, ty: Rtm, flags: NlmF, payload: P) -> Result<u32, NetlinkFailure>
    where
        P: Size + ToBytes,
    {
        self.finish_abandoned_dump().await?;
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        let msg = NlmsghdrBuilder::default()
            .nl_type(ty)
            .nl_flags(flags | NlmF::REQUEST)
            .nl_seq(seq)
            .nl_payload(NlPayload::Payload(payload))
            .build()
            .map_err(encode_err)?;
        self.socket.send(&msg).await?;
        Ok(seq)
    }

    /// Reads and discards the rest of a dump whose reader went away.
    async fn finish_abandoned_dump(&mut self) -> Result<(), NetlinkFailure> {
        while let Some(seq) = self.unfinished_dump {
            for msg in self.receive().await? {
                let msg = msg?;
                if *msg.nl_seq() == seq && ends_dump(&msg) {
                    debug!(seq, "finished reading an abandoned rtnetlink dump");
                    self.unfinished_dump = None;
                }
            }
        }
        Ok(())
    }

    /// Sends a request that changes something and waits for the kernel's ack.
    pub(crate) async fn request<P>(
        &mut self,
        ty: Rtm,
        flags: NlmF,
        payload: P,
    ) -> Result<(), NetlinkFailure>
    where
        P: Size + ToBytes,
    {
        self.request_replies::<P, Buffer>(ty, flags, payload)
            .await
            .map(drop)
    }

    /// Sends a non-dump request with NLM_F_ACK and returns the replies that came before the ack.
    pub(crate) async fn request_replies<P, R>(
        &mut self,
        ty: Rtm,
        flags: NlmF,
        payload: P,
    ) -> Result<Vec<R>, NetlinkFailure>
    where
        P: Size + ToBytes,
        R: FromBytesWithInput<Input = usize>,
    {
        let seq = self.send(ty, flags | NlmF::ACK, payload).await?;
        let mut replies = Vec::new();
        loop {
            for msg in self.receive().await? {
                let msg = msg?;
                if *msg.nl_seq() != seq {
                    continue;
                }
                match msg.nl_payload() {
                    NlPayload::Ack(_) => return Ok(replies),
                    NlPayload::Err(err) => return Err(NetlinkFailure::refused(err)),
                    NlPayload::Payload(body) => replies.push(decode(body)?),
                    NlPayload::DumpExtAck(_) | NlPayload::Empty => {}
                }
            }
        }
    }

    /// Sends requests that change something, [`REQUEST_WINDOW`] at a time before their acks
    /// are read, and returns each one's outcome in order: one round trip per window instead of
    /// per request. A socket failure fails the whole batch.
    pub(crate) async fn requests<P>(
        &mut self,
        ty: Rtm,
        flags: NlmF,
        payloads: Vec<P>,
    ) -> Result<Vec<Result<(), NetlinkFailure>>, NetlinkFailure>
    where
        P: Size + ToBytes,
    {
        let mut outcomes: Vec<Option<Result<(), NetlinkFailure>>> =
            Vec::with_capacity(payloads.len());
        let mut payloads = payloads.into_iter();
        loop {
            let mut pending: HashMap<u32, usize> = HashMap::new();
            for payload in payloads.by_ref().take(REQUEST_WINDOW) {
                let seq = self.send(ty, flags | NlmF::ACK, payload).await?;
                pending.insert(seq, outcomes.len());
                outcomes.push(None);
            }
            if pending.is_empty() {
                break;
            }
            while !pending.is_empty() {
                for msg in self.receive().await? {
                    let msg = msg?;
                    let Some(&index) = pending.get(msg.nl_seq()) else {
                        continue;
                    };
                    let outcome = match msg.nl_payload() {
                        NlPayload::Ack(_) => Ok(()),
                        NlPayload::Err(err) => Err(NetlinkFailure::refused(err)),
                        _ => continue,
                    };
                    pending.remove(msg.nl_seq());
                    outcomes[index] = Some(outcome);
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every request of a window is answered before the next"))
            .collect())
    }

    /// Dumps a table (NLM_F_DUMP), retrying when the kernel reports it changed mid-dump.
    pub(crate) async fn dump<P, R>(&mut self, ty: Rtm, payload: P) -> Result<Vec<R>, NetlinkFailure>
    where
        P: Size + ToBytes + Clone,
        R: FromBytesWithInput<Input = usize>,
    {
        for _ in 0..DUMP_ATTEMPTS {
            if let Some(replies) = self.dump_once(ty, payload.clone()).await? {
                return Ok(replies);
            }
            debug!(?ty, "rtnetlink dump interrupted; retrying");
        }
        Err(NetlinkFailure::DumpInterrupted)
    }

    async fn dump_once<P, R>(
        &mut self,
        ty: Rtm,
        payload: P,
    ) -> Result<Option<Vec<R>>, NetlinkFailure>
    where
        P: Size + ToBytes,
        R: FromBytesWithInput<Input = usize>,
    {
        let seq = self.send(ty, NlmF::DUMP, payload).await?;
        self.unfinished_dump = Some(seq);
        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            for msg in self.receive().await? {
                let msg = msg?;
                if *msg.nl_seq() != seq {
                    continue;
                }
                interrupted |= msg.nl_flags().contains(NlmF::DUMP_INTR);
                let done = *msg.nl_type() == u16::from(Nlmsg::Done);
                if ends_dump(&msg) {
                    self.unfinished_dump = None;
                }
                match msg.nl_payload() {
                    NlPayload::Err(err) => return Err(NetlinkFailure::refused(err)),
                    NlPayload::DumpExtAck(err) if *err.error() != 0 => {
                        return Err(NetlinkFailure::refused(err))
                    }
                    NlPayload::Payload(body) if !done => replies.push(decode(body)?),
                    _ => {}
                }
                if done {
                    return Ok((!interrupted).then_some(replies));
                }
            }
        }
    }

    /// Waits for the next datagram of multicast notifications and returns its messages.
    /// An overrun surfaces as [`NetlinkFailure::Socket`] carrying ENOBUFS.
    pub(crate) async fn notifications(
        &mut self,
    ) -> Result<Vec<Nlmsghdr<u16, Buffer>>, NetlinkFailure> {
        Ok(self
            .receive()
            .await?
            .into_iter()
            .collect::<Result<_, _>>()?)
    }

    /// The messages of the next datagram, whichever exchange they belong to, each decoded on
    /// its own: an exchange acts on those before a malformed one.
    async fn receive(
        &mut self,
    ) -> Result<Vec<Result<Nlmsghdr<u16, Buffer>, SocketError>>, NetlinkFailure> {
        let (messages, _) = self.socket.recv::<u16, Buffer>().await?;
        Ok(messages.into_iter().collect())
    }

    /// Looks an interface up by name; `None` if there is none.
    pub(crate) async fn link_by_name(
        &mut self,
        name: &str,
    ) -> Result<Option<LinkRecord>, NetlinkFailure> {
        let mut attrs = RtBuffer::new();
        attrs.push(name_attr(name)?);
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .rtattrs(attrs)
            .build()
            .map_err(encode_err)?;
        match self
            .request_replies::<_, Ifinfomsg>(Rtm::Getlink, NlmF::empty(), msg)
            .await
        {
            Ok(replies) => Ok(replies.first().map(LinkRecord::from_message)),
            Err(err) if err.errno() == Some(libc::ENODEV) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Dumps the addresses of one interface (`Some(index)`) or of all of them.
    pub(crate) async fn addresses(
        &mut self,
        interface_index: Option<u32>,
    ) -> Result<Vec<AddressRecord>, NetlinkFailure> {
        let request = IfaddrmsgBuilder::default()
            .ifa_family(RtAddrFamily::Unspecified)
            .ifa_prefixlen(0)
            .ifa_scope(RtScope::Universe)
            .ifa_index(interface_index.unwrap_or(0))
            .build()
            .map_err(encode_err)?;
        let messages: Vec<Ifaddrmsg> = self.dump(Rtm::Getaddr, request).await?;
        Ok(messages
            .iter()
            .filter_map(AddressRecord::from_message)
            .filter(|record| interface_index.is_none_or(|index| record.interface_index == index))
            .collect())
    }

    /// Dumps the routes of one family in the main table.
    pub(crate) async fn main_routes(
        &mut self,
        family: RouteFamily,
    ) -> Result<Vec<RouteRecord>, NetlinkFailure> {
        let request = RtmsgBuilder::default()
            .rtm_family(match family {
                RouteFamily::Ipv4 => RtAddrFamily::Inet,
                RouteFamily::Ipv6 => RtAddrFamily::Inet6,
            })
            .rtm_dst_len(0)
            .rtm_src_len(0)
            .rtm_tos(0)
            // With strict checking the kernel dumps this table only; without, all of them.
            .rtm_table(RtTable::Main)
            .rtm_protocol(Rtprot::Unspec)
            .rtm_scope(RtScope::Universe)
            .rtm_type(Rtn::Unspec)
            .build()
            .map_err(encode_err)?;
        let messages: Vec<Rtmsg> = self.dump(Rtm::Getroute, request).await?;
        Ok(messages
            .iter()
            .filter_map(RouteRecord::from_message)
            .filter(|route| route.family == family && route.table == RT_TABLE_MAIN)
            .collect())
    }
}

/// The IFLA_IFNAME attribute naming interface `name`.
pub(crate) fn name_attr(name: &str) -> Result<Rtattr<Ifla, Buffer>, NetlinkFailure> {
    RtattrBuilder::default()
        .rta_type(Ifla::Ifname)
        .rta_payload(name)
        .build()
        .map_err(encode_err)
}

/// Whether `msg` is the last message of a dump: NLMSG_DONE, or an error instead of the dump.
fn ends_dump(msg: &Nlmsghdr<u16, Buffer>) -> bool {
    *msg.nl_type() == u16::from(Nlmsg::Done) || matches!(msg.nl_payload(), NlPayload::Err(_))
}

/// Decodes the body of a message (a reply or a notification).
pub(crate) fn decode<R>(body: &Buffer) -> Result<R, NetlinkFailure>
where
    R: FromBytesWithInput<Input = usize>,
{
    let bytes = body.as_ref();
    Ok(R::from_bytes_with_input(
        &mut Cursor::new(bytes),
        bytes.len(),
    )?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::Ipv4Addr;
    use std::net::Ipv6Addr;

    use super::*;

    /// RTM_NEWADDR body for 192.0.2.1/24 on a point-to-point link: IFA_ADDRESS is the peer,
    /// IFA_LOCAL is ours.
    #[rustfmt::skip]
    const PEER_V4: [u8; 24] = [
        2, 24, 0x80, 0, 3, 0, 0, 0,      // AF_INET, /24, PERMANENT, scope universe, index 3
        8, 0, 1, 0, 192, 0, 2, 99,        // IFA_ADDRESS 192.0.2.99
        8, 0, 2, 0, 192, 0, 2, 1,         // IFA_LOCAL 192.0.2.1
    ];

    /// RTM_NEWADDR body for fe80::1/64 on interface 7: IFA_ADDRESS only, scope link.
    #[rustfmt::skip]
    const LINK_LOCAL_V6: [u8; 28] = [
        10, 64, 0x80, 253, 7, 0, 0, 0,   // AF_INET6, /64, PERMANENT, scope link, index 7
        20, 0, 1, 0,                      // IFA_ADDRESS
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];

    /// RTM_NEWROUTE body for `default via 192.0.2.254 dev 3 src 192.0.2.1 metric 100` in the
    /// main table.
    #[rustfmt::skip]
    const DEFAULT_V4: [u8; 52] = [
        2, 0, 0, 0, 254, 3, 0, 1,        // AF_INET, dst_len 0, main, boot, universe, unicast
        0, 0, 0, 0,                       // flags
        8, 0, 15, 0, 254, 0, 0, 0,        // RTA_TABLE 254
        8, 0, 6, 0, 100, 0, 0, 0,         // RTA_PRIORITY 100
        8, 0, 7, 0, 192, 0, 2, 1,         // RTA_PREFSRC 192.0.2.1
        8, 0, 5, 0, 192, 0, 2, 254,       // RTA_GATEWAY 192.0.2.254
        8, 0, 4, 0, 3, 0, 0, 0,           // RTA_OIF 3
    ];

    #[test]
    fn route_record_reads_a_default_route() {
        let msg = Rtmsg::from_bytes_with_input(&mut Cursor::new(&DEFAULT_V4[..]), DEFAULT_V4.len())
            .unwrap();
        assert_eq!(
            RouteRecord::from_message(&msg),
            Some(RouteRecord {
                family: RouteFamily::Ipv4,
                destination_len: 0,
                table: RT_TABLE_MAIN,
                kind: RTN_UNICAST,
                output_interface: Some(3),
                preferred_source: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
                metric: 100,
            })
        );
    }

    #[test]
    fn the_first_next_hop_gives_a_multipath_routes_interface() {
        // struct rtnexthop: len 8, flags 0, hops 0, ifindex 7; then a second one, ifindex 9.
        let payload = [8, 0, 0, 0, 7, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0];
        assert_eq!(first_next_hop_interface(&payload), Some(7));
        assert_eq!(first_next_hop_interface(&payload[..3]), None);
    }

    fn parse(bytes: &[u8]) -> Ifaddrmsg {
        Ifaddrmsg::from_bytes_with_input(&mut Cursor::new(bytes), bytes.len()).unwrap()
    }

    #[test]
    fn address_record_prefers_the_local_address() {
        assert_eq!(
            AddressRecord::from_message(&parse(&PEER_V4)),
            Some(AddressRecord {
                interface_index: 3,
                address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                prefix_len: 24,
                scope: 0,
            })
        );
    }

    #[test]
    fn address_record_reads_ipv6_from_ifa_address() {
        assert_eq!(
            AddressRecord::from_message(&parse(&LINK_LOCAL_V6)),
            Some(AddressRecord {
                interface_index: 7,
                address: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
                prefix_len: 64,
                scope: 253,
            })
        );
    }

    #[test]
    fn address_record_rejects_a_family_mismatch() {
        let mut bytes = PEER_V4;
        bytes[0] = 10; // claims AF_INET6 but carries 4-byte addresses
        assert_eq!(AddressRecord::from_message(&parse(&bytes)), None);
    }

    /// Runs against the host's own namespace: rtnetlink address dumps need no IPVS or dummy.
    #[tokio::test]
    async fn a_walked_away_dump_is_read_to_its_end_before_the_next_request() {
        let mut socket = RouteSocket::open().expect("rtnetlink socket");
        let request = IfaddrmsgBuilder::default()
            .ifa_family(RtAddrFamily::Unspecified)
            .ifa_prefixlen(0)
            .ifa_scope(RtScope::Universe)
            .ifa_index(0)
            .build()
            .unwrap();
        // What a dump future dropped right after sending leaves behind.
        let abandoned = socket
            .send(Rtm::Getaddr, NlmF::DUMP, request)
            .await
            .unwrap();
        socket.unfinished_dump = Some(abandoned);

        let records = socket
            .addresses(None)
            .await
            .expect("dump after abandoned dump");
        assert_eq!(socket.unfinished_dump, None);
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(
            records
                .iter()
                .any(|r| r.address == loopback && r.scope == 254 && r.prefix_len == 8),
            "no 127.0.0.1/8 scope host in {records:?}"
        );
        // Replies of the abandoned dump were not taken for this one's.
        let unique: BTreeSet<_> = records
            .iter()
            .map(|r| (r.interface_index, r.address))
            .collect();
        assert_eq!(unique.len(), records.len(), "duplicates in {records:?}");

        // A link lookup works on the same socket afterwards; a missing name is None.
        assert!(socket.link_by_name("lo").await.unwrap().is_some());
        assert!(socket.link_by_name("no-such-link").await.unwrap().is_none());
    }
}
