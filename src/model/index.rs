//! The desired rules kept up to date change by change.
//!
//! [`ModelIndex`] holds each Service's inputs (the Service and its parsed EndpointSlices) and
//! its output (`ServiceOutput`: the virtual servers, addresses and health-check port it asks
//! for, and its warnings), and the assembled [`Desired`]. A changed Service or EndpointSlice
//! recomputes that one Service; a change of the node's addresses recomputes the Services that
//! have node ports or an address that became, or stopped being, a node address. The rest of
//! the work is bookkeeping proportional to what the recomputed Services claim.
//!
//! The result is always what [`super::desired`] would compute from scratch: a virtual server key
//! or health-check port claimed by several Services belongs to the first in namespace/name
//! order, the others are warned about; the claimants are kept per key, so when the holder goes
//! the next one takes over. The property test in `tests/model_index.rs` holds the two
//! together.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipvs::ServiceKey;
use k8s_openapi::api::core::v1::Service;

use super::small_set::SmallSet;
use super::{
    node_port_addresses, service_output, Desired, ModelConfig, Note, ParsedSlice, ServiceOutput,
    VirtualServer,
};
use crate::node_addresses::NodeAddresses;
use crate::source::{Delta, ObjectKey, Objects, Slice};

/// What one change did to the desired rules: what the plan and the nftables elements must look
/// at again. Sets of keys, never the whole rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Virtual servers that may have changed, appeared or gone: those the recomputed Services
    /// claimed before or after, and those on an address that was bound or unbound.
    pub virtual_servers: BTreeSet<ServiceKey>,
    /// Addresses that were bound or unbound.
    pub bound_addresses: BTreeSet<IpAddr>,
    /// Whether the health-check ports or their local endpoint counts changed.
    pub health_checks: bool,
    /// Whether the warnings changed.
    pub warnings: bool,
    /// How many Services were computed again.
    pub recomputed: usize,
}

impl Touched {
    /// Whether the change left the desired rules as they were.
    pub fn is_empty(&self) -> bool {
        self.virtual_servers.is_empty()
            && self.bound_addresses.is_empty()
            && !self.health_checks
            && !self.warnings
    }

    /// Adds what `other` touched.
    pub fn merge(&mut self, other: Touched) {
        self.virtual_servers.extend(other.virtual_servers);
        self.bound_addresses.extend(other.bound_addresses);
        self.health_checks |= other.health_checks;
        self.warnings |= other.warnings;
        self.recomputed += other.recomputed;
    }
}

/// One Service's input and output.
#[derive(Debug)]
struct ServiceEntry {
    /// The Service as the source has it; `None` when only its slices are known.
    object: Option<Arc<Service>>,
    output: ServiceOutput,
    /// The index of the first virtual server of each key in `output.virtual_servers`: the one
    /// that counts when the Service holds the key.
    /// Sorted by key (a Service has a few: a map's node would be mostly empty).
    first: Box<[(ServiceKey, usize)]>,
    /// Its warnings as last rendered.
    warnings: Vec<String>,
}

/// The desired rules, with what each Service contributes to them, updated change by change.
#[derive(Debug)]
pub struct ModelIndex {
    config: ModelConfig,
    nodes: NodeAddresses,
    node_port_addresses: Vec<IpAddr>,
    services: BTreeMap<ObjectKey, ServiceEntry>,
    /// The slices the model can use, parsed.
    slices: BTreeMap<ObjectKey, ParsedSlice>,
    /// The slices of each Service (by the Service's key, whether the Service exists or not).
    slices_by_service: BTreeMap<ObjectKey, SmallSet<ObjectKey>>,
    /// The Services claiming each virtual server key; the first holds it.
    claims: BTreeMap<ServiceKey, SmallSet<ObjectKey>>,
    /// The Services claiming each health-check port; the first holds it.
    health_claims: BTreeMap<u16, SmallSet<ObjectKey>>,
    /// How many Services want each address bound.
    bound_counts: BTreeMap<IpAddr, usize>,
    /// The Services having each address (whether it is bound depends on the node's).
    services_by_address: BTreeMap<IpAddr, SmallSet<ObjectKey>>,
    /// The Services that may have node ports.
    node_port_services: BTreeSet<ObjectKey>,
    /// The desired virtual servers on each address.
    keys_by_address: BTreeMap<IpAddr, SmallSet<ServiceKey>>,
    /// The warnings of each slice and Service that has any.
    slice_warnings: BTreeMap<ObjectKey, Vec<String>>,
    service_warnings: BTreeSet<ObjectKey>,
    /// How many Services there are, and real servers in the desired virtual servers.
    service_count: usize,
    real_servers: usize,
    desired: Desired,
}

