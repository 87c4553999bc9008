//! Health-check node ports: kube-proxy's answers, and servers that open and close with the
//! Services.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use ipvsd::health::Health;
use ipvsd::health_check::{respond, HealthCheckServers};
use ipvsd::metrics::Metrics;
use ipvsd::model::HealthCheck;

fn mk_check(name: &str, local_endpoints: usize) -> HealthCheck {
    HealthCheck {
        namespace: "shop".into(),
        name: name.into(),
        local_endpoints,
    }
}

async fn body_of(response: hyper::Response<http_body_util::Full<bytes::Bytes>>) -> (u16, String) {
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn answers_as_kube_proxy_does() {
    let (status, body) = body_of(respond(Some(&mk_check("web", 2)), true)).await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "service": {"namespace": "shop", "name": "web"},
            "localEndpoints": 2,
            "serviceProxyHealthy": true
        })
    );
    let response = respond(Some(&mk_check("web", 2)), true);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-load-balancing-endpoint-weight"], "2");

    // No local endpoint, or an unhealthy proxy: the load balancer must pick another node.
    assert_eq!(
        body_of(respond(Some(&mk_check("web", 0)), true)).await.0,
        503
    );
    let (status, body) = body_of(respond(Some(&mk_check("web", 3)), false)).await;
    assert_eq!(status, 503);
    assert!(body.contains("\"serviceProxyHealthy\":false"), "{body}");
}

/// A port nothing listens on now, on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET / on 127.0.0.1:port from a blocking thread; the status, or None if refused.
async fn get(port: u16) -> Option<u16> {
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text.split_whitespace().nth(1)?.parse().ok()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn servers_open_change_and_close_with_the_services() {
    let health = Arc::new(Health::new(Duration::from_secs(30)));
    health.synced(Instant::now());
    let metrics = Arc::new(Metrics::new());
    let mut servers = HealthCheckServers::new(health, metrics.clone());
    let loopback: [IpAddr; 1] = ["127.0.0.1".parse().unwrap()];
    let (a, b) = (free_port(), free_port());

    let mut wanted = BTreeMap::from([(a, mk_check("web", 1)), (b, mk_check("db", 0))]);
    servers.update(&wanted, Some(&loopback));
    assert_eq!(get(a).await, Some(200));
    assert_eq!(get(b).await, Some(503));

    wanted.insert(b, mk_check("db", 4));
    wanted.remove(&a);
    servers.update(&wanted, Some(&loopback));
    assert_eq!(get(b).await, Some(200));
    // The closed port refuses connections once its task is gone.
    let closed = Instant::now();
    while get(a).await.is_some() {
        assert!(
            closed.elapsed() < Duration::from_secs(5),
            "port {a} still answers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(servers.listening(), [(b, Some(loopback[0]))]);
    let text = metrics.encode();
    assert!(
        text.contains("ipvsd_health_check_requests_total{code=\"200\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("ipvsd_health_check_requests_total{code=\"503\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_port_taken_by_another_program_is_a_warning_and_retried() {
    let health = Arc::new(Health::new(Duration::from_secs(30)));
    let mut servers = HealthCheckServers::new(health, Arc::new(Metrics::new()));
    let loopback: [IpAddr; 1] = ["127.0.0.1".parse().unwrap()];
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let wanted = BTreeMap::from([(port, mk_check("web", 1))]);
    servers.update(&wanted, Some(&loopback));
    assert!(servers.listening().is_empty());
    drop(taken);
    servers.update(&wanted, Some(&loopback));
    assert_eq!(servers.listening(), [(port, Some(loopback[0]))]);
}
