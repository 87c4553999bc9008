//! The sync loop driven against an in-memory kernel: what it reads, what it sends, and when.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipvs::ServiceKey;
use ipvsd::conntrack::{Entry, Tuple, IPPROTO_UDP};
use ipvsd::controller::{apply_to_cache, fit_cache, Config, Controller, Inputs};
use ipvsd::dataplane::conntrack::ConntrackError;
use ipvsd::dataplane::link::LinkError;
use ipvsd::dataplane::nftables::NftablesError;
use ipvsd::dataplane::{
    Dataplane, IpvsComparison, IpvsContents, KernelRead, NetfilterCheck, RepairExpectation,
};
use ipvsd::health::Health;
use ipvsd::metrics::Metrics;
use ipvsd::model::ModelConfig;
use ipvsd::netfilter::{self, SetContents, Transaction};
use ipvsd::node_addresses::NodeAddresses;
use ipvsd::plan::{Actual, Operation, DEFAULT_NODEPORT_RANGE};
use ipvsd::source::{manifest, Changes, ContentLog, Objects, Snapshot, Source};
use k8s_openapi::api::discovery::v1::Endpoint;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{oneshot, watch};

/// The kernel as a table in memory, counting what is asked of it.
#[derive(Default)]
struct Table {
    actual: Actual,
    full_reads: usize,
    /// Reads of the periodic repair, beside the syncs.
    background_reads: usize,
    /// When set, a repair's read, once taken, is handed over only when notified: what the
    /// syncs do meanwhile happens after the read.
    read_gate: Option<Arc<tokio::sync::Notify>>,
    /// Repair reads taken and not yet handed over.
    reads_held: usize,
    destination_reads: usize,
    /// Every operation applied, as ipvsadm would write it, and how many non-empty batches.
    applied: Vec<String>,
    batches: usize,
    /// ipvsd's nftables table: `None` while it does not exist.
    netfilter: Option<SetContents>,
    /// Every nftables transaction applied, in order.
    transactions: Vec<Transaction>,
    /// Refuse this many nftables transactions before accepting again.
    refuse_netfilter: usize,
    /// Listing the nftables table times out, as a slow node's `nft` may.
    listing_times_out: bool,
    /// When set, an nftables transaction waits to be notified before it is applied.
    netfilter_gate: Option<Arc<tokio::sync::Notify>>,
    /// Packets the port filter rejected since the table was last written.
    rejected: u64,
    /// The node's UDP conntrack entries.
    conntrack: Vec<Entry>,
    /// How many times the conntrack entries were dumped.
    conntrack_dumps: usize,
    /// Fail every bind, as with the dummy interface gone.
    refuse_binds: bool,
    /// The record of the virtual servers ipvsd owns, as a restart would find it.
    owned: BTreeSet<ServiceKey>,
}

#[derive(Clone, Default)]
struct FakeKernel(Arc<Mutex<Table>>);

impl FakeKernel {
    fn with<T>(&self, f: impl FnOnce(&mut Table) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }

    /// What the kernel would count for a real server, unseen by the controller until it reads.
    fn set_active_connections(&self, service: &ServiceKey, real_server: &str, count: u32) {
        self.with(|t| {
            let s = t
                .actual
                .services
                .get_mut(service)
                .expect("the virtual server");
            let d = s
                .destinations
                .iter_mut()
                .find(|d| d.address.to_string() == real_server)
                .expect("the real server");
            d.active_connections = count;
        })
    }
}

impl Dataplane for FakeKernel {
    async fn read_services(&self) -> Result<IpvsContents, ipvs::Error> {
        Ok(self.with(|t| {
            t.full_reads += 1;
            IpvsContents {
                services: t.actual.services.clone(),
                undecodable: t.actual.undecodable.clone(),
            }
        }))
    }

