//! `KubeSource` against a real kube-apiserver (with etcd), started by the test bed:
//! `testbed/api-server-tests` builds them, starts them and runs these tests with `--ignored`.
//! The cases are those of `tests/kube_source.rs` (a stand-in API server) that a real server can
//! show: the initial list, watches of changes and deletions, the label selectors (headless,
//! service-proxy-name, an object leaving and entering a selection), and the API server
//! restarted while the source runs, and a watch that expired (410 Gone: the source was cut off
//! while objects changed and the API server restarted, so its watch cache starts after the
//! source's resourceVersion). The stand-in keeps the cases a real server cannot be made to show
//! on demand (held lists, forced bookmarks).
//!
//! Environment: `IPVSD_TEST_KUBECONFIG` (a kubeconfig with rights on Services, EndpointSlices
//! and Namespaces) and `IPVSD_TEST_API_SERVER_CTL` (a command taking `stop` or `start` that stops
//! or starts the API server, keeping etcd). Without them the tests fail: they are ignored in a
//! plain `cargo test`, never skipped when asked for.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ipvsd::source::kube::KubeSource;
use ipvsd::source::{Changes, Snapshot, Source};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::sync::watch;

async fn client() -> Client {
    let path = std::env::var("IPVSD_TEST_KUBECONFIG")
        .expect("IPVSD_TEST_KUBECONFIG must name the real API server's kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("reading the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("a client config from the kubeconfig");
    Client::try_from(config).expect("a client")
}

fn api_server_ctl(action: &str) {
    let ctl = std::env::var("IPVSD_TEST_API_SERVER_CTL").expect(
        "IPVSD_TEST_API_SERVER_CTL must name the command that stops and starts the API server",
    );
    let status = std::process::Command::new(&ctl)
        .arg(action)
        .status()
        .expect("running the API server control command");
    assert!(status.success(), "{ctl} {action} failed: {status}");
}

/// A fresh namespace for one test, and the third octet of the cluster IPs it may use
/// (10.96.N.x), so that tests never share objects or addresses.
async fn namespace(client: &Client, name: &str) -> (String, u32) {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let octet = NEXT.fetch_add(1, Ordering::Relaxed);
    let namespace = format!("{name}-{}", std::process::id());
    let api: Api<Namespace> = Api::all(client.clone());
    let object: Namespace =
        serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
    api.create(&PostParams::default(), &object)
        .await
        .expect("creating the namespace");
    (namespace, octet)
}

fn service(name: &str, cluster_ip: &str, labels: &[(&str, &str)]) -> Service {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}",
                "ipvsd.io/scheduler": "mh",
            },
        },
        "spec": {
            "clusterIP": cluster_ip,
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }))
    .unwrap()
}

fn slice(name: &str, service: &str, addresses: &[&str], labels: &[(&str, &str)]) -> EndpointSlice {
    let mut all: BTreeMap<&str, &str> = labels.iter().copied().collect();
    all.insert("kubernetes.io/service-name", service);
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": all},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }))
    .unwrap()
}

/// Creates or replaces (server-side apply) an object in the namespace.
async fn apply<K>(api: &Api<K>, object: &K)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = object.meta().name.clone().unwrap();
    let mut value = serde_json::to_value(object).unwrap();
    let dt = K::DynamicType::default();
    value["apiVersion"] = json!(K::api_version(&dt));
    value["kind"] = json!(K::kind(&dt));
    api.patch(
        &name,
        &PatchParams::apply("ipvsd-tests").force(),
        &Patch::Apply(value),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {name}: {e}"));
}

async fn delete<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("deleting {name}: {e}"));
}

/// What a snapshot holds of one namespace: `name=clusterIP` for Services, `name=addr,addr` for
/// slices.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    services: BTreeSet<String>,
    slices: BTreeSet<String>,
}

