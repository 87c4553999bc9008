//! EndpointSlices as ipvsd keeps them: the fields the model reads, nothing else.
//!
//! Kubernetes' `EndpointSlice` type holds every field of the API: its `Endpoint` alone is 352
//! bytes, most of them optional fields ipvsd never reads (target reference, hints, zone,
//! hostname, topology). A store of them at 10,000 Services of 10 endpoints held 34 MiB of
//! endpoints. [`Slice`] is read straight from the API's JSON (or converted from a manifest's
//! object), so what the model does not read is never kept; an endpoint is 48 bytes. Of the
//! labels only the Service's name is kept, outside the metadata: a map of labels costs a
//! 544-byte node even for one entry (5 MiB at 10,000 slices).

use k8s_openapi::api::discovery::v1::{self as discovery, EndpointConditions, EndpointPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use crate::labels::SERVICE_NAME_LABEL;

/// An EndpointSlice reduced to what the model reads. It reads as an EndpointSlice from the API
/// (an `apiVersion` or `kind` of another type is refused, as Kubernetes' own type does), and
/// converts from and to Kubernetes' type, losing only the fields it does not keep.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "RawSlice")]
pub struct Slice {
    /// The object's metadata, without labels.
    pub metadata: ObjectMeta,
    /// The Service it belongs to: its `kubernetes.io/service-name` label.
    pub service_name: Option<String>,
    /// `IPv4`, `IPv6` or `FQDN`; empty when the object had none.
    pub address_type: String,
    /// The ports; `None` when the object has no such field.
    pub ports: Option<Box<[EndpointPort]>>,
    /// The endpoints; `None` when the object has no such field.
    pub endpoints: Option<Box<[SliceEndpoint]>>,
}

/// An endpoint of a [`Slice`]: its addresses, conditions and node.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceEndpoint {
    /// The addresses; consumers use the first.
    #[serde(default, deserialize_with = "null_as_default")]
    pub addresses: Box<[String]>,
    /// Ready, serving, terminating.
    #[serde(default)]
    pub conditions: Option<EndpointConditions>,
    /// The node it runs on.
    #[serde(default)]
    pub node_name: Option<String>,
}

/// The object as it is read, before its type is checked.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSlice {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<ObjectMeta>,
    #[serde(default)]
    address_type: Option<String>,
    #[serde(default)]
    ports: Option<Box<[EndpointPort]>>,
    #[serde(default)]
    endpoints: Option<Box<[SliceEndpoint]>>,
}

impl TryFrom<RawSlice> for Slice {
    type Error = String;

    fn try_from(raw: RawSlice) -> Result<Slice, String> {
        let expected = [
            (
                "apiVersion",
                raw.api_version,
                <Self as k8s_openapi::Resource>::API_VERSION,
            ),
            ("kind", raw.kind, <Self as k8s_openapi::Resource>::KIND),
        ];
        for (field, value, wanted) in expected {
            if let Some(value) = value.filter(|v| v != wanted) {
                return Err(format!("{field} {value:?}, expected {wanted:?}"));
            }
        }
        let (metadata, service_name) = without_labels(raw.metadata.unwrap_or_default());
        Ok(Slice {
            metadata,
            service_name,
            address_type: raw.address_type.unwrap_or_default(),
            ports: raw.ports,
            endpoints: raw.endpoints,
        })
    }
}

/// The metadata without its labels, and the Service name label's value.
fn without_labels(mut metadata: ObjectMeta) -> (ObjectMeta, Option<String>) {
    let service_name = metadata
        .labels
        .take()
        .and_then(|mut labels| labels.remove(SERVICE_NAME_LABEL));
    (metadata, service_name)
}

