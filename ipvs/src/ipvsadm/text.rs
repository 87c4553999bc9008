//! The small text conversions ipvsadm 1.31 makes: protocol and forwarding names, address and
//! port notation, scheduler flag names, and the scaled counters of `--stats` and `--rate`.
//!
//! Each function mirrors one helper of ipvsadm.c (named in its doc comment) because the output
//! has to match that program byte for byte, including its corner cases.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{ForwardingMethod, Protocol, Service, ServiceFlags, TunnelType};

/// `protocol_name()`: the protocol column of the listings; ipvsadm knows no other protocol
/// than these three and shows `?` for the rest.
pub(crate) fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
        Protocol::Other(_) => "?",
    }
}

/// `option_from_protocol()`: the option that names a service of this protocol in `-S`
/// output; for a protocol ipvsadm has no option for, it prints the placeholder
/// `--xxx-service`.
pub(crate) fn protocol_option(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "-t",
        Protocol::Udp => "-u",
        Protocol::Sctp => "--sctp-service",
        Protocol::Other(_) => "--xxx-service",
    }
}

/// `fwd_name()`: the Forward column. For a method it has no name for, ipvsadm passes a null
/// pointer to `printf`, which glibc prints as `(null)`.
pub(crate) fn forwarding_name(method: ForwardingMethod) -> &'static str {
    match method {
        ForwardingMethod::Masquerade => "Masq",
        ForwardingMethod::Local => "Local",
        ForwardingMethod::Tunnel(_) => "Tunnel",
        ForwardingMethod::DirectRoute => "Route",
        _ => "(null)",
    }
}

/// `fwd_switch()`: the forwarding option of an `-a` rule. ipvsadm has no option for local
/// forwarding and writes `-g` for it, as the kernel itself picks local for a local address.
pub(crate) fn forwarding_option(method: ForwardingMethod) -> &'static str {
    match method {
        ForwardingMethod::Masquerade => "-m",
        ForwardingMethod::Tunnel(_) => "-i",
        ForwardingMethod::Local | ForwardingMethod::DirectRoute => "-g",
        // As `fwd_name()`: a null pointer, printed by glibc as `(null)`.
        _ => "(null)",
    }
}

/// `tunnames[]`: the name of an encapsulation, `None` for one ipvsadm 1.31 does not know.
pub(crate) fn tunnel_type_name(kind: TunnelType) -> Option<&'static str> {
    match kind {
        TunnelType::IpIp => Some("ipip"),
        TunnelType::Gue => Some("gue"),
        TunnelType::Gre => Some("gre"),
        TunnelType::Other(_) => None,
    }
}

/// `tunflags[]`: the short checksum notation of the TunnelInfo column. ipvsadm indexes its
/// table with the raw flag value; for values past the table (undefined behaviour there) `?`
/// is shown.
pub(crate) fn tunnel_flags_short(flags: u16) -> &'static str {
    match flags {
        0 => "-c",
        1 => "+c",
        2 => "r+c",
        _ => "?",
    }
}

/// `tun_flags_opts[]`: the checksum option of a tunnel rule, indexed like
/// [`tunnel_flags_short`].
pub(crate) fn tunnel_flags_option(flags: u16) -> &'static str {
    match flags {
        0 => "--tun-nocsum",
        1 => "--tun-csum",
        2 => "--tun-remcsum",
        _ => "?",
    }
}

