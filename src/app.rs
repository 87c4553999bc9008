//! The subcommands, wired from their parts. Errors here are for people: each says what failed
//! and what to do.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::cli::{parse_listen_address, CleanupArgs, ListArgs, ModelArgs, PlanArgs, RunArgs};
use crate::controller::{Config, Controller, Inputs};
use crate::dataplane::link::{DummyLink, LinkError};
use crate::dataplane::nftables::Nftables;
use crate::dataplane::node_addresses::{node_addresses, watch_node_addresses_with, WatchOptions};
use crate::dataplane::sysctl::{self, Sysctls};
use crate::dataplane::{IpvsTable, Kernel, Netfilter};
use crate::health::Health;
use crate::health_check::HealthCheckServers;
use crate::metrics::Metrics;
use crate::model::{self, ModelConfig, RealServer};
use crate::netfilter::{self, MasqueradeConfig};
use crate::node_addresses::NodeAddresses;
use crate::plan::{self, Actual, GracefulTermination, Ownership};
use crate::source::kube::KubeSource;
use crate::source::manifest::{self, ManifestSource};
use crate::source::{Snapshot, Source};

/// `ipvsd run`: prepares the kernel, starts the inputs (node addresses, Services), then syncs
/// until `shutdown`, or once with `--once`.
pub async fn run(args: RunArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let model_config = model_config(&args.model)?;
    let listen = ListenAddresses::of(&args)?;
    let kernel = build_dataplane(&args, &model_config).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let (node_addresses, watcher) = start_address_watcher(
        &args.model.dummy_interface,
        &model_config.node_name,
        &metrics,
        stop_rx.clone(),
    )
    .await?;
    let (changes_tx, changes) = watch::channel(0u64);
    let source = start_source(&args.model, changes_tx).await?;

    let health = Arc::new(Health::new(args.sync_period));
    let controller = Controller::new(
        controller_config(&args, model_config),
        Inputs {
            source,
            changes,
            node_addresses,
        },
        kernel,
        health.clone(),
        metrics.clone(),
    );
    if args.once {
        let report = controller.run_once().await?;
        info!(operations = report.operations, "synced once");
        return Ok(());
    }
    let controller =
        controller.with_health_checks(HealthCheckServers::new(health.clone(), metrics.clone()));
    start_servers(&listen, &health, &metrics, &stop_rx).await?;

    controller.run(shutdown).await;
    let _ = stop_tx.send(true);
    stop_address_watcher(watcher).await;
    Ok(())
}

/// Where `ipvsd run` serves health and metrics; `None`: not served.
struct ListenAddresses {
    health: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
}

impl ListenAddresses {
    /// Parses `--health-address` and `--metrics-address` first thing, so that a mistyped
    /// address stops ipvsd before it changes anything in the kernel.
    fn of(args: &RunArgs) -> Result<ListenAddresses> {
        let parse = |text: &str, flag: &'static str| {
            parse_listen_address(text)
                .map_err(anyhow::Error::msg)
                .context(flag)
        };
        Ok(ListenAddresses {
            health: parse(&args.health_address, "--health-address")?,
            metrics: parse(&args.metrics_address, "--metrics-address")?,
        })
    }
}

/// Readies the kernel and returns the dataplane over it: IPVS (the scheduler checked, the
/// timeouts set), the `nft` tool, the sysctls and the dummy interface. Done before the inputs
/// start, so that a kernel ipvsd cannot work with stops it at once, with what to fix.
async fn build_dataplane(args: &RunArgs, model_config: &ModelConfig) -> Result<Kernel> {
    let ipvs = connect_ipvs().await?;
    let nft = Nftables::find().await?;
    ipvs.check_scheduler(&model_config.scheduler)
        .await
        .with_context(|| {
            format!(
                "scheduler {:?} is not available in this kernel (is the module ip_vs_{} present?)",
                model_config.scheduler, model_config.scheduler
            )
        })?;
    let timeouts = ipvs::Timeouts {
        tcp: args.tcp_timeout.map(|d| d.as_secs() as u32),
        tcp_fin: args.tcpfin_timeout.map(|d| d.as_secs() as u32),
        udp: args.udp_timeout.map(|d| d.as_secs() as u32),
    };
    if timeouts != ipvs::Timeouts::default() {
        ipvs.client()
            .set_timeouts(&timeouts)
            .await
            .context("setting IPVS timeouts")?;
    }
    sysctl::apply_under(
        &args.sysctl_root,
        &Sysctls {
            strict_arp: args.strict_arp,
            rate_estimation: args.rate_estimation,
        },
    )
    .context("setting sysctls")?;
    let dummy = DummyLink::ensure(&args.model.dummy_interface)
        .await
        .with_context(|| format!("creating dummy interface {}", args.model.dummy_interface))?;
    Ok(Kernel {
        ipvs,
        owned_record: Some(crate::dataplane::owned::default_path(
            &args.model.dummy_interface,
        )),
        dummy: std::sync::Arc::new(dummy),
        netfilter: Netfilter {
            nft,
            config: MasqueradeConfig {
                cluster_cidrs: args.cluster_cidr.clone(),
                masquerade_all: args.masquerade_all,
            },
        },
    })
}

