//! The kube-proxy comparison's driver, run in the test bed VM by `testbed/kube-proxy-compare`.
//!
//! Two node network namespaces see the same API server: one runs kube-proxy in IPVS mode, the
//! other ipvsd, with the same node name and addresses, the same dummy interface and CIDRs. This
//! program applies a corpus of Services and EndpointSlices through the API (the project's
//! examples/demo, one Service per type and policy, and a seeded random sequence of creates,
//! edits and deletes), and after each step waits for both nodes to settle and compares their
//! normalized `ipvsadm -Sn` and the addresses of kube-ipvs0. Every line found on one side only
//! must be explained by an entry of the intended-differences file; the others are counted as
//! unexplained. It also checks, once the demo is applied, that ipvsd's table equals what
//! `ipvsd plan --manifests` computes from the same files.
//!
//! Usage: kube_compare --kubeconfig FILE --reference-ns NS --ipvsd-ns NS --differences FILE
//!        --examples DIR --nodeport-addresses CIDRS [--random-steps N] [--seed N]
//!        [--max-steps N]
//! Prints `kube-proxy comparison: N steps, M unexplained differences` (the caller adds the
//! version) and `manifest parity: ok|FAILED`; exits non-zero on any unexplained difference.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::{json, Value};

struct Args {
    kubeconfig: String,
    reference_ns: String,
    ipvsd_ns: String,
    differences: String,
    examples: String,
    nodeport_addresses: String,
    random_steps: usize,
    seed: u64,
    max_steps: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        kubeconfig: String::new(),
        reference_ns: String::new(),
        ipvsd_ns: String::new(),
        differences: String::new(),
        examples: String::new(),
        nodeport_addresses: String::new(),
        random_steps: 12,
        seed: 10,
        max_steps: usize::MAX,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--kubeconfig" => args.kubeconfig = value,
            "--reference-ns" => args.reference_ns = value,
            "--ipvsd-ns" => args.ipvsd_ns = value,
            "--differences" => args.differences = value,
            "--examples" => args.examples = value,
            "--nodeport-addresses" => args.nodeport_addresses = value,
            "--random-steps" => args.random_steps = value.parse()?,
            "--seed" => args.seed = value.parse()?,
            "--max-steps" => args.max_steps = value.parse()?,
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(args)
}

/// One entry of the intended-differences file.
#[derive(Deserialize)]
struct Intended {
    id: String,
    #[allow(dead_code)]
    reason: String,
    /// Regular-expression-free patterns: a difference line is explained when it contains every
    /// string of one of these lists. Lines are `kube-proxy: LINE` or `ipvsd: LINE`.
    matches: Vec<Vec<String>>,
    /// A condition on ipvsd's table that must hold as well (see [`Condition`]).
    #[serde(default)]
    only_where: Option<Condition>,
}

/// What must hold in ipvsd's table for a difference to count as intended, so that an entry
/// explains the case it was written for and no other.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
enum Condition {
    /// The line is a real server (`-a`) of a virtual server that ipvsd has too, without any
    /// real server: the Service's policy leaves this node none, it is not a real server lost.
    IpvsdVirtualServerEmpty,
}

impl Condition {
    fn holds(self, line: &str, ipvsd: &View) -> bool {
        match self {
            Condition::IpvsdVirtualServerEmpty => {
                let Some(rule) = line.split_once(": ").map(|(_, rule)| rule) else {
                    return false;
                };
                let Some(rest) = rule.strip_prefix("-a ") else {
                    return false;
                };
                // "-t ADDR:PORT" (or "-f MARK"): the virtual server's two words.
                let virtual_server: Vec<&str> = rest.split_whitespace().take(2).collect();
                if virtual_server.len() < 2 {
                    return false;
                }
                let virtual_server = virtual_server.join(" ");
                let service = format!("-A {virtual_server} ");
                let destination = format!("-a {virtual_server} ");
                ipvsd.lines.iter().any(|l| l.starts_with(&service))
                    && !ipvsd.lines.iter().any(|l| l.starts_with(&destination))
            }
        }
    }
}

#[derive(Deserialize)]
struct IntendedFile {
    differences: Vec<Intended>,
}

enum Action {
    Apply(Value),
    Status(Value),
    Delete {
        kind: String,
        namespace: String,
        name: String,
    },
}

struct Step {
    name: String,
    actions: Vec<Action>,
}

