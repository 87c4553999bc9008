//! kube-proxy's IPVS mode and ipvsd side by side, on the path users run: the side-by-side
//! benchmark's driver, run in the test bed VM by `testbed/bench-api`.
//!
//! For each size (N NodePort Services, each with one EndpointSlice of E ready endpoints) it
//! creates the objects through the API server (adding to what the previous size made), then,
//! for each contender, in a network namespace made fresh for it (a node with two addresses that
//! take node ports, 192.168.50.10 and .11, and a link to the API server):
//!
//! 1. **First sync**: the contender is started and the clock runs until every virtual server of
//!    a sample of the Services (65 of them, spread over the range, each on its cluster IP and
//!    both node addresses) holds all its real servers, polled over netlink one virtual server at
//!    a time; one full dump (`ipvsadm -Sn`, not timed) then checks that the whole table is in
//!    place, and if it is not yet, dumps again until it is and takes that time instead.
//! 2. **Changes**: C times, 300 ms apart (fewer for kube-proxy, whose changes take seconds to
//!    minutes in the VM), one more endpoint is written into the EndpointSlice of a Service
//!    picked at random (a seeded sequence, the same for every contender), and the clock runs
//!    from the API call to the new real server appearing in the Service's cluster-IP virtual
//!    server (that one virtual server polled every millisecond for half a second, then every
//!    10 ms; the table is never dumped while timing).
//! 3. CPU seconds (user + system, children included: kube-proxy runs iptables-restore and ipset)
//!    after the first sync and at the end, and peak RSS (VmHWM); resident memory is also
//!    sampled every 200 ms, and the highest sample printed with its anonymous, file-backed and
//!    shared parts and its time, beside the highest of every 10 s (where the peak comes).
//!
//! The reference is what a script-based loader does with the same rules: in a fresh namespace,
//! `ip -batch` binds the addresses ipvsd bound, then `ipvsadm -R` reads ipvsd's `ipvsadm -Sn`.
//!
//! Usage: bench_api --kubeconfig FILE --kube-proxy PATH [--kube-proxy-version V]
//!        [--sizes 1000,5000] [--endpoints 10] [--changes 50] [--kube-proxy-changes 10,3]
//!        [--kube-proxy-max 5000]
//! Environment: IPVSD_BIN (default /testbed/bin/ipvsd), IPVSADM (default ipvsadm),
//! BENCH_RATE_ESTIMATION (`on` or `off`: the kernel's IPVS rate estimation for every contender
//! and the reference; unset: left at the kernel's default).
//!
//! `bench_api poll` is the poller it runs inside a contender's namespace (requests on standard
//! input, one answer line per request).

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

#[path = "../ipvs/examples/support/mod.rs"]
mod support;

use support::{run, run_with_input, Namespace};

const NAMESPACE: &str = "bench";
const NODE_NAME: &str = "demo-node";
const NODE_ADDRESSES: [Ipv4Addr; 2] = [
    Ipv4Addr::new(192, 168, 50, 10),
    Ipv4Addr::new(192, 168, 50, 11),
];
const NODEPORT_CIDR: &str = "192.168.50.0/24";
const SERVICE_PORT: u16 = 80;
const TARGET_PORT: u16 = 8080;
const DUMMY: &str = "kube-ipvs0";
/// API requests in flight while the objects are created.
const CREATE_CONCURRENCY: usize = 32;
/// How long a contender may take for its first sync or one change.
const FIRST_SYNC_LIMIT: Duration = Duration::from_secs(3600);
const CHANGE_LIMIT: Duration = Duration::from_secs(900);
/// The pause before each change.
const CHANGE_PAUSE: Duration = Duration::from_millis(300);
/// How many Services the first-sync sample polls (plus the last one).
const SAMPLE: usize = 64;