/// A field that may be `null`, read as its default then.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl k8s_openapi::Resource for Slice {
    const API_VERSION: &'static str =
        <discovery::EndpointSlice as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <discovery::EndpointSlice as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <discovery::EndpointSlice as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <discovery::EndpointSlice as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str =
        <discovery::EndpointSlice as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for Slice {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl From<discovery::EndpointSlice> for Slice {
    fn from(slice: discovery::EndpointSlice) -> Slice {
        let (metadata, service_name) = without_labels(slice.metadata);
        Slice {
            metadata,
            service_name,
            address_type: slice.address_type,
            ports: slice.ports.map(Vec::into_boxed_slice),
            endpoints: slice.endpoints.map(|endpoints| {
                endpoints
                    .into_iter()
                    .map(|endpoint| SliceEndpoint {
                        addresses: endpoint.addresses.into_boxed_slice(),
                        conditions: endpoint.conditions,
                        node_name: endpoint.node_name,
                    })
                    .collect()
            }),
        }
    }
}

impl From<Slice> for discovery::EndpointSlice {
    fn from(slice: Slice) -> discovery::EndpointSlice {
        let mut metadata = slice.metadata;
        metadata.labels = slice
            .service_name
            .map(|name| [(SERVICE_NAME_LABEL.to_string(), name)].into());
        discovery::EndpointSlice {
            metadata,
            address_type: slice.address_type,
            ports: slice.ports.map(Vec::from),
            endpoints: slice.endpoints.map(|endpoints| {
                Vec::from(endpoints)
                    .into_iter()
                    .map(|endpoint| discovery::Endpoint {
                        addresses: endpoint.addresses.into(),
                        conditions: endpoint.conditions,
                        node_name: endpoint.node_name,
                        ..discovery::Endpoint::default()
                    })
                    .collect()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLICE: &str = r#"{
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-abc", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.1.5"], "conditions": {"ready": true},
             "nodeName": "node-1", "zone": "a", "hostname": "web-0",
             "targetRef": {"kind": "Pod", "name": "web-0", "namespace": "default"}},
            {"addresses": ["10.244.2.6"]}
        ]
    }"#;

    #[test]
    fn reads_what_the_model_uses_and_nothing_else() {
        let slice: Slice = serde_json::from_str(SLICE).unwrap();
        assert_eq!(slice.metadata.name.as_deref(), Some("web-abc"));
        assert_eq!(slice.service_name.as_deref(), Some("web"));
        assert_eq!(slice.metadata.labels, None);
        assert_eq!(slice.address_type, "IPv4");
        let ports = slice.ports.as_deref().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].port, Some(8080));
        assert_eq!(
            slice.endpoints.as_deref().unwrap(),
            [
                SliceEndpoint {
                    addresses: Box::new(["10.244.1.5".to_string()]),
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        ..EndpointConditions::default()
                    }),
                    node_name: Some("node-1".to_string()),
                },
                SliceEndpoint {
                    addresses: Box::new(["10.244.2.6".to_string()]),
                    ..SliceEndpoint::default()
                },
            ]
        );
    }

    #[test]
    fn reads_as_kubernetes_own_type_does() {
        let full: discovery::EndpointSlice = serde_json::from_str(SLICE).unwrap();
        let slice: Slice = serde_json::from_str(SLICE).unwrap();
        assert_eq!(Slice::from(full.clone()), slice);
        // Back to Kubernetes' type: what is kept is equal, the rest is gone.
        let back = discovery::EndpointSlice::from(slice);
        assert_eq!(back.metadata, full.metadata);
        assert_eq!(back.ports, full.ports);
        let (back, full) = (&back.endpoints.unwrap()[0], &full.endpoints.unwrap()[0]);
        assert_eq!(back.addresses, full.addresses);
        assert_eq!(back.node_name, full.node_name);
        assert_eq!(back.target_ref, None);
        assert!(full.target_ref.is_some());
    }

    #[test]
    fn of_the_labels_only_the_service_name_is_kept() {
        let json = r#"{"metadata": {"name": "web-abc", "labels": {
                           "kubernetes.io/service-name": "web",
                           "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
                       "addressType": "IPv4"}"#;
        let slice: Slice = serde_json::from_str(json).unwrap();
        assert_eq!(slice.service_name.as_deref(), Some("web"));
        assert_eq!(slice.metadata.labels, None);
        let full: discovery::EndpointSlice = serde_json::from_str(json).unwrap();
        assert_eq!(Slice::from(full), slice);
        let back = discovery::EndpointSlice::from(slice);
        assert_eq!(
            back.metadata.labels,
            Some([(SERVICE_NAME_LABEL.to_string(), "web".to_string())].into())
        );
        // Without the label there is no Service name, and no labels on the way back.
        let unlabelled: Slice =
            serde_json::from_str(r#"{"metadata": {"name": "x", "labels": {"a": "b"}}}"#).unwrap();
        assert_eq!(unlabelled.service_name, None);
        assert_eq!(
            discovery::EndpointSlice::from(unlabelled).metadata.labels,
            None
        );
    }

    #[test]
    fn an_object_of_another_type_is_refused() {
        let service = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}"#;
        let error = serde_json::from_str::<Slice>(service).unwrap_err();
        assert!(error.to_string().contains("apiVersion \"v1\""), "{error}");
        let kind = r#"{"kind": "Service", "metadata": {"name": "web"}}"#;
        assert!(serde_json::from_str::<Slice>(kind).is_err());
        // Kubernetes' type refuses both too.
        assert!(serde_json::from_str::<discovery::EndpointSlice>(service).is_err());
        assert!(serde_json::from_str::<discovery::EndpointSlice>(kind).is_err());
    }

    #[test]
    fn null_lists_read_as_empty() {
        let json = r#"{"metadata": {"name": "empty"}, "addressType": "IPv4",
                       "endpoints": null, "ports": null}"#;
        let slice: Slice = serde_json::from_str(json).unwrap();
        assert_eq!(slice.endpoints, None);
        assert_eq!(slice.ports, None);
        let full: discovery::EndpointSlice = serde_json::from_str(json).unwrap();
        assert_eq!(Slice::from(full), slice);
    }

    #[test]
    fn an_endpoint_is_small() {
        assert_eq!(std::mem::size_of::<SliceEndpoint>(), 48);
    }
}
