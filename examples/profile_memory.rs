//! Where ipvsd's memory goes at N Services: a heap profile of the stages a first sync and a
//! repair go through, with the code ipvsd runs, on the host (no kernel needed).
//!
//! Every allocation is counted by `dhat`'s allocator. The program builds what ipvsd holds after
//! each stage and prints the live heap then (bytes and blocks), what the stage added, and the
//! highest heap reached within it; at the end, the allocation sites holding the most at the
//! highest point of the whole run, each named by its first frame in ipvsd's code:
//!
//! 1. **lists read**: the API server's list answers (JSON, as kube-apiserver writes the objects
//!    the side-by-side benchmark creates: NodePort Services, one EndpointSlice of E ready
//!    endpoints each, `managedFields` included) parsed into the source's store;
//! 2. **model**: the incremental model index built from the store (`ModelIndex::build`);
//! 3. **first sync**: planned and applied against an empty table in parts, as the controller
//!    does, leaving the controller's copy of the kernel table (the largest part's operations
//!    are printed);
//! 4. **nftables**: the element index and the full table's text;
//! 5. **traffic metrics**: the per-virtual-server series;
//! 6. **repair read**: the cache's fingerprints and the table read back, compared as it is read.
//!
//! Build with line tables so the sites have names:
//!
//!     CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo run --release --example profile_memory
//!
//! Environment: `PROFILE_SERVICES` (10000), `PROFILE_ENDPOINTS` (10), `PROFILE_SITES` (20: how
//! many sites to print), `PROFILE_JSON` (where dhat writes its whole profile, for dhat's
//! viewer; default `dhat-heap.json` in the working directory), `PROFILE_SOURCE` (`lists`, the
//! default: the list answers parsed straight into the store, their text counted as a stage of
//! its own; `kube`: read as ipvsd reads them on a cluster, by `KubeSource`'s watchers and
//! reflector stores from a stand-in API server on 127.0.0.1 that answers a page at a time, the
//! runtime and the source kept to the end).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use ipvsd::controller::{apply_to_cache, fit_cache};
use ipvsd::dataplane::{Fingerprints, IpvsComparison};
use ipvsd::metrics::Metrics;
use ipvsd::model::index::ModelIndex;
use ipvsd::model::{ModelConfig, NodePortAddresses};
use ipvsd::netfilter::{ElementIndex, MasqueradeConfig, Transaction};
use ipvsd::node_addresses::NodeAddresses;
use ipvsd::plan::{parts, plan_keys, Actual, GracefulTermination, Ownership, PART_SIZE};
use ipvsd::source::kube::Checked;
use ipvsd::source::kube::KubeSource;
use ipvsd::source::{Changes, ObjectKey, Objects, Slice, SliceEndpoint, Source};
use k8s_openapi::api::core::v1::Service;
use kube::core::ObjectList;
use serde_json::json;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const NODE_NAME: &str = "demo-node";
const NODE_ADDRESSES: [Ipv4Addr; 2] = [
    Ipv4Addr::new(192, 168, 50, 10),
    Ipv4Addr::new(192, 168, 50, 11),
];
const TIME: &str = "2026-12-02T06:00:00Z";

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v:?}")),
        Err(_) => Ok(default),
    }
}

fn cluster_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 1 + i as u32)
}

fn uid(kind: u8, i: usize) -> String {
    format!("{kind:08x}-0000-4000-8000-{i:012x}")
}

/// A Service as kube-apiserver answers it for what the benchmark creates.
fn service_json(i: usize) -> serde_json::Value {
    let ip = cluster_ip(i).to_string();
    json!({
        "metadata": {
            "name": format!("svc-{i:05}"),
            "namespace": "bench",
            "uid": uid(1, i),
            "resourceVersion": (1000 + 2 * i).to_string(),
            "creationTimestamp": TIME,
            "managedFields": [{
                "manager": "bench_api",
                "operation": "Update",
                "apiVersion": "v1",
                "time": TIME,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {
                    "f:externalTrafficPolicy": {},
                    "f:internalTrafficPolicy": {},
                    "f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {
                        ".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}
                    }},
                    "f:sessionAffinity": {},
                    "f:type": {}
                }}
            }]
        },
        "spec": {
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080,
                       "nodePort": 30000 + i}],
            "clusterIP": ip,
            "clusterIPs": [ip],
            "type": "NodePort",
            "sessionAffinity": "None",
            "externalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster"
        },
        "status": {"loadBalancer": {}}
    })
}

