//! Kernel tests of the IPVS client: they need a kernel with IPVS and root, so they are built only
//! with `--features kernel-tests`. The test bed (`testbed/kernel-tests`) runs each of them in a
//! fresh network namespace inside a VM booted on Debian's stock kernel.