/// Lists the node's addresses (where NodePorts are served, and which node-port virtual servers
/// are ipvsd's) and starts a task that follows their changes until `stop` turns true: the first
/// sync needs the list, later syncs its changes.
async fn start_address_watcher(
    dummy_interface: &str,
    node_name: &str,
    metrics: &Metrics,
    stop: watch::Receiver<bool>,
) -> Result<(
    watch::Receiver<NodeAddresses>,
    JoinHandle<Result<(), LinkError>>,
)> {
    let nodes = node_addresses(dummy_interface)
        .await
        .context("listing node addresses")?;
    info!(node = %node_name, addresses = ?nodes.addresses, primary = ?nodes.primary, "starting");
    let (nodes_tx, nodes_rx) = watch::channel(nodes);
    let watcher = tokio::spawn(watch_node_addresses_with(
        WatchOptions {
            overruns: metrics.node_address_overruns(),
            ..WatchOptions::new(dummy_interface.to_string())
        },
        nodes_tx,
        stopped(stop),
    ));
    Ok((nodes_rx, watcher))
}

/// Waits for the node address watcher, once told to stop, to end, and logs its error if it
/// failed: the watcher returns its error rather than logging it, so this is where it is seen.
async fn stop_address_watcher(watcher: JoinHandle<Result<(), LinkError>>) {
    match watcher.await {
        Ok(Err(e)) => warn!(error = %e, "node address watcher"),
        Err(e) => warn!(error = %e, "node address watcher"),
        Ok(Ok(())) => {}
    }
}

/// What the controller is told of the command line: the model's settings, what ipvsd owns and
/// how often it syncs.
fn controller_config(args: &RunArgs, model: ModelConfig) -> Config {
    Config {
        model,
        nodeport_range: args.model.nodeport_range.clone(),
        exclude_cidrs: args.model.exclude_cidrs.clone(),
        min_sync_period: args.min_sync_period,
        sync_period: args.sync_period,
        graceful_termination_timeout: args.graceful_termination_timeout,
        rate_estimator_warning: (args.rate_estimation.is_none()
            && sysctl::estimator_in_softirq(&args.sysctl_root))
        .then_some(crate::controller::RATE_ESTIMATOR_WARNING),
    }
}

/// Starts the health and metrics listeners that are asked for, after the controller is built
/// and before it runs; they serve until `stop` turns true. An address that cannot be bound
/// stops ipvsd at start rather than leaving it running unobserved.
async fn start_servers(
    listen: &ListenAddresses,
    health: &Arc<Health>,
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
) -> Result<()> {
    for (what, address, metrics) in [
        ("health", listen.health, None),
        ("metrics", listen.metrics, Some(metrics.clone())),
    ] {
        let Some(address) = address else { continue };
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("listening for {what} on {address}"))?;
        tokio::spawn(crate::http::serve(
            listener,
            health.clone(),
            metrics,
            stopped(stop.clone()),
        ));
    }
    Ok(())
}

