//! The netfilter rules a Service proxy needs beside IPVS, as one nftables table ipvsd owns: a
//! pure function of the desired virtual servers, and the transactions that bring the kernel's
//! table there.
//!
//! IPVS balances, but on a cluster of several nodes the reply of a pod on another node must
//! come back through the node that balanced the request, or the client drops it. kube-proxy's
//! IPVS mode marks such traffic with iptables and masquerades it (KUBE-MARK-MASQ,
//! KUBE-POSTROUTING, KUBE-LOOP-BACK); ipvsd does the same with nftables:
//!
//! - traffic to a cluster IP from outside `--cluster-cidr` (or all of it with
//!   `--masquerade-all`), and from the node itself: a host-network client of a cluster IP gets
//!   the cluster IP as its source address, which every node holds, so a pod on another node
//!   would answer to itself (kubernetes#65158);
//! - traffic to node ports, external IPs and load-balancer IPs unless the Service's external
//!   traffic policy is `Local` (then the client keeps its address and only local pods serve);
//! - hairpin: a pod that reaches itself through its Service.
//!
//! The rules (chains) depend only on the flags; what changes with the Services are the
//! elements of three sets keyed by address, protocol and port. So a sync is one small
//! transaction of element additions and deletions, whatever the number of Services, and a full
//! sync replaces the table atomically (one transaction: never a half-applied ruleset).
//!
//! The text is the `nft -f` language: the `nft` tool parses it and sends one netlink batch,
//! which the kernel applies all or nothing.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use ipvs::{Protocol, ServiceKey};

use crate::model::{AddressKind, Desired};

/// The family of ipvsd's table: `inet` holds IPv4 and IPv6 rules together.
pub const TABLE_FAMILY: &str = "inet";
/// The name of ipvsd's table.
pub const TABLE_NAME: &str = "ipvsd";
/// The packet mark bit that says "masquerade this": kube-proxy's default (`0x4000`, bit 14), so
/// network plugins that know kube-proxy's mark treat ipvsd's the same way.
pub const MASQUERADE_MARK: u32 = 0x4000;

/// The flags that shape the masquerade rules (kube-proxy's names and meanings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasqueradeConfig {
    /// `--cluster-cidr`: traffic to a cluster IP from outside these CIDRs is masqueraded;
    /// empty: none of it (the node's own traffic excepted).
    pub cluster_cidrs: Vec<IpNet>,
    /// `--masquerade-all`: all traffic to a cluster IP is masqueraded.
    pub masquerade_all: bool,
}

/// An address, protocol and port: a set element.
pub type Target = (IpAddr, Protocol, u16);

/// The elements of ipvsd's sets, both families together (rendering splits them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Elements {
    /// Cluster IPs with their protocol and port: masqueraded from outside the cluster CIDR.
    pub cluster_ips: BTreeSet<Target>,
    /// Node ports, external and load-balancer IPs whose traffic policy is `Cluster`: always
    /// masqueraded.
    pub masquerade: BTreeSet<Target>,
    /// This node's endpoints (address, protocol, target port): traffic from one to itself is
    /// hairpin, masqueraded after IPVS chose it.
    pub hairpin: BTreeSet<Target>,
}

impl Elements {
    /// How many elements there are in all.
    pub fn len(&self) -> usize {
        self.cluster_ips.len() + self.masquerade.len() + self.hairpin.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sets(&self) -> [(SetKind, &BTreeSet<Target>); 3] {
        [
            (SetKind::ClusterIps, &self.cluster_ips),
            (SetKind::Masquerade, &self.masquerade),
            (SetKind::Hairpin, &self.hairpin),
        ]
    }
}

/// The set elements the desired virtual servers need.
pub fn elements(desired: &Desired) -> Elements {
    let mut out = Elements::default();
    for (key, vs) in &desired.virtual_servers {
        let ServiceKey::Addr {
            address,
            protocol,
            port,
        } = *key
        else {
            continue;
        };
        match vs.kind {
            AddressKind::ClusterIp => {
                out.cluster_ips.insert((address, protocol, port));
            }
            AddressKind::NodePort | AddressKind::ExternalIp | AddressKind::LoadBalancer => {
                if !vs.local_policy {
                    out.masquerade.insert((address, protocol, port));
                }
            }
        }
        for (endpoint, target_port) in &vs.local_destinations {
            out.hairpin.insert((*endpoint, protocol, *target_port));
        }
    }
    out
}

/// Element changes that turn one set of elements into another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElementChanges {
    /// Elements to add.
    pub add: Elements,
    /// Elements to delete.
    pub delete: Elements,
}

