//! The review wrapper every webhook goes through: read and decode the
//! review, let the webhook's handler decide, then record the answer once
//! (metrics, the request's span, the policy hash, the audit log) and
//! encode it.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::{Span, info, warn};

use super::deadline::Deadline;
use super::handlers::Webhook;
use super::{AppState, Caller, POLICY_HASH, body, error_body, overloaded_body};
use crate::admission::{self, Decoded};
use crate::audit;

/// Answers one webhook call.
pub(super) async fn answer(webhook: Webhook, state: &AppState, request: Request) -> Response {
    let name = webhook.as_str();
    let _in_flight = InFlight::new(&state.metrics);
    let (parts, body) = request.into_parts();
    let caller = Caller::of(&parts.extensions);
    let deadline = Deadline::for_request(&parts.uri, Instant::now(), state.limits.review_timeout);
    // Held until the answer is sent: the body and what is decoded from it
    // live that long.
    let mut held = state.limits.bytes();
    let bytes =
        match body::read_within(&parts.headers, body, state.request_timeout, &mut held).await {
            Ok(b) => b,
            Err(rejection) => return reject(state, name, &rejection),
        };
    if let Some((behind, max)) = state.limits.too_far_behind(Instant::now()) {
        return reject(state, name, &body::behind(behind, max));
    }
    let Some(_deciding) = state.limits.try_review() else {
        return reject(
            state,
            name,
            &body::too_many_reviews(state.limits.max_concurrent_reviews()),
        );
    };
    let _large = if bytes.len() > super::limits::LARGE_REVIEW_BYTES {
        match state.limits.try_large_review() {
            Some(permit) => Some(permit),
            None => return reject(state, name, &body::another_large_review()),
        }
    } else {
        None
    };
    let started = Instant::now();
    let span = Span::current();
    let review = match admission::decode(&bytes) {
        Err(e) => {
            state
                .metrics
                .rejected_requests
                .with_label_values(&[name, "malformed"])
                .inc();
            warn!(error = %e, "refused a request that is not an AdmissionReview");
            return error_body(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string());
        }
        Ok(Decoded::Malformed {
            api_version,
            uid,
            message,
        }) => {
            span.record("uid", uid.as_str());
            span.record("outcome", "error");
            warn!(%message, "malformed review");
            state
                .metrics
                .rejected_requests
                .with_label_values(&[name, "malformed"])
                .inc();
            let response = admission::Response::deny(&uid, 400, "BadRequest", message);
            return encoded(admission::encode(api_version, &response));
        }
        Ok(Decoded::Review(review)) => review,
    };
    let req = &review.request;
    span.record("uid", req.uid.as_str());
    span.record("namespace", req.namespace());
    span.record("name", req.name());
    span.record("operation", req.operation.as_str());
    span.record("kind", req.target().as_str());
    // The snapshot that decides is the one whose hash the answer carries,
    // even if a reload lands while the handler runs.
    let policy = state.policy.load_full();
    let mut decision = webhook.decide(state, &policy, req, caller, deadline).await;
    decision
        .response
        .audit_annotations
        .insert(POLICY_HASH.to_owned(), policy.hash.clone());
    let response = &decision.response;
    let outcome = response.outcome();
    span.record("outcome", outcome);
    state.metrics.record(name, req, &decision);
    let elapsed = started.elapsed();
    state
        .metrics
        .admission_duration
        .with_label_values(&[name])
        .observe(elapsed.as_secs_f64());
    state.audit.record(&decision, || {
        audit::Record::new(name, req, &decision, &policy.hash, elapsed)
            .with_authenticated(caller.is_authenticated())
    });
    if let Some(status) = response.status.as_ref() {
        info!(outcome, message = %status.message, "answered");
    } else {
        info!(outcome, warnings = response.warnings.len(), "answered");
    }
    encoded(admission::encode(review.api_version, response))
}

/// Counts a request refused before it was a review, and answers it.
fn reject(state: &AppState, name: &str, rejection: &body::Rejection) -> Response {
    state
        .metrics
        .rejected_requests
        .with_label_values(&[name, rejection.label])
        .inc();
    if rejection.status == StatusCode::TOO_MANY_REQUESTS {
        tracing::debug!(reason = rejection.label, "shed a request: overloaded");
        return overloaded_body(&rejection.message);
    }
    error_body(rejection.status, rejection.reason, &rejection.message)
}

fn encoded(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// Counts a review in `unroot_admission_in_flight` while it lives.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn new(metrics: &crate::metrics::Metrics) -> Self {
        metrics.in_flight.inc();
        Self(metrics.in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
