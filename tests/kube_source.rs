//! `KubeSource` with the real kube-rs client against a fake API server on 127.0.0.1.
//!
//! The fake implements just enough of the API server's list/watch protocol for Services and
//! EndpointSlices: resourceVersions, label selectors (with objects leaving and entering a
//! selection), bookmarks, 410 Gone for compacted history, held list responses, lists of another
//! kind, and outages in which every connection is cut.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ipvsd::source::kube::KubeSource;
use ipvsd::source::{Changes, Delta, ObjectKey, Snapshot, Source};
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

type Body = BoxBody<Bytes, std::io::Error>;

const SERVICES: &str = "/api/v1/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";

// ---------------------------------------------------------------------------------------------
// The fake API server.

/// One change in a kind's history: what the object was before and after.
#[derive(Clone)]
struct Change {
    resource_version: u64,
    before: Option<Value>,
    after: Option<Value>,
}

#[derive(Default)]
struct Collection {
    objects: BTreeMap<String, Value>,
    history: Vec<Change>,
}

#[derive(Default)]
struct ApiState {
    resource_version: u64,
    collections: BTreeMap<&'static str, Collection>,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted_below: u64,
    /// Bumped to send 410 Gone to every open watch.
    expire_generation: u64,
    /// Bumped to send a bookmark on every open watch.
    bookmark_generation: u64,
    /// Bumped to end every open watch cleanly (as the API server's watch timeout does).
    close_generation: u64,
    /// While true, every request and every open watch has its connection cut.
    outage: bool,
    /// Paths whose list requests are held unanswered.
    held_lists: BTreeSet<&'static str>,
    /// While true, lists are answered with a ConfigMapList, whose items (as in every list)
    /// carry no kind.
    wrong_kind_lists: bool,
    /// Every request that reached the server: (path, query).
    requests: Vec<(String, BTreeMap<String, String>)>,
}

#[derive(Clone)]
struct FakeApi {
    state: Arc<Mutex<ApiState>>,
    /// Bumped on every change of `state`, so waiting requests look again.
    poke: Arc<watch::Sender<u64>>,
}

