//! The only code that touches the kernel: IPVS through the `ipvs` crate, links and addresses
//! through rtnetlink, sysctls.

mod ipvs;
pub mod link;
pub mod node_addresses;
pub mod sysctl;

pub use self::ipvs::IpvsTable;
