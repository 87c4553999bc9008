//! Command-line interface.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::model::NodePortAddresses;

/// Runs Kubernetes Services on Linux IPVS.
#[derive(Debug, Parser)]
#[command(name = "ipvsd", version, about)]
pub struct Cli {
    /// Log level or filter (overrides RUST_LOG), e.g. `info` or `ipvsd=debug`.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Keep the kernel's IPVS rules in step with the Services.
    Run(RunArgs),
    /// Print the rules ipvsd would program, as `ipvsadm -Sn` lines; touches nothing.
    Plan(PlanArgs),
    /// Print the kernel's IPVS table the way ipvsadm does.
    List(ListArgs),
    /// Remove everything ipvsd owns: its virtual servers, its addresses, the dummy interface.
    Cleanup(CleanupArgs),
}

/// Where Services come from and how they become rules: shared by `run` and `plan`.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Read Services and EndpointSlices from this YAML file or directory (repeatable) and follow
    /// its changes; without it, the Kubernetes API is used.
    #[arg(long = "manifests", value_name = "PATH")]
    pub manifests: Vec<PathBuf>,
    /// Kubeconfig for the Kubernetes API (else KUBECONFIG, else in-cluster config).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// This node's name (else NODE_NAME, else the hostname).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Only handle Services labelled service.kubernetes.io/service-proxy-name with this value
    /// (and those without the label).
    #[arg(long)]
    pub service_proxy_name: Option<String>,
    /// Restrict NodePort virtual servers to node addresses in these CIDRs (per family), or with
    /// `primary` to the node's primary address of each family (where the default route leaves).
    #[arg(long, value_delimiter = ',', value_name = "CIDR|primary", value_parser = parse_nodeport_address)]
    pub nodeport_addresses: Vec<NodePortAddress>,
    /// The dummy interface that holds cluster, external and load-balancer IPs.
    #[arg(long, default_value = "kube-ipvs0")]
    pub dummy_interface: String,
    /// Default IPVS scheduler (any the kernel has: rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed,
    /// nq, fo, ovf, mh, twos).
    #[arg(long, default_value = "rr")]
    pub scheduler: String,
    /// Default scheduler flags: sh-fallback, sh-port, mh-fallback, mh-port, flag-1, flag-2, flag-3.
    #[arg(long, value_name = "FLAG[,FLAG...]")]
    pub scheduler_flags: Option<String>,
    /// Never touch virtual servers on addresses in these CIDRs.
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    pub exclude_cidrs: Vec<IpNet>,
    /// The nodePort range whose virtual servers on node addresses ipvsd owns.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    pub nodeport_range: RangeInclusive<u16>,
}

/// `ipvsd run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sync once and exit (0 on success).
    #[arg(long)]
    pub once: bool,
    /// Changes closer together than this are applied together.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub min_sync_period: Duration,
    /// How often the kernel is read again and repaired.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub sync_period: Duration,
    /// Delete a draining TCP real server after this long even if it still has connections
    /// (default: wait for them to end).
    #[arg(long, value_parser = parse_duration)]
    pub graceful_termination_timeout: Option<Duration>,
    /// IPVS timeout of established TCP connections (unset: left alone).
    #[arg(long, value_parser = parse_duration)]
    pub tcp_timeout: Option<Duration>,
    /// IPVS timeout of TCP connections after FIN (unset: left alone).
    #[arg(long, value_parser = parse_duration)]
    pub tcpfin_timeout: Option<Duration>,
    /// IPVS timeout of UDP flows (unset: left alone).
    #[arg(long, value_parser = parse_duration)]
    pub udp_timeout: Option<Duration>,
    /// The cluster's pod CIDRs (kube-proxy's --cluster-cidr): traffic to a cluster IP from
    /// outside them is masqueraded. Unset: none is, except the node's own.
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    pub cluster_cidr: Vec<IpNet>,
    /// Masquerade all traffic to cluster IPs (kube-proxy's --masquerade-all).
    #[arg(long)]
    pub masquerade_all: bool,
    /// Also set arp_ignore=1 and arp_announce=2, so the node does not answer ARP for service
    /// addresses.
    #[arg(long)]
    pub strict_arp: bool,
    /// Turn the kernel's IPVS rate estimation on or off (net.ipv4.vs.run_estimation, Linux
    /// 5.16 and later; unset: left alone). Before Linux 6.2 it runs over every virtual and real
    /// server at once every 2 s in softirq, holding a CPU for long on large tables, and it also
    /// refreshes the counters: off, those freeze too.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub rate_estimation: Option<bool>,
    /// Where the node's sysctls are (a container mounts the host's /proc/sys elsewhere).
    #[arg(long, default_value = "/proc/sys")]
    pub sysctl_root: PathBuf,
    /// Serve /healthz, /livez and /readyz here (empty: off).
    #[arg(long, default_value = "0.0.0.0:10256")]
    pub health_address: String,
    /// Serve /metrics here (empty: off).
    #[arg(long, default_value = "127.0.0.1:10249")]
    pub metrics_address: String,
}

