//! ipvsd's record of the virtual servers it owns, so a restart knows them.
//!
//! Most of ipvsd's virtual servers say by themselves whose they are (an address on its dummy
//! interface, a node address at a NodePort); some do not, e.g. a load-balancer IP that is also a
//! node address. Those are known to be ipvsd's only because it created them, and that knowledge
//! must outlive the process: a Service deleted while ipvsd was down would otherwise leave its
//! virtual server forever. The record is a file under `/run` (a tmpfs: it goes at reboot, as the
//! IPVS table does), written before the virtual servers it names are created, so a crash in the
//! middle of a sync leaves nothing unrecorded. It holds only keys ipvsd itself created or
//! adopted because a Service wanted them, so nothing foreign is ever claimed through it.
//!
//! The file names the network namespace's dummy interface by its hardware address (random,
//! chosen by the kernel when the interface was created): a file left by an ipvsd of another
//! network namespace, or from before the interface was deleted and created again, does not match
//! and is ignored.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipvs::{Protocol, ServiceKey};

use super::link::DummyLink;

/// Where the record lives: `/run/ipvsd/owned-<dummy interface>`.
pub fn default_path(dummy_interface: &str) -> PathBuf {
    Path::new("/run/ipvsd").join(format!("owned-{dummy_interface}"))
}

const HEADER: &str = "# ipvsd: virtual servers ipvsd owns; do not edit";

/// The file's content for `anchor` (the dummy interface's hardware address) and `keys`.
pub fn render(anchor: &str, keys: &BTreeSet<ServiceKey>) -> String {
    let mut out = format!("{HEADER}\nanchor {anchor}\n");
    for key in keys {
        if let ServiceKey::Addr {
            address,
            protocol,
            port,
        } = key
        {
            out.push_str(&format!("{} {address} {port}\n", protocol.number()));
        }
    }
    out
}

/// The keys of a file written by [`render`] for `anchor`; nothing if it was written for another
/// anchor. Lines that do not read are skipped.
pub fn parse(text: &str, anchor: &str) -> BTreeSet<ServiceKey> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return BTreeSet::new();
    }
    if lines.next() != Some(format!("anchor {anchor}").as_str()) {
        return BTreeSet::new();
    }
    lines
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let protocol = Protocol::from_number(words.next()?.parse().ok()?);
            let address: IpAddr = words.next()?.parse().ok()?;
            let port: u16 = words.next()?.parse().ok()?;
            Some(ServiceKey::Addr {
                address,
                protocol,
                port,
            })
        })
        .collect()
}

/// The dummy interface's hardware address as a record's anchor; `None` (with a warning) when it
/// cannot be read.
pub async fn anchor(dummy: &DummyLink) -> Option<String> {
    match dummy.hardware_address().await {
        Ok(Some(address)) => Some(anchor_of(&address)),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "reading the dummy interface's hardware address");
            None
        }
    }
}

/// The keys recorded in the file at `path` for `dummy`: none when there is no record, when it
/// cannot be read (with a warning) or when it was written for another interface.
pub async fn load(path: &Path, dummy: &DummyLink) -> BTreeSet<ServiceKey> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeSet::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "reading the record of ipvsd's virtual servers");
            return BTreeSet::new();
        }
    };
    match anchor(dummy).await {
        Some(anchor) => parse(&text, &anchor),
        None => BTreeSet::new(),
    }
}

/// Hex of a hardware address, `aa:bb:...`.
pub fn anchor_of(hardware_address: &[u8]) -> String {
    hardware_address
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(address: &str, port: u16) -> ServiceKey {
        ServiceKey::Addr {
            address: address.parse().unwrap(),
            protocol: Protocol::Tcp,
            port,
        }
    }

    #[test]
    fn the_record_reads_back_only_for_its_own_interface() {
        let keys: BTreeSet<ServiceKey> = [
            tcp("192.168.50.10", 9000),
            tcp("fd00::1", 443),
            ServiceKey::Addr {
                address: "10.96.0.53".parse().unwrap(),
                protocol: Protocol::Udp,
                port: 53,
            },
        ]
        .into();
        let anchor = anchor_of(&[0x5a, 0x01, 0x02, 0x03, 0x04, 0x05]);
        assert_eq!(anchor, "5a:01:02:03:04:05");
        let text = render(&anchor, &keys);
        assert_eq!(parse(&text, &anchor), keys);
        assert!(parse(&text, "5a:01:02:03:04:06").is_empty());
        assert!(parse("garbage", &anchor).is_empty());
        // Firewall-mark services are never ipvsd's and are not recorded.
        let fwmark: BTreeSet<ServiceKey> = [ServiceKey::FwMark {
            mark: 7,
            family: ipvs::Family::Inet,
        }]
        .into();
        assert!(parse(&render(&anchor, &fwmark), &anchor).is_empty());
    }
}
