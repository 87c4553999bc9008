//! The desired IPVS rules: a pure function of Services, EndpointSlices, node addresses and flags.
//!
//! [`desired`] never fails and never panics: data it cannot use (an address that does not parse,
//! a port out of range, an unknown scheduler flag) becomes a warning naming the object, and only
//! that part is left out. One broken Service must not take the node's other Services down with it.
//!
//! Each Service's rules are computed by one function of that Service, its slices, the node's
//! addresses and the flags (`service_output`); what remains is deciding between Services that
//! claim the same virtual server or health-check port. [`desired`] does that over all Services
//! at once and is the reference; [`index::ModelIndex`] keeps the same result up to date change
//! by change, recomputing only the Services a change concerns.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipvs::{Family, Protocol, Service as IpvsService, ServiceFlags, ServiceKey};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};

use crate::labels::{
    HEADLESS_LABEL, SCHEDULER_ANNOTATION, SCHEDULER_FLAGS_ANNOTATION, SERVICE_NAME_LABEL,
    SERVICE_PROXY_NAME_LABEL,
};
use crate::node_addresses::NodeAddresses;
use crate::source::{ObjectKey, Slice, SliceEndpoint, Snapshot};

pub mod index;
mod real_servers;
mod small_set;

pub use real_servers::{RealServer, RealServers};

/// Session affinity timeout when a ClientIP Service does not set one (Kubernetes' default).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;
/// Largest session affinity timeout the Kubernetes API accepts.
pub const MAX_AFFINITY_TIMEOUT_SECONDS: u32 = 86400;
/// Longest scheduler name the kernel takes (`IP_VS_SCHEDNAME_MAXLEN` less the NUL).
const SCHEDULER_NAME_MAX_LEN: usize = 15;

/// The node agent's settings that shape the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// This node's name: `Local` traffic policies keep only endpoints whose `nodeName` is this.
    pub node_name: String,
    /// Scheduler of every virtual server unless a Service's annotation says otherwise.
    pub scheduler: String,
    /// Scheduler flags of every virtual server unless a Service's annotation says otherwise.
    pub scheduler_flags: ServiceFlags,
    /// The value of `service.kubernetes.io/service-proxy-name` this agent answers to; Services
    /// labelled with any other value belong to another proxy.
    pub service_proxy_name: Option<String>,
    /// Node addresses NodePorts listen on, as kube-proxy's `--nodeport-addresses`.
    pub nodeport_addresses: NodePortAddresses,
    /// Schedulers the kernel does not have: a Service whose annotation asks for one gets a
    /// warning and the default scheduler, rather than no virtual server at all.
    pub unavailable_schedulers: BTreeSet<String>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            node_name: String::new(),
            scheduler: "rr".to_string(),
            scheduler_flags: ServiceFlags::empty(),
            service_proxy_name: None,
            nodeport_addresses: NodePortAddresses::default(),
            unavailable_schedulers: BTreeSet::new(),
        }
    }
}

/// Which node addresses NodePorts listen on: kube-proxy's `--nodeport-addresses`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePortAddresses {
    /// Those in these CIDRs, per family: a family with no CIDR in the list keeps all its
    /// addresses (so an empty list keeps every address).
    Cidrs(Vec<ipnet::IpNet>),
    /// The node's primary address of each family (`primary`); a family without one (no default
    /// route) gets no NodePorts.
    Primary,
}

impl Default for NodePortAddresses {
    fn default() -> Self {
        NodePortAddresses::Cidrs(Vec::new())
    }
}

impl NodePortAddresses {
    /// Whether every node address gets NodePorts, whatever the addresses are.
    pub fn is_all(&self) -> bool {
        matches!(self, NodePortAddresses::Cidrs(cidrs) if cidrs.is_empty())
    }

    /// Whether NodePorts listen on `address`, one of `nodes`.
    pub fn allows(&self, nodes: &NodeAddresses, address: &IpAddr) -> bool {
        match self {
            NodePortAddresses::Cidrs(cidrs) => nodeport_address_allowed(cidrs, address),
            NodePortAddresses::Primary => nodes.primary.contains(address),
        }
    }
}

/// The Service port a virtual server was made for: what logs and warnings name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceRef {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// Name of the port; empty for the single unnamed port a Service may have.
    pub port_name: String,
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Like kube-proxy's service port names: the single unnamed port is just the Service.
        if self.port_name.is_empty() {
            write!(f, "{}/{}", self.namespace, self.name)
        } else {
            write!(f, "{}/{}:{}", self.namespace, self.name, self.port_name)
        }
    }
}

/// Which of a Service's addresses a virtual server listens on; it decides which traffic policy
/// applies and whether the address is bound to the dummy interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressKind {
    /// A cluster IP (`spec.clusterIPs`).
    ClusterIp,
    /// A node address at the Service port's `nodePort`.
    NodePort,
    /// An address of `spec.externalIPs`.
    ExternalIp,
    /// An address of `status.loadBalancer.ingress[].ip`.
    LoadBalancer,
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressKind::ClusterIp => "cluster IP",
            AddressKind::NodePort => "node port",
            AddressKind::ExternalIp => "external IP",
            AddressKind::LoadBalancer => "load-balancer IP",
        })
    }
}