impl FakeApi {
    async fn start() -> (FakeApi, kube::Client) {
        let api = FakeApi {
            state: Arc::new(Mutex::new(ApiState::default())),
            poke: Arc::new(watch::channel(0).0),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = api.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let server = server.clone();
                        async move { server.handle(request).await }
                    });
                    // Errors here are the cuts the tests make on purpose.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let config = kube::Config::new(url.parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        (api, client)
    }

    fn change(&self, f: impl FnOnce(&mut ApiState)) {
        f(&mut self.state.lock().unwrap());
        self.poke.send_modify(|n| *n += 1);
    }

    fn put(&self, path: &'static str, object: Value) {
        self.change(|state| state.put(path, object));
    }

    fn delete(&self, path: &'static str, key: &str) {
        self.change(|state| state.delete(path, key));
    }

    fn requests(&self, path: &str, watch: bool) -> Vec<BTreeMap<String, String>> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(p, query)| p == path && query.contains_key("watch") == watch)
            .map(|(_, query)| query.clone())
            .collect()
    }

    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
        let path = request.uri().path().to_string();
        let query = parse_query(request.uri().query().unwrap_or(""));
        let collection = match path.as_str() {
            SERVICES => SERVICES,
            SLICES => SLICES,
            _ => {
                return Ok(full(
                    StatusCode::NOT_FOUND,
                    json!({"kind": "Status", "code": 404}),
                ))
            }
        };
        {
            let mut state = self.state.lock().unwrap();
            if state.outage {
                return Err(std::io::Error::other("API server is down"));
            }
            state.requests.push((path.clone(), query.clone()));
        }
        let selector = query.get("labelSelector").cloned().unwrap_or_default();
        if query.contains_key("watch") {
            let from: u64 = query
                .get("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            return Ok(self.watch(collection, selector, from));
        }
        let mut poked = self.poke.subscribe();
        loop {
            {
                let state = self.state.lock().unwrap();
                if state.outage {
                    return Err(std::io::Error::other("API server is down"));
                }
                if state.wrong_kind_lists {
                    return Ok(full(
                        StatusCode::OK,
                        json!({
                            "kind": "ConfigMapList",
                            "apiVersion": "v1",
                            "metadata": {"resourceVersion": state.resource_version.to_string()},
                            "items": [{
                                "metadata": {"namespace": "default", "name": "web-config",
                                    "resourceVersion": state.resource_version.to_string()},
                                "data": {"key": "value"},
                            }],
                        }),
                    ));
                }
                if !state.held_lists.contains(collection) {
                    let items: Vec<Value> = state.collections.get(collection).map_or(vec![], |c| {
                        c.objects
                            .values()
                            .filter(|o| selector_matches(&selector, o))
                            .cloned()
                            .collect()
                    });
                    let kind = if collection == SERVICES {
                        "ServiceList"
                    } else {
                        "EndpointSliceList"
                    };
                    return Ok(full(
                        StatusCode::OK,
                        json!({
                            "kind": kind,
                            "apiVersion": "v1",
                            "metadata": {"resourceVersion": state.resource_version.to_string()},
                            "items": items,
                        }),
                    ));
                }
            }
            if poked.changed().await.is_err() {
                return Err(std::io::Error::other("fake API server stopped"));
            }
        }
    }

    /// A watch: the history after `from` that `selector` sees, then changes as they come.
    fn watch(&self, collection: &'static str, selector: String, from: u64) -> Response<Body> {
        let (mut tx, rx) =
            futures::channel::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(16);
        let state = self.state.clone();
        let mut poked = self.poke.subscribe();
        tokio::spawn(async move {
            let (expire0, bookmark0, close0) = {
                let s = state.lock().unwrap();
                (
                    s.expire_generation,
                    s.bookmark_generation,
                    s.close_generation,
                )
            };
            let mut bookmarks_sent = bookmark0;
            let mut sent_up_to = from;
            loop {
                let mut frames = Vec::new();
                let mut end = None::<Result<(), ()>>;
                {
                    let s = state.lock().unwrap();
                    if s.outage {
                        end = Some(Err(()));
                    } else if from < s.compacted_below || s.expire_generation != expire0 {
                        frames.push(line(json!({"type": "ERROR", "object": {
                            "kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "reason": "Expired", "code": 410,
                            "message": format!("too old resource version: {from} ({})", s.compacted_below),
                        }})));
                        end = Some(Ok(()));
                    } else {
                        let history = s
                            .collections
                            .get(collection)
                            .map_or(&[][..], |c| &c.history[..]);
                        let unsent = history
                            .iter()
                            .filter(|c| c.resource_version > from.max(sent_up_to));
                        for change in unsent.collect::<Vec<_>>() {
                            if let Some(event) = watch_event(&selector, change) {
                                frames.push(line(event));
                            }
                            sent_up_to = change.resource_version;
                        }
                        if s.bookmark_generation != bookmarks_sent {
                            bookmarks_sent = s.bookmark_generation;
                            let kind = if collection == SERVICES {
                                "Service"
                            } else {
                                "EndpointSlice"
                            };
                            frames.push(line(json!({"type": "BOOKMARK", "object": {
                                "kind": kind, "apiVersion": "v1",
                                "metadata": {"resourceVersion": s.resource_version.to_string()},
                            }})));
                        }
                        if s.close_generation != close0 {
                            end = Some(Ok(()));
                        }
                    }
                }
                for frame in frames {
                    if tx.send(Ok(frame)).await.is_err() {
                        return;
                    }
                }
                match end {
                    // Closing the channel ends the body cleanly.
                    Some(Ok(())) => return,
                    // An error frame makes hyper cut the connection mid-stream.
                    Some(Err(())) => {
                        let _ = tx.send(Err(std::io::Error::other("connection cut"))).await;
                        return;
                    }
                    None => {}
                }
                if poked.changed().await.is_err() {
                    return;
                }
            }
        });
        let body = StreamBody::new(rx).boxed();
        let mut response = Response::new(body);
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        response
    }
}

impl ApiState {
    fn next_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    fn put(&mut self, path: &'static str, mut object: Value) {
        let version = self.next_version();
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let key = object_key(&object);
        let collection = self.collections.entry(path).or_default();
        let before = collection.objects.insert(key, object.clone());
        collection.history.push(Change {
            resource_version: version,
            before,
            after: Some(object),
        });
    }

