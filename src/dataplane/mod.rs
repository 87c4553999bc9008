//! The only code that touches the kernel: IPVS through the `ipvs` crate, links and addresses
//! through rtnetlink, ipvsd's nftables table through the `nft` tool, conntrack entries through
//! ctnetlink, sysctls.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;

pub mod conntrack;
mod ipvs;
pub mod link;
pub mod nftables;
pub mod node_addresses;
pub mod owned;
pub mod reading_thread;
pub mod rtnetlink;
pub mod sysctl;

use self::conntrack::ConntrackError;
pub use self::ipvs::IpvsTable;
use self::link::{DummyLink, LinkError};
use self::nftables::{Nftables, NftablesError};
use crate::conntrack::Entry;
use crate::netfilter::{MasqueradeConfig, Transaction};
use crate::plan::{ActualService, Operation};

/// What the controller asks of the kernel. [`Kernel`] is the real one; the controller's tests
/// drive it with an in-memory table.
pub trait Dataplane: Send + Sync {
    /// Every virtual server with its destinations, and the entries that could not be read.
    fn read_services(&self) -> impl Future<Output = Result<IpvsContents, ::ipvs::Error>> + Send;

    /// The destinations of some virtual servers; one that is gone reads as having none.
    fn read_destinations(
        &self,
        keys: &[::ipvs::ServiceKey],
    ) -> impl Future<
        Output = Result<Vec<(::ipvs::ServiceKey, Vec<::ipvs::Destination>)>, ::ipvs::Error>,
    > + Send;

    /// Reads what a repair compares with the cache (the IPVS table, the dummy interface's
    /// addresses, ipvsd's nftables table) on its own, so that it can run beside the syncs: the
    /// future borrows nothing and may be spawned. The IPVS table and the nftables sets are
    /// compared with `expected` (the cache's fingerprints and the sets' digests when the read
    /// began) as they are read.
    fn read_in_background(
        &self,
        expected: RepairExpectation,
    ) -> impl Future<Output = KernelRead> + Send + 'static;

    /// The addresses bound to the dummy interface.
    fn bound_addresses(&self) -> impl Future<Output = Result<BTreeSet<IpAddr>, LinkError>> + Send;

    /// Carries out the IPVS operations among `ops`, in order: one result per operation, `None`
    /// for the address ones.
    fn apply_ipvs(
        &self,
        ops: &[Operation],
    ) -> impl Future<Output = Vec<Option<Result<(), ::ipvs::Error>>>> + Send;

    /// Binds addresses to the dummy interface: one outcome per address, or `Err` when nothing
    /// could be done.
    fn bind(
        &self,
        addresses: &[IpAddr],
    ) -> impl Future<Output = Result<Vec<Result<(), LinkError>>, LinkError>> + Send;

    /// Takes addresses off the dummy interface: one outcome per address, or `Err` when nothing
    /// could be done.
    fn unbind(
        &self,
        addresses: &[IpAddr],
    ) -> impl Future<Output = Result<Vec<Result<(), LinkError>>, LinkError>> + Send;

    /// Whether the kernel has (or can load) the scheduler `name`.
    fn scheduler_available(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<bool, ::ipvs::Error>> + Send;

    /// Applies one transaction to ipvsd's nftables table, all or nothing.
    fn apply_netfilter(
        &self,
        transaction: &Transaction,
    ) -> impl Future<Output = Result<(), NftablesError>> + Send;

    /// The packets each named counter of ipvsd's nftables table has counted since the table
    /// was written (see [`crate::netfilter::COUNTERS`]).
    fn netfilter_counters(
        &self,
    ) -> impl Future<Output = Result<BTreeMap<String, u64>, NftablesError>> + Send;

    /// The node's UDP conntrack entries, IPv4 and IPv6.
    fn udp_conntrack_entries(
        &self,
    ) -> impl Future<Output = Result<Vec<Entry>, ConntrackError>> + Send;

    /// The virtual servers an earlier run in this network namespace recorded as its own (see
    /// [`owned`]); none when there is no record.
    fn load_owned(&self) -> impl Future<Output = BTreeSet<::ipvs::ServiceKey>> + Send {
        async { BTreeSet::new() }
    }

    /// Records the virtual servers ipvsd owns, for the next run. A failure is logged: the
    /// record is a safety net, not a reason to stop syncing.
    fn save_owned(&self, keys: &BTreeSet<::ipvs::ServiceKey>) -> impl Future<Output = ()> + Send {
        let _ = keys;
        async {}
    }

    /// Deletes conntrack entries by their original tuple; returns how many were deleted (one
    /// that is already gone is not counted, and not an error).
    fn delete_conntrack_entries(
        &self,
        entries: &[Entry],
    ) -> impl Future<Output = Result<usize, ConntrackError>> + Send;
}

/// The kernel's IPVS table as read: what could be read, and what could not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpvsContents {
    /// Every virtual server that could be read, with the destinations that could.
    pub services: BTreeMap<::ipvs::ServiceKey, ActualService>,
    /// Services and destinations that could not be read.
    pub undecodable: Vec<::ipvs::Undecodable>,
}

