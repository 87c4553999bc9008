//! Health-check node ports: what cloud load balancers ask each node to learn whether it has
//! endpoints of a Service whose external traffic policy is `Local`, so they send its traffic
//! only to nodes that can serve it.
//!
//! As kube-proxy's health server: one HTTP server per Service on its `healthCheckNodePort`,
//! answering any path with 200 when the node has local endpoints and the proxy is healthy,
//! else 503, and a JSON body naming the Service, the count and the proxy's health. Servers open
//! and close as Services come and go; a port that cannot be bound is a warning naming the
//! Service, retried at the next sync, and never stops the others.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::health::Health;
use crate::metrics::Metrics;
use crate::model::HealthCheck;

/// Where a health-check server listens: one port on the wildcard address, or on one node
/// address (when `--nodeport-addresses` restricts them).
type Listen = (u16, Option<IpAddr>);

/// The running health-check servers.
pub struct HealthCheckServers {
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    /// What each port answers, read by the servers, replaced by [`Self::update`].
    checks: Arc<RwLock<BTreeMap<u16, HealthCheck>>>,
    servers: BTreeMap<Listen, JoinHandle<()>>,
    /// Ports that could not be bound, so each failure is logged once, not every sync.
    failed: BTreeSet<Listen>,
}

impl HealthCheckServers {
    /// No servers yet.
    pub fn new(health: Arc<Health>, metrics: Arc<Metrics>) -> HealthCheckServers {
        HealthCheckServers {
            health,
            metrics,
            checks: Arc::default(),
            servers: BTreeMap::new(),
            failed: BTreeSet::new(),
        }
    }

    /// The ports served now, with the address each listens on (`None`: all addresses).
    pub fn listening(&self) -> Vec<(u16, Option<IpAddr>)> {
        self.servers.keys().copied().collect()
    }

    /// Serves `wanted` on every address of `addresses` (`None`: the wildcard address): opens
    /// the servers of new ports, closes those of ports no longer wanted, and updates what the
    /// others answer. Must run inside a tokio runtime.
    pub fn update(&mut self, wanted: &BTreeMap<u16, HealthCheck>, addresses: Option<&[IpAddr]>) {
        *self.checks.write().expect("health checks lock") = wanted.clone();
        let targets: BTreeSet<Listen> = wanted
            .keys()
            .flat_map(|port| match addresses {
                None => vec![(*port, None)],
                Some(list) => list.iter().map(|a| (*port, Some(*a))).collect(),
            })
            .collect();
        self.servers.retain(|listen, task| {
            let keep = targets.contains(listen) && !task.is_finished();
            if !keep {
                task.abort();
                if !targets.contains(listen) {
                    info!(port = listen.0, address = ?listen.1, "closed health-check node port");
                }
            }
            keep
        });
        self.failed.retain(|listen| targets.contains(listen));
        for listen in targets {
            if self.servers.contains_key(&listen) {
                continue;
            }
            let check = &wanted[&listen.0];
            let service = format!("{}/{}", check.namespace, check.name);
            match bind(listen) {
                Ok(listener) => {
                    self.failed.remove(&listen);
                    info!(port = listen.0, address = ?listen.1, %service, "serving health-check node port");
                    let task = tokio::spawn(serve(
                        listener,
                        listen.0,
                        self.checks.clone(),
                        self.health.clone(),
                        self.metrics.clone(),
                    ));
                    self.servers.insert(listen, task);
                }
                Err(error) => {
                    if self.failed.insert(listen) {
                        warn!(port = listen.0, address = ?listen.1, %service, %error, "cannot serve the health-check node port; retrying at the next sync");
                    }
                }
            }
        }
    }
}

impl Drop for HealthCheckServers {
    fn drop(&mut self) {
        for task in self.servers.values() {
            task.abort();
        }
    }
}

/// A listening socket: on the wildcard address both families if the node has IPv6, else IPv4.
fn bind((port, address): Listen) -> std::io::Result<TcpListener> {
    let socket = |addr: SocketAddr| -> std::io::Result<TcpListener> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        TcpListener::from_std(std_listener)
    };
    match address {
        Some(a) => socket(SocketAddr::new(a, port)),
        None => socket(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port))
            .or_else(|_| socket(SocketAddr::new(IpAddr::V4([0, 0, 0, 0].into()), port))),
    }
}

async fn serve(
    listener: TcpListener,
    port: u16,
    checks: Arc<RwLock<BTreeMap<u16, HealthCheck>>>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(port, %error, "accepting a health-check connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let checks = checks.clone();
        let health = health.clone();
        let metrics = metrics.clone();
        let service = service_fn(move |_request: Request<Incoming>| {
            let check = checks
                .read()
                .expect("health checks lock")
                .get(&port)
                .cloned();
            let healthy = health.healthy(Instant::now());
            let response = respond(check.as_ref(), healthy);
            metrics.health_check_request(response.status().as_u16());
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// kube-proxy's answer: 200 when the node has local endpoints and the proxy is healthy, else
/// 503; the body says which Service, how many endpoints, and whether the proxy is healthy.
pub fn respond(check: Option<&HealthCheck>, proxy_healthy: bool) -> Response<Full<Bytes>> {
    let Some(check) = check else {
        // The port is closing: the Service went away between the update and this request.
        let mut response = Response::new(Full::new(Bytes::from_static(b"no such service\n")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let body = serde_json::json!({
        "service": { "namespace": check.namespace, "name": check.name },
        "localEndpoints": check.local_endpoints,
        "serviceProxyHealthy": proxy_healthy,
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = if check.local_endpoints > 0 && proxy_healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    // Load balancers that weigh nodes by it (as kube-proxy sends it).
    headers.insert(
        HeaderName::from_static("x-load-balancing-endpoint-weight"),
        HeaderValue::from(check.local_endpoints),
    );
    response
}