    fn delete(&mut self, path: &'static str, key: &str) {
        let version = self.next_version();
        let collection = self.collections.entry(path).or_default();
        let mut before = collection
            .objects
            .remove(key)
            .expect("deleting an object that exists");
        before["metadata"]["resourceVersion"] = json!(version.to_string());
        collection.history.push(Change {
            resource_version: version,
            before: Some(before),
            after: None,
        });
    }

    /// Forgets all history so far, as etcd compaction does: watches from before now get 410.
    fn compact(&mut self) {
        self.compacted_below = self.resource_version + 1;
        self.expire_generation += 1;
    }
}

/// The event a watch with `selector` sees for `change`, as the API server computes it: an
/// object leaving the selection is a deletion, one entering it an addition.
fn watch_event(selector: &str, change: &Change) -> Option<Value> {
    let was = change
        .before
        .as_ref()
        .is_some_and(|o| selector_matches(selector, o));
    let is = change
        .after
        .as_ref()
        .is_some_and(|o| selector_matches(selector, o));
    let (kind, object) = match (was, is) {
        (false, true) => ("ADDED", change.after.clone()),
        (true, true) => ("MODIFIED", change.after.clone()),
        (true, false) => {
            let mut gone = change.after.clone().or(change.before.clone()).unwrap();
            gone["metadata"]["resourceVersion"] = json!(change.resource_version.to_string());
            ("DELETED", Some(gone))
        }
        (false, false) => return None,
    };
    Some(json!({"type": kind, "object": object.unwrap()}))
}

/// Label selectors as the watchers send them: comma-separated `key`, `!key`, `key=value`.
fn selector_matches(selector: &str, object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some(key) = term.strip_prefix('!') {
            labels.get(key).is_none()
        } else if let Some((key, value)) = term.split_once('=') {
            labels.get(key).and_then(Value::as_str) == Some(value)
        } else {
            labels.get(term).is_some()
        }
    })
}

