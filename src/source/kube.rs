//! Services and EndpointSlices from the Kubernetes API server.
//!
//! Each kind is kept in a reflector store fed by a `kube::runtime::watcher`: list once, then
//! watch from the list's resourceVersion, with bookmarks. When the API server goes away
//! (restart, network cut, expired credentials) or answers 410 Gone, the watcher backs off
//! exponentially, relists and watches again. A relist is buffered and swapped in whole when it
//! completes, so the store keeps its last content through an outage and the node keeps
//! forwarding with the rules it has.
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

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::{Snapshot, Source};

/// Label on Services (and their slices) that have no cluster IP.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// Label naming the proxy that owns a Service; absent means the default proxy.
pub const LABEL_SERVICE_PROXY_NAME: &str = "service.kubernetes.io/service-proxy-name";
/// Label linking an EndpointSlice to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Prefix of the annotations ipvsd reads, and so keeps when trimming objects.
pub const ANNOTATION_PREFIX: &str = "ipvsd.io/";

/// The label selectors of the Service watchers: one, or two whose results are joined when
/// `proxy_name` is set (see the module documentation).
pub fn service_selectors(proxy_name: Option<&str>) -> Vec<String> {
    let unnamed = format!("!{LABEL_SERVICE_PROXY_NAME},!{LABEL_HEADLESS}");
    match proxy_name {
        None => vec![unnamed],
        Some(name) => vec![
            unnamed,
            format!("{LABEL_SERVICE_PROXY_NAME}={name},!{LABEL_HEADLESS}"),
        ],
    }
}

/// The label selector of the EndpointSlice watcher.
pub fn endpoint_slice_selector() -> String {
    format!("{LABEL_SERVICE_NAME},!{LABEL_HEADLESS}")
}

/// Services and EndpointSlices kept up to date from the API server.
///
/// The watcher tasks run on the runtime [`KubeSource::spawn`] was called on and stop when the
/// `KubeSource` is dropped.
pub struct KubeSource {
    services: Vec<Feed<Service>>,
    endpoint_slices: Feed<EndpointSlice>,
    tasks: Vec<AbortHandle>,
}

/// One watcher's store and whether it has completed its first list.
struct Feed<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    listed: Arc<AtomicBool>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Feed<K> {
    fn objects(&self) -> Option<Vec<K>> {
        if !self.listed.load(Ordering::Acquire) {
            return None;
        }
        Some(self.store.state().iter().map(|o| K::clone(o)).collect())
    }
}

impl KubeSource {
    /// Starts the watchers (see the module documentation for what they select) on the current
    /// tokio runtime. Every change to a store — an object added, updated or deleted, or a
    /// list completed — bumps `changed`.
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
        let mut tasks = Vec::new();
        let services = service_selectors(proxy_name.as_deref())
            .into_iter()
            .map(|selector| {
                let api: Api<Service> = Api::all(client.clone());
                let (feed, task) = spawn_feed(api, selector, changed.clone());
                tasks.push(task);
                feed
            })
            .collect();
        let api: Api<EndpointSlice> = Api::all(client);
        let (endpoint_slices, task) = spawn_feed(api, endpoint_slice_selector(), changed);
        tasks.push(task);
        KubeSource {
            services,
            endpoint_slices,
            tasks,
        }
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
        let mut services = Vec::new();
        for feed in &self.services {
            services.extend(feed.objects()?);
        }
        // While a Service moves between the two selections of a named proxy it can sit in
        // both stores for a moment; keep one copy.
        services.sort_by(|a, b| {
            (a.metadata.namespace.as_deref(), a.metadata.name.as_deref())
                .cmp(&(b.metadata.namespace.as_deref(), b.metadata.name.as_deref()))
        });
        services.dedup_by(|a, b| {
            a.metadata.namespace == b.metadata.namespace && a.metadata.name == b.metadata.name
        });
        let endpoint_slices = self.endpoint_slices.objects()?;
        Some(Snapshot {
            services,
            endpoint_slices,
        })
    }
}

/// Starts one watcher feeding one store.
fn spawn_feed<K>(
    api: Api<K>,
    label_selector: String,
    changed: Arc<watch::Sender<u64>>,
) -> (Feed<K>, AbortHandle)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let listed = Arc::new(AtomicBool::new(false));
    let kind = K::kind(&());
    // Lists stay quorum reads (the default) rather than answers from an API server's cache:
    // after an outage a stale cache in another API server could otherwise hand back an older
    // state than the store already holds, and the node would briefly program the past.
    let config = watcher::Config::default().labels(&label_selector);
    let stream = watcher::watcher(api, config)
        .default_backoff()
        .modify(trim::<K>)
        .reflect(writer);
    let task_listed = listed.clone();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(object)) => {
                    tracing::debug!(%kind, object = %object_name(&object), "applied");
                    bump(&changed);
                }
                Ok(Event::Delete(object)) => {
                    tracing::debug!(%kind, object = %object_name(&object), "deleted");
                    bump(&changed);
                }
                Ok(Event::Init) => {
                    tracing::debug!(%kind, selector = %label_selector, "listing");
                }
                Ok(Event::InitApply(_)) => {}
                Ok(Event::InitDone) => {
                    let first = !task_listed.swap(true, Ordering::AcqRel);
                    tracing::info!(%kind, selector = %label_selector, first, "list complete");
                    bump(&changed);
                }
                Err(error) => {
                    // The watcher retries by itself after a backoff; until it has relisted,
                    // the store keeps what it had.
                    tracing::warn!(%kind, selector = %label_selector, %error,
                        "watch failed, retrying with backoff");
                }
            }
        }
        tracing::error!(%kind, selector = %label_selector, "watch stream ended");
    });
    (Feed { store, listed }, task.abort_handle())
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
}
