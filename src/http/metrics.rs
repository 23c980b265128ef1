//! Prometheus metrics: counters kept with atomics, rendered in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

/// Series a dialect adds to `/metrics`, given the request's headers (its own guard
/// decides whether this request sees them): `None` for none. Called off the async
/// workers, so it may read the state store and the index.
pub type MetricsExtension =
    std::sync::Arc<dyn Fn(&axum::http::HeaderMap) -> Option<String> + Send + Sync>;

#[derive(Default)]
pub struct Metrics {
    extensions: Mutex<Vec<MetricsExtension>>,
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub bytes_uploaded: AtomicU64,
    pub bytes_downloaded: AtomicU64,
    pub backups_committed: AtomicU64,
    pub uploads_in_flight: AtomicU64,
    /// Request body bytes received by `/v1/sessions` (chunk uploads and appends): what a
    /// client-chunked backup sent over the network.
    pub session_bytes_received: AtomicU64,
}

impl Metrics {
    /// Adds a dialect's series to every later `/metrics` answer.
    pub fn extend(&self, extension: MetricsExtension) {
        self.extensions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(extension);
    }

    pub fn extensions(&self) -> Vec<MetricsExtension> {
        self.extensions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn count_request(&self, method: &str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests.entry((method.to_string(), status)).or_insert(0) += 1;
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The exposition text, with the job counts and the scheduled tasks passed in.
    pub fn render(
        &self,
        jobs: &BTreeMap<&'static str, u64>,
        scheduled: &[crate::service::scheduler::ScheduledView],
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP stowage_http_requests_total HTTP requests answered."
        );
        let _ = writeln!(out, "# TYPE stowage_http_requests_total counter");
        for ((method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "stowage_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        let counters = [
            (
                "stowage_upload_bytes_total",
                "Request body bytes ingested.",
                &self.bytes_uploaded,
                "counter",
            ),
            (
                "stowage_session_bytes_total",
                "Chunk and append bytes received by backup sessions.",
                &self.session_bytes_received,
                "counter",
            ),
            (
                "stowage_download_bytes_total",
                "Backup bytes served.",
                &self.bytes_downloaded,
                "counter",
            ),
            (
                "stowage_backups_committed_total",
                "Backups committed.",
                &self.backups_committed,
                "counter",
            ),
            (
                "stowage_uploads_in_flight",
                "Uploads being ingested now.",
                &self.uploads_in_flight,
                "gauge",
            ),
        ];
        for (name, help, value, kind) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP stowage_jobs Jobs remembered, by status.\n# TYPE stowage_jobs gauge"
        );
        for (status, n) in jobs {
            let _ = writeln!(out, "stowage_jobs{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP stowage_scheduled_runs_total Runs of each scheduled task.\n# TYPE stowage_scheduled_runs_total counter"
        );
        for task in scheduled {
            let _ = writeln!(
                out,
                "stowage_scheduled_runs_total{{task=\"{}\"}} {}",
                task.name, task.runs
            );
        }
        let _ = writeln!(
            out,
            "# HELP stowage_scheduled_failures_total Failed runs of each scheduled task.\n# TYPE stowage_scheduled_failures_total counter"
        );
        for task in scheduled {
            let _ = writeln!(
                out,
                "stowage_scheduled_failures_total{{task=\"{}\"}} {}",
                task.name, task.failures
            );
        }
        out
    }
}

/// Middleware counting every answered request by method and status.
pub async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    let response = next.run(request).await;
    state
        .metrics
        .count_request(&method, response.status().as_u16());
    response
}
