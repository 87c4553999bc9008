//! Dumps read entry by entry: one entry this crate cannot read does not hide the others.
//!
//! The kernel's table is shared with other programs, and what another program wrote may not read
//! (a destination family other than IPv4 and IPv6, an IPv6 persistence mask over 128 bits from
//! a kernel that did not check it, an attribute of the wrong length). Forwarding methods the
//! kernel masks in without checking (4 to 7) do read, as [`crate::ForwardingMethod::Bypass`] and
//! [`crate::ForwardingMethod::Other`]. A caller that must keep working whatever else is in the table reads with
//! [`crate::Client::service_dump`] and [`crate::Client::destination_dump`]: each entry is decoded
//! on its own, and those that do not decode are kept as [`Undecodable`], with as much of their
//! identity as could be read, so the caller can leave them alone.

use std::fmt;
use std::net::IpAddr;

use crate::message::destination::dest_address_from_attrs;
use crate::message::{CmdAttr, IpvsMessage};
use crate::{Destination, Family, Service, ServiceKey};

/// What kind of entry could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum EntryKind {
    /// A virtual service of a service dump.
    Service,
    /// A destination of a destination dump.
    Destination,
}

/// A dump entry this crate could not read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Undecodable {
    /// A service, or a destination.
    pub kind: EntryKind,
    /// The service the entry is (for a service) or belongs to (for a destination), when it could
    /// be read: a destination dump always knows its service.
    pub service: Option<ServiceKey>,
    /// A destination's address and port, when they could be read.
    pub destination: Option<(IpAddr, u16)>,
    /// What could not be read.
    pub reason: String,
}

impl fmt::Display for Undecodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, &self.service, &self.destination) {
            (EntryKind::Service, Some(key), _) => write!(f, "service {key}")?,
            (EntryKind::Service, None, _) => write!(f, "a service")?,
            (EntryKind::Destination, service, destination) => {
                match destination {
                    Some((IpAddr::V6(a), port)) => write!(f, "destination [{a}]:{port}")?,
                    Some((a, port)) => write!(f, "destination {a}:{port}")?,
                    None => write!(f, "a destination")?,
                }
                if let Some(key) = service {
                    write!(f, " of service {key}")?;
                }
            }
        }
        write!(f, ": {}", self.reason)
    }
}

/// The entries of a dump: those read, and those that could not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump<T> {
    /// Entries read, in the kernel's order.
    pub entries: Vec<T>,
    /// Entries that could not be read.
    pub undecodable: Vec<Undecodable>,
}

impl<T> Default for Dump<T> {
    fn default() -> Self {
        Dump {
            entries: Vec::new(),
            undecodable: Vec::new(),
        }
    }
}

/// The services of a service dump's messages; a message that did not even parse is `Err` with
/// the reason.
pub fn services_of_dump(messages: &[Result<IpvsMessage, String>]) -> Dump<Service> {
    let mut dump = Dump::default();
    for message in messages {
        dump.add_service_reply(message);
    }
    dump
}

impl Dump<Service> {
    /// Takes in one message of a service dump (see [`services_of_dump`]), so that a dump can be
    /// read as its messages arrive: a parsed message holds each attribute apart, several times
    /// the room of the [`Service`] read from it (at 30,000 services, tens of MiB held at once
    /// when the messages were kept until the dump's end).
    pub fn add_service_reply(&mut self, message: &Result<IpvsMessage, String>) {
        let attrs = message.as_ref().map(|m| {
            m.attrs.iter().find_map(|a| match a {
                CmdAttr::Service(attrs) => Some(attrs),
                _ => None,
            })
        });
        let undecodable = |service, reason: String| Undecodable {
            kind: EntryKind::Service,
            service,
            destination: None,
            reason,
        };
        match attrs {
            Ok(Some(attrs)) => match Service::try_from(attrs.as_slice()) {
                Ok(service) => self.entries.push(service),
                Err(e) => self.undecodable.push(undecodable(
                    ServiceKey::try_from(attrs.as_slice()).ok(),
                    e.to_string(),
                )),
            },
            Ok(None) => self.undecodable.push(undecodable(
                None,
                "reply without IPVS_CMD_ATTR_SERVICE".to_string(),
            )),
            Err(reason) => self.undecodable.push(undecodable(None, reason.clone())),
        }
    }
}

