//! Services and EndpointSlices read from Kubernetes YAML manifests.
