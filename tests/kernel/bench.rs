//! The ipvsd benchmarks (`examples/bench_sync.rs`, `examples/bench_nftables.rs`) on tiny tables: it keeps the benchmark
//! working; it times nothing and asserts no time.

use std::path::PathBuf;
use std::process::Command;

use crate::pods::require_ipvs;

/// The benchmark example: in the test bed at /testbed/bin, else built beside this test binary.
fn bench_sync_path() -> PathBuf {
    example_path("bench_sync")
}

/// An example binary: in the test bed at /testbed/bin, else built beside this test binary.
fn example_path(name: &str) -> PathBuf {
    let staged = PathBuf::from("/testbed/bin").join(name);
    if staged.exists() {
        return staged;
    }
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join(name))
        .filter(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{name} is neither in /testbed/bin nor built beside the test binary")
        })
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

#[test]
fn the_nftables_benchmark_runs_on_small_tables_and_prints_its_results() {
    require_ipvs();
    let out = Command::new(example_path("bench_nftables"))
        .env("BENCH_SERVICES", "10,30")
        .env("BENCH_ENDPOINTS", "3")
        .env("BENCH_CHANGES", "2")
        .output()
        .expect("running bench_nftables");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench_nftables failed ({}): {}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "nftables table for 10 NodePort Services x 3 endpoints:",
        "nftables table for 30 NodePort Services x 3 endpoints:",
        "full table (first sync):",
        "one Service added (<= ",
        "one local endpoint added (1 element):",
        "reference, whole table rewritten:",
        "one Service added at 30 Services / at 10:",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
}