/// One desired IPVS virtual service with its real servers.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualServer {
    /// The service as it should be in the kernel.
    pub service: IpvsService,
    /// Its real servers, found by (address, port).
    pub destinations: RealServers,
    /// The Service port it was made for, shared by the port's virtual servers.
    pub origin: Arc<ServiceRef>,
    /// Which kind of the Service's addresses it listens on.
    pub kind: AddressKind,
    /// Whether the traffic policy for this kind of address is `Local` (external for node ports,
    /// external and load-balancer IPs; internal for cluster IPs): only this node's endpoints
    /// serve it, and outside clients keep their address.
    pub local_policy: bool,
    /// The real servers that run on this node (their endpoint's `nodeName` is this node's): a
    /// pod reaching itself through the Service must be masqueraded (hairpin). Sorted, each
    /// once; a slice rather than a set, which would allocate a node of eleven per virtual
    /// server, shared like the real servers by the Service port's virtual servers.
    pub local_destinations: Arc<[(IpAddr, u16)]>,
    /// For a load-balancer IP: the client ranges allowed (`spec.loadBalancerSourceRanges`);
    /// `None`: every client.
    pub source_ranges: Option<Vec<ipnet::IpNet>>,
    /// The cluster IP of the same family and the Service port: where in-cluster clients of an
    /// external or load-balancer IP with a `Local` policy are sent, so they reach the Service on
    /// a node without a local endpoint too.
    pub cluster_ip: Option<(IpAddr, u16)>,
}

/// Everything the kernel should hold for the current Services.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// Virtual servers by key; shared with the [`index::ModelIndex`] that computed them, which
    /// keeps each Service's own.
    pub virtual_servers: BTreeMap<ServiceKey, Arc<VirtualServer>>,
    /// Addresses that must be on the dummy interface so the node accepts their packets: the
    /// cluster, external and load-balancer IPs that are not already node addresses.
    pub bound_addresses: BTreeSet<IpAddr>,
    /// Health-check node ports by port: what load balancers ask to learn whether this node
    /// has endpoints of a Service whose external traffic policy is `Local`.
    pub health_checks: BTreeMap<u16, HealthCheck>,
    /// Problems found in the input, each naming its object; the rest was applied.
    pub warnings: Vec<String>,
}

/// One Service's health-check node port (`spec.healthCheckNodePort`), as kube-proxy serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub name: String,
    /// How many of the Service's endpoints run on this node (distinct addresses).
    pub local_endpoints: usize,
}

/// The schedulers Services ask for by annotation (well-formed names only): the ones whose
/// presence in the kernel must be known before [`desired`] can be trusted with them.
pub fn requested_schedulers<'a>(
    services: impl IntoIterator<Item = &'a Service>,
) -> BTreeSet<String> {
    services
        .into_iter()
        .filter_map(|s| s.metadata.annotations.as_ref()?.get(SCHEDULER_ANNOTATION))
        .filter(|name| is_scheduler_name(name))
        .cloned()
        .collect()
}

/// A value taken from an object, quoted for a warning: at most its first 64 characters, so a
/// huge value (a 100 KiB annotation) is not copied whole into a warning, kept, and logged.
fn shown(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(MAX).collect();
    format!("{head:?}... ({} bytes)", text.len())
}

/// The node name a hostname gives, as kube-proxy makes it: trimmed and lowercased (Kubernetes
/// node names are lowercase; a mixed-case hostname would match no endpoint's `nodeName`).
pub fn node_name_of_hostname(hostname: &str) -> String {
    hostname.trim().to_lowercase()
}

/// Whether `--nodeport-addresses` lets NodePorts on `address`, as kube-proxy applies it: per
/// family, so a family without a CIDR in the list keeps all its addresses (an empty list keeps
/// every address).
pub fn nodeport_address_allowed(cidrs: &[ipnet::IpNet], address: &IpAddr) -> bool {
    let mut of_family = cidrs
        .iter()
        .filter(|net| {
            matches!(
                (net, address),
                (ipnet::IpNet::V4(_), IpAddr::V4(_)) | (ipnet::IpNet::V6(_), IpAddr::V6(_))
            )
        })
        .peekable();
    of_family.peek().is_none() || of_family.any(|net| net.contains(address))
}

/// The node addresses NodePorts listen on under `config`.
pub fn node_port_addresses(nodes: &NodeAddresses, config: &ModelConfig) -> Vec<IpAddr> {
    nodes
        .iter()
        .filter(|a| config.nodeport_addresses.allows(nodes, a))
        .copied()
        .collect()
}

