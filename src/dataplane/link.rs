//! The dummy interface that holds service addresses (`kube-ipvs0`), and the rtnetlink exchange
//! that it and the node address listing share.
//!
//! IPVS only sees packets addressed to the node itself, so every cluster IP, external IP and
//! load-balancer IP must be a local address. Binding them to a dummy interface that stays DOWN
//! makes them local without answering ARP/ND for them on any real link and without a route
//! pointing anywhere.
//!
//! The exchange is written directly on neli's tokio socket rather than on its router: a
//! request/reply pair must be cancellable (a dropped future leaves only replies with an old
//! sequence number, which the next exchange skips), and the address watcher must see the
//! kernel's ENOBUFS overrun report, which the router does not pass on to multicast listeners.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Cursor};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex as StdMutex;

use neli::consts::nl::{NlmF, Nlmsg, NlmsgerrAttr};
use neli::consts::rtnl::{Ifa, IfaF, Ifla, IflaInfo, RtAddrFamily, RtScope, Rtm};
use neli::consts::socket::NlFamily;
use neli::err::{BuilderError, DeError, Nlmsgerr, SocketError};
use neli::nl::{NlPayload, Nlmsghdr, NlmsghdrBuilder};
use neli::rtnl::{Ifaddrmsg, IfaddrmsgBuilder, Ifinfomsg, IfinfomsgBuilder, RtattrBuilder};
use neli::socket::asynchronous::NlSocketHandle;
use neli::types::{Buffer, RtBuffer};
use neli::utils::Groups;
use neli::{FromBytesWithInput, Size, ToBytes};
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

/// Requests sent before their acks are read: the acks of a window (and an error each, at worst)
/// must fit the socket's receive buffer.
const REQUEST_WINDOW: usize = 128;

/// Longest interface name the kernel accepts (IFNAMSIZ minus the terminating NUL).
const MAX_INTERFACE_NAME_LEN: usize = 15;

/// How often a dump that the kernel marks as interrupted (NLM_F_DUMP_INTR: the table changed
/// while it was being read) is retried before giving up.
const DUMP_ATTEMPTS: usize = 5;

/// Why one rtnetlink exchange failed; [`LinkError`] says what was being done.
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

fn encode_err<E>(err: E) -> NetlinkFailure
where
    BuilderError: From<E>,
{
    NetlinkFailure::Encode(BuilderError::from(err))
}

/// Errors of the dummy interface and node address code; each names the interface or address.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The interface name cannot be a Linux interface name.
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// No rtnetlink socket could be opened.
    #[error("cannot open an rtnetlink socket")]
    Open(#[source] NetlinkFailure),
    /// An rtnetlink request failed; `action` names what and on which object.
    #[error("{action} failed")]
    Netlink {
        action: String,
        #[source]
        source: NetlinkFailure,
    },
    /// An interface of that name exists but is not a dummy, so it is not ours to bind to.
    #[error(
        "interface {name} exists but is not a dummy interface (kind: {})",
        kind.as_deref().unwrap_or("none, a physical device")
    )]
    NotDummy { name: String, kind: Option<String> },
    /// The interface was created but a lookup right after did not find it.
    #[error("dummy interface {name} was created but is gone again")]
    Vanished { name: String },
}

impl LinkError {
    pub(crate) fn netlink_action(
        action: impl Into<String>,
    ) -> impl FnOnce(NetlinkFailure) -> LinkError {
        let action = action.into();
        move |source| LinkError::Netlink { action, source }
    }
}

