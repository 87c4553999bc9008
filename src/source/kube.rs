//! Services and EndpointSlices from the Kubernetes API server.
//!
//! Each kind is kept in a reflector store fed by a `kube::runtime::watcher`: list once, then
//! watch from the list's resourceVersion, with bookmarks. When the API server goes away
//! (restart, network cut, expired credentials) or answers 410 Gone, the watcher backs off
//! exponentially, relists and watches again. A relist is buffered and swapped in whole when it
//! completes, so the store keeps its last content through an outage and the node keeps
//! forwarding with the rules it has.
//!
//! An answer that is not what was asked for is refused rather than stored. Mangled JSON, HTTP
//! errors and objects of another kind that say so (`kind: ConfigMap`) fail in the client and
//! the watcher retries. Items of a list do not carry their kind, though: a list of another kind
//! (a ConfigMapList where a ServiceList was asked for) would read as Services without a spec,
//! or EndpointSlices without an `addressType`, and replace the store. So every object is
//! checked ([`InvalidObject`]): one that lacks what the API server always sets on its kind, or
//! a name, makes the watcher start over with a new list after a backoff, and the store keeps
//! its content until a list completes that holds only valid objects.
//!
//! # What is watched
//!
//! The same objects kube-proxy takes, filtered by the API server so this node never receives
//! the rest:
//!
//! - Services labelled `service.kubernetes.io/headless` are left out (no virtual IP to program).
//! - Services labelled `service.kubernetes.io/service-proxy-name` belong to another proxy. With
//!   no proxy name of its own, ipvsd takes only Services without that label, as kube-proxy
//!   does. With a proxy name it takes the Services labelled with that name *and* those without
//!   the label. Label selectors cannot express "equals X or absent", so that case runs two
//!   Service watchers, one per alternative, whose stores are read together; a Service whose
//!   label changes leaves one selection (the API server sends a deletion) and enters the other.
//! - EndpointSlices labelled `service.kubernetes.io/headless` are left out, and so are those
//!   without `kubernetes.io/service-name` (not managed for a Service). Slices of Services
//!   owned by another proxy still arrive; they are harmless, as they match no Service here.
//!
//! Objects are trimmed before they are stored: managed fields, owner references and every
//! annotation except `ipvsd.io/*` (which carries ipvsd's own per-Service settings) are
//! dropped. On large clusters the last-applied-configuration annotation alone can be most of
//! an object's size.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, DefaultBackoff, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::{Changes, Delta, ObjectKey, Objects, Slice, Snapshot, Source};
use crate::labels::{
    ANNOTATION_PREFIX, HEADLESS_LABEL, SERVICE_NAME_LABEL, SERVICE_PROXY_NAME_LABEL,
};

/// The label selectors of the Service watchers: one, or two whose results are joined when
/// `proxy_name` is set (see the module documentation).
pub fn service_selectors(proxy_name: Option<&str>) -> Vec<String> {
    let unnamed = format!("!{SERVICE_PROXY_NAME_LABEL},!{HEADLESS_LABEL}");
    match proxy_name {
        None => vec![unnamed],
        Some(name) => vec![
            unnamed,
            format!("{SERVICE_PROXY_NAME_LABEL}={name},!{HEADLESS_LABEL}"),
        ],
    }
}

/// The label selector of the EndpointSlice watcher.
pub fn endpoint_slice_selector() -> String {
    format!("{SERVICE_NAME_LABEL},!{HEADLESS_LABEL}")
}

/// Services and EndpointSlices kept up to date from the API server.
///
/// The watcher tasks run on the runtime [`KubeSource::spawn`] was called on and stop when the
/// `KubeSource` is dropped.
pub struct KubeSource {
    services: Vec<Feed<Service>>,
    endpoint_slices: Feed<Slice>,
    log: Arc<Mutex<ChangeLog>>,
    tasks: Vec<AbortHandle>,
}

/// What the watchers saw since the controller last asked: the keys of the objects they applied
/// or deleted, and whether a store was replaced by a list (after which only a full view is
/// right: a relist does not say what it changed).
#[derive(Debug, Default)]
struct ChangeLog {
    services: BTreeSet<ObjectKey>,
    endpoint_slices: BTreeSet<ObjectKey>,
    listed: bool,
}

/// Which of the change log's key sets a watcher writes to.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Service,
    EndpointSlice,
}