struct Args {
    kubeconfig: PathBuf,
    kube_proxy: PathBuf,
    kube_proxy_version: String,
    ipvsd: PathBuf,
    ipvsadm: String,
    sizes: Vec<usize>,
    endpoints: usize,
    changes: usize,
    /// Per size, in the order of `sizes`; the last one holds for the sizes after it.
    kube_proxy_changes: Vec<usize>,
    kube_proxy_max: usize,
    /// The kernel's IPVS rate estimation in every contender's namespace and the reference's
    /// (`BENCH_RATE_ESTIMATION=on|off`; unset: the kernel's default, on): ipvsd is given
    /// `--rate-estimation`, the others' namespaces get the sysctl before they start.
    rate_estimation: Option<bool>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        kubeconfig: PathBuf::new(),
        kube_proxy: PathBuf::new(),
        kube_proxy_version: "unknown".into(),
        ipvsd: std::env::var_os("IPVSD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/testbed/bin/ipvsd".into()),
        ipvsadm: std::env::var("IPVSADM").unwrap_or_else(|_| "ipvsadm".into()),
        sizes: vec![1000, 5000],
        endpoints: 10,
        changes: 50,
        kube_proxy_changes: vec![10],
        kube_proxy_max: 5000,
        rate_estimation: match std::env::var("BENCH_RATE_ESTIMATION").as_deref() {
            Err(_) | Ok("") => None,
            Ok("on") => Some(true),
            Ok("off") => Some(false),
            Ok(other) => bail!("BENCH_RATE_ESTIMATION={other}: expected on or off"),
        },
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--kubeconfig" => args.kubeconfig = value()?.into(),
            "--kube-proxy" => args.kube_proxy = value()?.into(),
            "--kube-proxy-version" => args.kube_proxy_version = value()?,
            "--sizes" => {
                args.sizes = value()?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse()
                            .context("--sizes: a comma-separated list of numbers")
                    })
                    .collect::<Result<_>>()?
            }
            "--endpoints" => args.endpoints = value()?.parse().context("--endpoints")?,
            "--changes" => args.changes = value()?.parse().context("--changes")?,
            "--kube-proxy-changes" => {
                args.kube_proxy_changes = value()?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse()
                            .context("--kube-proxy-changes: numbers, one per size")
                    })
                    .collect::<Result<_>>()?
            }
            "--kube-proxy-max" => {
                args.kube_proxy_max = value()?.parse().context("--kube-proxy-max")?
            }
            other => bail!("unknown argument {other}"),
        }
    }
    ensure!(
        !args.kubeconfig.as_os_str().is_empty(),
        "--kubeconfig is required"
    );
    ensure!(
        args.sizes.windows(2).all(|w| w[0] < w[1]),
        "--sizes must grow: each size adds Services to the previous one"
    );
    Ok(args)
}

/// A seeded xorshift generator: the same change sequence for every contender and run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// What the driver knows of one created Service.
#[derive(Clone)]
struct BenchService {
    cluster_ip: IpAddr,
    node_port: u16,
    endpoints: Vec<Ipv4Addr>,
}

fn service_name(i: usize) -> String {
    format!("bench-{i}")
}

fn endpoint_address(i: usize, j: usize, per_service: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + (i * per_service + j) as u32)
}

/// The address of the `k`-th endpoint a change adds.
fn added_address(k: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 192, 0, 0)) + k as u32)
}

fn slice_body(i: usize, endpoints: &[Ipv4Addr]) -> serde_json::Value {
    let endpoints: Vec<_> = endpoints
        .iter()
        .enumerate()
        .map(|(j, a)| {
            json!({
                "addresses": [a.to_string()],
                "conditions": {"ready": true},
                // A third of the endpoints on this node, as in a three-node cluster.
                "nodeName": if j % 3 == 0 { NODE_NAME.to_string() } else { format!("node-{}", j % 3) },
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{}-1", service_name(i)),
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": service_name(i)},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": TARGET_PORT, "protocol": "TCP"}],
        "endpoints": endpoints,
    })
}

