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
//! Beside masquerading, the table guards what binding Service addresses exposes, as kube-proxy
//! does (KUBE-IPVS-FILTER, KUBE-FIREWALL, KUBE-IPVS-OUT-FILTER):
//!
//! - every address on the dummy interface is local to the node, so without a filter every
//!   host port (sshd, the kubelet) would answer on every cluster, external and load-balancer IP
//!   (kubernetes#72236): new connections to those addresses on a protocol and port no Service
//!   has there are rejected;
//! - a load-balancer IP of a Service with `loadBalancerSourceRanges` admits only clients from
//!   those ranges (and the node's own addresses); the node's own traffic to it from an address
//!   outside the ranges is refused;
//! - in-cluster clients (pods in `--cluster-cidr`, the node itself) of an external or
//!   load-balancer IP whose traffic policy is `Local` are sent to the Service's cluster IP, so
//!   they reach the Service from a node without a local endpoint too, as with kube-proxy.
//!
//! The rules (chains) depend only on the flags; what changes with the Services are the
//! elements of sets and maps keyed by address, protocol and port. So a sync is one small
//! transaction of element additions and deletions, whatever the number of Services, and a full
//! sync replaces the table atomically (one transaction: never a half-applied ruleset).
//!
//! The text is the `nft -f` language: the `nft` tool parses it and sends one netlink batch,
//! which the kernel applies all or nothing.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use ipvs::{Family, Protocol, ServiceKey};

use crate::model::{AddressKind, Desired, VirtualServer};

pub mod listing;

/// The family of ipvsd's table: `inet` holds IPv4 and IPv6 rules together.
pub const TABLE_FAMILY: &str = "inet";
/// The name of ipvsd's table.
pub const TABLE_NAME: &str = "ipvsd";
/// The packet mark bit that says "masquerade this": kube-proxy's default (`0x4000`, bit 14), so
/// network plugins that know kube-proxy's mark treat ipvsd's the same way.
pub const MASQUERADE_MARK: u32 = 0x4000;

/// Named counters of the table: packets the port filter rejected, packets from outside a
/// load-balancer IP's source ranges that were dropped, and the node's own that were refused.
pub const PORT_FILTER_REJECTED: &str = "port-filter-rejected";
/// See [`PORT_FILTER_REJECTED`].
pub const SOURCE_RANGE_DROPPED: &str = "source-range-dropped";
/// See [`PORT_FILTER_REJECTED`].
pub const SOURCE_RANGE_REFUSED: &str = "source-range-refused";
/// Every named counter of the table.
pub const COUNTERS: [&str; 3] = [
    PORT_FILTER_REJECTED,
    SOURCE_RANGE_DROPPED,
    SOURCE_RANGE_REFUSED,
];

/// Reads `nft list counters table inet ipvsd`: packets by counter name.
pub fn parse_counters(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut name: Option<&str> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("counter ") {
            name = rest.split_whitespace().next();
        } else if let (Some(n), Some(rest)) = (name, line.strip_prefix("packets ")) {
            if let Some(Ok(packets)) = rest.split_whitespace().next().map(str::parse) {
                out.insert(n.to_owned(), packets);
            }
            name = None;
        }
    }
    out
}

/// The flags that shape the rules (kube-proxy's names and meanings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasqueradeConfig {
    /// `--cluster-cidr`: traffic to a cluster IP from outside these CIDRs is masqueraded, and
    /// traffic from inside them is in-cluster; empty: none is masqueraded (the node's own
    /// traffic excepted) and only the node itself counts as in-cluster.
    pub cluster_cidrs: Vec<IpNet>,
    /// `--masquerade-all`: all traffic to a cluster IP is masqueraded.
    pub masquerade_all: bool,
}

/// An address, protocol and port: a Service address or an endpoint.
pub type Target = (IpAddr, Protocol, u16);

/// What ipvsd's sets and maps must hold for the desired virtual servers.
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
    /// The addresses on the dummy interface: guarded by the port filter.
    pub bound_addresses: BTreeSet<IpAddr>,
    /// The virtual servers on those addresses: what the port filter lets through.
    pub bound_services: BTreeSet<Target>,
    /// Load-balancer IPs with source ranges.
    pub firewall: BTreeSet<Target>,
    /// The client ranges each of them admits.
    pub firewall_allow: BTreeSet<(Target, IpNet)>,
    /// External and load-balancer IPs of `Local` policy, with the cluster IP and port of the
    /// same Service port, where in-cluster clients are sent.
    pub local_policy: BTreeSet<(Target, (IpAddr, u16))>,
}