/// `ipvsd plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print the operations that would bring the current kernel to the plan instead.
    #[arg(long)]
    pub diff: bool,
}

/// `ipvsd list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Counters, like `ipvsadm -Ln --stats`.
    #[arg(long, conflicts_with_all = ["rate", "save"])]
    pub stats: bool,
    /// Rates, like `ipvsadm -Ln --rate`.
    #[arg(long, conflicts_with_all = ["stats", "save"])]
    pub rate: bool,
    /// Rules in the save format, like `ipvsadm -Sn`.
    #[arg(long, conflicts_with_all = ["stats", "rate"])]
    pub save: bool,
}

/// `ipvsd cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The dummy interface ipvsd used.
    #[arg(long, default_value = "kube-ipvs0")]
    pub dummy_interface: String,
    /// The nodePort range whose virtual servers on node addresses ipvsd owns.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    pub nodeport_range: RangeInclusive<u16>,
    /// Never touch virtual servers on addresses in these CIDRs.
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    pub exclude_cidrs: Vec<IpNet>,
}

/// One value of `--nodeport-addresses`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePortAddress {
    /// Node addresses in this CIDR.
    Cidr(IpNet),
    /// `primary`: the node's primary addresses.
    Primary,
}

/// Parses one value of `--nodeport-addresses`: a CIDR or `primary`.
pub fn parse_nodeport_address(s: &str) -> Result<NodePortAddress, String> {
    if s == "primary" {
        return Ok(NodePortAddress::Primary);
    }
    s.parse()
        .map(NodePortAddress::Cidr)
        .map_err(|_| format!("invalid value {s:?}: expected a CIDR or `primary`"))
}

/// The model's choice of NodePort addresses from the values of `--nodeport-addresses`:
/// `primary` stands alone, as kube-proxy requires.
pub fn nodeport_addresses(values: &[NodePortAddress]) -> Result<NodePortAddresses, String> {
    match values {
        [NodePortAddress::Primary] => Ok(NodePortAddresses::Primary),
        _ if values.contains(&NodePortAddress::Primary) => {
            Err("`primary` cannot be combined with CIDRs or given twice".to_owned())
        }
        _ => Ok(NodePortAddresses::Cidrs(
            values
                .iter()
                .filter_map(|v| match v {
                    NodePortAddress::Cidr(net) => Some(*net),
                    NodePortAddress::Primary => None,
                })
                .collect(),
        )),
    }
}

/// An address flag: `None` when empty (the endpoint is off).
pub fn parse_listen_address(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e| format!("invalid address {s:?}: {e}"))
}

/// `on` or `off`.
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{s:?}: expected on or off")),
    }
}

/// Parses a duration as Kubernetes flags write them: `90` (seconds), `90s`, `500ms`, `5m`,
/// `1h`, or a sum such as `1m30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("invalid duration {s:?}: too large"));
    }
    let invalid = || format!("invalid duration {s:?}: expected e.g. 30s, 500ms, 5m, 1h or 1m30s");
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        let n: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(invalid()),
        };
        total += part;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Parses `30000-32767`.
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("invalid port range {s:?}: expected FIRST-LAST"))?;
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("invalid port range {s:?}: {a:?} is not a port"))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("invalid port range {s:?}: {b:?} is not a port"))?;
    if a > b {
        return Err(format!("invalid port range {s:?}: {a} is above {b}"));
    }
    Ok(a..=b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m1s"), Ok(Duration::from_secs(901)));
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5m-").is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("30000-32767"), Ok(30000..=32767));
        assert!(parse_port_range("5-1").is_err());
        assert!(parse_port_range("70000-70001").is_err());
        assert!(parse_port_range("100").is_err());
    }

    #[test]
    fn nodeport_addresses_take_cidrs_or_primary_alone() {
        let net: IpNet = "192.168.0.0/16".parse().unwrap();
        assert_eq!(
            parse_nodeport_address("192.168.0.0/16"),
            Ok(NodePortAddress::Cidr(net))
        );
        assert_eq!(
            parse_nodeport_address("primary"),
            Ok(NodePortAddress::Primary)
        );
        assert!(parse_nodeport_address("Primary").is_err());
        assert!(parse_nodeport_address("192.168.0.1").is_err());

        assert_eq!(
            nodeport_addresses(&[]),
            Ok(NodePortAddresses::Cidrs(Vec::new()))
        );
        assert_eq!(
            nodeport_addresses(&[NodePortAddress::Cidr(net)]),
            Ok(NodePortAddresses::Cidrs(vec![net]))
        );
        assert_eq!(
            nodeport_addresses(&[NodePortAddress::Primary]),
            Ok(NodePortAddresses::Primary)
        );
        assert!(
            nodeport_addresses(&[NodePortAddress::Primary, NodePortAddress::Cidr(net)]).is_err()
        );
        assert!(nodeport_addresses(&[NodePortAddress::Primary, NodePortAddress::Primary]).is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
