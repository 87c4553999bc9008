//! The IPVS generic-netlink messages, attribute by attribute, as `linux/ip_vs.h` lays them out.
//!
//! This layer is a faithful picture of the wire: every command and attribute of the uapi header
//! has a variant named after its constant, integers keep their wire width, attributes this crate
//! does not know are kept as `Other` so a newer kernel's replies still parse. There is one module
//! per nest ([`command`], [`service`], [`destination`], [`daemon`], [`stats`]), each with its
//! attribute constants, its attribute enum, the `From`/`TryFrom` conversions between those
//! attributes and the typed objects ([`crate::Service`], [`crate::Destination`], ...), and byte
//! fixtures of its own. The client only speaks through them:
//!
//! ```
//! use ipvs::message::{CmdAttr, IpvsCmd, IpvsMessage, SvcAttr};
//! use ipvs::{Protocol, Service, ServiceKey};
//!
//! let key = ServiceKey::Addr { address: "10.96.0.1".parse().unwrap(), protocol: Protocol::Tcp, port: 443 };
//! let attrs: Vec<SvcAttr> = (&Service::new(key, "rr")).into();
//! let message = IpvsMessage::new(IpvsCmd::NewService, vec![CmdAttr::Service(attrs.clone())]);
//! assert_eq!(Service::try_from(attrs.as_slice()).unwrap().key, key);
//! # let _ = message;
//! ```
//!
//! Parsing never panics: a reply the kernel (or a corrupt buffer) sends that does not fit the
//! layout is a [`DecodeError`] naming the attribute that was wrong (through netlink-packet-core's
//! [`ErrorContext`]).

pub mod command;
pub mod daemon;
pub mod destination;
#[cfg(test)]
mod fixtures;
mod frame;
mod nla;
mod reply;
pub mod service;
pub mod stats;
#[cfg(test)]
mod tests;

pub use command::CmdAttr;
pub use daemon::DaemonAttr;
pub use destination::DestAttr;
pub use frame::RawGenlFrame;
pub use nla::InetAddr;
pub use reply::{decode_datagram, decode_message, Reply};
pub use service::{SchedFlagsNla, SvcAttr};
pub use stats::{Stats64Attr, StatsAttr};

use netlink_packet_core::{
    DecodeError, Emitable, ErrorContext, NlaBuffer, NlasIterator, Parseable,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

/// `IPVS_GENL_NAME`: the name the family registers with the generic-netlink controller.
pub const IPVS_GENL_NAME: &str = "IPVS";
/// `IPVS_GENL_VERSION`.
pub const IPVS_GENL_VERSION: u8 = 1;

/// `IPVS_CMD_NEW_SERVICE`.
pub const IPVS_CMD_NEW_SERVICE: u8 = 1;
/// `IPVS_CMD_SET_SERVICE`.
pub const IPVS_CMD_SET_SERVICE: u8 = 2;
/// `IPVS_CMD_DEL_SERVICE`.
pub const IPVS_CMD_DEL_SERVICE: u8 = 3;
/// `IPVS_CMD_GET_SERVICE`.
pub const IPVS_CMD_GET_SERVICE: u8 = 4;
/// `IPVS_CMD_NEW_DEST`.
pub const IPVS_CMD_NEW_DEST: u8 = 5;
/// `IPVS_CMD_SET_DEST`.
pub const IPVS_CMD_SET_DEST: u8 = 6;
/// `IPVS_CMD_DEL_DEST`.
pub const IPVS_CMD_DEL_DEST: u8 = 7;
/// `IPVS_CMD_GET_DEST`.
pub const IPVS_CMD_GET_DEST: u8 = 8;
/// `IPVS_CMD_NEW_DAEMON`.
pub const IPVS_CMD_NEW_DAEMON: u8 = 9;
/// `IPVS_CMD_DEL_DAEMON`.
pub const IPVS_CMD_DEL_DAEMON: u8 = 10;
/// `IPVS_CMD_GET_DAEMON`.
pub const IPVS_CMD_GET_DAEMON: u8 = 11;
/// `IPVS_CMD_SET_CONFIG`.
pub const IPVS_CMD_SET_CONFIG: u8 = 12;
/// `IPVS_CMD_GET_CONFIG`.
pub const IPVS_CMD_GET_CONFIG: u8 = 13;
/// `IPVS_CMD_SET_INFO`: only ever sent by the kernel, as the reply to `GET_INFO`.
pub const IPVS_CMD_SET_INFO: u8 = 14;
/// `IPVS_CMD_GET_INFO`.
pub const IPVS_CMD_GET_INFO: u8 = 15;
/// `IPVS_CMD_ZERO`.
pub const IPVS_CMD_ZERO: u8 = 16;
/// `IPVS_CMD_FLUSH`.
pub const IPVS_CMD_FLUSH: u8 = 17;

/// The commands of the family, `IPVS_CMD_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IpvsCmd {
    /// `IPVS_CMD_NEW_SERVICE`: add a service; also the command of each service in a dump.
    NewService,
    /// `IPVS_CMD_SET_SERVICE`: edit a service.
    SetService,
    /// `IPVS_CMD_DEL_SERVICE`: delete a service.
    DelService,
    /// `IPVS_CMD_GET_SERVICE`: get one service, or dump all.
    GetService,
    /// `IPVS_CMD_NEW_DEST`: add a destination; also the command of each one in a dump.
    NewDest,
    /// `IPVS_CMD_SET_DEST`: edit a destination.
    SetDest,
    /// `IPVS_CMD_DEL_DEST`: delete a destination.
    DelDest,
    /// `IPVS_CMD_GET_DEST`: dump the destinations of a service.
    GetDest,
    /// `IPVS_CMD_NEW_DAEMON`: start a sync daemon; also the command of each one in a dump.
    NewDaemon,
    /// `IPVS_CMD_DEL_DAEMON`: stop a sync daemon.
    DelDaemon,
    /// `IPVS_CMD_GET_DAEMON`: dump the sync daemons.
    GetDaemon,
    /// `IPVS_CMD_SET_CONFIG`: set timeouts; also the reply to `GET_CONFIG`.
    SetConfig,
    /// `IPVS_CMD_GET_CONFIG`: get timeouts.
    GetConfig,
    /// `IPVS_CMD_SET_INFO`: the reply to `GET_INFO`.
    SetInfo,
    /// `IPVS_CMD_GET_INFO`: version and connection table size.
    GetInfo,
    /// `IPVS_CMD_ZERO`: zero the counters of one service, or of all.
    Zero,
    /// `IPVS_CMD_FLUSH`: delete every service.
    Flush,
    /// A command number this crate does not know.
    Other(u8),
}