/// `ipvsd plan`.
pub async fn plan(args: PlanArgs) -> Result<()> {
    let model_config = model_config(&args.model)?;
    let snapshot = load_snapshot(&args.model).await?;
    let nodes = node_addresses(&args.model.dummy_interface)
        .await
        .context("listing node addresses")?;
    let desired = model::desired(&snapshot, &nodes, &model_config);
    for w in &desired.warnings {
        warn!(problem = %w, "skipped part of a Service");
    }
    let mut out = String::new();
    if args.diff {
        let (actual, _) = read_actual(&connect_ipvs().await?, &args.model.dummy_interface).await?;
        let ownership = Ownership {
            node_addresses: nodes,
            nodeport_range: args.model.nodeport_range.clone(),
            exclude_cidrs: args.model.exclude_cidrs.clone(),
            managed: Default::default(),
        };
        for op in plan::plan(
            &desired,
            &actual,
            &ownership,
            &GracefulTermination::default(),
            std::time::Instant::now(),
        ) {
            out.push_str(&op.to_string());
            out.push('\n');
        }
    } else {
        let table: Vec<_> = desired
            .virtual_servers
            .values()
            .map(|vs| {
                (
                    vs.service.clone(),
                    vs.destinations
                        .iter()
                        .map(RealServer::to_destination)
                        .collect(),
                )
            })
            .collect();
        out = ipvs::ipvsadm::save(&table);
    }
    print!("{out}");
    Ok(())
}

/// `ipvsd list`.
pub async fn list(args: ListArgs) -> Result<()> {
    let ipvs = connect_ipvs().await?;
    let client = ipvs.client();
    // Entries that cannot be read are named on standard error and left out of the listing.
    let services = client
        .service_dump()
        .await
        .context("listing IPVS services")?;
    let mut undecodable = services.undecodable;
    let mut table = Vec::with_capacity(services.entries.len());
    for s in services.entries {
        let destinations = ipvs
            .destination_dump(&s.key)
            .await
            .with_context(|| format!("listing destinations of {}", s.key))?;
        undecodable.extend(destinations.undecodable);
        table.push((s, destinations.entries));
    }
    for entry in &undecodable {
        tracing::warn!(entry = %entry, "an IPVS table entry ipvsd cannot read; not listed");
    }
    let out = if args.save {
        ipvs::ipvsadm::save(&table)
    } else {
        let info = client.info().await.context("reading IPVS info")?;
        let view = if args.stats {
            ipvs::ipvsadm::View::Stats
        } else if args.rate {
            ipvs::ipvsadm::View::Rate
        } else {
            ipvs::ipvsadm::View::Default
        };
        ipvs::ipvsadm::list(&info, &table, view)
    };
    print!("{out}");
    Ok(())
}

/// `ipvsd cleanup`.
pub async fn cleanup(args: CleanupArgs) -> Result<()> {
    let ipvs = connect_ipvs().await?;
    let (actual, dummy) = read_actual(&ipvs, &args.dummy_interface).await?;
    // The virtual servers a run recorded as its own (a load-balancer IP that is also a node
    // address, say) go too; the record is only believed for the dummy interface it names.
    let record = crate::dataplane::owned::default_path(&args.dummy_interface);
    let managed = match &dummy {
        Some(dummy) => crate::dataplane::owned::load(&record, dummy).await,
        None => Default::default(),
    };
    let ownership = Ownership {
        node_addresses: node_addresses(&args.dummy_interface).await?,
        nodeport_range: args.nodeport_range.clone(),
        exclude_cidrs: args.exclude_cidrs.clone(),
        managed,
    };
    // Planning for no Services at all deletes exactly what ipvsd owns.
    let ops = plan::plan(
        &model::Desired::default(),
        &actual,
        &ownership,
        &GracefulTermination::default(),
        std::time::Instant::now(),
    );
    let mut failed = 0;
    for (op, result) in ops.iter().zip(ipvs.apply(&ops).await) {
        if let Some(Err(e)) = result {
            failed += 1;
            warn!(operation = %op, error = %e, "cleanup");
        }
    }
    // The table is ipvsd's alone, so it goes whole; other tables are left as they are.
    match Nftables::find().await {
        Ok(nft) => {
            let tables = nft
                .tables(netfilter::TABLE_FAMILY)
                .await
                .context("listing nftables tables")?;
            if tables.iter().any(|t| t == netfilter::TABLE_NAME) {
                nft.apply(&netfilter::render_delete_table())
                    .await
                    .context("deleting ipvsd's nftables table")?;
                info!(
                    table = %format!("{} {}", netfilter::TABLE_FAMILY, netfilter::TABLE_NAME),
                    "deleted nftables table"
                );
            }
        }
        Err(e) => warn!(error = %e, "ipvsd's nftables table, if there is one, is left in place"),
    }
    if let Some(dummy) = dummy {
        let name = dummy.name().to_string();
        dummy
            .delete()
            .await
            .with_context(|| format!("deleting {name}"))?;
    }
    if failed > 0 {
        bail!("{failed} of {} operations failed", ops.len());
    }
    match tokio::fs::remove_file(&record).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(path = %record.display(), error = %e, "removing the record of ipvsd's virtual servers")
        }
    }
    info!(operations = ops.len(), "cleaned up");
    Ok(())
}