/// The elements the desired virtual servers need.
pub fn elements(desired: &Desired) -> Elements {
    let mut out = Elements {
        bound_addresses: desired.bound_addresses.clone(),
        ..Elements::default()
    };
    for (key, vs) in &desired.virtual_servers {
        out.add_virtual_server(key, vs, &desired.bound_addresses);
    }
    out
}

impl Elements {
    /// Adds the elements one virtual server needs; whether its address is bound decides
    /// whether the port filter lets it through.
    fn add_virtual_server(
        &mut self,
        key: &ServiceKey,
        vs: &VirtualServer,
        bound_addresses: &BTreeSet<IpAddr>,
    ) {
        let ServiceKey::Addr {
            address,
            protocol,
            port,
        } = *key
        else {
            return;
        };
        let target = (address, protocol, port);
        match vs.kind {
            AddressKind::ClusterIp => {
                self.cluster_ips.insert(target);
            }
            AddressKind::NodePort | AddressKind::ExternalIp | AddressKind::LoadBalancer => {
                if !vs.local_policy {
                    self.masquerade.insert(target);
                }
            }
        }
        if bound_addresses.contains(&address) {
            self.bound_services.insert(target);
        }
        if let Some(ranges) = &vs.source_ranges {
            self.firewall.insert(target);
            self.firewall_allow.extend(
                ranges
                    .iter()
                    .filter(|net| Family::of(&net.addr()) == Family::of(&address))
                    .map(|net| (target, *net)),
            );
        }
        if vs.local_policy && matches!(vs.kind, AddressKind::ExternalIp | AddressKind::LoadBalancer)
        {
            if let Some(cluster_ip) = vs.cluster_ip {
                self.local_policy.insert((target, cluster_ip));
            }
        }
        for (endpoint, target_port) in vs.local_destinations.iter() {
            self.hairpin.insert((*endpoint, protocol, *target_port));
        }
    }
}

/// What contributes elements to the table: a virtual server, or a bound address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Contributor {
    VirtualServer(ServiceKey),
    Address(IpAddr),
}

/// One of ipvsd's sets as [`ElementIndex`] numbers it: its position among [`SetKind::ALL`]
/// times [`FAMILIES`]. A byte beside each contributed element instead of a copy of the set's
/// name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SetId(u8);

impl SetId {
    fn of(kind: SetKind, fam: Family) -> SetId {
        let fam = match fam {
            Family::Inet => 0,
            Family::Inet6 => 1,
        };
        // `SetKind::ALL` lists the kinds in their declaration order (checked where
        // `ElementIndex::default` lays its sets out).
        SetId((kind as usize * FAMILIES.len() + fam) as u8)
    }

    fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// What one contributor contributes: its elements, each with its set, sorted by set and
/// element so that comparing its old elements with its new ones is a walk over both. Boxed
/// rather than a `Vec`: it does not grow once made, and the spare capacity would be paid by
/// every contributor. The text is the one its set counts (see [`IndexedSet::contributors`]).
type Contribution = Box<[(SetId, Arc<str>)]>;

/// One set of the table in [`ElementIndex`]: its name and its elements, each with how many
/// contributors it has.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexedSet {
    name: String,
    /// The element's text is shared with the contributions that hold it: one copy of each
    /// element in the index.
    contributors: BTreeMap<Arc<str>, usize>,
    /// The digest of its elements, kept as they come and go.
    digest: SetDigest,
}

/// The table's elements with what each virtual server and bound address contributes, so a
/// change to some of them yields the element changes without looking at the others. An element
/// several contribute (the hairpin element of an endpoint behind a cluster IP and a node port)
/// stays while any of them does.
///
/// It lives as long as the controller, and a large cluster has tens of thousands of
/// contributors with a few elements each: a contributor's elements are one sorted slice of
/// set number and shared text, rather than a map of set names to sets of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementIndex {
    /// Each contributor's elements (none is kept for a contributor without any).
    contributions: BTreeMap<Contributor, Contribution>,
    /// Every set of the table, in [`SetId`] order.
    sets: Vec<IndexedSet>,
}

