//! The dashboard listener's pages (loopback only): `/dashboard`, and the
//! readiness report's `POST /report/run` and `GET /report`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::jiff::Timestamp;

use super::AppState;
use super::status::error_body;
use crate::dashboard;
use crate::report::task::{RUN_REQUEST_INTERVAL, RunRequest};

/// `GET /dashboard`.
pub(super) async fn dashboard(State(state): State<Arc<AppState>>) -> Response {
    let families = state.metrics.registry().gather();
    let recent = state.audit.recent().newest_first();
    let report = state.report.latest();
    let error = state.report.last_error();
    let policy = state.policy.load();
    let page = dashboard::render(&dashboard::View {
        families: &families,
        recent: &recent,
        report: report.as_deref(),
        report_running: state.report.is_running(),
        report_leading: state.report.is_leading(),
        report_error: error.as_deref().map(String::as_str),
        policy_hash: &policy.hash,
        now: Timestamp::now(),
    });
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                dashboard::content_security_policy(),
            ),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        page,
    )
        .into_response()
}

/// `POST /report/run`: 202 when a report is queued (it coalesces with one
/// pending), 429 with `Retry-After` within a minute of the last one taken,
/// 503 without a cluster or on a replica that does not hold the Lease.
pub(super) async fn run_report(State(state): State<Arc<AppState>>) -> Response {
    match state.report.request_run() {
        RunRequest::Queued => (
            StatusCode::ACCEPTED,
            "readiness report requested; GET /report or the metrics show it when done\n",
        )
            .into_response(),
        RunRequest::TooSoon(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut response = error_body(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                &format!(
                    "a readiness report was asked for less than {} s ago (each lists every pod of the cluster); ask again in {seconds} s",
                    RUN_REQUEST_INTERVAL.as_secs()
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
            response
        }
        RunRequest::NoTask => error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "no readiness report: unroot runs without a cluster",
        ),
        RunRequest::NotLeading => error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            NOT_LEADING,
        ),
    }
}

/// What a replica that does not hold the Lease says of the report.
const NOT_LEADING: &str = "the readiness report runs on the replica holding the Lease, and this one does not: ask that one (kubectl -n unroot get lease unroot-certs -o jsonpath='{.spec.holderIdentity}' names its pod)";

/// `GET /report`: the latest report as JSON (what `unroot report --format
/// json` prints), 503 before the first and on a replica that does not hold
/// the Lease.
pub(super) async fn report(State(state): State<Arc<AppState>>) -> Response {
    if let Some(report) = state.report.latest() {
        return axum::Json(&*report).into_response();
    }
    let why = match state.report.last_error() {
        Some(e) => format!("no readiness report yet; the last run failed: {e}"),
        None if state.report.is_running() && !state.report.is_leading() => NOT_LEADING.to_owned(),
        None if state.report.is_running() => {
            "no readiness report yet: the first one has not finished".to_owned()
        }
        None => "no readiness report: unroot runs without a cluster".to_owned(),
    };
    error_body(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", &why)
}