impl ChangeLog {
    fn record(&mut self, kind: Kind, key: ObjectKey) {
        match kind {
            Kind::Service => self.services.insert(key),
            Kind::EndpointSlice => self.endpoint_slices.insert(key),
        };
    }
}

/// One watcher's store and whether it has completed its first list.
struct Feed<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    listed: Arc<AtomicBool>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Feed<K> {
    fn is_listed(&self) -> bool {
        self.listed.load(Ordering::Acquire)
    }

    fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.store
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
    }
}

impl KubeSource {
    /// Starts the watchers (see the module documentation for what they select) on the current
    /// tokio runtime. Every change to a store — an object added, updated or deleted, or a
    /// list completed — bumps `changed`, after it was recorded for [`Source::take_changes`].
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn spawn(
        client: Client,
        proxy_name: Option<String>,
        changed: watch::Sender<u64>,
    ) -> KubeSource {
        let changed = Arc::new(changed);
        let log = Arc::new(Mutex::new(ChangeLog::default()));
        let mut tasks = Vec::new();
        let services = service_selectors(proxy_name.as_deref())
            .into_iter()
            .map(|selector| {
                let api: Api<Service> = Api::all(client.clone());
                let (feed, task) =
                    spawn_feed(api, selector, Kind::Service, log.clone(), changed.clone());
                tasks.push(task);
                feed
            })
            .collect();
        let api: Api<Slice> = Api::all(client);
        let (endpoint_slices, task) = spawn_feed(
            api,
            endpoint_slice_selector(),
            Kind::EndpointSlice,
            log.clone(),
            changed,
        );
        tasks.push(task);
        KubeSource {
            services,
            endpoint_slices,
            log,
            tasks,
        }
    }

    fn is_listed(&self) -> bool {
        self.services.iter().all(Feed::is_listed) && self.endpoint_slices.is_listed()
    }

    /// Every object of the stores, shared. While a Service moves between the two selections
    /// of a named proxy it can sit in both stores for a moment; the first store's copy is kept.
    fn objects(&self) -> Objects {
        let mut services = BTreeMap::new();
        for feed in &self.services {
            for service in feed.store.state() {
                services
                    .entry(ObjectKey::of(&service.metadata))
                    .or_insert(service);
            }
        }
        let endpoint_slices = self
            .endpoint_slices
            .store
            .state()
            .into_iter()
            .map(|slice| (ObjectKey::of(&slice.metadata), slice))
            .collect();
        Objects {
            services,
            endpoint_slices,
        }
    }

    /// The current Service of `key`: the first store's copy when both hold one.
    fn service(&self, key: &ObjectKey) -> Option<Arc<Service>> {
        self.services.iter().find_map(|feed| feed.get(key))
    }
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Source for KubeSource {
    /// `None` until every watcher has completed its first list; afterwards the stores' current
    /// content, which outlives outages of the API server.
    fn snapshot(&self) -> Option<Snapshot> {
        self.is_listed().then(|| self.objects().to_snapshot())
    }

    /// The objects whose keys the watchers recorded, read from the stores now (so a key
    /// changed twice is read once, as it is at the end), or every object after a list.
    fn take_changes(&self, full: bool) -> Option<Changes> {
        if !self.is_listed() {
            return None;
        }
        let (services, endpoint_slices) = {
            let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            if full || log.listed {
                *log = ChangeLog::default();
                drop(log);
                return Some(Changes::Full(self.objects()));
            }
            (
                std::mem::take(&mut log.services),
                std::mem::take(&mut log.endpoint_slices),
            )
        };
        let services = services
            .into_iter()
            .map(|key| {
                let service = self.service(&key);
                (key, service)
            })
            .collect();
        let endpoint_slices = endpoint_slices
            .into_iter()
            .map(|key| {
                let slice = self.endpoint_slices.get(&key);
                (key, slice)
            })
            .collect();
        Some(Changes::Delta(Delta {
            services,
            endpoint_slices,
        }))
    }
}

/// An object from the API server that cannot be one of the kind that was asked for: the answer
/// was of another kind (whose list items, which carry no kind, still read as this one) or
/// mangled. A watcher that receives one lists again rather than store it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidObject {
    /// An object without a field the API server always sets on its kind (a Service's spec, an
    /// EndpointSlice's `addressType`): it was another kind of object.
    #[error(
        "{kind} {object} has no {field}, which every {kind} has: the answer held another kind \
         of object"
    )]
    NotOfKind {
        /// The kind that was asked for.
        kind: &'static str,
        /// `namespace/name` of the object.
        object: String,
        /// The field it lacks.
        field: &'static str,
    },
    /// An object without a name, which the API server never sends.
    #[error("a {kind} without a name (in namespace {namespace:?})")]
    NoName {
        /// The kind that was asked for.
        kind: &'static str,
        /// The object's namespace, if it has one.
        namespace: Option<String>,
    },
}