/// A node's view: the normalized `ipvsadm -Sn` lines and kube-ipvs0's addresses.
#[derive(Clone, PartialEq, Eq, Debug)]
struct View {
    lines: BTreeSet<String>,
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn view(ns: &str) -> Result<View> {
    let mut lines = BTreeSet::new();
    for line in run("ip", &["netns", "exec", ns, "ipvsadm", "-Sn"])?.lines() {
        lines.insert(line.trim().to_string());
    }
    let addrs =
        run("ip", &["-n", ns, "-o", "addr", "show", "dev", "kube-ipvs0"]).unwrap_or_default();
    for line in addrs.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| *w == "inet" || *w == "inet6") {
            lines.insert(format!("bind {}", words[i + 1]));
        }
    }
    Ok(View { lines })
}

/// Waits until both nodes have settled and returns their views: 2 s without change when every
/// difference between them is intended, otherwise `limit`. A difference nobody intended is
/// given the whole limit to go away: a proxy that is slow to program a new Service (kube-proxy
/// once took more than 30 s on a slow emulated host, and its periodic sync is 30 s) must not
/// pass for a different one.
fn settle(
    reference: &str,
    ipvsd: &str,
    intended: &[Intended],
    limit: Duration,
) -> Result<(View, View)> {
    let start = Instant::now();
    let mut last = (view(reference)?, view(ipvsd)?);
    let mut stable_since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = (view(reference)?, view(ipvsd)?);
        if now != last {
            last = now;
            stable_since = Instant::now();
            continue;
        }
        let stable = stable_since.elapsed();
        let all_intended = differences(&last.0, &last.1)
            .iter()
            .all(|line| explained(line, intended, &last.1).is_some());
        if (all_intended && stable >= Duration::from_secs(2)) || start.elapsed() > limit {
            return Ok(last);
        }
    }
}

/// The lines found on one node only: `kube-proxy: LINE` or `ipvsd: LINE`.
fn differences(reference: &View, ipvsd: &View) -> Vec<String> {
    let mut lines = Vec::new();
    for line in reference.lines.difference(&ipvsd.lines) {
        lines.push(format!("kube-proxy: {line}"));
    }
    for line in ipvsd.lines.difference(&reference.lines) {
        lines.push(format!("ipvsd: {line}"));
    }
    lines
}

fn explained(line: &str, intended: &[Intended], ipvsd: &View) -> Option<String> {
    intended
        .iter()
        .find(|d| {
            d.matches
                .iter()
                .any(|all| all.iter().all(|s| line.contains(s.as_str())))
                && d.only_where.is_none_or(|c| c.holds(line, ipvsd))
        })
        .map(|d| d.id.clone())
}

fn yaml_objects(dir: &str) -> Result<Vec<Value>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Value = Value::deserialize(doc)?;
            if value.is_null() {
                continue;
            }
            if value["kind"] == "List" {
                objects.extend(value["items"].as_array().cloned().unwrap_or_default());
            } else {
                objects.push(value);
            }
        }
    }
    Ok(objects)
}

fn service(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "corpus"}, "spec": spec})
}

fn endpoint(address: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> Value {
    json!({"addresses": [address], "nodeName": node,
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
}

fn slice(name: &str, service: &str, family: &str, endpoints: Vec<Value>, ports: Value) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "corpus",
            "labels": {"kubernetes.io/service-name": service}},
        "addressType": family, "endpoints": endpoints, "ports": ports})
}

fn http_port() -> Value {
    json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
}