impl ElementChanges {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.delete.is_empty()
    }

    /// How many elements are added or deleted.
    pub fn len(&self) -> usize {
        self.add.len() + self.delete.len()
    }
}

/// The element changes from `actual` to `desired`.
pub fn diff(desired: &Elements, actual: &Elements) -> ElementChanges {
    let d = |a: &BTreeSet<Target>, b: &BTreeSet<Target>| a.difference(b).copied().collect();
    ElementChanges {
        add: Elements {
            cluster_ips: d(&desired.cluster_ips, &actual.cluster_ips),
            masquerade: d(&desired.masquerade, &actual.masquerade),
            hairpin: d(&desired.hairpin, &actual.hairpin),
        },
        delete: Elements {
            cluster_ips: d(&actual.cluster_ips, &desired.cluster_ips),
            masquerade: d(&actual.masquerade, &desired.masquerade),
            hairpin: d(&actual.hairpin, &desired.hairpin),
        },
    }
}

/// One atomic change of ipvsd's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transaction {
    /// Replace the whole table (created if missing) with the rules and these elements: the first
    /// sync, the periodic repair, and after a failure.
    Replace(Elements),
    /// Add and delete elements of a table that [`Transaction::Replace`] made.
    Change(ElementChanges),
}

impl Transaction {
    /// How many set elements it writes or deletes: what its size grows with.
    pub fn elements(&self) -> usize {
        match self {
            Transaction::Replace(e) => e.len(),
            Transaction::Change(c) => c.len(),
        }
    }

    /// The transaction as `nft -f` input.
    pub fn render(&self, config: &MasqueradeConfig) -> String {
        match self {
            Transaction::Replace(elements) => render_table(config, elements),
            Transaction::Change(changes) => render_changes(changes),
        }
    }

    /// The elements the table holds once the transaction is applied to a table holding
    /// `actual` (for a replacement, `actual` does not matter).
    pub fn result(&self, actual: Option<&Elements>) -> Elements {
        match self {
            Transaction::Replace(e) => e.clone(),
            Transaction::Change(c) => {
                let mut out = actual.cloned().unwrap_or_default();
                for (kind, set) in c.delete.sets() {
                    let target = kind.select_mut(&mut out);
                    for e in set {
                        target.remove(e);
                    }
                }
                for (kind, set) in c.add.sets() {
                    kind.select_mut(&mut out).extend(set.iter().copied());
                }
                out
            }
        }
    }
}

/// Text that deletes ipvsd's table if it exists (for `ipvsd cleanup`): creating it first makes
/// the deletion succeed either way, in one transaction.
pub fn render_delete_table() -> String {
    format!("add table {TABLE_FAMILY} {TABLE_NAME}\ndelete table {TABLE_FAMILY} {TABLE_NAME}\n")
}

/// The three sets, each one per IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetKind {
    ClusterIps,
    Masquerade,
    Hairpin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fam {
    V4,
    V6,
}

impl Fam {
    const BOTH: [Fam; 2] = [Fam::V4, Fam::V6];

    fn of(address: &IpAddr) -> Fam {
        match address {
            IpAddr::V4(_) => Fam::V4,
            IpAddr::V6(_) => Fam::V6,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Fam::V4 => "v4",
            Fam::V6 => "v6",
        }
    }

