//! Measures ipvsd on a large table and prints its times beside a reference, as ratios: the
//! numbers depend on the machine (the test bed emulates its CPU), their ratios much less.
//!
//! 1. Full sync: `ipvsd run --once` on N ClusterIP Services × M ready endpoints (start-up,
//!    manifest parsing, N addresses bound to the dummy interface, N×(M+1) IPVS rules), against
//!    what a script-based loader does with the same rules: `ip -batch` for the addresses, then
//!    `ipvsadm -R` with the lines `ipvsd plan` prints.
//! 2. Incremental change: a long-running `ipvsd run` with the full table; one EndpointSlice gets
//!    one more endpoint, and the time until `ipvsadm -Ln -t VIP:PORT` shows it is measured, a few
//!    times. For perspective, the time of one full dump (`ipvsadm -Sn`) at that size, which is
//!    what a proxy that re-reads everything on each change pays at least.
//! 3. Memory: the long-running ipvsd's peak resident size (VmHWM) after its full sync.
//!
//! Every contender writes into a network namespace made fresh for it: after a flush the kernel
//! keeps deleted destinations in a trash list and scans it on every destination it adds, so a
//! reused namespace would make whoever writes second pay for the first.
//!
//! Run it as root on a kernel with IPVS and dummy links (the test bed:
//! `testbed/vm -- /testbed/bin/bench_sync`). Environment: `BENCH_SERVICES` (default 2000),
//! `BENCH_ENDPOINTS` (10), `BENCH_CHANGES` (5), `IPVSD_BIN` (default: `ipvsd` beside this
//! program, else from PATH), `IPVSADM` (default `ipvsadm`). It runs `ip netns` and `ip -batch`.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

#[path = "../ipvs/examples/support/mod.rs"]
mod support;

use support::{env_usize, run, run_with_input, Namespace};

/// The port of every benchmark Service, and of every endpoint.
const SERVICE_PORT: u16 = 80;
const ENDPOINT_PORT: u16 = 8080;
/// The dummy interface ipvsd uses by default; the reference binds its addresses there too.
const DUMMY: &str = "kube-ipvs0";
/// How long the full table may take to appear in the long-running ipvsd (the VM is slow).
const FULL_SYNC_LIMIT: Duration = Duration::from_secs(900);
/// How long one change may take to become visible before the run is declared broken.
/// Generous: ipvsd re-reads every manifest file on any change, which is slow in the VM.
const CHANGE_LIMIT: Duration = Duration::from_secs(300);
/// Pause between two `ipvsadm -Ln -t` checks, so the checks leave the CPU to ipvsd.
const CHECK_PAUSE: Duration = Duration::from_millis(20);

struct Config {
    services: usize,
    endpoints: usize,
    changes: usize,
    ipvsd: PathBuf,
    ipvsadm: String,
}

impl Config {
    fn from_env() -> Result<Config> {
        let services = env_usize("BENCH_SERVICES", 2000)?;
        let endpoints = env_usize("BENCH_ENDPOINTS", 10)?;
        let changes = env_usize("BENCH_CHANGES", 5)?;
        ensure!(
            (1..=1_000_000).contains(&services),
            "BENCH_SERVICES={services}: between 1 and 1,000,000 Services"
        );
        ensure!(
            (1..=60_000).contains(&endpoints),
            "BENCH_ENDPOINTS={endpoints}: between 1 and 60,000 endpoints"
        );
        ensure!(
            (1..=250).contains(&changes),
            "BENCH_CHANGES={changes}: between 1 and 250 changes"
        );
        let ipvsd = match std::env::var_os("IPVSD_BIN") {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe()
                .ok()
                .and_then(|me| me.parent().map(|dir| dir.join("ipvsd")))
                .filter(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from("ipvsd")),
        };
        let ipvsadm = std::env::var("IPVSADM").unwrap_or_else(|_| "ipvsadm".to_string());
        Ok(Config {
            services,
            endpoints,
            changes,
            ipvsd,
            ipvsadm,
        })
    }

