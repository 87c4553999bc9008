//! The HTTP endpoints the kubelet and Prometheus poll: `/healthz`, `/livez`, `/readyz` and
//! `/metrics`.
//!
//! Kept to hyper's bare connection API: four fixed paths need no router, and the server must
//! stay alive on a node whose API server is unreachable, so it depends on nothing but the
//! shared [`Health`] and [`Metrics`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::health::Health;
use crate::metrics::{self, Metrics};

/// How long open connections get to finish after shutdown before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `/healthz` (200, or 503 when a change has waited more than twice the sync period —
/// see [`Health::healthy`]), `/livez` (200 while the process answers), `/readyz` (200 after
/// the first sync, else 503) and, when `metrics` is given, `/metrics` on `listener` until
/// `shutdown` resolves. Metrics name every service and its traffic, so they are served apart
/// (on loopback by default) from the health endpoints the network may reach.
///
/// Errors accepting a connection are logged and do not stop the server: running out of file
/// descriptors for a moment must not take health checks down for good.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    metrics: Option<Arc<Metrics>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "serving health and metrics");
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(address = %local, %error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let health = health.clone();
        let metrics = metrics.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let response = respond(&request, &health, metrics.as_deref());
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!(address = %local, "HTTP connections still open at shutdown were dropped");
        }
    }
    Ok(())
}

/// The answer to one request; pure apart from reading the clock.
fn respond<B>(
    request: &Request<B>,
    health: &Health,
    metrics: Option<&Metrics>,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    }
    match request.uri().path() {
        "/healthz" => {
            let now = Instant::now();
            if health.healthy(now) {
                text(StatusCode::OK, "ok\n".into())
            } else {
                let waited = health.waiting(now).unwrap_or_default();
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "a change has waited {:.1}s without being applied\n",
                        waited.as_secs_f64()
                    ),
                )
            }
        }
        "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            if health.ready() {
                text(StatusCode::OK, "ok\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no sync has completed yet\n".into(),
                )
            }
        }
        "/metrics" if metrics.is_some() => {
            let metrics = metrics.expect("checked by the guard");
            let mut response = Response::new(Full::new(Bytes::from(metrics.encode())));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
