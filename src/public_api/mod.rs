//! The seeds' HTTP APIs, served by the operator (`run --api-address`):
//! NeoAgent's `/public-api/backfills…` and the workflow scheduler's
//! `POST /api/schedules/{id}/backfill`, over TLS, each call authenticated
//! with a TokenReview and authorised with a SubjectAccessReview. They act
//! through the same Backfill objects and code paths as `kubectl
//! backfill`: a create is a Backfill, a rerun is the
//! `backfill.dev/rerun-failed` annotation, a dry run is the planner.
//!
//! The handlers are thin: the wire shapes and their mappings are
//! `seed`, the refusals `error`, the identities `auth`.

pub mod auth;
pub mod error;
mod handlers;
pub mod limit;
pub mod openapi;
pub mod seed;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use kube::Client;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::controller::OperatorClock;
use error::ApiError;
use limit::{Rate, RateLimiter};
use tls::{CertFiles, ReloadingCert, TlsListener};

/// The largest request body taken (413 beyond).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The most attempts one `POST /api/schedules/{id}/backfill` plans: a
/// longer backfill is split by `fromTime` and `count`.
pub const MAX_ATTEMPTS: usize = 10_000;
/// The largest page of `GET /public-api/backfills`.
pub const MAX_PAGE: u32 = 500;
/// How often the TLS files are read again.
pub const CERT_RELOAD_PERIOD: Duration = Duration::from_secs(10);

/// How the API is served.
#[derive(Clone, Debug)]
pub struct Config {
    pub address: String,
    /// None: plain HTTP, allowed on a loopback address only.
    pub tls: Option<CertFiles>,
    pub rate: Rate,
    /// How long a rerun call waits for the operator to make the child
    /// before it answers 202.
    pub rerun_wait: Duration,
}

/// What every handler shares.
pub struct ApiState {
    pub client: Client,
    /// The namespaces the operator watches (empty: all): where ids are
    /// looked up.
    pub namespaces: Vec<String>,
    pub limiter: RateLimiter,
    pub clock: OperatorClock,
    pub rerun_wait: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Recent TokenReview and SubjectAccessReview answers.
    pub reviews: auth::Reviews,
}

/// The routes, with the body limit.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route(
            "/public-api/backfills",
            get(handlers::list_backfills)
                .post(handlers::create_backfill)
                .fallback(handlers::method_not_allowed),
        )
        .route(
            "/public-api/backfills/{backfill_id}",
            get(handlers::get_backfill).fallback(handlers::method_not_allowed),
        )
        .route(
            "/public-api/backfills/{backfill_id}/rerun-failed",
            post(handlers::rerun_failed).fallback(handlers::method_not_allowed),
        )
        .route(
            "/api/schedules/{id}/backfill",
            post(handlers::schedule_backfill).fallback(handlers::method_not_allowed),
        )
        .route(
            "/public-api/openapi.json",
            get(handlers::openapi_document).fallback(handlers::method_not_allowed),
        )
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The client's address, over plain TCP or TLS: what the rate limit
/// counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// Whether `address` (host:port) is a loopback address.
pub fn is_loopback(address: &str) -> bool {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Binds the API's address, reads its certificate, and serves it in a
/// task of its own until the process ends.
pub async fn start(
    config: Config,
    client: Client,
    namespaces: Vec<String>,
    clock: OperatorClock,
    metrics: Arc<crate::metrics::Metrics>,
) -> crate::Result<()> {
    let startup =
        |what: String| crate::Error::Startup(format!("--api-address {}: {what}", config.address));
    if config.tls.is_none() && !is_loopback(&config.address) {
        return Err(startup(
            "plain HTTP is served on a loopback address only; give --api-tls-cert-file and --api-tls-key-file".into(),
        ));
    }
    let tcp = TcpListener::bind(&config.address)
        .await
        .map_err(|e| startup(e.to_string()))?;
    let local = tcp.local_addr().map_err(|e| startup(e.to_string()))?;
    let state = Arc::new(ApiState {
        client,
        namespaces,
        limiter: RateLimiter::new(config.rate),
        clock,
        rerun_wait: config.rerun_wait,
        metrics,
        reviews: auth::Reviews::default(),
    });
    let app = router(state);
    match config.tls {
        Some(files) => {
            let cert = Arc::new(ReloadingCert::new(files).map_err(|e| startup(e.to_string()))?);
            let tls = tls::server_config(cert.clone()).map_err(|e| startup(e.to_string()))?;
            let listener = TlsListener::new(tcp, tls).map_err(|e| startup(e.to_string()))?;
            tokio::spawn(cert.watch(CERT_RELOAD_PERIOD));
            info!(address = %local, "serving the public API over HTTPS");
            tokio::spawn(async move {
                if let Err(e) = axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<PeerAddr>(),
                )
                .await
                {
                    warn!(error = %e, "serving the public API failed");
                }
            });
        }
        None => {
            info!(address = %local, "serving the public API over plain HTTP (loopback only)");
            tokio::spawn(async move {
                if let Err(e) =
                    axum::serve(tcp, app.into_make_service_with_connect_info::<PeerAddr>()).await
                {
                    warn!(error = %e, "serving the public API failed");
                }
            });
        }
    }
    Ok(())
}

/// A request field that cannot be used is a 400 naming it.
impl From<seed::FieldError> for ApiError {
    fn from(e: seed::FieldError) -> Self {
        ApiError::bad_field(e.field, e.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_told_apart() {
        for a in ["127.0.0.1:8443", "[::1]:8443", "localhost:1", "127.0.0.2:0"] {
            assert!(is_loopback(a), "{a}");
        }
        for a in [
            "0.0.0.0:8443",
            "[::]:8443",
            "10.0.0.1:8443",
            "example.com:443",
        ] {
            assert!(!is_loopback(a), "{a}");
        }
    }
}
