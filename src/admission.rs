//! AdmissionReview in and out, and routing of requests to the mutations.
//!
//! Decoding is in two steps so that every failure gets the clearest answer
//! possible: a body that is not an AdmissionReview with a request uid cannot
//! be answered with a review and gets an HTTP error; anything after that is
//! answered with a review whose `status.message` says what is wrong.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::ConfigMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod validate;

use crate::mutate::{self, Input};
use crate::policy::Document;

/// The AdmissionReview versions unroot answers; the response echoes the
/// request's version.
pub const VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// Why a body could not be read as an AdmissionReview.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Not JSON at all.
    #[error("request body is not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not an AdmissionReview.
    #[error("request body is not an AdmissionReview: {0}")]
    NotReview(String),
    /// An AdmissionReview without a request to answer.
    #[error("AdmissionReview has no request")]
    NoRequest,
    /// A request without the uid the response must echo.
    #[error("AdmissionReview request has no uid")]
    NoUid,
}

/// Group, version and kind, as the API server sends them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionKind {
    /// API group, empty for the core group.
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
}

/// Group, version and resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionResource {
    /// API group, empty for the core group.
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Resource (plural, lower case).
    #[serde(default)]
    pub resource: String,
}

/// Who sent the request to the API server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The user name, e.g. `system:serviceaccount:ns:name`.
    #[serde(default)]
    pub username: String,
    /// The user's groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// An admission request (the `request` of an AdmissionReview).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Echoed in the response.
    pub uid: String,
    /// The kind of the object.
    #[serde(default)]
    pub kind: GroupVersionKind,
    /// The resource being requested.
    #[serde(default)]
    pub resource: GroupVersionResource,
    /// The subresource, e.g. `ephemeralcontainers`.
    #[serde(default)]
    pub sub_resource: Option<String>,
    /// The object's name (may be empty on CREATE with `generateName`).
    #[serde(default)]
    pub name: Option<String>,
    /// The object's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// CREATE, UPDATE, DELETE or CONNECT.
    #[serde(default)]
    pub operation: String,
    /// The requesting user.
    #[serde(default)]
    pub user_info: UserInfo,
    /// The object as it would be stored.
    #[serde(default)]
    pub object: Option<Value>,
    /// The object before an UPDATE.
    #[serde(default)]
    pub old_object: Option<Value>,
    /// Whether this is a dry run (no side effects allowed).
    #[serde(default)]
    pub dry_run: Option<bool>,
}

impl Request {
    /// The namespace, or empty for cluster-scoped objects.
    #[must_use]
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }

    /// The name, or empty when not yet assigned.
    #[must_use]
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    /// The subresource, or empty.
    #[must_use]
    pub fn sub_resource(&self) -> &str {
        self.sub_resource.as_deref().unwrap_or_default()
    }

    /// Whether the request is for core `pods` (any subresource).
    #[must_use]
    pub fn is_pod(&self) -> bool {
        self.resource.group.is_empty() && self.resource.resource == "pods"
    }
}

/// A decoded review: its apiVersion (echoed back) and its request.
#[derive(Debug, Clone)]
pub struct Review {
    /// `admission.k8s.io/v1` or `v1beta1`.
    pub api_version: String,
    /// The request.
    pub request: Request,
}

/// Decodes a body. `Err((uid, message))` for a review whose request is
/// malformed but carries a uid: answer it with a review, not an HTTP error.
pub fn decode(body: &[u8]) -> Result<Result<Review, (String, String)>, DecodeError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(DecodeError::NotReview("expected a JSON object".to_owned()));
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != "AdmissionReview" {
        return Err(DecodeError::NotReview(format!(
            "kind is {kind:?}, expected \"AdmissionReview\""
        )));
    }
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !VERSIONS.contains(&api_version.as_str()) {
        return Err(DecodeError::NotReview(format!(
            "apiVersion is {api_version:?}, expected one of {}",
            VERSIONS.join(", ")
        )));
    }
    let request = match map.remove("request") {
        None | Some(Value::Null) => return Err(DecodeError::NoRequest),
        Some(r) => r,
    };
    let uid = match request.get("uid") {
        Some(Value::String(uid)) if !uid.is_empty() => uid.clone(),
        _ => return Err(DecodeError::NoUid),
    };
    Ok(match serde_json::from_value::<Request>(request) {
        Ok(request) => Ok(Review {
            api_version,
            request,
        }),
        Err(e) => Err((uid, format!("malformed AdmissionReview request: {e}"))),
    })
}

/// A response `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `Success` or `Failure`.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub status: String,
    /// Human-readable reason, shown to the client.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub message: String,
    /// Machine-readable reason, e.g. `Forbidden`.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub reason: String,
    /// HTTP-like status code the API server reports.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<u16>,
    /// Structured details, e.g. `{"name": "p", "kind": "pods"}`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub details: Option<Value>,
}

