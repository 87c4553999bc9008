//! Reading manifests: documents, lists, directories, bad objects reported with their file and
//! name while the rest loads, and the source noticing edits.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipvsd::model::{desired, ModelConfig};
use ipvsd::node_addresses::NodeAddresses;
use ipvsd::source::manifest::{load, LoadResult, ManifestError, ManifestSource};
use ipvsd::source::{Changes, Snapshot, Source};
use tokio::sync::watch;

fn service_yaml(name: &str, cluster_ip: &str, port: u32) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
spec:
  type: ClusterIP
  clusterIP: {cluster_ip}
  clusterIPs:
  - {cluster_ip}
  ports:
  - name: http
    port: {port}
    protocol: TCP
    targetPort: http
"
    )
}

fn slice_yaml(name: &str, service: &str, address: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  namespace: default
  labels:
    kubernetes.io/service-name: {service}
addressType: IPv4
endpoints:
- addresses:
  - {address}
  conditions:
    ready: true
ports:
- name: http
  port: 8080
  protocol: TCP
"
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn names(snapshot: &Snapshot) -> (Vec<String>, Vec<String>) {
    let full = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        format!(
            "{}/{}",
            m.namespace.as_deref().unwrap_or("?"),
            m.name.as_deref().unwrap_or("?")
        )
    };
    (
        snapshot
            .services
            .iter()
            .map(|s| full(&s.metadata))
            .collect(),
        snapshot
            .endpoint_slices
            .iter()
            .map(|s| full(&s.metadata))
            .collect(),
    )
}

fn messages(result: &LoadResult) -> Vec<String> {
    result.errors.iter().map(ManifestError::to_string).collect()
}

#[test]
fn multi_document_files_load_every_object_and_ignore_other_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "---\n{}---\n{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n---\n# only a comment\n---\n{}",
        service_yaml("web", "10.96.0.10", 80),
        slice_yaml("web-1", "web", "10.244.0.11"),
        service_yaml("api", "10.96.0.11", 8080),
    );
    let path = write(dir.path(), "all.yaml", &text);
    let result = load(&[path]);
    assert_eq!(messages(&result), Vec::<String>::new());
    assert_eq!(
        names(&result.snapshot),
        (
            vec!["default/web".into(), "default/api".into()],
            vec!["default/web-1".into()]
        )
    );
}

#[test]
fn lists_as_kubectl_writes_them_load_their_items() {
    let dir = tempfile::tempdir().unwrap();
    let indent = |text: String| text.lines().map(|l| format!("  {l}\n")).collect::<String>();
    let item = |text: String| {
        let body = indent(text);
        format!("-{}", &body[1..])
    };
    let text = format!(
        "apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n{}{}",
        item(service_yaml("web", "10.96.0.10", 80)),
        item(slice_yaml("web-1", "web", "10.244.0.11")),
    );
    let path = write(dir.path(), "list.yaml", &text);
    let result = load(&[path]);
    assert_eq!(messages(&result), Vec::<String>::new());
    assert_eq!(
        names(&result.snapshot),
        (vec!["default/web".into()], vec!["default/web-1".into()])
    );
}

#[test]
fn json_files_and_missing_namespaces_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "web.json",
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}}"#,
    );
    let result = load(&[path]);
    assert_eq!(messages(&result), Vec::<String>::new());
    assert_eq!(names(&result.snapshot).0, vec!["default/web".to_string()]);
}

