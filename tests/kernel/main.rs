//! Kernel tests: they need a kernel with IPVS, dummy and veth, and root. The test bed builds them
//! with `--features kernel-tests` and runs each in a fresh network namespace inside a VM.

mod bench;
mod cli;
mod cluster;
mod conntrack;
mod controller;
mod guards;
mod list;
mod matrix;
mod nftables;
mod pods;
mod privileges;
mod robust;
mod rtnl;
mod testbed;
mod traffic;
