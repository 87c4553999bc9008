//! Prometheus metrics: how long syncs take, how fast a change reaches the kernel, how much
//! ipvsd programs, how often the kernel refuses, and the traffic each virtual server carries.
//!
//! The traffic series are what kube-proxy never offered: per-Service connection, packet and
//! byte counts read from the kernel's IPVS statistics, labelled with the Service they belong to.

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The content type [`Metrics::encode`] produces (OpenMetrics text, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of one netlink error series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
}

/// Labels of one health-check answer series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CodeLabels {
    code: u16,
}

/// Labels of one nftables counter series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CounterLabels {
    counter: String,
}

/// Labels of the model computation counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ComputationLabels {
    kind: &'static str,
}

/// How the desired rules were computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelComputation {
    /// From every Service and EndpointSlice (the first sync, after the source listed again).
    Full,
    /// For the Services that changed.
    Incremental,
}

impl ModelComputation {
    fn label(self) -> &'static str {
        match self {
            ModelComputation::Full => "full",
            ModelComputation::Incremental => "incremental",
        }
    }
}

/// One virtual server's traffic as the kernel last reported it: a row of [`Traffic`].
#[derive(Debug)]
struct VirtualServerTraffic {
    key: ipvs::ServiceKey,
    /// `namespace/name:port` of the Service the virtual server implements, shared by the
    /// Service port's virtual servers (its cluster IP, node ports, load-balancer addresses).
    service: ServiceLabel,
    connections: u64,
    packets_in: u64,
    packets_out: u64,
    bytes_in: u64,
    bytes_out: u64,
}

/// The `service` label of a traffic row: the name of a Service port, written when a scrape
/// encodes it. The model's [`ServiceRef`](crate::model::ServiceRef) is taken as it is, shared
/// by the Service port's virtual servers: publishing the traffic of 30,000 virtual servers then
/// formats no name on the sync loop (that took most of a second in a slow VM).
#[derive(Clone)]
pub struct ServiceLabel(Arc<dyn fmt::Display + Send + Sync>);

impl fmt::Display for ServiceLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ServiceLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.to_string())
    }
}

impl From<Arc<crate::model::ServiceRef>> for ServiceLabel {
    fn from(service: Arc<crate::model::ServiceRef>) -> ServiceLabel {
        ServiceLabel(service)
    }
}

impl From<String> for ServiceLabel {
    fn from(name: String) -> ServiceLabel {
        ServiceLabel(Arc::new(name))
    }
}

impl From<&str> for ServiceLabel {
    fn from(name: &str) -> ServiceLabel {
        ServiceLabel(Arc::new(name.to_string()))
    }
}

/// One traffic family: its name, help text (with the full stop the registry adds to the help
/// of the metrics it holds, which a collector must write itself), and the row's counter.
struct TrafficFamily {
    name: &'static str,
    help: &'static str,
    value: fn(&VirtualServerTraffic) -> u64,
}

/// The traffic families, in the order they are encoded (the order of their registration when
/// they were `Family`s, which scrapes kept).
const TRAFFIC_FAMILIES: [TrafficFamily; 5] = [
    TrafficFamily {
        name: "virtual_server_connections",
        help: "Connections the kernel scheduled to this virtual server.",
        value: |vs| vs.connections,
    },
    TrafficFamily {
        name: "virtual_server_packets_in",
        help: "Packets received by this virtual server.",
        value: |vs| vs.packets_in,
    },
    TrafficFamily {
        name: "virtual_server_packets_out",
        help: "Packets sent by this virtual server.",
        value: |vs| vs.packets_out,
    },
    TrafficFamily {
        name: "virtual_server_bytes_in",
        help: "Bytes received by this virtual server.",
        value: |vs| vs.bytes_in,
    },
    TrafficFamily {
        name: "virtual_server_bytes_out",
        help: "Bytes sent by this virtual server.",
        value: |vs| vs.bytes_out,
    },
];

