//! Writes a large IPVS table twice — with `ipvsadm -R` and with the client's batched
//! [`ipvs::Client::execute`] — and prints both times and their ratio.
//!
//! Each contender writes into a network namespace of its own, made fresh for it (IPVS keeps
//! one table per namespace), so neither inherits the other's leftovers: after a flush the
//! kernel keeps deleted destinations in a trash list for a minute or two and scans that list on
//! every destination it adds, which would make whoever writes second pay for the first.
//!
//! Run it as root on a kernel with IPVS (the test bed: `testbed/vm -- /testbed/bin/bench_restore`).
//! `IPVSADM` names the ipvsadm binary (default `ipvsadm`); `BENCH_SERVICES` and
//! `BENCH_DESTINATIONS` size the table (default 2000 × 10). It runs `ip netns`.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ipvs::{Client, Destination, Protocol, Request, Service, ServiceKey};

#[path = "support/mod.rs"]
mod support;

use support::{env_usize, run, Namespace};

/// Service `i` listens on 10.(i / 65536 + 100).(i / 256 % 256).(i % 256):80, so the table can
/// grow past 65,536 services without clashing.
fn service_addr(i: usize) -> Ipv4Addr {
    let n = i as u32;
    Ipv4Addr::new(
        10,
        (100 + n / 65536) as u8,
        (n / 256 % 256) as u8,
        (n % 256) as u8,
    )
}

fn service_key(i: usize) -> ServiceKey {
    ServiceKey::Addr {
        address: IpAddr::V4(service_addr(i)),
        protocol: Protocol::Tcp,
        port: 80,
    }
}

fn destination_addr(j: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, 16, (j / 256) as u8, (j % 256) as u8)
}

fn restore_script(services: usize, dests: usize) -> String {
    let mut s = String::new();
    for i in 0..services {
        let a = service_addr(i);
        s.push_str(&format!("-A -t {a}:80 -s rr\n"));
        for j in 0..dests {
            let d = destination_addr(j);
            s.push_str(&format!("-a -t {a}:80 -r {d}:8080 -m -w 1\n"));
        }
    }
    s
}

async fn count(client: &Client) -> Result<(usize, usize)> {
    let services = client.services().await?;
    let mut dests = 0;
    for s in &services {
        dests += client.destinations(&s.key).await?.len();
    }
    Ok((services.len(), dests))
}

fn ipvsadm_restore(netns: &Namespace, ipvsadm: &str, script: &str) -> Result<Duration> {
    let start = Instant::now();
    let mut child = netns
        .command(ipvsadm)
        .arg("-R")
        .stdin(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {ipvsadm} -R"))?;
    child
        .stdin
        .take()
        .context("ipvsadm stdin")?
        .write_all(script.as_bytes())?;
    let status = child.wait()?;
    let elapsed = start.elapsed();
    if !status.success() {
        bail!("{ipvsadm} -R failed: {status}");
    }
    Ok(elapsed)
}

/// Flag of the run inside the client's namespace: write the table, check it, print the time.
const CLIENT_PHASE: &str = "--client-phase";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    // The client's "bulk write" event says how much of its time the kernel spent in sendmsg.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "ipvs=debug".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let services = env_usize("BENCH_SERVICES", 2000)?;
    let dests = env_usize("BENCH_DESTINATIONS", 10)?;
    if std::env::args().nth(1).as_deref() == Some(CLIENT_PHASE) {
        let client_time = client_write(services, dests).await?;
        println!("{}", client_time.as_secs_f64());
        return Ok(());
    }
    let ipvsadm = std::env::var("IPVSADM").unwrap_or_else(|_| "ipvsadm".to_string());

    let script = restore_script(services, dests);
    let ipvsadm_ns = Namespace::new("bench-ipvsadm")?;
    let ipvsadm_time = ipvsadm_restore(&ipvsadm_ns, &ipvsadm, &script)?;
    let saved = run(ipvsadm_ns.command(&ipvsadm).arg("-Sn"))?;
    ensure!(
        saved.lines().count() == services * (dests + 1),
        "ipvsadm -R wrote {} rules, expected {}",
        saved.lines().count(),
        services * (dests + 1)
    );
    drop(ipvsadm_ns);

    let client_ns = Namespace::new("bench-client")?;
    let me = std::env::current_exe()?;
    let printed = run(client_ns
        .command(me.to_str().context("path of this program")?)
        .arg(CLIENT_PHASE))?;
    let client_time = Duration::from_secs_f64(
        printed
            .trim()
            .parse()
            .with_context(|| format!("the client phase printed {printed:?}"))?,
    );
    drop(client_ns);

    let total = services * (dests + 1);
    println!("table: {services} services x {dests} destinations ({total} rules)");
    println!(
        "ipvsadm -R:            {:>10.3} s",
        ipvsadm_time.as_secs_f64()
    );
    println!(
        "Client::execute:       {:>10.3} s",
        client_time.as_secs_f64()
    );
    println!(
        "ratio (ipvsadm/client): {:>9.1}x",
        ipvsadm_time.as_secs_f64() / client_time.as_secs_f64()
    );
    Ok(())
}

/// Writes the table with [`Client::execute`] into this (fresh) namespace and checks it.
async fn client_write(services: usize, dests: usize) -> Result<Duration> {
    let client = Client::connect().await?;
    ensure!(
        count(&client).await? == (0, 0),
        "the namespace is not fresh"
    );
    let mut requests = Vec::with_capacity(services * (dests + 1));
    for i in 0..services {
        let key = service_key(i);
        requests.push(Request::AddService(Service::new(key, "rr")));
        for j in 0..dests {
            requests.push(Request::AddDestination(
                key,
                Destination::new(IpAddr::V4(destination_addr(j)), 8080),
            ));
        }
    }
    let total = requests.len();
    let start = Instant::now();
    let results = client.execute(requests).await;
    let client_time = start.elapsed();
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    ensure!(
        failed.is_empty(),
        "{} of {total} requests failed, first: {}",
        failed.len(),
        failed[0]
    );
    let written = count(&client).await?;
    ensure!(
        written == (services, services * dests),
        "client wrote {written:?}, expected ({services}, {})",
        services * dests
    );
    Ok(client_time)
}
