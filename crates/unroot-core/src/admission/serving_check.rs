//! The serving check: how the replica holding the certificate Lease learns
//! that the API server reaches unroot through its Service with the caBundle
//! in force, before any webhook fails closed.
//!
//! It sends a server-side dry run of a patch to its own Lease that adds the
//! label [`LABEL`] with a fresh nonce. Only the webhook [`WEBHOOK`] selects
//! objects carrying that label (an `objectSelector`), and nothing stores it:
//! a dry run is never persisted, so the Lease's real renewals never match.
//! A replica answers such a dry run by denying it with the nonce in the
//! message ([`answer`]); the API server hands that message back to the
//! caller. The dry run coming back denied with its own nonce is the proof;
//! coming back allowed means no replica answered (the webhook fails open).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Request, Response};

/// The label the dry run adds; its value is the nonce.
pub const LABEL: &str = "unroot.dev/serving-check";
/// The webhook that answers the serving check.
pub const WEBHOOK: &str = "serving-check.unroot.dev";
/// What every answer starts with, before the nonce.
pub const ANSWER_PREFIX: &str = "unroot serving check";

/// The answer to a serving check, or `None` when `request` is none: a dry
/// run of a Lease update whose object carries [`LABEL`] with a nonce.
/// Anything else, a real update of a labelled Lease included, is left to
/// the caller (which allows it).
#[must_use]
pub fn answer(request: &Request<'_>) -> Option<Response> {
    if request.resource.group != "coordination.k8s.io"
        || request.resource.resource != "leases"
        || !request.is_dry_run()
    {
        return None;
    }
    let nonce = nonce_of(request.object?)?;
    Some(Response::deny(
        &request.uid,
        403,
        "Forbidden",
        format!(
            "{ANSWER_PREFIX} {nonce}: a replica answered through the API server (a dry run; nothing is changed)"
        ),
    ))
}

/// Whether `message` (an API error's message) is the answer to the check
/// with `nonce`, given by [`WEBHOOK`].
#[must_use]
pub fn answered(message: &str, nonce: &str) -> bool {
    message.contains(&format!("\"{WEBHOOK}\""))
        && message.contains(&format!("{ANSWER_PREFIX} {nonce}:"))
}

/// A label value that can be a nonce: 1 to 63 characters of `[0-9a-f]`.
fn nonce_of(object: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Object {
        #[serde(default)]
        metadata: Metadata,
    }
    #[derive(Default, Deserialize)]
    struct Metadata {
        #[serde(default)]
        labels: std::collections::BTreeMap<String, String>,
    }
    let object: Object = serde_json::from_str(object.get()).ok()?;
    let nonce = object.metadata.labels.get(LABEL)?;
    let valid = (1..=63).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    valid.then(|| nonce.clone())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::admission::{Decoded, decode};

    fn review(resource: (&str, &str), dry_run: bool, labels: &Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u1", "operation": "UPDATE", "dryRun": dry_run,
                "resource": {"group": resource.0, "version": "v1", "resource": resource.1},
                "namespace": "unroot", "name": "unroot-certs",
                "object": {"metadata": {"name": "unroot-certs", "labels": labels}},
            }
        }))
        .unwrap()
    }

    fn answer_to(body: &[u8]) -> Option<Response> {
        let Ok(Decoded::Review(review)) = decode(body) else {
            panic!("not a review");
        };
        answer(&review.request)
    }

    #[test]
    fn a_dry_run_carrying_a_nonce_is_answered_with_it() {
        let lease = ("coordination.k8s.io", "leases");
        let body = review(lease, true, &json!({LABEL: "0123abcd"}));
        let response = answer_to(&body).expect("answered");
        assert!(!response.allowed);
        let message = response.status.unwrap().message;
        // What the API server makes of the denial.
        let relayed = format!("admission webhook \"{WEBHOOK}\" denied the request: {message}");
        assert!(answered(&relayed, "0123abcd"), "{relayed}");
        assert!(!answered(&relayed, "0123abce"), "another nonce");
        assert!(!answered(&message, "0123abcd"), "not through the webhook");
    }

    #[test]
    fn everything_else_is_left_alone() {
        let lease = ("coordination.k8s.io", "leases");
        let nonce = json!({LABEL: "0123abcd"});
        for (what, body) in [
            ("a real update", review(lease, false, &nonce)),
            ("no label", review(lease, true, &json!({}))),
            (
                "not a nonce",
                review(lease, true, &json!({LABEL: "Not-Hex"})),
            ),
            ("another resource", review(("", "configmaps"), true, &nonce)),
        ] {
            assert!(answer_to(&body).is_none(), "{what}");
        }
    }
}
