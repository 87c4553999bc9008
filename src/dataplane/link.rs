//! The dummy interface that holds service addresses (`kube-ipvs0`): ipvsd's policy for it
//! (create it if missing, refuse a non-dummy of that name, bind and unbind host addresses). The
//! rtnetlink exchange itself is [`super::rtnetlink`].
//!
//! IPVS only sees packets addressed to the node itself, so every cluster IP, external IP and
//! load-balancer IP must be a local address. Binding them to a dummy interface that stays DOWN
//! makes them local without answering ARP/ND for them on any real link and without a route
//! pointing anywhere.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex as StdMutex;

use neli::consts::nl::NlmF;
use neli::consts::rtnl::{Ifa, IfaF, Ifla, IflaInfo, RtAddrFamily, RtScope, Rtm};
use neli::rtnl::{Ifaddrmsg, IfaddrmsgBuilder, Ifinfomsg, IfinfomsgBuilder, RtattrBuilder};
use neli::types::{Buffer, RtBuffer};
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use super::rtnetlink::{encode_err, name_attr, LinkRecord, NetlinkFailure, RouteSocket};

/// Longest interface name the kernel accepts (IFNAMSIZ minus the terminating NUL).
const MAX_INTERFACE_NAME_LEN: usize = 15;

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
    attrs.push(name_attr(name)?);
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
    use neli::{FromBytesWithInput, ToBytes};
    use std::io::{self, Cursor};
    use std::net::Ipv4Addr;

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