/// Computes the rules for `snapshot` on the node with `nodes` under `config`, from scratch: the
/// reference [`index::ModelIndex`] keeps up to date change by change.
///
/// Services are handled in namespace/name order so that when two of them claim the same virtual
/// server the outcome (the first keeps it, the other gets a warning) does not depend on the order
/// the source happened to list them in. EndpointSlices are read in the same order, so that the
/// warnings come out in one order too: those of the slices, then those of the Services.
pub fn desired(snapshot: &Snapshot, nodes: &NodeAddresses, config: &ModelConfig) -> Desired {
    let mut out = Desired::default();
    let mut slices: Vec<Slice> = snapshot
        .endpoint_slices
        .iter()
        .cloned()
        .map(Slice::from)
        .collect();
    slices.sort_by_cached_key(|s| ObjectKey::of(&s.metadata));
    let mut slices_by_service: BTreeMap<ObjectKey, Vec<ParsedSlice>> = BTreeMap::new();
    for slice in &slices {
        if let Some(parsed) = ParsedSlice::parse(slice, &mut out.warnings) {
            slices_by_service
                .entry(parsed.service.clone())
                .or_default()
                .push(parsed);
        }
    }
    let node_port_addresses = node_port_addresses(nodes, config);

    let mut services: Vec<&Service> = snapshot.services.iter().collect();
    services.sort_by_cached_key(|s| ObjectKey::of(&s.metadata));
    for service in services {
        let slices: Vec<&ParsedSlice> = slices_by_service
            .get(&ObjectKey::of(&service.metadata))
            .into_iter()
            .flatten()
            .collect();
        let output = service_output(service, &slices, nodes, &node_port_addresses, config);
        out.bound_addresses
            .extend(output.bound_addresses.iter().copied());
        for note in &output.notes.0 {
            match note {
                Note::Warning(text) => out.warnings.push(text.clone()),
                Note::VirtualServer(i) => {
                    let vs = &output.virtual_servers[*i];
                    match out.virtual_servers.get(&vs.service.key) {
                        Some(holder) => out.warnings.push(output.conflict(*i, holder)),
                        None => {
                            out.virtual_servers.insert(vs.service.key, vs.clone());
                        }
                    }
                }
                Note::HealthCheck => {
                    let Some((port, check)) = &output.health_check else {
                        continue;
                    };
                    match out.health_checks.get(port) {
                        Some(holder) => out.warnings.push(output.health_check_conflict(holder)),
                        None => {
                            out.health_checks.insert(*port, check.clone());
                        }
                    }
                }
            }
        }
    }
    out
}

/// `namespace/name` of an object, with placeholders for what is missing so a warning still says
/// something useful.
fn object_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or("<unnamed>")
    )
}

/// One usable endpoint of a slice: the pieces the model needs, already parsed.
#[derive(Debug, Clone, PartialEq)]
struct UsableEndpoint {
    address: IpAddr,
    ready: bool,
    serving: bool,
    terminating: bool,
    node_name: Option<String>,
}

/// A slice reduced to what the model uses, with its ports by name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedSlice {
    /// The Service it belongs to.
    service: ObjectKey,
    family: Family,
    /// By name, sorted (a slice has one or a few: a map's node would be mostly empty).
    ports: Box<[(String, u16)]>,
    endpoints: Vec<UsableEndpoint>,
}

impl ParsedSlice {
    /// What the model uses of a slice, or `None` when it has no use (with a warning unless
    /// there is nothing to say). Depends on the slice alone.
    pub(crate) fn parse(slice: &Slice, warnings: &mut Vec<String>) -> Option<ParsedSlice> {
        let name = object_name(&slice.metadata);
        let Some(service) = slice.service_name.as_ref() else {
            warnings.push(format!(
                "EndpointSlice {name}: no {SERVICE_NAME_LABEL} label, ignored"
            ));
            return None;
        };
        let family = match slice.address_type.as_str() {
            "IPv4" => Family::Inet,
            "IPv6" => Family::Inet6,
            // FQDN endpoints cannot be real servers; Kubernetes never makes them for Services,
            // so there is nothing to warn about.
            "FQDN" => return None,
            other => {
                warnings.push(format!(
                    "EndpointSlice {name}: addressType {} is not IPv4, IPv6 or FQDN, ignored",
                    shown(other)
                ));
                return None;
            }
        };
        let mut ports: Vec<(String, u16)> = Vec::new();
        for (i, port) in slice.ports.iter().flatten().enumerate() {
            let Some(number) = port.port else {
                continue;
            };
            match u16::try_from(number) {
                Ok(n) if n != 0 => {
                    let name = port.name.as_deref().unwrap_or_default();
                    // Of two ports with one name, the later counts.
                    match ports.iter_mut().find(|(known, _)| known == name) {
                        Some(known) => known.1 = n,
                        None => ports.push((name.to_string(), n)),
                    }
                }
                _ => warnings.push(format!(
                    "EndpointSlice {name}: ports[{i}].port {number} out of range"
                )),
            }
        }
        let mut endpoints = Vec::new();
        for (i, endpoint) in slice.endpoints.iter().flatten().enumerate() {
            if let Some(usable) = parse_endpoint(endpoint, family, &name, i, warnings) {
                endpoints.push(usable);
            }
        }
        // Kept as long as the slice is: at its length, not at the room it grew to.
        endpoints.shrink_to_fit();
        let namespace = slice
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        ports.sort_unstable();
        Some(ParsedSlice {
            service: ObjectKey::new(namespace, service.clone()),
            family,
            ports: ports.into_boxed_slice(),
            endpoints,
        })
    }