fn object_key(object: &Value) -> String {
    format!(
        "{}/{}",
        object["metadata"]["namespace"].as_str().unwrap(),
        object["metadata"]["name"].as_str().unwrap()
    )
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn line(value: Value) -> Frame<Bytes> {
    let mut text = value.to_string();
    text.push('\n');
    Frame::data(Bytes::from(text))
}

fn full(status: StatusCode, value: Value) -> Response<Body> {
    let body = Full::new(Bytes::from(value.to_string()))
        .map_err(|never: Infallible| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

// ---------------------------------------------------------------------------------------------
// Builders and what the tests compare.

fn mk_service(namespace: &str, name: &str, cluster_ip: &str, labels: &[(&str, &str)]) -> Value {
    let service = Service {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            annotations: Some(BTreeMap::from([
                (
                    "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                    "{\"big\": true}".to_string(),
                ),
                ("ipvsd.io/scheduler".to_string(), "mh".to_string()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let mut value = serde_json::to_value(service).unwrap();
    value["apiVersion"] = json!("v1");
    value["kind"] = json!("Service");
    value
}

fn mk_slice(namespace: &str, name: &str, service: &str, addresses: &[&str]) -> Value {
    let slice = EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_string(),
                service.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(
            addresses
                .iter()
                .map(|a| Endpoint {
                    addresses: vec![a.to_string()],
                    ..Endpoint::default()
                })
                .collect(),
        ),
        ports: None,
    };
    let mut value = serde_json::to_value(slice).unwrap();
    value["apiVersion"] = json!("discovery.k8s.io/v1");
    value["kind"] = json!("EndpointSlice");
    value
}

/// What a snapshot holds, in a form a test can write down: `ns/name=clusterIP` for Services,
/// `ns/name=addr,addr` for slices.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    services: BTreeSet<String>,
    slices: BTreeSet<String>,
}

fn seen(snapshot: &Snapshot) -> Seen {
    Seen {
        services: snapshot
            .services
            .iter()
            .map(|s| {
                // Shown rather than unwrapped, so a Service that is another kind's object fails
                // the comparison by name.
                let cluster_ip = s
                    .spec
                    .as_ref()
                    .map_or(Some("<no spec>"), |spec| spec.cluster_ip.as_deref());
                format!(
                    "{}/{}={}",
                    s.metadata.namespace.as_deref().unwrap(),
                    s.metadata.name.as_deref().unwrap(),
                    cluster_ip.unwrap()
                )
            })
            .collect(),
        slices: snapshot
            .endpoint_slices
            .iter()
            .map(|s| {
                let addresses: Vec<&str> = s
                    .endpoints
                    .iter()
                    .flatten()
                    .flat_map(|e| e.addresses.iter().map(String::as_str))
                    .collect();
                format!(
                    "{}/{}={}",
                    s.metadata.namespace.as_deref().unwrap(),
                    s.metadata.name.as_deref().unwrap(),
                    addresses.join(",")
                )
            })
            .collect(),
    }
}

fn expect(services: &[&str], slices: &[&str]) -> Seen {
    Seen {
        services: services.iter().map(|s| s.to_string()).collect(),
        slices: slices.iter().map(|s| s.to_string()).collect(),
    }
}

/// Waits until `source` shows `expected`, failing with what it showed last.
async fn converges(source: &KubeSource, expected: &Seen) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let current = source.snapshot().map(|s| seen(&s));
        if current.as_ref() == Some(expected) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("snapshot never became {expected:?}; last {current:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A cluster with one plain Service and its slice, plus a headless Service and one owned by
/// another proxy, which ipvsd must never see.
fn seed(api: &FakeApi) {
    api.put(SERVICES, mk_service("default", "web", "10.96.0.10", &[]));
    api.put(SLICES, mk_slice("default", "web-abc", "web", &["10.1.0.1"]));
    api.put(
        SERVICES,
        mk_service(
            "default",
            "db",
            "None",
            &[("service.kubernetes.io/headless", "")],
        ),
    );
    api.put(
        SLICES,
        mk_slice("default", "db-xyz", "db", &["10.1.0.9"]).tap(|s| {
            s["metadata"]["labels"]["service.kubernetes.io/headless"] = json!("");
        }),
    );
    api.put(
        SERVICES,
        mk_service(
            "default",
            "other",
            "10.96.0.20",
            &[("service.kubernetes.io/service-proxy-name", "someone-else")],
        ),
    );
}

/// A source of a fake API server holding [`seed`], once it shows what it should (returned) and
/// both its watches are open.
async fn following_the_seed() -> (FakeApi, KubeSource, Seen) {
    let (api, client) = FakeApi::start().await;
    seed(&api);
    let source = KubeSource::spawn(client, None, watch::channel(0).0);
    let seeded = expect(&["default/web=10.96.0.10"], &["default/web-abc=10.1.0.1"]);
    converges(&source, &seeded).await;
    until("both watches", || {
        !api.requests(SERVICES, true).is_empty() && !api.requests(SLICES, true).is_empty()
    })
    .await;
    (api, source, seeded)
}

trait Tap: Sized {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
impl Tap for Value {}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn snapshot_waits_for_both_lists_then_follows_changes() {
    let (api, client) = FakeApi::start().await;
    seed(&api);
    api.change(|s| {
        s.held_lists.insert(SLICES);
    });
    let (changed_tx, changed_rx) = watch::channel(0u64);
    let source = KubeSource::spawn(client, None, changed_tx);

    // Services are listed and watched, slices are not answered yet: no snapshot.
    until("the Services watch", || {
        !api.requests(SERVICES, true).is_empty()
    })
    .await;
    until("the slices list request", || {
        !api.requests(SLICES, false).is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        source.snapshot().is_none(),
        "snapshot before the slices were listed"
    );
    let services_listed = *changed_rx.borrow();
    assert!(
        services_listed >= 1,
        "completing the Services list did not signal a change"
    );

    api.change(|s| {
        s.held_lists.clear();
    });
    converges(
        &source,
        &expect(&["default/web=10.96.0.10"], &["default/web-abc=10.1.0.1"]),
    )
    .await;
    assert!(*changed_rx.borrow() > services_listed);

    // Stored objects are trimmed to what ipvsd reads.
    let snapshot = source.snapshot().unwrap();
    assert_eq!(
        snapshot.services[0].metadata.annotations,
        Some(BTreeMap::from([(
            "ipvsd.io/scheduler".to_string(),
            "mh".to_string()
        )]))
    );

    // Adds, updates and deletes arrive through the watches, each one signalled.
    let before_changes = *changed_rx.borrow();
    api.put(SERVICES, mk_service("shop", "cart", "10.96.0.30", &[]));
    api.put(SLICES, mk_slice("shop", "cart-1", "cart", &["10.1.1.1"]));
    api.put(
        SLICES,
        mk_slice("default", "web-abc", "web", &["10.1.0.1", "10.1.0.2"]),
    );
    api.put(SERVICES, mk_service("default", "web", "10.96.0.11", &[]));
    converges(
        &source,
        &expect(
            &["default/web=10.96.0.11", "shop/cart=10.96.0.30"],
            &["default/web-abc=10.1.0.1,10.1.0.2", "shop/cart-1=10.1.1.1"],
        ),
    )
    .await;
    until("a signal for each of the four changes", || {
        *changed_rx.borrow() >= before_changes + 4
    })
    .await;

    api.delete(SERVICES, "shop/cart");
    api.delete(SLICES, "shop/cart-1");
    // A Service that becomes headless leaves the selection: the watch reports a deletion.
    api.put(
        SERVICES,
        mk_service(
            "default",
            "web",
            "10.96.0.11",
            &[("service.kubernetes.io/headless", "")],
        ),
    );
    converges(
        &source,
        &expect(&[], &["default/web-abc=10.1.0.1,10.1.0.2"]),
    )
    .await;

    // A Service taken from another proxy enters the selection.
    api.put(SERVICES, mk_service("default", "other", "10.96.0.20", &[]));
    converges(
        &source,
        &expect(
            &["default/other=10.96.0.20"],
            &["default/web-abc=10.1.0.1,10.1.0.2"],
        ),
    )
    .await;

    // One list each; everything else came through the watches.
    assert_eq!(api.requests(SERVICES, false).len(), 1);
    assert_eq!(api.requests(SLICES, false).len(), 1);
    let selectors: BTreeSet<String> = api
        .requests(SERVICES, false)
        .iter()
        .chain(api.requests(SLICES, false).iter())
        .map(|q| q["labelSelector"].clone())
        .collect();
    assert_eq!(
        selectors,
        BTreeSet::from([
            "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless".to_string(),
            "kubernetes.io/service-name,!service.kubernetes.io/headless".to_string(),
        ])
    );
}

#[tokio::test]
async fn proxy_name_takes_its_own_services_and_unlabelled_ones() {
    let (api, client) = FakeApi::start().await;
    seed(&api);
    api.put(
        SERVICES,
        mk_service(
            "default",
            "mine",
            "10.96.0.40",
            &[("service.kubernetes.io/service-proxy-name", "ipvsd")],
        ),
    );
    let source = KubeSource::spawn(client, Some("ipvsd".into()), watch::channel(0).0);
    let slices = ["default/web-abc=10.1.0.1"];
    converges(
        &source,
        &expect(
            &["default/mine=10.96.0.40", "default/web=10.96.0.10"],
            &slices,
        ),
    )
    .await;

    // Moving a Service from unlabelled to ours keeps it exactly once.
    api.put(
        SERVICES,
        mk_service(
            "default",
            "web",
            "10.96.0.10",
            &[("service.kubernetes.io/service-proxy-name", "ipvsd")],
        ),
    );
    api.put(
        SERVICES,
        mk_service(
            "default",
            "mine",
            "10.96.0.40",
            &[("service.kubernetes.io/service-proxy-name", "someone-else")],
        ),
    );
    converges(&source, &expect(&["default/web=10.96.0.10"], &slices)).await;
}

#[tokio::test]
async fn relists_after_410_gone() {
    let (api, source, _) = following_the_seed().await;

    // Changes whose history is compacted away at once: only a relist can reveal them.
    api.change(|s| {
        s.put(SERVICES, mk_service("shop", "cart", "10.96.0.30", &[]));
        s.delete(SLICES, "default/web-abc");
        s.put(SLICES, mk_slice("shop", "cart-1", "cart", &["10.1.1.1"]));
        s.compact();
    });
    converges(
        &source,
        &expect(
            &["default/web=10.96.0.10", "shop/cart=10.96.0.30"],
            &["shop/cart-1=10.1.1.1"],
        ),
    )
    .await;
    assert_eq!(
        api.requests(SERVICES, false).len(),
        2,
        "Services were not relisted"
    );
    assert_eq!(
        api.requests(SLICES, false).len(),
        2,
        "slices were not relisted"
    );

    // And the new watches carry on from the relist.
    api.delete(SERVICES, "shop/cart");
    converges(
        &source,
        &expect(&["default/web=10.96.0.10"], &["shop/cart-1=10.1.1.1"]),
    )
    .await;
}

#[tokio::test]
async fn bookmarks_move_the_resume_point() {
    let (api, client) = FakeApi::start().await;
    seed(&api);
    let source = KubeSource::spawn(client, None, watch::channel(0).0);
    converges(
        &source,
        &expect(&["default/web=10.96.0.10"], &["default/web-abc=10.1.0.1"]),
    )
    .await;
    until("the Services watch", || {
        !api.requests(SERVICES, true).is_empty()
    })
    .await;
    let first_watch = api.requests(SERVICES, true)[0].clone();
    assert_eq!(first_watch["allowWatchBookmarks"], "true");

    // Slices move the resourceVersion on; a bookmark tells the Services watch about it.
    api.put(SLICES, mk_slice("default", "web-abc", "web", &["10.1.0.3"]));
    api.put(SLICES, mk_slice("default", "web-abc", "web", &["10.1.0.4"]));
    converges(
        &source,
        &expect(&["default/web=10.96.0.10"], &["default/web-abc=10.1.0.4"]),
    )
    .await;
    let bookmarked = api.state.lock().unwrap().resource_version;
    // The bookmark is sent, then the watch ends cleanly, as at the API server's watch timeout.
    api.change(|s| {
        s.bookmark_generation += 1;
        s.close_generation += 1;
    });

    until("the Services watch to resume", || {
        api.requests(SERVICES, true).len() >= 2
    })
    .await;
    let resumed = api.requests(SERVICES, true)[1].clone();
    assert_eq!(resumed["resourceVersion"], bookmarked.to_string());
    assert_ne!(first_watch["resourceVersion"], resumed["resourceVersion"]);
    assert_eq!(
        api.requests(SERVICES, false).len(),
        1,
        "a clean watch end must not relist"
    );

    api.put(SERVICES, mk_service("shop", "cart", "10.96.0.30", &[]));
    converges(
        &source,
        &expect(
            &["default/web=10.96.0.10", "shop/cart=10.96.0.30"],
            &["default/web-abc=10.1.0.4"],
        ),
    )
    .await;
}

#[tokio::test]
async fn keeps_the_store_through_an_outage_and_converges_after() {
    let (api, source, before) = following_the_seed().await;

    // The API server goes away: open watches are cut, new connections are dropped. Meanwhile
    // the cluster changes, and the restarted server has lost its watch history.
    api.change(|s| {
        s.outage = true;
        s.put(SERVICES, mk_service("shop", "cart", "10.96.0.30", &[]));
        s.put(SLICES, mk_slice("shop", "cart-1", "cart", &["10.1.1.1"]));
        s.delete(SERVICES, "default/web");
        s.compact();
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        source.snapshot().map(|s| seen(&s)),
        Some(before),
        "the store must keep its content while the API server is away"
    );

    api.change(|s| s.outage = false);
    converges(
        &source,
        &expect(
            &["shop/cart=10.96.0.30"],
            &["default/web-abc=10.1.0.1", "shop/cart-1=10.1.1.1"],
        ),
    )
    .await;
}

#[tokio::test]
async fn lists_of_another_kind_are_refused_and_the_store_kept() {
    let (api, source, before) = following_the_seed().await;

    // The watches expire, and the lists that follow are ConfigMapLists: read as Services and
    // EndpointSlices, their items lack a spec and an addressType. Meanwhile a Service is added.
    api.change(|s| {
        s.wrong_kind_lists = true;
        s.put(SERVICES, mk_service("shop", "cart", "10.96.0.30", &[]));
        s.compact();
    });
    until("two lists of another kind for each watcher", || {
        api.requests(SERVICES, false).len() >= 3 && api.requests(SLICES, false).len() >= 3
    })
    .await;
    assert_eq!(
        source.snapshot().map(|s| seen(&s)),
        Some(before),
        "a list of another kind replaced the store"
    );

    // Lists of the right kind again: the source ends with the API server's objects.
    api.change(|s| s.wrong_kind_lists = false);
    converges(
        &source,
        &expect(
            &["default/web=10.96.0.10", "shop/cart=10.96.0.30"],
            &["default/web-abc=10.1.0.1"],
        ),
    )
    .await;
}

/// Takes changes from `source` until `done` holds for what they add up to (later changes of a
/// key replacing earlier ones); fails if the source says "everything" meanwhile.
async fn changes_until(source: &KubeSource, mut done: impl FnMut(&Delta) -> bool) -> Delta {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut total = Delta::default();
    loop {
        match source.take_changes(false) {
            Some(Changes::Delta(delta)) => total.merge(delta),
            Some(Changes::Full(_)) => panic!("a full view where changes were expected"),
            None => panic!("the source became incomplete"),
        }
        if done(&total) {
            return total;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "changes never complete; last {total:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn cluster_ip(service: &Service) -> &str {
    service
        .spec
        .as_ref()
        .unwrap()
        .cluster_ip
        .as_deref()
        .unwrap()
}

#[tokio::test]
async fn changes_name_the_changed_objects_and_a_relist_gives_everything() {
    let (api, client) = FakeApi::start().await;
    seed(&api);
    let source = KubeSource::spawn(client, Some("ipvsd".into()), watch::channel(0).0);
    converges(
        &source,
        &expect(&["default/web=10.96.0.10"], &["default/web-abc=10.1.0.1"]),
    )
    .await;
    // The first complete view is everything, then nothing has changed.
    match source.take_changes(false) {
        Some(Changes::Full(objects)) => {
            assert_eq!(
                objects.services.keys().cloned().collect::<Vec<_>>(),
                [ObjectKey::new("default", "web")]
            );
            assert_eq!(objects.endpoint_slices.len(), 1);
        }
        other => panic!("expected everything first, got {other:?}"),
    }
    assert!(matches!(source.take_changes(false), Some(Changes::Delta(d)) if d.is_empty()));
    until("both watches", || {
        api.requests(SERVICES, true).len() >= 2 && !api.requests(SLICES, true).is_empty()
    })
    .await;

    // One slice changes: its key, with its content now, and nothing else.
    let web_abc = ObjectKey::new("default", "web-abc");
    api.put(SLICES, mk_slice("default", "web-abc", "web", &["10.1.0.2"]));
    let delta = changes_until(&source, |d| !d.endpoint_slices.is_empty()).await;
    assert!(delta.services.is_empty(), "{delta:?}");
    let slice = delta.endpoint_slices[&web_abc].as_ref().expect("present");
    assert_eq!(
        slice.endpoints.as_deref().unwrap()[0].addresses[..],
        ["10.1.0.2"]
    );

    // A Service moving from the unlabelled selection to this proxy's is still there in the
    // end (read from the other store), and a deleted one is gone.
    let web = ObjectKey::new("default", "web");
    api.put(
        SERVICES,
        mk_service(
            "default",
            "web",
            "10.96.0.11",
            &[("service.kubernetes.io/service-proxy-name", "ipvsd")],
        ),
    );
    changes_until(&source, |d| {
        d.services
            .get(&web)
            .is_some_and(|s| s.as_ref().is_some_and(|s| cluster_ip(s) == "10.96.0.11"))
    })
    .await;
    api.delete(SERVICES, "default/web");
    changes_until(&source, |d| {
        d.services.get(&web).is_some_and(Option::is_none)
    })
    .await;

    // Changes a relist reveals: the source can only say "everything".
    api.change(|s| {
        s.put(SERVICES, mk_service("shop", "cart", "10.96.0.30", &[]));
        s.compact();
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match source.take_changes(false) {
            Some(Changes::Full(objects)) => {
                if objects
                    .services
                    .contains_key(&ObjectKey::new("shop", "cart"))
                {
                    break;
                }
            }
            Some(Changes::Delta(_)) => {}
            None => panic!("the source became incomplete"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no full view after the relist"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
