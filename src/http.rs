//! The operator's HTTP endpoints, an axum [`Router`]: Prometheus metrics
//! on `/metrics`, liveness on `/healthz` and readiness on `/readyz`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::handler::Handler;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get};
use kube::runtime::reflector::Store;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::api::Backfill;
use crate::metrics::Metrics;

/// The Backfill cache `/metrics` reads on each scrape: `None` until the
/// controllers run (a standby has none).
pub type BackfillSlot = Arc<Mutex<Option<Store<Backfill>>>>;

/// The content type of `/metrics`.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct Probes {
    metrics: Arc<Metrics>,
    backfills: BackfillSlot,
}

/// Binds the HTTP address and logs it (a port 0 gets a free one).
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(address).await?;
    info!(address = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    Ok(listener)
}

/// `/metrics`, `/healthz` and `/readyz`, each for GET and HEAD (any other
/// method or path is a 404).
pub fn router(metrics: Arc<Metrics>, backfills: BackfillSlot) -> Router {
    Router::new()
        .route("/metrics", probe(scrape))
        .route("/healthz", probe(healthz))
        .route("/readyz", probe(readyz))
        .fallback(not_found)
        .with_state(Probes { metrics, backfills })
}

/// Serves [`router`] on `listener` until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, backfills: BackfillSlot) {
    if let Err(e) = axum::serve(listener, router(metrics, backfills)).await {
        warn!(error = %e, "serving HTTP failed");
    }
}

/// GET (and so HEAD) of `handler`; a 404 for any other method.
fn probe<H, T>(handler: H) -> MethodRouter<Probes>
where
    H: Handler<T, Probes>,
    T: 'static,
{
    get(handler).fallback(not_found)
}

async fn scrape(State(probes): State<Probes>) -> impl IntoResponse {
    let store = probes
        .backfills
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        probes.metrics.render(store.as_ref()),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(probes): State<Probes>) -> (StatusCode, &'static str) {
    if probes.metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet\n")
    }
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found\n")
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// One request on a connection of its own: (status line, lower-cased
    /// headers, body).
    async fn request(address: SocketAddr, method: &str, path: &str) -> (String, String, String) {
        let mut s = TcpStream::connect(address).await.unwrap();
        s.write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        (status.to_string(), headers.to_lowercase(), body.to_string())
    }

    #[tokio::test]
    async fn probes_answer_over_http() {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        tokio::spawn(serve(listener, metrics.clone(), Default::default()));
        let get = |path| request(address, "GET", path);
        let head = |path| request(address, "HEAD", path);

        let (status, _, body) = get("/healthz").await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(body, "ok\n");

        let (status, _, body) = get("/readyz").await;
        assert!(status.starts_with("HTTP/1.1 503"), "{status}");
        assert_eq!(body, "caches not synced yet\n");
        assert!(head("/readyz").await.0.starts_with("HTTP/1.1 503"));
        metrics.ready.store(true, Ordering::Relaxed);
        let (status, _, body) = get("/readyz").await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(body, "ok\n");

        let content_type = format!("content-type: {}", OPENMETRICS.to_lowercase());
        let (status, headers, body) = get("/metrics").await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(headers.contains(&content_type), "{headers}");
        assert!(body.contains("backfill_operator_leader"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        // A scraper's query string is no part of the path.
        let (status, _, body) = get("/metrics?name[]=backfill_operator_leader").await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(body.contains("backfill_operator_leader"), "{body}");

        // HEAD: the same status and headers, no body.
        for path in ["/metrics", "/healthz", "/readyz"] {
            let (status, headers, body) = head(path).await;
            assert!(status.starts_with("HTTP/1.1 200"), "HEAD {path}: {status}");
            assert_eq!(body, "", "HEAD {path}");
            if path == "/metrics" {
                assert!(headers.contains(&content_type), "{headers}");
            }
        }

        for (method, path) in [("GET", "/nope"), ("HEAD", "/nope"), ("POST", "/metrics")] {
            let (status, _, body) = request(address, method, path).await;
            assert!(
                status.starts_with("HTTP/1.1 404"),
                "{method} {path}: {status}"
            );
            if method != "HEAD" {
                assert_eq!(body, "not found\n", "{method} {path}");
            }
        }
    }
}
