//! What a webhook request must be before its body is read as a review: JSON,
//! at most [`MAX_BODY_BYTES`], arriving within the request timeout, and
//! within the replica's budget of buffered bytes.
//!
//! A body that is refused part-way (too large, or over the budget) is read
//! on and thrown away for a while (at most [`LINGER_BYTES`] within
//! [`LINGER_TIME`]) before the answer goes out: a client that writes its
//! whole body before it reads (Python's `http.client`, many others) then
//! gets the 413 instead of a connection reset.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt as _;

use super::MAX_BODY_BYTES;
use super::limits;

/// Most bytes of a refused body read and thrown away before answering.
pub const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// Longest time spent reading a refused body before answering.
pub const LINGER_TIME: Duration = Duration::from_secs(5);

/// A refused body whose client sends nothing for this long is given up on
/// (the client has stopped writing and may be waiting for the answer).
pub const LINGER_IDLE: Duration = Duration::from_millis(500);

/// Why a request was refused before it was read as a review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `Status` reason, e.g. `RequestEntityTooLarge`.
    pub reason: &'static str,
    /// The metric label, e.g. `too_large`.
    pub label: &'static str,
    /// What the client is told.
    pub message: String,
}

fn too_large() -> Rejection {
    Rejection {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        reason: "RequestEntityTooLarge",
        label: "too_large",
        message: format!(
            "request body is larger than the {} MiB limit",
            MAX_BODY_BYTES / (1024 * 1024)
        ),
    }
}

/// Why a request is shed with 429 before it is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overload {
    /// The replica holds as many request bytes as it may.
    Bytes,
    /// This many reviews are being decided already.
    Reviews(usize),
    /// The runtime is this far behind (more than the second, `--max-lag`):
    /// its CPUs do not keep up, and a review taken on now would wait at
    /// least that long.
    Behind(Duration, Duration),
    /// Another review over [`limits::LARGE_REVIEW_BYTES`] is being decided.
    AnotherLargeReview,
    /// This many reviews over [`limits::OFFLOAD_BYTES`] were being decided
    /// (each on a thread of its own) until this one's deadline.
    Offloaded(usize),
}

impl std::fmt::Display for Overload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Bytes => f.write_str("too many request bytes are being handled at once"),
            Self::Reviews(max) => write!(f, "{max} reviews are being decided already"),
            Self::Behind(behind, max) => write!(
                f,
                "its CPU is {} ms behind (--max-lag is {} ms)",
                behind.as_millis(),
                max.as_millis()
            ),
            Self::AnotherLargeReview => write!(
                f,
                "another review over {} MiB is being decided, and one is decided at a time",
                limits::LARGE_REVIEW_BYTES / (1024 * 1024)
            ),
            Self::Offloaded(max) => write!(
                f,
                "every place for reviews over {} KiB ({max}) was taken until this review's deadline",
                limits::OFFLOAD_BYTES / 1024
            ),
        }
    }
}

/// Refused with 429 because of `why`; the client is told when to retry.
#[must_use]
pub fn overloaded(why: Overload) -> Rejection {
    Rejection {
        status: StatusCode::TOO_MANY_REQUESTS,
        reason: "TooManyRequests",
        label: "overloaded",
        message: format!(
            "unroot is overloaded: {why}; retry in {} s",
            limits::RETRY_AFTER_SECONDS
        ),
    }
}

/// Reads the body of a webhook call, refusing what is not a JSON review.
/// Without a budget of buffered bytes (the null responder's way).
pub async fn read(headers: &HeaderMap, body: Body, timeout: Duration) -> Result<Bytes, Rejection> {
    read_body(headers, body, timeout, None).await
}

/// Reads the body of a webhook call, refusing what is not a JSON review,
/// and taking every byte it holds from `budget` (refused with 429 when the
/// budget runs dry: the replica holds too many bytes already).
pub async fn read_within(
    headers: &HeaderMap,
    body: Body,
    timeout: Duration,
    budget: &mut limits::ByteBudget,
) -> Result<Bytes, Rejection> {
    read_body(headers, body, timeout, Some(budget)).await
}

