//! Measures ipvsd's nftables transactions at scale and prints them beside a reference, as ratios.
//!
//! For N NodePort Services × M endpoints (endpoints spread over three nodes, a third of them on
//! this one; node ports on two node addresses), it builds the set elements ipvsd's model gives
//! and times, each in a network namespace of its own:
//!
//! 1. the full table: what the first sync and every periodic repair write, in one transaction;
//! 2. one change: a Service added, then one endpoint of this node added, as the element
//!    transactions a sync sends, a few times each;
//! 3. the reference: the same full table written again into a table that holds it already —
//!    what a proxy that rewrites its whole ruleset on every change pays per change (kube-proxy's
//!    iptables and IPVS modes restore every rule on each sync).
//!
//! It prints the sizes (elements, bytes of `nft` input) and times, and the ratio of a change to
//! the reference: the cost of a change must not grow with the number of Services.
//!
//! Run as root where nftables works (the test bed: `testbed/vm -- /testbed/bin/bench_nftables`).
//! Environment: `BENCH_SERVICES` (sizes to run, default `1000,10000`), `BENCH_ENDPOINTS` (10),
//! `BENCH_CHANGES` (5).

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ipvs::Protocol;
use ipvsd::netfilter::{self, Elements, MasqueradeConfig, Transaction};

#[path = "../ipvs/examples/support/mod.rs"]
mod support;

use support::{env_usize, Namespace};

fn cluster_ip(i: usize) -> IpAddr {
    let i = i as u32 + 1;
    IpAddr::V4(Ipv4Addr::new(10, 96, (i >> 8) as u8, i as u8))
}

