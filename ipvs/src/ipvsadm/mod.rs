//! ipvsadm 1.31's text formats, reproduced byte for byte from typed values.
//!
//! Operators read and diff IPVS tables with `ipvsadm -Ln` and `ipvsadm -Sn`; showing the same
//! text lets them compare what this crate sees (or is about to write) with what the kernel
//! holds, with the tools and habits they already have, and lets tests compare against the real
//! `ipvsadm` output line by line.
//!
//! Everything here is pure: the functions take services, destinations and settings as the
//! client returns them and give back the text ipvsadm would print for them with `-n` (numeric
//! addresses and ports). Each output line ends in `\n`, trailing spaces included, exactly like
//! ipvsadm's standard output, except for [`save_service`] and [`save_destination`], which
//! return one line without its end.
//!
//! Quirks of ipvsadm 1.31 (Debian's build) kept on purpose, because the point is identical
//! output:
//! - the listing order comes from ipvsadm's comparators, which subtract addresses as unsigned
//!   numbers and read the result as signed, so 192.168.0.1 lists before 10.0.0.1; see
//!   [`sorted`];
//! - firewall marks are printed as signed numbers (`FWM  -1` for mark 0xffffffff);
//! - the `-S` rules carry no `-x`/`-y` thresholds, and local forwarding is saved as `-g`;
//! - in `-L`, the persistence engine shows only on persistent services, while `-S` always
//!   writes `--pe`;
//! - a scheduler flag that has no name for the scheduler (flag-3 of `sh`) prints as ` ()` in
//!   `-L` and as a bare ` -b ` in `-S`.

mod sort;
mod text;

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::{
    DaemonState, Destination, Family, ForwardingMethod, Info, Service, ServiceFlags, ServiceKey,
    SyncDaemon, Timeouts, TunnelType,
};

use text::{
    address_port, forwarding_name, forwarding_option, has_scheduler_flags, inet_ntop, ipv4_netmask,
    protocol_name, protocol_option, push_largenum, scheduler_flags, truncate, tunnel_flags_option,
    tunnel_flags_short, tunnel_type_name,
};

/// Which `ipvsadm -Ln` listing to produce; each shows different columns for the same table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum View {
    /// `ipvsadm -Ln`: scheduler, flags and persistence per service; forwarding method, weight
    /// and connection counts per destination.
    #[default]
    Default,
    /// `ipvsadm -Ln --stats`: connections, packets and bytes, scaled to K/M/G/T when large.
    Stats,
    /// `ipvsadm -Ln --rate`: the per-second rates of the same counters.
    Rate,
    /// `ipvsadm -Ln --stats --exact`: the counters of [`View::Stats`], never scaled.
    StatsExact,
    /// `ipvsadm -Ln --rate --exact`: the rates of [`View::Rate`], never scaled.
    RateExact,
    /// `ipvsadm -Ln --thresholds`: upper and lower connection thresholds per destination.
    Thresholds,
    /// `ipvsadm -Ln --persistent-conn`: persistence templates per destination.
    PersistentConnections,
    /// `ipvsadm -Ln --tun-info`: the default listing plus the tunnel settings per destination.
    TunnelInfo,
}

impl View {
    /// Whether counters print in full rather than scaled to K/M/G/T (`--exact`).
    fn exact(self) -> bool {
        matches!(self, View::StatsExact | View::RateExact)
    }
}

/// The text of `ipvsadm -Ln` (with the options [`View`] names) for a table of services and
/// their destinations.
///
/// Pass services and destinations in the order the kernel dumped them: ipvsadm's sort is not
/// a total order when addresses lie more than 2^31 apart, and then the printed order depends
/// on the input order (see [`sorted`]). For any other table the input order does not matter.
pub fn list(info: &Info, table: &[(Service, Vec<Destination>)], view: View) -> String {
    let mut out = String::new();
    let (major, minor, patch) = info.version_triple();
    // list_all(): "IP Virtual Server version %d.%d.%d (size=%d)\n"
    let _ = writeln!(
        out,
        "IP Virtual Server version {major}.{minor}.{patch} (size={})",
        info.connection_table_size as i32
    );
    push_title(&mut out, view);
    for (service, destinations) in sorted(table) {
        push_service_line(&mut out, service, view);
        for destination in destinations {
            push_destination_line(&mut out, destination, view);
        }
    }
    out
}