    /// The payload expression prefix: `ip` or `ip6`.
    fn ip(self) -> &'static str {
        match self {
            Fam::V4 => "ip",
            Fam::V6 => "ip6",
        }
    }

    fn addr_type(self) -> &'static str {
        match self {
            Fam::V4 => "ipv4_addr",
            Fam::V6 => "ipv6_addr",
        }
    }
}

impl SetKind {
    fn base(self) -> &'static str {
        match self {
            SetKind::ClusterIps => "cluster-ips",
            SetKind::Masquerade => "masquerade-services",
            SetKind::Hairpin => "hairpin-endpoints",
        }
    }

    fn name(self, fam: Fam) -> String {
        format!("{}-{}", self.base(), fam.suffix())
    }

    fn element_type(self, fam: Fam) -> String {
        let a = fam.addr_type();
        match self {
            SetKind::ClusterIps | SetKind::Masquerade => format!("{a} . inet_proto . inet_service"),
            // Destination address, protocol, port, then the source address: one lookup
            // matches "to this endpoint, from this same endpoint".
            SetKind::Hairpin => format!("{a} . inet_proto . inet_service . {a}"),
        }
    }

    fn comment(self) -> &'static str {
        match self {
            SetKind::ClusterIps => "cluster IPs: masqueraded from outside the cluster CIDR",
            SetKind::Masquerade => {
                "node ports, external and load-balancer IPs of externalTrafficPolicy Cluster"
            }
            SetKind::Hairpin => "endpoints on this node: a pod reaching itself is masqueraded",
        }
    }

    fn select_mut(self, e: &mut Elements) -> &mut BTreeSet<Target> {
        match self {
            SetKind::ClusterIps => &mut e.cluster_ips,
            SetKind::Masquerade => &mut e.masquerade,
            SetKind::Hairpin => &mut e.hairpin,
        }
    }

    fn element(self, (address, protocol, port): &Target) -> String {
        let proto = protocol_name(*protocol);
        match self {
            SetKind::ClusterIps | SetKind::Masquerade => format!("{address} . {proto} . {port}"),
            SetKind::Hairpin => format!("{address} . {proto} . {port} . {address}"),
        }
    }
}

fn protocol_name(p: Protocol) -> String {
    match p {
        Protocol::Tcp => "tcp".into(),
        Protocol::Udp => "udp".into(),
        Protocol::Sctp => "sctp".into(),
        Protocol::Other(n) => n.to_string(),
    }
}

/// `{ a, b, ... }` of the elements of one family, or `None` when there are none (nft has no
/// empty element list).
fn element_list(kind: SetKind, fam: Fam, set: &BTreeSet<Target>) -> Option<String> {
    let mut out = String::new();
    for e in set.iter().filter(|(a, _, _)| Fam::of(a) == fam) {
        out.push_str(if out.is_empty() { "{ " } else { ", " });
        out.push_str(&kind.element(e));
    }
    if out.is_empty() {
        None
    } else {
        out.push_str(" }");
        Some(out)
    }
}

fn render_changes(changes: &ElementChanges) -> String {
    let mut out = String::new();
    // Deletions first: an element both deleted and added cannot occur (a diff), but an add
    // after a delete is the order that could never fail on a duplicate.
    for (verb, elements) in [("delete", &changes.delete), ("add", &changes.add)] {
        for (kind, set) in elements.sets() {
            for fam in Fam::BOTH {
                if let Some(list) = element_list(kind, fam, set) {
                    let _ = writeln!(
                        out,
                        "{verb} element {TABLE_FAMILY} {TABLE_NAME} {} {list}",
                        kind.name(fam)
                    );
                }
            }
        }
    }
    out
}