/// The per-virtual-server traffic series, kept as one table and encoded at scrape time.
///
/// Five `Family<labels, Counter>` held a hash table of 30,000 owned label sets each at 10,000
/// Services (42 MiB in `examples/profile_memory`); the table holds each virtual server once,
/// with the five numbers the kernel gave (under 3 MiB), and the label values are written from
/// it while encoding.
#[derive(Default)]
struct Traffic {
    /// Replaced whole by [`Metrics::set_traffic`]; a scrape encodes the table it took, so it
    /// sees either the old set or the new one, and neither waits for the other beyond the
    /// swap of a pointer.
    table: Mutex<Arc<[VirtualServerTraffic]>>,
}

impl Traffic {
    /// At least the length of the text [`Collector::encode`] writes for the current table,
    /// and no more than a few dozen bytes over: room for a scrape taken at once when there is
    /// no earlier one to size it from.
    fn text_len_bound(&self) -> usize {
        // A series line beside its family's name, its label values and its counter:
        // `ipvsd_`, `_total`, `{protocol="`, `",address="`, `",port="`, `",service="`, `"} `
        // and a newline.
        const LINE: usize = 6 + 6 + 11 + 11 + 8 + 11 + 3 + 1;
        // A family's `# HELP` and `# TYPE` lines, beside its name (twice) and help.
        const HEADERS: usize = 40;
        let table = Arc::clone(&self.table());
        let labels: Vec<usize> = table
            .iter()
            .map(|vs| {
                let [protocol, address, port] = key_labels(&vs.key);
                let (protocol, address, port) = (
                    displayed_len(protocol),
                    displayed_len(address),
                    displayed_len(port),
                );
                protocol + address + port + displayed_len(&vs.service)
            })
            .collect();
        TRAFFIC_FAMILIES
            .iter()
            .map(|f| {
                let lines: usize = table
                    .iter()
                    .zip(&labels)
                    .map(|(vs, labels)| LINE + f.name.len() + labels + displayed_len((f.value)(vs)))
                    .sum();
                HEADERS + 2 * f.name.len() + f.help.len() + lines
            })
            .sum()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Arc<[VirtualServerTraffic]>> {
        // Only a pointer is read or swapped under the lock; a poisoned one still holds a
        // whole table.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for Traffic {
    // A count, not 30,000 rows, in a debug print of the registry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Traffic")
            .field("virtual_servers", &self.table().len())
            .finish()
    }
}

impl Collector for Traffic {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let table = Arc::clone(&self.table());
        // The registry leaves out an empty family, headers included; so do we.
        if table.is_empty() {
            return Ok(());
        }
        for TrafficFamily { name, help, value } in TRAFFIC_FAMILIES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for vs in table.iter() {
                let labels = VirtualServerLabels(vs);
                let series = family.encode_family(&labels)?;
                ConstCounter::new(value(vs)).encode(series)?;
            }
        }
        Ok(())
    }
}

/// Labels of one virtual server's traffic series, written from its row without building
/// strings:
/// - `protocol`: `tcp`, `udp`, `sctp`, `proto-N`, or `fwmark` for a firewall-mark service;
/// - `address`: the virtual address, or the mark for a firewall-mark service;
/// - `port`: the virtual port; empty for a firewall-mark service;
/// - `service`: `namespace/name:port` of the Service the virtual server implements.
struct VirtualServerLabels<'a>(&'a VirtualServerTraffic);

impl EncodeLabelSet for VirtualServerLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        let vs = self.0;
        let [protocol, address, port] = key_labels(&vs.key);
        encode_label(encoder, "protocol", protocol)?;
        encode_label(encoder, "address", address)?;
        encode_label(encoder, "port", port)?;
        encode_label(encoder, "service", &vs.service)
    }
}

/// The values of a virtual server's `protocol`, `address` and `port` labels, in that order:
/// one place that says what they are, for the text and for the room taken for it.
fn key_labels(key: &ipvs::ServiceKey) -> [KeyLabel; 3] {
    match *key {
        ipvs::ServiceKey::Addr {
            address,
            protocol,
            port,
        } => [
            KeyLabel::Protocol(protocol),
            KeyLabel::Address(address),
            KeyLabel::Number(port.into()),
        ],
        ipvs::ServiceKey::FwMark { mark, .. } => [
            KeyLabel::Text("fwmark"),
            KeyLabel::Number(mark),
            KeyLabel::Text(""),
        ],
    }
}