impl Default for ElementIndex {
    fn default() -> ElementIndex {
        let mut sets = Vec::with_capacity(SetKind::ALL.len() * FAMILIES.len());
        for kind in SetKind::ALL {
            for fam in FAMILIES {
                debug_assert_eq!(SetId::of(kind, fam).index(), sets.len(), "set numbering");
                sets.push(IndexedSet {
                    name: kind.name(fam),
                    contributors: BTreeMap::new(),
                    digest: SetDigest::default(),
                });
            }
        }
        ElementIndex {
            contributions: BTreeMap::new(),
            sets,
        }
    }
}

impl ElementIndex {
    /// The elements `desired` needs, computed from scratch.
    pub fn of(desired: &Desired) -> ElementIndex {
        let mut index = ElementIndex::default();
        index.update(
            desired,
            &desired.virtual_servers.keys().copied().collect(),
            &desired.bound_addresses,
        );
        index
    }

    /// The digest of each set that holds elements: what a repair compares the listing with
    /// beside the syncs, so that only a set that differs is compared element by element.
    pub fn digests(&self) -> SetDigests {
        SetDigests(
            self.sets
                .iter()
                .filter(|set| !set.contributors.is_empty())
                .map(|set| (set.name.clone(), set.digest))
                .collect(),
        )
    }

    /// Everything the table holds.
    pub fn contents(&self) -> SetContents {
        SetContents(
            self.sets
                .iter()
                .filter(|set| !set.contributors.is_empty())
                .map(|set| {
                    let elements = set.contributors.keys().map(|e| e.to_string()).collect();
                    (set.name.clone(), elements)
                })
                .collect(),
        )
    }

    /// Computes again what the virtual servers `keys` and the addresses `addresses` contribute
    /// under `desired` (nothing, for those that are gone), and returns the element changes
    /// that brings the table.
    pub fn update(
        &mut self,
        desired: &Desired,
        keys: &BTreeSet<ServiceKey>,
        addresses: &BTreeSet<IpAddr>,
    ) -> ElementChanges {
        let mut changes = ElementChanges::default();
        let contributors = keys
            .iter()
            .map(|k| Contributor::VirtualServer(*k))
            .chain(addresses.iter().map(|a| Contributor::Address(*a)));
        for contributor in contributors {
            let new = contributed(desired, contributor);
            let old = self
                .contributions
                .get(&contributor)
                .map_or(&[][..], |o| &o[..]);
            let unchanged = old.len() == new.len()
                && old
                    .iter()
                    .zip(&new)
                    .all(|((os, oe), (ns, ne))| os == ns && **oe == **ne);
            if unchanged {
                continue;
            }
            let old = self.contributions.remove(&contributor).unwrap_or_default();
            let kept = self.replace_contribution(old, new, &mut changes);
            if !kept.is_empty() {
                self.contributions.insert(contributor, kept);
            }
        }
        changes
    }

    /// Moves one contributor from its `old` elements to its `new` ones (both sorted) and
    /// returns what it now holds: an element in both keeps its text and count, the others are
    /// counted out or in, and recorded in `changes` when their last contributor goes or their
    /// first comes.
    fn replace_contribution(
        &mut self,
        old: Contribution,
        new: Vec<(SetId, String)>,
        changes: &mut ElementChanges,
    ) -> Contribution {
        let mut old = old.into_vec().into_iter().peekable();
        let mut kept = Vec::with_capacity(new.len());
        for (set, element) in new {
            // Old elements sorted before this one are no longer contributed.
            while let Some((gone_set, gone)) =
                old.next_if(|(s, e)| (*s, &**e) < (set, element.as_str()))
            {
                self.count_out(gone_set, &gone, changes);
            }
            match old.next_if(|(s, e)| *s == set && **e == *element) {
                Some(same) => kept.push(same),
                None => kept.push((set, self.count_in(set, element, changes))),
            }
        }
        for (gone_set, gone) in old {
            self.count_out(gone_set, &gone, changes);
        }
        kept.into_boxed_slice()
    }

    /// Counts one more contributor of `element` in `set`; returns the index's copy of it.
    fn count_in(&mut self, set: SetId, element: String, changes: &mut ElementChanges) -> Arc<str> {
        let set = &mut self.sets[set.index()];
        match set.contributors.entry(Arc::from(element)) {
            Entry::Occupied(mut counted) => {
                *counted.get_mut() += 1;
                Arc::clone(counted.key())
            }
            Entry::Vacant(first) => {
                let element = Arc::clone(first.key());
                first.insert(1);
                set.digest.add(&element);
                changes.record(&set.name, &element, true);
                element
            }
        }
    }

