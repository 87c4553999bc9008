//! The operations that turn the kernel's actual rules into the desired ones: a pure diff.
//!
//! The diff only touches what ipvsd owns, so rules an operator or keepalived put in the same
//! kernel table survive every sync. It changes services in place rather than deleting and
//! re-adding them, because a deleted service loses its connections and persistence templates.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use ipvs::{Destination, Protocol, Request, Service, ServiceKey};

use crate::model::Desired;
use crate::node_addresses::NodeAddresses;

/// A service as read from the kernel, with its destinations.
#[derive(Debug, Clone, PartialEq)]
pub struct ActualService {
    /// The service.
    pub service: Service,
    /// Its destinations, in the kernel's order.
    pub destinations: Vec<ActualDestination>,
}

/// A destination as the cache keeps it: what the kernel reports of it but its traffic
/// counters, which the cache never reads (they are most of an [`ipvs::Destination`]: at
/// 300,000 real servers the cache held 24 MiB of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActualDestination {
    /// Real server address.
    pub address: IpAddr,
    /// Real server port.
    pub port: u16,
    /// Address family when it differs from the service's.
    pub family: Option<ipvs::Family>,
    /// Forwarding method.
    pub forwarding: ipvs::ForwardingMethod,
    /// Weight; 0 stops new connections.
    pub weight: u32,
    /// Upper connection threshold; 0 means none.
    pub upper_threshold: u32,
    /// Lower connection threshold; 0 means none.
    pub lower_threshold: u32,
    /// Active connections, as last read.
    pub active_connections: u32,
    /// Inactive connections, as last read.
    pub inactive_connections: u32,
    /// Persistent connection templates, as last read.
    pub persistent_connections: u32,
}

impl From<Destination> for ActualDestination {
    fn from(d: Destination) -> ActualDestination {
        ActualDestination::from(&d)
    }
}

impl From<&Destination> for ActualDestination {
    fn from(d: &Destination) -> ActualDestination {
        ActualDestination {
            address: d.address,
            port: d.port,
            family: d.family,
            forwarding: d.forwarding,
            weight: d.weight,
            upper_threshold: d.upper_threshold,
            lower_threshold: d.lower_threshold,
            active_connections: d.active_connections,
            inactive_connections: d.inactive_connections,
            persistent_connections: d.persistent_connections,
        }
    }
}

impl ActualDestination {
    /// The destination as a request names it: its settings and connection counts, counters
    /// zero.
    pub fn to_destination(&self) -> Destination {
        Destination {
            family: self.family,
            forwarding: self.forwarding,
            weight: self.weight,
            upper_threshold: self.upper_threshold,
            lower_threshold: self.lower_threshold,
            active_connections: self.active_connections,
            inactive_connections: self.inactive_connections,
            persistent_connections: self.persistent_connections,
            ..Destination::new(self.address, self.port)
        }
    }

    /// Whether the two agree on what is set (see [`Destination::settings_eq`]).
    pub fn settings_eq(&self, other: &ActualDestination) -> bool {
        self.to_destination().settings_eq(&other.to_destination())
    }
}

impl ActualService {
    /// A digest of what [`ActualService::settings_eq`] compares: two reads that agree on their
    /// settings have the same fingerprint, whatever the order of their destinations and
    /// whatever the kernel counted. A repair compares the kernel's table with the cache by
    /// fingerprint as it reads it, so that it holds no second copy of the table.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let service = &self.service;
        let mut hasher = DefaultHasher::new();
        service.key.hash(&mut hasher);
        service.scheduler.hash(&mut hasher);
        service
            .flags
            .difference(ipvs::ServiceFlags::HASHED)
            .bits()
            .hash(&mut hasher);
        service.timeout.hash(&mut hasher);
        service.netmask.hash(&mut hasher);
        service.persistence_engine.hash(&mut hasher);
        self.destinations.len().hash(&mut hasher);
        // Summed, so that the order of the destinations does not count.
        let destinations = self.destinations.iter().fold(0u64, |sum, d| {
            let mut hasher = DefaultHasher::new();
            (d.address, d.port, d.forwarding).hash(&mut hasher);
            (d.weight, d.upper_threshold, d.lower_threshold).hash(&mut hasher);
            sum.wrapping_add(hasher.finish())
        });
        destinations.hash(&mut hasher);
        hasher.finish()
    }

    /// Whether two reads of a virtual server agree on what is set (not on what the kernel
    /// counts), whatever the order of the destinations.
    pub fn settings_eq(&self, other: &ActualService) -> bool {
        if !self.service.settings_eq(&other.service)
            || self.destinations.len() != other.destinations.len()
        {
            return false;
        }
        let same = |a: &ActualDestination, b: &ActualDestination| {
            a.address == b.address && a.port == b.port && a.settings_eq(b)
        };
        if self
            .destinations
            .iter()
            .zip(&other.destinations)
            .all(|(a, b)| same(a, b))
        {
            return true;
        }
        let theirs: HashMap<(IpAddr, u16), &ActualDestination> = other
            .destinations
            .iter()
            .map(|d| ((d.address, d.port), d))
            .collect();
        theirs.len() == other.destinations.len()
            && self
                .destinations
                .iter()
                .all(|d| theirs.get(&(d.address, d.port)).is_some_and(|o| same(d, o)))
    }
}