/// An admission response (the `response` of an AdmissionReview).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// The request's uid.
    pub uid: String,
    /// Whether the request is admitted.
    pub allowed: bool,
    /// Why not, when denied.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<Status>,
    /// Base64 of the JSON Patch, when the object changes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub patch: Option<String>,
    /// `JSONPatch` when `patch` is set.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub patch_type: Option<String>,
    /// Warnings shown to the client (kubectl prints them).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub warnings: Vec<String>,
    /// Added to the API server's audit event.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub audit_annotations: BTreeMap<String, String>,
}

impl Response {
    /// Admits the request unchanged.
    #[must_use]
    pub fn allow(uid: &str) -> Self {
        Self {
            uid: uid.to_owned(),
            allowed: true,
            ..Self::default()
        }
    }

    /// Denies the request with `code` (e.g. 400, 403) and `message`.
    #[must_use]
    pub fn deny(uid: &str, code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            uid: uid.to_owned(),
            allowed: false,
            status: Some(Status {
                status: "Failure".to_owned(),
                message: message.into(),
                reason: reason.to_owned(),
                code: Some(code),
                details: None,
            }),
            ..Self::default()
        }
    }

    /// Attaches a patch; an empty patch attaches nothing.
    #[must_use]
    pub fn with_patch(mut self, patch: &json_patch::Patch) -> Self {
        if !patch.0.is_empty() {
            let bytes = serde_json::to_vec(patch).unwrap_or_default();
            self.patch = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
            self.patch_type = Some("JSONPatch".to_owned());
        }
        self
    }

    /// What the metrics and the log call this answer.
    #[must_use]
    pub fn outcome(&self) -> &'static str {
        match (self.allowed, self.patch.is_some()) {
            (true, true) => "patched",
            (true, false) => "allowed",
            (false, _) if matches!(self.status.as_ref().and_then(|s| s.code), Some(403 | 422)) => {
                "denied"
            }
            (false, _) => "error",
        }
    }
}

/// Wraps a response in an AdmissionReview of the given apiVersion.
#[must_use]
pub fn review(api_version: &str, response: &Response) -> Value {
    serde_json::json!({
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "response": response,
    })
}

/// The answer to a `/mutate` request, and the side effect the shell must
/// carry out before sending an admitting answer.
#[derive(Debug)]
pub struct Mutation {
    /// The admission response.
    pub response: Response,
    /// The identity ConfigMap to server-side-apply (namespace set), when the
    /// pod is provisioned. Skipped on dry-run; if it cannot be applied the
    /// pod must be denied, since it would not start without it.
    pub identity: Option<ConfigMap>,
}

impl From<Response> for Mutation {
    fn from(response: Response) -> Self {
        Self {
            response,
            identity: None,
        }
    }
}

/// Answers a `/mutate` request. `namespace_labels` are the labels of the
/// request's namespace.
#[must_use]
pub fn mutate(
    request: &Request,
    policy: &Document,
    namespace_labels: &BTreeMap<String, String>,
) -> Mutation {
    let uid = &request.uid;
    if !request.is_pod() || policy.is_excluded_namespace(request.namespace()) {
        return Response::allow(uid).into();
    }
    let input = Input {
        policy,
        namespace_labels,
        requester: &request.user_info.username,
    };
    let outcome = match (request.operation.as_str(), request.sub_resource()) {
        ("CREATE", "") => {
            let Some(object) = &request.object else {
                return Response::deny(uid, 400, "BadRequest", "pod CREATE request has no object")
                    .into();
            };
            mutate::pod(object, &input)
        }
        ("UPDATE", "ephemeralcontainers") => {
            let Some(object) = &request.object else {
                return Response::deny(
                    uid,
                    400,
                    "BadRequest",
                    "ephemeralcontainers UPDATE request has no object",
                )
                .into();
            };
            mutate::ephemeral_containers(object, request.old_object.as_ref(), policy)
        }
        _ => return Response::allow(uid).into(),
    };
    match outcome {
        Ok(outcome) => {
            let mut response = Response::allow(uid).with_patch(&outcome.patch);
            response.warnings = outcome.warnings;
            let identity = outcome.identity.map(|mut cm| {
                // On CREATE the object often has no namespace yet; the
                // request always does.
                cm.metadata.namespace = Some(request.namespace().to_owned());
                cm
            });
            Mutation { response, identity }
        }
        Err(e @ mutate::Error::Forbidden(_)) => {
            Response::deny(uid, 403, "Forbidden", e.to_string()).into()
        }
        Err(e @ mutate::Error::Decode { .. }) => {
            Response::deny(uid, 400, "BadRequest", e.to_string()).into()
        }
    }
}

