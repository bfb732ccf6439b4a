//! The Prometheus metrics endpoint (`[metrics] listen`): `GET /metrics` in the text format.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::recording::RecorderHealth;

/// Binds `addr` and serves the metrics until `shutdown` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<RecorderHealth>,
    shutdown: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics at http://{addr}/metrics");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(health);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "metrics endpoint failed");
        }
    }))
}

async fn metrics(State(health): State<Arc<RecorderHealth>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        health.prometheus(),
    )
}