/// One Service of each type and policy, each with its slice.
fn corpus() -> Vec<Step> {
    let node = "demo-node";
    let other = "other-node";
    let ports = |np: Option<u32>| {
        let mut p = json!({"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"});
        if let Some(np) = np {
            p["nodePort"] = json!(np);
        }
        json!([p])
    };
    let mut steps = Vec::new();
    let mut add = |name: &str, actions: Vec<Action>| {
        steps.push(Step {
            name: name.into(),
            actions,
        })
    };
    add(
        "namespace corpus",
        vec![Action::Apply(
            json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "corpus"}}),
        )],
    );
    add(
        "NodePort, externalTrafficPolicy Local, endpoints on two nodes",
        vec![
            Action::Apply(service(
                "np-local",
                json!({"type": "NodePort", "clusterIP": "10.96.1.10",
                "externalTrafficPolicy": "Local", "ports": ports(Some(30110))}),
            )),
            Action::Apply(slice(
                "np-local-1",
                "np-local",
                "IPv4",
                vec![
                    endpoint("10.244.1.1", node, true, true, false),
                    endpoint("10.244.2.1", other, true, true, false),
                ],
                http_port(),
            )),
        ],
    );
    add(
        "ClusterIP, internalTrafficPolicy Local",
        vec![
            Action::Apply(service(
                "itp-local",
                json!({"clusterIP": "10.96.1.11",
                "internalTrafficPolicy": "Local", "ports": ports(None)}),
            )),
            Action::Apply(slice(
                "itp-local-1",
                "itp-local",
                "IPv4",
                vec![
                    endpoint("10.244.1.2", node, true, true, false),
                    endpoint("10.244.2.2", other, true, true, false),
                ],
                http_port(),
            )),
        ],
    );
    add(
        "LoadBalancer with ingress IP (status), externalIPs, source ranges",
        vec![
            Action::Apply(service(
                "lb",
                json!({"type": "LoadBalancer", "clusterIP": "10.96.1.12",
                "externalIPs": ["203.0.113.12"], "ports": ports(Some(30112)),
                "loadBalancerSourceRanges": ["192.0.2.0/24"]}),
            )),
            Action::Status(json!({"kind": "Service", "name": "lb",
                "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.12"}]}}})),
            Action::Apply(slice(
                "lb-1",
                "lb",
                "IPv4",
                vec![endpoint("10.244.1.3", node, true, true, false)],
                http_port(),
            )),
        ],
    );
    add(
        "LoadBalancer, externalTrafficPolicy Local, ingress ipMode Proxy",
        vec![
            Action::Apply(service(
                "lb-proxy",
                json!({"type": "LoadBalancer", "clusterIP": "10.96.1.13",
                "externalTrafficPolicy": "Local", "ports": ports(Some(30113))}),
            )),
            Action::Status(json!({"kind": "Service", "name": "lb-proxy",
                "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.13", "ipMode": "Proxy"}]}}})),
            Action::Apply(slice(
                "lb-proxy-1",
                "lb-proxy",
                "IPv4",
                vec![
                    endpoint("10.244.1.4", node, true, true, false),
                    endpoint("10.244.2.4", other, true, true, false),
                ],
                http_port(),
            )),
        ],
    );
    add(
        "session affinity ClientIP with a timeout, named target port, UDP and TCP",
        vec![
            Action::Apply(service(
                "sticky",
                json!({"clusterIP": "10.96.1.14",
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 300}},
                "ports": [
                    {"name": "web", "port": 80, "targetPort": "web", "protocol": "TCP"},
                    {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}]}),
            )),
            Action::Apply(slice(
                "sticky-1",
                "sticky",
                "IPv4",
                vec![
                    endpoint("10.244.1.5", node, true, true, false),
                    endpoint("10.244.1.6", node, true, true, false),
                ],
                json!([{"name": "web", "port": 8081, "protocol": "TCP"},
                       {"name": "dns", "port": 5353, "protocol": "UDP"}]),
            )),
        ],
    );
    add(
        "terminating endpoints: none ready, some serving",
        vec![
            Action::Apply(service(
                "term",
                json!({"clusterIP": "10.96.1.15", "ports": ports(None)}),
            )),
            Action::Apply(slice(
                "term-1",
                "term",
                "IPv4",
                vec![
                    endpoint("10.244.1.7", node, false, true, true),
                    endpoint("10.244.1.8", node, false, false, true),
                ],
                http_port(),
            )),
        ],
    );
    add(
        "terminating endpoints beside a ready one",
        vec![Action::Apply(slice(
            "term-1",
            "term",
            "IPv4",
            vec![
                endpoint("10.244.1.7", node, false, true, true),
                endpoint("10.244.1.9", node, true, true, false),
            ],
            http_port(),
        ))],
    );
    add(
        "dual-stack NodePort",
        vec![
            Action::Apply(service(
                "dual-np",
                json!({"type": "NodePort",
                "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"],
                "clusterIP": "10.96.1.16", "clusterIPs": ["10.96.1.16", "fd00:96::1:16"], "ports": ports(Some(30116))}),
            )),
            Action::Apply(slice(
                "dual-np-4",
                "dual-np",
                "IPv4",
                vec![endpoint("10.244.1.10", node, true, true, false)],
                http_port(),
            )),
            Action::Apply(slice(
                "dual-np-6",
                "dual-np",
                "IPv6",
                vec![endpoint("fd00:244::1:10", node, true, true, false)],
                http_port(),
            )),
        ],
    );
    add(
        "headless and other proxy's Services, an ExternalName",
        vec![
            Action::Apply(service(
                "headless",
                json!({"clusterIP": "None", "ports": ports(None)}),
            )),
            Action::Apply(slice(
                "headless-1",
                "headless",
                "IPv4",
                vec![endpoint("10.244.1.11", node, true, true, false)],
                http_port(),
            )),
            Action::Apply(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "someone-elses", "namespace": "corpus",
                    "labels": {"service.kubernetes.io/service-proxy-name": "other"}},
                "spec": {"clusterIP": "10.96.1.17", "ports": ports(None)}})),
            Action::Apply(slice(
                "someone-elses-1",
                "someone-elses",
                "IPv4",
                vec![endpoint("10.244.1.12", node, true, true, false)],
                http_port(),
            )),
            Action::Apply(service(
                "ext",
                json!({"type": "ExternalName",
                "externalName": "example.invalid"}),
            )),
        ],
    );
    add(
        "a Service without endpoints, then one deleted",
        vec![
            Action::Apply(service(
                "empty",
                json!({"clusterIP": "10.96.1.18", "ports": ports(None)}),
            )),
            Action::Delete {
                kind: "Service".into(),
                namespace: "corpus".into(),
                name: "itp-local".into(),
            },
            Action::Delete {
                kind: "EndpointSlice".into(),
                namespace: "corpus".into(),
                name: "itp-local-1".into(),
            },
        ],
    );
    steps
}