/// Creates Services `from..to` and their slices through the API; returns what was created.
async fn populate(
    client: &Client,
    from: usize,
    to: usize,
    per_service: usize,
) -> Result<Vec<BenchService>> {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let made: Vec<(usize, BenchService)> = futures::stream::iter(from..to)
        .map(|i| {
            let services = services.clone();
            let slices = slices.clone();
            async move {
                let service: Service = serde_json::from_value(json!({
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": service_name(i), "namespace": NAMESPACE},
                    "spec": {
                        "type": "NodePort",
                        "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": TARGET_PORT, "protocol": "TCP"}],
                    },
                }))?;
                let created = services
                    .create(&PostParams::default(), &service)
                    .await
                    .with_context(|| format!("creating Service {}", service_name(i)))?;
                let spec = created.spec.context("created Service without spec")?;
                let cluster_ip: IpAddr = spec
                    .cluster_ip
                    .as_deref()
                    .context("created Service without cluster IP")?
                    .parse()?;
                let node_port = spec
                    .ports
                    .and_then(|p| p.first().and_then(|p| p.node_port))
                    .context("created Service without node port")?;
                let endpoints: Vec<Ipv4Addr> = (0..per_service)
                    .map(|j| endpoint_address(i, j, per_service))
                    .collect();
                let slice: EndpointSlice = serde_json::from_value(slice_body(i, &endpoints))?;
                slices
                    .create(&PostParams::default(), &slice)
                    .await
                    .with_context(|| format!("creating the EndpointSlice of {}", service_name(i)))?;
                Ok::<_, anyhow::Error>((
                    i,
                    BenchService {
                        cluster_ip,
                        node_port: u16::try_from(node_port)?,
                        endpoints,
                    },
                ))
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect()
        .await?;
    let mut made = made;
    made.sort_by_key(|(i, _)| *i);
    Ok(made.into_iter().map(|(_, s)| s).collect())
}

/// A node made for one measurement: a fresh network namespace (see [`Namespace`]) with the two
/// addresses that take node ports on `eth0` and, with `uplink`, a route to the API server through
/// the VM.
fn node_namespace(name: &str, index: u8, uplink: bool) -> Result<Namespace> {
    let ns = Namespace::new(name)?;
    if uplink {
        let (e, u, a, h) = (
            format!("bn{index}e"),
            format!("bn{index}u"),
            format!("bn{index}a"),
            format!("bn{index}h"),
        );
        // Two batches: `ip -batch` takes no `-n` per line.
        let root = format!(
            "link add {e} type veth peer name {u}\nlink set {e} netns {name}\n\
             link add {a} type veth peer name {h}\nlink set {a} netns {name}\n\
             link set {u} up\naddr add 10.201.{index}.1/30 dev {h}\nlink set {h} up\n"
        );
        let mut inside = format!("link set {e} name eth0\n");
        for address in NODE_ADDRESSES {
            inside.push_str(&format!("addr add {address}/24 dev eth0\n"));
        }
        inside.push_str(&format!(
            "link set eth0 up\nlink set {a} name api0\naddr add 10.201.{index}.2/30 dev api0\n\
             link set api0 up\nroute add 10.0.2.2/32 via 10.201.{index}.1\n"
        ));
        run_with_input(Command::new("ip").args(["-batch", "-"]), &root)?;
        run_with_input(
            Command::new("ip").args(["-n", name, "-batch", "-"]),
            &inside,
        )?;
    }
    Ok(ns)
}

/// The poller inside a contender's namespace, driven over its standard input and output.
struct Poller {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Poller {
    fn start(ns: &Namespace) -> Result<Poller> {
        let mut child = ns
            .command(std::env::current_exe()?)
            .arg("poll")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the poller")?;
        let input = child.stdin.take().context("poller stdin")?;
        let output = BufReader::new(child.stdout.take().context("poller stdout")?);
        Ok(Poller {
            child,
            input,
            output,
        })
    }

    /// Sends one request and waits for its answer.
    fn ask(&mut self, request: &str) -> Result<()> {
        writeln!(self.input, "{request}")?;
        self.input.flush()?;
        let mut answer = String::new();
        self.output.read_line(&mut answer)?;
        match answer.trim() {
            "ok" => Ok(()),
            other => bail!("poller: {request}: {other:?}"),
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bench_api poll`: each request line is `VIP PORT COUNT LIMIT_MS` (wait until the TCP virtual
/// server VIP:PORT has exactly COUNT real servers) or `VIP PORT +RIP RPORT LIMIT_MS` (wait until
/// it has that real server); the answer is `ok` or what went wrong.
async fn poll_main() -> Result<()> {
    let client = ipvs::Client::connect().await?;
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match poll_one(&client, &words).await {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("{e:#}"),
        };
        writeln!(stdout, "{answer}")?;
        stdout.flush()?;
    }
    Ok(())
}

/// What a poll request waits for.
enum Wanted {
    /// Exactly this many real servers.
    Count(usize),
    /// This real server.
    Has(IpAddr, u16),
}

impl Wanted {
    fn holds(&self, destinations: &[ipvs::Destination]) -> bool {
        match self {
            Wanted::Count(n) => destinations.len() == *n,
            Wanted::Has(address, port) => destinations
                .iter()
                .any(|d| d.address == *address && d.port == *port),
        }
    }
}

async fn poll_one(client: &ipvs::Client, words: &[&str]) -> Result<()> {
    ensure!(words.len() >= 4, "bad request {words:?}");
    let key = ipvs::ServiceKey::Addr {
        address: words[0].parse()?,
        protocol: ipvs::Protocol::Tcp,
        port: words[1].parse()?,
    };
    let limit = Duration::from_millis(words[words.len() - 1].parse()?);
    let wanted = match words[2].strip_prefix('+') {
        Some(address) => Wanted::Has(address.parse()?, words[3].parse()?),
        None => Wanted::Count(words[2].parse()?),
    };
    let start = Instant::now();
    loop {
        // A virtual server not there yet is an error answer; keep polling.
        if let Ok(destinations) = client.destinations(&key).await {
            if wanted.holds(&destinations) {
                return Ok(());
            }
        }
        ensure!(start.elapsed() < limit, "not reached within {limit:?}");
        // Every millisecond at first, for resolution; then every 10 ms, so that a long wait
        // does not take CPU and the IPVS lock from the contender.
        let pause = if start.elapsed() < Duration::from_millis(500) {
            1
        } else {
            10
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// What one contender measured at one size.
struct Measured {
    first_sync: Duration,
    /// Whether the sample was complete before the whole table (a dump had to confirm later).
    sample_early: bool,
    changes: Vec<Duration>,
    /// When each change was sent (the wall clock ipvsd's log is stamped with).
    sent: Vec<SystemTime>,
    /// Where the time of the slowest changes went, from ipvsd's log (ipvsd only).
    breakdown: Vec<String>,
    /// Changes not in the kernel within [`CHANGE_LIMIT`] (counted at the limit).
    timeouts: usize,
    cpu_first_sync: f64,
    cpu_total: f64,
    peak_rss_kib: u64,
}

/// User + system CPU seconds of `pid` and its waited-for children, and its VmHWM in KiB.
fn usage(pid: u32) -> Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14-17 of the line, 12-15 after the name.
    let ticks: u64 = fields[11..15]
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok((ticks as f64 / 100.0, status_kib(&status, "VmHWM:")))
}

/// A KiB field of `/proc/PID/status` (`VmHWM:`, `RssAnon:`, ...); 0 when absent.
fn status_kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Samples a process's resident memory every 200 ms until stopped: where in the run the peak
/// comes, and how much of it is the heap (anonymous) rather than the binary (file-backed).
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<RssSample>>,
}

/// Resident KiB at a time since the process started: in all, anonymous, file-backed, shared
/// memory (the test bed's binaries are on its initramfs, whose pages count as shared memory).
#[derive(Clone, Copy, Default)]
struct RssSample {
    at: Duration,
    rss: u64,
    anon: u64,
    file: u64,
    shmem: u64,
}

impl RssSampler {
    fn start(pid: u32, started: Instant) -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                    break;
                };
                let kib = |field: &str| status_kib(&status, field);
                samples.push(RssSample {
                    at: started.elapsed(),
                    rss: kib("VmRSS:"),
                    anon: kib("RssAnon:"),
                    file: kib("RssFile:"),
                    shmem: kib("RssShmem:"),
                });
                std::thread::sleep(Duration::from_millis(200));
            }
            samples
        });
        RssSampler { stop, thread }
    }

    /// Stops and prints the highest sample and the highest of every 10 s.
    fn finish(self, label: &str, size: usize) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let samples = self.thread.join().unwrap_or_default();
        let Some(peak) = samples.iter().max_by_key(|s| s.rss) else {
            return;
        };
        let mib = |kib: u64| kib as f64 / 1024.0;
        eprintln!(
            "bench: {label}, {size} Services: highest RSS sample {:.1} MiB at {:.1} s \
             (anonymous {:.1}, file-backed {:.1}, shared memory {:.1} MiB)",
            mib(peak.rss),
            peak.at.as_secs_f64(),
            mib(peak.anon),
            mib(peak.file),
            mib(peak.shmem),
        );
        let mut windows: Vec<u64> = Vec::new();
        for s in &samples {
            let w = (s.at.as_secs() / 10) as usize;
            if windows.len() <= w {
                windows.resize(w + 1, 0);
            }
            windows[w] = windows[w].max(s.rss);
        }
        let line: Vec<String> = windows.iter().map(|k| format!("{:.0}", mib(*k))).collect();
        eprintln!(
            "bench: {label}, {size} Services: highest RSS of every 10 s from the start (MiB): {}",
            line.join(" ")
        );
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Contender {
    Ipvsd,
    KubeProxy,
}

impl Contender {
    fn label(self, args: &Args) -> String {
        match self {
            Contender::Ipvsd => "ipvsd".into(),
            Contender::KubeProxy => format!("kube-proxy {}", args.kube_proxy_version),
        }
    }

    fn start(self, ns: &Namespace, args: &Args, log: &str) -> Result<Child> {
        let log = std::fs::File::create(log)?;
        let mut cmd = match self {
            Contender::Ipvsd => {
                let mut cmd = ns.command(&args.ipvsd);
                cmd.args(["run", "--kubeconfig"])
                    .arg(&args.kubeconfig)
                    .args(["--node-name", NODE_NAME, "--cluster-cidr", "10.244.0.0/16"])
                    .args([
                        "--nodeport-addresses",
                        NODEPORT_CIDR,
                        "--min-sync-period",
                        "100ms",
                    ])
                    .args(["--health-address", "", "--metrics-address", ""]);
                if let Some(on) = args.rate_estimation {
                    cmd.args(["--rate-estimation", if on { "on" } else { "off" }]);
                }
                cmd
            }
            Contender::KubeProxy => {
                set_rate_estimation(ns, args.rate_estimation)?;
                let mut cmd = ns.command(&args.kube_proxy);
                cmd.args(["--proxy-mode", "ipvs", "--kubeconfig"])
                    .arg(&args.kubeconfig)
                    .args([
                        "--hostname-override",
                        NODE_NAME,
                        "--cluster-cidr",
                        "10.244.0.0/16",
                    ])
                    .args(["--nodeport-addresses", NODEPORT_CIDR])
                    .args([
                        "--ipvs-min-sync-period",
                        "100ms",
                        "--ipvs-sync-period",
                        "30s",
                    ])
                    .args(["--conntrack-max-per-core", "0"])
                    .args(["--conntrack-tcp-timeout-established", "0"])
                    .args(["--conntrack-tcp-timeout-close-wait", "0"])
                    .args(["--healthz-bind-address", "0.0.0.0:10256"])
                    .args(["--metrics-bind-address", "127.0.0.1:10249"])
                    .args([
                        "--v",
                        &std::env::var("BENCH_KUBE_PROXY_V").unwrap_or_else(|_| "1".into()),
                    ]);
                cmd
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))
    }
}

/// Counts the virtual and real servers `ipvsadm -Sn` lists in `ns`.
fn table_size(ns: &Namespace, ipvsadm: &str) -> Result<(usize, usize, String)> {
    let saved = run(ns.command(ipvsadm).arg("-Sn"))?;
    let (services, destinations) = rule_counts(&saved);
    Ok((services, destinations, saved))
}

/// The virtual (`-A`) and real (`-a`) servers of `ipvsadm -Sn` text.
fn rule_counts(saved: &str) -> (usize, usize) {
    let count = |prefix: &str| saved.lines().filter(|l| l.starts_with(prefix)).count();
    (count("-A"), count("-a"))
}

/// A log line without its terminal colour sequences (`ESC [ ... m`).
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Saved {
    rules: String,
    addresses: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    client: &Client,
    args: &Args,
    contender: Contender,
    services: &mut [BenchService],
    change_seed: u64,
    next_added: &mut usize,
    index: u8,
) -> Result<(Measured, Option<Saved>)> {
    let size = services.len();
    let label = contender.label(args);
    let ns = node_namespace(&format!("bench-{index}"), index, true)?;
    let mut poller = Poller::start(&ns)?;
    let log = format!("/tmp/bench-{index}.log");
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let mut child = contender.start(&ns, args, &log)?;
    let pid = child.id();
    let sampler = RssSampler::start(pid, started);
    let result = async {
        // First sync: the sample, one virtual server at a time.
        let mut sample: Vec<usize> = (0..SAMPLE).map(|k| k * size / SAMPLE).collect();
        sample.push(size - 1);
        sample.dedup();
        let limit = FIRST_SYNC_LIMIT.as_millis();
        for &i in &sample {
            let s = &services[i];
            let count = s.endpoints.len();
            poller.ask(&format!("{} {SERVICE_PORT} {count} {limit}", s.cluster_ip))?;
            for address in NODE_ADDRESSES {
                poller.ask(&format!("{address} {} {count} {limit}", s.node_port))?;
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!("{label} exited: {status} (log {log})");
            }
        }
        let mut first_sync = started.elapsed();
        let (cpu_first_sync, _) = usage(pid)?;
        let wanted_services = 3 * size;
        let wanted_destinations: usize = services.iter().map(|s| 3 * s.endpoints.len()).sum();
        let mut sample_early = false;
        loop {
            let (vs, rs, _) = table_size(&ns, &args.ipvsadm)?;
            if vs >= wanted_services && rs >= wanted_destinations {
                break;
            }
            sample_early = true;
            first_sync = started.elapsed();
            ensure!(
                started.elapsed() < FIRST_SYNC_LIMIT,
                "{label}: table incomplete ({vs} virtual, {rs} real servers)"
            );
        }
        if contender == Contender::Ipvsd {
            // The sync is over when ipvsd's log says so, which may be after the last rule: what
            // it writes besides IPVS counts too.
            let ended = loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if let Some(at) = first_full_sync_end(&text) {
                    break at;
                }
                ensure!(
                    started.elapsed() < FIRST_SYNC_LIMIT,
                    "{label}: the first sync did not end (log {log})"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let logged = day_diff(ended, time_of_day(started_wall));
            if logged > first_sync.as_secs_f64() {
                eprintln!(
                    "bench: {label}, {size} Services: every rule in the kernel at {:.2} s, the \
                     sync (with the nftables table) ended at {logged:.2} s",
                    first_sync.as_secs_f64()
                );
                first_sync = Duration::from_secs_f64(logged);
            }
        }
        eprintln!(
            "bench: {label}, {size} Services: first sync {:.2} s",
            first_sync.as_secs_f64()
        );

        // Changes: one more endpoint in the slice of a random Service.
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
        let mut rng = Rng(change_seed);
        let mut changes = Vec::new();
        let mut sent = Vec::new();
        let count = match contender {
            Contender::Ipvsd => args.changes,
            Contender::KubeProxy => {
                let at = args.sizes.iter().position(|s| *s == size).unwrap_or(0);
                let list = &args.kube_proxy_changes;
                list.get(at).or(list.last()).copied().unwrap_or(0)
            }
        };
        let mut timeouts = 0;
        for _ in 0..count {
            // Changes apart by more than either contender's minimum sync period (100 ms), so
            // that each measures a change reaching an idle proxy, not the rate limit.
            tokio::time::sleep(CHANGE_PAUSE).await;
            let i = rng.below(size);
            let address = added_address(*next_added);
            *next_added += 1;
            services[i].endpoints.push(address);
            let body = slice_body(i, &services[i].endpoints);
            let start = Instant::now();
            sent.push(SystemTime::now());
            slices
                .patch(
                    &format!("{}-1", service_name(i)),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"endpoints": body["endpoints"]})),
                )
                .await
                .with_context(|| format!("changing the EndpointSlice of {}", service_name(i)))?;
            let reached = poller.ask(&format!(
                "{} {SERVICE_PORT} +{address} {TARGET_PORT} {}",
                services[i].cluster_ip,
                CHANGE_LIMIT.as_millis()
            ));
            match reached {
                Ok(()) => changes.push(start.elapsed()),
                // Counted at the limit (the percentiles say so), and the run goes on: a change
                // a contender has not applied after that long is a result too.
                Err(e) => {
                    eprintln!("bench: {label}, {size} Services: {e:#}");
                    timeouts += 1;
                    changes.push(CHANGE_LIMIT);
                }
            }
        }
        if contender == Contender::Ipvsd {
            wait_for_repair(&log, &label, size)?;
        }
        let (cpu_total, peak_rss_kib) = usage(pid)?;
        if contender == Contender::KubeProxy {
            // Its own account of its syncs, to say where its time goes.
            if let Ok(metrics) = run(ns
                .command("wget")
                .args(["-qO-", "http://127.0.0.1:10249/metrics"]))
            {
                for line in metrics.lines().filter(|l| {
                    l.starts_with("kubeproxy_sync_proxy_rules_duration_seconds_sum")
                        || l.starts_with("kubeproxy_sync_proxy_rules_duration_seconds_count")
                }) {
                    eprintln!("bench: {label}, {size} Services: {line}");
                }
            }
        }
        let saved = if contender == Contender::Ipvsd {
            let (_, _, rules) = table_size(&ns, &args.ipvsadm)?;
            let addresses = run(ns.command("ip").args(["-o", "addr", "show", "dev", DUMMY]))?
                .lines()
                .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
                .collect();
            Some(Saved { rules, addresses })
        } else {
            None
        };
        Ok((
            Measured {
                first_sync,
                sample_early,
                changes,
                sent,
                breakdown: Vec::new(),
                timeouts,
                cpu_first_sync,
                cpu_total,
                peak_rss_kib,
            },
            saved,
        ))
    }
    .await;
    sampler.finish(&label, size);
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = child.wait();
    let mut result = result;
    if let (Contender::Ipvsd, Ok((measured, _))) = (contender, result.as_mut()) {
        if let Ok(text) = std::fs::read_to_string(&log) {
            measured.breakdown = breakdown(measured, &text);
        }
    }
    // BENCH_SHOW_LOGS=N shows the first and last N lines of every contender's log, and between
    // them ipvsd's lines about whole-table work (full syncs, model rebuilds, repairs), which say
    // where the time and memory of a large table go.
    let shown: usize = std::env::var("BENCH_SHOW_LOGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if result.is_err() { 20 } else { 0 });
    if shown > 0 {
        if let Ok(text) = std::fs::read_to_string(&log) {
            let lines: Vec<&str> = text.lines().collect();
            let head = shown.min(lines.len());
            let tail = lines.len().saturating_sub(shown).max(head);
            eprintln!("---- {label} log (first and last {shown} lines, whole-table work between)");
            for line in &lines[..head] {
                eprintln!("{line}");
            }
            eprintln!("...");
            for line in &lines[head..tail] {
                let plain = without_colours(line);
                if ["full=true", "model rebuilt", "repair:", "relist"]
                    .iter()
                    .any(|w| plain.contains(w))
                {
                    eprintln!("{line}");
                }
            }
            eprintln!("...");
            for line in &lines[tail..] {
                eprintln!("{line}");
            }
        }
    }
    drop(poller);
    drop(ns);
    result
}

/// When ipvsd's first full sync ended (its `synced` line with `full=true`), in seconds of the
/// day.
fn first_full_sync_end(log: &str) -> Option<f64> {
    log.lines()
        .map(without_colours)
        .find(|l| l.contains(" synced") && l.contains(" full=true"))
        .and_then(|l| log_time(&l))
}

/// Seconds since midnight UTC of a log line's timestamp (`2026-12-02T10:59:24.175332Z ...`).
fn log_time(line: &str) -> Option<f64> {
    let clock = line.get(11..26)?;
    let mut parts = clock.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// Seconds since midnight UTC of `t`.
fn time_of_day(t: SystemTime) -> f64 {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    (since.as_secs() % 86_400) as f64 + f64::from(since.subsec_micros()) / 1e6
}

/// `a - b` in seconds of the day, across midnight.
fn day_diff(a: f64, b: f64) -> f64 {
    let d = a - b;
    if d > 43_200.0 {
        d - 86_400.0
    } else if d < -43_200.0 {
        d + 86_400.0
    } else {
        d
    }
}

/// The number after `field=` in a log line.
fn log_field(line: &str, field: &str) -> Option<f64> {
    let at = line.find(&format!(" {field}="))? + field.len() + 2;
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Where the time of each change went, from ipvsd's log: each change's sync is the first
/// incremental sync that ended after the change was sent. Split into until the sync began (the
/// API call, the watch, the controller's wait), the sync (`elapsed_ms`), and after it until the
/// poll saw the real server; and whether the periodic repair was reading the table then.
/// Lines for the slowest changes, and a summary over all.
/// With `BENCH_WAIT_REPAIR=S`, waits up to S seconds for ipvsd's log to show its first
/// periodic repair done, so that a run whose changes ended while the repair read the table
/// measures the whole repair too (its time, and the memory and CPU it took).
fn wait_for_repair(log: &str, label: &str, size: usize) -> Result<()> {
    let limit: u64 = match std::env::var("BENCH_WAIT_REPAIR") {
        Ok(v) if !v.is_empty() => v.parse().context("BENCH_WAIT_REPAIR: seconds")?,
        _ => return Ok(()),
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(limit) {
        if std::fs::read_to_string(log)?.contains("repair: kernel read") {
            eprintln!(
                "bench: {label}, {size} Services: waited {:.1} s for the first repair to end",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("bench: {label}, {size} Services: no repair ended within {limit} s");
    Ok(())
}

fn breakdown(m: &Measured, log: &str) -> Vec<String> {
    // (end, seconds, its phases)
    let mut syncs: Vec<(f64, f64, String)> = Vec::new();
    let mut repairs: Vec<(f64, f64)> = Vec::new();
    for line in log.lines().map(without_colours) {
        let Some(at) = log_time(&line) else { continue };
        if line.contains(" synced ") && line.contains("full=false") {
            if let Some(ms) = log_field(&line, "elapsed_ms") {
                let phases = ["model", "plan", "netfilter", "apply"]
                    .iter()
                    .filter_map(|p| {
                        Some(format!("{p} {:.0}", log_field(&line, &format!("{p}_ms"))?))
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                syncs.push((at, ms / 1e3, phases));
            }
        } else if line.contains("repair:") {
            if let Some(ms) = log_field(&line, "read_ms") {
                repairs.push((at - ms / 1e3, at));
            }
        }
    }
    let mut parts = Vec::new();
    for (latency, sent) in m.changes.iter().zip(&m.sent) {
        let sent = time_of_day(*sent);
        let total = latency.as_secs_f64();
        let Some((end, took, phases)) = syncs.iter().find(|(end, _, _)| {
            day_diff(*end, sent) >= 0.0 && day_diff(*end, sent) <= total + 0.05
        }) else {
            continue;
        };
        let (end, took) = (*end, *took);
        let before = day_diff(end - took, sent);
        let reading = repairs
            .iter()
            .any(|(from, to)| day_diff(sent, *from) >= 0.0 && day_diff(*to, sent) >= 0.0);
        parts.push((total, before, took, total - before - took, reading, phases));
    }
    let ms = |s: f64| s * 1e3;
    let mut out = vec![format!(
        "where the time went ({} changes matched to their sync in ipvsd's log; {} while a repair read the table):          until the sync began / the sync / until the poll saw it",
        parts.len(),
        parts.iter().filter(|p| p.4).count()
    )];
    let mut sorted = parts.clone();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (total, before, took, after, reading, phases) in sorted.iter().take(5) {
        out.push(format!(
            "  {:>6.0} ms: {:>6.0} / {:>4.0} / {:>4.0} ms (sync: {phases} ms){}",
            ms(*total),
            ms(*before),
            ms(*took),
            ms(*after),
            if *reading { ", repair reading" } else { "" }
        ));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    out.push(format!(
        "  medians: {:.0} / {:.0} / {:.0} ms",
        ms(median(parts.iter().map(|p| p.1).collect())),
        ms(median(parts.iter().map(|p| p.2).collect())),
        ms(median(parts.iter().map(|p| p.3).collect())),
    ));
    out
}

/// Sets the kernel's IPVS rate estimation in `ns` (see [`Args::rate_estimation`]).
fn set_rate_estimation(ns: &Namespace, on: Option<bool>) -> Result<()> {
    if let Some(on) = on {
        let value = if on { "1" } else { "0" };
        run(ns
            .command("sysctl")
            .args(["-w", &format!("net.ipv4.vs.run_estimation={value}")]))?;
    }
    Ok(())
}

/// `ip -batch` of the addresses, then `ipvsadm -R` of the rules, in a fresh namespace.
fn reference(args: &Args, saved: &Saved, index: u8) -> Result<(Duration, Duration)> {
    let ns = node_namespace(&format!("bench-ref-{index}"), index, false)?;
    set_rate_estimation(&ns, args.rate_estimation)?;
    let mut batch = format!("link add {DUMMY} type dummy\n");
    for address in &saved.addresses {
        batch.push_str(&format!("address add {address} dev {DUMMY}\n"));
    }
    let ip_batch = run_with_input(
        Command::new("ip").args(["-n", ns.name(), "-batch", "-"]),
        &batch,
    )?;
    let restore = run_with_input(ns.command(&args.ipvsadm).arg("-R"), &saved.rules)?;
    let (vs, rs, _) = table_size(&ns, &args.ipvsadm)?;
    let (wanted_vs, wanted_rs) = rule_counts(&saved.rules);
    ensure!(
        vs == wanted_vs && rs == wanted_rs,
        "ipvsadm -R left {vs} virtual and {rs} real servers, not {wanted_vs} and {wanted_rs}"
    );
    Ok((ip_batch, restore))
}

fn report(
    args: &Args,
    size: usize,
    created: Duration,
    results: &[(Contender, Measured)],
    refs: Option<(Duration, Duration)>,
) {
    let secs = |d: Duration| d.as_secs_f64();
    println!();
    println!(
        "== {size} NodePort Services × {} endpoints: {} virtual servers, {} real servers (created through the API in {:.1} s) ==",
        args.endpoints,
        3 * size,
        3 * size * args.endpoints,
        secs(created)
    );
    println!(
        "{:<26} {:>11} {:>11} {:>11} {:>11} {:>9} {:>9} {:>10}",
        "",
        "first sync",
        "change p50",
        "change p99",
        "change max",
        "CPU sync",
        "CPU all",
        "peak RSS"
    );
    if let Some((ip, restore)) = refs {
        println!(
            "{:<26} {:>9.2} s   (ip -batch {:.2} s + ipvsadm -R {:.2} s)",
            "ip -batch + ipvsadm -R",
            secs(ip + restore),
            secs(ip),
            secs(restore)
        );
    }
    for (contender, m) in results {
        let mut sorted = m.changes.clone();
        sorted.sort();
        println!(
            "{:<26} {:>9.2} s {:>8.0} ms {:>8.0} ms {:>8.0} ms {:>7.2} s {:>7.2} s {:>6.1} MiB{}",
            contender.label(args),
            secs(m.first_sync),
            secs(percentile(&sorted, 50.0)) * 1e3,
            secs(percentile(&sorted, 99.0)) * 1e3,
            secs(sorted.last().copied().unwrap_or_default()) * 1e3,
            m.cpu_first_sync,
            m.cpu_total,
            m.peak_rss_kib as f64 / 1024.0,
            if m.sample_early {
                " (table confirmed by dumps)"
            } else {
                ""
            },
        );
        print!("{:<26} {} changes measured", "", m.changes.len());
        if m.timeouts > 0 {
            print!(
                "; {} not in the kernel after {} s, counted as {} s",
                m.timeouts,
                CHANGE_LIMIT.as_secs(),
                CHANGE_LIMIT.as_secs()
            );
        }
        println!();
        for line in &m.breakdown {
            println!("{:<26} {line}", "");
        }
    }
    let find = |c: Contender| results.iter().find(|(x, _)| *x == c).map(|(_, m)| m);
    if let (Some(ipvsd), Some((ip, restore))) = (find(Contender::Ipvsd), refs) {
        println!(
            "ratio, first sync: (ip -batch + ipvsadm -R) / ipvsd = {:.2}×",
            secs(ip + restore) / secs(ipvsd.first_sync)
        );
    }
    if let (Some(ipvsd), Some(kp)) = (find(Contender::Ipvsd), find(Contender::KubeProxy)) {
        let p = |m: &Measured, q: f64| {
            let mut s = m.changes.clone();
            s.sort();
            secs(percentile(&s, q))
        };
        println!(
            "ratios, kube-proxy / ipvsd: first sync {:.2}×, change p50 {:.2}×, change p99 {:.2}×, CPU (first sync) {:.2}×, CPU (all) {:.2}×, peak RSS {:.2}×",
            secs(kp.first_sync) / secs(ipvsd.first_sync),
            p(kp, 50.0) / p(ipvsd, 50.0),
            p(kp, 99.0) / p(ipvsd, 99.0),
            kp.cpu_first_sync / ipvsd.cpu_first_sync.max(0.01),
            kp.cpu_total / ipvsd.cpu_total.max(0.01),
            kp.peak_rss_kib as f64 / ipvsd.peak_rss_kib.max(1) as f64,
        );
    }
}

async fn driver() -> Result<()> {
    let args = parse_args()?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = Client::try_from(config)?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            NAMESPACE,
            &PatchParams::apply("bench-api").force(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
            ),
        )
        .await
        .context("creating the namespace")?;

    let mut services: Vec<BenchService> = Vec::new();
    let mut next_added = 0;
    eprintln!(
        "bench: the kernel's IPVS rate estimation (net.ipv4.vs.run_estimation) {} in every namespace",
        match args.rate_estimation {
            None => "left at the kernel's default",
            Some(true) => "on",
            Some(false) => "off",
        }
    );
    let mut index: u8 = 0;
    for &size in &args.sizes {
        let start = Instant::now();
        let more = populate(&client, services.len(), size, args.endpoints).await?;
        services.extend(more);
        let created = start.elapsed();
        eprintln!(
            "bench: {size} Services created in {:.1} s",
            created.as_secs_f64()
        );
        let mut contenders = vec![Contender::Ipvsd];
        if size <= args.kube_proxy_max {
            contenders.push(Contender::KubeProxy);
        }
        let mut results = Vec::new();
        let mut saved = None;
        for contender in contenders {
            index += 1;
            let (measured, s) = measure(
                &client,
                &args,
                contender,
                &mut services,
                0x9e37_79b9_7f4a_7c15 ^ size as u64,
                &mut next_added,
                index,
            )
            .await?;
            if s.is_some() {
                saved = s;
            }
            results.push((contender, measured));
        }
        index += 1;
        let refs = match &saved {
            Some(s) => Some(reference(&args, s, index)?),
            None => None,
        };
        report(&args, size, created, &results, refs);
    }
    Ok(())
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if std::env::args().nth(1).as_deref() == Some("poll") {
        return runtime.block_on(poll_main());
    }
    runtime.block_on(driver())
}