/// What the kernel holds now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Actual {
    /// Every IPVS service of the network namespace, owned or not.
    pub services: BTreeMap<ServiceKey, ActualService>,
    /// The addresses on ipvsd's dummy interface.
    pub bound_addresses: BTreeSet<IpAddr>,
    /// Entries of the table that could not be read (another program's, with values the `ipvs`
    /// crate has no name for): never deleted or changed, nor the services holding them.
    pub undecodable: Vec<ipvs::Undecodable>,
}

/// What the undecodable entries of the table forbid touching.
#[derive(Default)]
struct Opaque {
    /// Services that could not be read, by key.
    services: BTreeSet<ServiceKey>,
    /// Services holding a destination that could not be read.
    holders: BTreeSet<ServiceKey>,
    /// Destinations that could not be read, by service, address and port.
    destinations: BTreeSet<DestinationId>,
}

impl Opaque {
    fn of(actual: &Actual) -> Opaque {
        let mut opaque = Opaque::default();
        for entry in &actual.undecodable {
            let Some(key) = entry.service else { continue };
            match entry.kind {
                ipvs::EntryKind::Service => {
                    opaque.services.insert(key);
                }
                ipvs::EntryKind::Destination => {
                    opaque.holders.insert(key);
                    if let Some((address, port)) = entry.destination {
                        opaque.destinations.insert((key, address, port));
                    }
                }
                // A kind a later ipvs crate adds: leave the whole service alone.
                _ => {
                    opaque.services.insert(key);
                }
            }
        }
        opaque
    }
}

/// Which kernel rules are ipvsd's to change.
#[derive(Debug, Clone, PartialEq)]
pub struct Ownership {
    /// The node's addresses: a service on one of them at a port of `nodeport_range` is a node
    /// port, ipvsd's even when no Service wants it any more.
    pub node_addresses: NodeAddresses,
    /// The cluster's NodePort range (`--service-node-port-range`).
    pub nodeport_range: RangeInclusive<u16>,
    /// Addresses ipvsd never creates, changes or deletes anything on, as kube-proxy's
    /// `--ipvs-exclude-cidrs`.
    pub exclude_cidrs: Vec<ipnet::IpNet>,
    /// Virtual servers ipvsd programmed earlier in this run: still its own when the reason it
    /// owned them is gone, e.g. a NodePort on an address the node has lost since.
    pub managed: BTreeSet<ServiceKey>,
}

/// The Kubernetes default NodePort range.
pub const DEFAULT_NODEPORT_RANGE: RangeInclusive<u16> = 30000..=32767;

impl Default for Ownership {
    fn default() -> Self {
        Ownership {
            node_addresses: NodeAddresses::default(),
            nodeport_range: DEFAULT_NODEPORT_RANGE,
            exclude_cidrs: Vec::new(),
            managed: BTreeSet::new(),
        }
    }
}

impl Ownership {
    fn excluded(&self, address: &IpAddr) -> bool {
        self.exclude_cidrs.iter().any(|net| net.contains(address))
    }
}

/// A destination of a service: (service, real server address, real server port).
pub type DestinationId = (ServiceKey, IpAddr, u16);

/// How long a removed TCP real server may keep its connections.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GracefulTermination {
    /// How long after it was set to weight 0 a destination that still has connections is deleted
    /// anyway; `None` waits for the connections to end however long that takes.
    pub timeout: Option<Duration>,
    /// When each undesired destination was first seen at weight 0, as recorded by the controller
    /// (plan is pure and keeps no clock of its own).
    pub since: BTreeMap<DestinationId, Instant>,
}

