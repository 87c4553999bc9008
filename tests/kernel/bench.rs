//! The ipvsd benchmark (`examples/bench_sync.rs`) on a tiny table: it keeps the benchmark
//! working; it times nothing and asserts no time.

use std::path::PathBuf;
use std::process::Command;

use crate::pods::require_ipvs;

/// The benchmark example: in the test bed at /testbed/bin, else built beside this test binary.
fn bench_sync_path() -> PathBuf {
    let staged = PathBuf::from("/testbed/bin/bench_sync");
    if staged.exists() {
        return staged;
    }
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("bench_sync"))
        .filter(|p| p.exists())
        .expect("bench_sync is neither in /testbed/bin nor built beside the test binary")
}

#[test]
fn the_sync_benchmark_runs_on_a_small_table_and_prints_its_results() {
    require_ipvs();
    let out = Command::new(bench_sync_path())
        .env("BENCH_SERVICES", "20")
        .env("BENCH_ENDPOINTS", "3")
        .env("BENCH_CHANGES", "2")
        .env("IPVSD_BIN", crate::controller::ipvsd_bin())
        .output()
        .expect("running bench_sync");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench_sync failed ({}): {}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "table: 20 ClusterIP services x 3 endpoints (80 rules, 20 addresses)",
        "full sync, ipvsd run --once:",
        "full sync, ip -batch + ipvsadm -R:",
        "full sync ratio (reference/ipvsd):",
        "IPVS writes ratio (ipvsadm -R/ipvsd):",
        "ipvsd peak RSS (VmHWM) after full sync:",
        "one full dump, ipvsadm -Sn:",
        "one endpoint added, 2 changes",
        "edit -> visible in ipvsadm -Ln -t:",
        "edit -> manifests re-read (log):",
        "ipvsd's sync of the change (log):",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
}