/// `print_sched_flags()`: the scheduler flags named the way the scheduler names them
/// (`sh-fallback`, `mh-port`, else `flag-N`), comma separated. The result can be empty even
/// when a flag bit is set (`flag-3` on `sh` or `mh` has no name there); ipvsadm then prints
/// nothing between its brackets, and so do the callers.
pub(crate) fn scheduler_flags(service: &Service) -> String {
    let names: &[(ServiceFlags, &str)] = match service.scheduler.as_str() {
        "sh" => &[
            (ServiceFlags::SCHED1, "sh-fallback"),
            (ServiceFlags::SCHED2, "sh-port"),
        ],
        "mh" => &[
            (ServiceFlags::SCHED1, "mh-fallback"),
            (ServiceFlags::SCHED2, "mh-port"),
        ],
        _ => &[
            (ServiceFlags::SCHED1, "flag-1"),
            (ServiceFlags::SCHED2, "flag-2"),
            (ServiceFlags::SCHED3, "flag-3"),
        ],
    };
    names
        .iter()
        .filter(|(flag, _)| service.flags.contains(*flag))
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether any of the three scheduler flag bits is set: ipvsadm prints the flag group (even
/// an empty one) exactly then.
pub(crate) fn has_scheduler_flags(flags: ServiceFlags) -> bool {
    flags.intersects(ServiceFlags::SCHED_MASK)
}

/// The IPv4 netmask of a prefix length, as ipvsadm prints it with `inet_ntoa()`. A length
/// past 32 cannot come from the kernel; it is taken as 32.
pub(crate) fn ipv4_netmask(prefix: u8) -> Ipv4Addr {
    let prefix = u32::from(prefix.min(32));
    let bits = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    Ipv4Addr::from(bits)
}

/// `inet_ntop()` of glibc. IPv4 is the usual dotted quad. IPv6 follows glibc rather than
/// Rust's `Display`, which differs for IPv4-compatible addresses: glibc writes `::1.2.3.4`
/// where Rust writes `::102:304`.
pub(crate) fn inet_ntop(addr: &IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => inet_ntop6(a),
    }
}

fn inet_ntop6(addr: &Ipv6Addr) -> String {
    let words = addr.segments();
    // The longest run of zero words, the first one on a tie; a single zero word is not
    // compressed.
    let mut best: Option<(usize, usize)> = None;
    let mut current: Option<(usize, usize)> = None;
    for (i, word) in words.iter().enumerate() {
        if *word == 0 {
            current = match current {
                Some((base, len)) => Some((base, len + 1)),
                None => Some((i, 1)),
            };
            if let Some((base, len)) = current {
                if best.is_none_or(|(_, best_len)| len > best_len) {
                    best = Some((base, len));
                }
            }
        } else {
            current = None;
        }
    }
    let best = best.filter(|(_, len)| *len >= 2);

    let mut out = String::with_capacity(46);
    let mut i = 0;
    while i < 8 {
        if let Some((base, len)) = best {
            if i >= base && i < base + len {
                if i == base {
                    out.push(':');
                }
                i += 1;
                continue;
            }
        }
        if i != 0 {
            out.push(':');
        }
        let embeds_ipv4 =
            matches!(best, Some((0, 6))) || (matches!(best, Some((0, 5))) && words[5] == 0xffff);
        if i == 6 && embeds_ipv4 {
            let o = addr.octets();
            let _ = write!(out, "{}.{}.{}.{}", o[12], o[13], o[14], o[15]);
            break;
        }
        let _ = write!(out, "{:x}", words[i]);
        i += 1;
    }
    if let Some((base, len)) = best {
        if base + len == 8 {
            out.push(':');
        }
    }
    out
}

/// `addrport_to_anyname()` with `-n`: `addr:port`, IPv6 in brackets.
pub(crate) fn address_port(addr: &IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(_) => format!("{}:{}", inet_ntop(addr), port),
        IpAddr::V6(_) => format!("[{}]:{}", inet_ntop(addr), port),
    }
}

