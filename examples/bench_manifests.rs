//! Measures how long `ipvsd plan --manifests DIR` takes, and how much memory it uses, with the
//! same Services and EndpointSlices laid out two ways:
//!
//! - **two files**: `services.yaml` and `endpointslices.yaml`, one document per object,
//!   separated by `---`, as a `kubectl get -o yaml` export split per kind;
//! - **per object**: one file per Service and one per EndpointSlice.
//!
//! For each size (N NodePort Services, each with one EndpointSlice of M ready endpoints) it runs
//! `ipvsd plan` a few times on each layout, the layouts taking turns, and prints per layout the
//! median, lowest and highest wall time, the median CPU time (user and system, from GNU time),
//! the highest peak resident size (from GNU time's `%M` when
//! `/usr/bin/time` is there, else from `VmHWM` in `/proc/PID/status`, read every 2 ms while ipvsd
//! runs, which can miss the last moments), and the ratio of the two layouts' medians and of their
//! fastest runs. On a shared machine the CPU time is the steadier measure. It checks that both layouts give the same plan and that ipvsd reports no problem.
//!
//! `ipvsd plan` needs neither root nor IPVS: it reads the node addresses over rtnetlink and puts
//! the NodePort virtual servers on them, so the output depends on the machine's addresses.
//!
//! Run it with a release build:
//!
//!     cargo build --release --bin ipvsd --example bench_manifests
//!     target/release/examples/bench_manifests
//!
//! Environment: `BENCH_SERVICES` (comma-separated sizes, default `1000,10000`),
//! `BENCH_ENDPOINTS` (10), `BENCH_RUNS` (3), `IPVSD_BIN` (default: `ipvsd` in the directory
//! above this program's, as cargo lays them out, else beside it, else from PATH), `BENCH_TIME`
//! (GNU time, default `/usr/bin/time`; empty: read `VmHWM` instead).

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

#[path = "../ipvs/examples/support/mod.rs"]
mod support;

use support::env_usize;

/// Node ports from here on, one per Service, beyond the default range for the 10,000: `plan` is
/// told the wider range.
const FIRST_NODE_PORT: usize = 30000;

struct Config {
    sizes: Vec<usize>,
    endpoints: usize,
    runs: usize,
    ipvsd: PathBuf,
    time: Option<PathBuf>,
}

impl Config {
    fn from_env() -> Result<Config> {
        let sizes = match std::env::var("BENCH_SERVICES") {
            Ok(v) => v
                .split(',')
                .map(|s| {
                    s.trim()
                        .parse()
                        .with_context(|| format!("BENCH_SERVICES={v:?}: not a list of counts"))
                })
                .collect::<Result<Vec<usize>>>()?,
            Err(_) => vec![1_000, 10_000],
        };
        for &n in &sizes {
            ensure!(
                (1..=30_000).contains(&n),
                "BENCH_SERVICES: {n} is not between 1 and 30,000 Services (one node port each)"
            );
        }
        let endpoints = env_usize("BENCH_ENDPOINTS", 10)?;
        ensure!(
            (1..=1000).contains(&endpoints),
            "BENCH_ENDPOINTS={endpoints}: between 1 and 1,000 endpoints (one EndpointSlice)"
        );
        let runs = env_usize("BENCH_RUNS", 3)?;
        ensure!(
            (1..=100).contains(&runs),
            "BENCH_RUNS={runs}: between 1 and 100"
        );
        let ipvsd = match std::env::var_os("IPVSD_BIN") {
            Some(p) => PathBuf::from(p),
            None => {
                let me = std::env::current_exe().context("locating this program")?;
                let dir = me.parent().map(Path::to_path_buf).unwrap_or_default();
                [
                    dir.parent().map(|d| d.join("ipvsd")),
                    Some(dir.join("ipvsd")),
                ]
                .into_iter()
                .flatten()
                .find(|p| p.is_file())
                .unwrap_or_else(|| PathBuf::from("ipvsd"))
            }
        };
        let time = match std::env::var_os("BENCH_TIME") {
            Some(p) if p.is_empty() => None,
            Some(p) => Some(PathBuf::from(p)),
            None => Some(PathBuf::from("/usr/bin/time")).filter(|p| p.is_file()),
        };
        Ok(Config {
            sizes,
            endpoints,
            runs,
            ipvsd,
            time,
        })
    }
}

/// Cluster IP of Service `i`: 10.96.0.1 onwards.
fn cluster_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 1)) + i as u32)
}

/// Address of endpoint `e` of Service `i`: 10.128.0.1 onwards.
fn endpoint_ip(i: usize, e: usize, endpoints: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 1)) + (i * endpoints + e) as u32)
}