/// What a watched kind must hold to be taken as one, and what of it the store keeps.
pub trait Checked: k8s_openapi::Resource + Resource<DynamicType = ()> + Sized {
    /// The field the API server always sets on this kind, if the object lacks it.
    fn missing_field(&self) -> Option<&'static str>;

    /// Drops what ipvsd never reads: the object's metadata beyond what matters ([`trim`]),
    /// and for kinds with a bulky body, the parts of it the model does not use.
    fn trim_for_store(&mut self) {
        trim(self);
    }
}

impl Checked for Service {
    fn missing_field(&self) -> Option<&'static str> {
        self.spec.is_none().then_some("spec")
    }

    /// Lists kept at their length rather than at the capacity they grew to while being read
    /// (a one-port Service's ports took room for four).
    fn trim_for_store(&mut self) {
        trim(self);
        if let Some(spec) = self.spec.as_mut() {
            for list in [
                spec.cluster_ips.as_mut(),
                spec.external_ips.as_mut(),
                spec.ip_families.as_mut(),
                spec.load_balancer_source_ranges.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                list.shrink_to_fit();
            }
            if let Some(ports) = spec.ports.as_mut() {
                ports.shrink_to_fit();
            }
        }
    }
}

/// A missing `addressType` reads as empty; the API server never stores one so. What the model
/// does not read of a slice is never kept (see [`Slice`]).
impl Checked for Slice {
    fn missing_field(&self) -> Option<&'static str> {
        self.address_type.is_empty().then_some("addressType")
    }
}

/// `Ok` when `object` can be of the kind the API server was asked for.
fn check<K: Checked>(object: &K) -> Result<(), InvalidObject> {
    let kind = <K as k8s_openapi::Resource>::KIND;
    let meta = object.meta();
    if meta.name.as_deref().is_none_or(str::is_empty) {
        return Err(InvalidObject::NoName {
            kind,
            namespace: meta.namespace.clone(),
        });
    }
    match object.missing_field() {
        Some(field) => Err(InvalidObject::NotOfKind {
            kind,
            object: object_name(object),
            field,
        }),
        None => Ok(()),
    }
}