/// The fingerprint ([`ActualService::fingerprint`]) of each virtual server of the cache: what
/// a repair's read compares the kernel's table with.
pub type Fingerprints = HashMap<::ipvs::ServiceKey, u64>;

/// What a repair's read compares the kernel with, as the controller held it when the read
/// began.
#[derive(Debug, Clone, Default)]
pub struct RepairExpectation {
    /// The cache's fingerprint of each virtual server.
    pub virtual_servers: Arc<Fingerprints>,
    /// The digest of each of ipvsd's nftables sets holding elements.
    pub sets: crate::netfilter::SetDigests,
}

/// The kernel's IPVS table as a repair reads it, compared with the cache's fingerprints as it
/// is read: only the virtual servers that differ are kept whole, so the read holds no second
/// copy of the table (at 30,000 virtual servers and 300,000 real servers, 50 MiB).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpvsComparison {
    /// The virtual servers whose settings are not those the cache held (or that it did not
    /// hold), as read.
    pub differing: BTreeMap<::ipvs::ServiceKey, ActualService>,
    /// Every virtual server read, with its counters (what the traffic metrics publish).
    pub counters: BTreeMap<::ipvs::ServiceKey, ::ipvs::Stats>,
    /// Services and destinations that could not be read.
    pub undecodable: Vec<::ipvs::Undecodable>,
    /// How long the read paused to leave the CPU to others.
    pub paused: std::time::Duration,
}

impl IpvsComparison {
    /// Takes in one virtual server as read.
    pub fn add(&mut self, service: ActualService, expected: &Fingerprints) {
        let key = service.service.key;
        self.counters.insert(key, service.service.stats);
        if expected.get(&key) != Some(&service.fingerprint()) {
            self.differing.insert(key, service);
        }
    }

    /// The comparison of a whole table read at once.
    pub fn of(contents: IpvsContents, expected: &Fingerprints) -> IpvsComparison {
        let mut comparison = IpvsComparison {
            undecodable: contents.undecodable,
            ..IpvsComparison::default()
        };
        for service in contents.services.into_values() {
            comparison.add(service, expected);
        }
        comparison
    }
}

/// The kernel's state as a repair reads it, each part with its own outcome.
#[derive(Debug)]
pub struct KernelRead {
    /// The IPVS table, compared with the cache.
    pub ipvs: Result<IpvsComparison, ::ipvs::Error>,
    /// The addresses on the dummy interface.
    pub bound_addresses: Result<BTreeSet<IpAddr>, LinkError>,
    /// ipvsd's nftables table.
    pub netfilter: Result<NetfilterCheck, NftablesError>,
}

/// ipvsd's nftables table as listed: its elements, and how its chains differ from those ipvsd
/// writes with its flags (which only the dataplane knows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetfilterCheck {
    /// Elements by set, in the form transactions write them, of the sets whose digest is not
    /// the one expected (see [`crate::netfilter::listing::check`]).
    pub elements: crate::netfilter::SetContents,
    /// The sets whose digest is the one expected: they held what they should when the read
    /// began, and their elements are not kept.
    pub agreeing: BTreeSet<String>,
    /// Chains whose rules are not those ipvsd writes; empty when they are.
    pub rule_differences: Vec<String>,
    /// The packets each named counter counted since the table was written.
    pub counters: BTreeMap<String, u64>,
}

/// ipvsd's nftables table: the tool that writes it and the flags that shape its rules.
pub struct Netfilter {
    /// The `nft` tool.
    pub nft: Nftables,
    /// The masquerade flags.
    pub config: MasqueradeConfig,
}

/// The kernel: IPVS and the dummy interface.
pub struct Kernel {
    /// IPVS.
    pub ipvs: IpvsTable,
    /// The dummy interface holding service addresses (shared with repairs' reads).
    pub dummy: std::sync::Arc<DummyLink>,
    /// The masquerading rules beside IPVS.
    pub netfilter: Netfilter,
    /// Where the record of the virtual servers ipvsd owns is kept (see [`owned`]); `None`:
    /// nowhere.
    pub owned_record: Option<std::path::PathBuf>,
}

impl Dataplane for Kernel {
    async fn read_services(&self) -> Result<IpvsContents, ::ipvs::Error> {
        self.ipvs.read().await
    }