/// One label value of [`key_labels`], written by its `Display`.
enum KeyLabel {
    Protocol(ipvs::Protocol),
    Address(std::net::IpAddr),
    Number(u32),
    Text(&'static str),
}

impl fmt::Display for KeyLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyLabel::Protocol(protocol) => protocol.fmt(f),
            KeyLabel::Address(address) => address.fmt(f),
            KeyLabel::Number(number) => number.fmt(f),
            KeyLabel::Text(text) => f.write_str(text),
        }
    }
}

/// The length of `value`'s `Display` form, written nowhere.
fn displayed_len(value: impl fmt::Display) -> usize {
    struct Count(usize);
    impl fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut count = Count(0);
    // Counting never fails; a `Display` that did would leave the count short, which only
    // makes the room taken for a scrape smaller.
    let _ = write!(count, "{value}");
    count.0
}

/// Writes label `name` with `value` as its `Display` form, as `to_string()` would give it.
fn encode_label(
    encoder: &mut LabelSetEncoder,
    name: &str,
    value: impl fmt::Display,
) -> Result<(), fmt::Error> {
    let mut label = encoder.encode_label();
    let mut key = label.encode_label_key()?;
    key.write_str(name)?;
    let mut value_encoder = key.encode_label_value()?;
    write!(value_encoder, "{value}")?;
    value_encoder.finish()
}