/// The EndpointSlice of Service `i`, as kube-apiserver answers it.
fn slice_json(i: usize, endpoints: usize) -> serde_json::Value {
    let endpoints: Vec<_> = (0..endpoints)
        .map(|j| {
            let address =
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + (i * 64 + j) as u32);
            json!({
                "addresses": [address.to_string()],
                "conditions": {"ready": true},
                "nodeName": if j % 3 == 0 { NODE_NAME.to_string() } else { format!("node-{}", j % 3) },
            })
        })
        .collect();
    json!({
        "metadata": {
            "name": format!("svc-{i:05}-1"),
            "namespace": "bench",
            "uid": uid(2, i),
            "resourceVersion": (1001 + 2 * i).to_string(),
            "generation": 1,
            "creationTimestamp": TIME,
            "labels": {"kubernetes.io/service-name": format!("svc-{i:05}")},
            "managedFields": [{
                "manager": "bench_api",
                "operation": "Update",
                "apiVersion": "discovery.k8s.io/v1",
                "time": TIME,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:addressType": {},
                    "f:endpoints": {},
                    "f:metadata": {"f:labels": {".": {}, "f:kubernetes.io/service-name": {}}},
                    "f:ports": {}
                }
            }]
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    })
}

const MIB: f64 = 1024.0 * 1024.0;

/// The live heap at the end of each stage, and the highest within it.
struct Stages {
    before: dhat::HeapStats,
    rows: Vec<(String, dhat::HeapStats, u64, f64)>,
    started: Instant,
}