    async fn read_destinations(
        &self,
        keys: &[::ipvs::ServiceKey],
    ) -> Result<Vec<(::ipvs::ServiceKey, Vec<::ipvs::Destination>)>, ::ipvs::Error> {
        self.ipvs.read_destinations(keys).await
    }

    fn read_in_background(
        &self,
        expected: RepairExpectation,
    ) -> impl Future<Output = KernelRead> + Send + 'static {
        // Listing 90,000 elements took over two minutes in a slow VM; the repair can wait, and
        // a listing that still does not finish is skipped, not taken for a difference.
        const LISTING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
        let dummy = std::sync::Arc::clone(&self.dummy);
        let nft = self.netfilter.nft.clone();
        let config = self.netfilter.config.clone();
        async move {
            use crate::netfilter::{listing, TABLE_FAMILY, TABLE_NAME};
            let read = reading_thread::on_reading_thread(move || async move {
                let ipvs = match IpvsTable::connect().await {
                    Ok(table) => table.read_compared(&expected.virtual_servers, true).await,
                    Err(e) => Err(e),
                };
                let netfilter = nft
                    .list_within(&["table", TABLE_FAMILY, TABLE_NAME], LISTING_TIMEOUT)
                    .await
                    .map(|text| {
                        let checked = listing::check(&text, &expected.sets);
                        NetfilterCheck {
                            rule_differences: listing::rule_differences(
                                &checked.rules,
                                &listing::expected_rules(&config),
                            ),
                            elements: checked.elements,
                            agreeing: checked.agreeing,
                            counters: crate::netfilter::parse_counters(&text),
                        }
                    });
                (ipvs, netfilter)
            })
            .await;
            let (ipvs, netfilter) = read.unwrap_or_else(|e| {
                let why = || io::Error::new(e.kind(), e.to_string());
                (
                    Err(::ipvs::Error::from(why())),
                    Err(NftablesError::Io {
                        program: "nft".into(),
                        source: why(),
                    }),
                )
            });
            let bound_addresses = dummy.addresses().await;
            KernelRead {
                ipvs,
                bound_addresses,
                netfilter,
            }
        }
    }

    async fn bound_addresses(&self) -> Result<BTreeSet<IpAddr>, LinkError> {
        self.dummy.addresses().await
    }

    async fn apply_ipvs(&self, ops: &[Operation]) -> Vec<Option<Result<(), ::ipvs::Error>>> {
        self.ipvs.apply(ops).await
    }

    async fn bind(&self, addresses: &[IpAddr]) -> Result<Vec<Result<(), LinkError>>, LinkError> {
        self.dummy.bind_all(addresses).await
    }

    async fn unbind(&self, addresses: &[IpAddr]) -> Result<Vec<Result<(), LinkError>>, LinkError> {
        self.dummy.unbind_all(addresses).await
    }

    async fn scheduler_available(&self, name: &str) -> Result<bool, ::ipvs::Error> {
        match self.ipvs.check_scheduler(name).await {
            Ok(()) => Ok(true),
            Err(::ipvs::Error::InvalidArgument { .. } | ::ipvs::Error::NotFound { .. }) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn apply_netfilter(&self, transaction: &Transaction) -> Result<(), NftablesError> {
        let script = transaction.render(&self.netfilter.config);
        self.netfilter.nft.apply(&script).await
    }

    async fn netfilter_counters(&self) -> Result<BTreeMap<String, u64>, NftablesError> {
        let text = self
            .netfilter
            .nft
            .list(&[
                "counters",
                "table",
                crate::netfilter::TABLE_FAMILY,
                crate::netfilter::TABLE_NAME,
            ])
            .await?;
        Ok(crate::netfilter::parse_counters(&text))
    }

    async fn udp_conntrack_entries(&self) -> Result<Vec<Entry>, ConntrackError> {
        conntrack::udp_entries().await
    }

    async fn delete_conntrack_entries(&self, entries: &[Entry]) -> Result<usize, ConntrackError> {
        conntrack::delete(entries).await
    }

    async fn load_owned(&self) -> BTreeSet<::ipvs::ServiceKey> {
        match &self.owned_record {
            Some(path) => owned::load(path, &self.dummy).await,
            None => BTreeSet::new(),
        }
    }

    async fn save_owned(&self, keys: &BTreeSet<::ipvs::ServiceKey>) {
        let Some(path) = &self.owned_record else {
            return;
        };
        let Some(anchor) = owned::anchor(&self.dummy).await else {
            return;
        };
        let text = owned::render(&anchor, keys);
        let result = async {
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            // Written whole, then renamed over the old one: a crash leaves one or the other.
            let tmp = path.with_extension("tmp");
            tokio::fs::write(&tmp, text).await?;
            tokio::fs::rename(&tmp, path).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "writing the record of ipvsd's virtual servers");
        }
    }
}