#[test]
fn bad_objects_are_reported_with_file_and_name_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let text = [
        service_yaml("web", "10.96.0.10", 70000),
        service_yaml("api", "10.96.0.999", 80),
        "apiVersion: v1\nkind: Service\nmetadata:\n  namespace: shop\nspec:\n  clusterIP: 10.96.0.12\n".into(),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n".into(),
        service_yaml("typo", "10.96.0.13", 80).replace("port: 80", "port: eighty"),
        slice_yaml("web-1", "web", "10.244.0.300"),
        slice_yaml("nolabel", "web", "10.244.0.11").replace("    kubernetes.io/service-name: web\n", "    app: web\n"),
        "apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata:\n  name: old\naddressType: IPv4\n"
            .into(),
        "just: a map\n".into(),
        service_yaml("good", "10.96.0.20", 80),
        slice_yaml("good-1", "good", "10.244.0.21"),
    ]
    .join("---\n");
    let path = write(dir.path(), "bad.yaml", &text);
    let file = path.display().to_string();
    let result = load(&[path]);
    let got = messages(&result);
    let expected_prefixes = [
        format!("{file}: Service default/web: spec.ports[0].port 70000 out of range"),
        format!("{file}: Service default/api: spec.clusterIP \"10.96.0.999\" is not an IP address"),
        format!("{file}: Service default/api: spec.clusterIPs[0] \"10.96.0.999\" is not an IP address"),
        format!("{file}: Service shop/<unnamed>: metadata.name is required"),
        format!("{file}: document 4: did not find expected ',' or ']' at line 44 column 1, while parsing a flow sequence at line 43 column 9"),
        format!("{file}: Service default/typo: spec.ports[0].port: invalid type: string \"eighty\""),
        format!("{file}: EndpointSlice default/web-1: endpoints[0].addresses[0] \"10.244.0.300\" is not an IP address"),
        format!("{file}: EndpointSlice default/nolabel: metadata.labels[\"kubernetes.io/service-name\"] is required"),
        format!("{file}: EndpointSlice default/old: apiVersion \"discovery.k8s.io/v1beta1\" is not supported"),
        format!("{file}: document 9: no kind"),
    ];
    assert_eq!(got.len(), expected_prefixes.len(), "{got:#?}");
    for (message, prefix) in got.iter().zip(&expected_prefixes) {
        assert!(
            message.starts_with(prefix.as_str()),
            "{message:?} should start with {prefix:?}"
        );
    }
    assert_eq!(
        names(&result.snapshot),
        (vec!["default/good".into()], vec!["default/good-1".into()])
    );
}

#[test]
fn an_object_defined_twice_is_reported_and_the_first_kept() {
    let dir = tempfile::tempdir().unwrap();
    let first = write(dir.path(), "a.yaml", &service_yaml("web", "10.96.0.10", 80));
    write(dir.path(), "b.yaml", &service_yaml("web", "10.96.0.99", 80));
    let result = load(&[dir.path().to_path_buf()]);
    assert_eq!(
        messages(&result),
        vec![format!(
            "{}: Service default/web: defined again (first in {}), ignored",
            dir.path().join("b.yaml").display(),
            first.display()
        )]
    );
    let spec = result.snapshot.services[0].spec.as_ref().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
}

#[test]
fn directories_are_read_flat_in_name_order_with_manifest_extensions_only() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "b.yml", &service_yaml("b", "10.96.0.2", 80));
    write(dir.path(), "a.yaml", &service_yaml("a", "10.96.0.1", 80));
    write(
        dir.path(),
        "c.json",
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"c"},"spec":{"clusterIP":"10.96.0.3","ports":[{"port":80}]}}"#,
    );
    write(dir.path(), ".a.yaml.swp", "not yaml at all: [");
    write(dir.path(), "README.md", "# not a manifest");
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    write(
        &dir.path().join("nested"),
        "d.yaml",
        &service_yaml("d", "10.96.0.4", 80),
    );
    let result = load(&[dir.path().to_path_buf()]);
    assert_eq!(messages(&result), Vec::<String>::new());
    assert_eq!(
        names(&result.snapshot).0,
        vec![
            "default/a".to_string(),
            "default/b".into(),
            "default/c".into()
        ]
    );
}

#[test]
fn a_missing_path_is_reported_and_the_others_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "web.yaml",
        &service_yaml("web", "10.96.0.10", 80),
    );
    let missing = dir.path().join("gone.yaml");
    let result = load(&[missing.clone(), good]);
    let got = messages(&result);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with(&format!("{}: ", missing.display())),
        "{got:?}"
    );
    assert!(matches!(result.errors[0], ManifestError::Read { .. }));
    assert_eq!(names(&result.snapshot).0, vec!["default/web".to_string()]);
}

fn example(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(dir)
}

