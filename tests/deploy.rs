//! The manifests in deploy/ are valid Kubernetes objects and say what ipvsd needs: the node's
//! network, NET_ADMIN and nothing more, read-only access to Services and EndpointSlices, and
//! probes on the port the health server listens on.

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Default)]
struct Manifests {
    daemon_sets: Vec<DaemonSet>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    config_maps: Vec<ConfigMap>,
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Parses `document` as `T` and checks that nothing in it was ignored on the way: a misspelt
/// field would otherwise vanish silently and the object would mean something else.
fn typed<T: DeserializeOwned + Serialize>(file: &Path, index: usize, document: &Value) -> T {
    let object: T = serde_json::from_value(document.clone())
        .unwrap_or_else(|e| panic!("{} document {index}: {e}", file.display()));
    let back = serde_json::to_value(&object).unwrap();
    assert_eq!(
        &back,
        document,
        "{} document {index}: fields were ignored or changed in parsing",
        file.display()
    );
    object
}

fn load() -> Manifests {
    let mut manifests = Manifests::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (index, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let document = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{} document {index}: {e}", file.display()));
            if document.is_null() {
                continue;
            }
            match document["kind"].as_str() {
                Some("DaemonSet") => manifests.daemon_sets.push(typed(file, index, &document)),
                Some("ServiceAccount") => manifests
                    .service_accounts
                    .push(typed(file, index, &document)),
                Some("ClusterRole") => manifests.cluster_roles.push(typed(file, index, &document)),
                Some("ClusterRoleBinding") => manifests
                    .cluster_role_bindings
                    .push(typed(file, index, &document)),
                Some("ConfigMap") => manifests.config_maps.push(typed(file, index, &document)),
                other => panic!(
                    "{} document {index}: unexpected kind {other:?}",
                    file.display()
                ),
            }
        }
    }
    manifests
}

fn only<'a, T>(objects: &'a [T], what: &str) -> &'a T {
    assert_eq!(objects.len(), 1, "expected exactly one {what}");
    &objects[0]
}

fn ipvsd_container(daemon_set: &DaemonSet) -> &Container {
    let pod = daemon_set.spec.template.spec.as_ref().unwrap();
    let mut named = pod.containers.iter().filter(|c| c.name == "ipvsd");
    let container = named.next().expect("a container named ipvsd");
    assert!(
        named.next().is_none(),
        "more than one container named ipvsd"
    );
    container
}

/// The value following `flag` in the container's arguments.
fn flag<'a>(container: &'a Container, flag: &str) -> &'a str {
    let args = container.args.as_ref().expect("container has arguments");
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} missing from {args:?}"));
    args.get(at + 1)
        .unwrap_or_else(|| panic!("{flag} has no value"))
}

#[test]
fn daemon_set_runs_on_the_node_network_with_net_admin_only() {
    let manifests = load();
    let daemon_set = only(&manifests.daemon_sets, "DaemonSet");
    let spec = &daemon_set.spec;
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    for (key, value) in spec.selector.match_labels.as_ref().unwrap() {
        assert_eq!(
            template_labels.get(key),
            Some(value),
            "selector does not match the pods"
        );
    }
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true));
    // Without it, pods' traffic to cluster IPs could not be told from outside traffic.
    let cidr = flag(ipvsd_container(daemon_set), "--cluster-cidr");
    assert!(
        cidr.parse::<ipnet::IpNet>().is_ok(),
        "--cluster-cidr {cidr:?}"
    );

    let container = ipvsd_container(daemon_set);
    let security = container.security_context.as_ref().unwrap();
    assert_ne!(security.privileged, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let capabilities = security.capabilities.as_ref().unwrap();
    assert_eq!(
        capabilities.add.as_deref(),
        Some(&["NET_ADMIN".to_string()][..])
    );
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_string()][..]));
    for other in pod.init_containers.iter().flatten() {
        let caps = other
            .security_context
            .as_ref()
            .and_then(|s| s.capabilities.as_ref())
            .and_then(|c| c.add.clone())
            .unwrap_or_default();
        assert!(
            caps.is_empty(),
            "init container {} adds {caps:?}",
            other.name
        );
    }

    // The node name comes from the downward API and reaches the flag.
    assert_eq!(flag(container, "--node-name"), "$(NODE_NAME)");
    let node_name = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "NODE_NAME")
        .expect("NODE_NAME in env");
    let field = node_name
        .value_from
        .as_ref()
        .unwrap()
        .field_ref
        .as_ref()
        .unwrap();
    assert_eq!(field.field_path, "spec.nodeName");

    // /lib/modules from the node, read-only.
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/lib/modules")
        .expect("/lib/modules mounted");
    assert_eq!(mount.read_only, Some(true));
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .expect("volume of the /lib/modules mount");
    assert_eq!(volume.host_path.as_ref().unwrap().path, "/lib/modules");

    // Every mount names a volume that exists.
    for mount in container.volume_mounts.iter().flatten() {
        assert!(
            pod.volumes.iter().flatten().any(|v| v.name == mount.name),
            "mount {} has no volume",
            mount.name
        );
    }
}

