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

/// Transport protocol of a service, as an IP protocol number on the wire. Displayed as `tcp`,
/// `udp`, `sctp` or `proto-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
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

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("tcp"),
            Protocol::Udp => f.write_str("udp"),
            Protocol::Sctp => f.write_str("sctp"),
            Protocol::Other(n) => write!(f, "proto-{n}"),
        }
    }
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
            } => match address {
                IpAddr::V4(a) => write!(f, "{protocol} {a}:{port}"),
                IpAddr::V6(a) => write!(f, "{protocol} [{a}]:{port}"),
            },
            ServiceKey::FwMark { mark, family } => match family {
                Family::Inet => write!(f, "fwmark {mark}"),
                Family::Inet6 => write!(f, "fwmark {mark} (ipv6)"),
            },
        }
    }
}

bitflags::bitflags! {
    /// Service flags, `IP_VS_SVC_F_*`. The kernel takes them as a `{flags, mask}` pair. Bits
    /// without a name here are kept as the kernel sent them ([`ServiceFlags::from_bits_retain`]),
    /// so a flag of a newer kernel is written back unchanged. Displayed as `PERSISTENT | SCHED1`
    /// (bitflags' text format, unknown bits in hex).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ServiceFlags: u32 {
        /// `IP_VS_SVC_F_PERSISTENT`: persistent port.
        const PERSISTENT = 0x0001;
        /// `IP_VS_SVC_F_HASHED`: set by the kernel on every service in its table.
        const HASHED = 0x0002;
        /// `IP_VS_SVC_F_ONEPACKET`: one-packet scheduling (ipvsadm's `ops`).
        const ONEPACKET = 0x0004;
        /// `IP_VS_SVC_F_SCHED1`: scheduler flag 1 (`flag-1`, `sh-fallback`, `mh-fallback`).
        const SCHED1 = 0x0008;
        /// `IP_VS_SVC_F_SCHED2`: scheduler flag 2 (`flag-2`, `sh-port`, `mh-port`).
        const SCHED2 = 0x0010;
        /// `IP_VS_SVC_F_SCHED3`: scheduler flag 3 (`flag-3`).
        const SCHED3 = 0x0020;
        // The kernel owns the other bits: keep them.
        const _ = !0;
    }
}

impl fmt::Display for ServiceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        bitflags::parser::to_writer(self, f)
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
    pub const SCHED_MASK: ServiceFlags = ServiceFlags::SCHED1
        .union(ServiceFlags::SCHED2)
        .union(ServiceFlags::SCHED3);

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
            flags |= bit;
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

/// A virtual service and its settings, as sent to and read from the kernel.
///
/// The key and the settings are what a caller sets; [`Service::stats`] is only observed (the
/// kernel's counters, never sent). Comparing what is wanted with what the kernel has is
/// [`Service::settings_eq`], which leaves the counters and the kernel's `HASHED` bookkeeping
/// out; `==` compares everything.
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
    /// Counters (observed, never sent); zero when the service is built by the caller. 64-bit
    /// counters are used when the kernel sends them, else the 32-bit ones widened.
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

impl Service {
    /// Whether both services have the same settings: scheduler, flags (but `HASHED`, the
    /// kernel's own bookkeeping), persistence timeout and netmask, persistence engine. The key
    /// and the counters are not settings: compare keys apart, and counters never.
    pub fn settings_eq(&self, other: &Service) -> bool {
        self.scheduler == other.scheduler
            && self.flags.difference(ServiceFlags::HASHED)
                == other.flags.difference(ServiceFlags::HASHED)
            && self.timeout == other.timeout
            && self.netmask == other.netmask
            && self.persistence_engine == other.persistence_engine
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
            Ok(ServiceFlags::from_bits_retain(0x28))
        );
        assert_eq!(
            ServiceFlags::parse_sched_flags(""),
            Ok(ServiceFlags::empty())
        );
        let err = ServiceFlags::parse_sched_flags("sh-port,bogus").unwrap_err();
        assert_eq!(err.flag, "bogus");
        assert!(err.to_string().contains("\"bogus\""), "{err}");
    }

    #[test]
    fn sched_flags_are_named_per_scheduler() {
        let all = ServiceFlags::from_bits_retain(0x38) | ServiceFlags::PERSISTENT;
        assert_eq!(all.sched_flag_names("sh"), ["sh-fallback", "sh-port"]);
        assert_eq!(all.sched_flag_names("mh"), ["mh-fallback", "mh-port"]);
        assert_eq!(all.sched_flag_names("rr"), ["flag-1", "flag-2", "flag-3"]);
        assert_eq!(ServiceFlags::SCHED2.sched_flag_names("mh"), ["mh-port"]);
        assert!(ServiceFlags::PERSISTENT.sched_flag_names("rr").is_empty());
    }

    #[test]
    fn unknown_flag_bits_are_kept_and_shown() {
        let flags = ServiceFlags::from_bits_retain(0x1 | 0x40);
        assert_eq!(flags.bits(), 0x41);
        assert_eq!(flags.to_string(), "PERSISTENT | 0x40");
        assert_eq!(ServiceFlags::empty().to_string(), "none");
        assert_eq!(ServiceFlags::SCHED_MASK.bits(), 0x38);
    }

    #[test]
    fn settings_leave_counters_and_hashed_out() {
        let key = ServiceKey::Addr {
            address: "10.96.0.1".parse().unwrap(),
            protocol: Protocol::Tcp,
            port: 80,
        };
        let wanted = Service::new(key, "rr");
        let mut read = wanted.clone();
        read.flags = ServiceFlags::HASHED;
        read.stats.connections = 7;
        assert!(read.settings_eq(&wanted));
        assert_ne!(read, wanted);
        read.timeout = 1;
        assert!(!read.settings_eq(&wanted));
        assert_eq!(Protocol::Other(47).to_string(), "proto-47");
        assert_eq!(key.to_string(), "tcp 10.96.0.1:80");
    }
}