    fn read_in_background(
        &self,
        expected: RepairExpectation,
    ) -> impl std::future::Future<Output = KernelRead> + Send + 'static {
        let kernel = self.clone();
        async move {
            let (read, gate) = kernel.with(|t| {
                t.background_reads += 1;
                let netfilter = match &t.netfilter {
                    _ if t.listing_times_out => Err(NftablesError::TimedOut(Duration::ZERO)),
                    Some(elements) => Ok({
                        let mut elements = elements.clone();
                        let agreeing =
                            netfilter::listing::take_agreeing(&mut elements, &expected.sets);
                        NetfilterCheck {
                            elements,
                            agreeing,
                            rule_differences: Vec::new(),
                            counters: [("port-filter-rejected".to_string(), t.rejected)].into(),
                        }
                    }),
                    // What nft says of a table that is not there.
                    None => Err(NftablesError::Refused {
                        status: std::os::unix::process::ExitStatusExt::from_raw(256),
                        stderr: "Error: No such file or directory".into(),
                    }),
                };
                let read = KernelRead {
                    ipvs: Ok(IpvsComparison::of(
                        IpvsContents {
                            services: t.actual.services.clone(),
                            undecodable: t.actual.undecodable.clone(),
                        },
                        &expected.virtual_servers,
                    )),
                    bound_addresses: Ok(t.actual.bound_addresses.clone()),
                    netfilter,
                };
                if t.read_gate.is_some() {
                    t.reads_held += 1;
                }
                (read, t.read_gate.clone())
            });
            if let Some(gate) = gate {
                gate.notified().await;
                kernel.with(|t| t.reads_held -= 1);
            }
            read
        }
    }

    async fn read_destinations(
        &self,
        keys: &[ServiceKey],
    ) -> Result<Vec<(ServiceKey, Vec<ipvs::Destination>)>, ipvs::Error> {
        Ok(self.with(|t| {
            t.destination_reads += 1;
            keys.iter()
                .map(|k| {
                    let d = t
                        .actual
                        .services
                        .get(k)
                        .map(|s| s.destinations.iter().map(|d| d.to_destination()).collect());
                    (*k, d.unwrap_or_default())
                })
                .collect()
        }))
    }

    async fn load_owned(&self) -> BTreeSet<ServiceKey> {
        self.with(|t| t.owned.clone())
    }

    async fn save_owned(&self, keys: &BTreeSet<ServiceKey>) {
        self.with(|t| t.owned = keys.clone());
    }

    async fn bound_addresses(&self) -> Result<BTreeSet<IpAddr>, LinkError> {
        Ok(self.with(|t| t.actual.bound_addresses.clone()))
    }

    async fn apply_ipvs(&self, ops: &[Operation]) -> Vec<Option<Result<(), ipvs::Error>>> {
        self.with(|t| {
            if ops.iter().any(is_ipvs) {
                t.batches += 1;
            }
            ops.iter()
                .map(|op| {
                    if !is_ipvs(op) {
                        return None;
                    }
                    apply_to_cache(&mut t.actual, op);
                    t.applied.push(op.to_string());
                    Some(Ok(()))
                })
                .collect()
        })
    }

    async fn bind(&self, addresses: &[IpAddr]) -> Result<Vec<Result<(), LinkError>>, LinkError> {
        if self.with(|t| t.refuse_binds) {
            return Ok(addresses
                .iter()
                .map(|_| {
                    Err(LinkError::Vanished {
                        name: "kube-ipvs0".into(),
                    })
                })
                .collect());
        }
        self.with(|t| t.actual.bound_addresses.extend(addresses));
        Ok(addresses.iter().map(|_| Ok(())).collect())
    }

    async fn unbind(&self, addresses: &[IpAddr]) -> Result<Vec<Result<(), LinkError>>, LinkError> {
        self.with(|t| {
            for a in addresses {
                t.actual.bound_addresses.remove(a);
            }
        });
        Ok(addresses.iter().map(|_| Ok(())).collect())
    }

    async fn scheduler_available(&self, name: &str) -> Result<bool, ipvs::Error> {
        Ok(name != "nosuch")
    }

    async fn apply_netfilter(&self, transaction: &Transaction) -> Result<(), NftablesError> {
        if let Some(gate) = self.with(|t| t.netfilter_gate.clone()) {
            gate.notified().await;
        }
        self.with(|t| {
            if t.refuse_netfilter > 0 {
                t.refuse_netfilter -= 1;
                return Err(NftablesError::TimedOut(Duration::ZERO));
            }
            if matches!(transaction, Transaction::Change(_)) {
                assert!(
                    t.netfilter.is_some(),
                    "elements changed in a table that does not exist"
                );
            }
            t.netfilter = Some(transaction.result(t.netfilter.as_ref()));
            t.transactions.push(transaction.clone());
            if matches!(transaction, Transaction::Replace(_)) {
                t.rejected = 0;
            }
            Ok(())
        })
    }

    async fn netfilter_counters(&self) -> Result<BTreeMap<String, u64>, NftablesError> {
        Ok(self.with(|t| [("port-filter-rejected".to_string(), t.rejected)].into()))
    }

    async fn udp_conntrack_entries(&self) -> Result<Vec<Entry>, ConntrackError> {
        Ok(self.with(|t| {
            t.conntrack_dumps += 1;
            t.conntrack.clone()
        }))
    }

    async fn delete_conntrack_entries(&self, entries: &[Entry]) -> Result<usize, ConntrackError> {
        Ok(self.with(|t| {
            let before = t.conntrack.len();
            t.conntrack.retain(|e| !entries.contains(e));
            before - t.conntrack.len()
        }))
    }
}

fn is_ipvs(op: &Operation) -> bool {
    op.request().is_some()
}

/// A source whose content the test sets; what changed is found by comparing each content
/// with the last one handed out.
#[derive(Default)]
struct FakeSource(Mutex<Option<Snapshot>>, Mutex<ContentLog>, AtomicBool);

impl Source for FakeSource {
    fn snapshot(&self) -> Option<Snapshot> {
        self.0.lock().unwrap().clone()
    }

    fn take_changes(&self, full: bool) -> Option<Changes> {
        let mut log = self.1.lock().unwrap();
        if let Some(snapshot) = self.0.lock().unwrap().clone() {
            log.replace(Objects::from_snapshot(snapshot));
        }
        // After a relist a source can only say "everything".
        let relisted = self.2.swap(false, Ordering::SeqCst);
        log.take(full || relisted)
    }
}

