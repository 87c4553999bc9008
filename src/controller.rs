//! The sync loop: source → model → plan → dataplane.
//!
//! Sync is level-triggered and incremental. Every change (a source update, a node address
//! appearing or going) leads to one sync, bursts coalesced within the minimum sync period. The
//! source says which objects changed; the model index recomputes the Services they concern and
//! says which virtual servers and addresses that touched; those alone are diffed against a
//! cached copy of the kernel's table, and only the resulting operations are sent. The cache is
//! updated from the operations' results, so a change never costs a dump of the whole table, nor
//! a look at the Services it did not concern. The model is rebuilt from everything on the first
//! sync and when the source had to list everything again.
//!
//! The masquerading rules beside IPVS (ipvsd's nftables table) follow the same way: a change
//! sends only the set elements of the virtual servers and addresses it touched; the first sync
//! and a sync after a failure replace the table in one transaction.
//!
//! Every sync period the kernel is read again, so that a rule changed by hand is put back. At
//! 10,000 Services that read takes tens of seconds in a slow VM, and replacing the nftables
//! table seconds more, so the repair does not stop the syncs: its read runs beside them, on a
//! thread of its own at a lower CPU priority, pausing between short stretches of work (see
//! [`Dataplane::read_in_background`] and [`crate::dataplane::reading_thread`]), and compares
//! each virtual server with the cache's fingerprint of it as it reads, keeping only those that
//! differ (no second copy of the table); what the syncs changed meanwhile is taken from the
//! cache, which knows it better than a read that may have passed it before or after. What the
//! read finds different from the cache is planned by the next sync like any change; the
//! nftables table is replaced only when its listing differs from what it should hold, or nft
//! says it is gone (a listing that gets no answer changes nothing). The listing too is compared
//! beside the syncs, set by set against a digest of what each set held when the read began, and
//! only a set that differs is compared element by element on the sync loop. The fingerprints
//! and digests are kept up to date sync by sync, so a repair's start and end hold the sync loop
//! for what differs, not for the size of the table.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use ipvs::Request;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, error, info, warn};

use crate::conntrack;
use crate::dataplane::conntrack::ConntrackError;
use crate::dataplane::link::LinkError;
use crate::dataplane::{Dataplane, KernelRead};
use crate::health::Health;
use crate::health_check::HealthCheckServers;
use crate::metrics::{Metrics, ModelComputation};
use crate::model::index::{ModelIndex, Touched};
use crate::model::{self, Desired, ModelConfig};
use crate::netfilter::{self, ElementIndex, SetContents, Transaction};
use crate::node_addresses::NodeAddresses;
use crate::plan::{
    self, Actual, ActualDestination, ActualService, GracefulTermination, Operation, Ownership,
};
use crate::source::{Changes, Source};

/// How often the connection counts of terminating real servers are read again.
const TERMINATING_CHECK: Duration = Duration::from_secs(1);
/// Longest wait before retrying a sync that failed.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// What the controller needs to know besides the model's own settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Settings of the model (node name, scheduler, ...).
    pub model: ModelConfig,
    /// The nodePorts ipvsd may own on node addresses.
    pub nodeport_range: RangeInclusive<u16>,
    /// Addresses ipvsd never touches.
    pub exclude_cidrs: Vec<IpNet>,
    /// Bursts of changes closer than this are applied together.
    pub min_sync_period: Duration,
    /// How often the kernel's table is read again and repaired.
    pub sync_period: Duration,
    /// How long a removed TCP real server may drain before it is deleted; `None` waits for its
    /// connections to end.
    pub graceful_termination_timeout: Option<Duration>,
    /// Warn once when a full sync leaves at least this many virtual and real servers in a
    /// kernel whose rate estimator walks them all in one softirq timer every 2 s (before Linux
    /// 6.2, with estimation on; see [`crate::dataplane::sysctl::Sysctls::rate_estimation`]).
    /// `None`: the kernel's estimator is not such, or was set as the operator chose.
    pub rate_estimator_warning: Option<usize>,
}

/// [`Config::rate_estimator_warning`] on a kernel that needs it: upstream reported the timer
/// holding a CPU for 200 ms at 50,000 services; the test bed's VM measured 0.3–0.4 s at 330,000
/// virtual and real servers.
pub const RATE_ESTIMATOR_WARNING: usize = 50_000;

/// Errors that stop the controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// Reading the kernel's IPVS table failed.
    #[error("reading the IPVS table: {0}")]
    Ipvs(#[from] ipvs::Error),
    /// Reading or changing the dummy interface failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Some operations of a one-shot sync failed.
    #[error("{failed} of {total} operations failed (see the log)")]
    Incomplete {
        /// Operations that failed.
        failed: usize,
        /// Operations attempted.
        total: usize,
    },
}

/// What one sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Operations sent.
    pub operations: usize,
    /// Operations that failed.
    pub failed: usize,
    /// Nothing was done: the source has not seen everything once yet.
    pub waiting: bool,
}

/// Inputs that change while the controller runs.
pub struct Inputs {
    /// Services and EndpointSlices.
    pub source: Arc<dyn Source>,
    /// Bumped by the source on every change.
    pub changes: watch::Receiver<u64>,
    /// The node's addresses, kept current by the address watcher.
    pub node_addresses: watch::Receiver<NodeAddresses>,
}

/// The sync state: the cached kernel table and what is draining.
pub struct Controller<D> {
    config: Config,
    inputs: Inputs,
    dataplane: D,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    actual: Option<Actual>,
    graceful: GracefulTermination,
    warnings: BTreeSet<String>,
    /// The table entries that could not be read at the last full read, as warned about.
    undecodable_seen: BTreeSet<String>,
    /// Whether the current sync failed to change the dummy interface's addresses.
    addresses_failed: bool,
    /// Whether the record of an earlier run's virtual servers was read into `managed`.
    owned_loaded: bool,
    /// Whether [`Config::rate_estimator_warning`] was warned about.
    rate_estimator_warned: bool,
    /// Schedulers asked for by annotation that the kernel was asked about, and its answer.
    schedulers: BTreeMap<String, bool>,
    /// Which kernel rules are ipvsd's, with the virtual servers programmed in this run (see
    /// [`Ownership::managed`]); kept rather than rebuilt for each sync.
    ownership: Ownership,
    /// When the oldest change not yet applied was seen.
    pending_since: Option<std::time::Instant>,
    /// The elements of ipvsd's nftables table as the last transaction left them; `None` until
    /// the table was written, or after a transaction failed (the next sync replaces it).
    netfilter: Option<ElementIndex>,
    /// While ipvsd's table exists as ipvsd wrote it: what its counters had counted when last
    /// read, already added to the metrics.
    netfilter_counted: Option<BTreeMap<String, u64>>,
    /// The health-check node ports, when this controller serves them.
    health_checks: Option<HealthCheckServers>,
    /// The desired rules with what each Service contributes, kept up to date change by
    /// change; `None` until the source was complete, or when a change may have been lost
    /// (then the next sync rebuilds it from everything).
    model: Option<ModelIndex>,
    /// While a repair's read runs: what the syncs changed since it began.
    repair: Option<RepairWindow>,
    /// What the last repair's read found different from the cache, for the next sync to plan.
    drift: Drift,
    /// The cache's fingerprint of each virtual server, kept up to date sync by sync.
    prints: CachePrints,
}

