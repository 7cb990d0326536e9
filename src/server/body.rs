//! What a webhook request must be before its body is read as a review: JSON,
//! at most [`MAX_BODY_BYTES`], arriving within the request timeout.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt as _;

use super::MAX_BODY_BYTES;

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

/// Reads the body of a webhook call, refusing what is not a JSON review.
pub async fn read(headers: &HeaderMap, body: Body, timeout: Duration) -> Result<Bytes, Rejection> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(Rejection {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            reason: "UnsupportedMediaType",
            label: "unsupported_media_type",
            message: format!(
                "content type {content_type:?} is not supported: send application/json"
            ),
        });
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(Rejection {
            status: StatusCode::BAD_REQUEST,
            reason: "BadRequest",
            label: "malformed",
            message: format!("failed to read request body: {e}"),
        }),
        Err(_) => Err(Rejection {
            status: StatusCode::REQUEST_TIMEOUT,
            reason: "Timeout",
            label: "body_timeout",
            message: format!(
                "request body did not arrive within {} s",
                timeout.as_secs_f64()
            ),
        }),
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