fn demo_snapshot() -> Snapshot {
    let loaded = manifest::load(&[PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/demo")]);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.snapshot
}

struct Harness {
    kernel: FakeKernel,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    source: Arc<FakeSource>,
    changes: watch::Sender<u64>,
    _nodes: watch::Sender<NodeAddresses>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    fn start(min_sync_period: Duration, sync_period: Duration) -> Harness {
        Harness::start_on(FakeKernel::default(), min_sync_period, sync_period)
    }

    /// A controller starting on a kernel that already holds rules, as after a restart.
    fn start_on(kernel: FakeKernel, min_sync_period: Duration, sync_period: Duration) -> Harness {
        Harness::start_configured(kernel, min_sync_period, sync_period, |_| {})
    }

    /// [`Harness::start_on`], with `configure` changing the controller's settings.
    fn start_configured(
        kernel: FakeKernel,
        min_sync_period: Duration,
        sync_period: Duration,
        configure: impl FnOnce(&mut Config),
    ) -> Harness {
        let source = Arc::new(FakeSource::default());
        let (changes, changes_rx) = watch::channel(0u64);
        let node: IpAddr = "192.168.50.10".parse().unwrap();
        let (nodes, nodes_rx) = watch::channel(NodeAddresses::from_iter([node]));
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new(sync_period));
        let config = Config {
            model: ModelConfig {
                node_name: "demo-node".into(),
                ..ModelConfig::default()
            },
            nodeport_range: DEFAULT_NODEPORT_RANGE,
            exclude_cidrs: Vec::new(),
            min_sync_period,
            sync_period,
            graceful_termination_timeout: None,
            rate_estimator_warning: None,
        };
        let mut config = config;
        configure(&mut config);
        let controller = Controller::new(
            config,
            Inputs {
                source: source.clone(),
                changes: changes_rx,
                node_addresses: nodes_rx,
            },
            kernel.clone(),
            health.clone(),
            metrics.clone(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(controller.run(async {
            let _ = stopped.await;
        }));
        Harness {
            kernel,
            health,
            metrics,
            source,
            changes,
            _nodes: nodes,
            stop: Some(stop),
            task,
        }
    }

    /// A controller that has synced the demo manifests.
    async fn with_demo(min_sync_period: Duration, sync_period: Duration) -> Harness {
        let h = Harness::start(min_sync_period, sync_period);
        h.change(|s| *s = demo_snapshot());
        h.wait_until("the first sync", |t| {
            t.actual.services.len() == DEMO_VIRTUAL_SERVERS
        })
        .await;
        h
    }

    /// Changes the source's content and says so.
    fn change(&self, f: impl FnOnce(&mut Snapshot)) {
        {
            let mut content = self.source.0.lock().unwrap();
            f(content.get_or_insert_with(Snapshot::default));
        }
        self.changes.send_modify(|g| *g += 1);
    }

    async fn wait_until(&self, what: &str, mut done: impl FnMut(&Table) -> bool) {
        let start = Instant::now();
        while !self.kernel.with(|t| done(t)) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{what}: not within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) -> FakeKernel {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the controller stops on shutdown")
            .unwrap();
        self.kernel
    }
}

fn mk_endpoint(address: &str) -> Endpoint {
    Endpoint {
        addresses: vec![address.to_owned()],
        ..Endpoint::default()
    }
}

/// The endpoints of the EndpointSlice of Service `service` in the snapshot.
fn endpoints_of<'a>(snapshot: &'a mut Snapshot, service: &str) -> &'a mut Vec<Endpoint> {
    let slice = snapshot
        .endpoint_slices
        .iter_mut()
        .find(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                == Some(&service.to_owned())
        })
        .unwrap_or_else(|| panic!("no slice of {service}"));
    slice.endpoints.get_or_insert_with(Vec::new)
}

const DEMO_VIRTUAL_SERVERS: usize = 7;

#[test]
fn the_cache_keeps_destination_lists_at_their_length() {
    let key = ServiceKey::Addr {
        address: "10.96.0.10".parse().unwrap(),
        protocol: ipvs::Protocol::Tcp,
        port: 80,
    };
    let mut ops = vec![Operation::Ipvs(ipvs::Request::AddService(
        ipvs::Service::new(key, "rr"),
    ))];
    for i in 1..=10u8 {
        let address = IpAddr::from([10, 1, 0, i]);
        ops.push(Operation::Ipvs(ipvs::Request::AddDestination(
            key,
            ipvs::Destination::new(address, 8080),
        )));
    }
    let mut actual = Actual::default();
    for op in &ops {
        apply_to_cache(&mut actual, op);
    }
    assert!(actual.services[&key].destinations.capacity() > 10);
    fit_cache(&mut actual, &ops);
    let destinations = &actual.services[&key].destinations;
    assert_eq!(destinations.len(), 10);
    assert_eq!(destinations.capacity(), 10);
}

