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

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;
use tracing::field::Empty;
use tracing::{Instrument as _, Span, debug, debug_span, info, warn};

use super::body::{Overload, Rejection};
use super::deadline::Deadline;
use super::handlers::Webhook;
use super::limits::ByteBudget;
use super::limits::OFFLOAD_BYTES;
use super::offload;
use super::status::{error_body, overloaded_body};
use super::{AppState, Caller, POLICY_HASH, body};
use crate::admission::{self, Decoded};
use crate::audit;

/// Answers one webhook call: admission control, then the review decided
/// here or, when large, on a thread of its own.
pub(super) async fn answer(webhook: Webhook, state: Arc<AppState>, request: Request) -> Response {
    let name = webhook.as_str();
    let in_flight = InFlight::new(&state.metrics);
    let (parts, body) = request.into_parts();
    let caller = Caller::of(&parts.extensions);
    let deadline = Deadline::for_request(&parts.uri, Instant::now(), state.limits.review_timeout);
    let admitted = match admit(&state, &parts.headers, body).await {
        Ok(admitted) => admitted,
        Err(rejection) => return reject(&state, name, &rejection),
    };
    let review = Review::new(webhook, caller, deadline);
    if admitted.bytes.len() <= OFFLOAD_BYTES {
        let span = review.span.clone();
        let _held = (admitted.held, in_flight);
        return decide(&review, &state, &admitted.bytes)
            .instrument(span)
            .await;
    }
    decide_offloaded(review, state, admitted, in_flight).await
}

/// A request taken on: its body, and the limits it holds until its answer
/// is made (the body and what is decoded from it live that long).
struct Admitted {
    bytes: Bytes,
    held: Held,
}

/// The budget and permits a review holds while it is decided.
type Held = (
    OwnedSemaphorePermit,
    Option<OwnedSemaphorePermit>,
    ByteBudget,
);

/// Admission control: the body read within the budget of buffered bytes,
/// then the lag, the review and the large-review limits, in that order.
async fn admit(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Admitted, Rejection> {
    let mut budget = state.limits.bytes();
    let bytes = body::read_within(headers, body, state.request_timeout, &mut budget).await?;
    if let Some((behind, max)) = state.limits.too_far_behind(Instant::now()) {
        return Err(body::overloaded(Overload::Behind(behind, max)));
    }
    let deciding = state.limits.try_review().ok_or_else(|| {
        body::overloaded(Overload::Reviews(state.limits.max_concurrent_reviews()))
    })?;
    let large = if bytes.len() > super::limits::LARGE_REVIEW_BYTES {
        let permit = state.limits.try_large_review();
        Some(permit.ok_or_else(|| body::overloaded(Overload::AnotherLargeReview))?)
    } else {
        None
    };
    Ok(Admitted {
        bytes,
        held: (deciding, large, budget),
    })
}

/// Decides a review over [`OFFLOAD_BYTES`] on a thread of its own, once a
/// place is free before its deadline (waiting holds no worker).
async fn decide_offloaded(
    review: Review,
    state: Arc<AppState>,
    admitted: Admitted,
    in_flight: InFlight,
) -> Response {
    let name = review.webhook.as_str();
    let waited =
        tokio::time::timeout_at(review.deadline.at().into(), state.limits.offload_place()).await;
    let Ok(Some(place)) = waited else {
        let max = state.limits.max_offloaded();
        return reject(&state, name, &body::overloaded(Overload::Offloaded(max)));
    };
    let offloaded = offload::run(async move {
        // Given back when the answer is made, even if the client is gone.
        let _held = (place, admitted.held, in_flight);
        let span = review.span.clone();
        decide(&review, &state, &admitted.bytes)
            .instrument(span)
            .await
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

impl Review {
    fn new(webhook: Webhook, caller: Caller, deadline: Deadline) -> Self {
        let span = debug_span!(
            "review",
            webhook = webhook.as_str(),
            uid = Empty,
            kind = Empty,
            namespace = Empty,
            name = Empty,
            operation = Empty,
            outcome = Empty
        );
        Self {
            webhook,
            caller,
            deadline,
            started: Instant::now(),
            span,
        }
    }
}

/// Decodes the review in `bytes`, decides it, records and encodes the
/// answer.
async fn decide(review: &Review, state: &AppState, bytes: &Bytes) -> Response {
    let decoded = match decode(review, state, bytes) {
        Ok(decoded) => decoded,
        Err(answer) => return *answer,
    };
    let req = &decoded.request;
    if !review.span.is_disabled() {
        review.span.record("uid", req.uid.as_str());
        review.span.record("namespace", req.namespace());
        review.span.record("name", req.name());
        review.span.record("operation", req.operation.as_str());
        review.span.record("kind", req.target().as_str());
    }
    // The snapshot that decides is the one whose hash the answer carries,
    // even if a reload lands while the handler runs.
    let policy = state.policy.load_full();
    let mut decision = review
        .webhook
        .decide(state, &policy, req, review.caller, review.deadline)
        .await;
    decision
        .response
        .audit_annotations
        .insert(POLICY_HASH.to_owned(), policy.hash.clone());
    record(review, state, req, &decision, &policy.hash);
    encoded(admission::encode(decoded.api_version, &decision.response))
}

/// Decodes the review; what is not one is answered here.
fn decode<'a>(
    review: &Review,
    state: &AppState,
    bytes: &'a Bytes,
) -> Result<admission::Review<'a>, Box<Response>> {
    let name = review.webhook.as_str();
    match admission::decode(bytes) {
        Err(e) => {
            state.metrics.count_rejected(name, "malformed");
            warn!(webhook = name, error = %e, "refused a request that is not an AdmissionReview");
            Err(Box::new(error_body(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &e.to_string(),
            )))
        }
        Ok(Decoded::Malformed {
            api_version,
            uid,
            message,
        }) => {
            review.span.record("uid", uid.as_str());
            review.span.record("outcome", "error");
            warn!(webhook = name, %uid, %message, "malformed review");
            state.metrics.count_rejected(name, "malformed");
            let response = admission::Response::deny(&uid, 400, "BadRequest", message);
            Err(Box::new(encoded(admission::encode(api_version, &response))))
        }
        Ok(Decoded::Review(decoded)) => Ok(decoded),
    }
}

/// Records the answer once: the span's outcome, the metrics, the audit log,
/// and the log line.
fn record(
    review: &Review,
    state: &AppState,
    req: &admission::Request<'_>,
    decision: &admission::Decision,
    policy_hash: &str,
) {
    let name = review.webhook.as_str();
    let response = &decision.response;
    let outcome = response.outcome();
    review.span.record("outcome", outcome);
    state.metrics.record(name, req, decision);
    let elapsed = review.started.elapsed();
    state.metrics.observe_duration(name, elapsed.as_secs_f64());
    state.audit.record(decision, || {
        audit::Record::new(name, req, decision, policy_hash, elapsed)
            .with_authenticated(review.caller.is_authenticated())
    });
    match response.status.as_ref() {
        // The audit log holds every denial; without it, this line does.
        Some(status) if !response.allowed && !state.audit.has_sink() => {
            info!(webhook = name, uid = %req.uid, namespace = req.namespace(), name = req.name(), outcome, status_message = %status.message, "denied");
        }
        Some(status) => debug!(outcome, status_message = %status.message, "answered"),
        None => debug!(outcome, warnings = response.warnings.len(), "answered"),
    }
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