/// Every virtual server's fingerprint, computed afresh.
fn fingerprints_of(actual: Option<&Actual>) -> crate::dataplane::Fingerprints {
    actual
        .iter()
        .flat_map(|a| &a.services)
        .map(|(key, service)| (*key, service.fingerprint()))
        .collect()
}

/// The cache's fingerprint of each virtual server ([`ActualService::fingerprint`]), what a
/// repair's read compares the kernel with. Kept up to date sync by sync, each fingerprinting
/// only the virtual servers it changed: fingerprinting the whole cache when a repair began held
/// the sync loop for 300–450 ms at 30,000 virtual servers in the test bed, and a change
/// arriving then waited for it.
#[derive(Debug, Default)]
struct CachePrints {
    /// As of the last refresh (shared with a repair's read while it runs).
    prints: Arc<crate::dataplane::Fingerprints>,
    /// Virtual servers the cache changed since.
    stale: BTreeSet<ipvs::ServiceKey>,
    /// The cache was replaced since (or never fingerprinted).
    all_stale: bool,
}

impl CachePrints {
    /// The cache changed what it holds of `key`.
    fn touch(&mut self, key: ipvs::ServiceKey) {
        if !self.all_stale {
            self.stale.insert(key);
        }
    }

    /// The cache was replaced.
    fn touch_all(&mut self) {
        self.all_stale = true;
        self.stale.clear();
    }

    /// Brings the stale fingerprints up to date with `actual`. Done after each sync while no
    /// repair reads (its read shares the fingerprints; changing them then would copy them
    /// all), so that a repair's start has next to nothing left to do.
    fn refresh(&mut self, actual: Option<&Actual>) {
        let services = actual.map(|a| &a.services);
        if std::mem::take(&mut self.all_stale) {
            self.prints = Arc::new(fingerprints_of(actual));
        } else if !self.stale.is_empty() {
            // No read holds them by now: no copy.
            let prints = Arc::make_mut(&mut self.prints);
            for key in &self.stale {
                match services.and_then(|s| s.get(key)) {
                    Some(service) => prints.insert(*key, service.fingerprint()),
                    None => prints.remove(key),
                };
            }
        }
        self.stale.clear();
    }

    /// The fingerprints of `actual` now, for a repair's read.
    fn current(&mut self, actual: Option<&Actual>) -> Arc<crate::dataplane::Fingerprints> {
        self.refresh(actual);
        debug_assert_eq!(
            *self.prints,
            fingerprints_of(actual),
            "every change of the cache is noted"
        );
        Arc::clone(&self.prints)
    }
}

/// What the syncs changed while a repair's read ran: the read may have seen these before or
/// after the change, so the cache is believed for them.
#[derive(Debug)]
struct RepairWindow {
    /// When the read began.
    started: std::time::Instant,
    virtual_servers: BTreeSet<ipvs::ServiceKey>,
    addresses: BTreeSet<IpAddr>,
    /// nftables elements added or deleted meanwhile.
    elements: SetContents,
    /// The nftables table was replaced meanwhile: its listing says nothing.
    netfilter_replaced: bool,
    /// How long the sync loop took to fingerprint the cache before the read began.
    fingerprint_time: std::time::Duration,
}

impl RepairWindow {
    fn new() -> RepairWindow {
        RepairWindow {
            started: std::time::Instant::now(),
            virtual_servers: BTreeSet::new(),
            addresses: BTreeSet::new(),
            elements: SetContents::default(),
            netfilter_replaced: false,
            fingerprint_time: std::time::Duration::ZERO,
        }
    }

    /// Notes what `ops` change (whether or not the kernel accepted them).
    fn record(&mut self, ops: &[Operation]) {
        for op in ops {
            match op {
                Operation::BindAddress(a) | Operation::UnbindAddress(a) => {
                    self.addresses.insert(*a);
                }
                Operation::Ipvs(_) => self.virtual_servers.extend(op.service_key()),
            }
        }
    }
}

/// Virtual servers and addresses a repair found the kernel holding otherwise than the cache
/// said.
#[derive(Debug, Default)]
struct Drift {
    virtual_servers: BTreeSet<ipvs::ServiceKey>,
    addresses: BTreeSet<IpAddr>,
}

/// What planning and applying (a part of) a sync did.
#[derive(Debug, Default)]
struct Applied {
    operations: usize,
    failed: usize,
    plan_time: std::time::Duration,
    apply_time: std::time::Duration,
    /// UDP virtual servers whose real servers changed: their stale conntrack entries go.
    udp_changed: BTreeSet<ipvs::ServiceKey>,
}

impl Applied {
    fn add(&mut self, other: Applied) {
        self.operations += other.operations;
        self.failed += other.failed;
        self.plan_time += other.plan_time;
        self.apply_time += other.apply_time;
        self.udp_changed.extend(other.udp_changed);
    }
}

/// How the model changed in one sync.
struct ModelUpdate {
    /// It was rebuilt from everything: everything may have changed.
    rebuilt: bool,
    /// The node's addresses changed, and with them which rules are ipvsd's.
    nodes_changed: bool,
    /// Otherwise, what the changes touched.
    touched: Touched,
}