#[tokio::test]
async fn nothing_is_read_or_written_until_the_source_is_complete() {
    let h = Harness::start(Duration::from_millis(10), Duration::from_secs(3600));
    h.changes.send_modify(|g| *g += 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.kernel.with(|t| {
        assert_eq!(t.full_reads, 0);
        assert!(t.applied.is_empty());
    });
    h.change(|s| *s = demo_snapshot());
    h.wait_until("the first sync", |t| {
        t.actual.services.len() == DEMO_VIRTUAL_SERVERS
    })
    .await;
    let kernel = h.stop().await;
    kernel.with(|t| {
        assert_eq!(t.full_reads, 1, "one read of the kernel, at the first sync");
        assert_eq!(t.actual.bound_addresses.len(), 6, "the six cluster IPs");
    });
}

#[tokio::test]
async fn a_change_sends_only_its_operations_and_reads_nothing() {
    let h = Harness::with_demo(Duration::from_millis(10), Duration::from_secs(3600)).await;
    let before = h.kernel.with(|t| t.applied.len());

    h.change(|s| endpoints_of(s, "dns").push(mk_endpoint("10.244.0.13")));
    h.wait_until("the new endpoint", |t| t.applied.len() > before)
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let kernel = h.stop().await;
    kernel.with(|t| {
        assert_eq!(
            t.applied[before..],
            ["-a -u 10.96.0.53:53 -r 10.244.0.13:5353 -m -w 1".to_owned()]
        );
        assert_eq!(t.full_reads, 1, "a change does not read the whole table");
        assert_eq!(t.destination_reads, 0);
    });
}

#[tokio::test]
async fn a_burst_of_changes_is_applied_in_one_sync() {
    let h = Harness::with_demo(Duration::from_secs(2), Duration::from_secs(3600)).await;
    let batches = h.kernel.with(|t| t.batches);
    // Within the minimum sync period of the first sync: these wait for it to pass, together.
    for n in 20..25 {
        h.change(|s| endpoints_of(s, "dns").push(mk_endpoint(&format!("10.244.0.{n}"))));
    }
    let dns = ServiceKey::Addr {
        address: "10.96.0.53".parse().unwrap(),
        protocol: ipvs::Protocol::Udp,
        port: 53,
    };
    h.wait_until("the burst", |t| {
        t.actual.services[&dns].destinations.len() == 7
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let kernel = h.stop().await;
    kernel.with(|t| assert_eq!(t.batches, batches + 1, "one sync for the burst"));
}

#[tokio::test]
async fn the_kernel_is_read_again_and_repaired_every_sync_period() {
    let h = Harness::with_demo(Duration::from_millis(10), Duration::from_millis(300)).await;
    // Someone deletes a virtual server, unbinds an address and changes a real server's weight
    // behind ipvsd's back.
    let dns = ServiceKey::Addr {
        address: "10.96.0.53".parse().unwrap(),
        protocol: ipvs::Protocol::Udp,
        port: 53,
    };
    let weighted = h.kernel.with(|t| {
        t.actual.services.remove(&dns);
        t.actual
            .bound_addresses
            .remove(&"10.96.0.53".parse().unwrap());
        let (weighted, service) = t
            .actual
            .services
            .iter_mut()
            .find(|(_, s)| !s.destinations.is_empty())
            .expect("a virtual server with real servers");
        service.destinations[0].weight = 7;
        *weighted
    });
    h.wait_until("the repair", |t| {
        t.actual.services.get(&dns).map(|s| s.destinations.len()) == Some(2)
            && t.actual.bound_addresses.len() == 6
            && t.actual.services[&weighted]
                .destinations
                .iter()
                .all(|d| d.weight == 1)
    })
    .await;
    let kernel = h.stop().await;
    kernel.with(|t| {
        assert_eq!(t.full_reads, 1, "only the first sync reads before syncing");
        assert!(t.background_reads >= 1);
    });
}

#[tokio::test]
async fn a_change_during_a_repair_read_is_applied_at_once_and_not_undone_by_it() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let h = Harness::with_demo(Duration::from_millis(10), Duration::from_millis(200)).await;
    h.kernel.with(|t| t.read_gate = Some(gate.clone()));
    h.wait_until("a repair's read taken", |t| t.reads_held == 1)
        .await;
    // While the read is held (it predates the change), a new endpoint is applied at once.
    h.change(|s| endpoints_of(s, "dns").push(mk_endpoint("10.244.0.13")));
    let added = |t: &Table| {
        t.applied
            .iter()
            .filter(|op| op.contains("-r 10.244.0.13:5353"))
            .count()
    };
    h.wait_until("the change, beside the read", |t| added(t) == 1)
        .await;
    h.kernel
        .with(|t| assert_eq!(t.reads_held, 1, "the read still runs"));
    // The read comes in without the new endpoint; the next repairs read it with it.
    h.kernel.with(|t| t.read_gate = None);
    gate.notify_one();
    h.wait_until("two more repairs", |t| t.background_reads >= 3)
        .await;
    let kernel = h.stop().await;
    kernel.with(|t| {
        assert_eq!(added(t), 1, "added once, not again: {:?}", t.applied);
        let dns = t
            .actual
            .services
            .values()
            .filter(|s| {
                s.destinations
                    .iter()
                    .any(|d| d.address.to_string() == "10.244.0.13" && d.port == 5353)
            })
            .count();
        assert_eq!(dns, 1, "still in the kernel");
    });
}

#[tokio::test]
async fn the_repair_replaces_the_nftables_table_only_when_its_listing_differs() {
    let h = Harness::with_demo(Duration::from_millis(10), Duration::from_millis(100)).await;
    h.wait_until("two repairs", |t| t.background_reads >= 2)
        .await;
    h.kernel.with(|t| {
        assert_eq!(t.transactions.len(), 1, "{:?}", t.transactions);
        // An element deleted by hand.
        let elements = t.netfilter.as_mut().unwrap();
        let set = elements.0.get_mut("cluster-ips-v4").unwrap();
        let first = set.iter().next().unwrap().clone();
        set.remove(&first);
    });
    let kernel = replaced_once_more(h).await;
    kernel.with(|t| assert_eq!(t.netfilter.as_ref().unwrap().set("cluster-ips-v4").len(), 5));
}

/// Waits for the nftables table's second transaction, stops, and checks that both replaced
/// the whole table.
async fn replaced_once_more(h: Harness) -> FakeKernel {
    h.wait_until("the replacement", |t| t.transactions.len() == 2)
        .await;
    let kernel = h.stop().await;
    kernel.with(|t| {
        assert!(
            matches!(
                t.transactions[..],
                [Transaction::Replace(_), Transaction::Replace(_)]
            ),
            "{:?}",
            t.transactions
        );
        assert!(t.netfilter.is_some());
    });
    kernel
}

#[tokio::test]
async fn a_listing_that_times_out_leaves_the_nftables_table_alone_and_one_that_says_it_is_gone_replaces_it(
) {
    let h = Harness::with_demo(Duration::from_millis(10), Duration::from_millis(100)).await;
    h.wait_until("a repair", |t| t.background_reads >= 1).await;
    h.kernel.with(|t| t.listing_times_out = true);
    let reads = h.kernel.with(|t| t.background_reads);
    h.wait_until("three repairs more", |t| t.background_reads >= reads + 3)
        .await;
    h.kernel.with(|t| {
        assert_eq!(t.transactions.len(), 1, "{:?}", t.transactions);
        // The table goes (deleted by hand); nft, asked again, says so.
        t.listing_times_out = false;
        t.netfilter = None;
    });
    replaced_once_more(h).await;
}

/// Removes the sticky Service's endpoint 10.244.0.12 while the kernel counts a connection on
/// it that the controller has not read; returns once it is at weight 0 (draining), with the
/// virtual server's key.
async fn drain_with_a_connection(h: &Harness) -> ServiceKey {
    let sticky = ServiceKey::Addr {
        address: "10.96.0.20".parse().unwrap(),
        protocol: ipvs::Protocol::Tcp,
        port: 443,
    };
    h.kernel.set_active_connections(&sticky, "10.244.0.12", 1);
    h.change(|s| {
        endpoints_of(s, "sticky").retain(|e| e.addresses != ["10.244.0.12"]);
    });
    h.wait_until("weight 0", |t| {
        t.applied
            .contains(&"-e -t 10.96.0.20:443 -r 10.244.0.12:8443 -m -w 0".to_owned())
    })
    .await;
    sticky
}

#[tokio::test]
async fn a_removed_endpoint_with_connections_drains_then_goes() {
    let h = Harness::with_demo(Duration::from_millis(10), Duration::from_secs(3600)).await;
    let sticky = drain_with_a_connection(&h).await;
    // The connection ends; the next check of draining real servers deletes it.
    h.kernel.set_active_connections(&sticky, "10.244.0.12", 0);
    h.wait_until("the deletion", |t| {
        t.applied
            .contains(&"-d -t 10.96.0.20:443 -r 10.244.0.12:8443".to_owned())
    })
    .await;
    let kernel = h.stop().await;
    kernel.with(|t| {
        assert_eq!(
            t.full_reads, 1,
            "only the draining virtual server is read again"
        );
        assert!(t.destination_reads >= 2);
    });
}

#[tokio::test]
async fn shutdown_leaves_the_rules_in_place() {
    let h = Harness::with_demo(Duration::from_millis(10), Duration::from_secs(3600)).await;
    let kernel = h.stop().await;
    kernel.with(|t| {
        assert_eq!(t.actual.services.len(), DEMO_VIRTUAL_SERVERS);
        assert_eq!(t.actual.bound_addresses.len(), 6);
        assert!(!t
            .applied
            .iter()
            .any(|op| op.starts_with("-D") || op.starts_with("-d")));
    });
}

#[tokio::test]
async fn a_service_asking_for_a_scheduler_the_kernel_lacks_gets_the_default() {
    let h = Harness::start(Duration::from_millis(10), Duration::from_secs(3600));
    h.change(|s| {
        *s = demo_snapshot();
        for service in &mut s.services {
            let name = service.metadata.name.as_deref();
            let annotations = service
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            match name {
                Some("web") => annotations.insert("ipvsd.io/scheduler".into(), "nosuch".into()),
                Some("dns") => annotations.insert("ipvsd.io/scheduler".into(), "wlc".into()),
                _ => None,
            };
        }
    });
    h.wait_until("the first sync", |t| {
        t.actual.services.len() == DEMO_VIRTUAL_SERVERS
    })
    .await;
    let kernel = h.stop().await;
    kernel.with(|t| {
        assert!(
            t.applied.contains(&"-A -t 10.96.0.10:80 -s rr".to_owned()),
            "{:#?}",
            t.applied
        );
        assert!(
            t.applied.contains(&"-A -u 10.96.0.53:53 -s wlc".to_owned()),
            "{:#?}",
            t.applied
        );
    });
}

/// A second port, 8081, on the demo's web Service.
fn add_web_port_8081(s: &mut Snapshot) {
    let web = s
        .services
        .iter_mut()
        .find(|svc| svc.metadata.name.as_deref() == Some("web"))
        .expect("the web Service");
    let ports = web.spec.as_mut().unwrap().ports.as_mut().unwrap();
    let mut extra = ports[0].clone();
    extra.name = Some("extra".into());
    extra.port = 8081;
    ports.push(extra);
}

#[tokio::test]
async fn the_nftables_table_is_written_whole_once_then_changed_by_elements() {
    let h = Harness::with_demo(Duration::from_millis(10), Duration::from_secs(3600)).await;
    h.wait_until("the table", |t| t.netfilter.is_some()).await;
    let (first, cluster_ips) = h.kernel.with(|t| {
        let elements = t.netfilter.clone().unwrap();
        (t.transactions.clone(), elements.set("cluster-ips-v4").len())
    });
    assert!(matches!(first[..], [Transaction::Replace(_)]), "{first:?}");
    assert_eq!(
        cluster_ips, 5,
        "one element per IPv4 cluster IP and port of the demo"
    );

    // A new endpoint changes no set (it is not on this node); a new cluster-IP port does.
    h.change(|s| endpoints_of(s, "dns").push(mk_endpoint("10.244.0.13")));
    h.change(add_web_port_8081);
    h.wait_until("the element", |t| t.transactions.len() == 2)
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let kernel = h.stop().await;
    kernel.with(|t| {
        assert_eq!(t.transactions.len(), 2, "{:?}", t.transactions);
        let Transaction::Change(changes) = &t.transactions[1] else {
            panic!("a change replaced the table: {:?}", t.transactions[1]);
        };
        // The new port: a cluster IP to masquerade and a port the filter lets through.
        let added = ["10.96.0.10 . tcp . 8081".to_owned()].into();
        assert_eq!(changes.add.set("cluster-ips-v4"), added);
        assert_eq!(changes.add.set("service-ports-v4"), added);
        assert_eq!(changes.len(), 2, "{changes:?}");
    });
}

#[tokio::test]
async fn the_nftables_table_comes_before_the_ipvs_rules_in_a_first_sync_and_a_change() {
    let h = Harness::start(Duration::from_millis(10), Duration::from_secs(3600));
    let gate = Arc::new(tokio::sync::Notify::new());
    h.kernel
        .with(|t| t.netfilter_gate = Some(Arc::clone(&gate)));
    h.change(|s| *s = demo_snapshot());
    // The whole table waits, and the virtual servers wait for it: one reachable before its
    // elements are in place may reset a connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.kernel.with(|t| {
        assert!(
            t.applied.is_empty(),
            "virtual servers came before the nftables table: {:#?}",
            t.applied
        );
    });
    gate.notify_one();
    h.wait_until("the table, then the IPVS rules", |t| {
        t.netfilter.is_some() && t.applied.iter().any(|a| a.contains("10.96.0.10:80"))
    })
    .await;

    // A new cluster-IP port: its elements are written before its virtual server.
    h.change(add_web_port_8081);
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.kernel.with(|t| {
        assert!(
            !t.applied.iter().any(|a| a.contains(":8081")),
            "the new port's virtual server came before its nftables elements: {:#?}",
            t.applied
        );
    });
    gate.notify_one();
    h.wait_until("the new port's virtual server", |t| {
        t.applied.iter().any(|a| a.contains("10.96.0.10:8081"))
    })
    .await;
    let kernel = h.stop().await;
    kernel.with(|t| {
        assert!(matches!(
            t.transactions[..],
            [Transaction::Replace(_), Transaction::Change(_)]
        ));
    });
}