/// Answers a CREATE/UPDATE of a ConfigMap labelled as an unroot policy:
/// an invalid policy is refused before it is stored, with every error.
#[must_use]
pub fn validate_policy_configmap(request: &Request) -> Response {
    let uid = &request.uid;
    let Some(object) = &request.object else {
        return Response::allow(uid);
    };
    let labelled = object
        .pointer("/metadata/labels")
        .and_then(|l| l.get(crate::policy::watch::CONFIGMAP_LABEL))
        .and_then(Value::as_str)
        == Some("true");
    if !labelled || !matches!(request.operation.as_str(), "CREATE" | "UPDATE") {
        return Response::allow(uid);
    }
    let key = crate::policy::watch::CONFIGMAP_KEY;
    let what = format!("ConfigMap {}/{}", request.namespace(), request.name());
    let message = match object
        .pointer("/data")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
    {
        None => format!(
            "{what} is labelled {}=true but has no data.{key}",
            crate::policy::watch::CONFIGMAP_LABEL
        ),
        Some(text) => match crate::policy::Document::from_yaml(text) {
            Ok(_) => return Response::allow(uid),
            Err(crate::policy::Error::Invalid(errors)) => format!(
                "{what}: invalid unroot policy in data.{key}, {} error(s): {}",
                errors.len(),
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Err(e) => format!("{what}: invalid unroot policy in data.{key}: {e}"),
        },
    };
    Response::deny(uid, 422, "Invalid", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_rejects_what_cannot_be_answered() {
        let cases: [(&[u8], DecodeError); 6] = [
            (b"nope", DecodeError::NotJson("expected ident at line 1 column 2".to_owned())),
            (b"[]", DecodeError::NotReview("expected a JSON object".to_owned())),
            (br#"{"kind":"Pod"}"#, DecodeError::NotReview(r#"kind is "Pod", expected "AdmissionReview""#.to_owned())),
            (br#"{"kind":"AdmissionReview","apiVersion":"v1"}"#, DecodeError::NotReview(r#"apiVersion is "v1", expected one of admission.k8s.io/v1, admission.k8s.io/v1beta1"#.to_owned())),
            (br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#, DecodeError::NoRequest),
            (br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":""}}"#, DecodeError::NoUid),
        ];
        for (body, want) in cases {
            assert_eq!(
                decode(body).unwrap_err(),
                want,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn malformed_request_with_uid_is_answered_by_review() {
        let body = json!({"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u1","operation":7}});
        let (uid, message) = decode(body.to_string().as_bytes()).unwrap().unwrap_err();
        assert_eq!(uid, "u1");
        assert!(
            message.starts_with("malformed AdmissionReview request: invalid type: integer `7`"),
            "{message}"
        );
    }

    #[test]
    fn forged_identities_are_denied_with_403_and_honoured_ones_carry_the_configmap() {
        let policy =
            Document::from_yaml(include_str!("../tests/fixtures/provisioning/policy.yaml"))
                .unwrap();
        let labels = BTreeMap::from([("unroot.dev/provisioning".to_owned(), "enabled".to_owned())]);
        let request = |username: &str| -> Request {
            serde_json::from_value(json!({
                "uid": "u1", "operation": "CREATE", "namespace": "hub-users",
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "userInfo": {"username": username},
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": {
                    "unroot.dev/user": "alice", "unroot.dev/uid": "1001", "unroot.dev/gid": "1001"}},
                    "spec": {"containers": [{"name": "c", "image": "x"}]}},
            }))
            .unwrap()
        };
        let denied = mutate(&request("alice"), &policy, &labels);
        assert!(denied.identity.is_none());
        let status = denied.response.status.unwrap();
        assert_eq!(
            (status.code, status.reason.as_str()),
            (Some(403), "Forbidden")
        );
        assert_eq!(
            status.message,
            "identity claim denied: requester \"alice\" is not in provisioning.trustedRequesters: only the platform's spawner may set unroot.dev/user, unroot.dev/uid, unroot.dev/gid"
        );
        let admitted = mutate(
            &request("system:serviceaccount:jupyterhub:hub"),
            &policy,
            &labels,
        );
        assert!(admitted.response.allowed);
        assert!(admitted.response.patch.is_some());
        let cm = admitted.identity.unwrap();
        assert_eq!(cm.metadata.namespace.as_deref(), Some("hub-users"));
    }

    #[test]
    fn outcome_names() {
        assert_eq!(Response::allow("u").outcome(), "allowed");
        assert_eq!(
            Response::deny("u", 403, "Forbidden", "x").outcome(),
            "denied"
        );
        assert_eq!(
            Response::deny("u", 400, "BadRequest", "x").outcome(),
            "error"
        );
    }
}