/// The destinations of a destination dump of `service`; a message that did not even parse is
/// `Err` with the reason.
pub fn destinations_of_dump(
    service: &ServiceKey,
    messages: &[Result<IpvsMessage, String>],
) -> Dump<Destination> {
    let family: Family = service.family();
    let mut dump = Dump::default();
    let undecodable = |destination, reason: String| Undecodable {
        kind: EntryKind::Destination,
        service: Some(*service),
        destination,
        reason,
    };
    for message in messages {
        match message {
            Ok(m) => {
                for a in &m.attrs {
                    if let CmdAttr::Dest(attrs) = a {
                        match Destination::try_from((attrs.as_slice(), family)) {
                            Ok(d) => dump.entries.push(d),
                            Err(e) => dump.undecodable.push(undecodable(
                                dest_address_from_attrs(attrs, family),
                                e.to_string(),
                            )),
                        }
                    }
                }
            }
            Err(reason) => dump.undecodable.push(undecodable(None, reason.clone())),
        }
    }
    dump
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{DestAttr, IpvsCmd, SvcAttr};
    use crate::{Protocol, ServiceFlags};

    fn service_attrs(service: &Service) -> Vec<SvcAttr> {
        service.into()
    }

    fn dest_attrs(dest: &Destination) -> Vec<DestAttr> {
        dest.into()
    }

    fn service_reply(attrs: Vec<SvcAttr>) -> Result<IpvsMessage, String> {
        Ok(IpvsMessage::new(
            IpvsCmd::NewService,
            vec![CmdAttr::Service(attrs)],
        ))
    }

    fn key(address: &str, port: u16) -> ServiceKey {
        ServiceKey::Addr {
            address: address.parse().unwrap(),
            protocol: Protocol::Tcp,
            port,
        }
    }

    #[test]
    fn services_that_do_not_read_are_kept_apart_with_their_keys() {
        let good = Service::new(key("10.96.0.1", 80), "rr");
        let mut persistent = Service::new(key("fd00::1", 80), "rr");
        persistent.flags = ServiceFlags::PERSISTENT;
        let mut mask_129 = service_attrs(&persistent);
        for a in &mut mask_129 {
            if let SvcAttr::Netmask(m) = a {
                *m = 129;
            }
        }
        let mut unknown_family = service_attrs(&Service::new(key("10.96.0.2", 80), "rr"));
        for a in &mut unknown_family {
            if let SvcAttr::Af(af) = a {
                *af = 7;
            }
        }
        let dump = services_of_dump(&[
            service_reply(mask_129),
            service_reply(service_attrs(&good)),
            service_reply(unknown_family),
            Err("IPVS message: broken attribute".to_string()),
        ]);
        assert_eq!(dump.entries, vec![good]);
        assert_eq!(dump.undecodable.len(), 3);
        assert_eq!(dump.undecodable[0].service, Some(key("fd00::1", 80)));
        assert_eq!(dump.undecodable[0].kind, EntryKind::Service);
        assert!(
            dump.undecodable[0].reason.contains("129"),
            "{:?}",
            dump.undecodable[0]
        );
        assert_eq!(dump.undecodable[1].service, None);
        assert!(dump.undecodable[1].reason.contains("family 7"));
        assert_eq!(dump.undecodable[2].service, None);
        assert_eq!(
            dump.undecodable[0].to_string(),
            "service tcp [fd00::1]:80: IPVS_SVC_ATTR_NETMASK: IPv6 prefix 129 > 128"
        );
    }

    #[test]
    fn destinations_that_do_not_read_are_kept_apart_and_bypass_reads() {
        let service = key("10.96.0.1", 80);
        let good = Destination::new("10.244.0.1".parse().unwrap(), 8080);
        let mut bypass = Destination::new("10.244.0.3".parse().unwrap(), 8080);
        bypass.forwarding = crate::ForwardingMethod::Bypass;
        let mut other = dest_attrs(&Destination::new("10.244.0.2".parse().unwrap(), 8080));
        for a in &mut other {
            if let DestAttr::AddrFamily(af) = a {
                *af = 7;
            }
        }
        let reply = |attrs| {
            Ok(IpvsMessage::new(
                IpvsCmd::NewDest,
                vec![CmdAttr::Dest(attrs)],
            ))
        };
        let dump = destinations_of_dump(
            &service,
            &[
                reply(other),
                reply(dest_attrs(&good)),
                reply(dest_attrs(&bypass)),
            ],
        );
        assert_eq!(dump.entries, vec![good, bypass]);
        assert_eq!(
            dump.undecodable,
            vec![Undecodable {
                kind: EntryKind::Destination,
                service: Some(service),
                destination: None,
                reason: "destination of unknown family 7".to_string(),
            }]
        );
        assert_eq!(
            dump.undecodable[0].to_string(),
            "a destination of service tcp 10.96.0.1:80: destination of unknown family 7"
        );
    }
}
