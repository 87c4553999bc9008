//! Where Services and EndpointSlices come from. A source only fills its store and says
//! "something changed"; it never decides anything.
//!
//! The controller asks a source for what changed since it last asked ([`Source::take_changes`]):
//! the keys of the objects that were added, edited or deleted, with their current content,
//! shared rather than copied. A change to one object therefore costs the controller work for
//! that object only. After a source had to list everything again (its first list, or a relist
//! after an outage), it cannot say what changed in between, and hands out everything instead.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub mod kube;
pub mod manifest;
pub mod slice;

pub use slice::{Slice, SliceEndpoint};

/// Everything a source knows at one moment, as owned copies: for one-shot uses (`ipvsd plan`,
/// tests) that want plain objects.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Services.
    pub services: Vec<Service>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<EndpointSlice>,
}

/// What identifies an object of one kind: its namespace (`default` when it has none, as kubectl
/// does) and its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// A key from its parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ObjectKey {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an object: its namespace or `default`, and its name or the empty name.
    pub fn of(meta: &ObjectMeta) -> ObjectKey {
        ObjectKey {
            namespace: meta
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Every object of a source, by key, shared with the source's store.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    /// Services.
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    /// EndpointSlices, as ipvsd keeps them.
    pub endpoint_slices: BTreeMap<ObjectKey, Arc<Slice>>,
}

impl Objects {
    /// The objects of a snapshot; of two objects with the same key, the first is kept.
    pub fn from_snapshot(snapshot: Snapshot) -> Objects {
        let mut objects = Objects::default();
        for service in snapshot.services {
            objects
                .services
                .entry(ObjectKey::of(&service.metadata))
                .or_insert_with(|| Arc::new(service));
        }
        for slice in snapshot.endpoint_slices {
            objects
                .endpoint_slices
                .entry(ObjectKey::of(&slice.metadata))
                .or_insert_with(|| Arc::new(Slice::from(slice)));
        }
        objects
    }

    /// Owned copies of the objects, in key order.
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            services: self.services.values().map(|s| Service::clone(s)).collect(),
            endpoint_slices: self
                .endpoint_slices
                .values()
                .map(|s| EndpointSlice::from(Slice::clone(s)))
                .collect(),
        }
    }

    /// What changed from `self` to `newer`: the keys whose object was added, deleted or edited.
    /// Objects shared between the two are not compared field by field.
    pub fn changes_to(&self, newer: &Objects) -> Delta {
        Delta {
            services: changed(&self.services, &newer.services),
            endpoint_slices: changed(&self.endpoint_slices, &newer.endpoint_slices),
        }
    }
}

fn changed<T: PartialEq>(
    older: &BTreeMap<ObjectKey, Arc<T>>,
    newer: &BTreeMap<ObjectKey, Arc<T>>,
) -> BTreeMap<ObjectKey, Option<Arc<T>>> {
    let mut out = BTreeMap::new();
    for (key, old) in older {
        match newer.get(key) {
            Some(new) if Arc::ptr_eq(old, new) || old == new => {}
            new => {
                out.insert(key.clone(), new.cloned());
            }
        }
    }
    for (key, new) in newer {
        if !older.contains_key(key) {
            out.insert(key.clone(), Some(new.clone()));
        }
    }
    out
}

/// The objects that changed, by key, with their current content; `None`: deleted.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    /// Services.
    pub services: BTreeMap<ObjectKey, Option<Arc<Service>>>,
    /// EndpointSlices, as ipvsd keeps them.
    pub endpoint_slices: BTreeMap<ObjectKey, Option<Arc<Slice>>>,
}

impl Delta {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.endpoint_slices.is_empty()
    }

    /// How many objects changed.
    pub fn len(&self) -> usize {
        self.services.len() + self.endpoint_slices.len()
    }

    /// Adds the changes of `later`, which happened after these: the later content wins.
    pub fn merge(&mut self, later: Delta) {
        self.services.extend(later.services);
        self.endpoint_slices.extend(later.endpoint_slices);
    }
}

/// What a source hands the controller.
#[derive(Debug, Clone)]
pub enum Changes {
    /// Everything: the first complete content, a relist, or a full view the controller asked
    /// for. The controller rebuilds from it.
    Full(Objects),
    /// What changed since the last call.
    Delta(Delta),
}

/// A provider of Services and EndpointSlices.
pub trait Source: Send + Sync {
    /// The current content as owned copies, or `None` while the source has not yet seen
    /// everything once. For one-shot uses; the running controller uses
    /// [`Source::take_changes`].
    fn snapshot(&self) -> Option<Snapshot>;

    /// What changed since the last call, or everything when `full` is asked for or the source
    /// had to list everything again since; `None` while the source has not yet seen everything
    /// once (the controller never programs the kernel from a half-filled store), and then
    /// nothing is consumed.
    fn take_changes(&self, full: bool) -> Option<Changes>;
}

/// The change bookkeeping of a source whose content is replaced whole (manifests, tests): each
/// new content is compared with the last by key, and the differences wait for the controller.
#[derive(Debug, Default)]
pub struct ContentLog {
    current: Option<Objects>,
    pending: Delta,
    /// Whether the controller has not taken a full view since the first content.
    unseen: bool,
}

impl ContentLog {
    /// Replaces the content, recording what changed.
    pub fn replace(&mut self, objects: Objects) {
        match &self.current {
            Some(current) => self.pending.merge(current.changes_to(&objects)),
            None => self.unseen = true,
        }
        self.current = Some(objects);
    }

    /// The content, if there is one yet.
    pub fn current(&self) -> Option<&Objects> {
        self.current.as_ref()
    }

    /// See [`Source::take_changes`].
    pub fn take(&mut self, full: bool) -> Option<Changes> {
        let current = self.current.as_ref()?;
        if full || std::mem::take(&mut self.unseen) {
            self.pending = Delta::default();
            self.unseen = false;
            return Some(Changes::Full(current.clone()));
        }
        Some(Changes::Delta(std::mem::take(&mut self.pending)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, ip: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: Some(k8s_openapi::api::core::v1::ServiceSpec {
                cluster_ip: Some(ip.into()),
                ..Default::default()
            }),
            ..Service::default()
        }
    }

    #[test]
    fn content_log_reports_full_first_then_changed_keys() {
        let mut log = ContentLog::default();
        assert!(log.take(false).is_none());
        log.replace(Objects::from_snapshot(Snapshot {
            services: vec![service("a", "10.0.0.1"), service("b", "10.0.0.2")],
            endpoint_slices: vec![],
        }));
        assert!(matches!(log.take(false), Some(Changes::Full(o)) if o.services.len() == 2));
        assert!(matches!(log.take(false), Some(Changes::Delta(d)) if d.is_empty()));
        log.replace(Objects::from_snapshot(Snapshot {
            services: vec![service("a", "10.0.0.9"), service("c", "10.0.0.3")],
            endpoint_slices: vec![],
        }));
        let Some(Changes::Delta(delta)) = log.take(false) else {
            panic!("a delta")
        };
        let keys: Vec<(String, bool)> = delta
            .services
            .iter()
            .map(|(k, v)| (k.name.clone(), v.is_some()))
            .collect();
        assert_eq!(
            keys,
            [("a".into(), true), ("b".into(), false), ("c".into(), true)]
        );
        assert!(matches!(log.take(true), Some(Changes::Full(o)) if o.services.len() == 2));
    }
}
