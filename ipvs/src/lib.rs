//! A typed, async client for the Linux kernel's IPVS (IP Virtual Server) generic-netlink family.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod daemon;
mod destination;
mod error;
mod info;
pub mod ipvsadm;
mod service;
mod stats;

pub use daemon::{DaemonState, SyncDaemon};
pub use destination::{Destination, ForwardingMethod, Tunnel, TunnelFlags, TunnelType};
pub use error::Error;
pub use info::{Info, Timeouts};
pub use service::{Family, Protocol, Service, ServiceFlags, ServiceKey};
pub use stats::Stats;