/// Service `i` as `kubectl get -o yaml` writes it, without the leading `---`.
fn service_yaml(i: usize) -> String {
    let ip = cluster_ip(i);
    let node_port = FIRST_NODE_PORT + i;
    format!(
        "apiVersion: v1
kind: Service
metadata:
  creationTimestamp: \"2026-12-01T12:00:00Z\"
  labels:
    app: svc-{i:05}
  name: svc-{i:05}
  namespace: bench
  resourceVersion: \"{rv}\"
  uid: 6f1c2a4e-0000-4000-8000-{i:012}
spec:
  clusterIP: {ip}
  clusterIPs:
  - {ip}
  externalTrafficPolicy: Cluster
  internalTrafficPolicy: Cluster
  ipFamilies:
  - IPv4
  ipFamilyPolicy: SingleStack
  ports:
  - name: http
    nodePort: {node_port}
    port: 80
    protocol: TCP
    targetPort: http
  selector:
    app: svc-{i:05}
  sessionAffinity: None
  type: NodePort
status:
  loadBalancer: {{}}
",
        rv = 1000 + i,
    )
}

/// The EndpointSlice of Service `i`, with `endpoints` ready endpoints on three nodes.
fn slice_yaml(i: usize, endpoints: usize) -> String {
    let mut text = "addressType: IPv4
apiVersion: discovery.k8s.io/v1
endpoints:
"
    .to_string();
    for e in 0..endpoints {
        let _ = write!(
            text,
            "- addresses:
  - {ip}
  conditions:
    ready: true
    serving: true
    terminating: false
  nodeName: node-{node}
  targetRef:
    kind: Pod
    name: svc-{i:05}-pod-{e}
    namespace: bench
    uid: 0d3e5b7a-0000-4000-8000-{uid:012}
",
            ip = endpoint_ip(i, e, endpoints),
            node = e % 3,
            uid = i * endpoints + e,
        );
    }
    let _ = write!(
        text,
        "kind: EndpointSlice
metadata:
  creationTimestamp: \"2026-12-01T12:00:00Z\"
  generateName: svc-{i:05}-
  labels:
    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
    kubernetes.io/service-name: svc-{i:05}
  name: svc-{i:05}-x7k2p
  namespace: bench
  resourceVersion: \"{rv}\"
  uid: 3a9b8c7d-0000-4000-8000-{i:012}
ports:
- name: http
  port: 8080
  protocol: TCP
",
        rv = 100_000 + i,
    );
    text
}

/// A layout of the manifests on disk.
#[derive(Clone, Copy)]
enum Layout {
    TwoFiles,
    PerObject,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::TwoFiles => "two files",
            Layout::PerObject => "per object",
        }
    }
}

/// Writes N Services and their EndpointSlices into `dir` in `layout`; returns the number of
/// files and their total size in bytes.
fn write_manifests(
    dir: &Path,
    layout: Layout,
    services: usize,
    endpoints: usize,
) -> Result<(usize, usize)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: String, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    let mut bytes = 0;
    match layout {
        Layout::TwoFiles => {
            let mut svcs = String::new();
            let mut slices = String::new();
            for i in 0..services {
                svcs.push_str("---\n");
                svcs.push_str(&service_yaml(i));
                slices.push_str("---\n");
                slices.push_str(&slice_yaml(i, endpoints));
            }
            write("services.yaml".into(), &svcs)?;
            write("endpointslices.yaml".into(), &slices)?;
            bytes += svcs.len() + slices.len();
            Ok((2, bytes))
        }
        Layout::PerObject => {
            for i in 0..services {
                let svc = service_yaml(i);
                let slice = slice_yaml(i, endpoints);
                write(format!("svc-{i:05}.yaml"), &svc)?;
                write(format!("svc-{i:05}-slice.yaml"), &slice)?;
                bytes += svc.len() + slice.len();
            }
            Ok((2 * services, bytes))
        }
    }
}

/// One run of `ipvsd plan`: its wall time, CPU time (user and system, known from GNU time
/// only), peak resident size in KiB, and output.
struct Run {
    wall: Duration,
    cpu: Option<Duration>,
    peak_kib: u64,
    plan: Vec<u8>,
}