/// The text of `ipvsadm -Sn` for a table: one `-A` rule per service, each followed by one `-a`
/// rule per destination, in the listing order (see [`list`] about the input order).
pub fn save(table: &[(Service, Vec<Destination>)]) -> String {
    let mut out = String::new();
    for (service, destinations) in sorted(table) {
        out.push_str(&save_service(service));
        out.push('\n');
        for destination in destinations {
            out.push_str(&save_destination(&service.key, destination));
            out.push('\n');
        }
    }
    out
}

/// The `-A` rule `ipvsadm -Sn` writes for a service, without a line end, e.g.
/// `-A -t 10.96.0.20:443 -s sh -p 600 -b sh-fallback,sh-port`.
pub fn save_service(service: &Service) -> String {
    format!(
        "-A {} {}",
        rule_service_name(&service.key),
        service_options(service)
    )
}

/// The options of an `-A` or `-E` rule after the service's name: `-s sh -p 600 -b sh-port`.
pub fn service_options(service: &Service) -> String {
    // print_service_entry() with FMT_RULE: "-A %s -s %s", then the options in this order.
    let mut out = format!("-s {}", service.scheduler);
    if service.flags.contains(ServiceFlags::PERSISTENT) {
        let _ = write!(out, " -p {}", service.timeout);
        if let Some(mask) = persistence_mask(service) {
            let _ = write!(out, " -M {mask}");
        }
    }
    if let Some(engine) = persistence_engine(service) {
        let _ = write!(out, " --pe {engine}");
    }
    if service.flags.contains(ServiceFlags::ONEPACKET) {
        out.push_str(" -o");
    }
    if has_scheduler_flags(service.flags) {
        let _ = write!(out, " -b {}", scheduler_flags(service));
    }
    out
}

/// The `-a` rule `ipvsadm -Sn` writes for a destination of the service `service`, without a
/// line end, e.g. `-a -t 10.96.0.20:443 -r 10.244.0.7:8443 -m -w 1`.
///
/// ipvsadm 1.31 saves neither thresholds nor the family of a destination; tunnel settings are
/// saved as `--tun-type` and its options.
pub fn save_destination(service: &ServiceKey, destination: &Destination) -> String {
    format!(
        "-a {} {}",
        rule_service_name(service),
        destination_options(destination)
    )
}

/// The options of a `-a` or `-e` rule after the service: `-r 10.244.0.7:8443 -m -w 1`, plus the
/// tunnel settings of a tunnelled destination.
pub fn destination_options(destination: &Destination) -> String {
    // print_service_entry() with FMT_RULE: "-a %s -r %s %s -w %d"; print_tunnel_rule() for
    // tunnels, which adds the encapsulation.
    let mut out = format!(
        "-r {} {} -w {}",
        address_port(&destination.address, destination.port),
        forwarding_option(destination.forwarding),
        destination.weight as i32
    );
    if let ForwardingMethod::Tunnel(tunnel) = destination.forwarding {
        match tunnel.kind {
            TunnelType::Gre => {
                let _ = write!(
                    out,
                    " --tun-type gre {}",
                    tunnel_flags_option(tunnel.flags.bits())
                );
            }
            TunnelType::Gue => {
                let _ = write!(
                    out,
                    " --tun-type gue --tun-port {} {}",
                    tunnel.port,
                    tunnel_flags_option(tunnel.flags.bits())
                );
            }
            TunnelType::IpIp => out.push_str(" --tun-type ipip"),
            TunnelType::Other(_) => {}
        }
    }
    out
}

