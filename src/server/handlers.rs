//! One handler per webhook: the async steps each needs around the pure core.

mod mutate;
mod namespace;
mod validate;

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::Uri;
use axum::response::Response;
use tracing::field::Empty;

use super::AppState;
use super::review;
use crate::admission::{self, Decision};
use crate::policy::Snapshot;

/// The webhooks unroot serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Webhook {
    /// `/mutate`: pods hardened on CREATE, ephemeral containers on add.
    Mutate,
    /// `/validate`: Pod Security for pods and workloads, the policy
    /// ConfigMap check.
    Validate,
}

impl Webhook {
    /// The metric label and span field.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutate => "mutate",
            Self::Validate => "validate",
        }
    }

    /// Decides one request with `policy`. `deadline` is when the API server
    /// stops waiting for the answer, if it said (see [`deadline`]).
    pub(super) async fn decide(
        self,
        state: &AppState,
        policy: &Snapshot,
        request: &admission::Request<'_>,
        deadline: Option<Instant>,
    ) -> Decision {
        match self {
            Self::Mutate => mutate::decide(state, policy, request).await,
            Self::Validate => validate::decide(state, policy, request, deadline).await,
        }
    }
}

/// When the API server stops waiting for an answer: `arrived` plus the
/// webhook URL's `?timeout=`, a Go duration (`10s`) the API server appends
/// from the webhook's `timeoutSeconds`. `None` without one, or when it does
/// not parse (then only unroot's own limits apply).
pub(super) fn deadline(uri: &Uri, arrived: Instant) -> Option<Instant> {
    let value = uri
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("timeout="))?;
    arrived.checked_add(parse_go_duration(value)?)
}

/// A Go `time.Duration` string: `0`, or decimal numbers each with a unit
/// (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), e.g. `10s`, `1m30s`, `1.5s`.
/// Negative durations are refused.
fn parse_go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return None;
    }
    let mut seconds = 0.0_f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_end);
        if number.is_empty() || number == "." {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        seconds += value * scale;
        rest = tail;
    }
    Duration::try_from_secs_f64(seconds).ok()
}

/// `POST /mutate`.
#[tracing::instrument(name = "review", skip_all, fields(webhook = "mutate", uid = Empty, kind = Empty, namespace = Empty, name = Empty, operation = Empty, outcome = Empty))]
pub(super) async fn mutate(State(state): State<AppState>, request: Request) -> Response {
    review::answer(Webhook::Mutate, &state, request).await
}

/// `POST /validate`.
#[tracing::instrument(name = "review", skip_all, fields(webhook = "validate", uid = Empty, kind = Empty, namespace = Empty, name = Empty, operation = Empty, outcome = Empty))]
pub(super) async fn validate(State(state): State<AppState>, request: Request) -> Response {
    review::answer(Webhook::Validate, &state, request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let cases = [
            ("10s", Some(Duration::from_secs(10))),
            ("1m0s", Some(Duration::from_secs(60))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("500ms", Some(Duration::from_millis(500))),
            ("0", Some(Duration::ZERO)),
            ("2h", Some(Duration::from_secs(7200))),
            ("", None),
            ("10", None),
            ("-1s", None),
            ("1d", None),
            ("s", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_go_duration(text), want, "{text}");
        }
    }

    #[test]
    fn deadline_comes_from_the_timeout_parameter() {
        let now = Instant::now();
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        assert_eq!(
            deadline(&uri("/validate?timeout=10s"), now),
            Some(now + Duration::from_secs(10))
        );
        assert_eq!(
            deadline(&uri("/validate?x=1&timeout=200ms"), now),
            Some(now + Duration::from_millis(200))
        );
        assert_eq!(deadline(&uri("/validate"), now), None);
        assert_eq!(deadline(&uri("/validate?timeout=soon"), now), None);
    }
}