    /// The number of the port named `name`.
    fn port(&self, name: &str) -> Option<u16> {
        self.ports
            .binary_search_by(|(known, _)| known.as_str().cmp(name))
            .ok()
            .map(|i| self.ports[i].1)
    }

    /// The key of the Service the slice belongs to.
    pub(crate) fn service(&self) -> &ObjectKey {
        &self.service
    }
}

/// The first address of an endpoint: the API says the addresses are fungible and consumers may use
/// the first one only, which is what kube-proxy does.
fn parse_endpoint(
    endpoint: &SliceEndpoint,
    family: Family,
    slice: &str,
    index: usize,
    warnings: &mut Vec<String>,
) -> Option<UsableEndpoint> {
    let Some(text) = endpoint.addresses.first() else {
        warnings.push(format!(
            "EndpointSlice {slice}: endpoints[{index}] has no address"
        ));
        return None;
    };
    let address: IpAddr = match text.parse() {
        Ok(a) => a,
        Err(_) => {
            warnings.push(format!(
                "EndpointSlice {slice}: endpoints[{index}].addresses[0] {} is not an IP address",
                shown(text)
            ));
            return None;
        }
    };
    if Family::of(&address) != family {
        warnings.push(format!(
            "EndpointSlice {slice}: endpoints[{index}].addresses[0] {address} does not match the slice's addressType"
        ));
        return None;
    }
    let conditions = endpoint.conditions.clone().unwrap_or_default();
    // The API's rules: ready unset means ready; serving unset means "same as ready".
    let ready = conditions.ready.unwrap_or(true);
    Some(UsableEndpoint {
        address,
        ready,
        serving: conditions.serving.unwrap_or(ready),
        terminating: conditions.terminating.unwrap_or(false),
        node_name: endpoint.node_name.clone(),
    })
}

/// Whether `name` can be a kernel scheduler's name: a lowercase identifier that fits the kernel's
/// buffer. The kernel is the judge of whether such a scheduler exists; this only keeps junk out.
fn is_scheduler_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= SCHEDULER_NAME_MAX_LEN
}

/// Settings shared by every virtual server of one Service.
#[derive(Debug)]
struct ServiceSettings {
    scheduler: String,
    flags: ServiceFlags,
    timeout: u32,
    persistent: bool,
}

/// A step of a Service's contribution, in the order [`desired`] meets them: a warning, or a
/// claim (on a virtual server key, on a health-check port) that another Service may already
/// hold. Whether a claim gives a warning, and which, depends on the other Services; keeping the
/// claims in place lets both the full computation and the index say it in the same order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Note {
    /// A problem with the Service itself.
    Warning(String),
    /// The Service's virtual server of this index in [`ServiceOutput::virtual_servers`].
    VirtualServer(usize),
    /// The Service's [`ServiceOutput::health_check`].
    HealthCheck,
}

/// The notes of one Service; `push` takes a warning, so the per-field parsers write to it as
/// they would to a list of warnings.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Notes(pub(crate) Vec<Note>);

impl Notes {
    fn push(&mut self, warning: String) {
        self.0.push(Note::Warning(warning));
    }
}

/// What one Service contributes to the rules before it is weighed against the other Services:
/// a function of the Service, its slices, the node's addresses and the flags alone. It is the
/// unit of work of both [`desired`] and [`index::ModelIndex`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ServiceOutput {
    /// `namespace/name`, as warnings name it.
    full: String,
    /// The virtual servers it asks for, in the order it makes them; a key may come twice (the
    /// first one counts, the others are warned about).
    pub(crate) virtual_servers: Vec<Arc<VirtualServer>>,
    /// Its addresses that must be bound.
    pub(crate) bound_addresses: BTreeSet<IpAddr>,
    /// Its addresses whose being a node address or not decides whether they are bound.
    pub(crate) addresses: BTreeSet<IpAddr>,
    /// Whether it may have node ports: its virtual servers depend on the node's addresses.
    pub(crate) node_ports: bool,
    /// Its health-check node port.
    pub(crate) health_check: Option<(u16, HealthCheck)>,
    /// Its warnings and claims, in order.
    pub(crate) notes: Notes,
}

impl ServiceOutput {
    /// The warning for virtual server `index` when `holder` has its key already.
    pub(crate) fn conflict(&self, index: usize, holder: &VirtualServer) -> String {
        let vs = &self.virtual_servers[index];
        format!(
            "Service {}: {} {} is already used by {} ({}), skipped",
            self.full, vs.kind, vs.service.key, holder.origin, holder.kind
        )
    }