    fn rules(&self) -> usize {
        self.services * (self.endpoints + 1)
    }
}

/// Cluster IP of Service `i`: 10.96.0.1 onwards, in the usual Service range and never a
/// network address.
fn cluster_ip(i: usize) -> Ipv4Addr {
    let n = i as u32 + 1;
    Ipv4Addr::new(
        10,
        (96 + n / 65536) as u8,
        (n / 256 % 256) as u8,
        (n % 256) as u8,
    )
}

/// Address of endpoint `j` (every Service has the same pods: IPVS does not care).
fn endpoint_addr(j: usize) -> Ipv4Addr {
    let n = j as u32 + 1;
    Ipv4Addr::new(
        10,
        (244 + n / 65536) as u8,
        (n / 256 % 256) as u8,
        (n % 256) as u8,
    )
}

/// The endpoint added by change `k`, outside the range of [`endpoint_addr`].
fn added_endpoint(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 250, 0, k as u8 + 1)
}

fn service_name(i: usize) -> String {
    format!("svc-{i:06}")
}

/// One Service and its EndpointSlice, as a manifest file's text.
fn manifest(i: usize, endpoints: &[Ipv4Addr]) -> String {
    let name = service_name(i);
    let ip = cluster_ip(i);
    let mut s = format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: bench
spec:
  type: ClusterIP
  clusterIP: {ip}
  clusterIPs:
  - {ip}
  ipFamilies:
  - IPv4
  ports:
  - name: http
    port: {SERVICE_PORT}
    protocol: TCP
    targetPort: http
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-bench
  namespace: bench
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
ports:
- name: http
  port: {ENDPOINT_PORT}
  protocol: TCP
endpoints:
"
    );
    for addr in endpoints {
        s.push_str(&format!(
            "- addresses:
  - {addr}
  conditions:
    ready: true
    serving: true
    terminating: false
  nodeName: bench
"
        ));
    }
    s
}

fn manifest_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("{}.yaml", service_name(i)))
}

