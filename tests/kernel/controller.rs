//! ipvsd end to end: manifests in, `ipvsd run` in the middle, rules in the kernel and traffic
//! through them to pods out.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::pods::{
    addresses_of, ip, ipvsadm_path, require_ipvs, run, tcp_hello, udp_hello, ExternalClient, Pod,
    TcpConversation,
};

/// The node address the demo manifests are written for.
const NODE: &str = "192.168.50.10";

/// The ipvsd binary (one definition, shared with the cluster test bed).
pub(crate) use crate::cluster::ipvsd_bin;

/// The repository's examples/ directory (`$IPVSD_EXAMPLES` in the test bed).
pub(crate) fn examples() -> PathBuf {
    std::env::var_os("IPVSD_EXAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
}

/// Runs ipvsd to completion; panics with its output if it fails.
pub(crate) fn ipvsd(args: &[&str]) -> String {
    run(ipvsd_bin().to_str().expect("utf-8 path"), args)
}

/// `ipvsadm -Sn` as a set of lines.
pub(crate) fn saved_rules() -> BTreeSet<String> {
    run(&ipvsadm_path(), &["-Sn"])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Polls `done` every 50 ms until it holds; panics naming `what` after `limit`. Returns how long
/// it took.
pub(crate) fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if done() {
            return start.elapsed();
        }
        if start.elapsed() >= limit {
            let table = run(&ipvsadm_path(), &["-Ln"]);
            panic!("{what}: not within {limit:?}; the table is now:\n{table}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ipvsd run --once` on the demo manifests, for node `demo-node`, with `extra` flags.
pub(crate) fn run_demo_once(extra: &[&str]) -> String {
    ipvsd_on_demo("run", &[&["--once"], extra].concat())
}

/// An ipvsd subcommand on the demo manifests, for node `demo-node`.
pub(crate) fn ipvsd_on_demo(subcommand: &str, extra: &[&str]) -> String {
    let demo = examples().join("demo");
    let mut args = vec![
        subcommand,
        "--node-name",
        "demo-node",
        "--manifests",
        demo.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    ipvsd(&args)
}

/// The rules the demo manifests give on a node whose only address is `NODE`.
pub(crate) fn demo_rules(node_addresses: &[&str]) -> BTreeSet<String> {
    let mut text = String::from(
        "-A -t 10.96.0.10:80 -s rr
-a -t 10.96.0.10:80 -r 10.244.0.11:8080 -m -w 1
-a -t 10.96.0.10:80 -r 10.244.0.12:8080 -m -w 1
-a -t 10.96.0.10:80 -r 10.244.0.13:8080 -m -w 1
-A -u 10.96.0.53:53 -s rr
-a -u 10.96.0.53:53 -r 10.244.0.11:5353 -m -w 1
-a -u 10.96.0.53:53 -r 10.244.0.12:5353 -m -w 1
-A -t 10.96.0.20:443 -s rr -p 600
-a -t 10.96.0.20:443 -r 10.244.0.12:8443 -m -w 1
-a -t 10.96.0.20:443 -r 10.244.0.13:8443 -m -w 1
-A -t 10.96.0.30:80 -s mh -b mh-port
-a -t 10.96.0.30:80 -r 10.244.0.11:8080 -m -w 1
-a -t 10.96.0.30:80 -r 10.244.0.12:8080 -m -w 1
-a -t 10.96.0.30:80 -r 10.244.0.13:8080 -m -w 1
-A -t 10.96.0.60:80 -s rr
-a -t 10.96.0.60:80 -r 10.244.0.11:8080 -m -w 1
-A -t [fd00:96::60]:80 -s rr
-a -t [fd00:96::60]:80 -r [fd00:244::11]:8080 -m -w 1
",
    );
    for node in node_addresses {
        text.push_str(&format!("-A -t {node}:30080 -s rr\n"));
        for pod in 11..=13 {
            text.push_str(&format!(
                "-a -t {node}:30080 -r 10.244.0.{pod}:8080 -m -w 1\n"
            ));
        }
    }
    lines(&text)
}

fn demo_cluster_ips() -> BTreeSet<IpAddr> {
    [
        "10.96.0.10",
        "10.96.0.53",
        "10.96.0.20",
        "10.96.0.30",
        "10.96.0.60",
        "fd00:96::60",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect()
}

/// A node address on a link to an external client.
fn node_with_external_client() -> ExternalClient {
    ExternalClient::start("192.168.50.20/24", &format!("{NODE}/24"))
}

/// The demo's pods: web (8080), dns (5353/udp) and sticky (8443) all answer on every pod.
fn demo_pods() -> Vec<Pod> {
    (11..=13)
        .map(|n| {
            Pod::start(
                &format!("pod{n}"),
                &format!("10.244.0.{n}/24"),
                "10.244.0.1",
                &[8080, 8443],
                &[5353],
            )
        })
        .collect()
}

/// Copies the demo manifests into a fresh directory a test may edit.
pub(crate) fn editable_demo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(examples().join("demo")).expect("examples/demo") {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// A running `ipvsd run`; killed (SIGKILL) when dropped unless terminated.
pub(crate) struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    pub(crate) fn start(manifests: &Path, extra: &[&str]) -> Daemon {
        Daemon::spawn(Command::new(ipvsd_bin()), manifests, extra)
    }

    /// Starts ipvsd logging JSON lines into `log` (the file is created).
    pub(crate) fn start_logging(manifests: &Path, extra: &[&str], log: &Path) -> Daemon {
        let mut cmd = Command::new(ipvsd_bin());
        cmd.args(["--log-format", "json"])
            .stderr(std::fs::File::create(log).expect("creating the log file"));
        Daemon::spawn(cmd, manifests, extra)
    }

    fn spawn(mut cmd: Command, manifests: &Path, extra: &[&str]) -> Daemon {
        cmd.args(["run", "--node-name", "demo-node", "--manifests"])
            .arg(manifests)
            .args(["--health-address", "", "--metrics-address", ""])
            .args(["--min-sync-period", "0ms"])
            .args(extra)
            .stdin(Stdio::null());
        let child = cmd.spawn().expect("starting ipvsd run");
        Daemon { child: Some(child) }
    }

    /// Starts ipvsd and waits until the kernel holds `expected` (`ipvsadm -Sn`).
    pub(crate) fn start_synced(
        manifests: &Path,
        extra: &[&str],
        expected: &BTreeSet<String>,
    ) -> Daemon {
        let daemon = Daemon::start(manifests, extra);
        wait_until("first sync", Duration::from_secs(20), || {
            saved_rules() == *expected
        });
        daemon
    }

    /// Sends SIGTERM and waits for the exit.
    pub(crate) fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        run("kill", &["-TERM", &child.id().to_string()]);
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "ipvsd did not exit within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn has_rule(rule: &str) -> bool {
    saved_rules().contains(rule)
}

#[test]
fn example_manifests_become_the_expected_rules_and_addresses() {
    require_ipvs();
    let _node = node_with_external_client();
    run_demo_once(&[]);
    assert_eq!(saved_rules(), demo_rules(&[NODE]));
    assert_eq!(addresses_of("kube-ipvs0"), demo_cluster_ips());
    let link = ip(&["-o", "link", "show", "dev", "kube-ipvs0"]);
    assert!(
        link.contains("state DOWN"),
        "kube-ipvs0 is left down: {link}"
    );

    // A second run changes nothing: it adopts what it finds.
    run_demo_once(&[]);
    assert_eq!(saved_rules(), demo_rules(&[NODE]));
}

#[test]
fn traffic_through_cluster_ips_and_every_node_address_reaches_the_pods() {
    require_ipvs();
    let external = node_with_external_client();
    let _pods = demo_pods();
    run_demo_once(&[]);
    // The pods' gateway is a node address too, so it gets the NodePort as well.
    assert_eq!(saved_rules(), demo_rules(&[NODE, "10.244.0.1"]));

    let all: BTreeSet<String> = ["pod11", "pod12", "pod13"].map(String::from).into();
    let cluster_ip: SocketAddr = "10.96.0.10:80".parse().unwrap();
    let answers: BTreeSet<String> = (0..6).map(|_| tcp_hello(cluster_ip)).collect();
    assert_eq!(
        answers, all,
        "round robin over the cluster IP reaches every pod"
    );

    let node_port: SocketAddr = format!("{NODE}:30080").parse().unwrap();
    let answers: BTreeSet<String> = (0..6).map(|_| external.tcp_hello(node_port)).collect();
    assert_eq!(answers, all, "the NodePort from outside reaches every pod");

    let gateway_port: SocketAddr = "10.244.0.1:30080".parse().unwrap();
    let answers: BTreeSet<String> = (0..6).map(|_| tcp_hello(gateway_port)).collect();
    assert_eq!(
        answers, all,
        "the NodePort on the other node address reaches every pod"
    );

    let dns: SocketAddr = "10.96.0.53:53".parse().unwrap();
    let answers: BTreeSet<String> = (0..4).map(|_| udp_hello(dns)).collect();
    assert_eq!(
        answers,
        ["pod11", "pod12"].map(String::from).into(),
        "UDP cluster IP"
    );

    // Session affinity: one client keeps its pod.
    let sticky: SocketAddr = "10.96.0.20:443".parse().unwrap();
    let first = tcp_hello(sticky);
    for _ in 0..4 {
        assert_eq!(
            tcp_hello(sticky),
            first,
            "persistence keeps the client on one pod"
        );
    }
}

#[test]
fn a_running_ipvsd_follows_manifest_edits_additions_and_removals() {
    require_ipvs();
    let _node = node_with_external_client();
    let dir = editable_demo();
    let daemon = Daemon::start_synced(dir.path(), &[], &demo_rules(&[NODE]));

    // Edit: web's port 80 becomes 81.
    let web = dir.path().join("web.yaml");
    let text = std::fs::read_to_string(&web).unwrap();
    std::fs::write(&web, text.replace("    port: 80\n", "    port: 81\n")).unwrap();
    let took = wait_until("the edit", Duration::from_secs(5), || {
        has_rule("-A -t 10.96.0.10:81 -s rr") && !has_rule("-A -t 10.96.0.10:80 -s rr")
    });
    eprintln!("edit applied after {took:?}");
    // Applied as changes, not at the next repair (30 s away): well within seconds, with room
    // for a VM that shares its host's cores.
    assert!(took < Duration::from_secs(3), "an edit took {took:?}");

    // Removal: the dns file goes, and with it its rule and its address.
    std::fs::remove_file(dir.path().join("dns.yaml")).unwrap();
    let took = wait_until("the removal", Duration::from_secs(5), || {
        !has_rule("-A -u 10.96.0.53:53 -s rr")
    });
    assert!(took < Duration::from_secs(3), "a removal took {took:?}");
    wait_until("the address removal", Duration::from_secs(5), || {
        !addresses_of("kube-ipvs0").contains(&"10.96.0.53".parse::<IpAddr>().unwrap())
    });

    // Addition: a new file with a new Service.
    std::fs::write(
        dir.path().join("extra.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: extra\n  namespace: default\nspec:\n  clusterIP: 10.96.0.99\n  ports:\n  - port: 8000\n    protocol: TCP\n",
    )
    .unwrap();
    let took = wait_until("the addition", Duration::from_secs(5), || {
        has_rule("-A -t 10.96.0.99:8000 -s rr")
    });
    assert!(took < Duration::from_secs(3), "an addition took {took:?}");
    assert!(addresses_of("kube-ipvs0").contains(&"10.96.0.99".parse::<IpAddr>().unwrap()));

    // A bad object is skipped; the rest keeps working and ipvsd keeps running.
    std::fs::write(
        dir.path().join("broken.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nspec:\n  clusterIP: 10.96.0.300\n  ports:\n  - port: 80\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(has_rule("-A -t 10.96.0.99:8000 -s rr"));
    assert!(daemon.terminate().success());
}

#[test]
fn added_and_removed_node_addresses_get_and_lose_their_node_ports() {
    require_ipvs();
    let _node = node_with_external_client();
    let dir = editable_demo();
    let daemon = Daemon::start_synced(dir.path(), &[], &demo_rules(&[NODE]));
    ip(&["link", "add", "eth9", "type", "dummy"]);
    ip(&["link", "set", "eth9", "up"]);
    ip(&["addr", "add", "192.168.60.10/24", "dev", "eth9"]);
    let took = wait_until("the new node address", Duration::from_secs(5), || {
        saved_rules() == demo_rules(&[NODE, "192.168.60.10"])
    });
    assert!(
        took < Duration::from_secs(1),
        "a new node address took {took:?}"
    );
    ip(&["addr", "del", "192.168.60.10/24", "dev", "eth9"]);
    let took = wait_until("the removed node address", Duration::from_secs(5), || {
        saved_rules() == demo_rules(&[NODE])
    });
    assert!(
        took < Duration::from_secs(1),
        "a removed node address took {took:?}"
    );
    assert!(daemon.terminate().success());
}

/// `Conns` of one virtual server in `ipvsadm -Ln --stats`.
fn connections_of(service_line_prefix: &str) -> u64 {
    let stats = run(&ipvsadm_path(), &["-Ln", "--stats"]);
    let line = stats
        .lines()
        .find(|l| l.starts_with(service_line_prefix))
        .unwrap_or_else(|| panic!("no {service_line_prefix:?} in:\n{stats}"));
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn sigterm_leaves_the_rules_and_a_restart_keeps_their_counters() {
    require_ipvs();
    let _node = node_with_external_client();
    let _pods = demo_pods();
    let dir = editable_demo();
    let expected = demo_rules(&[NODE, "10.244.0.1"]);
    let daemon = Daemon::start_synced(dir.path(), &[], &expected);
    let cluster_ip: SocketAddr = "10.96.0.10:80".parse().unwrap();
    for _ in 0..5 {
        tcp_hello(cluster_ip);
    }
    assert!(daemon.terminate().success(), "ipvsd exits 0 on SIGTERM");
    assert_eq!(saved_rules(), expected, "SIGTERM leaves the rules in place");
    assert_eq!(addresses_of("kube-ipvs0"), demo_cluster_ips());
    // The estimator publishes counters every 2 s.
    wait_until("the counters", Duration::from_secs(10), || {
        connections_of("TCP  10.96.0.10:80") >= 5
    });
    let before = connections_of("TCP  10.96.0.10:80");

    let daemon = Daemon::start(dir.path(), &[]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(saved_rules(), expected);
    assert_eq!(
        connections_of("TCP  10.96.0.10:80"),
        before,
        "a restart leaves unchanged virtual servers and their counters alone"
    );
    assert_eq!(
        tcp_hello(cluster_ip).len(),
        5,
        "traffic flows after the restart"
    );
    assert!(daemon.terminate().success());
}

/// Whether the running kernel is older than `major.minor`.
fn kernel_before(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap()) < (major, minor)
}

#[test]
fn rate_estimation_off_is_set_and_before_6_2_freezes_the_counters_until_it_is_on_again() {
    require_ipvs();
    let _node = node_with_external_client();
    let _pods = demo_pods();
    let dir = editable_demo();
    let expected = demo_rules(&[NODE, "10.244.0.1"]);
    let estimation = "/proc/sys/net/ipv4/vs/run_estimation";
    assert_eq!(std::fs::read_to_string(estimation).unwrap().trim(), "1");
    let daemon = Daemon::start_synced(dir.path(), &["--rate-estimation", "off"], &expected);
    assert_eq!(std::fs::read_to_string(estimation).unwrap().trim(), "0");
    let cluster_ip: SocketAddr = "10.96.0.10:80".parse().unwrap();
    for _ in 0..5 {
        tcp_hello(cluster_ip);
    }
    if kernel_before(6, 2) {
        // Three of the estimator's 2-second periods: with it, the counters would show them.
        std::thread::sleep(Duration::from_secs(6));
        assert_eq!(
            connections_of("TCP  10.96.0.10:80"),
            0,
            "before 6.2 the estimator refreshes the counters: off, they stay"
        );
    }
    std::fs::write(estimation, "1").unwrap();
    wait_until("the counters", Duration::from_secs(10), || {
        connections_of("TCP  10.96.0.10:80") >= 5
    });
    assert!(daemon.terminate().success());
}

#[test]
fn rules_of_others_survive_every_sync() {
    require_ipvs();
    let _node = node_with_external_client();
    let ipvsadm = ipvsadm_path();
    // An operator's rules: on a node address outside the nodePort range, on an address ipvsd
    // does not own, a fwmark service, and one in the nodePort range but excluded.
    for rule in [
        "-A -t 192.168.50.10:8443 -s wlc",
        "-a -t 192.168.50.10:8443 -r 192.168.50.20:8443 -g -w 3",
        "-A -t 10.1.2.3:80 -s rr",
        "-A -f 7 -s wlc",
        "-A -t 192.168.50.10:30999 -s rr",
    ] {
        run(&ipvsadm, &rule.split_whitespace().collect::<Vec<_>>());
    }
    // A stale rule of ipvsd's own: a node address in the nodePort range, no Service for it.
    run(&ipvsadm, &["-A", "-t", "192.168.50.10:30555", "-s", "rr"]);
    let foreign = lines(
        "-A -t 192.168.50.10:8443 -s wlc
-a -t 192.168.50.10:8443 -r 192.168.50.20:8443 -g -w 3
-A -t 10.1.2.3:80 -s rr
-A -f 7 -s wlc
-A -t 192.168.50.10:30999 -s rr",
    );
    run_demo_once(&["--exclude-cidrs", "192.168.50.10/32"]);
    // With the node address excluded, ipvsd neither removes the rules there nor adds its
    // NodePort there.
    let mut expected = demo_rules(&[]);
    expected.extend(foreign.iter().cloned());
    expected.insert("-A -t 192.168.50.10:30555 -s rr".to_owned());
    assert_eq!(saved_rules(), expected);

    run_demo_once(&[]);
    // Without the exclusion, the stale nodePort rules go, the NodePort comes, and the
    // operator's other rules stay.
    let mut expected = demo_rules(&[NODE]);
    expected.extend(foreign.iter().filter(|r| !r.contains(":30999")).cloned());
    assert_eq!(saved_rules(), expected);

    // Cleanup removes what ipvsd owns and nothing else.
    ipvsd(&["cleanup"]);
    let rules = saved_rules();
    assert!(rules.contains("-A -t 192.168.50.10:8443 -s wlc"));
    assert!(rules.contains("-A -t 10.1.2.3:80 -s rr"));
    assert!(rules.contains("-A -f 7 -s wlc"));
    assert!(
        !rules.iter().any(|r| r.contains("10.96.0.")),
        "cleanup removed the cluster IPs' rules: {rules:#?}"
    );
    assert!(
        !rules.iter().any(|r| r.contains(":30080")),
        "cleanup removed the NodePorts: {rules:#?}"
    );
    let links = ip(&["-o", "link", "show"]);
    assert!(
        !links.contains("kube-ipvs0"),
        "cleanup removed the dummy interface"
    );
}

/// The destination line of a real server in `ipvsadm -Ln`, if any.
fn destination_line(service: &str, real: &str) -> Option<String> {
    let listing = run(&ipvsadm_path(), &["-Ln"]);
    let mut in_service = false;
    for line in listing.lines() {
        if !line.starts_with("  ->") {
            in_service = line.starts_with(service);
            continue;
        }
        if in_service && line.contains(real) {
            return Some(line.to_owned());
        }
    }
    None
}

#[test]
fn a_connection_to_a_removed_endpoint_keeps_working_until_it_closes() {
    require_ipvs();
    let _node = node_with_external_client();
    let _pods = demo_pods();
    let dir = editable_demo();
    let daemon = Daemon::start_synced(dir.path(), &[], &demo_rules(&[NODE, "10.244.0.1"]));
    let (mut conversation, pod) = TcpConversation::open("10.96.0.10:80".parse().unwrap());
    let n: u8 = pod.trim_start_matches("pod").parse().unwrap();
    let real = format!("10.244.0.{n}:8080");

    // The pod's endpoint in the web slice stops being ready and serving: it is no longer used.
    let web = dir.path().join("web.yaml");
    let text = std::fs::read_to_string(&web).unwrap();
    let removed = text.replace(
        &format!("  - 10.244.0.{n}\n  conditions:\n    ready: true\n    serving: true\n"),
        &format!("  - 10.244.0.{n}\n  conditions:\n    ready: false\n    serving: false\n"),
    );
    assert_ne!(text, removed);
    std::fs::write(&web, removed).unwrap();
    wait_until("weight 0", Duration::from_secs(5), || {
        destination_line("TCP  10.96.0.10:80", &real)
            .map(|l| l.split_whitespace().nth(3) == Some("0"))
            .unwrap_or(false)
    });
    // New connections avoid it; the open one still works.
    for _ in 0..4 {
        assert_ne!(tcp_hello("10.96.0.10:80".parse().unwrap()), pod);
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        conversation.say("still there?"),
        format!("{pod}: still there?")
    );
    assert!(
        destination_line("TCP  10.96.0.10:80", &real).is_some(),
        "kept while in use"
    );

    // Closing with a reset ends the connection at once for IPVS (state CLOSE, 10 s).
    conversation.reset();
    wait_until(
        "the drained real server's removal",
        Duration::from_secs(30),
        || destination_line("TCP  10.96.0.10:80", &real).is_none(),
    );
    assert!(daemon.terminate().success());
}
