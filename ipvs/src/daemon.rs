//! The connection synchronisation daemon.

use std::net::IpAddr;

/// Role of a sync daemon (`IP_VS_STATE_MASTER` / `IP_VS_STATE_BACKUP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DaemonState {
    /// Sends connection updates.
    Master,
    /// Receives them.
    Backup,
}

/// A sync daemon (`IPVS_DAEMON_ATTR_*`).
///
/// The optional settings are `None` when starting a daemon to leave them to the kernel's
/// defaults. A daemon read back from the kernel has them all: the kernel reports the values in
/// use (since Linux 4.3, `GET_DAEMON` always sends the length, group, port and TTL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDaemon {
    /// Master or backup.
    pub state: DaemonState,
    /// Multicast interface name.
    pub interface: String,
    /// Sync ID.
    pub sync_id: u32,
    /// Maximum sync message length; `None` leaves the kernel's default.
    pub max_len: Option<u16>,
    /// Multicast group; `None` leaves the kernel's default (224.0.0.81).
    pub group: Option<IpAddr>,
    /// Multicast port; `None` leaves the kernel's default (8848).
    pub port: Option<u16>,
    /// Multicast TTL; `None` leaves the kernel's default (1).
    pub ttl: Option<u8>,
}