/// Endpoint `j` of Service `i`: unique per Service, on node `j % 3`.
fn endpoint(i: usize, j: usize) -> IpAddr {
    let n = (i * 64 + j) as u32;
    IpAddr::V4(Ipv4Addr::new(
        10,
        128 + (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
    ))
}

const NODE_ADDRESSES: [Ipv4Addr; 2] =
    [Ipv4Addr::new(192, 168, 50, 11), Ipv4Addr::new(10, 0, 0, 11)];

/// The elements of Service `i` with `endpoints` endpoints, added to `out`.
fn add_service(out: &mut Elements, i: usize, endpoints: usize) {
    out.cluster_ips.insert((cluster_ip(i), Protocol::Tcp, 80));
    // The cluster IP is bound to the dummy interface: the port filter guards it.
    out.bound_addresses.insert(cluster_ip(i));
    out.bound_services
        .insert((cluster_ip(i), Protocol::Tcp, 80));
    for node in NODE_ADDRESSES {
        out.masquerade
            .insert((IpAddr::V4(node), Protocol::Tcp, 20000 + i as u16));
    }
    for j in (0..endpoints).filter(|j| j % 3 == 0) {
        out.hairpin.insert((endpoint(i, j), Protocol::Tcp, 8080));
    }
}

impl Namespace {
    /// Runs `nft -f -` with `script` in the namespace; returns the time it took.
    fn nft(&self, script: &str) -> Result<Duration> {
        let started = Instant::now();
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running nft")?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(script.as_bytes())?;
        let output = child.wait_with_output()?;
        let elapsed = started.elapsed();
        if !output.status.success() {
            bail!(
                "nft failed in {}: {}",
                self.name(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(elapsed)
    }

    fn list_count(&self, set: &str, needle: &str) -> Result<usize> {
        let out = self
            .command("nft")
            .args(["list", "set", "inet", "ipvsd", set])
            .output()?;
        ensure!(out.status.success(), "nft list set {set} failed");
        Ok(String::from_utf8_lossy(&out.stdout).matches(needle).count())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let sizes = std::env::var("BENCH_SERVICES").unwrap_or_else(|_| "1000,10000".into());
    let endpoints = env_usize("BENCH_ENDPOINTS", 10)?;
    let changes = env_usize("BENCH_CHANGES", 5)?;
    ensure!((1..=60).contains(&endpoints), "BENCH_ENDPOINTS: 1 to 60");
    ensure!((1..=100).contains(&changes), "BENCH_CHANGES: 1 to 100");
    let mut per_size = Vec::new();
    for size in sizes.split(',') {
        let services: usize = size
            .trim()
            .parse()
            .with_context(|| format!("BENCH_SERVICES: {size:?} is not a count"))?;
        ensure!(
            (1..=40_000).contains(&services),
            "BENCH_SERVICES: 1 to 40,000 each"
        );
        per_size.push((services, bench(services, endpoints, changes)?));
        println!();
    }
    if let [(small, a), .., (large, b)] = &per_size[..] {
        println!(
            "one Service added at {large} Services / at {small}: {:.2}x (a change costs what it changes)",
            b.as_secs_f64() / a.as_secs_f64()
        );
    }
    Ok(())
}

/// Runs the benchmark at one size; returns the median time of adding one Service.
fn bench(services: usize, endpoints: usize, changes: usize) -> Result<Duration> {
    let config = MasqueradeConfig {
        cluster_cidrs: vec!["10.128.0.0/9".parse()?],
        masquerade_all: false,
    };

    let mut elements = Elements::default();
    for i in 0..services {
        add_service(&mut elements, i, endpoints);
    }
    let render_started = Instant::now();
    let full = Transaction::Replace(elements.contents()).render(&config);
    let render = render_started.elapsed();
    println!(
        "nftables table for {services} NodePort Services x {endpoints} endpoints: {} elements, {} KiB of nft input (rendered in {:.1} ms)",
        elements.contents().len(),
        full.len() / 1024,
        ms(render)
    );

    // 1. The full table, into a fresh namespace.
    let ns = Namespace::new("bench-nft-ipvsd")?;
    let first = ns.nft(&full)?;
    ensure!(
        ns.list_count("cluster-ips-v4", " . 80")? == services,
        "the table does not hold every cluster IP"
    );
    println!("full table (first sync):          {:>9.1} ms", ms(first));

    // 2. Changes: a Service added (its elements only), then one local endpoint added.
    let mut add_times = Vec::new();
    let mut endpoint_times = Vec::new();
    let mut change_bytes = 0;
    let mut change_elements = 0;
    let mut actual = elements.clone();
    for k in 0..changes {
        let mut desired = actual.clone();
        add_service(&mut desired, services + k, endpoints);
        let tx = Transaction::Change(netfilter::diff(&desired.contents(), &actual.contents()));
        let script = tx.render(&config);
        change_bytes = change_bytes.max(script.len());
        change_elements = change_elements.max(tx.elements());
        add_times.push(ns.nft(&script)?);
        actual = desired;

        let mut desired = actual.clone();
        desired
            .hairpin
            .insert((endpoint(k, 63), Protocol::Tcp, 8080));
        let tx = Transaction::Change(netfilter::diff(&desired.contents(), &actual.contents()));
        endpoint_times.push(ns.nft(&tx.render(&config))?);
        actual = desired;
    }
    println!(
        "one Service added (<= {change_elements} elements, <= {change_bytes} bytes): median {:>7.1} ms of {changes}",
        ms(median(add_times.clone()))
    );
    println!(
        "one local endpoint added (1 element):    median {:>7.1} ms of {changes}",
        ms(median(endpoint_times.clone()))
    );

    // 3. The reference: rewriting everything for a change.
    let mut rewrites = Vec::new();
    for _ in 0..changes.min(3) {
        rewrites.push(ns.nft(&Transaction::Replace(actual.contents()).render(&config))?);
    }
    let rewrite = median(rewrites);
    println!("reference, whole table rewritten: {:>9.1} ms", ms(rewrite));
    println!(
        "ratio reference / one Service added: {:.0}x; reference / one endpoint added: {:.0}x",
        rewrite.as_secs_f64() / median(add_times.clone()).as_secs_f64(),
        rewrite.as_secs_f64() / median(endpoint_times).as_secs_f64()
    );
    Ok(median(add_times))
}