impl<D: Dataplane> Controller<D> {
    /// A controller that has not synced yet; its first sync reads the kernel and adopts what is
    /// there.
    pub fn new(
        config: Config,
        inputs: Inputs,
        dataplane: D,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> Controller<D> {
        let graceful = GracefulTermination {
            timeout: config.graceful_termination_timeout,
            since: Default::default(),
        };
        let ownership = Ownership {
            node_addresses: NodeAddresses::default(),
            nodeport_range: config.nodeport_range.clone(),
            exclude_cidrs: config.exclude_cidrs.clone(),
            managed: BTreeSet::new(),
        };
        Controller {
            config,
            inputs,
            dataplane,
            health,
            metrics,
            actual: None,
            graceful,
            warnings: BTreeSet::new(),
            undecodable_seen: BTreeSet::new(),
            addresses_failed: false,
            owned_loaded: false,
            rate_estimator_warned: false,
            pending_since: None,
            ownership,
            schedulers: BTreeMap::new(),
            netfilter: None,
            netfilter_counted: None,
            health_checks: None,
            model: None,
            repair: None,
            drift: Drift::default(),
            prints: CachePrints {
                all_stale: true,
                ..CachePrints::default()
            },
        }
    }

    /// Also serves the Services' health-check node ports (see [`crate::health_check`]).
    pub fn with_health_checks(mut self, servers: HealthCheckServers) -> Controller<D> {
        self.health_checks = Some(servers);
        self
    }

    /// Syncs once, with a fresh read of the kernel, as soon as the source is complete.
    pub async fn run_once(mut self) -> Result<SyncReport, ControllerError> {
        while self.inputs.source.take_changes(true).is_none() {
            if self.inputs.changes.changed().await.is_err() {
                break;
            }
        }
        let report = self.sync(true).await?;
        if report.failed > 0 {
            return Err(ControllerError::Incomplete {
                failed: report.failed,
                total: report.operations,
            });
        }
        Ok(report)
    }

    /// Runs until `shutdown` resolves. The kernel's rules stay in place when it returns, so
    /// traffic keeps flowing while ipvsd restarts.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut dirty = true;
        let mut full = true;
        let mut last_sync: Option<Instant> = None;
        let mut next_full = Instant::now();
        let mut failures: u32 = 0;
        let mut changes_open = true;
        let mut nodes_open = true;
        // The periodic repair's read, running beside the syncs.
        let mut repair_read: Option<tokio::task::JoinHandle<KernelRead>> = None;
        loop {
            let now = Instant::now();
            let wake_at = if dirty {
                last_sync
                    .map(|t| t + self.config.min_sync_period)
                    .unwrap_or(now)
                    .max(now)
            } else if self.graceful.since.is_empty() {
                next_full
            } else {
                next_full.min(now + TERMINATING_CHECK)
            };
            tokio::select! {
                biased;
                _ = &mut shutdown => {
                    info!("shutting down; the IPVS rules stay in place");
                    return;
                }
                changed = self.inputs.changes.changed(), if changes_open => {
                    changes_open = changed.is_ok();
                    self.change_seen();
                    dirty = true;
                }
                changed = self.inputs.node_addresses.changed(), if nodes_open => {
                    nodes_open = changed.is_ok();
                    let nodes = self.inputs.node_addresses.borrow();
                    debug!(addresses = ?nodes.addresses, primary = ?nodes.primary, "node addresses changed");
                    drop(nodes);
                    self.change_seen();
                    dirty = true;
                }
                read = async { repair_read.as_mut().expect("guarded").await }, if repair_read.is_some() => {
                    repair_read = None;
                    next_full = Instant::now() + self.config.sync_period;
                    match read {
                        Ok(read) => {
                            if let Err(e) = self.take_repair_read(read) {
                                // Read the kernel at once, the old way, and back off if that
                                // fails too.
                                warn!(error = %e, "the repair's read failed; reading again");
                                full = true;
                            }
                        }
                        Err(e) => {
                            error!(error = %e, "the repair's read stopped");
                            full = true;
                        }
                    }
                    dirty = true;
                }
                _ = sleep_until(wake_at) => {
                    let now = Instant::now();
                    if now >= next_full {
                        if full || self.actual.is_none() || self.model.is_none() {
                            // The first sync, or a retry: read the kernel before syncing.
                            if let Some(task) = repair_read.take() {
                                task.abort();
                                self.repair = None;
                            }
                            full = true;
                            dirty = true;
                        } else if repair_read.is_none() {
                            debug!("periodic repair: reading the kernel beside the syncs");
                            let started = std::time::Instant::now();
                            let expected = crate::dataplane::RepairExpectation {
                                virtual_servers: self.prints.current(self.actual.as_ref()),
                                sets: self
                                    .netfilter
                                    .as_ref()
                                    .map(ElementIndex::digests)
                                    .unwrap_or_default(),
                            };
                            self.repair = Some(RepairWindow {
                                fingerprint_time: started.elapsed(),
                                ..RepairWindow::new()
                            });
                            repair_read =
                                Some(tokio::spawn(self.dataplane.read_in_background(expected)));
                            // Until the read is in; then counted from its end.
                            next_full = now + Duration::from_secs(24 * 3600);
                        }
                    }
                    if !dirty && !self.graceful.since.is_empty() {
                        if let Err(e) = self.refresh_terminating().await {
                            warn!(error = %e, "reading terminating real servers");
                        }
                        dirty = true;
                    }
                    if !dirty {
                        continue;
                    }
                    last_sync = Some(now);
                    match self.sync(full).await {
                        // The source is not complete yet: the first sync (a full one)
                        // waits for it, and its next change wakes the loop.
                        Ok(report) if report.waiting => {
                            dirty = false;
                        }
                        Ok(report) if report.failed == 0 => {
                            failures = 0;
                            dirty = false;
                            if full {
                                full = false;
                                // Counted from the end of the full sync: on a large table it
                                // can take a good part of the period.
                                next_full = Instant::now() + self.config.sync_period;
                            }
                        }
                        Ok(_) => {
                            // Some operations failed: read the kernel again before retrying,
                            // backing off so a rule the kernel keeps refusing does not spin.
                            failures += 1;
                            dirty = false;
                            full = true;
                            next_full = Instant::now() + retry_delay(failures);
                        }
                        Err(e) => {
                            failures += 1;
                            // Nothing was applied: health turns bad if this lasts.
                            self.health.change_seen(std::time::Instant::now());
                            error!(error = %e, "sync failed");
                            dirty = false;
                            full = true;
                            next_full = Instant::now() + retry_delay(failures);
                        }
                    }
                }
            }
        }
    }

    /// One sync: model, plan against the cached table (read afresh when `full`), apply.
    ///
    /// The model takes the source's changes; the plan and the nftables elements then look at
    /// the virtual servers and addresses those changes touched (and at the real servers still
    /// draining), unless the kernel was read afresh, the model rebuilt or the node's addresses
    /// changed: then they look at everything.
    pub async fn sync(&mut self, full: bool) -> Result<SyncReport, ControllerError> {
        let started = std::time::Instant::now();
        let Some(update) = self.update_model().await? else {
            debug!("source not complete yet; the kernel is left as it is");
            return Ok(SyncReport {
                waiting: true,
                ..SyncReport::default()
            });
        };
        let model_time = started.elapsed();
        let model = self.model.take().expect("updated above");
        let result = self
            .sync_to(&model, update, full, started, model_time)
            .await;
        self.model = Some(model);
        result
    }

