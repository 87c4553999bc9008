//! The ipvsd binary on any host: `plan` needs no IPVS, and the errors people meet first are
//! clear.

use std::process::{Command, Output};

fn ipvsd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipvsd"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running ipvsd")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn plan_prints_the_demo_rules_as_ipvsadm_save_lines() {
    // No node address is 0.0.0.0, so the output is the same on every host:
    // cluster IPs only.
    let out = ipvsd(&[
        "plan",
        "--manifests",
        "examples/demo",
        "--node-name",
        "demo-node",
        "--nodeport-addresses",
        "0.0.0.0/32",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    lines.sort();
    let mut expected: Vec<&str> = vec![
        "-A -t 10.96.0.10:80 -s rr",
        "-a -t 10.96.0.10:80 -r 10.244.0.11:8080 -m -w 1",
        "-a -t 10.96.0.10:80 -r 10.244.0.12:8080 -m -w 1",
        "-a -t 10.96.0.10:80 -r 10.244.0.13:8080 -m -w 1",
        "-A -u 10.96.0.53:53 -s rr",
        "-a -u 10.96.0.53:53 -r 10.244.0.11:5353 -m -w 1",
        "-a -u 10.96.0.53:53 -r 10.244.0.12:5353 -m -w 1",
        "-A -t 10.96.0.20:443 -s rr -p 600",
        "-a -t 10.96.0.20:443 -r 10.244.0.12:8443 -m -w 1",
        "-a -t 10.96.0.20:443 -r 10.244.0.13:8443 -m -w 1",
        "-A -t 10.96.0.30:80 -s mh -b mh-port",
        "-a -t 10.96.0.30:80 -r 10.244.0.11:8080 -m -w 1",
        "-a -t 10.96.0.30:80 -r 10.244.0.12:8080 -m -w 1",
        "-a -t 10.96.0.30:80 -r 10.244.0.13:8080 -m -w 1",
        "-A -t 10.96.0.60:80 -s rr",
        "-a -t 10.96.0.60:80 -r 10.244.0.11:8080 -m -w 1",
        "-A -t [fd00:96::60]:80 -s rr",
        "-a -t [fd00:96::60]:80 -r [fd00:244::11]:8080 -m -w 1",
    ];
    expected.sort();
    assert_eq!(lines, expected);
}

#[test]
fn plan_reports_bad_objects_by_file_and_name_and_keeps_the_rest() {
    let out = ipvsd(&[
        "plan",
        "--manifests",
        "examples/bad",
        "--node-name",
        "n",
        "--nodeport-addresses",
        "0.0.0.0/32",
        "--log-format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "-A -t 10.96.1.20:80 -s rr\n");
    let stderr = text(&out.stderr);
    for problem in [
        "examples/bad/web.yaml: Service default/web: spec.ports[0].port 70000 out of range",
        "Service default/api: spec.clusterIP \\\"10.96.1.999\\\" is not an IP address",
        "Service default/<unnamed>: metadata.name is required",
    ] {
        assert!(stderr.contains(problem), "{problem:?} not in:\n{stderr}");
    }
    // JSON logs: one object per line.
    for line in stderr.lines() {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not JSON: {line}"
        );
    }
}

#[test]
fn a_bad_flag_value_is_refused_naming_the_flag() {
    let out = ipvsd(&["run", "--scheduler-flags", "sh-port,bogus", "--once"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--scheduler-flags"), "{stderr}");
    assert!(stderr.contains("bogus"), "{stderr}");
}

#[test]
fn without_ipvs_the_error_says_to_load_ip_vs() {
    let out = ipvsd(&["list"]);
    if std::path::Path::new("/proc/net/ip_vs").exists() {
        // This host has IPVS: listing works for root, and otherwise names the capability.
        let stderr = text(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("CAP_NET_ADMIN"),
            "{stderr}"
        );
    } else {
        assert!(!out.status.success());
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("modprobe ip_vs"),
            "unclear error:\n{stderr}"
        );
    }
}

/// The manifest benchmark (`examples/bench_manifests.rs`) on a tiny size, so that it keeps
/// working: it times nothing and asserts no time. `cargo test` builds the examples beside the
/// test binaries.
#[test]
fn the_manifest_benchmark_runs_on_a_few_services() {
    let exe = std::env::current_exe().expect("test binary path");
    let bench = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("bench_manifests"))
        .expect("a target directory");
    assert!(
        bench.exists(),
        "{} is not built: run the tests with `cargo test`, which builds the examples",
        bench.display()
    );
    let out = Command::new(&bench)
        .env("BENCH_SERVICES", "3,20")
        .env("BENCH_ENDPOINTS", "2")
        .env("BENCH_RUNS", "1")
        .env("IPVSD_BIN", env!("CARGO_BIN_EXE_ipvsd"))
        .output()
        .expect("running bench_manifests");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "bench_manifests failed ({}): {}\n{stdout}",
        out.status,
        text(&out.stderr)
    );
    for line in [
        "| 3 | two files | 2 |",
        "| 3 | per object | 6 |",
        "| 20 | two files | 2 |",
        "| 20 | per object | 40 |",
        "20 Services (",
        "two files / per object = ",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
}