/// One change to the kernel: an IPVS request, or an address on the dummy interface.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// A change to the IPVS table, as the `ipvs` crate sends it. A plan makes the six that add,
    /// change and delete services and destinations.
    Ipvs(Request),
    /// Put an address on the dummy interface.
    BindAddress(IpAddr),
    /// Take an address off the dummy interface.
    UnbindAddress(IpAddr),
}

impl Operation {
    /// The IPVS request, if this is an IPVS operation.
    pub fn request(&self) -> Option<&Request> {
        match self {
            Operation::Ipvs(request) => Some(request),
            Operation::BindAddress(_) | Operation::UnbindAddress(_) => None,
        }
    }

    /// The virtual server the operation is about (see [`Request::service_key`]); `None` for
    /// the address operations.
    pub fn service_key(&self) -> Option<ServiceKey> {
        self.request().and_then(Request::service_key)
    }
}

/// The length of a single-address prefix of `address`'s family.
fn host_prefix(address: &IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Thresholds as `-e`/`-a` options; ipvsadm's save format leaves them out.
fn threshold_options(d: &Destination) -> String {
    let mut out = String::new();
    if d.upper_threshold != 0 {
        out.push_str(&format!(" -x {}", d.upper_threshold));
    }
    if d.lower_threshold != 0 {
        out.push_str(&format!(" -y {}", d.lower_threshold));
    }
    out
}

impl fmt::Display for Operation {
    /// As the ipvsadm command that does the same: `-A -t 10.96.0.1:443 -s rr`,
    /// `-e -t ... -r 10.244.0.7:8443 -m -w 0`; addresses as `bind 10.96.0.1/32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Ipvs(request) => write_ipvsadm_rule(f, request),
            Operation::BindAddress(a) => write!(f, "bind {a}/{}", host_prefix(a)),
            Operation::UnbindAddress(a) => write!(f, "unbind {a}/{}", host_prefix(a)),
        }
    }
}

/// Writes an IPVS request as the ipvsadm command that does the same. The requests a plan never
/// makes (zeroing counters, flushing, timeouts, sync daemons) are written as their `Debug` form.
fn write_ipvsadm_rule(f: &mut fmt::Formatter<'_>, request: &Request) -> fmt::Result {
    use ipvs::ipvsadm::{destination_options, rule_service_name, service_options};
    match request {
        Request::AddService(s) => {
            write!(f, "-A {} {}", rule_service_name(&s.key), service_options(s))
        }
        Request::UpdateService(s) => {
            write!(f, "-E {} {}", rule_service_name(&s.key), service_options(s))
        }
        Request::DeleteService(k) => write!(f, "-D {}", rule_service_name(k)),
        Request::AddDestination(k, d) => write!(
            f,
            "-a {} {}{}",
            rule_service_name(k),
            destination_options(d),
            threshold_options(d)
        ),
        Request::UpdateDestination(k, d) => write!(
            f,
            "-e {} {}{}",
            rule_service_name(k),
            destination_options(d),
            threshold_options(d)
        ),
        Request::DeleteDestination(k, d) => {
            let address = match d.address {
                IpAddr::V4(a) => format!("{a}:{}", d.port),
                IpAddr::V6(a) => format!("[{a}]:{}", d.port),
            };
            write!(f, "-d {} -r {address}", rule_service_name(k))
        }
        other => write!(f, "{other:?}"),
    }
}

/// The operations that make `actual` into `desired`, touching only what `ownership` says is
/// ipvsd's. Their order is one the kernel accepts: addresses before the services on them,
/// services before their destinations, and removals last so traffic moves to the new rules
/// before the old ones go.
pub fn plan(
    desired: &Desired,
    actual: &Actual,
    ownership: &Ownership,
    graceful: &GracefulTermination,
    now: Instant,
) -> Vec<Operation> {
    let mut planner = Planner::new(desired, actual, ownership, graceful, now);
    for address in desired
        .bound_addresses
        .union(&actual.bound_addresses)
        .collect::<BTreeSet<_>>()
    {
        planner.address(address);
    }
    for key in desired.virtual_servers.keys() {
        planner.virtual_server(key);
    }
    for key in actual.services.keys() {
        if !desired.virtual_servers.contains_key(key) {
            planner.virtual_server(key);
        }
    }
    planner.operations()
}

/// How many virtual servers a part of a sync of everything plans at most (see [`parts`]): at
/// 11 operations per virtual server, about 4 MiB of operations.
pub const PART_SIZE: usize = 2048;