    /// The warning for the health-check port when `holder` has it already.
    pub(crate) fn health_check_conflict(&self, holder: &HealthCheck) -> String {
        let port = self.health_check.as_ref().map_or(0, |(port, _)| *port);
        format!(
            "Service {}: spec.healthCheckNodePort {port} is already used by {}/{}, skipped",
            self.full, holder.namespace, holder.name
        )
    }
}

/// A Service's addresses, parsed and kept to the Service's families.
struct ServiceAddresses {
    cluster_ips: Vec<IpAddr>,
    external_ips: Vec<IpAddr>,
    load_balancer_ips: Vec<IpAddr>,
    /// The families the Service serves.
    families: BTreeSet<Family>,
}

impl ServiceAddresses {
    /// Every address that listens on the Service port itself (node ports aside).
    fn all(&self) -> impl Iterator<Item = &IpAddr> {
        self.cluster_ips
            .iter()
            .chain(self.external_ips.iter())
            .chain(self.load_balancer_ips.iter())
    }

    /// The addresses of `spec`, or `None` for a headless Service (`clusterIP: None`).
    fn parse(
        service: &Service,
        spec: &ServiceSpec,
        full: &str,
        warnings: &mut Notes,
    ) -> Option<Self> {
        let cluster_ip_texts: Vec<&str> = match spec.cluster_ips.as_deref() {
            Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
            _ => spec.cluster_ip.as_deref().into_iter().collect(),
        };
        if cluster_ip_texts.first() == Some(&"None") {
            return None;
        }
        let field = if spec.cluster_ips.as_deref().is_some_and(|i| !i.is_empty()) {
            "spec.clusterIPs"
        } else {
            "spec.clusterIP"
        };
        let mut cluster_ips = Vec::new();
        for (i, text) in cluster_ip_texts.iter().enumerate() {
            if text.is_empty() {
                continue;
            }
            match text.parse::<IpAddr>() {
                Ok(ip) => cluster_ips.push(ip),
                Err(_) => warnings.push(format!(
                    "Service {full}: {field}[{i}] {} is not an IP address",
                    shown(text)
                )),
            }
        }
        if cluster_ip_texts.iter().all(|t| t.is_empty()) {
            // Kubernetes allocates one to every non-headless Service; a hand-written manifest
            // may simply have forgotten it.
            warnings.push(format!(
                "Service {full}: no cluster IP (spec.clusterIP is empty), only its other addresses apply"
            ));
        }
        let mut external_ips = Vec::new();
        for (i, text) in spec.external_ips.iter().flatten().enumerate() {
            match text.parse::<IpAddr>() {
                Ok(ip) => external_ips.push(ip),
                Err(_) => warnings.push(format!(
                    "Service {full}: spec.externalIPs[{i}] {} is not an IP address",
                    shown(text)
                )),
            }
        }
        let mut load_balancer_ips = Vec::new();
        if spec.type_.as_deref() == Some("LoadBalancer") {
            let ingress = service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref());
            for (i, entry) in ingress.into_iter().flatten().enumerate() {
                // ipMode Proxy: the load balancer terminates the traffic itself and sends it to
                // node ports, so its address must not be captured on the node.
                if entry.ip_mode.as_deref() == Some("Proxy") {
                    continue;
                }
                let Some(text) = entry.ip.as_deref() else {
                    continue;
                };
                match text.parse::<IpAddr>() {
                    Ok(ip) => load_balancer_ips.push(ip),
                    Err(_) => warnings.push(format!(
                        "Service {full}: status.loadBalancer.ingress[{i}].ip {} is not an IP address", shown(text)
                    )),
                }
            }
        }
        Some(ServiceAddresses {
            cluster_ips,
            external_ips,
            load_balancer_ips,
            families: BTreeSet::new(),
        })
    }

    /// Keeps the external and load-balancer IPs to the Service's families. A Service serves the
    /// families of its cluster IPs; node ports follow them so that a single-stack Service does
    /// not appear on the node's addresses of the other family. As kube-proxy: an external or
    /// load-balancer IP of a family the Service does not have gets no virtual server (it would
    /// have no endpoints) and no bound address.
    fn keep_families(&mut self, full: &str, warnings: &mut Notes) {
        self.families = if self.cluster_ips.is_empty() {
            [Family::Inet, Family::Inet6].into()
        } else {
            self.cluster_ips.iter().map(Family::of).collect()
        };
        let families = &self.families;
        for (field, ips) in [
            ("spec.externalIPs", &mut self.external_ips),
            ("status.loadBalancer.ingress", &mut self.load_balancer_ips),
        ] {
            ips.retain(|ip| {
                let keep = families.contains(&Family::of(ip));
                if !keep {
                    warnings.push(format!(
                        "Service {full}: {field} {ip} is not of the Service's IP families, ignored"
                    ));
                }
                keep
            });
        }
    }
}