    /// Counts one contributor less of `element` in `set`.
    fn count_out(&mut self, set: SetId, element: &str, changes: &mut ElementChanges) {
        let set = &mut self.sets[set.index()];
        let count = set.contributors.get_mut(element).expect("counted");
        *count -= 1;
        if *count == 0 {
            set.contributors.remove(element);
            set.digest.remove(element);
            changes.record(&set.name, element, false);
        }
    }

    /// The set named `name`, if it is one of the table's.
    fn named(&self, name: &str) -> Option<&IndexedSet> {
        self.sets.iter().find(|set| set.name == name)
    }
}

/// What `contributor` contributes under `desired`, sorted by set and element (nothing if it is
/// gone).
fn contributed(desired: &Desired, contributor: Contributor) -> Vec<(SetId, String)> {
    let mut elements = Elements::default();
    match contributor {
        Contributor::VirtualServer(key) => {
            if let Some(vs) = desired.virtual_servers.get(&key) {
                elements.add_virtual_server(&key, vs, &desired.bound_addresses);
            }
        }
        Contributor::Address(address) => {
            if desired.bound_addresses.contains(&address) {
                elements.bound_addresses.insert(address);
            }
        }
    }
    let mut written = Vec::new();
    elements.write(|kind, fam, element| written.push((SetId::of(kind, fam), element)));
    written.sort_unstable();
    written.dedup();
    written
}

impl listing::ElementLookup for ElementIndex {
    fn holds(&self, set: &str, element: &str) -> bool {
        self.named(set)
            .is_some_and(|s| s.contributors.contains_key(element))
    }

    fn count(&self, set: &str) -> usize {
        self.named(set).map_or(0, |s| s.contributors.len())
    }

    fn set_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .sets
            .iter()
            .filter(|set| !set.contributors.is_empty())
            .map(|set| set.name.as_str())
            .collect();
        // By name, as [`SetContents`] lists them.
        names.sort_unstable();
        names
    }
}

/// A digest of a set's elements: how many, and the sum of their hashes, so that it can be
/// kept as elements come and go, whatever their order. Two sets with the same digest hold the
/// same elements but by a chance of one in 2^64.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetDigest {
    /// How many elements.
    pub count: usize,
    /// The wrapping sum of their hashes.
    pub sum: u64,
}

impl SetDigest {
    /// The digest of `elements` (each counted once).
    pub fn of<'a>(elements: impl IntoIterator<Item = &'a str>) -> SetDigest {
        let mut digest = SetDigest::default();
        for element in elements {
            digest.add(element);
        }
        digest
    }

    /// Counts `element` in.
    pub fn add(&mut self, element: &str) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(element_hash(element));
    }

    /// Counts `element` out.
    pub fn remove(&mut self, element: &str) {
        self.count -= 1;
        self.sum = self.sum.wrapping_sub(element_hash(element));
    }
}

/// An element's hash, the same in every process of the same build (the standard hasher with
/// its fixed keys).
fn element_hash(element: &str) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    element.hash(&mut hasher);
    hasher.finish()
}

/// The digest of each set holding elements, by set name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetDigests(pub BTreeMap<String, SetDigest>);

impl SetDigests {
    /// Whether `elements` have the digest the set `name` should have (an empty set's when none
    /// is given).
    pub fn agree(&self, name: &str, elements: &BTreeSet<String>) -> bool {
        self.0.get(name).copied().unwrap_or_default()
            == SetDigest::of(elements.iter().map(String::as_str))
    }
}

/// The content of ipvsd's sets and maps as `nft` elements, by set name (`cluster-ips-v4`, ...):
/// the form transactions are written and compared in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetContents(pub BTreeMap<String, BTreeSet<String>>);

impl SetContents {
    /// How many elements there are in all.
    pub fn len(&self) -> usize {
        self.0.values().map(BTreeSet::len).sum()
    }

    /// The digest of each set holding elements.
    pub fn digests(&self) -> SetDigests {
        SetDigests(
            self.0
                .iter()
                .filter(|(_, elements)| !elements.is_empty())
                .map(|(name, elements)| {
                    (
                        name.clone(),
                        SetDigest::of(elements.iter().map(String::as_str)),
                    )
                })
                .collect(),
        )
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every element with its set's name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .flat_map(|(set, elements)| elements.iter().map(move |e| (set.as_str(), e.as_str())))
    }

