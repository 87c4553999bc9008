//! The health and metrics endpoints over real HTTP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipvsd::health::Health;
use ipvsd::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Short, so that backdated Instants stay valid right after boot; margins are a full second.
const SYNC_PERIOD: Duration = Duration::from_secs(1);

struct Server {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(health: Arc<Health>, metrics: Arc<Metrics>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(ipvsd::http::serve(
        listener,
        health,
        Some(metrics),
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        address,
        stop,
        task,
    }
}

/// One HTTP/1.1 GET: the status code and the body.
async fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: ipvsd\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("no end of headers");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

#[tokio::test]
async fn healthz_fails_when_a_change_waits_more_than_twice_the_sync_period() {
    let health = Arc::new(Health::new(SYNC_PERIOD));
    let server = start(health.clone(), Arc::new(Metrics::new())).await;

    assert_eq!(get(server.address, "/healthz").await.0, 200);

    // A change seen one period ago is still within bounds.
    health.change_seen(Instant::now() - SYNC_PERIOD);
    assert_eq!(get(server.address, "/healthz").await.0, 200);

    // Unapplied for longer than two periods: stuck.
    let health = Arc::new(Health::new(SYNC_PERIOD));
    let stuck = start(health.clone(), Arc::new(Metrics::new())).await;
    health.change_seen(Instant::now() - SYNC_PERIOD * 3);
    let (status, body) = get(stuck.address, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("without being applied"), "{body}");
    // Liveness only says the process answers.
    assert_eq!(get(stuck.address, "/livez").await.0, 200);

    // A sync that applied it makes ipvsd healthy again.
    health.synced(Instant::now());
    assert_eq!(get(stuck.address, "/healthz").await.0, 200);

    for server in [server, stuck] {
        server.stop.send(()).unwrap();
        server.task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn readyz_after_the_first_sync() {
    let health = Arc::new(Health::new(SYNC_PERIOD));
    let server = start(health.clone(), Arc::new(Metrics::new())).await;
    let (status, body) = get(server.address, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    health.synced(Instant::now());
    assert_eq!(get(server.address, "/readyz").await.0, 200);
    assert_eq!(get(server.address, "/nothing-here").await.0, 404);
    server.stop.send(()).unwrap();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn metrics_carry_every_series() {
    let metrics = Arc::new(Metrics::new());
    let server = start(Arc::new(Health::new(SYNC_PERIOD)), metrics.clone()).await;

    metrics.observe_sync(Duration::from_millis(3));
    metrics.observe_programming_latency(Duration::from_millis(700));
    metrics.set_counts(4, 6, 13, 5);
    metrics.netlink_error("new_dest");
    let dns = ipvs::ServiceKey::Addr {
        address: IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)),
        protocol: ipvs::Protocol::Udp,
        port: 53,
    };
    let stats = ipvs::Stats {
        connections: 21,
        packets_in: 42,
        packets_out: 40,
        bytes_in: 3100,
        bytes_out: 5200,
        ..ipvs::Stats::default()
    };
    metrics.set_traffic(&[(dns, "kube-system/kube-dns:dns".into(), stats)]);

    let (status, body) = get(server.address, "/metrics").await;
    assert_eq!(status, 200);
    let labels =
        r#"{protocol="udp",address="10.96.0.10",port="53",service="kube-system/kube-dns:dns"}"#;
    for expected in [
        "ipvsd_sync_duration_seconds_count 1".to_string(),
        "ipvsd_sync_duration_seconds_bucket{le=\"0.005\"} 1".to_string(),
        "ipvsd_network_programming_duration_seconds_count 1".to_string(),
        "ipvsd_network_programming_duration_seconds_bucket{le=\"0.5\"} 0".to_string(),
        "ipvsd_services 4".to_string(),
        "ipvsd_virtual_servers 6".to_string(),
        "ipvsd_real_servers 13".to_string(),
        "ipvsd_bound_addresses 5".to_string(),
        "ipvsd_netlink_errors_total{kind=\"new_dest\"} 1".to_string(),
        format!("ipvsd_virtual_server_connections_total{labels} 21"),
        format!("ipvsd_virtual_server_packets_in_total{labels} 42"),
        format!("ipvsd_virtual_server_packets_out_total{labels} 40"),
        format!("ipvsd_virtual_server_bytes_in_total{labels} 3100"),
        format!("ipvsd_virtual_server_bytes_out_total{labels} 5200"),
    ] {
        assert!(
            body.lines().any(|line| line == expected),
            "no {expected:?} in\n{body}"
        );
    }

    // A virtual server that is gone disappears from the next scrape.
    metrics.set_traffic(&[]);
    let (_, body) = get(server.address, "/metrics").await;
    assert!(!body.contains("kube-dns"), "{body}");

    server.stop.send(()).unwrap();
    server.task.await.unwrap().unwrap();
}