/// The text of `ipvsadm -L --timeout`, e.g. `Timeout (tcp tcpfin udp): 900 120 300\n`. An
/// absent value prints as 0, as the kernel reports a timeout it does not use.
pub fn timeouts(timeouts: &Timeouts) -> String {
    let value = |t: Option<u32>| t.unwrap_or(0) as i32;
    // list_timeout(): "Timeout (tcp tcpfin udp): %d %d %d\n"
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        value(timeouts.tcp),
        value(timeouts.tcp_fin),
        value(timeouts.udp)
    )
}

/// The text of `ipvsadm -L --daemon`: one line per sync daemon, in the order given (the kernel
/// dumps the master first), e.g. `master sync daemon (mcast=eth0, syncid=1)`. Optional
/// settings that are absent or 0 are left out, as ipvsadm leaves out zeros.
pub fn daemons(daemons: &[SyncDaemon]) -> String {
    let mut out = String::new();
    for daemon in daemons {
        let role = match daemon.state {
            DaemonState::Master => "master",
            DaemonState::Backup => "backup",
        };
        // list_daemon(): "%s sync daemon (mcast=%s, syncid=%d", ", maxlen=%u", ", group=%s",
        // ", port=%u", ", ttl=%u", ")\n"
        let _ = write!(
            out,
            "{role} sync daemon (mcast={}, syncid={}",
            daemon.interface, daemon.sync_id as i32
        );
        if let Some(max_len) = daemon.max_len.filter(|n| *n != 0) {
            let _ = write!(out, ", maxlen={max_len}");
        }
        if let Some(group) = &daemon.group {
            let _ = write!(out, ", group={}", inet_ntop(group));
        }
        if let Some(port) = daemon.port.filter(|n| *n != 0) {
            let _ = write!(out, ", port={port}");
        }
        if let Some(ttl) = daemon.ttl.filter(|n| *n != 0) {
            let _ = write!(out, ", ttl={ttl}");
        }
        out.push_str(")\n");
    }
    out
}

/// The table in ipvsadm's listing order: services sorted with libipvs's `ipvs_cmp_services`
/// and each service's destinations with `ipvs_cmp_dests`, by the merge sort of glibc's
/// `qsort()`.
///
/// Those comparators subtract two addresses as unsigned 32-bit numbers and read the
/// difference as a signed `int`, so addresses more than 2^31 apart compare in reverse
/// (192.168.0.1 before 10.0.0.1). Services compare by firewall mark (read the same way, so
/// marks of 2^31 and above come before address services), then family (IPv4 first),
/// protocol number, address and port; destinations by address, then port. Because the
/// comparison is not transitive, the order of the input counts; the same input order as
/// ipvsadm got from the kernel gives ipvsadm's output order.
pub fn sorted(table: &[(Service, Vec<Destination>)]) -> Vec<(&Service, Vec<&Destination>)> {
    let mut services: Vec<&(Service, Vec<Destination>)> = table.iter().collect();
    sort::merge_sort(&mut services, |a, b| sort::compare_services(&a.0, &b.0));
    services
        .into_iter()
        .map(|(service, destinations)| {
            let mut destinations: Vec<&Destination> = destinations.iter().collect();
            sort::merge_sort(&mut destinations, |a, b| sort::compare_destinations(a, b));
            (service, destinations)
        })
        .collect()
}

/// print_title(): the column headings of each view.
fn push_title(out: &mut String, view: View) {
    const PROT: &str = "Prot LocalAddress:Port";
    match view {
        // "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n"
        View::Stats | View::StatsExact => {
            let _ = writeln!(
                out,
                "{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
                "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
            );
        }
        View::Rate | View::RateExact => {
            let _ = writeln!(
                out,
                "{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
                "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
            );
        }
        // "%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n"
        View::Thresholds => {
            let _ = writeln!(
                out,
                "{PROT:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port",
                "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
            );
        }
        // "%-33s %-9s %-11s %-10s %-10s\n  -> RemoteAddress:Port\n"
        View::PersistentConnections => {
            let _ = writeln!(
                out,
                "{PROT:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port",
                "Weight", "PersistConn", "ActiveConn", "InActConn"
            );
        }
        View::TunnelInfo => out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n",
        ),
        View::Default => out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        ),
    }
}