    /// The elements of one set (empty if it has none).
    pub fn set(&self, name: &str) -> BTreeSet<String> {
        self.0.get(name).cloned().unwrap_or_default()
    }

    fn insert(&mut self, set: SetKind, fam: Family, element: String) {
        self.0.entry(set.name(fam)).or_default().insert(element);
    }
}

impl Elements {
    /// The elements as `nft` writes them, by set.
    pub fn contents(&self) -> SetContents {
        let mut out = SetContents::default();
        self.write(|kind, fam, element| out.insert(kind, fam, element));
        out
    }

    /// Hands each element to `out` as `nft` writes it, with the kind and family of its set:
    /// the one place elements are written, for [`Elements::contents`] and for
    /// [`ElementIndex`], which keeps them by set number rather than by set name.
    fn write(&self, mut out: impl FnMut(SetKind, Family, String)) {
        let target = |(a, p, port): &Target| format!("{a} . {} . {port}", protocol_name(*p));
        for (kind, set) in [
            (SetKind::ClusterIps, &self.cluster_ips),
            (SetKind::Masquerade, &self.masquerade),
            (SetKind::BoundServices, &self.bound_services),
            (SetKind::Firewall, &self.firewall),
        ] {
            for t in set {
                out(kind, Family::of(&t.0), target(t));
            }
        }
        for t in &self.hairpin {
            out(
                SetKind::Hairpin,
                Family::of(&t.0),
                format!("{} . {}", target(t), t.0),
            );
        }
        for a in &self.bound_addresses {
            out(SetKind::BoundAddresses, Family::of(a), a.to_string());
        }
        for (t, net) in &self.firewall_allow {
            out(
                SetKind::FirewallAllow,
                Family::of(&t.0),
                format!("{} . {net}", target(t)),
            );
        }
        for (t, (ip, port)) in &self.local_policy {
            if Family::of(ip) == Family::of(&t.0) {
                // A map cannot be looked up as a set on every kernel: its keys again, as a set.
                out(SetKind::LocalPolicyServices, Family::of(&t.0), target(t));
                out(
                    SetKind::LocalPolicy,
                    Family::of(&t.0),
                    format!("{} : {ip} . {port}", target(t)),
                );
            }
        }
    }
}

/// Element changes that turn one table content into another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElementChanges {
    /// Elements to add.
    pub add: SetContents,
    /// Elements to delete.
    pub delete: SetContents,
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

    /// Records one element added to or deleted from `set`: an element deleted and added again
    /// (by two contributors of one update) is no change.
    fn record(&mut self, set: &str, element: &str, added: bool) {
        let (to, from) = if added {
            (&mut self.add, &mut self.delete)
        } else {
            (&mut self.delete, &mut self.add)
        };
        if let Some(elements) = from.0.get_mut(set) {
            if elements.remove(element) {
                if elements.is_empty() {
                    from.0.remove(set);
                }
                return;
            }
        }
        to.0.entry(set.to_owned())
            .or_default()
            .insert(element.to_owned());
    }
}

/// The element changes from `actual` to `desired`.
pub fn diff(desired: &SetContents, actual: &SetContents) -> ElementChanges {
    let mut changes = ElementChanges::default();
    let names: BTreeSet<&String> = desired.0.keys().chain(actual.0.keys()).collect();
    for name in names {
        let empty = BTreeSet::new();
        let d = desired.0.get(name).unwrap_or(&empty);
        let a = actual.0.get(name).unwrap_or(&empty);
        let add: BTreeSet<String> = d.difference(a).cloned().collect();
        let delete: BTreeSet<String> = a.difference(d).cloned().collect();
        if !add.is_empty() {
            changes.add.0.insert(name.clone(), add);
        }
        if !delete.is_empty() {
            changes.delete.0.insert(name.clone(), delete);
        }
    }
    changes
}