    /// The sync proper, with the updated model, which is taken out of `self` meanwhile so that
    /// its desired rules can be borrowed across the dataplane calls.
    async fn sync_to(
        &mut self,
        model: &ModelIndex,
        update: ModelUpdate,
        full: bool,
        started: std::time::Instant,
        model_time: std::time::Duration,
    ) -> Result<SyncReport, ControllerError> {
        let desired = model.desired();
        let phase = std::time::Instant::now();
        let read_now = full || self.actual.is_none();
        if !self.owned_loaded {
            // What an earlier run programmed stays ipvsd's across a restart (see
            // dataplane::owned), even where nothing else says so.
            let recorded = self.dataplane.load_owned().await;
            if !recorded.is_empty() {
                info!(
                    virtual_servers = recorded.len(),
                    "virtual servers an earlier run recorded as ipvsd's"
                );
            }
            self.ownership.managed.extend(recorded);
            self.owned_loaded = true;
        }
        if read_now {
            let contents = self.dataplane.read_services().await?;
            let bound_addresses = self.dataplane.bound_addresses().await?;
            let counters = contents
                .services
                .iter()
                .map(|(key, service)| (*key, service.service.stats))
                .collect();
            self.publish_traffic(desired, &counters);
            self.report_undecodable(&contents.undecodable);
            self.prints.touch_all();
            self.actual = Some(Actual {
                services: contents.services,
                bound_addresses,
                undecodable: contents.undecodable,
            });
        }
        let read_time = phase.elapsed();
        let phase = std::time::Instant::now();
        if self.ownership.node_addresses != *model.nodes() {
            self.ownership.node_addresses = model.nodes().clone();
        }
        // What the plan looks at: everything, or the touched keys and those with real servers
        // draining (whose connections or timeout may have run out since).
        // And what the last repair's read found changed behind ipvsd's back.
        let drift = std::mem::take(&mut self.drift);
        let scope = if read_now || update.rebuilt || update.nodes_changed {
            None
        } else {
            let mut keys = update.touched.virtual_servers.clone();
            keys.extend(self.graceful.since.keys().map(|(k, _, _)| *k));
            keys.extend(drift.virtual_servers);
            let mut addresses = update.touched.bound_addresses.clone();
            addresses.extend(drift.addresses);
            Some((keys, addresses))
        };
        let now = std::time::Instant::now();
        let plan_time = phase.elapsed();
        // Masquerading first: a new virtual server's first packets must already be marked, and
        // a connection to a virtual server before its elements are in place may be reset (the
        // kernel suite saw it when a first sync wrote the table beside its IPVS writes). So even
        // the whole table, at 90,000 elements seconds of nft, comes before the IPVS writes.
        let phase = std::time::Instant::now();
        let netfilter_failed = self
            .sync_netfilter(desired, full, update.rebuilt, &update.touched)
            .await;
        let netfilter_time = phase.elapsed();
        // A sync of everything is planned and applied a part at a time, so that it never holds
        // the operations of the whole table at once (at 30,000 virtual servers, 340,000
        // operations, 57 MiB); each part is what a change touching its keys would do.
        let whole: Vec<_>;
        let parts: &[_] = match &scope {
            Some(_) => std::slice::from_ref(&scope),
            None => {
                whole = plan::parts(
                    desired,
                    self.actual.as_ref().expect("read above"),
                    plan::PART_SIZE,
                )
                .into_iter()
                .map(Some)
                .collect();
                &whole
            }
        };
        let mut totals = Applied::default();
        for part in parts {
            let applied = self.plan_and_apply(desired, part, read_now, now).await?;
            totals.add(applied);
        }
        let Applied {
            operations,
            failed,
            plan_time: parts_plan_time,
            apply_time,
            udp_changed,
        } = totals;
        let plan_time = plan_time + parts_plan_time;
        let failed = failed + netfilter_failed;
        self.clean_udp_conntrack(desired, &udp_changed).await;
        self.track_terminating(desired, scope.as_ref().map(|(keys, _)| keys), now);
        if scope.is_none() || update.touched.health_checks {
            self.update_health_checks(desired, model.nodes());
        }
        if scope.is_none() || update.touched.warnings {
            self.log_new_warnings(desired);
        }
        if let Some(actual) = &self.actual {
            let managed = &mut self.ownership.managed;
            let mut changed = false;
            match &scope {
                None => {
                    let before = managed.len();
                    managed.extend(desired.virtual_servers.keys().copied());
                    changed |= managed.len() != before;
                    let before = managed.len();
                    managed.retain(|k| actual.services.contains_key(k));
                    changed |= managed.len() != before;
                }
                Some((keys, _)) => {
                    for key in keys {
                        if desired.virtual_servers.contains_key(key) {
                            changed |= managed.insert(*key);
                        }
                        if !actual.services.contains_key(key) {
                            changed |= managed.remove(key);
                        }
                    }
                }
            }
            if changed {
                self.dataplane.save_owned(&self.ownership.managed).await;
            }
        }
        if self.repair.is_none() {
            self.prints.refresh(self.actual.as_ref());
        }

        let report = SyncReport {
            operations,
            failed,
            waiting: false,
        };
        let elapsed = started.elapsed();
        self.metrics.observe_sync(elapsed);
        self.publish_counts(model);
        // As kube-proxy's health check does, this says that changes are being processed: an
        // operation the kernel refused is logged, counted in the metrics and retried, but does
        // not hold back the node's health for every other Service. Addresses that cannot be
        // bound or unbound are another matter: the dummy interface is ipvsd's own, and when it
        // cannot be programmed (deleted, or refused wholesale) no Service works; that counts as
        // a change not applied, so health turns bad if it lasts twice the sync period.
        if std::mem::take(&mut self.addresses_failed) {
            self.health.change_seen(started);
        } else {
            self.health.synced(started);
        }
        if let Some(seen) = self.pending_since.take() {
            self.metrics
                .observe_programming_latency(std::time::Instant::now() - seen);
        }
        if operations > 0 || full {
            let heap = full.then(crate::metrics::heap_stats).flatten();
            info!(
                operations = report.operations,
                failed = report.failed,
                full,
                virtual_servers = desired.virtual_servers.len(),
                elapsed_ms = elapsed.as_millis() as u64,
                model_ms = model_time.as_millis() as u64,
                read_ms = read_time.as_millis() as u64,
                plan_ms = plan_time.as_millis() as u64,
                netfilter_ms = netfilter_time.as_millis() as u64,
                apply_ms = apply_time.as_millis() as u64,
                rss_mib = full.then(crate::metrics::resident_mib).flatten(),
                heap_mib = heap.map(|h| h.allocated_mib),
                heap_resident_mib = heap.map(|h| h.resident_mib),
                "synced"
            );
        }
        if full {
            self.warn_of_the_rate_estimator(desired);
        }
        Ok(report)
    }

    /// See [`Config::rate_estimator_warning`].
    fn warn_of_the_rate_estimator(&mut self, desired: &Desired) {
        let Some(threshold) = self.config.rate_estimator_warning else {
            return;
        };
        if self.rate_estimator_warned {
            return;
        }
        let entries = desired.virtual_servers.len()
            + desired
                .virtual_servers
                .values()
                .map(|vs| vs.destinations.len())
                .sum::<usize>();
        if entries >= threshold {
            self.rate_estimator_warned = true;
            warn!(
                entries,
                "the kernel's IPVS rate estimator walks every virtual and real server in one \
                 softirq timer every 2 s (Linux before 6.2), holding a CPU for long at this \
                 size; --rate-estimation off stops it, and with it the kernel's counters"
            );
        }
    }

