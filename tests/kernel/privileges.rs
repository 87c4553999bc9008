//! ipvsd needs CAP_NET_ADMIN and nothing more, as the README and the DaemonSet say: with every
//! other capability gone it programs a node completely, and without it it stops with an error
//! that names the capability, having changed nothing.

use std::collections::BTreeSet;
use std::process::{Command, Output};

use crate::controller::{demo_rules, examples, ipvsd_bin, saved_rules};
use crate::pods::{require_ipvs, run, ExternalClient};

/// `ipvsd run --once` on the demo manifests under `setpriv` with the bounding set `bounding`:
/// ipvsd keeps uid 0, but it and every program it runs (nft) hold only those capabilities.
fn run_demo_with_capabilities(bounding: &str) -> Output {
    let demo = examples().join("demo");
    Command::new("setpriv")
        .args(["--bounding-set", bounding, "--inh-caps", "-all", "--"])
        .arg(ipvsd_bin())
        .args(["run", "--once", "--node-name", "demo-node", "--manifests"])
        .arg(demo)
        .output()
        .expect("running setpriv (util-linux) with ipvsd")
}

/// The capabilities of a process started under `setpriv` with that bounding set, as the kernel
/// reports them (`CapEff` of /proc/self/status), so the test knows the drop took effect.
fn effective_capabilities(bounding: &str) -> String {
    let out = Command::new("setpriv")
        .args([
            "--bounding-set",
            bounding,
            "--inh-caps",
            "-all",
            "--",
            "cat",
            "/proc/self/status",
        ])
        .output()
        .expect("running setpriv");
    assert!(
        out.status.success(),
        "setpriv --bounding-set {bounding}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff in /proc/self/status")
        .trim()
        .to_string()
}

#[test]
fn cap_net_admin_alone_is_enough_and_without_it_the_error_names_it() {
    require_ipvs();
    let _node = ExternalClient::start("192.168.50.20/24", "192.168.50.10/24");
    // CAP_NET_ADMIN is bit 12.
    assert_eq!(
        effective_capabilities("-all,+net_admin"),
        "0000000000001000"
    );
    assert_eq!(effective_capabilities("-all"), "0000000000000000");

    let without = run_demo_with_capabilities("-all");
    let stderr = String::from_utf8_lossy(&without.stderr);
    eprintln!("without CAP_NET_ADMIN: {stderr}");
    assert!(!without.status.success(), "ipvsd ran without CAP_NET_ADMIN");
    assert!(
        stderr.contains("CAP_NET_ADMIN"),
        "the error does not name the capability: {stderr}"
    );
    assert_eq!(
        saved_rules(),
        BTreeSet::new(),
        "rules programmed without the capability"
    );

    let with = run_demo_with_capabilities("-all,+net_admin");
    assert!(
        with.status.success(),
        "ipvsd failed with CAP_NET_ADMIN alone: {}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert_eq!(saved_rules(), demo_rules(&["192.168.50.10"]));
    // The nftables table too: nft, run by ipvsd, held the capability as well.
    let table = run("nft", &["list", "table", "inet", "ipvsd"]);
    assert!(table.contains("chain nat-prerouting"), "{table}");
}