fn write_manifests(dir: &Path, config: &Config) -> Result<()> {
    let endpoints: Vec<Ipv4Addr> = (0..config.endpoints).map(endpoint_addr).collect();
    for i in 0..config.services {
        let path = manifest_path(dir, i);
        std::fs::write(&path, manifest(i, &endpoints))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

impl Namespace {
    /// How many lines `ipvsadm -Sn` prints here: one per virtual and real server.
    fn saved_rules(&self, ipvsadm: &str) -> Result<usize> {
        Ok(run(self.command(ipvsadm).arg("-Sn"))?.lines().count())
    }

    /// How many IPv4 addresses the dummy interface holds here.
    fn bound_addresses(&self) -> Result<usize> {
        let out = run(Command::new("ip").args([
            "-n",
            self.name(),
            "-o",
            "-4",
            "addr",
            "show",
            "dev",
            DUMMY,
        ]))?;
        Ok(out.lines().count())
    }
}

/// ipvsd's logging flags: JSON to parse, the ipvs crate's "bulk write" events, which say how
/// long each batch of IPVS writes took, and the dummy interface's "bound address" events.
const LOG_FLAGS: [&str; 4] = [
    "--log-format",
    "json",
    "--log-level",
    "info,ipvs=debug,ipvsd::dataplane::link=debug",
];

/// Flags of `ipvsd run` common to both runs: the manifests, and no HTTP listeners.
fn run_args(dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = LOG_FLAGS.iter().map(|s| s.to_string()).collect();
    args.extend(
        [
            "run",
            "--node-name",
            "bench",
            "--health-address",
            "",
            "--metrics-address",
            "",
            "--manifests",
        ]
        .map(String::from),
    );
    args.push(dir.to_string_lossy().into_owned());
    args
}

/// One of ipvsd's JSON log events: its message and fields.
struct Event {
    at: Instant,
    /// When ipvsd logged it, as seconds since midnight UTC.
    logged: Option<f64>,
    fields: serde_json::Map<String, Value>,
}

impl Event {
    fn parse(at: Instant, line: &str) -> Option<Event> {
        let value: Value = serde_json::from_str(line).ok()?;
        let fields = value.get("fields")?.as_object()?.clone();
        let logged = value
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(seconds_of_day);
        Some(Event { at, logged, fields })
    }

    fn message(&self) -> &str {
        self.fields
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    fn number(&self, field: &str) -> Option<u64> {
        self.fields.get(field).and_then(Value::as_u64)
    }

    fn flag(&self, field: &str) -> Option<bool> {
        self.fields.get(field).and_then(Value::as_bool)
    }
}

/// Seconds since midnight of an RFC 3339 UTC timestamp (`2026-11-26T16:39:44.123456Z`).
fn seconds_of_day(timestamp: &str) -> Option<f64> {
    let time = timestamp.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

fn now_seconds_of_day() -> f64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_secs_f64() % 86400.0
}

/// What the log of a full sync says about where its time went.
struct SyncLog {
    /// The "synced" event's `elapsed_ms`: model, plan, kernel read and every write.
    sync: Duration,
    /// The sum of the "bulk write" events' `total_us` in that sync: the IPVS writes alone.
    ipvs_writes: Duration,
    /// From the start of the process to these events, by the log's timestamps.
    timeline: Vec<(&'static str, Duration)>,
}

/// Seconds from `launched` (seconds of day) to the first event `pick` accepts.
fn since_launch(
    launched: f64,
    events: &[Event],
    pick: impl Fn(&Event) -> bool,
) -> Option<Duration> {
    let logged = events.iter().filter(|e| pick(e)).find_map(|e| e.logged)?;
    // A run that crosses midnight UTC.
    let seconds = (logged - launched).rem_euclid(86400.0);
    Some(Duration::from_secs_f64(seconds))
}

/// When the stages of the first sync ended, from the log of a run launched at `launched`.
fn timeline(launched: f64, events: &[Event]) -> Vec<(&'static str, Duration)> {
    // (what the stage is, the message of the event that ends it)
    let stages = [
        ("start-up done (\"starting\")", "starting"),
        ("manifests parsed", "manifests loaded"),
        ("first address bound", "bound address"),
        ("full sync done (\"synced\")", "synced"),
    ];
    let mut found: Vec<_> = stages
        .into_iter()
        .filter_map(|(name, message)| {
            Some((
                name,
                since_launch(launched, events, |e| e.message() == message)?,
            ))
        })
        .collect();
    let last_bound = events
        .iter()
        .filter(|e| e.message() == "bound address")
        .filter_map(|e| e.logged)
        .next_back();
    if let Some(logged) = last_bound {
        let at = Duration::from_secs_f64((logged - launched).rem_euclid(86400.0));
        found.push(("last address bound", at));
    }
    found.sort_by_key(|(_, at)| *at);
    found
}

/// Finds the first full sync in `events` and the IPVS writes made before it ended.
fn full_sync_log(launched: f64, events: &[Event]) -> Result<SyncLog> {
    let synced = events
        .iter()
        .position(|e| e.message() == "synced" && e.flag("full") == Some(true))
        .context("ipvsd logged no full \"synced\" event")?;
    let sync = Duration::from_millis(
        events[synced]
            .number("elapsed_ms")
            .context("the \"synced\" event has no elapsed_ms")?,
    );
    let ipvs_writes: Duration = events[..synced]
        .iter()
        .filter(|e| e.message() == "bulk write")
        .filter_map(|e| e.number("total_us"))
        .map(Duration::from_micros)
        .sum();
    ensure!(
        !ipvs_writes.is_zero(),
        "ipvsd logged no \"bulk write\" event before its full sync"
    );
    Ok(SyncLog {
        sync,
        ipvs_writes,
        timeline: timeline(launched, events),
    })
}

struct FullSync {
    ipvsd: Duration,
    ipvsd_log: SyncLog,
    ip_batch: Duration,
    ipvsadm_restore: Duration,
}

/// The reference loader: `ip -batch` binds the addresses, then `ipvsadm -R` writes the rules
/// `ipvsd plan` prints for the same manifests.
fn reference_full_sync(config: &Config, dir: &Path) -> Result<(Duration, Duration)> {
    let ns = Namespace::new("bench-reference")?;
    // plan needs no privilege, but reads this namespace's node addresses (none but lo's).
    let rules = run(ns
        .command(&config.ipvsd)
        .args(["plan", "--node-name", "bench", "--manifests"])
        .arg(dir))?;
    ensure!(
        rules.lines().count() == config.rules(),
        "ipvsd plan printed {} rules, expected {}",
        rules.lines().count(),
        config.rules()
    );
    let mut batch = format!("link add {DUMMY} type dummy\n");
    for i in 0..config.services {
        batch.push_str(&format!("address add {}/32 dev {DUMMY}\n", cluster_ip(i)));
    }
    let ip_batch = run_with_input(
        Command::new("ip").args(["-n", ns.name(), "-batch", "-"]),
        &batch,
    )?;
    let restore = run_with_input(ns.command(&config.ipvsadm).arg("-R"), &rules)?;
    check_table(&ns, config, "ip -batch and ipvsadm -R")?;
    Ok((ip_batch, restore))
}

fn check_table(ns: &Namespace, config: &Config, who: &str) -> Result<()> {
    let rules = ns.saved_rules(&config.ipvsadm)?;
    ensure!(
        rules == config.rules(),
        "{who} left {rules} IPVS rules, expected {}",
        config.rules()
    );
    let bound = ns.bound_addresses()?;
    ensure!(
        bound == config.services,
        "{who} left {bound} addresses on {DUMMY}, expected {}",
        config.services
    );
    Ok(())
}

fn ipvsd_full_sync(config: &Config, dir: &Path) -> Result<(Duration, SyncLog)> {
    let ns = Namespace::new("bench-ipvsd-once")?;
    let launched = now_seconds_of_day();
    let start = Instant::now();
    let out = ns
        .command(&config.ipvsd)
        .args(run_args(dir))
        .arg("--once")
        .stdin(Stdio::null())
        .output()
        .context("running ipvsd run --once")?;
    let elapsed = start.elapsed();
    let log = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "ipvsd run --once failed: {}: {log}",
        out.status
    );
    let events: Vec<Event> = log.lines().filter_map(|l| Event::parse(start, l)).collect();
    let sync_log = full_sync_log(launched, &events)?;
    check_table(&ns, config, "ipvsd run --once")?;
    Ok((elapsed, sync_log))
}

fn full_sync(config: &Config, dir: &Path) -> Result<FullSync> {
    // The reference goes first: if deleting a namespace with a large table slows what follows,
    // ipvsd pays for it, not the reference.
    let (ip_batch, ipvsadm_restore) = reference_full_sync(config, dir)?;
    let (ipvsd, ipvsd_log) = ipvsd_full_sync(config, dir)?;
    Ok(FullSync {
        ipvsd,
        ipvsd_log,
        ip_batch,
        ipvsadm_restore,
    })
}

/// A long-running `ipvsd run` whose log events arrive on a channel, stamped when read.
struct Daemon {
    child: Child,
    events: Receiver<Event>,
}

impl Daemon {
    fn start(ns: &Namespace, config: &Config, dir: &Path) -> Result<Daemon> {
        let mut child = ns
            .command(&config.ipvsd)
            .args(run_args(dir))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ipvsd run")?;
        let stderr = child.stderr.take().context("ipvsd's standard error")?;
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(event) = Event::parse(Instant::now(), &line) {
                    if event.message().contains("failed") || event.message().contains("error") {
                        eprintln!("ipvsd: {line}");
                    }
                    if tx.send(event).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Daemon { child, events })
    }

    /// Waits for an event `wanted` accepts; returns it and every event before it.
    fn wait_for(&self, limit: Duration, wanted: impl Fn(&Event) -> bool) -> Result<Vec<Event>> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    let done = wanted(&event);
                    seen.push(event);
                    if done {
                        return Ok(seen);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!("ipvsd logged nothing wanted within {limit:?}")
                }
                Err(RecvTimeoutError::Disconnected) => bail!("ipvsd's log ended (did it exit?)"),
            }
        }
    }

    /// Peak resident set size so far (VmHWM), from /proc.
    fn peak_rss_kib(&self) -> Result<u64> {
        let pid = self.child.id();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
        ensure!(
            comm.trim() == "ipvsd",
            "process {pid} is {:?}, not ipvsd: `ip netns exec` did not exec it",
            comm.trim()
        );
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in /proc/<pid>/status")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One change's times, all from the moment the edited file was in place.
struct Change {
    /// Until `ipvsadm -Ln -t VIP:PORT` listed the new endpoint.
    visible: Duration,
    /// Until ipvsd logged the re-read manifests (includes up to one poll interval).
    loaded: Duration,
    /// The "synced" event's own `elapsed_ms`: model, plan and the writes.
    sync: Duration,
}

struct Incremental {
    peak_rss_kib: u64,
    dump: Duration,
    changes: Vec<Change>,
}

/// Replaces a file in one step, so ipvsd never reads it half written.
fn replace_file(path: &Path, text: &str) -> Result<()> {
    let staging = path
        .parent()
        .and_then(Path::parent)
        .context("the manifest directory has no parent")?
        .join("staging.yaml.part");
    std::fs::write(&staging, text).with_context(|| format!("writing {}", staging.display()))?;
    std::fs::rename(&staging, path).with_context(|| format!("replacing {}", path.display()))
}

fn incremental(config: &Config, dir: &Path) -> Result<Incremental> {
    let ns = Namespace::new("bench-ipvsd-run")?;
    let daemon = Daemon::start(&ns, config, dir)?;
    daemon.wait_for(FULL_SYNC_LIMIT, |e| {
        e.message() == "synced" && e.flag("full") == Some(true) && e.number("failed") == Some(0)
    })?;
    check_table(&ns, config, "ipvsd run")?;
    let peak_rss_kib = daemon.peak_rss_kib()?;

    let mut dumps: Vec<Duration> = (0..3)
        .map(|_| {
            let start = Instant::now();
            let rules = ns.saved_rules(&config.ipvsadm)?;
            ensure!(rules == config.rules(), "ipvsadm -Sn shows {rules} rules");
            Ok(start.elapsed())
        })
        .collect::<Result<_>>()?;
    dumps.sort();

    let mut endpoints: BTreeMap<usize, Vec<Ipv4Addr>> = BTreeMap::new();
    let mut changes = Vec::new();
    for k in 0..config.changes {
        // Spread the edited Services over the table.
        let i = k * config.services / config.changes;
        let list = endpoints
            .entry(i)
            .or_insert_with(|| (0..config.endpoints).map(endpoint_addr).collect());
        let new = added_endpoint(k);
        list.push(new);
        let text = manifest(i, list);
        // Whatever ipvsd logged before this change (periodic repairs) is not this change's.
        while daemon.events.try_recv().is_ok() {}

        replace_file(&manifest_path(dir, i), &text)?;
        let edited = Instant::now();
        let vip = format!("{}:{SERVICE_PORT}", cluster_ip(i));
        let wanted = format!("{new}:{ENDPOINT_PORT}");
        let visible = loop {
            let listing = run(ns.command(&config.ipvsadm).args(["-Ln", "-t", &vip]))?;
            if listing.contains(&wanted) {
                break edited.elapsed();
            }
            ensure!(
                edited.elapsed() < CHANGE_LIMIT,
                "{wanted} did not appear under {vip} within {CHANGE_LIMIT:?}"
            );
            std::thread::sleep(CHECK_PAUSE);
        };
        let events = daemon.wait_for(CHANGE_LIMIT, |e| {
            e.message() == "synced" && e.number("operations").unwrap_or(0) > 0
        })?;
        let loaded = events
            .iter()
            .find(|e| e.message() == "manifests loaded")
            .context("no \"manifests loaded\" event before the sync")?
            .at
            .saturating_duration_since(edited);
        let synced = events.last().expect("wait_for returns the wanted event");
        ensure!(
            synced.number("failed") == Some(0),
            "the sync of change {k} had failed operations"
        );
        let sync = Duration::from_millis(synced.number("elapsed_ms").unwrap_or(0));
        changes.push(Change {
            visible,
            loaded,
            sync,
        });
        // Past --min-sync-period, so each change is synced on its own.
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(Incremental {
        peak_rss_kib,
        dump: dumps[dumps.len() / 2],
        changes,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// "min / median / max" of some durations, in milliseconds.
fn spread(mut values: Vec<Duration>) -> String {
    values.sort();
    format!(
        "{:>8.1} / {:>8.1} / {:>8.1} ms",
        ms(values[0]),
        ms(values[values.len() / 2]),
        ms(values[values.len() - 1])
    )
}

fn main() -> Result<()> {
    let config = Config::from_env()?;
    let dir = tempfile::tempdir().context("making a temporary directory")?;
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests)?;
    write_manifests(&manifests, &config)?;

    let full = full_sync(&config, &manifests)?;
    let reference = full.ip_batch + full.ipvsadm_restore;
    println!(
        "table: {} ClusterIP services x {} endpoints ({} rules, {} addresses)",
        config.services,
        config.endpoints,
        config.rules(),
        config.services
    );
    println!(
        "full sync, ipvsd run --once:            {:>9.3} s (its sync {:.3} s, IPVS writes {:.3} s)",
        full.ipvsd.as_secs_f64(),
        full.ipvsd_log.sync.as_secs_f64(),
        full.ipvsd_log.ipvs_writes.as_secs_f64()
    );
    for (stage, at) in &full.ipvsd_log.timeline {
        println!("  ipvsd --once at {:>9.3} s: {stage}", at.as_secs_f64());
    }
    println!(
        "full sync, ip -batch + ipvsadm -R:      {:>9.3} s (ip -batch {:.3} s, ipvsadm -R {:.3} s)",
        reference.as_secs_f64(),
        full.ip_batch.as_secs_f64(),
        full.ipvsadm_restore.as_secs_f64()
    );
    println!(
        "full sync ratio (reference/ipvsd):      {:>9.2}x",
        reference.as_secs_f64() / full.ipvsd.as_secs_f64()
    );
    println!(
        "IPVS writes ratio (ipvsadm -R/ipvsd):   {:>9.1}x",
        full.ipvsadm_restore.as_secs_f64() / full.ipvsd_log.ipvs_writes.as_secs_f64()
    );

    let inc = incremental(&config, &manifests)?;
    println!(
        "ipvsd peak RSS (VmHWM) after full sync: {:>9.1} MiB",
        inc.peak_rss_kib as f64 / 1024.0
    );
    println!(
        "one full dump, ipvsadm -Sn:             {:>9.1} ms (median of 3)",
        ms(inc.dump)
    );
    println!(
        "one endpoint added, {} changes, min / median / max (min-sync-period 100ms, manifest poll 200ms):",
        inc.changes.len()
    );
    println!(
        "  edit -> visible in ipvsadm -Ln -t:    {}",
        spread(inc.changes.iter().map(|c| c.visible).collect())
    );
    println!(
        "  edit -> manifests re-read (log):      {}",
        spread(inc.changes.iter().map(|c| c.loaded).collect())
    );
    println!(
        "  ipvsd's sync of the change (log):     {}",
        spread(inc.changes.iter().map(|c| c.sync).collect())
    );
    Ok(())
}