#[tokio::test]
async fn a_failed_nftables_transaction_is_retried_as_a_replacement() {
    let h = Harness::start(Duration::from_millis(10), Duration::from_secs(3600));
    h.kernel.with(|t| t.refuse_netfilter = 1);
    h.change(|s| *s = demo_snapshot());
    // The failed sync is retried (after two seconds' back-off) with a whole table.
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.kernel.with(|t| assert!(t.netfilter.is_none()));
    h.wait_until("the retried table", |t| t.netfilter.is_some())
        .await;
    let kernel = h.stop().await;
    kernel.with(|t| {
        assert!(
            matches!(t.transactions[..], [Transaction::Replace(_)]),
            "{:?}",
            t.transactions
        );
        assert_eq!(t.netfilter.as_ref().unwrap().set("cluster-ips-v4").len(), 5);
    });
}

/// A UDP conntrack entry of `client` to `service`, replies coming from `reply_source`.
fn mk_udp_entry(client: &str, service: &str, reply_source: &str) -> Entry {
    let tuple = |source: &str, destination: &str| {
        let source: std::net::SocketAddr = source.parse().unwrap();
        let destination: std::net::SocketAddr = destination.parse().unwrap();
        Tuple {
            protocol: IPPROTO_UDP,
            source: source.ip(),
            source_port: source.port(),
            destination: destination.ip(),
            destination_port: destination.port(),
        }
    };
    Entry {
        original: tuple(client, service),
        reply: tuple(reply_source, client),
        zone: 0,
    }
}