/// Starts one watcher feeding one store, recording what it changes in `log`.
fn spawn_feed<K>(
    api: Api<K>,
    label_selector: String,
    log_kind: Kind,
    log: Arc<Mutex<ChangeLog>>,
    changed: Arc<watch::Sender<u64>>,
) -> (Feed<K>, AbortHandle)
where
    K: Checked + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, mut writer) = reflector::store();
    let listed = Arc::new(AtomicBool::new(false));
    let kind = K::kind(&());
    // Lists stay quorum reads (the default) rather than answers from an API server's cache:
    // after an outage a stale cache in another API server could otherwise hand back an older
    // state than the store already holds, and the node would briefly program the past.
    let config = watcher::Config::default().labels(&label_selector);
    let task_listed = listed.clone();
    // The store has applied an event by the time it is recorded, so a key is recorded only
    // once the store holds what the controller will read for it.
    let record = move |key: Option<ObjectKey>| {
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        match key {
            Some(key) => log.record(log_kind, key),
            None => log.listed = true,
        }
    };
    let task = tokio::spawn(async move {
        // Waits between watchers started over after an invalid object; reset by a list that
        // completes.
        let mut restarts = DefaultBackoff::default();
        loop {
            let stream = watcher::watcher(api.clone(), config.clone())
                .default_backoff()
                .modify(K::trim_for_store);
            let mut stream = std::pin::pin!(stream);
            let invalid = loop {
                let event = match stream.next().await {
                    None => break None,
                    Some(Ok(event)) => event,
                    Some(Err(error)) if unreadable_watch_event(&error) => {
                        // The client's own message is an empty Status: say what it means.
                        tracing::warn!(%kind, selector = %label_selector,
                            "watch sent a line that is neither an event of the watched kind \
                             nor a Status (an object of another kind?), skipped; retrying with \
                             backoff");
                        continue;
                    }
                    Some(Err(error)) => {
                        // The watcher retries by itself after a backoff; until it has
                        // relisted, the store keeps what it had.
                        tracing::warn!(%kind, selector = %label_selector, %error,
                            "watch failed, retrying with backoff");
                        continue;
                    }
                };
                if let Err(invalid) = check_event(&event) {
                    break Some(invalid);
                }
                writer.apply_watcher_event(&event);
                match event {
                    Event::Apply(object) => {
                        tracing::debug!(%kind, object = %object_name(&object), "applied");
                        record(Some(ObjectKey::of(object.meta())));
                        bump(&changed);
                    }
                    Event::Delete(object) => {
                        tracing::debug!(%kind, object = %object_name(&object), "deleted");
                        record(Some(ObjectKey::of(object.meta())));
                        bump(&changed);
                    }
                    Event::Init => {
                        tracing::debug!(%kind, selector = %label_selector, "listing");
                    }
                    Event::InitApply(_) => {}
                    Event::InitDone => {
                        // Recorded before the kind counts as listed: a controller that sees
                        // every kind listed then finds this list in the log and takes it with
                        // the rest, rather than taking everything and finding it again at the
                        // next sync.
                        record(None);
                        let first = !task_listed.swap(true, Ordering::AcqRel);
                        tracing::info!(%kind, selector = %label_selector, first, "list complete");
                        restarts.reset();
                        bump(&changed);
                    }
                }
            };
            let Some(invalid) = invalid else {
                tracing::error!(%kind, selector = %label_selector, "watch stream ended");
                return;
            };
            // Nothing of the answer that held it reaches the store: a list in progress is
            // dropped unfinished (the next list starts afresh), a watch event is not applied.
            let delay = restarts.next().unwrap_or(Duration::from_secs(30));
            tracing::error!(%kind, selector = %label_selector, error = %invalid,
                retry_in = ?delay,
                "invalid object from the API server, refused; the store keeps its content \
                 and the watcher lists again");
            tokio::time::sleep(delay).await;
        }
    });
    (Feed { store, listed }, task.abort_handle())
}

/// Whether `error` is a line of a watch that is JSON but neither an event of the watched kind
/// nor a Status (an event of another kind): the client then reads it as a Status with every
/// field empty, which an API server never sends.
fn unreadable_watch_event(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::WatchFailed(kube::Error::Api(status))
        if status.code == 0 && status.message.is_empty() && status.reason.is_empty())
}

/// The object an event carries, checked.
fn check_event<K: Checked>(event: &Event<K>) -> Result<(), InvalidObject> {
    match event {
        Event::Apply(object) | Event::Delete(object) | Event::InitApply(object) => check(object),
        Event::Init | Event::InitDone => Ok(()),
    }
}

fn bump(changed: &watch::Sender<u64>) {
    changed.send_modify(|generation| *generation = generation.wrapping_add(1));
}

fn object_name<K: Resource>(object: &K) -> String {
    match object.meta().namespace.as_deref() {
        Some(namespace) => format!("{namespace}/{}", object.name_any()),
        None => object.name_any(),
    }
}