    /// Plans the operations for `scope` (`None`: everything) against the cache and carries
    /// them out.
    async fn plan_and_apply(
        &mut self,
        desired: &Desired,
        scope: &Option<(BTreeSet<ipvs::ServiceKey>, BTreeSet<IpAddr>)>,
        read_now: bool,
        now: std::time::Instant,
    ) -> Result<Applied, ControllerError> {
        let phase = std::time::Instant::now();
        let mut ops = self.plan(desired, scope, now);
        // Whether a real server that is no longer wanted may go now depends on its connections,
        // which the cache does not follow: read them for the virtual servers concerned, and
        // plan again with the fresh counts.
        let retiring: BTreeSet<ipvs::ServiceKey> = ops
            .iter()
            .filter_map(|op| match op {
                Operation::Ipvs(Request::DeleteDestination(k, _)) => Some(*k),
                _ => None,
            })
            .collect();
        if !read_now && !retiring.is_empty() {
            self.refresh_destinations(retiring.into_iter().collect())
                .await?;
            ops = self.plan(desired, scope, now);
        }
        // Recorded before they are created, so that a crash in the middle of the sync leaves
        // none the next run would not know as ipvsd's.
        let created: Vec<ipvs::ServiceKey> = ops
            .iter()
            .filter_map(|op| match op {
                Operation::Ipvs(Request::AddService(s))
                    if !self.ownership.managed.contains(&s.key) =>
                {
                    Some(s.key)
                }
                _ => None,
            })
            .collect();
        if !created.is_empty() {
            self.ownership.managed.extend(created);
            self.dataplane.save_owned(&self.ownership.managed).await;
        }
        let plan_time = phase.elapsed();
        let phase = std::time::Instant::now();
        let failed = self.apply(desired, &ops).await;
        if let Some(window) = self.repair.as_mut() {
            window.record(&ops);
        }
        Ok(Applied {
            operations: ops.len(),
            failed,
            plan_time,
            apply_time: phase.elapsed(),
            udp_changed: ops
                .iter()
                .filter_map(conntrack::udp_key_changed_by)
                .collect(),
        })
    }

    /// The operations for `scope` (`None`: everything) against the cached table.
    fn plan(
        &self,
        desired: &Desired,
        scope: &Option<(BTreeSet<ipvs::ServiceKey>, BTreeSet<IpAddr>)>,
        now: std::time::Instant,
    ) -> Vec<Operation> {
        let actual = self.actual.as_ref().expect("read before planning");
        match scope {
            None => plan::plan(desired, actual, &self.ownership, &self.graceful, now),
            Some((keys, addresses)) => plan::plan_keys(
                desired,
                actual,
                &self.ownership,
                &self.graceful,
                now,
                keys,
                addresses,
            ),
        }
    }

    /// Brings the model up to date: rebuilt from everything on the first sync and when the
    /// source had to list everything again, else changed by what the source and the node's
    /// addresses say changed (a sync for draining real servers or the periodic repair
    /// recomputes nothing). `None` while the source is incomplete.
    async fn update_model(&mut self) -> Result<Option<ModelUpdate>, ControllerError> {
        let nodes = self.inputs.node_addresses.borrow().clone();
        let Some(changes) = self.inputs.source.take_changes(self.model.is_none()) else {
            return Ok(None);
        };
        match changes {
            Changes::Full(objects) => {
                // The source's changes are consumed: should the kernel not answer now, the
                // next sync rebuilds again rather than miss them.
                self.model = None;
                self.check_schedulers(objects.services.values().map(|s| &**s))
                    .await?;
                let rss_before_mib = crate::metrics::resident_mib();
                let model = ModelIndex::build(self.config.model.clone(), nodes, &objects);
                let heap = crate::metrics::heap_stats();
                self.metrics.model_computed(ModelComputation::Full);
                info!(
                    services = objects.services.len(),
                    endpoint_slices = objects.endpoint_slices.len(),
                    rss_before_mib,
                    rss_mib = crate::metrics::resident_mib(),
                    heap_mib = heap.map(|h| h.allocated_mib),
                    heap_resident_mib = heap.map(|h| h.resident_mib),
                    "model rebuilt from everything"
                );
                self.model = Some(model);
                Ok(Some(ModelUpdate {
                    rebuilt: true,
                    nodes_changed: false,
                    touched: Touched::default(),
                }))
            }
            Changes::Delta(delta) => {
                let unavailable = match self
                    .check_schedulers(delta.services.values().flatten().map(|s| &**s))
                    .await
                {
                    Ok(unavailable) => unavailable,
                    Err(e) => {
                        self.model = None;
                        return Err(e);
                    }
                };
                let Some(model) = self.model.as_mut() else {
                    // Asked for everything, the source answered with changes: nothing to
                    // apply them to. Ask again at the next sync.
                    error!("the source handed out changes before a full view; waiting for one");
                    return Ok(None);
                };
                let mut touched = Touched::default();
                for name in unavailable {
                    touched.merge(model.scheduler_unavailable(&name));
                }
                touched.merge(model.apply(&delta));
                let nodes_changed = *model.nodes() != nodes;
                touched.merge(model.set_nodes(nodes));
                if touched.recomputed > 0 {
                    self.metrics.model_computed(ModelComputation::Incremental);
                }
                if !delta.is_empty() || nodes_changed {
                    debug!(
                        objects = delta.len(),
                        nodes_changed,
                        recomputed = touched.recomputed,
                        virtual_servers = touched.virtual_servers.len(),
                        addresses = touched.bound_addresses.len(),
                        "model updated"
                    );
                }
                Ok(Some(ModelUpdate {
                    rebuilt: false,
                    nodes_changed,
                    touched,
                }))
            }
        }
    }

    /// Brings ipvsd's nftables table to what `desired` needs: the whole table when `full` or
    /// when its content is unknown, else only the elements that changed: those of the touched
    /// virtual servers and addresses, or after a rebuild of the model the difference of all.
    /// Returns 1 if the transaction failed (nothing of it was applied), else 0.
    async fn sync_netfilter(
        &mut self,
        desired: &Desired,
        full: bool,
        rebuilt: bool,
        touched: &Touched,
    ) -> usize {
        let (transaction, index) = match (self.netfilter.take(), full) {
            (Some(mut index), false) => {
                let changes = if rebuilt {
                    let fresh = ElementIndex::of(desired);
                    let changes = netfilter::diff(&fresh.contents(), &index.contents());
                    index = fresh;
                    changes
                } else {
                    index.update(desired, &touched.virtual_servers, &touched.bound_addresses)
                };
                if changes.is_empty() {
                    self.netfilter = Some(index);
                    return 0;
                }
                (Transaction::Change(changes), index)
            }
            _ => {
                let index = ElementIndex::of(desired);
                self.collect_netfilter_counters().await;
                (Transaction::Replace(index.contents()), index)
            }
        };
        let started = std::time::Instant::now();
        let result = self.dataplane.apply_netfilter(&transaction).await;
        let elapsed = started.elapsed();
        if let Some(window) = self.repair.as_mut() {
            match (&transaction, &result) {
                (Transaction::Change(changes), Ok(())) => {
                    for (set, element) in changes.add.iter().chain(changes.delete.iter()) {
                        window
                            .elements
                            .0
                            .entry(set.to_owned())
                            .or_default()
                            .insert(element.to_owned());
                    }
                }
                _ => window.netfilter_replaced = true,
            }
        }
        match result {
            Ok(()) => {
                self.metrics.observe_netfilter_transaction(elapsed);
                debug!(
                    replace = matches!(transaction, Transaction::Replace(_)),
                    elements = transaction.elements(),
                    elapsed_ms = elapsed.as_millis() as u64,
                    "nftables transaction applied"
                );
                if matches!(transaction, Transaction::Replace(_)) {
                    self.netfilter_counted = Some(BTreeMap::new());
                }
                self.netfilter = Some(index);
                0
            }
            Err(e) => {
                self.metrics.netfilter_failure();
                error!(error = %e, elements = transaction.elements(), "nftables transaction failed; the table is replaced at the next sync");
                self.netfilter = None;
                1
            }
        }
    }