/// A seeded random sequence of creates, edits and deletes of NodePort and ClusterIP Services.
fn random_steps(seed: u64, count: usize) -> Vec<Step> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut live: Vec<u32> = Vec::new();
    let mut steps = Vec::new();
    for i in 0..count {
        let choice = next(3);
        let mut actions = Vec::new();
        let name;
        if choice == 0 || live.is_empty() || (choice == 1 && live.len() < 3) {
            let id = 100 + i as u32;
            live.push(id);
            name = format!("create r{id}");
            actions.extend(random_service(id, &mut next));
        } else if choice == 1 {
            let id = live[next(live.len() as u64) as usize];
            name = format!("edit r{id}");
            actions.extend(random_service(id, &mut next));
        } else {
            let at = next(live.len() as u64) as usize;
            let id = live.remove(at);
            name = format!("delete r{id}");
            actions.push(Action::Delete {
                kind: "Service".into(),
                namespace: "corpus".into(),
                name: format!("r{id}"),
            });
            actions.push(Action::Delete {
                kind: "EndpointSlice".into(),
                namespace: "corpus".into(),
                name: format!("r{id}-1"),
            });
        }
        steps.push(Step {
            name: format!("random {}: {name}", i + 1),
            actions,
        });
    }
    steps
}

fn random_service(id: u32, next: &mut impl FnMut(u64) -> u64) -> Vec<Action> {
    let node_port = next(2) == 0;
    let affinity = next(4) == 0;
    let local = next(3) == 0;
    let mut spec = json!({"clusterIP": format!("10.96.2.{id}"),
        "ports": [{"name": "http", "port": 80 + next(3) as u32, "targetPort": 8080, "protocol": "TCP"}]});
    if node_port {
        spec["type"] = json!("NodePort");
        spec["ports"][0]["nodePort"] = json!(31000 + id);
        if local {
            spec["externalTrafficPolicy"] = json!("Local");
        }
    }
    if affinity {
        spec["sessionAffinity"] = json!("ClientIP");
    }
    let count = next(4);
    let endpoints: Vec<Value> = (0..count)
        .map(|e| {
            let node = if next(2) == 0 {
                "demo-node"
            } else {
                "other-node"
            };
            endpoint(
                &format!("10.244.3.{}", (id % 50) * 4 + e as u32),
                node,
                true,
                true,
                false,
            )
        })
        .collect();
    vec![
        Action::Apply(service(&format!("r{id}"), spec)),
        Action::Apply(slice(
            &format!("r{id}-1"),
            &format!("r{id}"),
            "IPv4",
            endpoints,
            http_port(),
        )),
    ]
}