/// The service column of the listings: `"%-4s %s"` of protocol and `addr:port` (cut to 33
/// bytes unless IPv6), or `FWM  %d` / `FWM  %d IPv6`.
fn list_service_name(key: &ServiceKey) -> String {
    match key {
        ServiceKey::FwMark {
            mark,
            family: Family::Inet,
        } => format!("FWM  {}", *mark as i32),
        ServiceKey::FwMark {
            mark,
            family: Family::Inet6,
        } => format!("FWM  {} IPv6", *mark as i32),
        ServiceKey::Addr {
            address,
            protocol,
            port,
        } => {
            let name = format!(
                "{:<4} {}",
                protocol_name(*protocol),
                address_port(address, *port)
            );
            match address {
                IpAddr::V4(_) => truncate(name, 33),
                IpAddr::V6(_) => name,
            }
        }
    }
}

/// The service part of `-S` rules: `-t|-u|--sctp-service addr:port`, or `-f %d` / `-f %d -6`;
/// what ipvsadm's `-D` and `-d` take to name a service.
pub fn rule_service_name(key: &ServiceKey) -> String {
    match key {
        ServiceKey::FwMark {
            mark,
            family: Family::Inet,
        } => format!("-f {}", *mark as i32),
        ServiceKey::FwMark {
            mark,
            family: Family::Inet6,
        } => format!("-f {} -6", *mark as i32),
        ServiceKey::Addr {
            address,
            protocol,
            port,
        } => format!(
            "{} {}",
            protocol_option(*protocol),
            address_port(address, *port)
        ),
    }
}

/// The persistence netmask as ipvsadm shows it, `None` for a single address (/32, /128), which
/// it leaves out: IPv4 as a dotted quad (`inet_ntoa()`), IPv6 as a prefix length (`%i`).
fn persistence_mask(service: &Service) -> Option<String> {
    match service.key.family() {
        Family::Inet if service.netmask < 32 => Some(ipv4_netmask(service.netmask).to_string()),
        Family::Inet6 if service.netmask != 128 => Some(service.netmask.to_string()),
        _ => None,
    }
}

/// The persistence engine ipvsadm would see: it tests the first byte of the name, so an empty
/// name is none.
fn persistence_engine(service: &Service) -> Option<&str> {
    service
        .persistence_engine
        .as_deref()
        .filter(|name| !name.is_empty())
}

/// print_service_entry(): the service line of a listing.
fn push_service_line(out: &mut String, service: &Service, view: View) {
    let name = list_service_name(&service.key);
    let stats = &service.stats;
    match view {
        // "%-33s" and five print_largenum()
        View::Stats | View::StatsExact | View::Rate | View::RateExact => {
            let _ = write!(out, "{name:<33}");
            let counters = if matches!(view, View::Stats | View::StatsExact) {
                [
                    stats.connections,
                    stats.packets_in,
                    stats.packets_out,
                    stats.bytes_in,
                    stats.bytes_out,
                ]
            } else {
                [
                    stats.cps,
                    stats.packets_in_rate,
                    stats.packets_out_rate,
                    stats.bytes_in_rate,
                    stats.bytes_out_rate,
                ]
            };
            for n in counters {
                push_largenum(out, n, view.exact());
            }
        }
        // "%s %s" of name and scheduler, then " (%s)" flags, " persistent %u", " mask %s"
        // (IPv4) or " mask %i" (IPv6), " pe %s", " ops".
        View::Default | View::Thresholds | View::PersistentConnections | View::TunnelInfo => {
            let _ = write!(out, "{name} {}", service.scheduler);
            if has_scheduler_flags(service.flags) {
                let _ = write!(out, " ({})", scheduler_flags(service));
            }
            if service.flags.contains(ServiceFlags::PERSISTENT) {
                let _ = write!(out, " persistent {}", service.timeout);
                if let Some(mask) = persistence_mask(service) {
                    let _ = write!(out, " mask {mask}");
                }
                if let Some(engine) = persistence_engine(service) {
                    let _ = write!(out, " pe {engine}");
                }
            }
            if service.flags.contains(ServiceFlags::ONEPACKET) {
                out.push_str(" ops");
            }
        }
    }
    out.push('\n');
}