impl From<IpvsCmd> for u8 {
    fn from(cmd: IpvsCmd) -> u8 {
        match cmd {
            IpvsCmd::NewService => IPVS_CMD_NEW_SERVICE,
            IpvsCmd::SetService => IPVS_CMD_SET_SERVICE,
            IpvsCmd::DelService => IPVS_CMD_DEL_SERVICE,
            IpvsCmd::GetService => IPVS_CMD_GET_SERVICE,
            IpvsCmd::NewDest => IPVS_CMD_NEW_DEST,
            IpvsCmd::SetDest => IPVS_CMD_SET_DEST,
            IpvsCmd::DelDest => IPVS_CMD_DEL_DEST,
            IpvsCmd::GetDest => IPVS_CMD_GET_DEST,
            IpvsCmd::NewDaemon => IPVS_CMD_NEW_DAEMON,
            IpvsCmd::DelDaemon => IPVS_CMD_DEL_DAEMON,
            IpvsCmd::GetDaemon => IPVS_CMD_GET_DAEMON,
            IpvsCmd::SetConfig => IPVS_CMD_SET_CONFIG,
            IpvsCmd::GetConfig => IPVS_CMD_GET_CONFIG,
            IpvsCmd::SetInfo => IPVS_CMD_SET_INFO,
            IpvsCmd::GetInfo => IPVS_CMD_GET_INFO,
            IpvsCmd::Zero => IPVS_CMD_ZERO,
            IpvsCmd::Flush => IPVS_CMD_FLUSH,
            IpvsCmd::Other(n) => n,
        }
    }
}