/// All of ipvsd's metrics, shared as `Arc<Metrics>` between the sync loop and the HTTP server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sync_duration: Histogram,
    programming_latency: Histogram,
    services: Gauge,
    virtual_servers: Gauge,
    real_servers: Gauge,
    bound_addresses: Gauge,
    undecodable_entries: Gauge,
    netlink_errors: Family<ErrorLabels, Counter>,
    netfilter_duration: Histogram,
    netfilter_failures: Counter,
    health_check_requests: Family<CodeLabels, Counter>,
    netfilter_packets: Family<CounterLabels, Counter>,
    model_computations: Family<ComputationLabels, Counter>,
    conntrack_deleted: Counter,
    conntrack_failures: Counter,
    node_address_overruns: Counter,
    /// Also registered in `registry`, as the collector of the traffic series.
    traffic: Arc<Traffic>,
    /// The length of the last scrape's text: room for the next is taken at once.
    last_scrape: std::sync::atomic::AtomicUsize,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every series, all prefixed `ipvsd_`.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ipvsd");

        // A sync is a netlink dump plus a handful of writes: milliseconds normally, seconds
        // when something is very wrong (kube-proxy's were measured in minutes at scale).
        let sync_duration = Histogram::new([
            0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]);
        registry.register(
            "sync_duration_seconds",
            "Time one sync of the kernel's IPVS table took",
            sync_duration.clone(),
        );
        // From a change in the cluster (the object's update time) to its rules in the kernel;
        // dominated by watch delivery, so the buckets reach minutes.
        let programming_latency = Histogram::new([
            0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
        ]);
        registry.register(
            "network_programming_duration_seconds",
            "Time from a Service or EndpointSlice change to its rules being in the kernel",
            programming_latency.clone(),
        );

        let services = Gauge::default();
        registry.register("services", "Services ipvsd programs", services.clone());
        let undecodable_entries = Gauge::default();
        registry.register(
            "ipvs_undecodable_entries",
            "Entries of the kernel's IPVS table ipvsd cannot read and leaves alone, at the last full read",
            undecodable_entries.clone(),
        );
        let virtual_servers = Gauge::default();
        registry.register(
            "virtual_servers",
            "IPVS virtual servers ipvsd keeps in the kernel",
            virtual_servers.clone(),
        );
        let real_servers = Gauge::default();
        registry.register(
            "real_servers",
            "IPVS real servers ipvsd keeps in the kernel, over all virtual servers",
            real_servers.clone(),
        );
        let bound_addresses = Gauge::default();
        registry.register(
            "bound_addresses",
            "Service addresses bound to the local interface",
            bound_addresses.clone(),
        );
        let netlink_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "netlink_errors",
            "Netlink requests the kernel refused or that failed, by kind",
            netlink_errors.clone(),
        );

        // One `nft` run: a few milliseconds for a change, longer for a whole table.
        let netfilter_duration = Histogram::new([
            0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "nftables_transaction_duration_seconds",
            "Time one transaction on ipvsd's nftables table took, applied ones only",
            netfilter_duration.clone(),
        );
        let netfilter_failures = Counter::default();
        registry.register(
            "nftables_transaction_failures",
            "Transactions on ipvsd's nftables table that failed (nothing of them was applied)",
            netfilter_failures.clone(),
        );

        let health_check_requests = Family::<CodeLabels, Counter>::default();
        registry.register(
            "health_check_requests",
            "Requests to health-check node ports, by the status answered (200 or 503)",
            health_check_requests.clone(),
        );
        let conntrack_deleted = Counter::default();
        registry.register(
            "conntrack_entries_deleted",
            "Stale UDP conntrack entries deleted after their virtual server's real servers changed",
            conntrack_deleted.clone(),
        );
        let conntrack_failures = Counter::default();
        registry.register(
            "conntrack_cleanup_failures",
            "Cleanups of stale UDP conntrack entries that failed (dump or delete refused or lost)",
            conntrack_failures.clone(),
        );

        let node_address_overruns = Counter::default();
        registry.register(
            "node_address_notification_overruns",
            "Times the socket following node address and route changes overran (ENOBUFS) and they were listed again",
            node_address_overruns.clone(),
        );

        let netfilter_packets = Family::<CounterLabels, Counter>::default();
        registry.register(
            "nftables_packets",
            "Packets ipvsd's nftables rules rejected or dropped, by counter: port-filter-rejected, source-range-dropped, source-range-refused (read at each repair and before each replacement of the table)",
            netfilter_packets.clone(),
        );

        let model_computations = Family::<ComputationLabels, Counter>::default();
        registry.register(
            "model_computations",
            "Times the desired rules were computed: from every Service (kind=full), or for the Services a change concerns (kind=incremental)",
            model_computations.clone(),
        );

        let traffic = Arc::new(Traffic::default());
        registry.register_collector(Box::new(Arc::clone(&traffic)));

        Metrics {
            registry,
            sync_duration,
            programming_latency,
            services,
            virtual_servers,
            real_servers,
            bound_addresses,
            undecodable_entries,
            netlink_errors,
            node_address_overruns,
            netfilter_duration,
            netfilter_failures,
            health_check_requests,
            netfilter_packets,
            model_computations,
            conntrack_deleted,
            conntrack_failures,
            traffic,
            last_scrape: Default::default(),
        }
    }

    /// Records how long one sync took (`ipvsd_sync_duration_seconds`).
    pub fn observe_sync(&self, duration: Duration) {
        self.sync_duration.observe(duration.as_secs_f64());
    }

    /// Records how long a change took to reach the kernel
    /// (`ipvsd_network_programming_duration_seconds`).
    pub fn observe_programming_latency(&self, latency: Duration) {
        self.programming_latency.observe(latency.as_secs_f64());
    }

    /// Records how long an applied nftables transaction took
    /// (`ipvsd_nftables_transaction_duration_seconds`).
    pub fn observe_netfilter_transaction(&self, duration: Duration) {
        self.netfilter_duration.observe(duration.as_secs_f64());
    }

    /// Counts a failed nftables transaction (`ipvsd_nftables_transaction_failures_total`).
    pub fn netfilter_failure(&self) {
        self.netfilter_failures.inc();
    }

    /// Counts one request to a health-check node port by the status answered
    /// (`ipvsd_health_check_requests_total{code}`).
    pub fn health_check_request(&self, code: u16) {
        self.health_check_requests
            .get_or_create(&CodeLabels { code })
            .inc();
    }

    /// Counts deleted stale UDP conntrack entries (`ipvsd_conntrack_entries_deleted_total`).
    pub fn conntrack_entries_deleted(&self, count: usize) {
        self.conntrack_deleted
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }

    /// Counts a failed conntrack cleanup (`ipvsd_conntrack_cleanup_failures_total`).
    pub fn conntrack_cleanup_failure(&self) {
        self.conntrack_failures.inc();
    }

    /// The counter of notification overruns the node address watcher adds to
    /// (`ipvsd_node_address_notification_overruns_total`).
    pub fn node_address_overruns(&self) -> Counter {
        self.node_address_overruns.clone()
    }

    /// Adds packets counted by the named counter `counter` of ipvsd's nftables table
    /// (`ipvsd_nftables_packets_total{counter}`).
    pub fn add_netfilter_packets(&self, counter: &str, packets: u64) {
        self.netfilter_packets
            .get_or_create(&CounterLabels {
                counter: counter.to_owned(),
            })
            .inc_by(packets);
    }

    /// Counts one computation of the desired rules (`ipvsd_model_computations_total{kind}`).
    pub fn model_computed(&self, kind: ModelComputation) {
        self.model_computations
            .get_or_create(&ComputationLabels { kind: kind.label() })
            .inc();
    }

    /// Sets the sizes of what the last sync programmed.
    pub fn set_counts(
        &self,
        services: usize,
        virtual_servers: usize,
        real_servers: usize,
        bound_addresses: usize,
    ) {
        self.services.set(gauge_value(services));
        self.virtual_servers.set(gauge_value(virtual_servers));
        self.real_servers.set(gauge_value(real_servers));
        self.bound_addresses.set(gauge_value(bound_addresses));
    }

    /// Sets how many entries of the kernel's IPVS table could not be read.
    pub fn set_undecodable_entries(&self, count: usize) {
        self.undecodable_entries.set(gauge_value(count));
    }

    /// Counts one failed netlink request (`ipvsd_netlink_errors_total{kind}`), e.g. `kind`
    /// `"new_service"` or `"dump"`.
    pub fn netlink_error(&self, kind: &str) {
        self.netlink_errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Replaces the traffic series with the kernel's current counters, one entry per virtual
    /// server: its key, the `namespace/name:port` of its Service, and its statistics.
    ///
    /// The whole set is replaced so that virtual servers that vanished stop being reported.
    /// The kernel's numbers are totals since the virtual server was created; a recreated one
    /// starts again from zero, which Prometheus treats as a counter reset.
    ///
    /// Each virtual server is expected once (the caller's come from a map keyed by it): the
    /// table is encoded as given, so a repeated one would be reported twice, where the
    /// families it replaces added the two up.
    pub fn set_traffic(&self, per_vs: &[(ipvs::ServiceKey, ServiceLabel, ipvs::Stats)]) {
        // The table is built before the lock is taken, and the old one dropped after.
        let table: Arc<[VirtualServerTraffic]> = per_vs
            .iter()
            .map(|(key, service, stats)| VirtualServerTraffic {
                key: *key,
                service: service.clone(),
                connections: stats.connections,
                packets_in: stats.packets_in,
                packets_out: stats.packets_out,
                bytes_in: stats.bytes_in,
                bytes_out: stats.bytes_out,
            })
            .collect();
        let old = std::mem::replace(&mut *self.traffic.table(), table);
        drop(old);
    }

    /// Every series in the OpenMetrics text format (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        use std::sync::atomic::Ordering;
        // At 30,000 virtual servers the text is 17.5 MiB; grown by doubling it would take
        // 32 MiB (and both halves while the last copy is made): room for the last length and
        // an eighth more is taken at once instead.
        // The first scrape has no last length: room for what the traffic table can take, and
        // the rest of the series (a few KiB), instead.
        let last = self.last_scrape.load(Ordering::Relaxed);
        let room = match last {
            0 => self.traffic.text_len_bound() + 64 * 1024,
            last => last + last / 8,
        };
        let mut out = String::with_capacity(room);
        // Encoding into a String only fails if a label value cannot be formatted, which
        // none of ours (strings, addresses, numbers) can.
        if let Err(error) = encode(&mut out, &self.registry) {
            tracing::error!(%error, "encoding metrics failed");
        }
        self.last_scrape.store(out.len(), Ordering::Relaxed);
        out
    }
}