/// The spec of a Service this proxy programs, or `None` (with a warning when the Service is
/// broken rather than simply not ours: another proxy's, headless, ExternalName).
fn programmed_spec<'a>(
    service: &'a Service,
    full: &str,
    config: &ModelConfig,
    warnings: &mut Notes,
) -> Option<&'a ServiceSpec> {
    if service.metadata.name.is_none() {
        warnings.push(format!("Service {full}: no metadata.name, ignored"));
        return None;
    }
    let Some(spec) = service.spec.as_ref() else {
        warnings.push(format!("Service {full}: no spec, ignored"));
        return None;
    };
    let labels = service.metadata.labels.as_ref();
    if let Some(owner) = labels.and_then(|l| l.get(SERVICE_PROXY_NAME_LABEL)) {
        if config.service_proxy_name.as_deref() != Some(owner.as_str()) {
            return None;
        }
    }
    if labels.is_some_and(|l| l.contains_key(HEADLESS_LABEL)) {
        return None;
    }
    match spec.type_.as_deref().unwrap_or("ClusterIP") {
        "ClusterIP" | "NodePort" | "LoadBalancer" => Some(spec),
        "ExternalName" => None,
        other => {
            warnings.push(format!(
                "Service {full}: spec.type {} is not ClusterIP, NodePort, LoadBalancer or ExternalName, ignored", shown(other)
            ));
            None
        }
    }
}

/// What `service` contributes, given its parsed `slices`, the node's addresses, those of them
/// NodePorts listen on, and the flags.
pub(crate) fn service_output(
    service: &Service,
    slices: &[&ParsedSlice],
    nodes: &NodeAddresses,
    node_port_addresses: &[IpAddr],
    config: &ModelConfig,
) -> ServiceOutput {
    let full = object_name(&service.metadata);
    let mut out = ServiceOutput::default();
    let warnings = &mut out.notes;
    let Some(spec) = programmed_spec(service, &full, config, warnings) else {
        out.full = full;
        return out;
    };
    let Some(mut addresses) = ServiceAddresses::parse(service, spec, &full, warnings) else {
        out.full = full;
        return out;
    };
    let source_ranges = ServiceRules::source_ranges(spec, &full, warnings);
    addresses.keep_families(&full, warnings);
    let settings = ServiceRules::settings(service, &full, config, warnings);
    let key = ObjectKey::of(&service.metadata);
    let rules = ServiceRules {
        slices,
        namespace: key.namespace,
        name: key.name,
        settings,
        external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        node_name: &config.node_name,
    };

    for ip in addresses.all() {
        out.addresses.insert(*ip);
        if !nodes.contains(ip) {
            out.bound_addresses.insert(*ip);
        }
    }
    out.node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));

    let mut local_endpoints: BTreeSet<IpAddr> = BTreeSet::new();
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        let Some((protocol, number)) = ServiceRules::port(port, i, &full, &mut out.notes) else {
            continue;
        };
        let origin = Arc::new(ServiceRef {
            namespace: rules.namespace.clone(),
            name: rules.name.clone(),
            port_name: port.name.clone().unwrap_or_default(),
        });
        let targets = rules.targets(
            spec,
            port,
            i,
            number,
            &addresses,
            node_port_addresses,
            &full,
            &mut out.notes,
        );
        // The real servers of each (family, policy) the port's virtual servers ask for,
        // computed once and shared.
        let mut real_servers = Vec::new();
        for (address, vport, kind) in targets {
            let mut vs =
                rules.virtual_server(address, protocol, vport, kind, &origin, &mut real_servers);
            local_endpoints.extend(vs.local_destinations.iter().map(|(a, _)| *a));
            if kind == AddressKind::LoadBalancer {
                vs.source_ranges = source_ranges.clone();
            }
            if matches!(kind, AddressKind::ExternalIp | AddressKind::LoadBalancer) {
                vs.cluster_ip = addresses
                    .cluster_ips
                    .iter()
                    .find(|ip| Family::of(ip) == Family::of(&address))
                    .map(|ip| (*ip, number));
            }
            out.notes
                .0
                .push(Note::VirtualServer(out.virtual_servers.len()));
            out.virtual_servers.push(Arc::new(vs));
        }
    }
    if spec.type_.as_deref() == Some("LoadBalancer") && rules.external_local {
        out.health_check =
            ServiceRules::health_check(spec, &full, &rules, local_endpoints.len(), &mut out.notes);
        if out.health_check.is_some() {
            out.notes.0.push(Note::HealthCheck);
        }
    }
    out.full = full;
    out
}

/// A Service port's real servers for one family and policy, and those of them on this node.
type Destinations = (RealServers, Arc<[(IpAddr, u16)]>);

/// The rules of one Service, built up port by port.
struct ServiceRules<'a> {
    namespace: String,
    name: String,
    slices: &'a [&'a ParsedSlice],
    settings: ServiceSettings,
    external_local: bool,
    internal_local: bool,
    node_name: &'a str,
}