fn render_table(config: &MasqueradeConfig, elements: &Elements) -> String {
    let mark = format!("0x{MASQUERADE_MARK:x}");
    let mut out = String::new();
    // Creating the table before deleting it makes the deletion valid whether or not the table
    // exists; the kernel applies the three statements as one transaction.
    let _ = writeln!(out, "add table {TABLE_FAMILY} {TABLE_NAME}");
    let _ = writeln!(out, "delete table {TABLE_FAMILY} {TABLE_NAME}");
    let _ = writeln!(out, "table {TABLE_FAMILY} {TABLE_NAME} {{");
    let _ = writeln!(
        out,
        "\tcomment \"Kubernetes Services: masquerading beside IPVS; owned and replaced by ipvsd\""
    );
    for (kind, set) in elements.sets() {
        for fam in Fam::BOTH {
            let _ = writeln!(out, "\tset {} {{", kind.name(fam));
            let _ = writeln!(out, "\t\ttype {}", kind.element_type(fam));
            let _ = writeln!(out, "\t\tcomment \"{}\"", kind.comment());
            if let Some(list) = element_list(kind, fam, set) {
                let _ = writeln!(out, "\t\telements = {list}");
            }
            let _ = writeln!(out, "\t}}");
        }
    }

    // Marking happens before IPVS (dstnat priority, ahead of IPVS's own hooks) while the
    // destination is still the Service address; masquerading after it, on the way out.
    out.push_str("\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump services\n\t}\n");
    out.push_str("\tchain nat-output {\n\t\ttype nat hook output priority -100; policy accept;\n");
    for fam in Fam::BOTH {
        // The node's own traffic to a cluster IP: its source address is the cluster IP itself
        // (local on the dummy interface), or a node address; either way the reply must come
        // back here.
        let _ = writeln!(
            out,
            "\t\t{} daddr . meta l4proto . th dport @{} jump mark-for-masquerade",
            fam.ip(),
            SetKind::ClusterIps.name(fam)
        );
    }
    out.push_str("\t\tjump services\n\t}\n");

    out.push_str("\tchain services {\n");
    for fam in Fam::BOTH {
        let ip = fam.ip();
        let cluster_ips = SetKind::ClusterIps.name(fam);
        if config.masquerade_all {
            let _ = writeln!(
                out,
                "\t\t{ip} daddr . meta l4proto . th dport @{cluster_ips} jump mark-for-masquerade"
            );
        } else {
            let cidrs: Vec<String> = config
                .cluster_cidrs
                .iter()
                .filter(|net| Fam::of(&net.addr()) == fam)
                .map(|net| net.trunc().to_string())
                .collect();
            // Without a cluster CIDR of this family nothing tells pods from outside clients:
            // as kube-proxy, no cluster-IP traffic is masqueraded then.
            if !cidrs.is_empty() {
                let _ = writeln!(
                    out,
                    "\t\t{ip} daddr . meta l4proto . th dport @{cluster_ips} {ip} saddr != {{ {} }} jump mark-for-masquerade",
                    cidrs.join(", ")
                );
            }
        }
        let _ = writeln!(
            out,
            "\t\t{ip} daddr . meta l4proto . th dport @{} jump mark-for-masquerade",
            SetKind::Masquerade.name(fam)
        );
    }
    out.push_str("\t}\n");

    let _ = writeln!(
        out,
        "\tchain mark-for-masquerade {{\n\t\tmeta mark set meta mark | {mark}\n\t}}"
    );
    out.push_str("\tchain nat-postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
    let _ = writeln!(out, "\t\tmeta mark & {mark} == {mark} jump masquerading");
    for fam in Fam::BOTH {
        let ip = fam.ip();
        let _ = writeln!(
            out,
            "\t\t{ip} daddr . meta l4proto . th dport . {ip} saddr @{} masquerade fully-random",
            SetKind::Hairpin.name(fam)
        );
    }
    out.push_str("\t}\n");
    // The mark is cleared before masquerading, as kube-proxy does, so a packet that passes
    // the hook again (encapsulated by a network plugin) is not masqueraded twice.
    let _ = writeln!(
        out,
        "\tchain masquerading {{\n\t\tmeta mark set meta mark ^ {mark}\n\t\tmasquerade fully-random\n\t}}"
    );
    out.push_str("}\n");
    out
}
