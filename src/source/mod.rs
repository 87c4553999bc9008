//! Where Services and EndpointSlices come from. A source only fills its store and says
//! "something changed"; it never decides anything.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

pub mod kube;
pub mod manifest;

/// Everything a source knows at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Services.
    pub services: Vec<Service>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<EndpointSlice>,
}

/// A provider of Services and EndpointSlices.
pub trait Source: Send + Sync {
    /// The current content, or `None` while the source has not yet seen everything once: the
    /// controller never programs the kernel from a half-filled store.
    fn snapshot(&self) -> Option<Snapshot>;
}