impl ModelIndex {
    /// An empty index for a node with `nodes` under `config`.
    pub fn new(config: ModelConfig, nodes: NodeAddresses) -> ModelIndex {
        ModelIndex {
            node_port_addresses: node_port_addresses(&nodes, &config),
            config,
            nodes,
            services: BTreeMap::new(),
            slices: BTreeMap::new(),
            slices_by_service: BTreeMap::new(),
            claims: BTreeMap::new(),
            health_claims: BTreeMap::new(),
            bound_counts: BTreeMap::new(),
            services_by_address: BTreeMap::new(),
            node_port_services: BTreeSet::new(),
            keys_by_address: BTreeMap::new(),
            slice_warnings: BTreeMap::new(),
            service_warnings: BTreeSet::new(),
            service_count: 0,
            real_servers: 0,
            desired: Desired::default(),
        }
    }

    /// An index of `objects`, computed from scratch.
    pub fn build(config: ModelConfig, nodes: NodeAddresses, objects: &Objects) -> ModelIndex {
        let mut index = ModelIndex::new(config, nodes);
        let delta = Delta {
            services: objects
                .services
                .iter()
                .map(|(k, s)| (k.clone(), Some(s.clone())))
                .collect(),
            endpoint_slices: objects
                .endpoint_slices
                .iter()
                .map(|(k, s)| (k.clone(), Some(s.clone())))
                .collect(),
        };
        index.apply(&delta);
        index
    }

    /// The desired rules.
    pub fn desired(&self) -> &Desired {
        &self.desired
    }

    /// The settings the rules are computed under.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The node addresses the rules are computed for.
    pub fn nodes(&self) -> &NodeAddresses {
        &self.nodes
    }

    /// How many Services the index holds.
    pub fn service_count(&self) -> usize {
        self.service_count
    }

    /// How many real servers the desired virtual servers have in all.
    pub fn real_servers(&self) -> usize {
        self.real_servers
    }

    /// The Service of `key`, as the index has it.
    pub fn service(&self, key: &ObjectKey) -> Option<&Arc<Service>> {
        self.services.get(key)?.object.as_ref()
    }

