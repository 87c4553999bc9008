//! The IPVS side of the dataplane: reads the kernel's virtual servers and applies planned
//! operations, many requests packed into each datagram.

use std::collections::BTreeMap;

use ipvs::{Client, Destination, Dump, EntryKind, ForwardingMethod, ServiceKey, Undecodable};

use super::{Fingerprints, IpvsComparison, IpvsContents};
use crate::plan::{ActualService, Operation};

/// The kernel's IPVS table, through one netlink socket.
#[derive(Clone)]
pub struct IpvsTable {
    client: Client,
}

impl IpvsTable {
    /// Connects to the kernel's IPVS family.
    pub async fn connect() -> Result<IpvsTable, ipvs::Error> {
        Ok(IpvsTable {
            client: Client::connect().await?,
        })
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The destinations of a virtual server, each read on its own. A destination of a
    /// forwarding method ipvsd never programs (bypass, or a value without a name that another
    /// program set) is set apart with those that do not read, so that the plan leaves it alone.
    pub async fn destination_dump(
        &self,
        key: &ServiceKey,
    ) -> Result<Dump<Destination>, ipvs::Error> {
        let mut dump = self.client.destination_dump(key).await?;
        let (managed, apart): (Vec<_>, Vec<_>) = std::mem::take(&mut dump.entries)
            .into_iter()
            .partition(|d| {
                matches!(
                    d.forwarding,
                    ForwardingMethod::Masquerade
                        | ForwardingMethod::Local
                        | ForwardingMethod::Tunnel(_)
                        | ForwardingMethod::DirectRoute
                )
            });
        dump.entries = managed;
        dump.undecodable
            .extend(apart.into_iter().map(|d| Undecodable {
                kind: EntryKind::Destination,
                service: Some(*key),
                destination: Some((d.address, d.port)),
                reason: format!(
                    "IPVS_DEST_ATTR_FWD_METHOD: unknown forwarding method {}",
                    u32::from(d.forwarding)
                ),
            }));
        Ok(dump)
    }

    /// Reads every virtual server with its destinations: one service dump, then one destination
    /// dump per service. Each entry is read on its own: one that cannot be read (another
    /// program's, with a value the `ipvs` crate has no name for) is listed apart, not an error.
    pub async fn read(&self) -> Result<IpvsContents, ipvs::Error> {
        let mut services = BTreeMap::new();
        let undecodable = self
            .read_each(false, |service| {
                services.insert(service.service.key, service);
            })
            .await?
            .0;
        Ok(IpvsContents {
            services,
            undecodable,
        })
    }

    /// Reads the whole table, comparing each virtual server with `expected` as it comes;
    /// `paced`: pausing as [`super::reading_thread::READING_STRETCH`] says.
    pub async fn read_compared(
        &self,
        expected: &Fingerprints,
        paced: bool,
    ) -> Result<IpvsComparison, ipvs::Error> {
        let mut comparison = IpvsComparison::default();
        let (undecodable, paused) = self
            .read_each(paced, |service| comparison.add(service, expected))
            .await?;
        comparison.undecodable = undecodable;
        comparison.paused = paused;
        Ok(comparison)
    }

    /// Reads every virtual server with its destinations, handing each to `take`; returns the
    /// entries that could not be read, and how long it paused (`paced`: see
    /// [`super::reading_thread::READING_STRETCH`]). A virtual server deleted between the two
    /// dumps is left out.
    async fn read_each(
        &self,
        paced: bool,
        mut take: impl FnMut(ActualService),
    ) -> Result<(Vec<Undecodable>, std::time::Duration), ipvs::Error> {
        let dump = self.client.service_dump().await?;
        let mut undecodable = dump.undecodable;
        let mut paused = std::time::Duration::ZERO;
        let mut stretch = std::time::Instant::now();
        for service in dump.entries {
            let busy = stretch.elapsed();
            if paced && busy >= super::reading_thread::READING_STRETCH {
                tokio::time::sleep(busy).await;
                paused += busy;
                stretch = std::time::Instant::now();
            }
            let destinations = match self.destination_dump(&service.key).await {
                Ok(d) => d,
                Err(ipvs::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            undecodable.extend(destinations.undecodable);
            take(ActualService {
                service,
                destinations: destinations.entries.iter().map(Into::into).collect(),
            });
        }
        Ok((undecodable, paused))
    }

    /// Reads the destinations of the given virtual servers, one dump after the other: netlink
    /// runs one dump at a time per socket. A virtual server that disappeared meanwhile reads as
    /// having none.
    pub async fn read_destinations(
        &self,
        keys: &[ServiceKey],
    ) -> Result<Vec<(ServiceKey, Vec<ipvs::Destination>)>, ipvs::Error> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // Entries that cannot be read were reported by the last full read.
            match self.destination_dump(key).await {
                Ok(destinations) => out.push((*key, destinations.entries)),
                Err(ipvs::Error::NotFound { .. }) => out.push((*key, Vec::new())),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Applies the IPVS operations among `ops`, in order, packed into datagrams on one socket.
    /// Returns one result per operation given (address operations are not IPVS's and are
    /// returned as `None`).
    pub async fn apply(&self, ops: &[Operation]) -> Vec<Option<Result<(), ipvs::Error>>> {
        // Sent by reference: a first sync's requests are not copied.
        let written = self
            .client
            .execute(ops.iter().filter_map(Operation::request))
            .await;
        let mut written = written.into_iter();
        ops.iter()
            .map(|op| op.request().and_then(|_| written.next()))
            .collect()
    }
}

/// Firewall mark of the throwaway virtual server that probes for a scheduler. Fwmark services
/// are never ipvsd's own, so the probe cannot collide with a managed rule.
const PROBE_MARK: u32 = 0x1b5_d000;

impl IpvsTable {
    /// Checks that the kernel has scheduler `name`, by creating and deleting a throwaway
    /// fwmark virtual server with it (the kernel loads scheduler modules on demand).
    pub async fn check_scheduler(&self, name: &str) -> Result<(), ipvs::Error> {
        let key = ServiceKey::FwMark {
            mark: PROBE_MARK,
            family: ipvs::Family::Inet,
        };
        let probe = ipvs::Service::new(key, name);
        match self.client.add_service(&probe).await {
            Ok(()) => {}
            Err(ipvs::Error::AlreadyExists { .. }) => {
                // Left over from a probe that was interrupted.
                self.client.delete_service(&key).await?;
                self.client.add_service(&probe).await?;
            }
            Err(e) => return Err(e),
        }
        self.client.delete_service(&key).await
    }
}