/// fwd_tun_info(): the TunnelInfo column, `n/a` unless the destination is a tunnel of a known
/// type.
fn tunnel_info(destination: &Destination) -> String {
    let ForwardingMethod::Tunnel(tunnel) = destination.forwarding else {
        return "n/a".to_string();
    };
    let Some(kind) = tunnel_type_name(tunnel.kind) else {
        return "n/a".to_string();
    };
    let info = match tunnel.kind {
        TunnelType::Gue => format!(
            "{kind}:{}:{}",
            tunnel.port,
            tunnel_flags_short(tunnel.flags.bits())
        ),
        TunnelType::Gre => format!("{kind}:{}", tunnel_flags_short(tunnel.flags.bits())),
        TunnelType::IpIp | TunnelType::Other(_) => kind.to_string(),
    };
    // snprintf() into 16 bytes.
    truncate(info, 15)
}

/// print_service_entry(): one destination line of a listing.
fn push_destination_line(out: &mut String, destination: &Destination, view: View) {
    let name = address_port(&destination.address, destination.port);
    // The address column is cut to 28 bytes unless IPv6 (never reached with -n).
    let family = destination
        .family
        .unwrap_or_else(|| Family::of(&destination.address));
    let name = match family {
        Family::Inet6 => name,
        Family::Inet => truncate(name, 28),
    };
    let stats = &destination.stats;
    match view {
        // "  -> %-28s" and five print_largenum()
        View::Stats | View::StatsExact => {
            let _ = write!(out, "  -> {name:<28}");
            for n in [
                stats.connections,
                stats.packets_in,
                stats.packets_out,
                stats.bytes_in,
                stats.bytes_out,
            ] {
                push_largenum(out, n, view.exact());
            }
        }
        // "  -> %-28s %8llu %8llu %8llu" (never scaled), then two print_largenum()
        View::Rate | View::RateExact => {
            let _ = write!(
                out,
                "  -> {name:<28} {:>8} {:>8} {:>8}",
                stats.cps, stats.packets_in_rate, stats.packets_out_rate
            );
            push_largenum(out, stats.bytes_in_rate, view.exact());
            push_largenum(out, stats.bytes_out_rate, view.exact());
        }
        // "  -> %-28s %-10u %-10u %-10u %-10u\n"
        View::Thresholds => {
            let _ = write!(
                out,
                "  -> {name:<28} {:<10} {:<10} {:<10} {:<10}",
                destination.upper_threshold,
                destination.lower_threshold,
                destination.active_connections,
                destination.inactive_connections
            );
        }
        // "  -> %-28s %-9u %-11u %-10u %-10u\n"
        View::PersistentConnections => {
            let _ = write!(
                out,
                "  -> {name:<28} {:<9} {:<11} {:<10} {:<10}",
                destination.weight,
                destination.persistent_connections,
                destination.active_connections,
                destination.inactive_connections
            );
        }
        // "  -> %-28s %-7s %-13s %-6d %-10u %-10u\n"
        View::TunnelInfo => {
            let _ = write!(
                out,
                "  -> {name:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                forwarding_name(destination.forwarding),
                tunnel_info(destination),
                destination.weight as i32,
                destination.active_connections,
                destination.inactive_connections
            );
        }
        // "  -> %-28s %-7s %-6d %-10u %-10u\n"
        View::Default => {
            let _ = write!(
                out,
                "  -> {name:<28} {:<7} {:<6} {:<10} {:<10}",
                forwarding_name(destination.forwarding),
                destination.weight as i32,
                destination.active_connections,
                destination.inactive_connections
            );
        }
    }
    out.push('\n');
}
