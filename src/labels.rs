//! The labels and annotations ipvsd reads, named once: the source selects and trims objects by
//! them and the model interprets them, and the two must agree on every name.

/// Label naming the proxy that owns a Service; absent means the default proxy. Services
/// labelled with another proxy's name are left to that proxy.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Label marking a Service (and its EndpointSlices) headless whatever its spec says: there is no
/// virtual IP to program.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Prefix of the annotations ipvsd reads, and so keeps when trimming objects.
pub const ANNOTATION_PREFIX: &str = "ipvsd.io/";
/// Per-Service scheduler override.
pub const SCHEDULER_ANNOTATION: &str = "ipvsd.io/scheduler";
/// Per-Service scheduler flags override (comma-separated names, as ipvsadm's `-b`).
pub const SCHEDULER_FLAGS_ANNOTATION: &str = "ipvsd.io/scheduler-flags";