fn gauge_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// What the process's allocator reports, in MiB: what its live allocations hold and what it
/// keeps resident for them (the difference is the allocator's own: free space in its pages,
/// freed memory not yet returned, its metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes held by live allocations, in MiB.
    pub allocated_mib: u64,
    /// Bytes of the allocator's pages that are resident, in MiB.
    pub resident_mib: u64,
}

static HEAP_STATS: std::sync::OnceLock<fn() -> Option<HeapStats>> = std::sync::OnceLock::new();

/// Sets where [`heap_stats`] reads from: the binary's allocator (the library does not choose
/// it). The first call wins.
pub fn set_heap_stats(read: fn() -> Option<HeapStats>) {
    let _ = HEAP_STATS.set(read);
}

/// The allocator's figures, for the same logs as [`resident_mib`]: whether the resident size
/// is live data or the allocator's slack. `None` when the binary set no reader.
pub fn heap_stats() -> Option<HeapStats> {
    HEAP_STATS.get().and_then(|read| read())
}

/// The process's resident memory in MiB (`VmRSS` of `/proc/self/status`), for the logs of the
/// syncs that shape it (a full sync, a repair): where the memory of a large node goes, stage by
/// stage. `None` where there is no such file.
pub fn resident_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn mk_key(port: u16) -> ipvs::ServiceKey {
        ipvs::ServiceKey::Addr {
            address: IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)),
            protocol: ipvs::Protocol::Tcp,
            port,
        }
    }

    fn mk_stats(connections: u64) -> ipvs::Stats {
        ipvs::Stats {
            connections,
            packets_in: 11,
            packets_out: 12,
            bytes_in: 1300,
            bytes_out: 1400,
            ..ipvs::Stats::default()
        }
    }

    #[test]
    fn traffic_carries_kernel_totals_and_drops_vanished_servers() {
        let metrics = Metrics::new();
        metrics.set_traffic(&[
            (
                mk_key(53),
                "kube-system/kube-dns:dns-tcp".into(),
                mk_stats(7),
            ),
            (
                mk_key(9153),
                "kube-system/kube-dns:metrics".into(),
                mk_stats(3),
            ),
        ]);
        metrics.set_traffic(&[(
            mk_key(53),
            "kube-system/kube-dns:dns-tcp".into(),
            mk_stats(9),
        )]);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"ipvsd_virtual_server_connections_total{protocol="tcp",address="10.96.0.10",port="53",service="kube-system/kube-dns:dns-tcp"} 9"#
            ),
            "{text}"
        );
        assert!(!text.contains("9153"), "{text}");
    }

    /// The traffic families as the `Family`-based encoding gave them, captured from it for the
    /// three virtual servers of [`traffic_exposition_is_unchanged`]: what scrapers and
    /// dashboards read, down to help text, type, label names and order, and the empty `port`
    /// of a firewall-mark service. Series are sorted within each family, since the families'
    /// hash maps gave them in no fixed order.
    const TRAFFIC_EXPOSITION: &str = r##"# HELP ipvsd_virtual_server_connections Connections the kernel scheduled to this virtual server.
