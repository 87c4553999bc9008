//! `KubeSource` against a real kube-apiserver (with etcd), started by the test bed:
//! `testbed/api-server-tests` builds them, starts them and runs these tests with `--ignored`.
//! The cases are those of `tests/kube_source.rs` (a stand-in API server) that a real server can
//! show: the initial list, watches of changes and deletions, the label selectors (headless,
//! service-proxy-name, an object leaving and entering a selection), and the API server
//! restarted while the source runs, a watch that expired (410 Gone: the source was cut off
//! while objects changed and the API server restarted, so its watch cache starts after the
//! source's resourceVersion), and an API server that answers garbage while objects change (a
//! plain-HTTP proxy in front of it, which passes requests on with the test's credentials, answers
//! lists with truncated JSON, the ConfigMapList of the real server and HTTP 500, and a watch with
//! a real ConfigMap's event, a line that is not JSON and 410 Gone; the source keeps its store
//! and, once the answers are good again, ends with exactly the API server's objects). The
//! stand-in keeps the cases a real server cannot be made to show on demand (held lists, forced
//! bookmarks).
//!
//! Environment: `IPVSD_TEST_KUBECONFIG` (a kubeconfig with rights on Services, EndpointSlices
//! and Namespaces) and `IPVSD_TEST_API_SERVER_CTL` (a command taking `stop` or `start` that stops
//! or starts the API server, keeping etcd). Without them the tests fail: they are ignored in a
//! plain `cargo test`, never skipped when asked for.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipvsd::source::kube::KubeSource;
use ipvsd::source::{Changes, Snapshot, Source};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
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
                // A Service without a spec is shown as such rather than panicking, so a store
                // filled with another kind's objects fails the comparison with their names.
                let cluster_ip = s
                    .spec
                    .as_ref()
                    .map_or(Some("<no spec>"), |spec| spec.cluster_ip.as_deref());
                format!(
                    "{}={}",
                    s.metadata.name.as_deref().unwrap(),
                    cluster_ip.unwrap()
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

/// The objects of the tests in which the source misses changes: Services `web` and `gone` and
/// web's slice at first; then, while the source cannot see, the slice gets a second address,
/// `late` is created and `gone` deleted.
struct Missed {
    ns: String,
    n: u32,
    services: Api<Service>,
    slices: Api<EndpointSlice>,
}

impl Missed {
    async fn create(client: &Client, name: &str) -> Missed {
        let (ns, n) = namespace(client, name).await;
        let missed = Missed {
            services: Api::namespaced(client.clone(), &ns),
            slices: Api::namespaced(client.clone(), &ns),
            ns,
            n,
        };
        apply(&missed.services, &service("web", &missed.ip(10), &[])).await;
        apply(&missed.services, &service("gone", &missed.ip(12), &[])).await;
        apply(&missed.slices, &slice("web-abc", "web", &["10.1.0.1"], &[])).await;
        missed
    }

    fn ip(&self, x: u32) -> String {
        format!("10.96.{}.{x}", self.n)
    }

    fn before(&self) -> Seen {
        expect(
            &[
                format!("gone={}", self.ip(12)),
                format!("web={}", self.ip(10)),
            ],
            &["web-abc=10.1.0.1"],
        )
    }

    async fn change(&self) {
        apply(
            &self.slices,
            &slice("web-abc", "web", &["10.1.0.1", "10.1.0.2"], &[]),
        )
        .await;
        apply(&self.services, &service("late", &self.ip(11), &[])).await;
        delete(&self.services, "gone").await;
    }

    fn after(&self) -> Seen {
        expect(
            &[
                format!("late={}", self.ip(11)),
                format!("web={}", self.ip(10)),
            ],
            &["web-abc=10.1.0.1,10.1.0.2"],
        )
    }
}

#[tokio::test]
#[ignore = "needs a real API server: run testbed/api-server-tests"]
async fn an_expired_watch_410_relists_and_loses_nothing() {
    let client = client().await;
    let objects = Missed::create(&client, "expiry").await;
    let ns = &objects.ns;

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
    converges(&source, ns, &objects.before()).await;
    assert!(
        matches!(source.take_changes(false), Some(Changes::Full(_))),
        "the first changes are not the full content"
    );

    // Cut off, the source misses changes; the API server restarts, so its watch cache begins
    // after them and the source's resourceVersion is too old to resume from: 410 Gone.
    forwarder.set_cut(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    objects.change().await;
    api_server_ctl("stop");
    api_server_ctl("start");
    forwarder.set_cut(false);

    // The source lists again and hands out everything, with what it missed, and nothing deleted
    // meanwhile survives.
    let expected = objects.after();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut relisted = false;
    loop {
        relisted |= matches!(source.take_changes(false), Some(Changes::Full(_)));
        let current = source.snapshot().map(|s| seen(&s, ns));
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

/// What the [`GarbageProxy`] answers instead of the API server while garbage is on: a list and a
/// watch of each path get these in turn, one per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Garbage {
    /// The ConfigMapList of the test's namespace, from the real API server: its items, as in
    /// every list, carry no `kind`.
    WrongKindList,
    /// The first half of the real answer's JSON.
    TruncatedList,
    /// HTTP 500 with a Status.
    ListFails500,
    /// A stream of three lines: an event of the test's ConfigMap (as the real API server sends
    /// it, with its `kind`), a line that is not JSON, and 410 Gone (the watch expired), after
    /// which the watcher must list again, into the list garbage. (A watch that follows a list
    /// is the only one: no list succeeds while garbage is on.)
    WrongKindAndGarbageWatch,
}

const LIST_GARBAGE: [Garbage; 3] = [
    Garbage::WrongKindList,
    Garbage::TruncatedList,
    Garbage::ListFails500,
];

/// The message of the proxy's 500s, to be found in the source's logs.
const GARBAGE_500: &str = "garbage proxy: internal error";

type ProxyBody = http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error>;

/// A plain-HTTP proxy in front of the real API server, for a source to talk to without
/// credentials: it passes each request on with the test's own client (which has the API
/// server's CA and token) and streams the answer back as it comes, or, while garbage is on,
/// answers [`Garbage`] instead. Switching garbage on ends the answers it is passing through, as
/// the API server ends a watch at its timeout, so the watches come back into the garbage.
struct GarbageProxy {
    url: String,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

struct ProxyState {
    upstream: Client,
    /// The test's namespace and ConfigMap, whose real objects are the wrong-kind answers.
    namespace: String,
    config_map: String,
    garbage: watch::Sender<bool>,
    /// The garbage answered, with the path it answered.
    served: Mutex<Vec<(String, Garbage)>>,
}

impl GarbageProxy {
    async fn start(upstream: Client, namespace: &str, config_map: &str) -> GarbageProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(ProxyState {
            upstream,
            namespace: namespace.to_string(),
            config_map: config_map.to_string(),
            garbage: watch::channel(false).0,
            served: Mutex::new(Vec::new()),
        });
        let server = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let server = server.clone();
                        async move { server.answer(request).await }
                    });
                    // Errors here are connections the source dropped.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        GarbageProxy { url, state, task }
    }

    /// A client of the API server through the proxy, with no credentials of its own.
    fn client(&self) -> Client {
        Client::try_from(kube::Config::new(self.url.parse().unwrap())).expect("a client")
    }

    fn set_garbage(&self, on: bool) {
        self.state.garbage.send_replace(on);
    }

    /// Whether `garbage` was answered on a path ending in `resource`.
    fn served(&self, resource: &str, garbage: Garbage) -> bool {
        let served = self.state.served.lock().unwrap();
        served
            .iter()
            .any(|(path, g)| path.ends_with(resource) && *g == garbage)
    }
}

impl Drop for GarbageProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ProxyState {
    async fn answer(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<ProxyBody>, std::io::Error> {
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        if !*self.garbage.borrow() {
            return self.pass_through(&target).await;
        }
        let path = request.uri().path().to_string();
        let watching = request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        let garbage = {
            let mut served = self.served.lock().unwrap();
            let garbage = if watching {
                Garbage::WrongKindAndGarbageWatch
            } else {
                let turn = served
                    .iter()
                    .filter(|(p, g)| *p == path && LIST_GARBAGE.contains(g))
                    .count();
                LIST_GARBAGE[turn % LIST_GARBAGE.len()]
            };
            served.push((path, garbage));
            garbage
        };
        let config_maps = format!("/api/v1/namespaces/{}/configmaps", self.namespace);
        let body = match garbage {
            Garbage::WrongKindList => self.get(&config_maps).await?,
            Garbage::TruncatedList => {
                let mut whole = self.get(&target).await?;
                whole.truncate(whole.len() / 2);
                whole
            }
            Garbage::ListFails500 => {
                return Ok(proxy_answer(
                    hyper::StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "reason": "InternalError", "code": 500,
                        "message": GARBAGE_500})
                    .to_string()
                    .into(),
                ));
            }
            Garbage::WrongKindAndGarbageWatch => {
                let config_map = self
                    .get(&format!("{config_maps}/{}", self.config_map))
                    .await?;
                let config_map: Value = serde_json::from_slice(&config_map).unwrap();
                let lines = [
                    json!({"type": "MODIFIED", "object": config_map}).to_string(),
                    "<html><body>502 Bad Gateway</body></html>".to_string(),
                    json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                        "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410,
                        "message": "garbage proxy: too old resource version"}})
                    .to_string(),
                ];
                (lines.join("\n") + "\n").into_bytes()
            }
        };
        Ok(proxy_answer(hyper::StatusCode::OK, body.into()))
    }

    /// The whole answer of the real API server to a GET of `target`.
    async fn get(&self, target: &str) -> Result<Vec<u8>, std::io::Error> {
        let answer = self
            .upstream
            .send(get_request(target))
            .await
            .map_err(std::io::Error::other)?;
        let bytes = answer
            .into_body()
            .collect_bytes()
            .await
            .map_err(std::io::Error::other)?;
        Ok(bytes.to_vec())
    }

    /// The real API server's answer to a GET of `target`, streamed back frame by frame until it
    /// ends or garbage is switched on.
    async fn pass_through(
        &self,
        target: &str,
    ) -> Result<hyper::Response<ProxyBody>, std::io::Error> {
        use futures::SinkExt;
        use http_body_util::BodyExt;
        let answer = self
            .upstream
            .send(get_request(target))
            .await
            .map_err(std::io::Error::other)?;
        let status = answer.status();
        let mut body = answer.into_body();
        let (mut tx, rx) = futures::channel::mpsc::channel(16);
        let mut garbage = self.garbage.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    frame = body.frame() => {
                        let frame = match frame {
                            None => return,
                            Some(frame) => frame.map_err(std::io::Error::other),
                        };
                        if tx.send(frame).await.is_err() {
                            return;
                        }
                    }
                    // Ends the answer cleanly, as the API server ends a watch at its timeout.
                    () = async { drop(garbage.wait_for(|on| *on).await) } => return,
                }
            }
        });
        let mut response = hyper::Response::new(http_body_util::StreamBody::new(rx).boxed());
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        Ok(response)
    }
}