/// The scopes of [`plan`] cut into parts of at most `size` virtual servers, for [`plan_keys`]:
/// the parts' operations together are [`plan`]'s, but only one part's need be held at a time.
/// The addresses to bind go with the first part and those to unbind with the last, so that
/// addresses still come before the services on them and go after; the virtual servers no
/// longer desired come after the desired ones, so removals stay last.
pub fn parts(
    desired: &Desired,
    actual: &Actual,
    size: usize,
) -> Vec<(BTreeSet<ServiceKey>, BTreeSet<IpAddr>)> {
    let size = size.max(1);
    let undesired = actual
        .services
        .keys()
        .filter(|key| !desired.virtual_servers.contains_key(key));
    let mut parts: Vec<(BTreeSet<ServiceKey>, BTreeSet<IpAddr>)> = vec![Default::default()];
    for key in desired.virtual_servers.keys().chain(undesired) {
        if parts.last().is_some_and(|(keys, _)| keys.len() >= size) {
            parts.push(Default::default());
        }
        parts.last_mut().expect("one at least").0.insert(*key);
    }
    parts[0].1.extend(desired.bound_addresses.iter().copied());
    parts
        .last_mut()
        .expect("one at least")
        .1
        .extend(actual.bound_addresses.difference(&desired.bound_addresses));
    parts
}

/// The operations [`plan`] gives for the virtual servers `keys` and the addresses `addresses`,
/// and only those: what a change that touched only them needs, at a cost that grows with them
/// rather than with the whole table. Every other virtual server and address must already be as
/// desired (the controller plans everything after a failure or a fresh read of the kernel).
#[allow(clippy::too_many_arguments)]
pub fn plan_keys(
    desired: &Desired,
    actual: &Actual,
    ownership: &Ownership,
    graceful: &GracefulTermination,
    now: Instant,
    keys: &BTreeSet<ServiceKey>,
    addresses: &BTreeSet<IpAddr>,
) -> Vec<Operation> {
    let mut planner = Planner::new(desired, actual, ownership, graceful, now);
    for address in addresses {
        planner.address(address);
    }
    for key in keys {
        planner.virtual_server(key);
    }
    planner.operations()
}

/// The operations of one plan, per kind, as they are found.
struct Planner<'a> {
    desired: &'a Desired,
    actual: &'a Actual,
    ownership: &'a Ownership,
    graceful: &'a GracefulTermination,
    now: Instant,
    opaque: Opaque,
    binds: Vec<Operation>,
    service_changes: Vec<Operation>,
    destination_changes: Vec<Operation>,
    destination_deletes: Vec<Operation>,
    service_deletes: Vec<Operation>,
    unbinds: Vec<Operation>,
}

