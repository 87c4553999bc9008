//! Virtual services: what a client connects to before IPVS picks a real server.

use std::fmt;
use std::net::IpAddr;

use crate::Stats;

/// Address family of a service or destination (`AF_INET` / `AF_INET6` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4, `AF_INET` (2).
    Inet,
    /// IPv6, `AF_INET6` (10).
    Inet6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Inet,
            IpAddr::V6(_) => Family::Inet6,
        }
    }
}

/// Transport protocol of a service, as an IP protocol number on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// SCTP (132).
    Sctp,
    /// Any other IP protocol number, kept as the kernel sent it.
    Other(u16),
}

/// What identifies a virtual service in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKey {
    /// A service on an address, protocol and port (ipvsadm's `-t`, `-u`, `--sctp-service`).
    Addr {
        /// Virtual address.
        address: IpAddr,
        /// Transport protocol.
        protocol: Protocol,
        /// Virtual port.
        port: u16,
    },
    /// A service matching packets by firewall mark (ipvsadm's `-f`).
    FwMark {
        /// The firewall mark.
        mark: u32,
        /// Family of the packets it matches.
        family: Family,
    },
}

impl ServiceKey {
    /// Address family of the service.
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { address, .. } => Family::of(address),
            ServiceKey::FwMark { family, .. } => *family,
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr {
                address,
                protocol,
                port,
            } => {
                let proto = match protocol {
                    Protocol::Tcp => "tcp".to_string(),
                    Protocol::Udp => "udp".to_string(),
                    Protocol::Sctp => "sctp".to_string(),
                    Protocol::Other(n) => format!("proto-{n}"),
                };
                match address {
                    IpAddr::V4(a) => write!(f, "{proto} {a}:{port}"),
                    IpAddr::V6(a) => write!(f, "{proto} [{a}]:{port}"),
                }
            }
            ServiceKey::FwMark { mark, family } => match family {
                Family::Inet => write!(f, "fwmark {mark}"),
                Family::Inet6 => write!(f, "fwmark {mark} (ipv6)"),
            },
        }
    }
}

/// Service flags, `IP_VS_SVC_F_*`. The kernel takes them as a `{flags, mask}` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ServiceFlags(pub u32);

impl ServiceFlags {
    /// `IP_VS_SVC_F_PERSISTENT`: persistent port.
    pub const PERSISTENT: ServiceFlags = ServiceFlags(0x0001);
    /// `IP_VS_SVC_F_HASHED`: set by the kernel on every service in its table.
    pub const HASHED: ServiceFlags = ServiceFlags(0x0002);
    /// `IP_VS_SVC_F_ONEPACKET`: one-packet scheduling (ipvsadm's `ops`).
    pub const ONEPACKET: ServiceFlags = ServiceFlags(0x0004);
    /// `IP_VS_SVC_F_SCHED1`: scheduler flag 1 (`flag-1`, `sh-fallback`, `mh-fallback`).
    pub const SCHED1: ServiceFlags = ServiceFlags(0x0008);
    /// `IP_VS_SVC_F_SCHED2`: scheduler flag 2 (`flag-2`, `sh-port`, `mh-port`).
    pub const SCHED2: ServiceFlags = ServiceFlags(0x0010);
    /// `IP_VS_SVC_F_SCHED3`: scheduler flag 3 (`flag-3`).
    pub const SCHED3: ServiceFlags = ServiceFlags(0x0020);

    /// No flag set.
    pub const fn empty() -> ServiceFlags {
        ServiceFlags(0)
    }
    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: ServiceFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// The union of both sets.
    pub const fn union(self, other: ServiceFlags) -> ServiceFlags {
        ServiceFlags(self.0 | other.0)
    }
    /// The bits of `self` not in `other`.
    pub const fn difference(self, other: ServiceFlags) -> ServiceFlags {
        ServiceFlags(self.0 & !other.0)
    }
}

/// A scheduler flag list that could not be read: names the flag and the whole list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scheduler flag {flag:?} in {input:?}: expected a comma list of sh-fallback, \
     sh-port, mh-fallback, mh-port, flag-1, flag-2, flag-3"
)]
pub struct ParseFlagsError {
    /// The list as given.
    pub input: String,
    /// The name that is not a scheduler flag.
    pub flag: String,
}

impl ServiceFlags {
    /// The scheduler flag bits (`IP_VS_SVC_F_SCHED1..3`).
    pub const SCHED_MASK: ServiceFlags = ServiceFlags(0x0038);