/// One atomic change of ipvsd's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transaction {
    /// Replace the whole table (created if missing) with the rules and these elements: the first
    /// sync, after a failure, and when the periodic repair found the table changed (see
    /// [`listing`]).
    Replace(SetContents),
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
            Transaction::Replace(contents) => render_table(config, contents),
            Transaction::Change(changes) => render_changes(changes),
        }
    }

    /// What the sets hold once the transaction is applied to a table holding `actual` (for a
    /// replacement, `actual` does not matter).
    pub fn result(&self, actual: Option<&SetContents>) -> SetContents {
        match self {
            Transaction::Replace(e) => e.clone(),
            Transaction::Change(c) => {
                let mut out = actual.cloned().unwrap_or_default();
                for (name, elements) in &c.delete.0 {
                    if let Some(set) = out.0.get_mut(name) {
                        for e in elements {
                            set.remove(e);
                        }
                    }
                }
                for (name, elements) in &c.add.0 {
                    out.0
                        .entry(name.clone())
                        .or_default()
                        .extend(elements.iter().cloned());
                }
                out.0.retain(|_, set| !set.is_empty());
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

/// ipvsd's sets and maps, each one per IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetKind {
    ClusterIps,
    Masquerade,
    Hairpin,
    BoundAddresses,
    BoundServices,
    Firewall,
    FirewallAllow,
    LocalPolicyServices,
    LocalPolicy,
}

impl SetKind {
    const ALL: [SetKind; 9] = [
        SetKind::ClusterIps,
        SetKind::Masquerade,
        SetKind::Hairpin,
        SetKind::BoundAddresses,
        SetKind::BoundServices,
        SetKind::Firewall,
        SetKind::FirewallAllow,
        SetKind::LocalPolicyServices,
        SetKind::LocalPolicy,
    ];

    fn base(self) -> &'static str {
        match self {
            SetKind::ClusterIps => "cluster-ips",
            SetKind::Masquerade => "masquerade-services",
            SetKind::Hairpin => "hairpin-endpoints",
            SetKind::BoundAddresses => "service-addresses",
            SetKind::BoundServices => "service-ports",
            SetKind::Firewall => "firewall",
            SetKind::FirewallAllow => "firewall-allow",
            SetKind::LocalPolicyServices => "local-policy-services",
            SetKind::LocalPolicy => "local-policy-cluster-ips",
        }
    }

    fn name(self, fam: Family) -> String {
        format!("{}-{}", self.base(), fam.suffix())
    }

    fn is_map(self) -> bool {
        self == SetKind::LocalPolicy
    }

    /// The `type` line, and `flags` if any.
    fn declaration(self, fam: Family) -> (String, Option<&'static str>) {
        let a = fam.addr_type();
        let target = format!("{a} . inet_proto . inet_service");
        match self {
            SetKind::ClusterIps
            | SetKind::Masquerade
            | SetKind::BoundServices
            | SetKind::Firewall
            | SetKind::LocalPolicyServices => (target, None),
            // Destination, then the source address: one lookup matches "to this endpoint, from
            // this same endpoint".
            SetKind::Hairpin => (format!("{target} . {a}"), None),
            SetKind::BoundAddresses => (a.to_owned(), None),
            SetKind::FirewallAllow => (format!("{target} . {a}"), Some("interval")),
            SetKind::LocalPolicy => (format!("{target} : {a} . inet_service"), None),
        }
    }

    fn comment(self) -> &'static str {
        match self {
            SetKind::ClusterIps => "cluster IPs: masqueraded from outside the cluster CIDR",
            SetKind::Masquerade => {
                "node ports, external and load-balancer IPs of externalTrafficPolicy Cluster"
            }
            SetKind::Hairpin => "endpoints on this node: a pod reaching itself is masqueraded",
            SetKind::BoundAddresses => "addresses on the dummy interface: ports filtered",
            SetKind::BoundServices => "Service ports on those addresses: let through",
            SetKind::Firewall => "load-balancer IPs with loadBalancerSourceRanges",
            SetKind::FirewallAllow => "the client ranges each admits",
            SetKind::LocalPolicyServices => {
                "external and load-balancer IPs of a Local policy: the node's own traffic is masqueraded"
            }
            SetKind::LocalPolicy => {
                "external and load-balancer IPs of a Local policy: in-cluster clients go to the cluster IP"
            }
        }
    }
}

/// Both families, in the order their sets and rules are written.
const FAMILIES: [Family; 2] = [Family::Inet, Family::Inet6];

/// How nftables names what differs between the two families.
trait NftFamily {
    /// The suffix of a set's name: `v4` or `v6`.
    fn suffix(self) -> &'static str;
    /// The payload expression prefix: `ip` or `ip6`.
    fn ip(self) -> &'static str;
    /// The address type of a set: `ipv4_addr` or `ipv6_addr`.
    fn addr_type(self) -> &'static str;
}

