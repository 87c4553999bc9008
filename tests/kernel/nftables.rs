//! ipvsd's nftables table on a real kernel: written by `run`, kept across a restart, removed by
//! `cleanup`, and every other table left exactly as it was.

use std::process::Command;
use std::time::Duration;

use crate::controller::{
    demo_rules, editable_demo, examples, ipvsd, ipvsd_bin, run_demo_once, wait_until, Daemon,
};
use crate::pods::{require_ipvs, run, ExternalClient};

/// `nft ARGS...`'s output; panics if it fails.
fn nft(args: &[&str]) -> String {
    run("nft", args)
}

/// The elements of one of ipvsd's sets as `nft list set` prints them, protocols by name even
/// where the machine has no /etc/protocols for nft to name them.
fn set_of(name: &str) -> String {
    nft(&["list", "set", "inet", "ipvsd", name])
        .replace(" . 6 . ", " . tcp . ")
        .replace(" . 17 . ", " . udp . ")
        .replace(" . 132 . ", " . sctp . ")
}

/// Whether ipvsd's table exists.
fn has_ipvsd_table() -> bool {
    nft(&["list", "tables"])
        .lines()
        .any(|l| l.trim() == "table inet ipvsd")
}

/// Tables of others, as an operator or another agent would leave them: one in the same family
/// as ipvsd's, with a set, a counter and a base chain at the hooks ipvsd uses, and an `ip nat`
/// table with a masquerade rule.
const FOREIGN: &str = "table inet operator {
	set blocked {
		type ipv4_addr . inet_proto . inet_service
		elements = { 10.96.0.10 . tcp . 80 }
	}
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 2222 counter accept
	}
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		ip saddr 172.16.0.0/12 masquerade
	}
}
table ip nat {
	chain POSTROUTING {
		type nat hook postrouting priority 100; policy accept;
		oifname \"eth9\" masquerade
	}
}
";

fn foreign_tables() -> String {
    nft(&["list", "table", "inet", "operator"]) + &nft(&["list", "table", "ip", "nat"])
}

#[test]
fn run_writes_its_table_and_cleanup_removes_it_leaving_other_tables_alone() {
    require_ipvs();
    let _node = ExternalClient::start("192.168.50.20/24", "192.168.50.10/24");
    let path = std::env::temp_dir().join("foreign.nft");
    std::fs::write(&path, FOREIGN).unwrap();
    nft(&["-f", path.to_str().unwrap()]);
    let before = foreign_tables();

    run_demo_once(&["--cluster-cidr", "10.244.0.0/16"]);
    assert!(has_ipvsd_table(), "{}", nft(&["list", "ruleset"]));
    let cluster_ips = set_of("cluster-ips-v4");
    for element in [
        "10.96.0.10 . tcp . 80",
        "10.96.0.53 . udp . 53",
        "10.96.0.20 . tcp . 443",
    ] {
        assert!(
            cluster_ips.contains(element),
            "{element} missing:\n{cluster_ips}"
        );
    }
    let masquerade = set_of("masquerade-services-v4");
    assert!(
        masquerade.contains("192.168.50.10 . tcp . 30080"),
        "{masquerade}"
    );
    let services = nft(&["list", "chain", "inet", "ipvsd", "services"]);
    assert!(services.contains("ip saddr != 10.244.0.0/16"), "{services}");
    assert_eq!(foreign_tables(), before, "run changed another table");

    // A second run replaces the table in place: same content, nothing duplicated.
    let table = nft(&["list", "table", "inet", "ipvsd"]);
    run_demo_once(&["--cluster-cidr", "10.244.0.0/16"]);
    assert_eq!(nft(&["list", "table", "inet", "ipvsd"]), table);

    ipvsd(&["cleanup"]);
    assert!(!has_ipvsd_table(), "{}", nft(&["list", "ruleset"]));
    assert_eq!(foreign_tables(), before, "cleanup changed another table");
    // Nothing left to clean: still fine.
    ipvsd(&["cleanup"]);
}