async fn read_body(
    headers: &HeaderMap,
    mut body: Body,
    timeout: Duration,
    mut budget: Option<&mut limits::ByteBudget>,
) -> Result<Bytes, Rejection> {
    check_content_type(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        linger(body).await;
        return Err(too_large());
    }
    // The whole declared body is taken at once: a replica over its budget
    // refuses before reading a byte.
    if let (Some(n), Some(budget)) = (declared, budget.as_deref_mut())
        && !budget.take(n)
    {
        linger(body).await;
        return Err(overloaded(Overload::Bytes));
    }
    let deadline = tokio::time::Instant::from_std(Instant::now() + timeout);
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0_usize;
    while let Some(data) = next_data(&mut body, deadline, timeout).await? {
        total += data.len();
        if total > MAX_BODY_BYTES {
            linger(body).await;
            return Err(too_large());
        }
        if let Some(budget) = budget.as_deref_mut()
            && total > budget.held()
            && !budget.take(total - budget.held())
        {
            linger(body).await;
            return Err(overloaded(Overload::Bytes));
        }
        chunks.push(data);
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut all = Vec::with_capacity(total);
            for chunk in &chunks {
                all.extend_from_slice(chunk);
            }
            Bytes::from(all)
        }
    })
}

/// Refuses anything but `application/json`.
fn check_content_type(headers: &HeaderMap) -> Result<(), Rejection> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(Rejection {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        reason: "UnsupportedMediaType",
        label: "unsupported_media_type",
        message: format!("content type {content_type:?} is not supported: send application/json"),
    })
}

/// The body's next data frame (trailers skipped), `None` at its end; the
/// whole body must arrive by `deadline` (`timeout` after the read began).
async fn next_data(
    body: &mut Body,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<Option<Bytes>, Rejection> {
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(Rejection {
                    status: StatusCode::REQUEST_TIMEOUT,
                    reason: "Timeout",
                    label: "body_timeout",
                    message: format!(
                        "request body did not arrive within {} s",
                        timeout.as_secs_f64()
                    ),
                });
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => {
                return Err(Rejection {
                    status: StatusCode::BAD_REQUEST,
                    reason: "BadRequest",
                    label: "malformed",
                    message: format!("failed to read request body: {e}"),
                });
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
}

/// Reads what is left of a refused body and throws it away, for at most
/// [`LINGER_BYTES`] and [`LINGER_TIME`], and until the client pauses for
/// [`LINGER_IDLE`], so that a client still writing it can then read the
/// answer.
async fn linger(mut body: Body) {
    let stop = tokio::time::Instant::now() + LINGER_TIME;
    let mut left = LINGER_BYTES;
    loop {
        let idle = tokio::time::Instant::now() + LINGER_IDLE;
        let Ok(Some(Ok(frame))) = tokio::time::timeout_at(stop.min(idle), body.frame()).await
        else {
            return;
        };
        if let Some(data) = frame.data_ref() {
            if data.len() >= left {
                return;
            }
            left -= data.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str, length: Option<usize>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        if let Some(n) = length {
            h.insert(header::CONTENT_LENGTH, n.into());
        }
        h
    }

    #[tokio::test]
    async fn bodies_are_checked_before_they_are_read() {
        let t = Duration::from_secs(1);
        let ok = read(
            &headers("application/json; charset=utf-8", None),
            Body::from("{}"),
            t,
        )
        .await;
        assert_eq!(ok.unwrap(), Bytes::from("{}"));
        let media = read(&headers("text/plain", None), Body::from("{}"), t).await;
        assert_eq!(media.unwrap_err().label, "unsupported_media_type");
        let declared = read(
            &headers("application/json", Some(MAX_BODY_BYTES + 1)),
            Body::empty(),
            t,
        )
        .await;
        assert_eq!(declared.unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
        let big = read(
            &headers("application/json", None),
            Body::from(vec![b' '; MAX_BODY_BYTES + 1]),
            t,
        )
        .await;
        assert_eq!(big.unwrap_err().label, "too_large");
    }
}