impl ServiceRules<'_> {
    /// Where one Service port listens: its cluster IPs, its node port on the node's addresses
    /// of the Service's families, its external and load-balancer IPs.
    #[allow(clippy::too_many_arguments)]
    fn targets(
        &self,
        spec: &ServiceSpec,
        port: &ServicePort,
        index: usize,
        number: u16,
        addresses: &ServiceAddresses,
        node_port_addresses: &[IpAddr],
        full: &str,
        warnings: &mut Notes,
    ) -> Vec<(IpAddr, u16, AddressKind)> {
        let mut targets: Vec<(IpAddr, u16, AddressKind)> = Vec::new();
        targets.extend(
            addresses
                .cluster_ips
                .iter()
                .map(|ip| (*ip, number, AddressKind::ClusterIp)),
        );
        if matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer")) {
            match port.node_port {
                None | Some(0) => {
                    if spec.type_.as_deref() == Some("NodePort") {
                        warnings.push(format!(
                            "Service {full}: spec.ports[{index}] has no nodePort"
                        ));
                    }
                }
                Some(np) => match u16::try_from(np) {
                    Ok(np) => targets.extend(
                        node_port_addresses
                            .iter()
                            .filter(|a| addresses.families.contains(&Family::of(a)))
                            .map(|a| (*a, np, AddressKind::NodePort)),
                    ),
                    Err(_) => warnings.push(format!(
                        "Service {full}: spec.ports[{index}].nodePort {np} out of range"
                    )),
                },
            }
        }
        targets.extend(
            addresses
                .external_ips
                .iter()
                .map(|ip| (*ip, number, AddressKind::ExternalIp)),
        );
        targets.extend(
            addresses
                .load_balancer_ips
                .iter()
                .map(|ip| (*ip, number, AddressKind::LoadBalancer)),
        );
        targets
    }

    /// The Service's health-check node port, if it has a usable one.
    fn health_check(
        spec: &ServiceSpec,
        full: &str,
        rules: &ServiceRules<'_>,
        local_endpoints: usize,
        warnings: &mut Notes,
    ) -> Option<(u16, HealthCheck)> {
        let number = spec.health_check_node_port.filter(|p| *p != 0)?;
        let Ok(port) = u16::try_from(number) else {
            warnings.push(format!(
                "Service {full}: spec.healthCheckNodePort {number} out of range"
            ));
            return None;
        };
        Some((
            port,
            HealthCheck {
                namespace: rules.namespace.clone(),
                name: rules.name.clone(),
                local_endpoints,
            },
        ))
    }
    /// `spec.loadBalancerSourceRanges` of a LoadBalancer Service: `None` when it has none. A
    /// range that does not parse is left out with a warning; when none parses the Service's
    /// load-balancer IPs admit no outside client at all, rather than every one.
    fn source_ranges(
        spec: &ServiceSpec,
        full: &str,
        warnings: &mut Notes,
    ) -> Option<Vec<ipnet::IpNet>> {
        if spec.type_.as_deref() != Some("LoadBalancer") {
            return None;
        }
        let texts = spec.load_balancer_source_ranges.as_deref()?;
        if texts.is_empty() {
            return None;
        }
        let mut ranges = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            match text.trim().parse::<ipnet::IpNet>() {
                Ok(net) => ranges.push(net.trunc()),
                Err(_) => warnings.push(format!(
                    "Service {full}: spec.loadBalancerSourceRanges[{i}] {} is not a CIDR, ignored",
                    shown(text)
                )),
            }
        }
        Some(ranges)
    }

    /// Scheduler, flags and persistence, with the annotations' overrides where they are valid.
    fn settings(
        service: &Service,
        full: &str,
        config: &ModelConfig,
        warnings: &mut Notes,
    ) -> ServiceSettings {
        let annotations = service.metadata.annotations.as_ref();
        let mut scheduler = config.scheduler.clone();
        if let Some(value) = annotations.and_then(|a| a.get(SCHEDULER_ANNOTATION)) {
            if config.unavailable_schedulers.contains(value) {
                warnings.push(format!(
                    "Service {full}: annotation {SCHEDULER_ANNOTATION}: the kernel has no scheduler {}, using {:?}",
                    shown(value),
                    config.scheduler
                ));
            } else if is_scheduler_name(value) {
                scheduler = value.clone();
            } else {
                warnings.push(format!(
                    "Service {full}: annotation {SCHEDULER_ANNOTATION} {} is not a scheduler name, using {:?}",
                    shown(value),
                    config.scheduler
                ));
            }
        }
        let mut flags = config.scheduler_flags;
        if let Some(value) = annotations.and_then(|a| a.get(SCHEDULER_FLAGS_ANNOTATION)) {
            match ServiceFlags::parse_sched_flags(value) {
                Ok(parsed) => flags = parsed,
                Err(problem) => warnings.push(format!(
                    "Service {full}: annotation {SCHEDULER_FLAGS_ANNOTATION}: unknown scheduler flag {} in {}, using the default flags",
                    shown(&problem.flag),
                    shown(value)
                )),
            }
        }
        let spec = service.spec.as_ref();
        let persistent = spec.and_then(|s| s.session_affinity.as_deref()) == Some("ClientIP");
        let mut timeout = 0;
        if persistent {
            flags |= ServiceFlags::PERSISTENT;
            timeout = DEFAULT_AFFINITY_TIMEOUT_SECONDS;
            let configured = spec
                .and_then(|s| s.session_affinity_config.as_ref())
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            if let Some(seconds) = configured {
                match u32::try_from(seconds) {
                    Ok(s) if (1..=MAX_AFFINITY_TIMEOUT_SECONDS).contains(&s) => timeout = s,
                    _ => warnings.push(format!(
                        "Service {full}: spec.sessionAffinityConfig.clientIP.timeoutSeconds {seconds} out of range 1..={MAX_AFFINITY_TIMEOUT_SECONDS}, using {DEFAULT_AFFINITY_TIMEOUT_SECONDS}"
                    )),
                }
            }
        }
        ServiceSettings {
            scheduler,
            flags,
            timeout,
            persistent,
        }
    }

    /// The protocol and port number of a Service port, or a warning.
    fn port(
        port: &ServicePort,
        index: usize,
        full: &str,
        warnings: &mut Notes,
    ) -> Option<(Protocol, u16)> {
        let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            other => {
                warnings.push(format!(
                    "Service {full}: spec.ports[{index}].protocol {} is not TCP, UDP or SCTP",
                    shown(other)
                ));
                return None;
            }
        };
        match u16::try_from(port.port) {
            Ok(n) if n != 0 => Some((protocol, n)),
            _ => {
                warnings.push(format!(
                    "Service {full}: spec.ports[{index}].port {} out of range",
                    port.port
                ));
                None
            }
        }
    }

    fn virtual_server(
        &self,
        address: IpAddr,
        protocol: Protocol,
        port: u16,
        kind: AddressKind,
        origin: &Arc<ServiceRef>,
        computed: &mut Vec<((Family, bool), Destinations)>,
    ) -> VirtualServer {
        let key = ServiceKey::Addr {
            address,
            protocol,
            port,
        };
        let mut service = IpvsService::new(key, self.settings.scheduler.clone());
        service.flags = self.settings.flags;
        if self.settings.persistent {
            service.timeout = self.settings.timeout;
        }
        let local_only = match kind {
            AddressKind::ClusterIp => self.internal_local,
            AddressKind::NodePort | AddressKind::ExternalIp | AddressKind::LoadBalancer => {
                self.external_local
            }
        };
        let wanted = (Family::of(&address), local_only);
        let (destinations, local_destinations) = match computed.iter().find(|(w, _)| *w == wanted) {
            Some((_, found)) => found.clone(),
            None => {
                let found = self.destinations(wanted.0, &origin.port_name, local_only);
                computed.push((wanted, found.clone()));
                found
            }
        };
        VirtualServer {
            service,
            destinations,
            origin: origin.clone(),
            kind,
            local_policy: local_only,
            local_destinations,
            source_ranges: None,
            cluster_ip: None,
        }
    }

    /// Real servers of one Service port for one family: ready endpoints, or when there are none
    /// the serving terminating ones, so that a rollout's last pods still get traffic rather than
    /// none. Also says which of them are on this node.
    fn destinations(&self, family: Family, port_name: &str, local_only: bool) -> Destinations {
        let candidates: Vec<(&UsableEndpoint, u16)> = self
            .slices
            .iter()
            .filter(|s| s.family == family)
            .filter_map(|s| s.port(port_name).map(|p| (s, p)))
            .flat_map(|(s, p)| s.endpoints.iter().map(move |e| (e, p)))
            .filter(|(e, _)| !local_only || e.node_name.as_deref() == Some(self.node_name))
            .collect();
        let ready: Vec<_> = candidates.iter().filter(|(e, _)| e.ready).collect();
        let chosen: Vec<_> = if ready.is_empty() {
            candidates
                .iter()
                .filter(|(e, _)| e.serving && e.terminating)
                .collect()
        } else {
            ready
        };
        let mut local: Vec<(IpAddr, u16)> = chosen
            .iter()
            .filter(|(e, _)| e.node_name.as_deref() == Some(self.node_name))
            .map(|(e, p)| (e.address, *p))
            .collect();
        local.sort_unstable();
        local.dedup();
        let destinations = chosen
            .into_iter()
            .map(|(e, p)| RealServer::new(e.address, *p))
            .collect();
        (destinations, Arc::from(local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_names_are_plain_lowercase_identifiers() {
        for good in ["rr", "wlc", "mh", "twos", "my_sched2"] {
            assert!(is_scheduler_name(good), "{good}");
        }
        for bad in ["", "RR", "2rr", "r r", "rr;", "sixteen_chars_xx"] {
            assert!(!is_scheduler_name(bad), "{bad}");
        }
    }
}
