//! ipvsd: runs Kubernetes Services on Linux IPVS.
//!
//! Data flows one way: [`source`] → [`model`] → [`plan`] → [`dataplane`].

#![forbid(unsafe_code)]

pub mod controller;
pub mod dataplane;
pub mod health;
pub mod http;
pub mod metrics;
pub mod model;
pub mod node_addresses;
pub mod plan;
pub mod source;