impl NftFamily for Family {
    fn suffix(self) -> &'static str {
        match self {
            Family::Inet => "v4",
            Family::Inet6 => "v6",
        }
    }

    fn ip(self) -> &'static str {
        match self {
            Family::Inet => "ip",
            Family::Inet6 => "ip6",
        }
    }

    fn addr_type(self) -> &'static str {
        match self {
            Family::Inet => "ipv4_addr",
            Family::Inet6 => "ipv6_addr",
        }
    }
}

fn protocol_name(p: Protocol) -> String {
    match p {
        Protocol::Tcp => "tcp".into(),
        Protocol::Udp => "udp".into(),
        Protocol::Sctp => "sctp".into(),
        Protocol::Other(n) => n.to_string(),
        _ => p.number().to_string(),
    }
}

fn element_list<'a>(elements: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::from("{ ");
    for (i, e) in elements.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(e);
    }
    out.push_str(" }");
    out
}

fn render_changes(changes: &ElementChanges) -> String {
    let mut out = String::new();
    // Deletions first, so that a changed map entry (deleted, then added with its new value)
    // never collides with itself.
    for (verb, contents) in [("delete", &changes.delete), ("add", &changes.add)] {
        for (name, elements) in &contents.0 {
            if elements.is_empty() {
                continue;
            }
            // A map's element is deleted by its key alone.
            let list = if verb == "delete" {
                element_list(
                    elements
                        .iter()
                        .map(|e| e.split_once(" : ").map_or(e.as_str(), |(k, _)| k)),
                )
            } else {
                element_list(elements.iter().map(String::as_str))
            };
            let _ = writeln!(
                out,
                "{verb} element {TABLE_FAMILY} {TABLE_NAME} {name} {list}"
            );
        }
    }
    out
}