/// Cuts a string to at most `len` bytes, as ipvsadm does by writing a NUL into its buffer
/// (only ever reached by ASCII text here).
pub(crate) fn truncate(mut text: String, len: usize) -> String {
    if text.len() > len {
        let mut end = len;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// `print_largenum()`: a counter in 9 columns. Without `--exact` (`exact` false) it is scaled
/// to K, M, G or T (by powers of 1000, rounded down) once it no longer fits in 8 digits plus
/// the unit; with it, a longer number widens its column and keeps one space before it.
pub(crate) fn push_largenum(out: &mut String, n: u64, exact: bool) {
    if exact {
        let _ = write!(out, " {n:>8}");
        return;
    }
    let _ = match n {
        0..100_000_000 => write!(out, "{n:>9}"),
        100_000_000..1_000_000_000 => write!(out, "{:>8}K", n / 1_000),
        1_000_000_000..100_000_000_000 => write!(out, "{:>8}M", n / 1_000_000),
        100_000_000_000..100_000_000_000_000 => write!(out, "{:>8}G", n / 1_000_000_000),
        _ => write!(out, "{:>8}T", n / 1_000_000_000_000),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn largenum(n: u64) -> String {
        let mut s = String::new();
        push_largenum(&mut s, n, false);
        s
    }

    fn exact(n: u64) -> String {
        let mut s = String::new();
        push_largenum(&mut s, n, true);
        s
    }

    #[test]
    fn exact_largenum_widens_with_one_space() {
        // printf("%*llu", len <= 8 ? 9 : len + 1, i)
        assert_eq!(exact(0), "        0");
        assert_eq!(exact(99_999_999), " 99999999");
        assert_eq!(exact(100_000_000), " 100000000");
        assert_eq!(exact(u64::MAX), " 18446744073709551615");
    }

    #[test]
    fn largenum_scales_at_ipvsadm_boundaries() {
        // printf("%9llu") below 100 million, then "%8llu" and a unit letter.
        assert_eq!(largenum(0), "        0");
        assert_eq!(largenum(99_999_999), " 99999999");
        assert_eq!(largenum(100_000_000), "  100000K");
        assert_eq!(largenum(999_999_999), "  999999K");
        assert_eq!(largenum(1_000_000_000), "    1000M");
        assert_eq!(largenum(99_999_999_999), "   99999M");
        assert_eq!(largenum(100_000_000_000), "     100G");
        assert_eq!(largenum(99_999_999_999_999), "   99999G");
        assert_eq!(largenum(100_000_000_000_000), "     100T");
        // Eight digits fill the field: nothing separates it from the column before.
        assert_eq!(largenum(u64::MAX), "18446744T");
    }

    fn v6(s: &str) -> String {
        inet_ntop(&IpAddr::V6(s.parse().unwrap()))
    }

    #[test]
    fn ipv6_notation_follows_glibc() {
        assert_eq!(v6("::"), "::");
        assert_eq!(v6("::1"), "::1");
        assert_eq!(v6("fd00::1"), "fd00::1");
        assert_eq!(v6("2001:db8:0:1:0:0:0:1"), "2001:db8:0:1::1");
        // A single zero word stays; the first of two equally long runs is compressed.
        assert_eq!(v6("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
        assert_eq!(v6("1:0:0:2:3:0:0:4"), "1::2:3:0:0:4");
        assert_eq!(v6("1:0:0:0:0:0:0:0"), "1::");
        // IPv4-mapped and IPv4-compatible addresses end in a dotted quad in glibc.
        assert_eq!(v6("::ffff:10.1.2.3"), "::ffff:10.1.2.3");
        assert_eq!(v6("::10.1.2.3"), "::10.1.2.3");
        assert_eq!(v6("::0.0.0.2"), "::2");
        assert_eq!(v6("::1:0:0"), "::1:0:0");
    }

    #[test]
    fn ipv4_netmask_from_prefix() {
        assert_eq!(ipv4_netmask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(ipv4_netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(ipv4_netmask(17), Ipv4Addr::new(255, 255, 128, 0));
        assert_eq!(ipv4_netmask(32), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(ipv4_netmask(40), Ipv4Addr::new(255, 255, 255, 255));
    }

    #[test]
    fn scheduler_flags_named_per_scheduler() {
        let key = crate::ServiceKey::FwMark {
            mark: 1,
            family: crate::Family::Inet,
        };
        let mut svc = Service::new(key, "sh");
        svc.flags = ServiceFlags::SCHED1 | ServiceFlags::SCHED2 | ServiceFlags::SCHED3;
        assert_eq!(scheduler_flags(&svc), "sh-fallback,sh-port");
        svc.scheduler = "mh".into();
        assert_eq!(scheduler_flags(&svc), "mh-fallback,mh-port");
        svc.scheduler = "rr".into();
        assert_eq!(scheduler_flags(&svc), "flag-1,flag-2,flag-3");
        svc.scheduler = "sh".into();
        svc.flags = ServiceFlags::SCHED3;
        assert_eq!(scheduler_flags(&svc), "");
        assert!(has_scheduler_flags(svc.flags));
        assert!(!has_scheduler_flags(
            ServiceFlags::PERSISTENT | ServiceFlags::HASHED
        ));
    }
}
