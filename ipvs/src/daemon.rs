//! The connection synchronisation daemon.

use std::net::IpAddr;

/// Role of a sync daemon (`IP_VS_STATE_MASTER` / `IP_VS_STATE_BACKUP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DaemonState {
    /// Sends connection updates.
    Master,
    /// Receives them.
    Backup,
}

/// A sync daemon (`IPVS_DAEMON_ATTR_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDaemon {
    /// Master or backup.
    pub state: DaemonState,
    /// Multicast interface name.
    pub interface: String,
    /// Sync ID.
    pub sync_id: u32,
    /// Maximum sync message length, if set.
    pub max_len: Option<u16>,
    /// Multicast group, if set.
    pub group: Option<IpAddr>,
    /// Multicast port, if set.
    pub port: Option<u16>,
    /// Multicast TTL, if set.
    pub ttl: Option<u8>,
}