    /// Adds what the table's counters counted to the metrics, just before a replacement resets
    /// them (packets counted between this read and the replacement are lost).
    async fn collect_netfilter_counters(&mut self) {
        if self.netfilter_counted.is_none() {
            // No table of ipvsd's to read (the first sync), or not as it wrote it.
            return;
        }
        match self.dataplane.netfilter_counters().await {
            Ok(counters) => self.count_netfilter_packets(counters),
            Err(e) => warn!(error = %e, "reading the nftables counters"),
        }
    }

    /// Adds to the metrics what the table's counters counted since they were last read.
    fn count_netfilter_packets(&mut self, counters: BTreeMap<String, u64>) {
        let Some(counted) = self.netfilter_counted.as_mut() else {
            return;
        };
        for (name, packets) in counters {
            let seen = counted.insert(name.clone(), packets).unwrap_or(0);
            // Lower than seen: the table was written again by someone else, from 0.
            let new = packets.checked_sub(seen).unwrap_or(packets);
            if new > 0 {
                self.metrics.add_netfilter_packets(&name, new);
            }
        }
    }

    /// Opens, closes and updates the health-check node ports, on the node addresses
    /// `--nodeport-addresses` allows (all of them, through the wildcard address, when unset).
    fn update_health_checks(&mut self, desired: &Desired, nodes: &NodeAddresses) {
        let Some(servers) = self.health_checks.as_mut() else {
            return;
        };
        if self.config.model.nodeport_addresses.is_all() {
            servers.update(&desired.health_checks, None);
        } else {
            let addresses = model::node_port_addresses(nodes, &self.config.model);
            servers.update(&desired.health_checks, Some(&addresses));
        }
    }

    /// Sends the operations: addresses first, so a new virtual server's address exists when
    /// it does, then IPVS, then addresses no longer needed. Returns how many failed.
    async fn apply(&mut self, desired: &Desired, ops: &[Operation]) -> usize {
        let mut failed = self.change_addresses(AddressChange::Bind, ops).await;
        for key in ops.iter().filter_map(Operation::service_key) {
            self.prints.touch(key);
        }
        let actual = self.actual.as_mut().expect("read before apply");
        let results = self.dataplane.apply_ipvs(ops).await;
        for (op, result) in ops.iter().zip(results) {
            match result {
                None => {}
                Some(Ok(())) => apply_to_cache(actual, op),
                Some(Err(e)) => {
                    failed += 1;
                    self.metrics.netlink_error(error_kind(&e));
                    let origin = origin_of(desired, op);
                    error!(operation = %op, service = origin.as_deref().unwrap_or("-"), error = %e, "IPVS operation failed");
                }
            }
        }
        fit_cache(actual, ops);
        failed + self.change_addresses(AddressChange::Unbind, ops).await
    }

    /// Deletes the node's conntrack entries that keep sending datagrams to a real server that
    /// is gone (or to a Service address that had none), for the UDP virtual servers `ops`
    /// changed (see [`crate::conntrack`]). A failure is logged and counted; the sync goes on.
    async fn clean_udp_conntrack(&self, desired: &Desired, keys: &BTreeSet<ipvs::ServiceKey>) {
        if keys.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        let result = async {
            let entries = self.dataplane.udp_conntrack_entries().await?;
            let stale = conntrack::stale_udp_entries(&entries, desired, keys);
            let deleted = self.dataplane.delete_conntrack_entries(&stale).await?;
            Ok::<_, ConntrackError>((entries.len(), stale.len(), deleted))
        }
        .await;
        match result {
            Ok((udp_entries, stale, deleted)) => {
                self.metrics.conntrack_entries_deleted(deleted);
                let elapsed_ms = started.elapsed().as_millis() as u64;
                if deleted > 0 {
                    info!(
                        virtual_servers = keys.len(),
                        udp_entries,
                        stale,
                        deleted,
                        elapsed_ms,
                        "stale UDP conntrack entries deleted"
                    );
                } else {
                    debug!(
                        virtual_servers = keys.len(),
                        udp_entries, stale, deleted, elapsed_ms, "no stale UDP conntrack entries"
                    );
                }
            }
            Err(e) => {
                self.metrics.conntrack_cleanup_failure();
                error!(error = %e, virtual_servers = keys.len(), "cleaning up stale UDP conntrack entries failed");
            }
        }
    }