impl From<u8> for IpvsCmd {
    fn from(n: u8) -> IpvsCmd {
        match n {
            IPVS_CMD_NEW_SERVICE => IpvsCmd::NewService,
            IPVS_CMD_SET_SERVICE => IpvsCmd::SetService,
            IPVS_CMD_DEL_SERVICE => IpvsCmd::DelService,
            IPVS_CMD_GET_SERVICE => IpvsCmd::GetService,
            IPVS_CMD_NEW_DEST => IpvsCmd::NewDest,
            IPVS_CMD_SET_DEST => IpvsCmd::SetDest,
            IPVS_CMD_DEL_DEST => IpvsCmd::DelDest,
            IPVS_CMD_GET_DEST => IpvsCmd::GetDest,
            IPVS_CMD_NEW_DAEMON => IpvsCmd::NewDaemon,
            IPVS_CMD_DEL_DAEMON => IpvsCmd::DelDaemon,
            IPVS_CMD_GET_DAEMON => IpvsCmd::GetDaemon,
            IPVS_CMD_SET_CONFIG => IpvsCmd::SetConfig,
            IPVS_CMD_GET_CONFIG => IpvsCmd::GetConfig,
            IPVS_CMD_SET_INFO => IpvsCmd::SetInfo,
            IPVS_CMD_GET_INFO => IpvsCmd::GetInfo,
            IPVS_CMD_ZERO => IpvsCmd::Zero,
            IPVS_CMD_FLUSH => IpvsCmd::Flush,
            other => IpvsCmd::Other(other),
        }
    }
}

impl IpvsCmd {
    /// The uapi name of the command, used to say which request an error belongs to.
    pub fn name(self) -> &'static str {
        match self {
            IpvsCmd::NewService => "IPVS_CMD_NEW_SERVICE",
            IpvsCmd::SetService => "IPVS_CMD_SET_SERVICE",
            IpvsCmd::DelService => "IPVS_CMD_DEL_SERVICE",
            IpvsCmd::GetService => "IPVS_CMD_GET_SERVICE",
            IpvsCmd::NewDest => "IPVS_CMD_NEW_DEST",
            IpvsCmd::SetDest => "IPVS_CMD_SET_DEST",
            IpvsCmd::DelDest => "IPVS_CMD_DEL_DEST",
            IpvsCmd::GetDest => "IPVS_CMD_GET_DEST",
            IpvsCmd::NewDaemon => "IPVS_CMD_NEW_DAEMON",
            IpvsCmd::DelDaemon => "IPVS_CMD_DEL_DAEMON",
            IpvsCmd::GetDaemon => "IPVS_CMD_GET_DAEMON",
            IpvsCmd::SetConfig => "IPVS_CMD_SET_CONFIG",
            IpvsCmd::GetConfig => "IPVS_CMD_GET_CONFIG",
            IpvsCmd::SetInfo => "IPVS_CMD_SET_INFO",
            IpvsCmd::GetInfo => "IPVS_CMD_GET_INFO",
            IpvsCmd::Zero => "IPVS_CMD_ZERO",
            IpvsCmd::Flush => "IPVS_CMD_FLUSH",
            IpvsCmd::Other(_) => "IPVS_CMD_(unknown)",
        }
    }

    /// Whether the top-level attributes of this command are `IPVS_INFO_ATTR_*` rather than
    /// `IPVS_CMD_ATTR_*`: both number from 1, so the command decides how they read.
    fn carries_info_attrs(self) -> bool {
        matches!(self, IpvsCmd::SetInfo | IpvsCmd::GetInfo)
    }
}

/// One IPVS generic-netlink message: a command and its top-level attributes. It is the payload of
/// a [`netlink_packet_generic::GenlMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsMessage {
    /// The command.
    pub cmd: IpvsCmd,
    /// Top-level attributes.
    pub attrs: Vec<CmdAttr>,
}

impl IpvsMessage {
    /// A message of `cmd` with `attrs`.
    pub fn new(cmd: IpvsCmd, attrs: Vec<CmdAttr>) -> IpvsMessage {
        IpvsMessage { cmd, attrs }
    }
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        IPVS_GENL_NAME
    }

    fn command(&self) -> u8 {
        self.cmd.into()
    }

    fn version(&self) -> u8 {
        IPVS_GENL_VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl netlink_packet_core::ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<IpvsMessage, DecodeError> {
        let cmd = IpvsCmd::from(header.cmd);
        let info = cmd.carries_info_attrs();
        let attrs = parse_nlas(buf, "IPVS message", |nla| {
            if info {
                CmdAttr::parse_info(nla)
            } else {
                CmdAttr::parse(nla)
            }
        })
        .context(cmd.name())?;
        Ok(IpvsMessage { cmd, attrs })
    }
}

/// Parses every attribute of `buf` with `parse_one`, naming `what` held the broken one.
pub(crate) fn parse_nlas<T>(
    buf: &[u8],
    what: &str,
    mut parse_one: impl FnMut(&NlaBuffer<&[u8]>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let mut out = Vec::new();
    for nla in NlasIterator::new(buf) {
        out.push(parse_one(&nla.context(what)?).context(what)?);
    }
    Ok(out)
}