fn get_request(target: &str) -> hyper::Request<kube::client::Body> {
    hyper::Request::get(target)
        .body(kube::client::Body::empty())
        .unwrap()
}

fn proxy_answer(status: hyper::StatusCode, body: bytes::Bytes) -> hyper::Response<ProxyBody> {
    use http_body_util::BodyExt;
    let body = http_body_util::Full::new(body)
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

/// The log lines written while the guard lives, on this thread (a `#[tokio::test]` runs the
/// source's tasks on the test's thread).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
#[ignore = "needs a real API server: run testbed/api-server-tests"]
async fn garbage_from_the_api_server_flushes_nothing_and_it_recovers_after() {
    let logs = Logs::default();
    let _capture = logs.capture();
    let client = client().await;
    let objects = Missed::create(&client, "garbage").await;
    let ns = &objects.ns;
    // The wrong kind the proxy answers with; labelled so that both watchers' selectors would
    // take it.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "web-config", "labels": {"kubernetes.io/service-name": "web"}},
        "data": {"key": "value"},
    }))
    .unwrap();
    apply(&config_maps, &config_map).await;

    let proxy = GarbageProxy::start(client.clone(), ns, "web-config").await;
    let source = KubeSource::spawn(proxy.client(), None, watch::channel(0).0);
    let before = objects.before();
    converges(&source, ns, &before).await;
    assert!(
        matches!(source.take_changes(false), Some(Changes::Full(_))),
        "the first changes are not the full content"
    );

    // Garbage on: the open watches end, and every list and watch after gets garbage. Meanwhile
    // objects change, which the source cannot see yet.
    proxy.set_garbage(true);
    objects.change().await;

    // The store keeps exactly what it had, and hands out no list, until every kind of garbage
    // has been answered to both watchers, and for at least 5 s.
    let start = tokio::time::Instant::now();
    loop {
        let current = source.snapshot().map(|s| seen(&s, ns));
        assert_eq!(
            current.as_ref(),
            Some(&before),
            "the store changed while the API server answered garbage; logs:\n{}",
            logs.text()
        );
        let changes = source.take_changes(false);
        assert!(
            !matches!(changes, Some(Changes::Full(_))),
            "a list completed while the API server answered garbage; logs:\n{}",
            logs.text()
        );
        let all_served = ["/services", "/endpointslices"].iter().all(|path| {
            LIST_GARBAGE
                .iter()
                .chain([&Garbage::WrongKindAndGarbageWatch])
                .all(|g| proxy.served(path, *g))
        });
        if all_served && start.elapsed() > Duration::from_secs(5) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "not all garbage was asked for: {:?}",
            proxy.state.served.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Each kind of garbage is in the logs, the wrong-kind list with the object it held.
    let text = logs.text();
    for expected in [
        format!("Service {ns}/web-config has no spec"),
        format!("EndpointSlice {ns}/web-config has no addressType"),
        GARBAGE_500.to_string(),
        "EOF while parsing".to_string(),
        "expected value at line 1 column 1".to_string(),
        "neither an event of the watched kind nor a Status".to_string(),
        "too old resource version".to_string(),
    ] {
        assert!(
            text.contains(&expected),
            "the logs do not say {expected:?}:\n{text}"
        );
    }

    // Garbage off: the source lists again and ends with exactly the API server's objects.
    proxy.set_garbage(false);
    converges(&source, ns, &objects.after()).await;
}