fn render_table(config: &MasqueradeConfig, contents: &SetContents) -> String {
    let mark = format!("0x{MASQUERADE_MARK:x}");
    let mut out = String::new();
    // Creating the table before deleting it makes the deletion valid whether or not the table
    // exists; the kernel applies the whole text as one transaction.
    let _ = writeln!(out, "add table {TABLE_FAMILY} {TABLE_NAME}");
    let _ = writeln!(out, "delete table {TABLE_FAMILY} {TABLE_NAME}");
    let _ = writeln!(out, "table {TABLE_FAMILY} {TABLE_NAME} {{");
    let _ = writeln!(
        out,
        "\tcomment \"Kubernetes Services beside IPVS: masquerading and filters; owned and replaced by ipvsd\""
    );
    for kind in SetKind::ALL {
        for fam in FAMILIES {
            let name = kind.name(fam);
            let (ty, flags) = kind.declaration(fam);
            let word = if kind.is_map() { "map" } else { "set" };
            let _ = writeln!(out, "\t{word} {name} {{");
            let _ = writeln!(out, "\t\ttype {ty}");
            if let Some(flags) = flags {
                let _ = writeln!(out, "\t\tflags {flags}");
            }
            let _ = writeln!(out, "\t\tcomment \"{}\"", kind.comment());
            if let Some(elements) = contents.0.get(&name).filter(|e| !e.is_empty()) {
                let list = element_list(elements.iter().map(String::as_str));
                let _ = writeln!(out, "\t\telements = {list}");
            }
            let _ = writeln!(out, "\t}}");
        }
    }
    for counter in COUNTERS {
        let _ = writeln!(out, "\tcounter {counter} {{\n\t}}");
    }
    let cidrs = |fam: Family| -> Option<String> {
        let list: Vec<String> = config
            .cluster_cidrs
            .iter()
            .filter(|net| Family::of(&net.addr()) == fam)
            .map(|net| net.trunc().to_string())
            .collect();
        (!list.is_empty()).then(|| format!("{{ {} }}", list.join(", ")))
    };
    let key = |fam: Family| format!("{} daddr . meta l4proto . th dport", fam.ip());

    // Source ranges first (before any address translation, so in-cluster clients are held to
    // them too); the node's own addresses are always admitted.
    out.push_str("\tchain filter-prerouting {\n\t\ttype filter hook prerouting priority -110; policy accept;\n");
    // A packet to a load-balancer IP with source ranges, from outside them.
    let outside_ranges = |fam: Family| {
        format!(
            "{k} @{} {k} . {} saddr != @{}",
            SetKind::Firewall.name(fam),
            fam.ip(),
            SetKind::FirewallAllow.name(fam),
            k = key(fam),
        )
    };
    for fam in FAMILIES {
        let _ = writeln!(
            out,
            "\t\t{} fib saddr type != local counter name \"{SOURCE_RANGE_DROPPED}\" drop",
            outside_ranges(fam)
        );
    }
    out.push_str("\t}\n");
    // The node's own traffic to a load-balancer IP from an address outside its ranges: refused
    // before IPVS (at -98 on this hook) takes it.
    out.push_str(
        "\tchain filter-output {\n\t\ttype filter hook output priority -110; policy accept;\n",
    );
    for fam in FAMILIES {
        let _ = writeln!(
            out,
            "\t\t{} counter name \"{SOURCE_RANGE_REFUSED}\" reject",
            outside_ranges(fam)
        );
    }
    out.push_str("\t}\n");
    // The port filter: before IPVS (at 98 on this hook), which only takes Service ports anyway.
    out.push_str("\tchain filter-input {\n\t\ttype filter hook input priority 0; policy accept;\n");
    for fam in FAMILIES {
        let ip = fam.ip();
        let _ = writeln!(
            out,
            "\t\tct state new {ip} daddr @{} {k} != @{} counter name \"{PORT_FILTER_REJECTED}\" reject",
            SetKind::BoundAddresses.name(fam),
            SetKind::BoundServices.name(fam),
            k = key(fam),
        );
    }
    out.push_str("\t}\n");

    // Marking happens before IPVS (dstnat priority, ahead of IPVS's own hooks) while the
    // destination is still the Service address; masquerading after it, on the way out.
    out.push_str("\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump services\n");
    for fam in FAMILIES {
        if let Some(cidrs) = cidrs(fam) {
            let _ = writeln!(
                out,
                "\t\t{ip} saddr {cidrs} dnat {ip} to {k} map @{}",
                SetKind::LocalPolicy.name(fam),
                ip = fam.ip(),
                k = key(fam),
            );
        }
    }
    out.push_str("\t}\n");
    out.push_str("\tchain nat-output {\n\t\ttype nat hook output priority -100; policy accept;\n");
    for fam in FAMILIES {
        // The node's own traffic to a cluster IP: its source address is the cluster IP itself
        // (local on the dummy interface), or a node address; either way the reply must come
        // back here. The same for the Local-policy addresses it is sent on from.
        for set in [SetKind::ClusterIps, SetKind::LocalPolicyServices] {
            let _ = writeln!(
                out,
                "\t\t{} @{} jump mark-for-masquerade",
                key(fam),
                set.name(fam)
            );
        }
    }
    out.push_str("\t\tjump services\n");
    for fam in FAMILIES {
        let _ = writeln!(
            out,
            "\t\tdnat {} to {k} map @{}",
            fam.ip(),
            SetKind::LocalPolicy.name(fam),
            k = key(fam),
        );
    }
    out.push_str("\t}\n");

    out.push_str("\tchain services {\n");
    for fam in FAMILIES {
        let ip = fam.ip();
        let cluster_ips = SetKind::ClusterIps.name(fam);
        if config.masquerade_all {
            let _ = writeln!(
                out,
                "\t\t{} @{cluster_ips} jump mark-for-masquerade",
                key(fam)
            );
        } else if let Some(cidrs) = cidrs(fam) {
            // Without a cluster CIDR of this family nothing tells pods from outside clients:
            // as kube-proxy, no cluster-IP traffic is masqueraded then.
            let _ = writeln!(
                out,
                "\t\t{} @{cluster_ips} {ip} saddr != {cidrs} jump mark-for-masquerade",
                key(fam)
            );
        }
        let _ = writeln!(
            out,
            "\t\t{} @{} jump mark-for-masquerade",
            key(fam),
            SetKind::Masquerade.name(fam)
        );
    }
    out.push_str("\t}\n");

    let _ = writeln!(
        out,
        "\tchain mark-for-masquerade {{\n\t\tmeta mark set meta mark | {mark}\n\t}}"
    );
    out.push_str(
        "\tchain nat-postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n",
    );
    let _ = writeln!(out, "\t\tmeta mark & {mark} == {mark} jump masquerading");
    for fam in FAMILIES {
        let ip = fam.ip();
        let _ = writeln!(
            out,
            "\t\t{} . {ip} saddr @{} masquerade fully-random",
            key(fam),
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