impl<'a> Planner<'a> {
    fn new(
        desired: &'a Desired,
        actual: &'a Actual,
        ownership: &'a Ownership,
        graceful: &'a GracefulTermination,
        now: Instant,
    ) -> Planner<'a> {
        Planner {
            desired,
            actual,
            ownership,
            graceful,
            now,
            opaque: Opaque::of(actual),
            binds: Vec::new(),
            service_changes: Vec::new(),
            destination_changes: Vec::new(),
            destination_deletes: Vec::new(),
            service_deletes: Vec::new(),
            unbinds: Vec::new(),
        }
    }

    /// Binds or unbinds one address.
    fn address(&mut self, address: &IpAddr) {
        if self.ownership.excluded(address) {
            return;
        }
        let wanted = self.desired.bound_addresses.contains(address);
        let bound = self.actual.bound_addresses.contains(address);
        if wanted && !bound {
            self.binds.push(Operation::BindAddress(*address));
        } else if bound && !wanted {
            self.unbinds.push(Operation::UnbindAddress(*address));
        }
    }

    /// Creates, changes or deletes one virtual server and its real servers.
    fn virtual_server(&mut self, key: &ServiceKey) {
        let Some(vs) = self.desired.virtual_servers.get(key) else {
            if self.actual.services.contains_key(key)
                && owned(key, self.desired, self.actual, self.ownership)
                && !self.opaque.holders.contains(key)
            {
                self.service_deletes
                    .push(Operation::Ipvs(Request::DeleteService(*key)));
            }
            return;
        };
        let ServiceKey::Addr { address, .. } = key else {
            return;
        };
        // A virtual server the kernel holds in a form that cannot be read is not ipvsd's to
        // create or change.
        if self.ownership.excluded(address) || self.opaque.services.contains(key) {
            return;
        }
        let Some(current) = self.actual.services.get(key) else {
            self.service_changes
                .push(Operation::Ipvs(Request::AddService(vs.service.clone())));
            self.destination_changes.extend(
                vs.destinations
                    .iter()
                    .map(|r| Operation::Ipvs(Request::AddDestination(*key, r.to_destination()))),
            );
            return;
        };
        if !current.service.settings_eq(&vs.service) {
            self.service_changes
                .push(Operation::Ipvs(Request::UpdateService(vs.service.clone())));
        }
        let current_dests: BTreeMap<(IpAddr, u16), &ActualDestination> = current
            .destinations
            .iter()
            .map(|d| ((d.address, d.port), d))
            .collect();
        for want in &vs.destinations {
            if self
                .opaque
                .destinations
                .contains(&(*key, want.address, want.port))
            {
                continue;
            }
            match current_dests.get(&want.key()) {
                None => self
                    .destination_changes
                    .push(Operation::Ipvs(Request::AddDestination(
                        *key,
                        want.to_destination(),
                    ))),
                Some(have) if !want.settings_eq(&have.to_destination()) => self
                    .destination_changes
                    .push(Operation::Ipvs(Request::UpdateDestination(
                        *key,
                        want.to_destination(),
                    ))),
                Some(_) => {}
            }
        }
        for ((address, port), have) in &current_dests {
            if vs.destinations.contains(*address, *port) {
                continue;
            }
            if let Some(op) = retire_destination(key, have, self.graceful, self.now) {
                match op {
                    Operation::Ipvs(Request::DeleteDestination(..)) => {
                        self.destination_deletes.push(op)
                    }
                    _ => self.destination_changes.push(op),
                }
            }
        }
    }

    fn operations(self) -> Vec<Operation> {
        let mut destination_changes = self.destination_changes;
        destination_changes.sort_by_key(destination_order);
        let mut ops = self.binds;
        ops.extend(self.service_changes);
        ops.extend(destination_changes);
        ops.extend(self.destination_deletes);
        ops.extend(self.service_deletes);
        ops.extend(self.unbinds);
        ops
    }
}

/// Destination operations in service, then real server order, whatever order they were found in.
fn destination_order(op: &Operation) -> Option<(ServiceKey, IpAddr, u16)> {
    match op {
        Operation::Ipvs(
            Request::AddDestination(k, d)
            | Request::UpdateDestination(k, d)
            | Request::DeleteDestination(k, d),
        ) => Some((*k, d.address, d.port)),
        _ => None,
    }
}

/// Whether an actual service that no Service wants is ipvsd's to delete: on an address ipvsd
/// binds, or a node port. Firewall-mark services are never ipvsd's, and excluded CIDRs are never
/// anyone's but the operator's.
fn owned(key: &ServiceKey, desired: &Desired, actual: &Actual, ownership: &Ownership) -> bool {
    let ServiceKey::Addr { address, port, .. } = key else {
        return false;
    };
    if ownership.excluded(address) {
        return false;
    }
    actual.bound_addresses.contains(address)
        || desired.bound_addresses.contains(address)
        || (ownership.node_addresses.contains(address) && ownership.nodeport_range.contains(port))
        || desired.virtual_servers.contains_key(key)
        || ownership.managed.contains(key)
}

/// What to do with a destination no Service wants any more. TCP connections get to finish: the
/// destination is first set to weight 0 (no new connections) and deleted once it has none, or
/// once the graceful timeout has passed since it was first seen at weight 0. UDP and SCTP (and
/// any other protocol) have no end of connection IPVS could count down to, so a removed pod would
/// keep receiving datagrams until the entries expire: those go at once.
fn retire_destination(
    key: &ServiceKey,
    have: &ActualDestination,
    graceful: &GracefulTermination,
    now: Instant,
) -> Option<Operation> {
    let delete = || {
        Some(Operation::Ipvs(Request::DeleteDestination(
            *key,
            have.to_destination(),
        )))
    };
    let ServiceKey::Addr { protocol, .. } = key else {
        return delete();
    };
    if *protocol != Protocol::Tcp {
        return delete();
    }
    if have.active_connections == 0 && have.inactive_connections == 0 {
        return delete();
    }
    if have.weight != 0 {
        let mut quiesced = have.to_destination();
        quiesced.weight = 0;
        return Some(Operation::Ipvs(Request::UpdateDestination(*key, quiesced)));
    }
    let id: DestinationId = (*key, have.address, have.port);
    match (graceful.timeout, graceful.since.get(&id)) {
        (Some(timeout), Some(since)) if *since + timeout <= now => delete(),
        _ => None,
    }
}

