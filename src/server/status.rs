//! The Kubernetes `Status` body of every answer that cannot be a review: a
//! refused request, an unknown path, a request timeout, a shed review.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::limits;

/// A Kubernetes `Status` body.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody<'a> {
    api_version: &'static str,
    kind: &'static str,
    status: &'static str,
    message: &'a str,
    reason: &'a str,
    code: u16,
}

/// The `Status` body of a failure, as JSON.
pub(super) fn failure_json(status: StatusCode, reason: &str, message: &str) -> Vec<u8> {
    let body = StatusBody {
        api_version: "v1",
        kind: "Status",
        status: "Failure",
        message,
        reason,
        code: status.as_u16(),
    };
    // Only strings and numbers: serializing cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Answers `status` with a `Status` body.
pub(super) fn error_body(status: StatusCode, reason: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        failure_json(status, reason, message),
    )
        .into_response()
}

/// A 429 that tells the client when to retry.
pub(super) fn overloaded_body(message: &str) -> Response {
    let mut response = error_body(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(limits::RETRY_AFTER_SECONDS),
    );
    response
}
