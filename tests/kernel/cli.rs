//! The ipvsd command line against a real kernel: errors people meet first, timeouts, `plan`,
//! and the periodic repair of rules changed by hand.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use crate::controller::{
    demo_rules, examples, ipvsd_bin, ipvsd_on_demo, run_demo_once, saved_rules, wait_until, Daemon,
};
use crate::pods::{ipvsadm_path, require_ipvs, run, ExternalClient};

/// Runs ipvsd expecting it to fail; returns its standard error.
fn ipvsd_fails(args: &[&str], uid: Option<u32>) -> String {
    let mut cmd = Command::new(ipvsd_bin());
    cmd.args(args);
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    let out = cmd.output().expect("starting ipvsd");
    assert!(
        !out.status.success(),
        "`ipvsd {}` should have failed; it printed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn demo() -> String {
    examples().join("demo").to_string_lossy().into_owned()
}

#[test]
fn an_unknown_scheduler_is_refused_at_start_with_a_clear_error() {
    require_ipvs();
    let demo = demo();
    let err = ipvsd_fails(
        &[
            "run",
            "--once",
            "--scheduler",
            "nosuch",
            "--manifests",
            &demo,
        ],
        None,
    );
    assert!(
        err.contains("scheduler \"nosuch\" is not available"),
        "unclear error:\n{err}"
    );
    assert!(saved_rules().is_empty(), "nothing is programmed");
}

#[test]
fn without_cap_net_admin_the_error_says_so() {
    require_ipvs();
    // An unprivileged user has no CAP_NET_ADMIN.
    let err = ipvsd_fails(&["list"], Some(65534));
    assert!(err.contains("CAP_NET_ADMIN"), "unclear error:\n{err}");
}

#[test]
fn timeouts_are_set_when_given_and_left_alone_otherwise() {
    require_ipvs();
    let before = run(&ipvsadm_path(), &["-L", "--timeout"]);
    run_demo_once(&[]);
    assert_eq!(run(&ipvsadm_path(), &["-L", "--timeout"]), before);
    run_demo_once(&[
        "--tcp-timeout",
        "15m1s",
        "--tcpfin-timeout",
        "121",
        "--udp-timeout",
        "301s",
    ]);
    assert_eq!(
        run(&ipvsadm_path(), &["-L", "--timeout"]),
        "Timeout (tcp tcpfin udp): 901 121 301\n"
    );
}

#[test]
fn plan_prints_the_rules_and_the_diff_against_the_kernel() {
    require_ipvs();
    let _node = ExternalClient::start("192.168.50.20/24", "192.168.50.10/24");
    let planned: BTreeSet<String> = ipvsd_on_demo("plan", &[])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(planned, demo_rules(&["192.168.50.10"]));
    assert!(saved_rules().is_empty(), "plan touches nothing");

    run_demo_once(&[]);
    let diff = ipvsd_on_demo("plan", &["--diff"]);
    assert_eq!(diff, "", "nothing to do after a sync");

    run(
        &ipvsadm_path(),
        &["-d", "-t", "10.96.0.10:80", "-r", "10.244.0.12:8080"],
    );
    run(&ipvsadm_path(), &["-D", "-u", "10.96.0.53:53"]);
    let diff = ipvsd_on_demo("plan", &["--diff"]);
    assert_eq!(
        diff,
        "-A -u 10.96.0.53:53 -s rr\n\
         -a -t 10.96.0.10:80 -r 10.244.0.12:8080 -m -w 1\n\
         -a -u 10.96.0.53:53 -r 10.244.0.11:5353 -m -w 1\n\
         -a -u 10.96.0.53:53 -r 10.244.0.12:5353 -m -w 1\n"
    );
}

#[test]
fn rules_deleted_by_hand_come_back_at_the_next_sync_period() {
    require_ipvs();
    let _node = ExternalClient::start("192.168.50.20/24", "192.168.50.10/24");
    let expected = demo_rules(&["192.168.50.10"]);
    let daemon = Daemon::start_synced(
        &examples().join("demo"),
        &["--sync-period", "2s"],
        &expected,
    );
    run(&ipvsadm_path(), &["-D", "-u", "10.96.0.53:53"]);
    run(
        &ipvsadm_path(),
        &["-d", "-t", "10.96.0.10:80", "-r", "10.244.0.12:8080"],
    );
    run(
        &ipvsadm_path(),
        &[
            "-e",
            "-t",
            "10.96.0.10:80",
            "-r",
            "10.244.0.11:8080",
            "-m",
            "-w",
            "7",
        ],
    );
    assert_ne!(saved_rules(), expected);
    wait_until("the repair", Duration::from_secs(6), || {
        saved_rules() == expected
    });
    assert!(daemon.terminate().success());
}

#[test]
fn a_service_asking_for_a_missing_scheduler_gets_the_default() {
    require_ipvs();
    let dir = tempfile::tempdir().expect("temp dir");
    let service = |name: &str, ip: &str, scheduler: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n  \
             annotations:\n    ipvsd.io/scheduler: {scheduler}\nspec:\n  clusterIP: {ip}\n  \
             ports:\n  - port: 80\n"
        )
    };
    std::fs::write(
        dir.path().join("services.yaml"),
        [
            service("exotic", "10.96.7.1", "nosuch"),
            service("weighted", "10.96.7.2", "wlc"),
        ]
        .join("---\n"),
    )
    .unwrap();
    let manifests = dir.path().to_str().unwrap();
    crate::controller::ipvsd(&["run", "--once", "--manifests", manifests]);
    let rules = saved_rules();
    assert!(rules.contains("-A -t 10.96.7.1:80 -s rr"), "{rules:#?}");
    assert!(rules.contains("-A -t 10.96.7.2:80 -s wlc"), "{rules:#?}");
}