#[test]
fn the_table_follows_changes_and_stays_when_ipvsd_stops() {
    require_ipvs();
    let _node = ExternalClient::start("192.168.50.20/24", "192.168.50.10/24");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(examples().join("demo")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let daemon = Daemon::start_synced(dir.path(), &[], &demo_rules(&["192.168.50.10"]));
    wait_until("the table", Duration::from_secs(10), has_ipvsd_table);

    std::fs::write(
        dir.path().join("extra.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: extra\n  namespace: default\n\
         spec:\n  clusterIP: 10.96.9.9\n  ports:\n  - port: 8125\n    protocol: UDP\n",
    )
    .unwrap();
    wait_until("the new element", Duration::from_secs(10), || {
        set_of("cluster-ips-v4").contains("10.96.9.9 . udp . 8125")
    });
    std::fs::remove_file(dir.path().join("extra.yaml")).unwrap();
    wait_until("the element gone", Duration::from_secs(10), || {
        !set_of("cluster-ips-v4").contains("10.96.9.9")
    });

    let table = nft(&["list", "table", "inet", "ipvsd"]);
    assert!(daemon.terminate().success());
    // Like the IPVS rules, the table stays so traffic keeps flowing while ipvsd restarts.
    assert_eq!(nft(&["list", "table", "inet", "ipvsd"]), table);
}

#[test]
fn without_nft_run_stops_with_a_clear_error() {
    require_ipvs();
    let demo = examples().join("demo");
    let out = Command::new(ipvsd_bin())
        .args(["run", "--once", "--node-name", "demo-node", "--manifests"])
        .arg(&demo)
        .env("PATH", "/nonexistent")
        .output()
        .expect("starting ipvsd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ipvsd ran without nft: {err}");
    assert!(
        err.contains("the nft tool was not found"),
        "unclear error:\n{err}"
    );
    assert!(!has_ipvsd_table());
}

/// The kernel's handle of ipvsd's table: a replacement (delete, then add) gives it a new one.
fn table_handle() -> String {
    let listed = nft(&["-a", "list", "table", "inet", "ipvsd"]);
    let first = listed.lines().next().unwrap_or_default();
    first
        .split_once("# handle ")
        .map(|(_, h)| h.trim().to_owned())
        .unwrap_or_else(|| panic!("no handle in {first:?}"))
}

/// A LoadBalancer Service with source ranges (a host and a network) and a Local policy, so the
/// interval set and the map are checked too.
const GUARDED: &str = "apiVersion: v1
kind: Service
metadata:
  name: guarded
  namespace: default
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.70
  externalTrafficPolicy: Local
  healthCheckNodePort: 32070
  loadBalancerSourceRanges:
  - 192.168.50.101/32
  - 10.1.0.0/16
  ports:
  - port: 80
    nodePort: 30070
status:
  loadBalancer:
    ingress:
    - ip: 192.0.2.70
";

/// The lines of a JSON log that end a repair.
fn repair_lines(log: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .expect("reading ipvsd's log")
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("repair: kernel read"))
        })
        .collect()
}

#[test]
fn the_repair_lists_the_table_and_replaces_it_only_when_it_was_changed() {
    require_ipvs();
    let _node = ExternalClient::start("192.168.50.20/24", "192.168.50.10/24");
    let dir = editable_demo();
    std::fs::write(dir.path().join("guarded.yaml"), GUARDED).unwrap();
    let log = dir.path().join("ipvsd.log");
    let daemon = Daemon::start_logging(dir.path(), &["--sync-period", "1s"], &log);
    wait_until("the table", Duration::from_secs(20), || {
        has_ipvsd_table() && set_of("firewall-allow-v4").contains("10.1.0.0/16")
    });
    let handle = table_handle();
    // Three repairs: each lists the table, finds it as written, and leaves it.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(
        table_handle(),
        handle,
        "the table was replaced though nothing changed it:\n{}",
        nft(&["list", "table", "inet", "ipvsd"])
    );
    // And each found every set as written by its digest alone: what nft lists, read back
    // into the form ipvsd writes, hashes as ipvsd's own elements do.
    let repairs = repair_lines(&log);
    assert!(
        !repairs.is_empty(),
        "no repair logged in 3.5 s with a 1 s period"
    );
    for repair in &repairs {
        assert_eq!(
            repair["fields"]["sets_compared"], 0,
            "a set of the table as written was compared element by element: {repair}"
        );
    }

    // An element deleted by hand: the next repair sees it and writes the table again.
    nft(&[
        "delete",
        "element",
        "inet",
        "ipvsd",
        "cluster-ips-v4",
        "{ 10.96.0.10 . tcp . 80 }",
    ]);
    wait_until("the element back", Duration::from_secs(6), || {
        set_of("cluster-ips-v4").contains("10.96.0.10 . tcp . 80")
    });
    assert_ne!(table_handle(), handle);
    // That repair compared the one set whose digest differed.
    assert!(
        repair_lines(&log)
            .iter()
            .any(|r| r["fields"]["sets_compared"] == 1),
        "no repair compared the changed set: {:?}",
        repair_lines(&log)
    );

    // A chain flushed by hand: its rules come back.
    nft(&["flush", "chain", "inet", "ipvsd", "filter-input"]);
    wait_until("the port filter back", Duration::from_secs(6), || {
        nft(&["list", "chain", "inet", "ipvsd", "filter-input"]).contains("reject")
    });
    assert!(daemon.terminate().success());
}