    /// Records that the kernel has no scheduler `name` and recomputes the Services asking for
    /// it (they get the default scheduler and a warning).
    pub fn scheduler_unavailable(&mut self, name: &str) -> Touched {
        if !self.config.unavailable_schedulers.insert(name.to_string()) {
            return Touched::default();
        }
        let asking: BTreeSet<ObjectKey> = self
            .services
            .iter()
            .filter(|(_, entry)| {
                entry.object.as_ref().is_some_and(|s| {
                    s.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(crate::labels::SCHEDULER_ANNOTATION))
                        .is_some_and(|v| v == name)
                })
            })
            .map(|(key, _)| key.clone())
            .collect();
        self.recompute(asking, false)
    }

    /// Applies changed Services and EndpointSlices.
    pub fn apply(&mut self, delta: &Delta) -> Touched {
        let mut dirty = BTreeSet::new();
        let mut slice_warnings_changed = false;
        for (key, slice) in &delta.endpoint_slices {
            slice_warnings_changed |= self.set_slice(key, slice.as_deref(), &mut dirty);
        }
        for (key, service) in &delta.services {
            let entry = self
                .services
                .entry(key.clone())
                .or_insert_with(|| ServiceEntry {
                    object: None,
                    output: ServiceOutput::default(),
                    first: Box::default(),
                    warnings: Vec::new(),
                });
            match (&entry.object, service) {
                (None, Some(_)) => self.service_count += 1,
                (Some(_), None) => self.service_count -= 1,
                _ => {}
            }
            entry.object = service.clone();
            dirty.insert(key.clone());
        }
        self.recompute(dirty, slice_warnings_changed)
    }

    /// Moves to new node addresses.
    pub fn set_nodes(&mut self, nodes: NodeAddresses) -> Touched {
        if nodes == self.nodes {
            return Touched::default();
        }
        let node_port_addresses = node_port_addresses(&nodes, &self.config);
        let mut dirty = BTreeSet::new();
        for address in self.nodes.addresses.symmetric_difference(&nodes.addresses) {
            if let Some(services) = self.services_by_address.get(address) {
                dirty.extend(services.iter().cloned());
            }
        }
        if node_port_addresses != self.node_port_addresses {
            dirty.extend(self.node_port_services.iter().cloned());
        }
        self.nodes = nodes;
        self.node_port_addresses = node_port_addresses;
        self.recompute(dirty, false)
    }

    /// Replaces, adds or removes one slice; marks its Services (old and new) dirty. Returns
    /// whether the slice's warnings changed.
    fn set_slice(
        &mut self,
        key: &ObjectKey,
        slice: Option<&Slice>,
        dirty: &mut BTreeSet<ObjectKey>,
    ) -> bool {
        if let Some(parsed) = self.slices.remove(key) {
            let service = parsed.service();
            remove_from(&mut self.slices_by_service, service, key);
            dirty.insert(service.clone());
        }
        let mut warnings = Vec::new();
        if let Some(parsed) = slice.and_then(|s| ParsedSlice::parse(s, &mut warnings)) {
            self.slices_by_service
                .entry(parsed.service().clone())
                .or_default()
                .insert(key.clone());
            dirty.insert(parsed.service().clone());
            self.slices.insert(key.clone(), parsed);
        }
        let old = if warnings.is_empty() {
            self.slice_warnings.remove(key)
        } else {
            self.slice_warnings.insert(key.clone(), warnings.clone())
        };
        old.unwrap_or_default() != warnings
    }

    /// Computes the `dirty` Services again and settles what their claims decide.
    fn recompute(&mut self, dirty: BTreeSet<ObjectKey>, warnings_changed: bool) -> Touched {
        let mut touched = Touched {
            warnings: warnings_changed,
            ..Touched::default()
        };
        let mut health_ports = BTreeSet::new();
        // Addresses whose count went to or from zero: bound or unbound, unless both.
        let mut addresses = BTreeSet::new();
        let mut rerender: BTreeSet<ObjectKey> = BTreeSet::new();
        for key in dirty {
            let output = self.compute(&key);
            touched.recomputed += usize::from(output.is_some());
            let Some(entry) = self.services.get(&key) else {
                continue;
            };
            let unchanged = match &output {
                Some(o) => *o == entry.output,
                None => entry.object.is_none() && entry.output == ServiceOutput::default(),
            };
            if unchanged {
                if output.is_none() {
                    self.drop_if_unused(&key);
                }
                continue;
            }
            let old = std::mem::take(&mut self.services.get_mut(&key).expect("above").output);
            self.retract(&key, &old, &mut touched, &mut health_ports, &mut addresses);
            let output = output.unwrap_or_default();
            self.install(
                &key,
                &output,
                &mut touched,
                &mut health_ports,
                &mut addresses,
            );
            let entry = self.services.get_mut(&key).expect("above");
            entry.first = first_of_each_key(&output.virtual_servers);
            entry.output = output;
            rerender.insert(key.clone());
            self.drop_if_unused(&key);
        }

        for address in addresses {
            let wanted = self.bound_counts.contains_key(&address);
            let changed = if wanted {
                self.desired.bound_addresses.insert(address)
            } else {
                self.desired.bound_addresses.remove(&address)
            };
            if changed {
                touched.bound_addresses.insert(address);
            }
        }
        // Settle the claims: each touched key goes to its first claimant.
        for key in touched.virtual_servers.clone() {
            let claimants = self.claims.get(&key);
            rerender.extend(claimants.into_iter().flatten().cloned());
            let holder = claimants
                .and_then(|c| c.first())
                .and_then(|service| self.holding(service, &key))
                .cloned();
            let ServiceKey::Addr { address, .. } = key else {
                continue;
            };
            match holder {
                Some(vs) => {
                    self.real_servers += vs.destinations.len();
                    if let Some(old) = self.desired.virtual_servers.insert(key, vs) {
                        self.real_servers -= old.destinations.len();
                    }
                    self.keys_by_address.entry(address).or_default().insert(key);
                }
                None => {
                    if let Some(old) = self.desired.virtual_servers.remove(&key) {
                        self.real_servers -= old.destinations.len();
                    }
                    remove_from(&mut self.keys_by_address, &address, &key);
                }
            }
        }
        for port in health_ports {
            let claimants = self.health_claims.get(&port);
            rerender.extend(claimants.into_iter().flatten().cloned());
            let holder = claimants
                .and_then(|c| c.first())
                .and_then(|service| self.services.get(service))
                .and_then(|entry| entry.output.health_check.as_ref())
                .map(|(_, check)| check.clone());
            let changed = match holder {
                Some(check) => {
                    self.desired.health_checks.insert(port, check.clone()) != Some(check)
                }
                None => self.desired.health_checks.remove(&port).is_some(),
            };
            touched.health_checks |= changed;
        }
        // A virtual server on an address that was bound or unbound changes in the nftables
        // elements (the port filter lets bound addresses' Service ports through).
        for address in &touched.bound_addresses {
            if let Some(keys) = self.keys_by_address.get(address) {
                touched.virtual_servers.extend(keys.iter().copied());
            }
        }
        for key in rerender {
            touched.warnings |= self.render_warnings(&key);
        }
        if touched.warnings {
            self.desired.warnings = self
                .slice_warnings
                .values()
                .flatten()
                .chain(
                    self.service_warnings
                        .iter()
                        .filter_map(|key| self.services.get(key))
                        .flat_map(|entry| entry.warnings.iter()),
                )
                .cloned()
                .collect();
        }
        touched
    }

    /// The Service's output now, or `None` when the Service does not exist.
    fn compute(&self, key: &ObjectKey) -> Option<ServiceOutput> {
        let service = self.services.get(key)?.object.as_ref()?;
        let slices: Vec<&ParsedSlice> = self
            .slices_by_service
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|slice| self.slices.get(slice))
            .collect();
        Some(service_output(
            service,
            &slices,
            &self.nodes,
            &self.node_port_addresses,
            &self.config,
        ))
    }

    /// Forgets a Service entry that has neither an object nor an output left.
    fn drop_if_unused(&mut self, key: &ObjectKey) {
        if self
            .services
            .get(key)
            .is_some_and(|e| e.object.is_none() && e.output == ServiceOutput::default())
        {
            self.services.remove(key);
        }
    }

    /// The virtual server `service` has for `key`, if it claims it.
    fn holding(&self, service: &ObjectKey, key: &ServiceKey) -> Option<&Arc<VirtualServer>> {
        let entry = self.services.get(service)?;
        entry
            .first_of(key)
            .map(|i| &entry.output.virtual_servers[i])
    }

    /// Withdraws a Service's old output from the claims and counts.
    fn retract(
        &mut self,
        key: &ObjectKey,
        output: &ServiceOutput,
        touched: &mut Touched,
        health_ports: &mut BTreeSet<u16>,
        addresses: &mut BTreeSet<IpAddr>,
    ) {
        for vs in &output.virtual_servers {
            let k = vs.service.key;
            touched.virtual_servers.insert(k);
            remove_from(&mut self.claims, &k, key);
        }
        if let Some((port, _)) = &output.health_check {
            health_ports.insert(*port);
            remove_from(&mut self.health_claims, port, key);
        }
        for address in &output.bound_addresses {
            let count = self.bound_counts.get_mut(address).expect("counted");
            *count -= 1;
            if *count == 0 {
                self.bound_counts.remove(address);
                addresses.insert(*address);
            }
        }
        for address in &output.addresses {
            remove_from(&mut self.services_by_address, address, key);
        }
        if output.node_ports {
            self.node_port_services.remove(key);
        }
    }

    /// Enters a Service's new output into the claims and counts.
    fn install(
        &mut self,
        key: &ObjectKey,
        output: &ServiceOutput,
        touched: &mut Touched,
        health_ports: &mut BTreeSet<u16>,
        addresses: &mut BTreeSet<IpAddr>,
    ) {
        for vs in &output.virtual_servers {
            let k = vs.service.key;
            touched.virtual_servers.insert(k);
            self.claims.entry(k).or_default().insert(key.clone());
        }
        if let Some((port, _)) = &output.health_check {
            health_ports.insert(*port);
            self.health_claims
                .entry(*port)
                .or_default()
                .insert(key.clone());
        }
        for address in &output.bound_addresses {
            let count = self.bound_counts.entry(*address).or_default();
            *count += 1;
            if *count == 1 {
                addresses.insert(*address);
            }
        }
        for address in &output.addresses {
            self.services_by_address
                .entry(*address)
                .or_default()
                .insert(key.clone());
        }
        if output.node_ports {
            self.node_port_services.insert(key.clone());
        }
    }

    /// Renders a Service's warnings as [`super::desired`] would say them; returns whether they
    /// changed.
    fn render_warnings(&mut self, key: &ObjectKey) -> bool {
        let Some(entry) = self.services.get(key) else {
            return self.service_warnings.remove(key);
        };
        let mut warnings = Vec::new();
        for note in &entry.output.notes.0 {
            match note {
                Note::Warning(text) => warnings.push(text.clone()),
                Note::VirtualServer(i) => {
                    let k = entry.output.virtual_servers[*i].service.key;
                    let holder = self.claims.get(&k).and_then(|c| c.first());
                    let holds = holder == Some(key) && entry.first_of(&k) == Some(*i);
                    if !holds {
                        if let Some(vs) = holder.and_then(|h| self.holding(h, &k)) {
                            warnings.push(entry.output.conflict(*i, vs));
                        }
                    }
                }
                Note::HealthCheck => {
                    let Some((port, _)) = &entry.output.health_check else {
                        continue;
                    };
                    let holder = self.health_claims.get(port).and_then(|c| c.first());
                    if holder != Some(key) {
                        if let Some(check) = holder
                            .and_then(|h| self.services.get(h))
                            .and_then(|e| e.output.health_check.as_ref())
                            .map(|(_, check)| check)
                        {
                            warnings.push(entry.output.health_check_conflict(check));
                        }
                    }
                }
            }
        }
        let entry = self.services.get_mut(key).expect("above");
        if entry.warnings == warnings {
            return false;
        }
        if warnings.is_empty() {
            self.service_warnings.remove(key);
        } else {
            self.service_warnings.insert(key.clone());
        }
        entry.warnings = warnings;
        true
    }
}

/// Removes `value` from the set of `key`, and the set when it is empty.
fn remove_from<K: Ord, V: Ord>(map: &mut BTreeMap<K, SmallSet<V>>, key: &K, value: &V) {
    if let Some(set) = map.get_mut(key) {
        set.remove(value);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

impl ServiceEntry {
    /// The index of the first of its virtual servers with `key`.
    fn first_of(&self, key: &ServiceKey) -> Option<usize> {
        self.first
            .binary_search_by(|(known, _)| known.cmp(key))
            .ok()
            .map(|i| self.first[i].1)
    }
}

/// The index of the first virtual server of each key, sorted by key.
fn first_of_each_key(virtual_servers: &[Arc<VirtualServer>]) -> Box<[(ServiceKey, usize)]> {
    let mut first: Vec<(ServiceKey, usize)> = virtual_servers
        .iter()
        .enumerate()
        .map(|(i, vs)| (vs.service.key, i))
        .collect();
    // Sorted by key, then index: the first of each key is the one kept.
    first.sort_unstable();
    first.dedup_by_key(|(key, _)| *key);
    first.into_boxed_slice()
}