#[test]
fn probes_ask_the_health_server() {
    let manifests = load();
    let container = ipvsd_container(only(&manifests.daemon_sets, "DaemonSet"));
    let health_address = flag(container, "--health-address");
    let health_port: i32 = health_address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {health_address}"));
    // The kubelet probes from the node, so the health server must not listen on loopback
    // only; metrics stay on loopback.
    assert!(!health_address.starts_with("127."), "{health_address}");
    assert_eq!(flag(container, "--metrics-address"), "127.0.0.1:10249");

    for (probe, path) in [
        (container.liveness_probe.as_ref(), "/livez"),
        (container.readiness_probe.as_ref(), "/readyz"),
    ] {
        let get = probe
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("no HTTP probe for {path}"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::Int(health_port));
    }
}

#[test]
fn rbac_grants_reading_services_and_endpoint_slices_only() {
    let manifests = load();
    let role = only(&manifests.cluster_roles, "ClusterRole");
    let mut granted = Vec::new();
    for rule in role.rules.iter().flatten() {
        let verbs: Vec<&str> = rule.verbs.iter().map(String::as_str).collect();
        assert_eq!(verbs, ["get", "list", "watch"], "rule {rule:?}");
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                granted.push(format!("{group}/{resource}"));
            }
        }
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
    }
    granted.sort();
    assert_eq!(granted, ["/services", "discovery.k8s.io/endpointslices"]);

    let account = only(&manifests.service_accounts, "ServiceAccount");
    let binding = only(&manifests.cluster_role_bindings, "ClusterRoleBinding");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let subjects = binding.subjects.as_deref().unwrap();
    let subject = only(subjects, "subject");
    assert_eq!(subject.kind, "ServiceAccount");
    assert_eq!(Some(&subject.name), account.metadata.name.as_ref());
    assert_eq!(subject.namespace, account.metadata.namespace);

    // The pods run as that account, in its namespace.
    let daemon_set = only(&manifests.daemon_sets, "DaemonSet");
    let pod = daemon_set.spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name, account.metadata.name);
    assert_eq!(daemon_set.metadata.namespace, account.metadata.namespace);
}

#[test]
fn api_server_address_comes_from_the_config_map() {
    let manifests = load();
    let config_map = only(&manifests.config_maps, "ConfigMap");
    let daemon_set = only(&manifests.daemon_sets, "DaemonSet");
    assert_eq!(config_map.metadata.namespace, daemon_set.metadata.namespace);
    let data = config_map.data.as_ref().unwrap();
    let container = ipvsd_container(daemon_set);
    for variable in ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"] {
        let env = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == variable)
            .unwrap_or_else(|| panic!("{variable} not set"));
        let key = env
            .value_from
            .as_ref()
            .unwrap()
            .config_map_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(Some(&key.name), config_map.metadata.name.as_ref());
        assert!(
            data.contains_key(&key.key),
            "{variable}: no key {}",
            key.key
        );
    }
}