fn seen(snapshot: &Snapshot, namespace: &str) -> Seen {
    let here = |ns: &Option<String>| ns.as_deref() == Some(namespace);
    Seen {
        services: snapshot
            .services
            .iter()
            .filter(|s| here(&s.metadata.namespace))
            .map(|s| {
                format!(
                    "{}={}",
                    s.metadata.name.as_deref().unwrap(),
                    s.spec.as_ref().unwrap().cluster_ip.as_deref().unwrap()
                )
            })
            .collect(),
        slices: snapshot
            .endpoint_slices
            .iter()
            .filter(|s| here(&s.metadata.namespace))
            .map(|s| {
                let addresses: Vec<&str> = s
                    .endpoints
                    .iter()
                    .flatten()
                    .flat_map(|e| e.addresses.iter().map(String::as_str))
                    .collect();
                format!(
                    "{}={}",
                    s.metadata.name.as_deref().unwrap(),
                    addresses.join(",")
                )
            })
            .collect(),
    }
}

fn expect(services: &[String], slices: &[&str]) -> Seen {
    Seen {
        services: services.iter().cloned().collect(),
        slices: slices.iter().map(|s| s.to_string()).collect(),
    }
}

/// Waits (up to 60 s) until `source` shows `expected` in `namespace`.
async fn converges(source: &KubeSource, namespace: &str, expected: &Seen) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let current = source.snapshot().map(|s| seen(&s, namespace));
        if current.as_ref() == Some(expected) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("snapshot never became {expected:?}; last {current:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const HEADLESS: (&str, &str) = ("service.kubernetes.io/headless", "");

#[tokio::test]
#[ignore = "needs a real API server: run testbed/api-server-tests"]
async fn lists_then_follows_creates_changes_and_deletes() {
    let client = client().await;
    let (ns, n) = namespace(&client, "follow").await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let ip = |x: u32| format!("10.96.{n}.{x}");
    // Before the source starts: the initial list.
    apply(&services, &service("web", &ip(10), &[])).await;
    apply(&slices, &slice("web-abc", "web", &["10.1.0.1"], &[])).await;
    // A headless Service (clusterIP None) arrives (the model skips it); slices labelled
    // headless, as the endpoint-slice controller labels them, do not.
    apply(&services, &service("db", "None", &[])).await;
    apply(&slices, &slice("db-xyz", "db", &["10.1.0.9"], &[HEADLESS])).await;
    // Owned by another proxy: left out by the API server.
    apply(
        &services,
        &service(
            "other",
            &ip(20),
            &[("service.kubernetes.io/service-proxy-name", "someone-else")],
        ),
    )
    .await;

    let (changed_tx, changed_rx) = watch::channel(0u64);
    let source = KubeSource::spawn(client.clone(), None, changed_tx);
    converges(
        &source,
        &ns,
        &expect(
            &["db=None".to_string(), format!("web={}", ip(10))],
            &["web-abc=10.1.0.1"],
        ),
    )
    .await;
    // Stored objects are trimmed to what ipvsd reads, whatever the real server adds.
    let snapshot = source.snapshot().unwrap();
    let web = snapshot
        .services
        .iter()
        .find(|s| {
            s.metadata.namespace.as_deref() == Some(&ns)
                && s.metadata.name.as_deref() == Some("web")
        })
        .unwrap();
    assert_eq!(
        web.metadata.annotations,
        Some(BTreeMap::from([(
            "ipvsd.io/scheduler".to_string(),
            "mh".to_string()
        )]))
    );
    assert_eq!(web.metadata.managed_fields, None);

    // Creates and changes come through the watches, each one signalled.
    let before = *changed_rx.borrow();
    apply(&services, &service("cart", &ip(30), &[])).await;
    apply(&slices, &slice("cart-1", "cart", &["10.1.1.1"], &[])).await;
    apply(
        &slices,
        &slice("web-abc", "web", &["10.1.0.1", "10.1.0.2"], &[]),
    )
    .await;
    let mut web2 = service("web", &ip(10), &[]);
    web2.metadata.annotations = Some(BTreeMap::from([(
        "ipvsd.io/scheduler".to_string(),
        "wlc".to_string(),
    )]));
    apply(&services, &web2).await;
    converges(
        &source,
        &ns,
        &expect(
            &[
                format!("cart={}", ip(30)),
                "db=None".into(),
                format!("web={}", ip(10)),
            ],
            &["cart-1=10.1.1.1", "web-abc=10.1.0.1,10.1.0.2"],
        ),
    )
    .await;
    // The annotation change is not part of what `converges` compares: wait for it too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let snapshot = source.snapshot().unwrap();
        let scheduler = snapshot
            .services
            .iter()
            .find(|s| {
                s.metadata.namespace.as_deref() == Some(&ns)
                    && s.metadata.name.as_deref() == Some("web")
            })
            .and_then(|web| {
                web.metadata
                    .annotations
                    .as_ref()?
                    .get("ipvsd.io/scheduler")
                    .cloned()
            });
        if scheduler.as_deref() == Some("wlc") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the annotation change did not arrive: {scheduler:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Each event bumps the generation; a watch that restarts relists and bumps once.
    assert!(*changed_rx.borrow() > before);

    // Deletions.
    delete(&services, "cart").await;
    delete(&slices, "cart-1").await;
    delete(&services, "db").await;
    converges(
        &source,
        &ns,
        &expect(&[format!("web={}", ip(10))], &["web-abc=10.1.0.1,10.1.0.2"]),
    )
    .await;

    // A Service labelled headless leaves the selection (the API server sends a deletion); one
    // taken from another proxy enters it.
    apply(&services, &service("web", &ip(10), &[HEADLESS])).await;
    apply(&services, &service("other", &ip(20), &[])).await;
    converges(
        &source,
        &ns,
        &expect(
            &[format!("other={}", ip(20))],
            &["web-abc=10.1.0.1,10.1.0.2"],
        ),
    )
    .await;
}

#[tokio::test]
#[ignore = "needs a real API server: run testbed/api-server-tests"]
async fn proxy_name_takes_its_own_services_and_unlabelled_ones() {
    let client = client().await;
    let (ns, n) = namespace(&client, "proxyname").await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let ip = |x: u32| format!("10.96.{n}.{x}");
    const NAME: &str = "service.kubernetes.io/service-proxy-name";
    apply(&services, &service("web", &ip(10), &[])).await;
    apply(&services, &service("mine", &ip(40), &[(NAME, "ipvsd")])).await;
    apply(
        &services,
        &service("other", &ip(20), &[(NAME, "someone-else")]),
    )
    .await;
    apply(&slices, &slice("web-abc", "web", &["10.1.0.1"], &[])).await;
    let source = KubeSource::spawn(client.clone(), Some("ipvsd".into()), watch::channel(0).0);
    let slice_set = ["web-abc=10.1.0.1"];
    converges(
        &source,
        &ns,
        &expect(
            &[format!("mine={}", ip(40)), format!("web={}", ip(10))],
            &slice_set,
        ),
    )
    .await;

    // Moving a Service from unlabelled to ours keeps it exactly once; one moved to another
    // proxy leaves.
    apply(&services, &service("web", &ip(10), &[(NAME, "ipvsd")])).await;
    apply(
        &services,
        &service("mine", &ip(40), &[(NAME, "someone-else")]),
    )
    .await;
    converges(
        &source,
        &ns,
        &expect(&[format!("web={}", ip(10))], &slice_set),
    )
    .await;

    // Without a proxy name, only unlabelled Services.
    let plain = KubeSource::spawn(client.clone(), None, watch::channel(0).0);
    apply(&services, &service("plain", &ip(50), &[])).await;
    converges(
        &plain,
        &ns,
        &expect(&[format!("plain={}", ip(50))], &slice_set),
    )
    .await;
}

#[tokio::test]
#[ignore = "needs a real API server: run testbed/api-server-tests"]
async fn keeps_the_store_while_the_api_server_restarts_and_follows_again() {
    let client = client().await;
    let (ns, n) = namespace(&client, "restart").await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let ip = |x: u32| format!("10.96.{n}.{x}");
    apply(&services, &service("web", &ip(10), &[])).await;
    apply(&slices, &slice("web-abc", "web", &["10.1.0.1"], &[])).await;
    let source = KubeSource::spawn(client.clone(), None, watch::channel(0).0);
    let before = expect(&[format!("web={}", ip(10))], &["web-abc=10.1.0.1"]);
    converges(&source, &ns, &before).await;

    api_server_ctl("stop");
    // The watches fail and retry with backoff; the store keeps what it had.
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let current = source.snapshot().map(|s| seen(&s, &ns));
        assert_eq!(
            current.as_ref(),
            Some(&before),
            "the store changed during the outage"
        );
    }
    api_server_ctl("start");

    // Changes after the restart arrive (after a relist or a resumed watch).
    apply(
        &slices,
        &slice("web-abc", "web", &["10.1.0.1", "10.1.0.3"], &[]),
    )
    .await;
    apply(&services, &service("late", &ip(11), &[])).await;
    converges(
        &source,
        &ns,
        &expect(
            &[format!("late={}", ip(11)), format!("web={}", ip(10))],
            &["web-abc=10.1.0.1,10.1.0.3"],
        ),
    )
    .await;
    delete(&services, "late").await;
    converges(
        &source,
        &ns,
        &expect(&[format!("web={}", ip(10))], &["web-abc=10.1.0.1,10.1.0.3"]),
    )
    .await;
}

/// A TCP forwarder in front of the API server that the test can cut: while cut it closes every
/// connection, open or new, so the source under test loses its watches while the test's own
/// client keeps working.
struct Forwarder {
    port: u16,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start(target: std::net::SocketAddr) -> Forwarder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the forwarder");
        let port = listener.local_addr().unwrap().port();
        let (cut, cut_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cut = cut_rx.clone();
                if *cut.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Forwarder { port, cut, task }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client of the API server through `forwarder`.
async fn client_through(forwarder: &Forwarder) -> (Client, std::net::SocketAddr) {
    let path = std::env::var("IPVSD_TEST_KUBECONFIG").expect("IPVSD_TEST_KUBECONFIG");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("reading the kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("a client config from the kubeconfig");
    let target = api_server_address(&config);
    config.cluster_url = format!("https://127.0.0.1:{}", forwarder.port)
        .parse()
        .unwrap();
    (Client::try_from(config).expect("a client"), target)
}

fn api_server_address(config: &kube::Config) -> std::net::SocketAddr {
    let authority = config
        .cluster_url
        .authority()
        .expect("server with host and port");
    format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(443)
    )
    .parse()
    .expect("the kubeconfig's server is an IP address and port")
}

#[tokio::test]
#[ignore = "needs a real API server: run testbed/api-server-tests"]
async fn an_expired_watch_410_relists_and_loses_nothing() {
    let client = client().await;
    let (ns, n) = namespace(&client, "expiry").await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let ip = |x: u32| format!("10.96.{n}.{x}");
    apply(&services, &service("web", &ip(10), &[])).await;
    apply(&services, &service("gone", &ip(12), &[])).await;
    apply(&slices, &slice("web-abc", "web", &["10.1.0.1"], &[])).await;

    // The source reaches the API server through a forwarder the test can cut.
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(std::env::var("IPVSD_TEST_KUBECONFIG").unwrap())
            .unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let forwarder = Forwarder::start(api_server_address(&config)).await;
    let (through, _) = client_through(&forwarder).await;
    let source = KubeSource::spawn(through, None, watch::channel(0).0);
    converges(
        &source,
        &ns,
        &expect(
            &[format!("gone={}", ip(12)), format!("web={}", ip(10))],
            &["web-abc=10.1.0.1"],
        ),
    )
    .await;
    assert!(
        matches!(source.take_changes(false), Some(Changes::Full(_))),
        "the first changes are not the full content"
    );

    // Cut off, the source misses changes; the API server restarts, so its watch cache begins
    // after them and the source's resourceVersion is too old to resume from: 410 Gone.
    forwarder.set_cut(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    apply(
        &slices,
        &slice("web-abc", "web", &["10.1.0.1", "10.1.0.2"], &[]),
    )
    .await;
    apply(&services, &service("late", &ip(11), &[])).await;
    delete(&services, "gone").await;
    api_server_ctl("stop");
    api_server_ctl("start");
    forwarder.set_cut(false);

    // The source lists again and hands out everything, with what it missed, and nothing deleted
    // meanwhile survives.
    let expected = expect(
        &[format!("late={}", ip(11)), format!("web={}", ip(10))],
        &["web-abc=10.1.0.1,10.1.0.2"],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut relisted = false;
    loop {
        relisted |= matches!(source.take_changes(false), Some(Changes::Full(_)));
        let current = source.snapshot().map(|s| seen(&s, &ns));
        if relisted && current.as_ref() == Some(&expected) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no relist with the missed changes: relisted {relisted}, last {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