#[tokio::test]
async fn a_removed_udp_endpoint_takes_its_conntrack_entries_with_it() {
    let h = Harness::with_demo(Duration::from_millis(10), Duration::from_secs(3600)).await;
    // Clients of dns (real servers 10.244.0.11 and .12 at 5353), and one of an address that is
    // no virtual server.
    let to_11 = mk_udp_entry("192.168.50.20:40000", "10.96.0.53:53", "10.244.0.11:5353");
    let to_12 = mk_udp_entry("192.168.50.20:40001", "10.96.0.53:53", "10.244.0.12:5353");
    let other = mk_udp_entry("192.168.50.20:40002", "10.96.9.9:8125", "10.244.0.11:8125");
    h.kernel.with(|t| {
        t.conntrack = vec![to_11, to_12, other];
    });
    let dumps = h.kernel.with(|t| t.conntrack_dumps);

    // A TCP-only change dumps nothing.
    h.change(|s| endpoints_of(s, "web").retain(|e| e.addresses != ["10.244.0.13"]));
    h.wait_until("the web change", |t| {
        t.applied
            .iter()
            .any(|op| op.contains("10.96.0.10:80 -r 10.244.0.13"))
    })
    .await;
    h.kernel
        .with(|t| assert_eq!(t.conntrack_dumps, dumps, "no UDP virtual server changed"));

    h.change(|s| endpoints_of(s, "dns").retain(|e| e.addresses != ["10.244.0.11"]));
    h.wait_until("the stale entry's deletion", |t| t.conntrack.len() == 2)
        .await;
    let metrics = h.metrics.encode();
    let kernel = h.stop().await;
    kernel.with(|t| {
        assert!(t
            .applied
            .contains(&"-d -u 10.96.0.53:53 -r 10.244.0.11:5353".to_owned()));
        assert_eq!(t.conntrack, vec![to_12, other]);
        assert_eq!(t.conntrack_dumps, dumps + 1);
    });
    assert!(
        metrics.contains("ipvsd_conntrack_entries_deleted_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ipvsd_conntrack_cleanup_failures_total 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn packets_the_table_counted_add_up_across_repairs_and_replacements() {
    let h = Harness::start(Duration::from_millis(10), Duration::from_millis(100));
    let metrics = h.metrics.clone();
    let rejected = |n: u64| {
        let metrics = metrics.clone();
        move || {
            metrics.encode().contains(&format!(
                "ipvsd_nftables_packets_total{{counter=\"port-filter-rejected\"}} {n}\n"
            ))
        }
    };
    h.change(|s| *s = demo_snapshot());
    h.wait_until("the table", |t| t.netfilter.is_some()).await;
    // Read by the repairs as the table counts on.
    h.kernel.with(|t| t.rejected = 5);
    let five = rejected(5);
    h.wait_until("5 counted", |_| five()).await;
    h.kernel.with(|t| t.rejected = 7);
    let seven = rejected(7);
    h.wait_until("7 counted", |_| seven()).await;
    // A replacement (an element deleted by hand) starts the table's counters from 0 again.
    h.kernel.with(|t| {
        let set = t
            .netfilter
            .as_mut()
            .unwrap()
            .0
            .get_mut("cluster-ips-v4")
            .unwrap();
        let first = set.iter().next().unwrap().clone();
        set.remove(&first);
    });
    h.wait_until("the replacement", |t| t.transactions.len() == 2)
        .await;
    h.kernel.with(|t| t.rejected = 2);
    let nine = rejected(9);
    h.wait_until("9 counted", |_| nine()).await;
    let _ = h.stop().await;
}

#[tokio::test]
async fn health_turns_bad_while_the_dummy_interface_cannot_be_programmed_and_recovers() {
    let h = Harness::with_demo(Duration::from_millis(10), Duration::from_millis(200)).await;
    assert!(h.health.healthy(std::time::Instant::now()));
    // The dummy interface is gone: its addresses with it, and every bind fails.
    h.kernel.with(|t| {
        t.refuse_binds = true;
        t.actual.bound_addresses.clear();
    });
    let start = Instant::now();
    while h.health.healthy(std::time::Instant::now()) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still healthy though no address can be bound"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // It comes back: the next repair binds everything and health follows.
    h.kernel.with(|t| t.refuse_binds = false);
    h.wait_until("the addresses bound again", |t| {
        t.actual.bound_addresses.len() == 6
    })
    .await;
    let start = Instant::now();
    while !h.health.healthy(std::time::Instant::now()) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not healthy again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.stop().await;
}

#[tokio::test]
async fn ownership_survives_a_restart_without_claiming_foreign_rules() {
    // A first run programs the demo; its record names what it created.
    let h = Harness::with_demo(Duration::from_millis(10), Duration::from_secs(60)).await;
    let kernel = h.stop().await;
    let recorded = kernel.with(|t| t.owned.clone());
    assert_eq!(recorded.len(), DEMO_VIRTUAL_SERVERS);
    // While ipvsd is down: an operator adds a virtual server on the node address outside the
    // NodePort range, and one of ipvsd's on the node address (a load balancer there, say) is
    // left behind by a Service deleted meanwhile.
    let on_node = |port| ServiceKey::Addr {
        address: "192.168.50.10".parse().unwrap(),
        protocol: ipvs::Protocol::Tcp,
        port,
    };
    kernel.with(|t| {
        for (port, ours) in [(8443, false), (9000, true)] {
            let mut service = ipvs::Service::new(on_node(port), "rr");
            service.flags = ipvs::ServiceFlags::HASHED;
            t.actual.services.insert(
                on_node(port),
                ipvsd::plan::ActualService {
                    service,
                    destinations: Vec::new(),
                },
            );
            if ours {
                t.owned.insert(on_node(port));
            }
        }
    });
    // The restart deletes what the record says was ipvsd's, and nothing else.
    let h = Harness::start_on(kernel, Duration::from_millis(10), Duration::from_secs(60));
    h.change(|s| *s = demo_snapshot());
    h.wait_until("the left-over virtual server deleted", |t| {
        !t.actual.services.contains_key(&on_node(9000))
    })
    .await;
    let kernel = h.stop().await;
    kernel.with(|t| {
        assert!(t.actual.services.contains_key(&on_node(8443)));
        assert!(!t.owned.contains(&on_node(8443)));
        assert!(!t.owned.contains(&on_node(9000)));
        assert_eq!(t.actual.services.len(), DEMO_VIRTUAL_SERVERS + 1);
    });
}

#[tokio::test]
async fn a_repair_publishes_the_traffic_of_ipvsds_virtual_servers_and_of_no_other() {
    let h = Harness::with_demo(Duration::from_millis(10), Duration::from_millis(200)).await;
    // An operator's virtual server, sorted among ipvsd's, and traffic on one of ipvsd's.
    let foreign = ServiceKey::Addr {
        address: "10.96.0.9".parse().unwrap(),
        protocol: ipvs::Protocol::Tcp,
        port: 80,
    };
    let web = ServiceKey::Addr {
        address: "10.96.0.10".parse().unwrap(),
        protocol: ipvs::Protocol::Tcp,
        port: 80,
    };
    h.kernel.with(|t| {
        let mut service = ipvs::Service::new(foreign, "rr");
        service.stats.connections = 11;
        t.actual.services.insert(
            foreign,
            ipvsd::plan::ActualService {
                service,
                destinations: Vec::new(),
            },
        );
        let web = t
            .actual
            .services
            .get_mut(&web)
            .expect("the web virtual server");
        web.service.stats.connections = 7;
    });
    let repairs = h.kernel.with(|t| t.background_reads);
    h.wait_until("a repair after that", |t| t.background_reads > repairs + 1)
        .await;
    let text = h.metrics.encode();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ipvsd_virtual_server_connections_total{"))
        .collect();
    assert_eq!(series.len(), DEMO_VIRTUAL_SERVERS, "{series:#?}");
    assert!(
        !text.contains(r#"address="10.96.0.9""#),
        "an operator's virtual server was published: {text}"
    );
    let web: Vec<&&str> = series
        .iter()
        .filter(|l| l.contains(r#"protocol="tcp",address="10.96.0.10",port="80""#))
        .collect();
    assert_eq!(web.len(), 1, "{series:#?}");
    assert!(web[0].ends_with(" 7"), "{web:?}");
    h.stop().await;
}

/// `ipvsd_model_computations_total` as the metrics say it, full and incremental together.
fn model_computations(metrics: &Metrics) -> u64 {
    let text = metrics.encode();
    let counts: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("ipvsd_model_computations_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.trim().parse().ok())
        .collect();
    assert!(!counts.is_empty(), "no model_computations in\n{text}");
    counts.iter().sum()
}

#[tokio::test]
async fn draining_checks_and_repairs_do_not_rebuild_the_model() {
    // Draining: the connection counts are read every second, the model is not computed again.
    let h = Harness::with_demo(Duration::from_millis(10), Duration::from_secs(3600)).await;
    drain_with_a_connection(&h).await;
    let before = model_computations(&h.metrics);
    let reads = h.kernel.with(|t| t.destination_reads);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = h.kernel.with(|t| t.destination_reads);
    assert!(
        after >= reads + 2,
        "draining checks ran: {reads} -> {after}"
    );
    assert_eq!(
        model_computations(&h.metrics),
        before,
        "the model was rebuilt"
    );
    // A change is computed again, once.
    h.change(|s| endpoints_of(s, "dns").push(mk_endpoint("10.244.0.13")));
    h.wait_until("the change", |t| {
        t.applied
            .contains(&"-a -u 10.96.0.53:53 -r 10.244.0.13:5353 -m -w 1".to_owned())
    })
    .await;
    assert_eq!(model_computations(&h.metrics), before + 1);
    h.stop().await;

    // Repairs: the kernel is read again every sync period, the model is not computed again.
    let h = Harness::with_demo(Duration::from_millis(10), Duration::from_millis(300)).await;
    let before = model_computations(&h.metrics);
    let reads = h.kernel.with(|t| t.background_reads);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = h.kernel.with(|t| t.background_reads);
    assert!(after >= reads + 3, "repairs ran: {reads} -> {after}");
    assert_eq!(
        model_computations(&h.metrics),
        before,
        "the model was rebuilt"
    );
    h.stop().await;
}

/// `ipvsd_model_computations_total{kind}` as the metrics say it.
fn computations_of_kind(metrics: &Metrics, kind: &str) -> u64 {
    let prefix = format!("ipvsd_model_computations_total{{kind=\"{kind}\"}} ");
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_change_is_computed_for_its_service_and_a_relist_rebuilds_everything() {
    let h = Harness::with_demo(Duration::from_millis(10), Duration::from_secs(3600)).await;
    assert_eq!(computations_of_kind(&h.metrics, "full"), 1);
    assert_eq!(computations_of_kind(&h.metrics, "incremental"), 0);
    let applied = h.kernel.with(|t| t.applied.len());

    h.change(|s| endpoints_of(s, "dns").push(mk_endpoint("10.244.0.13")));
    h.wait_until("the change", |t| {
        t.applied
            .contains(&"-a -u 10.96.0.53:53 -r 10.244.0.13:5353 -m -w 1".to_owned())
    })
    .await;
    assert_eq!(computations_of_kind(&h.metrics, "incremental"), 1);
    assert_eq!(computations_of_kind(&h.metrics, "full"), 1);
    let after_change = h.kernel.with(|t| t.applied[applied..].to_vec());
    assert!(
        after_change.iter().all(|op| op.contains("10.96.0.53:53")),
        "only the changed Service's virtual servers: {after_change:?}"
    );

    // A relist: the model is rebuilt from everything, and the kernel, already right, is left
    // alone.
    let applied = h.kernel.with(|t| t.applied.len());
    h.source.2.store(true, Ordering::SeqCst);
    h.changes.send_modify(|g| *g += 1);
    let start = Instant::now();
    while computations_of_kind(&h.metrics, "full") < 2 {
        assert!(start.elapsed() < Duration::from_secs(5), "no rebuild");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.kernel
        .with(|t| assert_eq!(t.applied[applied..], [] as [String; 0]));
    h.stop().await;
}

/// Everything this test binary logs, from its first use on. One global subscriber rather than
/// one set for a test's thread: a callsite first reached by another test's thread, while only
/// a thread's subscriber exists, can have its interest settled without it, and then that
/// thread's subscriber misses its events.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    /// The binary's log, its global subscriber installed on the first call.
    fn global() -> &'static CapturedLog {
        static LOG: std::sync::OnceLock<CapturedLog> = std::sync::OnceLock::new();
        LOG.get_or_init(|| {
            let log = CapturedLog::default();
            let writer = log.clone();
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .init();
            log
        })
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// What was logged from byte `from` on (by every test running meanwhile).
    fn text_from(&self, from: usize) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()[from..]).into_owned()
    }
}

#[tokio::test]
async fn a_table_as_large_as_the_rate_estimator_warning_says_is_warned_about() {
    // The demo's table: its virtual servers and their real servers.
    let entries = {
        let h = Harness::with_demo(Duration::from_millis(10), Duration::from_secs(3600)).await;
        let kernel = h.stop().await;
        kernel.with(|t| {
            t.actual.services.len()
                + t.actual
                    .services
                    .values()
                    .map(|s| s.destinations.len())
                    .sum::<usize>()
        })
    };
    let log = CapturedLog::global();
    for (threshold, warned) in [(entries, true), (entries + 1, false)] {
        let from = log.len();
        let h = Harness::start_configured(
            FakeKernel::default(),
            Duration::from_millis(10),
            Duration::from_secs(3600),
            |c| c.rate_estimator_warning = Some(threshold),
        );
        h.change(|s| *s = demo_snapshot());
        h.wait_until("the first sync", |t| {
            t.actual.services.len() == DEMO_VIRTUAL_SERVERS
        })
        .await;
        h.stop().await;
        // No other test asks for the warning, so what this one logged is all of it.
        let text = log.text_from(from);
        assert!(
            text.contains(&format!("full=true virtual_servers={DEMO_VIRTUAL_SERVERS}")),
            "the log is captured:\n{text}"
        );
        let warnings: Vec<_> = text
            .lines()
            .filter(|l| l.contains("--rate-estimation off"))
            .collect();
        assert_eq!(
            warnings.len(),
            usize::from(warned),
            "threshold {threshold}, {entries} entries:\n{text}"
        );
        for warning in warnings {
            assert!(
                warning.ends_with(&format!("entries={entries}")),
                "{warning}"
            );
        }
    }
}