#[test]
fn the_demo_manifests_load_cleanly_and_give_the_demo_rules() {
    let result = load(&[example("demo")]);
    assert_eq!(messages(&result), Vec::<String>::new());
    let nodes: NodeAddresses = ["192.168.50.10".parse::<IpAddr>().unwrap()]
        .into_iter()
        .collect();
    let config = ModelConfig {
        node_name: "demo-node".into(),
        ..ModelConfig::default()
    };
    let rules = desired(&result.snapshot, &nodes, &config);
    assert_eq!(rules.warnings, Vec::<String>::new());
    let got: Vec<String> = rules
        .virtual_servers
        .values()
        .map(|vs| {
            let dests: Vec<String> = vs
                .destinations
                .iter()
                .map(|r| {
                    let (a, p) = (r.address, r.port);
                    if a.is_ipv6() {
                        format!("[{a}]:{p}")
                    } else {
                        format!("{a}:{p}")
                    }
                })
                .collect();
            format!(
                "{} {} flags={:#x} timeout={} -> {}",
                vs.service.key,
                vs.service.scheduler,
                vs.service.flags.bits(),
                vs.service.timeout,
                dests.join(" ")
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "tcp 10.96.0.10:80 rr flags=0x0 timeout=0 -> 10.244.0.11:8080 10.244.0.12:8080 10.244.0.13:8080",
            "tcp 10.96.0.20:443 rr flags=0x1 timeout=600 -> 10.244.0.12:8443 10.244.0.13:8443",
            "tcp 10.96.0.30:80 mh flags=0x10 timeout=0 -> 10.244.0.11:8080 10.244.0.12:8080 10.244.0.13:8080",
            "udp 10.96.0.53:53 rr flags=0x0 timeout=0 -> 10.244.0.11:5353 10.244.0.12:5353",
            "tcp 10.96.0.60:80 rr flags=0x0 timeout=0 -> 10.244.0.11:8080",
            "tcp 192.168.50.10:30080 rr flags=0x0 timeout=0 -> 10.244.0.11:8080 10.244.0.12:8080 10.244.0.13:8080",
            "tcp [fd00:96::60]:80 rr flags=0x0 timeout=0 -> [fd00:244::11]:8080",
        ]
    );
}

#[test]
fn the_bad_example_reports_its_errors_and_keeps_its_good_service() {
    let result = load(&[example("bad")]);
    let file = example("bad").join("web.yaml").display().to_string();
    assert_eq!(
        messages(&result),
        vec![
            format!("{file}: Service default/web: spec.ports[0].port 70000 out of range"),
            format!(
                "{file}: Service default/api: spec.clusterIP \"10.96.1.999\" is not an IP address"
            ),
            format!("{file}: Service default/<unnamed>: metadata.name is required"),
        ]
    );
    assert_eq!(names(&result.snapshot).0, vec!["default/ok".to_string()]);
}

/// Waits up to a second for the generation to move past `seen`, and returns the new one.
async fn next_generation(changes: &mut watch::Receiver<u64>, seen: u64) -> u64 {
    tokio::time::timeout(Duration::from_secs(1), changes.wait_for(|g| *g != seen))
        .await
        .expect("a change noticed within a second")
        .map(|g| *g)
        .expect("the source is running")
}

fn service_names(source: &ManifestSource) -> Vec<String> {
    names(&source.snapshot().expect("loaded")).0
}

#[tokio::test]
async fn the_source_applies_edits_additions_and_removals_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let web = write(
        dir.path(),
        "web.yaml",
        &service_yaml("web", "10.96.0.10", 80),
    );
    let (sender, mut changes) = watch::channel(0u64);
    let source = ManifestSource::spawn(vec![dir.path().to_path_buf()], sender);

    let mut generation = next_generation(&mut changes, 0).await;
    assert_eq!(service_names(&source), vec!["default/web".to_string()]);

    // An edit of the same length: only the content tells it apart.
    write(
        dir.path(),
        "web.yaml",
        &service_yaml("web", "10.96.0.10", 81),
    );
    generation = next_generation(&mut changes, generation).await;
    let port = source.snapshot().unwrap().services[0]
        .spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()[0]
        .port;
    assert_eq!(port, 81);

    // A new file, with one bad object: its good one still applies.
    let text = format!(
        "{}---\n{}",
        service_yaml("api", "10.96.0.11", 80),
        service_yaml("broken", "10.96.0.12", 0)
    );
    write(dir.path(), "api.yaml", &text);
    generation = next_generation(&mut changes, generation).await;
    assert_eq!(
        service_names(&source),
        vec!["default/api".to_string(), "default/web".into()]
    );

    std::fs::remove_file(web).unwrap();
    generation = next_generation(&mut changes, generation).await;
    assert_eq!(service_names(&source), vec!["default/api".to_string()]);

    // Nothing changes, nothing is announced.
    let quiet = tokio::time::timeout(
        Duration::from_millis(600),
        changes.wait_for(|g| *g != generation),
    )
    .await;
    assert!(
        quiet.is_err(),
        "no change announced when the files did not change"
    );
}