/// Drops what ipvsd never reads, so the stores hold only what matters.
pub fn trim<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    meta.owner_references = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| key.starts_with(ANNOTATION_PREFIX));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
    use std::collections::BTreeMap;

    #[test]
    fn selectors_follow_kube_proxy() {
        assert_eq!(
            service_selectors(None),
            vec!["!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless"]
        );
        assert_eq!(
            service_selectors(Some("ipvsd")),
            vec![
                "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless",
                "service.kubernetes.io/service-proxy-name=ipvsd,!service.kubernetes.io/headless",
            ]
        );
        assert_eq!(
            endpoint_slice_selector(),
            "kubernetes.io/service-name,!service.kubernetes.io/headless"
        );
    }

    #[test]
    fn objects_of_another_kind_or_without_name_are_refused_by_name() {
        // A ConfigMapList read as a ServiceList: its items carry no kind, so they read as
        // Services, without a spec.
        let list: kube::core::ObjectList<Service> = serde_json::from_value(serde_json::json!({
            "kind": "ConfigMapList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"},
            "items": [{"metadata": {"name": "web-config", "namespace": "shop"},
                "data": {"key": "value"}}],
        }))
        .unwrap();
        assert_eq!(
            check(&list.items[0]),
            Err(InvalidObject::NotOfKind {
                kind: "Service",
                object: "shop/web-config".into(),
                field: "spec",
            })
        );
        assert_eq!(
            check(&list.items[0]).unwrap_err().to_string(),
            "Service shop/web-config has no spec, which every Service has: the answer held \
             another kind of object"
        );
        let slices: kube::core::ObjectList<Slice> = serde_json::from_value(serde_json::json!({
            "kind": "ConfigMapList", "apiVersion": "v1", "metadata": {},
            "items": [{"metadata": {"name": "web-config", "namespace": "shop"}}],
        }))
        .unwrap();
        assert_eq!(
            check(&slices.items[0]).unwrap_err().to_string(),
            "EndpointSlice shop/web-config has no addressType, which every EndpointSlice has: \
             the answer held another kind of object"
        );
        let unnamed = Slice {
            metadata: ObjectMeta {
                namespace: Some("shop".into()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            ..Slice::default()
        };
        assert_eq!(
            check(&unnamed),
            Err(InvalidObject::NoName {
                kind: "EndpointSlice",
                namespace: Some("shop".into())
            })
        );
        let service = Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..ObjectMeta::default()
            },
            spec: Some(Default::default()),
            ..Service::default()
        };
        assert_eq!(check(&service), Ok(()));
        assert!(check_event(&Event::Apply(Service::default())).is_err());
        assert_eq!(check_event::<Service>(&Event::InitDone), Ok(()));
        // What the client makes of a watch line of another kind.
        let empty = kube::core::Status::default().boxed();
        assert!(unreadable_watch_event(&watcher::Error::WatchFailed(
            kube::Error::Api(empty)
        )));
        let gone = kube::core::Status::failure("too old", "Expired")
            .with_code(410)
            .boxed();
        assert!(!unreadable_watch_event(&watcher::Error::WatchFailed(
            kube::Error::Api(gone)
        )));
    }

    #[test]
    fn trim_keeps_only_ipvsd_annotations() {
        let mut service = Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                annotations: Some(BTreeMap::from([
                    (
                        "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                        "{}".to_string(),
                    ),
                    ("ipvsd.io/scheduler".to_string(), "mh".to_string()),
                ])),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..ObjectMeta::default()
            },
            ..Service::default()
        };
        trim(&mut service);
        assert_eq!(
            service.metadata.annotations,
            Some(BTreeMap::from([(
                "ipvsd.io/scheduler".to_string(),
                "mh".to_string()
            )]))
        );
        assert_eq!(service.metadata.managed_fields, None);
        assert!(service.metadata.labels.is_some());

        let mut bare = Service {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([("a".to_string(), "b".to_string())])),
                ..ObjectMeta::default()
            },
            ..Service::default()
        };
        trim(&mut bare);
        assert_eq!(bare.metadata.annotations, None);
    }

    #[test]
    fn a_listed_slice_keeps_what_the_model_reads() {
        // An EndpointSlice list as the API server answers it: the watched type reads the
        // addresses, conditions and node of each endpoint, and nothing else of them.
        let list: kube::core::ObjectList<Slice> = serde_json::from_value(serde_json::json!({
            "kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"resourceVersion": "7"},
            "items": [{
                "metadata": {"name": "web-abc", "namespace": "shop",
                    "managedFields": [{"manager": "kube-controller-manager"}]},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.1.0.1"], "conditions": {"ready": true},
                    "nodeName": "node-1", "hostname": "pod-1", "zone": "zone-a",
                    "hints": {"forZones": [{"name": "zone-a"}]},
                    "targetRef": {"kind": "Pod", "name": "pod-1"}}],
            }],
        }))
        .unwrap();
        let mut slice = list.items[0].clone();
        assert_eq!(check(&slice), Ok(()));
        Checked::trim_for_store(&mut slice);
        assert_eq!(slice.metadata.managed_fields, None);
        assert_eq!(
            slice.endpoints.as_deref().unwrap(),
            [crate::source::SliceEndpoint {
                addresses: Box::new(["10.1.0.1".to_string()]),
                conditions: Some(k8s_openapi::api::discovery::v1::EndpointConditions {
                    ready: Some(true),
                    ..Default::default()
                }),
                node_name: Some("node-1".into()),
            }]
        );
    }
}
