//! Building blocks for kernel tests: pods (a network namespace with a veth link to the test's
//! namespace and a pod server inside), clients that talk to them, and checks of the kernel.

use std::process::Command;

/// Fails the test when the kernel has no IPVS: a kernel test that silently passes on a kernel
/// without IPVS would prove nothing.
pub fn require_ipvs() {
    assert!(
        std::path::Path::new("/proc/net/ip_vs").exists(),
        "/proc/net/ip_vs is missing: this kernel has no IPVS (run kernel tests in the test bed: testbed/kernel-tests)"
    );
}

/// Runs a program and returns its standard output; panics with the command line, exit status and
/// standard error if it can't be started or fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program} {}`: {e}", args.join(" ")));
    assert!(
        output.status.success(),
        "`{program} {}` failed with {}: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