async fn apply(client: &Client, action: &Action) -> Result<()> {
    let params = PatchParams::apply("kube-compare").force();
    match action {
        Action::Apply(object) => {
            let mut object = object.clone();
            if let Some(meta) = object["metadata"].as_object_mut() {
                meta.remove("resourceVersion");
                meta.remove("generateName");
            }
            if let Some(o) = object.as_object_mut() {
                o.remove("status");
            }
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let namespace = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string();
            match kind.as_str() {
                "Service" => {
                    Api::<Service>::namespaced(client.clone(), &namespace)
                        .patch(&name, &params, &Patch::Apply(object))
                        .await?;
                }
                "EndpointSlice" => {
                    Api::<EndpointSlice>::namespaced(client.clone(), &namespace)
                        .patch(&name, &params, &Patch::Apply(object))
                        .await?;
                }
                "Namespace" => {
                    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
                        .patch(&name, &params, &Patch::Apply(object))
                        .await?;
                }
                other => bail!("cannot apply a {other}"),
            }
        }
        Action::Status(patch) => {
            let name = patch["name"].as_str().unwrap_or_default();
            Api::<Service>::namespaced(client.clone(), "corpus")
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": patch["status"]})),
                )
                .await?;
        }
        Action::Delete {
            kind,
            namespace,
            name,
        } => {
            let dp = DeleteParams::default();
            match kind.as_str() {
                "Service" => {
                    Api::<Service>::namespaced(client.clone(), namespace)
                        .delete(name, &dp)
                        .await?;
                }
                _ => {
                    Api::<EndpointSlice>::namespaced(client.clone(), namespace)
                        .delete(name, &dp)
                        .await?;
                }
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let intended: IntendedFile = serde_yaml_ng::from_str(
        &std::fs::read_to_string(&args.differences).context("reading the differences file")?,
    )?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = Client::try_from(config)?;

    let mut steps = vec![Step {
        name: "examples/demo".into(),
        actions: yaml_objects(&args.examples)?
            .into_iter()
            .map(Action::Apply)
            .collect(),
    }];
    steps.extend(corpus());
    steps.extend(random_steps(args.seed, args.random_steps));
    steps.truncate(args.max_steps);

    let mut unexplained = 0;
    let mut parity_ok = true;
    let total = steps.len();
    for (i, step) in steps.iter().enumerate() {
        for action in &step.actions {
            apply(&client, action)
                .await
                .with_context(|| format!("step {}", step.name))?;
        }
        let started = Instant::now();
        // The first step also waits for both proxies to start (kube-proxy takes a while under
        // emulation).
        let limit = Duration::from_secs(if i == 0 { 300 } else { 120 });
        let (reference, ipvsd) = settle(
            &args.reference_ns,
            &args.ipvsd_ns,
            &intended.differences,
            limit,
        )?;
        let lines = differences(&reference, &ipvsd);
        let mut bad = 0;
        let mut report = Vec::new();
        for line in &lines {
            match explained(line, &intended.differences, &ipvsd) {
                Some(id) => report.push(format!("    {line}   [intended: {id}]")),
                None => {
                    bad += 1;
                    report.push(format!("    {line}   [UNEXPLAINED]"));
                }
            }
        }
        unexplained += bad;
        println!(
            "step {}/{total} {}: {} rules on kube-proxy's node, {} on ipvsd's, {} differences ({} unexplained), settled in {:.1}s",
            i + 1,
            step.name,
            reference.lines.len(),
            ipvsd.lines.len(),
            lines.len(),
            bad,
            started.elapsed().as_secs_f64()
        );
        for line in report {
            println!("{line}");
        }
        if i == 0 {
            parity_ok = manifest_parity(&args, &ipvsd)?;
        }
    }
    println!(
        "manifest parity: {}",
        if parity_ok { "ok" } else { "FAILED" }
    );
    println!("kube-proxy comparison: {total} steps, {unexplained} unexplained differences");
    if unexplained > 0 || !parity_ok {
        std::process::exit(1);
    }
    Ok(())
}

/// ipvsd run against the API server programs what `ipvsd plan --manifests` computes from the
/// same files (the API server's own `kubernetes` Service aside).
fn manifest_parity(args: &Args, ipvsd: &View) -> Result<bool> {
    let plan = run(
        "ip",
        &[
            "netns",
            "exec",
            &args.ipvsd_ns,
            "/testbed/bin/ipvsd",
            "plan",
            "--manifests",
            &args.examples,
            "--node-name",
            "demo-node",
            "--nodeport-addresses",
            &args.nodeport_addresses,
        ],
    )?;
    let planned: BTreeSet<String> = plan.lines().map(|l| l.trim().to_string()).collect();
    let programmed: BTreeSet<String> = ipvsd
        .lines
        .iter()
        .filter(|l| !l.starts_with("bind ") && !l.contains("10.96.0.1:443"))
        .cloned()
        .collect();
    if planned == programmed {
        println!("manifest parity: ipvsd from the API server programs the {} lines `ipvsd plan --manifests` prints", planned.len());
        Ok(true)
    } else {
        println!("manifest parity: differs");
        for l in planned.difference(&programmed) {
            println!("    planned only: {l}");
        }
        for l in programmed.difference(&planned) {
            println!("    programmed only: {l}");
        }
        Ok(false)
    }
}