    /// Carries out the bind (or unbind) operations among `ops` on the dummy interface, all at
    /// once, and keeps the cache in step; returns how many failed.
    async fn change_addresses(&mut self, change: AddressChange, ops: &[Operation]) -> usize {
        let (ops, addresses): (Vec<&Operation>, Vec<IpAddr>) = ops
            .iter()
            .filter_map(|op| match (change, op) {
                (AddressChange::Bind, Operation::BindAddress(a))
                | (AddressChange::Unbind, Operation::UnbindAddress(a)) => Some((op, *a)),
                _ => None,
            })
            .unzip();
        if addresses.is_empty() {
            return 0;
        }
        let outcomes = match change {
            AddressChange::Bind => self.dataplane.bind(&addresses).await,
            AddressChange::Unbind => self.dataplane.unbind(&addresses).await,
        };
        let kind = change.metric_kind();
        let outcomes = match outcomes {
            Ok(o) => o,
            Err(e) => {
                self.metrics.netlink_error(kind);
                self.addresses_failed = true;
                error!(error = %e, count = addresses.len(), "changing the dummy interface's addresses");
                return addresses.len();
            }
        };
        let actual = self.actual.as_mut().expect("read before apply");
        let mut failed = 0;
        for (op, outcome) in ops.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => apply_to_cache(actual, op),
                Err(e) => {
                    failed += 1;
                    self.metrics.netlink_error(kind);
                    self.addresses_failed = true;
                    error!(operation = %op, error = %e, "changing the dummy interface's addresses");
                }
            }
        }
        failed
    }

    /// Records when each real server that is no longer wanted started draining (weight 0), so
    /// plan can enforce the graceful termination timeout; forgets those that are gone or wanted
    /// again.
    /// With `keys`, only those virtual servers are looked at: the others did not change.
    fn track_terminating(
        &mut self,
        desired: &Desired,
        keys: Option<&BTreeSet<ipvs::ServiceKey>>,
        now: std::time::Instant,
    ) {
        let Some(actual) = &self.actual else { return };
        let draining = match keys {
            None => {
                let draining = plan::draining_destinations(desired, actual);
                self.graceful.since.retain(|id, _| draining.contains(id));
                draining
            }
            Some(keys) => {
                let draining = plan::draining_destinations_of(desired, actual, keys);
                self.graceful
                    .since
                    .retain(|id, _| !keys.contains(&id.0) || draining.contains(id));
                draining
            }
        };
        for id in draining {
            self.graceful.since.entry(id).or_insert(now);
        }
    }

    /// Takes in what a repair's read found. The read compared the kernel with the cache's
    /// fingerprints as it went; where they differ the kernel is believed (the cache takes what
    /// was read, or loses what is gone) and the next sync plans those keys — except for what
    /// the syncs changed while it ran, which the cache knows better. The nftables table is
    /// marked for replacement when its listing differs from what it should hold.
    ///
    /// The cache's connection counts are not refreshed here: a sync reads them for the real
    /// servers it retires, and the draining ones are read on their own.
    fn take_repair_read(&mut self, read: KernelRead) -> Result<(), ControllerError> {
        let window = self.repair.take().unwrap_or_else(RepairWindow::new);
        let read_time = window.started.elapsed();
        let comparison = read.ipvs?;
        let mut bound = read.bound_addresses?;
        let (Some(actual), Some(model)) = (self.actual.as_mut(), self.model.as_ref()) else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        for address in &window.addresses {
            if actual.bound_addresses.contains(address) {
                bound.insert(*address);
            } else {
                bound.remove(address);
            }
        }
        let mut drift = Drift::default();
        for (key, read) in comparison.differing {
            if window.virtual_servers.contains(&key)
                || actual
                    .services
                    .get(&key)
                    .is_some_and(|cached| cached.settings_eq(&read))
            {
                continue;
            }
            drift.virtual_servers.insert(key);
            self.prints.touch(key);
            actual.services.insert(key, read);
        }
        let gone: Vec<ipvs::ServiceKey> = actual
            .services
            .keys()
            .filter(|key| {
                !comparison.counters.contains_key(key) && !window.virtual_servers.contains(key)
            })
            .copied()
            .collect();
        for key in gone {
            self.prints.touch(key);
            actual.services.remove(&key);
            drift.virtual_servers.insert(key);
        }
        drift
            .addresses
            .extend(bound.symmetric_difference(&actual.bound_addresses));
        actual.bound_addresses = bound;
        let compare_time = started.elapsed();
        let phase = std::time::Instant::now();
        let read_count = comparison.counters.len();
        let paused = comparison.paused;
        self.publish_traffic(model.desired(), &comparison.counters);
        self.report_undecodable(&comparison.undecodable);
        if let Some(actual) = self.actual.as_mut() {
            actual.undecodable = comparison.undecodable;
        }
        let traffic_time = phase.elapsed();
        let phase = std::time::Instant::now();
        let mut sets_compared = 0;
        let netfilter = match (read.netfilter, &self.netfilter) {
            (_, None) => Vec::new(),
            _ if window.netfilter_replaced => Vec::new(),
            (Ok(check), Some(index)) => {
                sets_compared = check.elements.0.len();
                let mut differences = check.rule_differences;
                differences.extend(netfilter::listing::element_differences(
                    &check.elements,
                    index,
                    &window.elements,
                    &check.agreeing,
                ));
                self.count_netfilter_packets(check.counters);
                differences
            }
            // nft answered that it could not list the table (it is gone, or not a table
            // ipvsd can read): that is a difference.
            (Err(e @ crate::dataplane::nftables::NftablesError::Refused { .. }), Some(_)) => {
                vec![format!("listing the table: {e}")]
            }
            // No answer says nothing about the table: replacing it would cost a whole
            // transaction on a node slow enough to time out. The next repair lists it again.
            (Err(e), Some(_)) => {
                warn!(error = %e, "could not list ipvsd's nftables table; it is checked again at the next repair");
                Vec::new()
            }
        };
        let netfilter_time = phase.elapsed();
        if !netfilter.is_empty() {
            warn!(differences = ?netfilter, "ipvsd's nftables table is not what it should be; it is replaced");
            self.netfilter = None;
        }
        if !drift.virtual_servers.is_empty() || !drift.addresses.is_empty() {
            info!(
                virtual_servers = drift.virtual_servers.len(),
                addresses = drift.addresses.len(),
                "the repair found rules changed behind ipvsd's back; putting them back"
            );
        }
        let heap = crate::metrics::heap_stats();
        info!(
            virtual_servers = read_count,
            changed_meanwhile = window.virtual_servers.len(),
            drifted = self.drift.virtual_servers.len() + drift.virtual_servers.len(),
            fingerprint_ms = window.fingerprint_time.as_millis() as u64,
            read_ms = read_time.as_millis() as u64,
            paused_ms = paused.as_millis() as u64,
            compare_ms = compare_time.as_millis() as u64,
            traffic_ms = traffic_time.as_millis() as u64,
            netfilter_ms = netfilter_time.as_millis() as u64,
            sets_compared,
            rss_mib = crate::metrics::resident_mib(),
            heap_mib = heap.map(|h| h.allocated_mib),
            heap_resident_mib = heap.map(|h| h.resident_mib),
            "repair: kernel read beside the syncs and compared with the cache"
        );
        self.drift.virtual_servers.extend(drift.virtual_servers);
        self.drift.addresses.extend(drift.addresses);
        Ok(())
    }

    /// Reads the connection counts of the virtual servers that have draining real servers.
    async fn refresh_terminating(&mut self) -> Result<(), ControllerError> {
        let keys: BTreeSet<ipvs::ServiceKey> =
            self.graceful.since.keys().map(|(k, _, _)| *k).collect();
        self.refresh_destinations(keys.into_iter().collect()).await
    }

    /// Reads the destinations of some virtual servers into the cache.
    async fn refresh_destinations(
        &mut self,
        keys: Vec<ipvs::ServiceKey>,
    ) -> Result<(), ControllerError> {
        let read = self.dataplane.read_destinations(&keys).await?;
        if let Some(window) = self.repair.as_mut() {
            window.virtual_servers.extend(keys.iter().copied());
        }
        for key in &keys {
            self.prints.touch(*key);
        }
        if let Some(actual) = self.actual.as_mut() {
            for (key, destinations) in read {
                if let Some(service) = actual.services.get_mut(&key) {
                    service.destinations = destinations.iter().map(Into::into).collect();
                }
            }
        }
        Ok(())
    }

    /// Asks the kernel, once per name, about the schedulers Services ask for, so that the model
    /// gives a Service asking for a missing one the default instead.
    /// Returns the names newly found missing.
    async fn check_schedulers(
        &mut self,
        services: impl IntoIterator<Item = &k8s_openapi::api::core::v1::Service>,
    ) -> Result<Vec<String>, ControllerError> {
        let mut unavailable = Vec::new();
        for name in model::requested_schedulers(services) {
            if self.schedulers.contains_key(&name) {
                continue;
            }
            let available = self.dataplane.scheduler_available(&name).await?;
            if !available {
                warn!(scheduler = %name, "the kernel has no such scheduler; Services asking for it get the default");
                self.config
                    .model
                    .unavailable_schedulers
                    .insert(name.clone());
                unavailable.push(name.clone());
            }
            self.schedulers.insert(name, available);
        }
        Ok(unavailable)
    }

    /// Warns once about each table entry that cannot be read (left alone, as another
    /// program's), and counts them.
    fn report_undecodable(&mut self, entries: &[ipvs::Undecodable]) {
        let current: BTreeSet<String> = entries.iter().map(|e| e.to_string()).collect();
        for entry in current.difference(&self.undecodable_seen) {
            warn!(entry = %entry, "an IPVS table entry ipvsd cannot read; it is left alone, and so is the virtual server holding it");
        }
        self.metrics.set_undecodable_entries(entries.len());
        self.undecodable_seen = current;
    }

    fn change_seen(&mut self) {
        let now = std::time::Instant::now();
        self.health.change_seen(now);
        self.pending_since.get_or_insert(now);
    }

    fn log_new_warnings(&mut self, desired: &Desired) {
        let current: BTreeSet<String> = desired.warnings.iter().cloned().collect();
        for w in current.difference(&self.warnings) {
            warn!(problem = %w, "skipped part of a Service");
        }
        self.warnings = current;
    }

    fn publish_counts(&self, model: &ModelIndex) {
        let desired = model.desired();
        self.metrics.set_counts(
            model.service_count(),
            desired.virtual_servers.len(),
            model.real_servers(),
            desired.bound_addresses.len(),
        );
    }

    fn publish_traffic(
        &self,
        desired: &Desired,
        counters: &std::collections::BTreeMap<ipvs::ServiceKey, ipvs::Stats>,
    ) {
        // Both sorted by key: one walk over the two, no lookups (at 30,000 virtual servers the
        // lookups were most of the 60-90 ms this took the sync loop in the test bed's VM).
        let mut counters = counters.iter().peekable();
        let mut traffic = Vec::with_capacity(desired.virtual_servers.len());
        for (key, vs) in &desired.virtual_servers {
            while counters.next_if(|(k, _)| *k < key).is_some() {}
            if let Some((_, stats)) = counters.next_if(|(k, _)| *k == key) {
                traffic.push((*key, Arc::clone(&vs.origin).into(), *stats));
            }
        }
        // Building the traffic table and freeing the old one (30,000 rows at 10,000
        // Services: a few milliseconds on a host, more in a slow VM) stays off the sync loop.
        // (Publications are a sync period apart, so they do not overtake each other.)
        let metrics = Arc::clone(&self.metrics);
        tokio::task::spawn_blocking(move || metrics.set_traffic(&traffic));
    }
}

