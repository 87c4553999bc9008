//! A typed, async client for the Linux kernel's IPVS (IP Virtual Server) generic-netlink family.
//!
//! ```no_run
//! use std::net::IpAddr;
//!
//! use ipvs::{Client, Destination, Protocol, Request, Service, ServiceFlags, ServiceKey};
//!
//! # async fn example() -> Result<(), ipvs::Error> {
//! let client = Client::connect().await?;
//!
//! // One virtual service, source hashing with fallback and port, persistent for 10 minutes.
//! let key = ServiceKey::Addr {
//!     address: "10.96.0.20".parse::<IpAddr>().unwrap(),
//!     protocol: Protocol::Tcp,
//!     port: 443,
//! };
//! let mut service = Service::new(key, "sh");
//! let sched_flags = ServiceFlags::parse_sched_flags("sh-fallback,sh-port").unwrap();
//! service.flags = ServiceFlags::PERSISTENT | sched_flags;
//! service.timeout = 600;
//! client.add_service(&service).await?;
//!
//! // Many writes at once: packed into datagrams on one socket, one result per request.
//! let requests = ["10.244.0.7", "10.244.0.8"].into_iter().map(|a| {
//!     Request::AddDestination(key, Destination::new(a.parse().unwrap(), 8443))
//! });
//! for result in client.execute(requests).await {
//!     result?;
//! }
//!
//! for dest in client.destinations(&key).await? {
//!     println!("{}:{} weight {}", dest.address, dest.port, dest.weight);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The layers, bottom up: [`message`] is the wire (every `IPVS_CMD_*` and attribute of
//! `linux/ip_vs.h` as netlink-packet types, with conversions to the typed objects);
//! [`Client`] owns two generic-netlink sockets (an async connection for reads, a non-blocking
//! socket for batched writes), resolves the family and turns kernel errnos into [`Error`]s. Writes never wait one round trip each: [`Client::execute`] packs up to
//! [`BATCH_LEN`] of them into one datagram, which the kernel handles inside `sendmsg`, and asks
//! for one ack per datagram; that is what makes loading a large table fast.
//! The `ipvsadm` module (default feature `ipvsadm`) prints a table as ipvsadm 1.31 does.
//!
//! [`Client::connect`] needs a tokio runtime (it spawns the connection task on the current one);
//! [`Client::builder`] sets the read timeout and can open the client in another network
//! namespace.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod daemon;
mod destination;
mod dump;
mod error;
mod info;
#[cfg(feature = "ipvsadm")]
pub mod ipvsadm;
pub mod message;
mod service;
mod stats;

pub use client::{
    Client, ClientBuilder, Request, BATCH_LEN, DEFAULT_TIMEOUT, EXECUTE_CHUNK, NAME_MAX_LEN,
};
pub use daemon::{DaemonState, SyncDaemon};
pub use destination::{Destination, ForwardingMethod, Tunnel, TunnelFlags, TunnelType};
pub use dump::{destinations_of_dump, services_of_dump, Dump, EntryKind, Undecodable};
pub use error::Error;
pub use info::{Info, Timeouts};
pub use service::{Family, ParseFlagsError, Protocol, Service, ServiceFlags, ServiceKey};
pub use stats::Stats;