async fn connect_ipvs() -> Result<IpvsTable> {
    let ipvs = IpvsTable::connect().await?;
    // The first request tells whether the family exists and whether we may use it.
    ipvs.client().info().await?;
    Ok(ipvs)
}

/// The kernel's IPVS table and the dummy interface (if there is one) with its addresses.
async fn read_actual(
    ipvs: &IpvsTable,
    dummy_interface: &str,
) -> Result<(Actual, Option<DummyLink>)> {
    let dummy = DummyLink::find(dummy_interface)
        .await
        .with_context(|| format!("looking for {dummy_interface}"))?;
    let bound_addresses = match &dummy {
        Some(d) => d.addresses().await?,
        None => Default::default(),
    };
    let contents = ipvs.read().await.context("reading the IPVS table")?;
    for entry in &contents.undecodable {
        tracing::warn!(entry = %entry, "an IPVS table entry ipvsd cannot read; left alone");
    }
    let actual = Actual {
        services: contents.services,
        bound_addresses,
        undecodable: contents.undecodable,
    };
    Ok((actual, dummy))
}

fn model_config(args: &ModelArgs) -> Result<ModelConfig> {
    let scheduler_flags = match &args.scheduler_flags {
        Some(s) => ipvs::ServiceFlags::parse_sched_flags(s)
            .with_context(|| format!("--scheduler-flags {s:?}"))?,
        None => ipvs::ServiceFlags::empty(),
    };
    Ok(ModelConfig {
        node_name: node_name(args)?,
        scheduler: args.scheduler.clone(),
        scheduler_flags,
        service_proxy_name: args.service_proxy_name.clone(),
        nodeport_addresses: crate::cli::nodeport_addresses(&args.nodeport_addresses)
            .map_err(anyhow::Error::msg)
            .context("--nodeport-addresses")?,
        unavailable_schedulers: Default::default(),
    })
}

fn node_name(args: &ModelArgs) -> Result<String> {
    if let Some(n) = &args.node_name {
        return Ok(n.clone());
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("no --node-name or NODE_NAME, and the hostname is unreadable")?;
    Ok(crate::model::node_name_of_hostname(&name))
}

/// Starts the source: manifests when given, else the Kubernetes API.
async fn start_source(args: &ModelArgs, changes: watch::Sender<u64>) -> Result<Arc<dyn Source>> {
    if !args.manifests.is_empty() {
        return Ok(Arc::new(ManifestSource::spawn(
            args.manifests.clone(),
            changes,
        )));
    }
    let client = kube_client(args).await?;
    Ok(Arc::new(KubeSource::spawn(
        client,
        args.service_proxy_name.clone(),
        changes,
    )))
}

/// Everything the source has, once complete.
async fn load_snapshot(args: &ModelArgs) -> Result<Snapshot> {
    if !args.manifests.is_empty() {
        let loaded = manifest::load(&args.manifests);
        for e in &loaded.errors {
            warn!(error = %e, "skipped");
        }
        return Ok(loaded.snapshot);
    }
    let (tx, mut rx) = watch::channel(0u64);
    let source = start_source(args, tx).await?;
    loop {
        if let Some(s) = source.snapshot() {
            return Ok(s);
        }
        rx.changed()
            .await
            .context("the Kubernetes source stopped before it was complete")?;
    }
}

async fn kube_client(args: &ModelArgs) -> Result<kube::Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "no --manifests, and no Kubernetes configuration (in-cluster or KUBECONFIG)",
        )?,
    };
    kube::Client::try_from(config).context("creating the Kubernetes client")
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