/// Checks a name the way the kernel's `dev_valid_name` does, so a bad name is reported with
/// its reason instead of as a bare EINVAL.
pub(crate) fn validate_interface_name(name: &str) -> Result<(), LinkError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_INTERFACE_NAME_LEN {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("reserved")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        Some("contains '/', ':', NUL or whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LinkError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
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

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn ip_octets(addr: IpAddr) -> Buffer {
    match addr {
        IpAddr::V4(a) => Buffer::from(&a.octets()[..]),
        IpAddr::V6(a) => Buffer::from(&a.octets()[..]),
    }
}

fn host_prefix_len(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn family_of(addr: IpAddr) -> RtAddrFamily {
    match addr {
        IpAddr::V4(_) => RtAddrFamily::Inet,
        IpAddr::V6(_) => RtAddrFamily::Inet6,
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
    fn from_message(msg: &Ifinfomsg) -> LinkRecord {
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

/// An rtnetlink socket with its own sequence numbers. One request is in flight at a time
/// (`&mut self`); replies carrying another sequence number belong to an exchange whose future
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
            let (messages, _) = self.socket.recv::<u16, Buffer>().await?;
            for msg in messages {
                let msg: Nlmsghdr<u16, Buffer> = msg?;
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
            let (messages, _) = self.socket.recv::<u16, Buffer>().await?;
            for msg in messages {
                let msg: Nlmsghdr<u16, Buffer> = msg?;
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
                let (messages, _) = self.socket.recv::<u16, Buffer>().await?;
                for msg in messages {
                    let msg: Nlmsghdr<u16, Buffer> = msg?;
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
            let (messages, _) = self.socket.recv::<u16, Buffer>().await?;
            for msg in messages {
                let msg: Nlmsghdr<u16, Buffer> = msg?;
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
        let (messages, _) = self.socket.recv::<u16, Buffer>().await?;
        let mut out = Vec::new();
        for msg in messages {
            out.push(msg?);
        }
        Ok(out)
    }

    /// Looks an interface up by name; `None` if there is none.
    pub(crate) async fn link_by_name(
        &mut self,
        name: &str,
    ) -> Result<Option<LinkRecord>, NetlinkFailure> {
        let mut attrs = RtBuffer::new();
        attrs.push(
            RtattrBuilder::default()
                .rta_type(Ifla::Ifname)
                .rta_payload(name)
                .build()
                .map_err(encode_err)?,
        );
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
}

/// Whether `msg` is the last message of a dump: NLMSG_DONE, or an error instead of the dump.
fn ends_dump(msg: &Nlmsghdr<u16, Buffer>) -> bool {
    *msg.nl_type() == u16::from(Nlmsg::Done) || matches!(msg.nl_payload(), NlPayload::Err(_))
}

fn decode<R>(body: &Buffer) -> Result<R, NetlinkFailure>
where
    R: FromBytesWithInput<Input = usize>,
{
    let bytes = body.as_ref();
    Ok(R::from_bytes_with_input(
        &mut Cursor::new(bytes),
        bytes.len(),
    )?)
}

/// ipvsd's dummy interface. It keeps one rtnetlink socket for all its requests, so binding a
/// thousand addresses is a thousand request/ack pairs on one socket.
pub struct DummyLink {
    name: String,
    /// The interface's index; it changes when the interface is deleted behind ipvsd's back and
    /// recreated (see [`DummyLink::ensure_present`]).
    index: AtomicU32,
    socket: Mutex<RouteSocket>,
    /// Prefix lengths seen by the last [`DummyLink::addresses`]: IPv6 deletion must name the
    /// prefix length an address was added with, and addresses added by someone else may not
    /// be host routes.
    prefix_lens: StdMutex<HashMap<IpAddr, u8>>,
}

impl std::fmt::Debug for DummyLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DummyLink")
            .field("name", &self.name)
            .field("index", &self.index())
            .finish_non_exhaustive()
    }
}

impl DummyLink {
    /// Finds the dummy interface `name`, creating it (type dummy, left DOWN like kube-ipvs0)
    /// if missing.
    pub async fn ensure(name: &str) -> Result<DummyLink, LinkError> {
        validate_interface_name(name)?;
        let mut socket = RouteSocket::open().map_err(LinkError::Open)?;
        if let Some(link) = Self::lookup(&mut socket, name).await? {
            return Ok(Self::from_parts(name, link.index, socket));
        }
        Self::create(&mut socket, name).await?;
        match Self::lookup(&mut socket, name).await? {
            Some(link) => Ok(Self::from_parts(name, link.index, socket)),
            None => Err(LinkError::Vanished {
                name: name.to_owned(),
            }),
        }
    }

    /// Finds the dummy interface `name` without creating it; `Ok(None)` if it is missing.
    pub async fn find(name: &str) -> Result<Option<DummyLink>, LinkError> {
        validate_interface_name(name)?;
        let mut socket = RouteSocket::open().map_err(LinkError::Open)?;
        Ok(Self::lookup(&mut socket, name)
            .await?
            .map(|link| Self::from_parts(name, link.index, socket)))
    }

    fn from_parts(name: &str, index: u32, socket: RouteSocket) -> DummyLink {
        DummyLink {
            name: name.to_owned(),
            index: AtomicU32::new(index),
            socket: Mutex::new(socket),
            prefix_lens: StdMutex::new(HashMap::new()),
        }
    }

    /// Looks `name` up and refuses an interface of another kind: binding service addresses to
    /// a real link would make the node answer ARP for them there.
    async fn lookup(socket: &mut RouteSocket, name: &str) -> Result<Option<LinkRecord>, LinkError> {
        let link = socket
            .link_by_name(name)
            .await
            .map_err(LinkError::netlink_action(format!(
                "look up interface {name}"
            )))?;
        match link {
            Some(link) if link.kind.as_deref() != Some("dummy") => Err(LinkError::NotDummy {
                name: name.to_owned(),
                kind: link.kind,
            }),
            other => Ok(other),
        }
    }

    async fn create(socket: &mut RouteSocket, name: &str) -> Result<(), LinkError> {
        let action = || format!("create dummy interface {name}");
        let msg = new_dummy_message(name).map_err(LinkError::netlink_action(action()))?;
        match socket
            .request(Rtm::Newlink, NlmF::CREATE | NlmF::EXCL, msg)
            .await
        {
            Ok(()) => {
                info!(interface = name, "created dummy interface");
                Ok(())
            }
            // Someone created it between our lookup and this request; the lookup after
            // decides whether it is usable.
            Err(err) if err.errno() == Some(libc::EEXIST) => Ok(()),
            Err(err) => Err(LinkError::netlink_action(action())(err)),
        }
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface's hardware address (random, chosen by the kernel when it was created).
    pub async fn hardware_address(&self) -> Result<Option<Vec<u8>>, LinkError> {
        let mut socket = self.socket.lock().await;
        Ok(Self::lookup(&mut socket, &self.name)
            .await?
            .and_then(|link| link.hardware_address))
    }

    /// The interface index.
    pub fn index(&self) -> u32 {
        self.index.load(Ordering::Relaxed)
    }

    /// Makes sure the interface still exists, creating it again if it was deleted behind
    /// ipvsd's back (by hand, or by `kube-proxy --cleanup`): its addresses went with it, and the
    /// caller binds them again. Returns whether it had to be found or created anew.
    pub async fn ensure_present(&self) -> Result<bool, LinkError> {
        let mut socket = self.socket.lock().await;
        let found = Self::lookup(&mut socket, &self.name).await?;
        let index = match found {
            Some(link) if link.index == self.index() => return Ok(false),
            Some(link) => {
                warn!(interface = %self.name, old_index = self.index(), index = link.index, "the dummy interface was replaced; using the new one");
                link.index
            }
            None => {
                warn!(interface = %self.name, "the dummy interface is gone; creating it again");
                Self::create(&mut socket, &self.name).await?;
                match Self::lookup(&mut socket, &self.name).await? {
                    Some(link) => link.index,
                    None => {
                        return Err(LinkError::Vanished {
                            name: self.name.clone(),
                        })
                    }
                }
            }
        };
        self.index.store(index, Ordering::Relaxed);
        self.prefix_lens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(true)
    }

    /// Addresses bound to the interface. ipvsd binds host addresses (/32, /128); any other
    /// address found here is listed too, so the caller can remove what it did not bind. An
    /// interface deleted since is created again first, and reads as holding nothing.
    pub async fn addresses(&self) -> Result<BTreeSet<IpAddr>, LinkError> {
        self.ensure_present().await?;
        let index = self.index();
        let records = self
            .socket
            .lock()
            .await
            .addresses(Some(index))
            .await
            .map_err(LinkError::netlink_action(format!(
                "list addresses of {}",
                self.name
            )))?;
        let mut prefix_lens = self.prefix_lens.lock().unwrap_or_else(|e| e.into_inner());
        prefix_lens.clear();
        prefix_lens.extend(records.iter().map(|r| (r.address, r.prefix_len)));
        Ok(records.into_iter().map(|r| r.address).collect())
    }

    /// Binds `addr` as a host address (/32 or /128). Already bound is fine.
    pub async fn bind(&self, addr: IpAddr) -> Result<(), LinkError> {
        one(self.bind_all(&[addr]).await?)
    }

    /// Binds each address as a host address (/32 or /128), many requests in flight on one
    /// socket; one outcome per address, in order. Already bound is fine. `Err` when the socket
    /// itself failed.
    pub async fn bind_all(
        &self,
        addrs: &[IpAddr],
    ) -> Result<Vec<Result<(), LinkError>>, LinkError> {
        // An interface deleted meanwhile makes each bind fail with ENODEV: the sync counts the
        // failures and reads again, and that read creates the interface anew.
        let index = self.index();
        let action =
            |addr: IpAddr| format!("bind {addr}/{} to {}", host_prefix_len(addr), self.name);
        let messages = addrs.iter().map(|&addr| {
            // IPv6 addresses skip duplicate address detection: on a DOWN link it would never
            // run and the address would stay tentative.
            let flags = match addr {
                IpAddr::V4(_) => IfaF::empty(),
                IpAddr::V6(_) => IfaF::NODAD,
            };
            address_message(index, addr, host_prefix_len(addr), flags, true)
        });
        let outcomes = self
            .change_addresses(addrs, messages, Rtm::Newaddr, NlmF::CREATE | NlmF::EXCL)
            .await?;
        Ok(addrs
            .iter()
            .zip(outcomes)
            .map(|(&addr, outcome)| {
                match outcome {
                    Ok(()) => debug!(interface = %self.name, %addr, "bound address"),
                    Err(err) if err.errno() == Some(libc::EEXIST) => {}
                    Err(err) => return Err(LinkError::netlink_action(action(addr))(err)),
                }
                self.remember_prefix_len(addr, Some(host_prefix_len(addr)));
                Ok(())
            })
            .collect())
    }

    /// Removes `addr` from the interface. Not bound is fine.
    pub async fn unbind(&self, addr: IpAddr) -> Result<(), LinkError> {
        one(self.unbind_all(&[addr]).await?)
    }

    /// Removes each address from the interface, many requests in flight on one socket; one
    /// outcome per address, in order. Not bound is fine. `Err` when the socket itself failed.
    pub async fn unbind_all(
        &self,
        addrs: &[IpAddr],
    ) -> Result<Vec<Result<(), LinkError>>, LinkError> {
        let index = self.index();
        let prefix_lens: Vec<u8> = {
            let known = self.prefix_lens.lock().unwrap_or_else(|e| e.into_inner());
            addrs
                .iter()
                .map(|a| known.get(a).copied().unwrap_or_else(|| host_prefix_len(*a)))
                .collect()
        };
        let messages = addrs.iter().zip(&prefix_lens).map(|(&addr, &prefix_len)| {
            // IPv4 deletion without IFA_ADDRESS matches the address whatever its prefix length.
            address_message(index, addr, prefix_len, IfaF::empty(), addr.is_ipv6())
        });
        let outcomes = self
            .change_addresses(addrs, messages, Rtm::Deladdr, NlmF::empty())
            .await?;
        Ok(addrs
            .iter()
            .zip(prefix_lens)
            .zip(outcomes)
            .map(|((&addr, prefix_len), outcome)| {
                match outcome {
                    Ok(()) => debug!(interface = %self.name, %addr, "unbound address"),
                    Err(err) if err.errno() == Some(libc::EADDRNOTAVAIL) => {}
                    Err(err) => {
                        let action = format!("unbind {addr}/{prefix_len} from {}", self.name);
                        return Err(LinkError::netlink_action(action)(err));
                    }
                }
                self.remember_prefix_len(addr, None);
                Ok(())
            })
            .collect())
    }

    /// Sends the address messages that could be built, all on the socket at once; one outcome
    /// per address (a message that could not be built is its own failure).
    async fn change_addresses(
        &self,
        addrs: &[IpAddr],
        messages: impl Iterator<Item = Result<Ifaddrmsg, NetlinkFailure>>,
        ty: Rtm,
        flags: NlmF,
    ) -> Result<Vec<Result<(), NetlinkFailure>>, LinkError> {
        let mut outcomes: Vec<Option<Result<(), NetlinkFailure>>> = Vec::new();
        let mut built = Vec::new();
        let mut sent = Vec::new();
        for (i, message) in messages.enumerate() {
            match message {
                Ok(m) => {
                    built.push(m);
                    sent.push(i);
                    outcomes.push(None);
                }
                Err(e) => outcomes.push(Some(Err(e))),
            }
        }
        let answers = self
            .socket
            .lock()
            .await
            .requests(ty, flags, built)
            .await
            .map_err(LinkError::netlink_action(format!(
                "change {} addresses of {}",
                addrs.len(),
                self.name
            )))?;
        for (i, answer) in sent.into_iter().zip(answers) {
            outcomes[i] = Some(answer);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("each address has an outcome"))
            .collect())
    }

    fn remember_prefix_len(&self, addr: IpAddr, prefix_len: Option<u8>) {
        let mut prefix_lens = self.prefix_lens.lock().unwrap_or_else(|e| e.into_inner());
        match prefix_len {
            Some(len) => prefix_lens.insert(addr, len),
            None => prefix_lens.remove(&addr),
        };
    }
}

/// RTM_NEWLINK body creating dummy interface `name`. No IFF_UP in `ifi_change`: the link
/// stays DOWN, as kube-proxy leaves kube-ipvs0, so it never takes part in ARP or ND.
fn new_dummy_message(name: &str) -> Result<Ifinfomsg, NetlinkFailure> {
    let mut link_info = RtBuffer::new();
    link_info.push(
        RtattrBuilder::default()
            .rta_type(IflaInfo::Kind)
            .rta_payload("dummy")
            .build()
            .map_err(encode_err)?,
    );
    let mut attrs = RtBuffer::new();
    attrs.push(
        RtattrBuilder::default()
            .rta_type(Ifla::Ifname)
            .rta_payload(name)
            .build()
            .map_err(encode_err)?,
    );
    attrs.push(
        RtattrBuilder::default()
            .rta_type(Ifla::Linkinfo)
            .rta_payload(link_info)
            .build()
            .map_err(encode_err)?,
    );
    IfinfomsgBuilder::default()
        .ifi_family(RtAddrFamily::Unspecified)
        .rtattrs(attrs)
        .build()
        .map_err(encode_err)
}

/// RTM_NEWADDR/RTM_DELADDR body for `addr` on interface `index`.
/// The outcome of a batch of one.
fn one(mut outcomes: Vec<Result<(), LinkError>>) -> Result<(), LinkError> {
    outcomes.pop().expect("one outcome for one address")
}

fn address_message(
    index: u32,
    addr: IpAddr,
    prefix_len: u8,
    flags: IfaF,
    with_address: bool,
) -> Result<Ifaddrmsg, NetlinkFailure> {
    let mut attrs = RtBuffer::new();
    attrs.push(
        RtattrBuilder::default()
            .rta_type(Ifa::Local)
            .rta_payload(ip_octets(addr))
            .build()
            .map_err(encode_err)?,
    );
    if with_address {
        attrs.push(
            RtattrBuilder::default()
                .rta_type(Ifa::Address)
                .rta_payload(ip_octets(addr))
                .build()
                .map_err(encode_err)?,
        );
    }
    IfaddrmsgBuilder::default()
        .ifa_family(family_of(addr))
        .ifa_prefixlen(prefix_len)
        .ifa_flags(flags)
        .ifa_scope(RtScope::Universe)
        .ifa_index(index)
        .rtattrs(attrs)
        .build()
        .map_err(encode_err)
}

impl DummyLink {
    /// Deletes the interface, and with it every address bound to it. Already gone is fine.
    pub async fn delete(self) -> Result<(), LinkError> {
        let action = || format!("delete interface {}", self.name);
        let msg = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .ifi_index(i32::try_from(self.index()).unwrap_or(i32::MAX))
            .build()
            .map_err(|e| LinkError::netlink_action(action())(encode_err(e)))?;
        let result = self
            .socket
            .lock()
            .await
            .request(Rtm::Dellink, NlmF::empty(), msg)
            .await;
        match result {
            Ok(()) => {
                info!(interface = %self.name, "deleted dummy interface");
                Ok(())
            }
            Err(err) if err.errno() == Some(libc::ENODEV) => Ok(()),
            Err(err) => Err(LinkError::netlink_action(action())(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn interface_names_are_checked_like_the_kernel_does() {
        for good in ["kube-ipvs0", "a", "eth0.100", "fifteen-chars-x"] {
            assert!(validate_interface_name(good).is_ok(), "{good}");
        }
        for (bad, reason) in [
            ("", "empty"),
            ("sixteen-chars-xx", "longer than 15 bytes"),
            ("..", "reserved"),
            ("a/b", "contains '/', ':', NUL or whitespace"),
            ("a b", "contains '/', ':', NUL or whitespace"),
            ("eth0:1", "contains '/', ':', NUL or whitespace"),
        ] {
            match validate_interface_name(bad) {
                Err(LinkError::InvalidName { name, reason: r }) => {
                    assert_eq!(name, bad);
                    assert_eq!(r, reason, "{bad:?}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

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

    fn encode(msg: &impl ToBytes) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        msg.to_bytes(&mut buf).unwrap();
        buf.into_inner()
    }

    /// RTM_NEWLINK body for a dummy named kube-ipvs0, as `ip link add kube-ipvs0 type dummy`
    /// sends it (minus ip's extra attributes).
    #[rustfmt::skip]
    const NEW_DUMMY: [u8; 48] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    // AF_UNSPEC, index 0, no flags
        15, 0, 3, 0, b'k', b'u', b'b', b'e', b'-', b'i', b'p', b'v', b's', b'0', 0, 0, // IFLA_IFNAME
        16, 0, 18, 0,                                         // IFLA_LINKINFO
        10, 0, 1, 0, b'd', b'u', b'm', b'm', b'y', 0, 0, 0,  //   IFLA_INFO_KIND "dummy"
    ];

    #[test]
    fn new_dummy_message_encodes_name_and_kind() {
        assert_eq!(encode(&new_dummy_message("kube-ipvs0").unwrap()), NEW_DUMMY);
    }

    #[test]
    fn link_record_reads_the_kind() {
        let mut bytes = NEW_DUMMY;
        bytes[4] = 9; // ifi_index
        let msg =
            Ifinfomsg::from_bytes_with_input(&mut Cursor::new(&bytes[..]), bytes.len()).unwrap();
        let link = LinkRecord::from_message(&msg);
        assert_eq!(link.index, 9);
        assert_eq!(link.kind.as_deref(), Some("dummy"));
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

    #[test]
    fn bind_message_encodes_a_host_address_with_local_and_address() {
        let msg = address_message(
            9,
            IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)),
            32,
            IfaF::empty(),
            true,
        )
        .unwrap();
        #[rustfmt::skip]
        let expected: Vec<u8> = vec![
            2, 32, 0, 0, 9, 0, 0, 0,
            8, 0, 2, 0, 10, 96, 0, 10,   // IFA_LOCAL
            8, 0, 1, 0, 10, 96, 0, 10,   // IFA_ADDRESS
        ];
        assert_eq!(encode(&msg), expected);
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

    #[test]
    fn refusal_names_the_errno() {
        let err = NetlinkFailure::Refused {
            detail: String::new(),
            source: io::Error::from_raw_os_error(libc::EEXIST),
        };
        assert_eq!(err.errno(), Some(libc::EEXIST));
        let err = LinkError::Netlink {
            action: "bind 10.0.0.1/32 to kube-ipvs0".into(),
            source: err,
        };
        assert_eq!(err.to_string(), "bind 10.0.0.1/32 to kube-ipvs0 failed");
        let source = std::error::Error::source(&err).expect("source kept");
        assert_eq!(source.to_string(), "the kernel refused the request");
    }
}