#[test]
fn an_error_in_the_5000th_document_names_its_line_and_the_next_bad_object_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let documents: Vec<String> = (1..=10_000)
        .map(|i| match i {
            5_000 => "apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n".to_string(),
            5_001 => service_yaml(&format!("svc-{i}"), "10.96.20.1", 70000),
            _ => service_yaml(
                &format!("svc-{i}"),
                &format!("10.96.{}.{}", i / 250, i % 250 + 1),
                80,
            ),
        })
        .collect();
    let text = format!("---\n{}", documents.join("---\n"));
    let path = write(dir.path(), "services.yaml", &text);
    // The line of the file the bad document's flow sequence opens on, counted from 1.
    let open = text.lines().position(|l| l == "  name: [unclosed").unwrap() + 1;
    let document_start = open - 4;
    assert_eq!(text.lines().nth(document_start - 1), Some("---"));

    let result = load(std::slice::from_ref(&path));
    let file = path.display();
    assert_eq!(
        messages(&result),
        vec![
            format!(
                "{file}: document 5000: did not find expected ',' or ']' at line {} column 1, \
                 while parsing a flow sequence at line {open} column 9",
                open + 1
            ),
            format!("{file}: Service default/svc-5001: spec.ports[0].port 70000 out of range"),
        ]
    );
    match &result.errors[0] {
        ManifestError::Yaml {
            document,
            line,
            source,
            ..
        } => {
            assert_eq!((*document, *line), (5_000, document_start));
            assert_eq!((source.line(), source.column()), (Some(open + 1), Some(1)));
        }
        other => panic!("not a YAML error: {other:?}"),
    }
    let (services, _) = names(&result.snapshot);
    assert_eq!(services.len(), 9_998);
    assert_eq!(
        services[4_998..5_000],
        ["default/svc-4999", "default/svc-5002"]
    );
}

/// The keys and presence of the Services in `changes`, which must be a [`Changes::Delta`].
fn changed_services(changes: Option<Changes>) -> Vec<(String, bool)> {
    match changes {
        Some(Changes::Delta(delta)) => delta
            .services
            .iter()
            .map(|(key, service)| (key.to_string(), service.is_some()))
            .collect(),
        other => panic!("expected changes, got {other:?}"),
    }
}

#[tokio::test]
async fn the_source_reports_the_objects_an_edit_changed() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "web.yaml",
        &service_yaml("web", "10.96.0.10", 80),
    );
    write(
        dir.path(),
        "api.yaml",
        &service_yaml("api", "10.96.0.11", 80),
    );
    let (sender, mut changes) = watch::channel(0u64);
    let source = ManifestSource::spawn(vec![dir.path().to_path_buf()], sender);
    let mut generation = next_generation(&mut changes, 0).await;
    assert!(matches!(source.take_changes(false), Some(Changes::Full(o)) if o.services.len() == 2));

    // One file edited, one added: only their objects are named.
    write(
        dir.path(),
        "web.yaml",
        &service_yaml("web", "10.96.0.10", 81),
    );
    write(dir.path(), "db.yaml", &service_yaml("db", "10.96.0.12", 80));
    // The writes may be read by more than one poll (even half-written): what the changes add
    // up to counts, a later change of a key replacing an earlier one.
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 2 || seen.values().any(|present| !present) {
        generation = next_generation(&mut changes, generation).await;
        seen.extend(changed_services(source.take_changes(false)));
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            ("default/db".to_string(), true),
            ("default/web".to_string(), true)
        ]
    );

    // A removed file: its object, deleted.
    std::fs::remove_file(dir.path().join("api.yaml")).unwrap();
    next_generation(&mut changes, generation).await;
    assert_eq!(
        changed_services(source.take_changes(false)),
        [("default/api".to_string(), false)]
    );
    // Asked for everything, it gives everything.
    assert!(matches!(source.take_changes(true), Some(Changes::Full(o)) if o.services.len() == 2));
}