/// The ids of the destinations that are at weight 0 and not desired: those the controller must
/// keep a [`GracefulTermination::since`] time for. Ids it has a time for but that are not listed
/// any more can be forgotten.
pub fn draining_destinations(desired: &Desired, actual: &Actual) -> BTreeSet<DestinationId> {
    let mut out = BTreeSet::new();
    for (key, current) in &actual.services {
        let Some(vs) = desired.virtual_servers.get(key) else {
            continue;
        };
        for d in &current.destinations {
            if d.weight == 0 && !vs.destinations.contains(d.address, d.port) {
                out.insert((*key, d.address, d.port));
            }
        }
    }
    out
}

/// [`draining_destinations`] of the virtual servers `keys` only.
pub fn draining_destinations_of(
    desired: &Desired,
    actual: &Actual,
    keys: &BTreeSet<ServiceKey>,
) -> BTreeSet<DestinationId> {
    let mut out = BTreeSet::new();
    for key in keys {
        let (Some(current), Some(vs)) =
            (actual.services.get(key), desired.virtual_servers.get(key))
        else {
            continue;
        };
        for d in &current.destinations {
            if d.weight == 0 && !vs.destinations.contains(d.address, d.port) {
                out.insert((*key, d.address, d.port));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs::ServiceFlags;
    use std::net::Ipv4Addr;

    fn tcp(address: &str, port: u16) -> ServiceKey {
        ServiceKey::Addr {
            address: address.parse().unwrap(),
            protocol: Protocol::Tcp,
            port,
        }
    }

    #[test]
    fn operations_read_like_ipvsadm() {
        let key = tcp("10.96.0.20", 443);
        let mut svc = Service::new(key, "sh");
        svc.flags = ServiceFlags::PERSISTENT | ServiceFlags::SCHED1 | ServiceFlags::SCHED2;
        svc.timeout = 600;
        assert_eq!(
            Operation::Ipvs(Request::AddService(svc.clone())).to_string(),
            "-A -t 10.96.0.20:443 -s sh -p 600 -b sh-fallback,sh-port"
        );
        assert_eq!(
            Operation::Ipvs(Request::UpdateService(Service::new(key, "rr"))).to_string(),
            "-E -t 10.96.0.20:443 -s rr"
        );
        let dest = Destination::new(IpAddr::V4(Ipv4Addr::new(10, 244, 0, 7)), 8443);
        assert_eq!(
            Operation::Ipvs(Request::AddDestination(key, dest.clone())).to_string(),
            "-a -t 10.96.0.20:443 -r 10.244.0.7:8443 -m -w 1"
        );
        assert_eq!(
            Operation::Ipvs(Request::DeleteDestination(key, dest)).to_string(),
            "-d -t 10.96.0.20:443 -r 10.244.0.7:8443"
        );
        let v6 = ServiceKey::Addr {
            address: "fd00:96::a".parse().unwrap(),
            protocol: Protocol::Udp,
            port: 53,
        };
        assert_eq!(
            Operation::Ipvs(Request::DeleteService(v6)).to_string(),
            "-D -u [fd00:96::a]:53"
        );
        let mh = {
            let mut s = Service::new(tcp("10.96.0.30", 80), "mh");
            s.flags = ServiceFlags::SCHED2;
            s
        };
        assert_eq!(
            Operation::Ipvs(Request::AddService(mh)).to_string(),
            "-A -t 10.96.0.30:80 -s mh -b mh-port"
        );
        let mut masked = Service::new(tcp("10.96.0.40", 80), "rr");
        masked.flags = ServiceFlags::PERSISTENT;
        masked.timeout = 300;
        masked.netmask = 24;
        assert_eq!(
            Operation::Ipvs(Request::UpdateService(masked)).to_string(),
            "-E -t 10.96.0.40:80 -s rr -p 300 -M 255.255.255.0"
        );
        assert_eq!(
            Operation::BindAddress("10.96.0.1".parse().unwrap()).to_string(),
            "bind 10.96.0.1/32"
        );
        assert_eq!(
            Operation::UnbindAddress("fd00:96::1".parse().unwrap()).to_string(),
            "unbind fd00:96::1/128"
        );
    }
}