impl Stages {
    fn new() -> Stages {
        Stages {
            before: dhat::HeapStats::get(),
            rows: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Starts the next stage's count here, after something transient was freed.
    fn rebase(&mut self) {
        self.before = dhat::HeapStats::get();
    }

    fn mark(&mut self, name: &str) {
        let now = dhat::HeapStats::get();
        let added = now.curr_bytes as i64 - self.before.curr_bytes as i64;
        eprintln!(
            "{name:<44} {:>9.1} MiB live ({:+.1} MiB, {} blocks), {:.1} s",
            now.curr_bytes as f64 / MIB,
            added as f64 / MIB,
            now.curr_blocks,
            self.started.elapsed().as_secs_f64()
        );
        self.rows.push((
            name.to_string(),
            now.clone(),
            now.max_bytes as u64,
            added as f64 / MIB,
        ));
        self.before = now;
        self.started = Instant::now();
    }
}

fn main() -> Result<()> {
    let services = env_usize("PROFILE_SERVICES", 10_000)?;
    let endpoints = env_usize("PROFILE_ENDPOINTS", 10)?;
    let sites = env_usize("PROFILE_SITES", 20)?;
    let json_path = std::env::var("PROFILE_JSON").unwrap_or_else(|_| "dhat-heap.json".into());
    let profiler = dhat::Profiler::builder().file_name(&json_path).build();

    let through_kube = match std::env::var("PROFILE_SOURCE").as_deref() {
        Ok("kube") => true,
        Ok("lists") | Err(_) => false,
        Ok(other) => anyhow::bail!("PROFILE_SOURCE={other:?}: expected lists or kube"),
    };
    let mut stages = Stages::new();
    // With PROFILE_SOURCE=kube the runtime, the stand-in API server and the source live on to
    // the end, as ipvsd's do.
    let mut kube_source = None;
    let objects = if through_kube {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        stages.rebase();
        let (source, objects) = runtime.block_on(read_through_kube_source(services, endpoints))?;
        stages.mark("1. lists read by KubeSource (its stores)");
        kube_source = Some((runtime, source));
        objects
    } else {
        let service_body = list_page("v1", "ServiceList", 0..services, services, service_json);
        let slice_body = list_page(
            "discovery.k8s.io/v1",
            "EndpointSliceList",
            0..services,
            services,
            |i| slice_json(i, endpoints),
        );
        stages.mark("list answers (JSON text)");

        // The source's store: every object shared by key.
        let mut objects = Objects::default();
        let list: ObjectList<Service> = serde_json::from_slice(&service_body)?;
        for mut s in list.items {
            s.trim_for_store();
            objects
                .services
                .insert(ObjectKey::of(&s.metadata), Arc::new(s));
        }
        let list: ObjectList<Slice> = serde_json::from_slice(&slice_body)?;
        for mut s in list.items {
            s.trim_for_store();
            objects
                .endpoint_slices
                .insert(ObjectKey::of(&s.metadata), Arc::new(s));
        }
        drop((service_body, slice_body));
        stages.mark("1. lists read into the store");
        objects
    };

    let nodes = NodeAddresses {
        addresses: NODE_ADDRESSES.iter().map(|a| IpAddr::V4(*a)).collect(),
        ..NodeAddresses::default()
    };
    let config = ModelConfig {
        node_name: NODE_NAME.to_string(),
        nodeport_addresses: NodePortAddresses::Cidrs(vec!["192.168.50.0/24".parse()?]),
        ..ModelConfig::default()
    };
    let model = ModelIndex::build(config, nodes.clone(), &objects);
    stages.mark("2. model index");
    let desired = model.desired();

    let ownership = Ownership {
        node_addresses: nodes,
        ..Ownership::default()
    };
    // The first sync, planned and applied a part at a time as the controller does.
    let mut actual = Actual::default();
    let mut planned = 0;
    let mut largest_part = 0;
    for (keys, addresses) in parts(desired, &actual, PART_SIZE) {
        let before = dhat::HeapStats::get().curr_bytes;
        let ops = plan_keys(
            desired,
            &actual,
            &ownership,
            &GracefulTermination::default(),
            Instant::now(),
            &keys,
            &addresses,
        );
        largest_part = largest_part.max(dhat::HeapStats::get().curr_bytes - before);
        for op in &ops {
            apply_to_cache(&mut actual, op);
        }
        fit_cache(&mut actual, &ops);
        planned += ops.len();
    }
    stages.mark("3. first sync (in parts): the cache");

    let elements = ElementIndex::of(desired);
    stages.mark("4. nftables element index");
    let text = Transaction::Replace(elements.contents()).render(&MasqueradeConfig::default());
    let text_len = text.len();
    stages.mark("   nftables table text (sent, then dropped)");
    drop(text);
    stages.rebase();

    let metrics = Metrics::new();
    let traffic: Vec<_> = desired
        .virtual_servers
        .iter()
        .filter_map(|(key, vs)| {
            actual
                .services
                .get(key)
                .map(|a| (*key, Arc::clone(&vs.origin).into(), a.service.stats))
        })
        .collect();
    metrics.set_traffic(&traffic);
    drop(traffic);
    stages.mark("5. traffic metrics");
    // A node is scraped again and again: the second scrape is the one that counts.
    drop(metrics.encode());
    stages.rebase();
    let scrape = metrics.encode();
    let scrape_len = scrape.len();
    stages.mark("   metrics scrape text (sent, then dropped)");
    drop(scrape);
    stages.rebase();

    // The repair: the cache's fingerprints, and the table read back one virtual server at a
    // time, each compared as it comes (here the read equals the cache, as after a first sync).
    let fingerprinting = Instant::now();
    let expected: Fingerprints = actual
        .services
        .iter()
        .map(|(key, service)| (*key, service.fingerprint()))
        .collect();
    let fingerprint_time = fingerprinting.elapsed();
    let mut comparison = IpvsComparison::default();
    for service in actual.services.values() {
        comparison.add(service.clone(), &expected);
    }
    stages.mark("6. repair read beside the cache");
    drop((comparison, expected));

    let peak = dhat::HeapStats::get().max_bytes;
    // Work the sync loop does at the start of the first repair (timed under the profiler, which
    // slows allocations, not hashing); later repairs fingerprint only what changed since.
    println!(
        "the cache's fingerprints, computed on the sync loop at the first repair's start: {:.1} ms",
        fingerprint_time.as_secs_f64() * 1000.0
    );
    println!(
        "{services} Services x {endpoints} endpoints: {} virtual servers, {} real servers, \
         {planned} first-sync operations (largest part {:.1} MiB), {} nftables elements ({:.1} MiB of text), \
         metrics scrape {:.1} MiB",
        desired.virtual_servers.len(),
        model.real_servers(),
        largest_part as f64 / MIB,
        elements
            .contents()
            .0
            .values()
            .map(|s| s.len())
            .sum::<usize>(),
        text_len as f64 / MIB,
        scrape_len as f64 / MIB,
    );
    println!(
        "sizes in bytes: Service {}, Slice {}, SliceEndpoint {}, VirtualServer {}, \
         RealServer {}, Destination {}, ActualService {}, ActualDestination {}, Operation {}",
        std::mem::size_of::<Service>(),
        std::mem::size_of::<Slice>(),
        std::mem::size_of::<SliceEndpoint>(),
        std::mem::size_of::<ipvsd::model::VirtualServer>(),
        std::mem::size_of::<ipvsd::model::RealServer>(),
        std::mem::size_of::<ipvs::Destination>(),
        std::mem::size_of::<ipvsd::plan::ActualService>(),
        std::mem::size_of::<ipvsd::plan::ActualDestination>(),
        std::mem::size_of::<ipvsd::plan::Operation>(),
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "stage", "live MiB", "added", "blocks"
    );
    for (name, stats, _, added) in &stages.rows {
        println!(
            "{name:<44} {:>10.1} {:>+10.1} {:>10}",
            stats.curr_bytes as f64 / MIB,
            added,
            stats.curr_blocks
        );
    }
    println!("highest live heap: {:.1} MiB", peak as f64 / MIB);

    drop((actual, metrics, elements, model, objects, kube_source));
    drop(profiler);
    print_sites(&json_path, sites)
}

/// Reads the objects as ipvsd does on a cluster: [`KubeSource`]'s watchers (kube-rs's, with
/// their reflector stores) list them from a stand-in API server on 127.0.0.1, which answers
/// each list a page at a time (`limit` and `continue`, as kube-apiserver does) and holds each
/// watch open without events. Returns once the source hands out its first full view.
async fn read_through_kube_source(
    services: usize,
    endpoints: usize,
) -> Result<(KubeSource, Objects)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| async move {
                    Ok::<_, Infallible>(answer(&request, services, endpoints))
                });
                // A connection ends when the source is dropped: nothing to report.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let client = kube::Client::try_from(kube::Config::new(url.parse()?))?;
    let source = KubeSource::spawn(client, None, tokio::sync::watch::channel(0).0);
    let started = Instant::now();
    loop {
        if let Some(Changes::Full(objects)) = source.take_changes(true) {
            return Ok((source, objects));
        }
        anyhow::ensure!(
            started.elapsed().as_secs() < 600,
            "the source did not list the stand-in API server's objects within 600 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

type Body = http_body_util::combinators::BoxBody<bytes::Bytes, Infallible>;

/// The stand-in API server's answer: a page of a list, or a watch that stays open.
fn answer<B>(
    request: &hyper::Request<B>,
    services: usize,
    endpoints: usize,
) -> hyper::Response<Body> {
    use http_body_util::BodyExt;
    let query: BTreeMap<&str, &str> = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    if query.contains_key("watch") {
        let never =
            futures::stream::pending::<Result<hyper::body::Frame<bytes::Bytes>, Infallible>>();
        return hyper::Response::new(http_body_util::StreamBody::new(never).boxed());
    }
    let start: usize = query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(services);
    let end = (start + limit).min(services);
    let body = match request.uri().path() {
        "/api/v1/services" => list_page("v1", "ServiceList", start..end, services, service_json),
        "/apis/discovery.k8s.io/v1/endpointslices" => list_page(
            "discovery.k8s.io/v1",
            "EndpointSliceList",
            start..end,
            services,
            |i| slice_json(i, endpoints),
        ),
        _ => {
            let mut response = hyper::Response::new(
                http_body_util::Full::new(bytes::Bytes::from_static(b"{}")).boxed(),
            );
            *response.status_mut() = hyper::StatusCode::NOT_FOUND;
            return response;
        }
    };
    let mut response =
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)).boxed());
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A list answer, or one page of it: `items` of `total`, with a `continue` token when more
/// follow. Its items are made and written one at a time (so that making the input is not the
/// highest point of the profile).
fn list_page(
    api_version: &str,
    kind: &str,
    items: std::ops::Range<usize>,
    total: usize,
    item: impl Fn(usize) -> serde_json::Value,
) -> Vec<u8> {
    let more = if items.end < total {
        format!(r#","continue":"{}""#, items.end)
    } else {
        String::new()
    };
    let mut body = format!(
        r#"{{"apiVersion":"{api_version}","kind":"{kind}","metadata":{{"resourceVersion":"99999"{more}}},"items":["#
    )
    .into_bytes();
    for i in items.clone() {
        if i > items.start {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, &item(i)).expect("JSON values serialise");
    }
    body.extend_from_slice(b"]}");
    body.shrink_to_fit();
    body
}

/// The sites holding the most at the highest point, from dhat's file: each named by its first
/// frame in ipvsd's code (and the frame it calls, when that is a library's).
fn print_sites(path: &str, count: usize) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let profile: serde_json::Value = serde_json::from_str(&text)?;
    let frames: Vec<&str> = profile["ftbl"]
        .as_array()
        .context("no frame table")?
        .iter()
        .map(|f| f.as_str().unwrap_or(""))
        .collect();
    let mut by_site: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for pp in profile["pps"].as_array().context("no program points")? {
        let bytes = pp["gb"].as_u64().unwrap_or(0);
        let blocks = pp["gbk"].as_u64().unwrap_or(0);
        if bytes == 0 {
            continue;
        }
        let fs: Vec<&str> = pp["fs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| frames.get(i.as_u64()? as usize).copied())
            .collect();
        let name = site_name(&fs);
        let entry = by_site.entry(name).or_default();
        entry.0 += bytes;
        entry.1 += blocks;
    }
    let mut sites: Vec<_> = by_site.into_iter().collect();
    sites.sort_by_key(|(_, (bytes, _))| std::cmp::Reverse(*bytes));
    let total: u64 = sites.iter().map(|s| s.1 .0).sum();
    println!(
        "at the highest point, {:.1} MiB, by site:",
        total as f64 / MIB
    );
    for (name, (bytes, blocks)) in sites.iter().take(count) {
        println!(
            "{:>8.1} MiB {:>5.1}% {:>9} blocks  {name}",
            *bytes as f64 / MIB,
            100.0 * *bytes as f64 / total.max(1) as f64,
            blocks
        );
    }
    Ok(())
}

/// A site: what was allocated (the innermost frame naming a type other than the allocator's)
/// and the first function of this repository's code on the way (frames are innermost first).
fn site_name(frames: &[&str]) -> String {
    const OURS: [&str; 4] = ["src/", "main/src/", "ipvs/src/", "main/examples/"];
    let ours = frames.iter().position(|f| {
        let place = f.rsplit_once(" (").map_or("", |(_, p)| p);
        OURS.iter().any(|p| place.starts_with(p))
            && !is_library_place(place)
            && !f.contains("__rust_alloc")
    });
    let inner = &frames[..ours.unwrap_or(frames.len())];
    let what = inner
        .iter()
        .map(|f| simplify(&function_of(f)))
        .find(|f| f.contains('<') && !f.contains("<Global>") && !f.starts_with("alloc"))
        .unwrap_or_default();
    match ours {
        Some(i) => format!("{what} @ {}", simplify(&function_of(frames[i]))),
        None => what,
    }
}

/// Places the standard library and dependencies also name `src/...`.
fn is_library_place(place: &str) -> bool {
    [
        "src/vec/",
        "src/raw_vec/",
        "src/de/",
        "src/ser/",
        "src/lib.rs",
        "src/alloc.rs",
        "src/boxed.rs",
    ]
    .iter()
    .any(|p| place.starts_with(p))
}

/// The function and place of a frame, without its address.
fn function_of(frame: &str) -> String {
    let name = frame.split_once(": ").map_or(frame, |(_, n)| n);
    let (function, place) = name.rsplit_once(" (").unwrap_or((name, ""));
    let place = place.trim_end_matches(')').rsplit('/').next().unwrap_or("");
    format!("{function} ({place})")
}

/// Paths shortened to their last segment, and long names cut.
fn simplify(name: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            out.push_str(word.rsplit("::").next().unwrap_or(&word));
            word.clear();
            out.push(c);
        }
    }
    out.push_str(word.rsplit("::").next().unwrap_or(&word));
    if out.chars().count() > 110 {
        out = out.chars().take(107).collect::<String>() + "...";
    }
    out
}