# TYPE ipvsd_virtual_server_connections counter
ipvsd_virtual_server_connections_total{protocol="fwmark",address="16384",port="",service="default/marked:http"} 3
ipvsd_virtual_server_connections_total{protocol="tcp",address="10.96.0.10",port="53",service="kube-system/kube-dns:dns-tcp"} 7
ipvsd_virtual_server_connections_total{protocol="udp",address="fd00::53",port="5353",service="default/mdns:udp"} 2
# HELP ipvsd_virtual_server_packets_in Packets received by this virtual server.
# TYPE ipvsd_virtual_server_packets_in counter
ipvsd_virtual_server_packets_in_total{protocol="fwmark",address="16384",port="",service="default/marked:http"} 31
ipvsd_virtual_server_packets_in_total{protocol="tcp",address="10.96.0.10",port="53",service="kube-system/kube-dns:dns-tcp"} 11
ipvsd_virtual_server_packets_in_total{protocol="udp",address="fd00::53",port="5353",service="default/mdns:udp"} 21
# HELP ipvsd_virtual_server_packets_out Packets sent by this virtual server.
# TYPE ipvsd_virtual_server_packets_out counter
ipvsd_virtual_server_packets_out_total{protocol="fwmark",address="16384",port="",service="default/marked:http"} 32
ipvsd_virtual_server_packets_out_total{protocol="tcp",address="10.96.0.10",port="53",service="kube-system/kube-dns:dns-tcp"} 12
ipvsd_virtual_server_packets_out_total{protocol="udp",address="fd00::53",port="5353",service="default/mdns:udp"} 22
# HELP ipvsd_virtual_server_bytes_in Bytes received by this virtual server.
# TYPE ipvsd_virtual_server_bytes_in counter
ipvsd_virtual_server_bytes_in_total{protocol="fwmark",address="16384",port="",service="default/marked:http"} 3300
ipvsd_virtual_server_bytes_in_total{protocol="tcp",address="10.96.0.10",port="53",service="kube-system/kube-dns:dns-tcp"} 1300
ipvsd_virtual_server_bytes_in_total{protocol="udp",address="fd00::53",port="5353",service="default/mdns:udp"} 2300
# HELP ipvsd_virtual_server_bytes_out Bytes sent by this virtual server.
# TYPE ipvsd_virtual_server_bytes_out counter
ipvsd_virtual_server_bytes_out_total{protocol="fwmark",address="16384",port="",service="default/marked:http"} 3400
ipvsd_virtual_server_bytes_out_total{protocol="tcp",address="10.96.0.10",port="53",service="kube-system/kube-dns:dns-tcp"} 1400
ipvsd_virtual_server_bytes_out_total{protocol="udp",address="fd00::53",port="5353",service="default/mdns:udp"} 2400
# EOF
"##;

    /// From the first traffic series' header to the end (the traffic families are encoded
    /// last), with the series of each family sorted.
    fn traffic_exposition(text: &str) -> String {
        let start = text
            .find("# HELP ipvsd_virtual_server_")
            .unwrap_or_else(|| panic!("no traffic families in\n{text}"));
        let mut out = Vec::new();
        let mut series = Vec::new();
        for line in text[start..].lines() {
            if line.starts_with('#') {
                series.sort_unstable();
                out.append(&mut series);
                out.push(line);
            } else {
                series.push(line);
            }
        }
        series.sort_unstable();
        out.append(&mut series);
        out.iter().map(|line| format!("{line}\n")).collect()
    }

    #[test]
    fn traffic_exposition_is_unchanged() {
        let metrics = Metrics::new();
        metrics.set_traffic(&[
            (
                mk_key(53),
                "kube-system/kube-dns:dns-tcp".into(),
                ipvs::Stats {
                    cps: 99,
                    ..mk_stats(7)
                },
            ),
            (
                ipvs::ServiceKey::Addr {
                    address: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x53)),
                    protocol: ipvs::Protocol::Udp,
                    port: 5353,
                },
                "default/mdns:udp".into(),
                ipvs::Stats {
                    connections: 2,
                    packets_in: 21,
                    packets_out: 22,
                    bytes_in: 2300,
                    bytes_out: 2400,
                    bytes_in_rate: 5,
                    ..ipvs::Stats::default()
                },
            ),
            (
                ipvs::ServiceKey::FwMark {
                    mark: 0x4000,
                    family: ipvs::Family::Inet,
                },
                "default/marked:http".into(),
                ipvs::Stats {
                    connections: 3,
                    packets_in: 31,
                    packets_out: 32,
                    bytes_in: 3300,
                    bytes_out: 3400,
                    ..ipvs::Stats::default()
                },
            ),
        ]);
        assert_eq!(traffic_exposition(&metrics.encode()), TRAFFIC_EXPOSITION);

        // With no virtual server the families are left out, headers included.
        metrics.set_traffic(&[]);
        let text = metrics.encode();
        assert!(!text.contains("ipvsd_virtual_server_"), "{text}");
    }

    #[test]
    fn the_traffic_text_fits_its_bound() {
        // The longest of everything: IPv6 addresses, the longest protocol and port, counters
        // at their maximum; and a firewall mark.
        let longest = ipvs::Stats {
            connections: u64::MAX,
            packets_in: u64::MAX,
            packets_out: u64::MAX,
            bytes_in: u64::MAX,
            bytes_out: u64::MAX,
            ..ipvs::Stats::default()
        };
        let rows: Vec<_> = (0..100u16)
            .map(|i| {
                let key = match i % 3 {
                    0 => ipvs::ServiceKey::Addr {
                        address: IpAddr::V6(Ipv6Addr::new(
                            0xfd00, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, i,
                        )),
                        protocol: ipvs::Protocol::Other(255),
                        port: 65535 - i,
                    },
                    1 => ipvs::ServiceKey::FwMark {
                        mark: u32::MAX - u32::from(i),
                        family: ipvs::Family::Inet6,
                    },
                    _ => mk_key(i),
                };
                let service = format!("namespace-{i}/{}:port-name", "n".repeat(usize::from(i)));
                (key, service.into(), longest)
            })
            .collect();
        let metrics = Metrics::new();
        let mut registry = Registry::with_prefix("ipvsd");
        registry.register_collector(Box::new(Arc::clone(&metrics.traffic)));
        // The text is no longer than the bound, and the bound no more than a few dozen bytes
        // per family over.
        let fits = |rows: &[(ipvs::ServiceKey, ServiceLabel, ipvs::Stats)]| {
            metrics.set_traffic(rows);
            let mut traffic = String::new();
            encode(&mut traffic, &registry).unwrap();
            let bound = metrics.traffic.text_len_bound();
            assert!(traffic.len() <= bound, "{} > {bound}", traffic.len());
            assert!(
                bound - traffic.len() <= 5 * 40,
                "{bound} vs {}",
                traffic.len()
            );
        };
        fits(&rows);
        // Short values too: IPv4, small counters.
        let rows: Vec<_> = (1..=100)
            .map(|port| (mk_key(port), "ns/svc:p".into(), mk_stats(u64::from(port))))
            .collect();
        fits(&rows);
    }

    #[test]
    fn a_scrape_sees_one_whole_traffic_table() {
        let metrics = Arc::new(Metrics::new());
        let table = |connections: u64| -> Vec<_> {
            (1..=200)
                .map(|port| (mk_key(port), "ns/svc:p".into(), mk_stats(connections)))
                .collect()
        };
        let (first, second) = (table(1), table(2));
        metrics.set_traffic(&first);
        let writer = {
            let metrics = Arc::clone(&metrics);
            std::thread::spawn(move || {
                for _ in 0..200 {
                    metrics.set_traffic(&second);
                    metrics.set_traffic(&first);
                }
            })
        };
        for _ in 0..50 {
            let text = metrics.encode();
            let counts: Vec<&str> = text
                .lines()
                .filter(|line| line.starts_with("ipvsd_virtual_server_connections_total"))
                .filter_map(|line| line.rsplit(' ').next())
                .collect();
            assert_eq!(counts.len(), 200, "{text}");
            assert!(counts.iter().all(|c| *c == counts[0]), "{counts:?}");
        }
        writer.join().unwrap();
    }

    #[test]
    fn a_scrape_takes_room_for_about_the_last_ones_length() {
        let metrics = Metrics::new();
        let traffic: Vec<_> = (1..=2000)
            .map(|port| {
                let service = format!("default/web:{port}");
                (mk_key(port), service.into(), mk_stats(1))
            })
            .collect();
        metrics.set_traffic(&traffic);
        let first = metrics.encode();
        let second = metrics.encode();
        assert_eq!(first, second);
        assert!(
            second.capacity() <= second.len() + second.len() / 8,
            "{} bytes of room for {}",
            second.capacity(),
            second.len()
        );
    }

    #[test]
    fn netlink_errors_count_by_kind() {
        let metrics = Metrics::new();
        metrics.netlink_error("new_service");
        metrics.netlink_error("new_service");
        metrics.netlink_error("dump");
        let text = metrics.encode();
        assert!(
            text.contains(r#"ipvsd_netlink_errors_total{kind="new_service"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ipvsd_netlink_errors_total{kind="dump"} 1"#),
            "{text}"
        );
    }
}
