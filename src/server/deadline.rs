//! The deadline of one review: the API server's `?timeout=` or
//! `--review-timeout`, whichever is shorter, minus a margin for the answer
//! to travel back. Every step that waits on the API server is bounded by it;
//! a step that runs out of time fails closed with a message naming it.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use axum::http::Uri;

/// The longest margin kept between the deadline and the API server's own
/// timeout: the answer has to be encoded and sent before the API server
/// gives up.
pub const MAX_MARGIN: Duration = Duration::from_millis(500);

/// When one review must be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
    /// When the caller stops waiting: `at` plus the margin.
    caller_gives_up: Instant,
}

/// A step that ran out of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// What unroot was doing, e.g. `reading namespace "team-a"`.
    pub step: String,
    /// The whole budget of the review.
    pub budget: Duration,
}

impl fmt::Display for Expired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unroot ran out of time while {} (the review's deadline is {} s: the API server's timeout or --review-timeout, whichever is shorter, minus a margin); denied because this webhook fails closed. Retry; if it persists, check that the API server answers unroot quickly",
            self.step,
            self.budget.as_secs_f64()
        )
    }
}

impl Deadline {
    /// The deadline of a review that arrived at `arrived` on `uri`: the
    /// shorter of the URL's `?timeout=` (a Go duration the API server
    /// appends from the webhook's `timeoutSeconds`) and `max`, minus a
    /// tenth of it (at most [`MAX_MARGIN`]).
    #[must_use]
    pub fn for_request(uri: &Uri, arrived: Instant, max: Duration) -> Self {
        let asked = timeout_parameter(uri).map_or(max, |t| t.min(max));
        let budget = asked.saturating_sub((asked / 10).min(MAX_MARGIN));
        Self {
            at: arrived.checked_add(budget).unwrap_or(arrived),
            budget,
            caller_gives_up: arrived.checked_add(asked).unwrap_or(arrived),
        }
    }

    /// A deadline `budget` from now.
    #[must_use]
    pub fn after(budget: Duration) -> Self {
        let now = Instant::now();
        let at = now.checked_add(budget).unwrap_or(now);
        Self {
            at,
            budget,
            caller_gives_up: at,
        }
    }

    /// The instant it runs out.
    #[must_use]
    pub fn at(&self) -> Instant {
        self.at
    }

    /// When the caller (the API server) stops waiting: the deadline plus
    /// the margin kept for the answer.
    #[must_use]
    pub fn caller_gives_up(&self) -> Instant {
        self.caller_gives_up
    }

    /// Whether it has run out.
    #[must_use]
    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// Fails with `step` when the deadline has passed (before a step that
    /// must not start late, like a write).
    pub fn check(&self, step: impl FnOnce() -> String) -> Result<(), Expired> {
        if self.passed() {
            return Err(self.expired(step()));
        }
        Ok(())
    }

    /// Runs `future` until the deadline; `step` names it in the error.
    pub async fn bound<T>(
        &self,
        step: impl FnOnce() -> String,
        future: impl Future<Output = T>,
    ) -> Result<T, Expired> {
        match tokio::time::timeout_at(tokio::time::Instant::from_std(self.at), future).await {
            Ok(out) => Ok(out),
            Err(_) => Err(self.expired(step())),
        }
    }

    fn expired(&self, step: String) -> Expired {
        Expired {
            step,
            budget: self.budget,
        }
    }
}

/// The webhook URL's `?timeout=`, if it parses.
fn timeout_parameter(uri: &Uri) -> Option<Duration> {
    let value = uri
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("timeout="))?;
    parse_go_duration(value)
}

/// A Go `time.Duration` string: `0`, or decimal numbers each with a unit
/// (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), e.g. `10s`, `1m30s`, `1.5s`.
/// Negative durations are refused.
fn parse_go_duration(text: &str) -> Option<Duration> {
    // kube's parser panics on a negative number after the first unit
    // (`1h-1s`) and on a sum past `Duration::MAX`, and this text comes from
    // the request: only numbers and units pass, at most 32 characters (Go's
    // longest duration, `2562047h47m16.854775807s`, has 24) with at most
    // twelve digits in a row, which keeps any sum far below the maximum.
    let text = text.strip_prefix('+').unwrap_or(text);
    let bounded = text.len() <= 32
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c.is_alphabetic())
        && text
            .split(|c: char| !c.is_ascii_digit())
            .all(|digits| digits.len() <= 12);
    if text.is_empty() || !bounded {
        return None;
    }
    let parsed: kube::core::Duration = text.parse().ok()?;
    Some(parsed.into())
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
            ("1e400s", None),
            ("99999999999999999999999h", None),
            ("9999999999999999999s", None),
            ("1h-1s", None),
            ("1h+1s", None),
            ("+1s", Some(Duration::from_secs(1))),
        ];
        for (text, want) in cases {
            assert_eq!(parse_go_duration(text), want, "{text}");
        }
    }

    #[test]
    fn the_deadline_is_the_shorter_timeout_minus_a_margin() {
        let now = Instant::now();
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        let max = Duration::from_secs(10);
        let cases = [
            // The API server's 10 s, 500 ms kept for the way back.
            ("/mutate?timeout=10s", Duration::from_millis(9500)),
            // A short timeout keeps a tenth.
            ("/validate?x=1&timeout=2s", Duration::from_millis(1800)),
            // Longer than --review-timeout: the maximum wins.
            ("/mutate?timeout=30s", Duration::from_millis(9500)),
            // None, or one that does not parse: the maximum.
            ("/mutate", Duration::from_millis(9500)),
            ("/mutate?timeout=soon", Duration::from_millis(9500)),
            ("/mutate?timeout=0", Duration::ZERO),
        ];
        for (path, budget) in cases {
            let d = Deadline::for_request(&uri(path), now, max);
            assert_eq!(d.at(), now + budget, "{path}");
            assert!(d.caller_gives_up() >= d.at(), "{path}");
        }
    }

    #[tokio::test]
    async fn a_step_past_the_deadline_names_itself() {
        let d = Deadline::after(Duration::from_millis(20));
        let slow = d
            .bound(
                || "reading namespace \"a\"".to_owned(),
                tokio::time::sleep(Duration::from_secs(5)),
            )
            .await
            .unwrap_err();
        assert!(
            slow.to_string()
                .starts_with("unroot ran out of time while reading namespace \"a\""),
            "{slow}"
        );
        assert!(d.passed());
        assert!(d.check(|| "writing".to_owned()).is_err());
        let fast = Deadline::after(Duration::from_secs(5));
        assert_eq!(fast.bound(String::new, async { 7 }).await, Ok(7));
        assert_eq!(fast.check(String::new), Ok(()));
    }
}