/// Which address operations [`Controller::change_addresses`] carries out.
#[derive(Debug, Clone, Copy)]
enum AddressChange {
    Bind,
    Unbind,
}

impl AddressChange {
    fn metric_kind(self) -> &'static str {
        match self {
            AddressChange::Bind => "bind",
            AddressChange::Unbind => "unbind",
        }
    }
}

fn retry_delay(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(5)).min(MAX_RETRY)
}

/// The metric label of an IPVS error.
fn error_kind(e: &ipvs::Error) -> &'static str {
    match e {
        ipvs::Error::IpvsUnavailable => "unavailable",
        ipvs::Error::NotPermitted { .. } => "not_permitted",
        ipvs::Error::AlreadyExists { .. } => "already_exists",
        ipvs::Error::NotFound { .. } => "not_found",
        ipvs::Error::InvalidArgument { .. } => "invalid_argument",
        ipvs::Error::Kernel { .. } => "kernel",
        ipvs::Error::Decode { .. } => "decode",
        _ => "io",
    }
}

/// The Service an operation is for, to name it in errors.
fn origin_of(desired: &Desired, op: &Operation) -> Option<String> {
    let key = op.service_key()?;
    desired
        .virtual_servers
        .get(&key)
        .map(|vs| vs.origin.to_string())
}

/// Keeps the cached kernel table in step with an operation the kernel accepted.
pub fn apply_to_cache(actual: &mut Actual, op: &Operation) {
    match op {
        Operation::Ipvs(request) => apply_request_to_cache(actual, request),
        Operation::BindAddress(a) => {
            actual.bound_addresses.insert(*a);
        }
        Operation::UnbindAddress(a) => {
            actual.bound_addresses.remove(a);
        }
    }
}

/// Cuts the destination lists `ops` added to down to their length: lists grown one
/// destination at a time keep up to twice the room they need, which at 300,000 real servers
/// is about 25 MiB of a first sync's cache.
pub fn fit_cache(actual: &mut Actual, ops: &[Operation]) {
    let mut last = None;
    for op in ops {
        if let Operation::Ipvs(Request::AddDestination(key, _)) = op {
            // A plan adds a virtual server's destinations one after another.
            if last == Some(key) {
                continue;
            }
            last = Some(key);
            if let Some(service) = actual.services.get_mut(key) {
                service.destinations.shrink_to_fit();
            }
        }
    }
}

/// Keeps the cached kernel table in step with an IPVS request the kernel accepted. The requests
/// a plan never makes leave the cache alone (the next full read of the kernel catches up).
fn apply_request_to_cache(actual: &mut Actual, request: &Request) {
    match request {
        Request::AddService(s) => {
            actual.services.insert(
                s.key,
                ActualService {
                    service: s.clone(),
                    destinations: Vec::new(),
                },
            );
        }
        Request::UpdateService(s) => {
            if let Some(a) = actual.services.get_mut(&s.key) {
                a.service = s.clone();
            }
        }
        Request::DeleteService(k) => {
            actual.services.remove(k);
        }
        Request::AddDestination(k, d) => {
            if let Some(a) = actual.services.get_mut(k) {
                a.destinations.push(d.into());
            }
        }
        Request::UpdateDestination(k, d) => {
            if let Some(a) = actual.services.get_mut(k) {
                if let Some(old) = a
                    .destinations
                    .iter_mut()
                    .find(|o| o.address == d.address && o.port == d.port)
                {
                    // The kernel keeps counting connections; only the settings changed.
                    *old = ActualDestination {
                        active_connections: old.active_connections,
                        inactive_connections: old.inactive_connections,
                        persistent_connections: old.persistent_connections,
                        ..d.into()
                    };
                }
            }
        }
        Request::DeleteDestination(k, d) => {
            if let Some(a) = actual.services.get_mut(k) {
                a.destinations
                    .retain(|o| !(o.address == d.address && o.port == d.port));
            }
        }
        _ => {}
    }
}
