//! The review wrapper every webhook goes through: read the body within the
//! replica's limits, decode the review, let the webhook's handler decide,
//! then record the answer once (metrics, the policy hash, the audit log)
//! and encode it.
//!
//! A review over [`OFFLOAD_BYTES`] is decoded, decided and encoded on a
//! thread of its own at a lower priority ([`offload`]), so that the async
//! workers keep answering small reviews (and the lag probe stays on time)
//! while it is decided, on one CPU as on many.
//!
//! Quiet per request: the audit line is the record of every decision. The
//! request's span (`uid`, `namespace`, `name`, `operation`, `kind`,
//! `outcome`) and the `answered` line are at debug; a denial is logged at
//! info only when there is no audit log to hold it. Errors keep their
//! levels, with the request's uid in their own fields.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::field::Empty;
use tracing::{Instrument as _, Span, debug, debug_span, info, warn};

use super::deadline::Deadline;
use super::handlers::Webhook;
use super::limits::OFFLOAD_BYTES;
use super::offload;
use super::{AppState, Caller, POLICY_HASH, body, error_body, overloaded_body};
use crate::admission::{self, Decoded};
use crate::audit;

/// Answers one webhook call.
pub(super) async fn answer(webhook: Webhook, state: Arc<AppState>, request: Request) -> Response {
    let name = webhook.as_str();
    let in_flight = InFlight::new(&state.metrics);
    let (parts, body) = request.into_parts();
    let caller = Caller::of(&parts.extensions);
    let deadline = Deadline::for_request(&parts.uri, Instant::now(), state.limits.review_timeout);
    // Held until the answer is made: the body and what is decoded from it
    // live that long.
    let mut held = state.limits.bytes();
    let bytes =
        match body::read_within(&parts.headers, body, state.request_timeout, &mut held).await {
            Ok(b) => b,
            Err(rejection) => return reject(&state, name, &rejection),
        };
    if let Some((behind, max)) = state.limits.too_far_behind(Instant::now()) {
        return reject(&state, name, &body::behind(behind, max));
    }
    let Some(deciding) = state.limits.try_review() else {
        return reject(
            &state,
            name,
            &body::too_many_reviews(state.limits.max_concurrent_reviews()),
        );
    };
    let large = if bytes.len() > super::limits::LARGE_REVIEW_BYTES {
        match state.limits.try_large_review() {
            Some(permit) => Some(permit),
            None => return reject(&state, name, &body::another_large_review()),
        }
    } else {
        None
    };
    let span = debug_span!(
        "review",
        webhook = name,
        uid = Empty,
        kind = Empty,
        namespace = Empty,
        name = Empty,
        operation = Empty,
        outcome = Empty
    );
    let started = Instant::now();
    let review = Review {
        webhook,
        caller,
        deadline,
        started,
        span: span.clone(),
    };
    if bytes.len() <= OFFLOAD_BYTES {
        let _limits = (deciding, large, held, in_flight);
        return decide(&review, &state, &bytes).instrument(span).await;
    }
    // A few at a time; waiting holds no worker.
    let waited = tokio::time::timeout_at(deadline.at().into(), state.limits.offload_place()).await;
    let Ok(Some(place)) = waited else {
        return reject(
            &state,
            name,
            &body::too_many_offloaded(state.limits.max_offloaded()),
        );
    };
    let offloaded = offload::run(async move {
        // Given back when the answer is made, even if the client is gone.
        let _limits = (place, deciding, large, held, in_flight);
        decide(&review, &state, &bytes).instrument(span).await
    });
    match offloaded.await {
        Ok(response) => response,
        Err(e) => {
            warn!(webhook = name, error = %e, "failed to decide a large review");
            error_body(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &format!("Internal error occurred: {e}"),
            )
        }
    }
}

/// One review's facts from before its body is decoded.
struct Review {
    webhook: Webhook,
    caller: Caller,
    deadline: Deadline,
    /// When its body had been read and it was taken on.
    started: Instant,
    /// Its span (at debug, so usually disabled).
    span: Span,
}

/// Decodes the review in `bytes`, decides it, records and encodes the
/// answer.
async fn decide(review: &Review, state: &AppState, bytes: &Bytes) -> Response {
    let &Review {
        webhook,
        caller,
        deadline,
        started,
        ref span,
    } = review;
    let name = webhook.as_str();
    let review = match admission::decode(bytes) {
        Err(e) => {
            state.metrics.count_rejected(name, "malformed");
            warn!(webhook = name, error = %e, "refused a request that is not an AdmissionReview");
            return error_body(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string());
        }
        Ok(Decoded::Malformed {
            api_version,
            uid,
            message,
        }) => {
            span.record("uid", uid.as_str());
            span.record("outcome", "error");
            warn!(webhook = name, %uid, %message, "malformed review");
            state.metrics.count_rejected(name, "malformed");
            let response = admission::Response::deny(&uid, 400, "BadRequest", message);
            return encoded(admission::encode(api_version, &response));
        }
        Ok(Decoded::Review(review)) => review,
    };
    let req = &review.request;
    if !span.is_disabled() {
        span.record("uid", req.uid.as_str());
        span.record("namespace", req.namespace());
        span.record("name", req.name());
        span.record("operation", req.operation.as_str());
        span.record("kind", req.target().as_str());
    }
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
    state.metrics.observe_duration(name, elapsed.as_secs_f64());
    state.audit.record(&decision, || {
        audit::Record::new(name, req, &decision, &policy.hash, elapsed)
            .with_authenticated(caller.is_authenticated())
    });
    match response.status.as_ref() {
        // The audit log holds every denial; without it, this line does.
        Some(status) if !response.allowed && !state.audit.has_sink() => {
            info!(webhook = name, uid = %req.uid, namespace = req.namespace(), name = req.name(), outcome, status_message = %status.message, "denied");
        }
        Some(status) => debug!(outcome, status_message = %status.message, "answered"),
        None => debug!(outcome, warnings = response.warnings.len(), "answered"),
    }
    encoded(admission::encode(review.api_version, response))
}

/// Counts a request refused before it was a review, and answers it.
fn reject(state: &AppState, name: &str, rejection: &body::Rejection) -> Response {
    state.metrics.count_rejected(name, rejection.label);
    if rejection.status == StatusCode::TOO_MANY_REQUESTS {
        debug!(
            webhook = name,
            reason = rejection.label,
            "shed a request: overloaded"
        );
        return overloaded_body(&rejection.message);
    }
    error_body(rejection.status, rejection.reason, &rejection.message)
}

fn encoded(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// Counts a review in `unroot_admission_requests_in_flight` while it lives.
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