fn run_plan(config: &Config, dir: &Path, scratch: &Path) -> Result<Run> {
    let range = format!("{FIRST_NODE_PORT}-{}", FIRST_NODE_PORT + 30_000);
    let plan_args = [
        "plan".as_ref(),
        "--log-level".as_ref(),
        "warn".as_ref(),
        "--nodeport-range".as_ref(),
        range.as_ref(),
        "--manifests".as_ref(),
        dir.as_os_str(),
    ];
    let time_file = scratch.join("time.out");
    let mut command = match &config.time {
        Some(time) => {
            let mut c = Command::new(time);
            c.arg("-f").arg("%M %U %S").arg("-o").arg(&time_file);
            c.arg(&config.ipvsd);
            c
        }
        None => Command::new(&config.ipvsd),
    };
    command
        .args(plan_args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(scratch.join("plan.out"))?)
        .stderr(std::fs::File::create(scratch.join("plan.err"))?);
    let start = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    let mut polled = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if config.time.is_none() {
            polled = polled.max(vm_hwm_kib(child.id()).unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let wall = start.elapsed();
    let stderr = std::fs::read_to_string(scratch.join("plan.err"))?;
    if !status.success() {
        bail!("ipvsd plan failed ({status}):\n{stderr}");
    }
    ensure!(
        stderr.trim().is_empty(),
        "ipvsd plan reported problems:\n{}",
        stderr.lines().take(10).collect::<Vec<_>>().join("\n")
    );
    let (peak_kib, cpu) = match &config.time {
        Some(_) => {
            let text = std::fs::read_to_string(&time_file)?;
            let fields: Vec<&str> = text
                .trim()
                .lines()
                .last()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            let parsed = match fields[..] {
                [peak, user, system] => (|| {
                    let seconds = |s: &str| s.parse::<f64>().ok().map(Duration::from_secs_f64);
                    Some((peak.parse().ok()?, seconds(user)? + seconds(system)?))
                })(),
                _ => None,
            };
            let (peak, cpu) = parsed.with_context(|| {
                format!("GNU time wrote {text:?}, not a size in KiB and two times in seconds")
            })?;
            (peak, Some(cpu))
        }
        None => (polled, None),
    };
    let plan = std::fs::read(scratch.join("plan.out"))?;
    Ok(Run {
        wall,
        cpu,
        peak_kib,
        plan,
    })
}

/// `VmHWM` of a running process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() -> Result<()> {
    let config = Config::from_env()?;
    let scratch = tempfile::tempdir().context("making a scratch directory")?;
    println!(
        "ipvsd: {}; {} run(s) per case; peak RSS from {}",
        config.ipvsd.display(),
        config.runs,
        match &config.time {
            Some(t) => format!("{} (%M; CPU time %U + %S)", t.display()),
            None => "VmHWM, polled every 2 ms".to_string(),
        }
    );
    println!();
    println!(
        "| Services | layout | files | size | wall, median | wall, min-max | CPU, median | peak RSS |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut ratios = Vec::new();
    for &services in &config.sizes {
        let layouts = [Layout::TwoFiles, Layout::PerObject];
        let mut cases = Vec::new();
        for layout in layouts {
            let dir = scratch
                .path()
                .join(format!("{services}-{}", layout.name().replace(' ', "-")));
            let (files, bytes) = write_manifests(&dir, layout, services, config.endpoints)?;
            cases.push((dir, files, bytes, Vec::new()));
        }
        // The layouts take turns, so that a change in the machine's load hits both alike.
        for _ in 0..config.runs {
            for (dir, _, _, runs) in &mut cases {
                runs.push(run_plan(&config, dir, scratch.path())?);
            }
        }
        let mut medians = Vec::new();
        let mut fastest = Vec::new();
        let mut cpu_medians = Vec::new();
        for (layout, (dir, files, bytes, runs)) in layouts.iter().zip(&cases) {
            let mut walls: Vec<Duration> = runs.iter().map(|r| r.wall).collect();
            walls.sort();
            let median = walls[walls.len() / 2];
            let peak = runs.iter().map(|r| r.peak_kib).max().unwrap_or(0);
            let mut cpus: Vec<Duration> = runs.iter().filter_map(|r| r.cpu).collect();
            cpus.sort();
            let cpu = cpus.get(cpus.len() / 2).copied();
            println!(
                "| {services} | {} | {files} | {:.1} MiB | {} | {} – {} | {} | {:.1} MiB |",
                layout.name(),
                *bytes as f64 / (1024.0 * 1024.0),
                seconds(median),
                seconds(walls[0]),
                seconds(walls[walls.len() - 1]),
                cpu.map_or_else(|| "-".to_string(), seconds),
                peak as f64 / 1024.0,
            );
            medians.push(median);
            fastest.push(walls[0]);
            cpu_medians.push(cpu);
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        let plan = &cases[0].3[0].plan;
        ensure!(
            cases.iter().flat_map(|c| &c.3).all(|r| &r.plan == plan),
            "ipvsd plan printed different plans for the same Services at {services} Services"
        );
        let virtual_servers = plan
            .split(|b| *b == b'\n')
            .filter(|l| l.starts_with(b"-A "))
            .count();
        ensure!(
            virtual_servers >= services,
            "{virtual_servers} virtual servers for {services} Services: the manifests did not load"
        );
        let ratio = |d: &[Duration]| d[0].as_secs_f64() / d[1].as_secs_f64();
        let cpu = match cpu_medians[..] {
            [Some(a), Some(b)] => format!(", {:.2} (CPU time, medians)", ratio(&[a, b])),
            _ => String::new(),
        };
        ratios.push((
            services,
            virtual_servers,
            ratio(&medians),
            ratio(&fastest),
            cpu,
        ));
    }
    println!();
    for (services, virtual_servers, medians, fastest, cpu) in ratios {
        println!(
            "{services} Services ({virtual_servers} virtual servers, {} endpoints each): \
             two files / per object = {medians:.2} (wall, medians), {fastest:.2} (wall, fastest \
             runs){cpu}",
            config.endpoints
        );
    }
    Ok(())
}
