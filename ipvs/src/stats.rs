//! Traffic counters of services and destinations.

/// Counters and rates kept by IPVS (`IPVS_STATS_ATTR_*`). Rates are per second, estimated by the
/// kernel about every two seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections scheduled.
    pub connections: u64,
    /// Incoming packets.
    pub packets_in: u64,
    /// Outgoing packets.
    pub packets_out: u64,
    /// Incoming bytes.
    pub bytes_in: u64,
    /// Outgoing bytes.
    pub bytes_out: u64,
    /// Connections per second.
    pub cps: u64,
    /// Incoming packets per second.
    pub packets_in_rate: u64,
    /// Outgoing packets per second.
    pub packets_out_rate: u64,
    /// Incoming bytes per second.
    pub bytes_in_rate: u64,
    /// Outgoing bytes per second.
    pub bytes_out_rate: u64,
}
