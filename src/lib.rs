//! ipvsd: runs Kubernetes Services on Linux IPVS.
//!
//! Data flows one way: [`source`] → [`model`] → [`plan`] → [`dataplane`]; the [`controller`]
//! drives it and [`app`] wires the subcommands.

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod conntrack;
pub mod controller;
pub mod dataplane;
pub mod health;
pub mod health_check;
pub mod http;
pub mod labels;
pub mod metrics;
pub mod model;
pub mod netfilter;
pub mod node_addresses;
pub mod plan;
pub mod source;