    /// Reads a comma list of scheduler flags under ipvsadm's names (its `-b` option):
    /// `sh-fallback`/`mh-fallback`/`flag-1`, `sh-port`/`mh-port`/`flag-2`, `flag-3`. The names
    /// are aliases of the same three bits, so the scheduler is not checked here. An empty list
    /// is no flag.
    pub fn parse_sched_flags(s: &str) -> Result<ServiceFlags, ParseFlagsError> {
        let mut flags = ServiceFlags::empty();
        if s.trim().is_empty() {
            return Ok(flags);
        }
        for name in s.split(',') {
            let bit = match name.trim() {
                "sh-fallback" | "mh-fallback" | "flag-1" => ServiceFlags::SCHED1,
                "sh-port" | "mh-port" | "flag-2" => ServiceFlags::SCHED2,
                "flag-3" => ServiceFlags::SCHED3,
                other => {
                    return Err(ParseFlagsError {
                        input: s.to_string(),
                        flag: other.to_string(),
                    })
                }
            };
            flags = flags | bit;
        }
        Ok(flags)
    }

    /// The names of the scheduler flags set, as ipvsadm prints them for `scheduler`:
    /// `sh-fallback`, `sh-port` for `sh`; `mh-fallback`, `mh-port` for `mh`; `flag-1`..`flag-3`
    /// for any other. Like ipvsadm, `sh` and `mh` have no name for the third flag.
    pub fn sched_flag_names(self, scheduler: &str) -> Vec<&'static str> {
        let names: [Option<&'static str>; 3] = match scheduler {
            "sh" => [Some("sh-fallback"), Some("sh-port"), None],
            "mh" => [Some("mh-fallback"), Some("mh-port"), None],
            _ => [Some("flag-1"), Some("flag-2"), Some("flag-3")],
        };
        [
            ServiceFlags::SCHED1,
            ServiceFlags::SCHED2,
            ServiceFlags::SCHED3,
        ]
        .iter()
        .zip(names)
        .filter(|(bit, _)| self.contains(**bit))
        .filter_map(|(_, name)| name)
        .collect()
    }
}

impl std::ops::BitOr for ServiceFlags {
    type Output = ServiceFlags;
    fn bitor(self, rhs: ServiceFlags) -> ServiceFlags {
        self.union(rhs)
    }
}

/// A virtual service and its settings, as sent to and read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// What identifies the service.
    pub key: ServiceKey,
    /// Scheduler name (`rr`, `wrr`, `lc`, `wlc`, `lblc`, `lblcr`, `dh`, `sh`, `sed`, `nq`, `fo`,
    /// `ovf`, `mh`, `twos`, or any other the kernel knows).
    pub scheduler: String,
    /// Service flags.
    pub flags: ServiceFlags,
    /// Persistence timeout in seconds (meaningful with [`ServiceFlags::PERSISTENT`]).
    pub timeout: u32,
    /// Persistence netmask as a prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    pub netmask: u8,
    /// Persistence engine name (`sip`), if any.
    pub persistence_engine: Option<String>,
    /// Counters; zero when the service is built by the caller. 64-bit counters are used when the
    /// kernel sends them, else the 32-bit ones widened.
    pub stats: Stats,
}

impl Service {
    /// A service with the given key and scheduler, no flags, no persistence and the full netmask.
    pub fn new(key: ServiceKey, scheduler: impl Into<String>) -> Service {
        let netmask = match key.family() {
            Family::Inet => 32,
            Family::Inet6 => 128,
        };
        Service {
            key,
            scheduler: scheduler.into(),
            flags: ServiceFlags::empty(),
            timeout: 0,
            netmask,
            persistence_engine: None,
            stats: Stats::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sched_flags_parse_under_every_alias() {
        assert_eq!(
            ServiceFlags::parse_sched_flags("sh-fallback,sh-port"),
            Ok(ServiceFlags::SCHED1 | ServiceFlags::SCHED2)
        );
        assert_eq!(
            ServiceFlags::parse_sched_flags("mh-port"),
            Ok(ServiceFlags::SCHED2)
        );
        assert_eq!(
            ServiceFlags::parse_sched_flags("flag-1, flag-3"),
            Ok(ServiceFlags(0x28))
        );
        assert_eq!(ServiceFlags::parse_sched_flags(""), Ok(ServiceFlags(0)));
        let err = ServiceFlags::parse_sched_flags("sh-port,bogus").unwrap_err();
        assert_eq!(err.flag, "bogus");
        assert!(err.to_string().contains("\"bogus\""), "{err}");
    }

    #[test]
    fn sched_flags_are_named_per_scheduler() {
        let all = ServiceFlags(0x38) | ServiceFlags::PERSISTENT;
        assert_eq!(all.sched_flag_names("sh"), ["sh-fallback", "sh-port"]);
        assert_eq!(all.sched_flag_names("mh"), ["mh-fallback", "mh-port"]);
        assert_eq!(all.sched_flag_names("rr"), ["flag-1", "flag-2", "flag-3"]);
        assert_eq!(ServiceFlags::SCHED2.sched_flag_names("mh"), ["mh-port"]);
        assert!(ServiceFlags::PERSISTENT.sched_flag_names("rr").is_empty());
    }
}
