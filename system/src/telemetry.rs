//! Logs (`tracing`) and the process-wide Prometheus recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The Prometheus recorder, installed on first use. Every component in the
/// process reports into it; `/metrics` renders it.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed; then ours just renders empty.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Structured logs to stderr; `RUST_LOG` filters, `RTMC_LOG_JSON=1` emits JSON.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lapin=warn,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("RTMC_LOG_JSON").is_ok_and(|v| v == "1") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}
