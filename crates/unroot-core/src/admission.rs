//! AdmissionReview in and out, and what each webhook decides.
//!
//! This is the pure core of the admission path: it decodes a review, decides,
//! and encodes the answer, and it does no I/O. What a decision found (the
//! mutations applied, the Pod Security results, exemptions) comes back as
//! [`Facts`] for the shell to count and log.
//!
//! Decoding is in two steps so that every failure gets the clearest answer
//! possible: a body that is not an AdmissionReview with a request uid cannot
//! be answered with a review and gets an HTTP error; anything after that is
//! answered with a review whose `status.message` says what is wrong. The
//! object and old object are kept as raw JSON borrowed from the body, so each
//! handler decodes them once, into the type it works on.
//!
//! unroot uses its own request and response types rather than
//! `kube::core::admission`: kube's `AdmissionRequest<T>` decodes the object
//! into one `Resource` type for every request, before the kind is known,
//! which would cost a second decode (or a `Value` tree) on every review.

pub mod mutate;
pub mod namespace;
pub mod policy_configmap;
pub mod refusals;
pub mod serving_check;
pub mod validate;

use std::collections::BTreeMap;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::policy::HardenMode;
use crate::pss::LevelVersion;
use crate::workload;

pub use self::mutate::{Mutation, mutate};
pub use self::policy_configmap::validate_policy_configmap;
pub use crate::mutate::Applied;

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

/// The AdmissionReview version of a request, echoed in its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `admission.k8s.io/v1`.
    V1,
    /// `admission.k8s.io/v1beta1`.
    V1Beta1,
}

impl ApiVersion {
    /// The `apiVersion` string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => VERSIONS[0],
            Self::V1Beta1 => VERSIONS[1],
        }
    }
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

/// The operation of an admission request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Operation {
    /// CREATE.
    Create,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// CONNECT.
    Connect,
    /// Anything else, or none: never acted upon.
    #[default]
    Other,
}

impl Operation {
    /// The Kubernetes spelling (`other` for anything unknown): a bounded
    /// label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
            Self::Other => "other",
        }
    }
}

impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Operation;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an operation string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Operation, E> {
                Ok(match s {
                    "CREATE" => Operation::Create,
                    "UPDATE" => Operation::Update,
                    "DELETE" => Operation::Delete,
                    "CONNECT" => Operation::Connect,
                    _ => Operation::Other,
                })
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// What a request is about, by its resource: the handlers dispatch on this,
/// never on strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Core `pods` (any subresource).
    Pod,
    /// A workload with a pod template.
    Workload(workload::Kind),
    /// Core `namespaces`.
    Namespace,
    /// Core `configmaps`.
    ConfigMap,
    /// Anything else.
    Other,
}

impl Target {
    /// The kind name for metrics and logs (bounded: `other` for the rest).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "Pod",
            Self::Workload(kind) => kind.as_str(),
            Self::Namespace => "Namespace",
            Self::ConfigMap => "ConfigMap",
            Self::Other => "other",
        }
    }
}

/// An admission request (the `request` of an AdmissionReview), borrowing the
/// object and old object as raw JSON from the request body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
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
    pub operation: Operation,
    /// The requesting user.
    #[serde(default)]
    pub user_info: UserInfo,
    /// The object as it would be stored (`None` when absent or null).
    #[serde(default, borrow)]
    pub object: Option<&'a RawValue>,
    /// The object before an UPDATE.
    #[serde(default, borrow)]
    pub old_object: Option<&'a RawValue>,
    /// Whether this is a dry run (no side effects allowed).
    #[serde(default)]
    pub dry_run: Option<bool>,
}

impl Request<'_> {
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
        self.target() == Target::Pod
    }

    /// What the request is about.
    #[must_use]
    pub fn target(&self) -> Target {
        let GroupVersionResource {
            group, resource, ..
        } = &self.resource;
        match (group.as_str(), resource.as_str()) {
            ("", "pods") => Target::Pod,
            ("", "namespaces") => Target::Namespace,
            ("", "configmaps") => Target::ConfigMap,
            (group, resource) => workload::Kind::from_resource(group, resource)
                .map_or(Target::Other, Target::Workload),
        }
    }

    /// Whether this is a dry run.
    #[must_use]
    pub fn is_dry_run(&self) -> bool {
        self.dry_run == Some(true)
    }
}

/// A decoded review: its apiVersion (echoed back) and its request.
#[derive(Debug, Clone)]
pub struct Review<'a> {
    /// `admission.k8s.io/v1` or `v1beta1`.
    pub api_version: ApiVersion,
    /// The request.
    pub request: Request<'a>,
}

/// What a body that is an AdmissionReview decodes to.
// Decoded once per request and matched at once: boxing the review would cost
// an allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decoded<'a> {
    /// A review whose request could be read.
    Review(Review<'a>),
    /// A review with a uid whose request is malformed: answer it with a
    /// review that says so.
    Malformed {
        /// The review's version.
        api_version: ApiVersion,
        /// The request's uid.
        uid: String,
        /// What is wrong.
        message: String,
    },
}

/// The envelope, read without decoding the request.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    api_version: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    request: Option<&'a RawValue>,
}

/// The whole review, read in one pass: what nearly every body is. Anything
/// this does not read is decoded again step by step, to say what is wrong.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Whole<'a> {
    #[serde(default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    api_version: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    request: Option<Request<'a>>,
}

fn api_version_of(text: &str) -> Option<ApiVersion> {
    match text {
        "admission.k8s.io/v1" => Some(ApiVersion::V1),
        "admission.k8s.io/v1beta1" => Some(ApiVersion::V1Beta1),
        _ => None,
    }
}

/// Just the uid, to answer a request that is otherwise malformed.
#[derive(Deserialize)]
struct UidOnly {
    #[serde(default)]
    uid: Option<Value>,
}

/// Decodes a body.
pub fn decode(body: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    // serde reads a struct from a JSON array too; a review is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<de::IgnoredAny>(body) {
            Ok(_) => DecodeError::NotReview("expected a JSON object".to_owned()),
            Err(e) => DecodeError::NotJson(e.to_string()),
        });
    }
    if let Ok(whole) = serde_json::from_slice::<Whole<'_>>(body)
        && whole.kind.as_deref() == Some("AdmissionReview")
        && let Some(api_version) = whole.api_version.as_deref().and_then(api_version_of)
        && let Some(request) = whole.request
        && !request.uid.is_empty()
    {
        return Ok(Decoded::Review(Review {
            api_version,
            request,
        }));
    }
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            DecodeError::NotReview(e.to_string())
        } else {
            DecodeError::NotJson(e.to_string())
        }
    })?;
    let kind = envelope.kind.as_deref().unwrap_or_default();
    if kind != "AdmissionReview" {
        return Err(DecodeError::NotReview(format!(
            "kind is {kind:?}, expected \"AdmissionReview\""
        )));
    }
    let version = envelope.api_version.as_deref().unwrap_or_default();
    let api_version = api_version_of(version).ok_or_else(|| {
        DecodeError::NotReview(format!(
            "apiVersion is {version:?}, expected one of {}",
            VERSIONS.join(", ")
        ))
    })?;
    let raw = match envelope.request {
        None => return Err(DecodeError::NoRequest),
        Some(raw) if raw.get() == "null" => return Err(DecodeError::NoRequest),
        Some(raw) => raw,
    };
    match serde_json::from_str::<Request<'_>>(raw.get()) {
        Ok(request) if request.uid.is_empty() => Err(DecodeError::NoUid),
        Ok(request) => Ok(Decoded::Review(Review {
            api_version,
            request,
        })),
        Err(e) => {
            let uid = serde_json::from_str::<UidOnly>(raw.get())
                .ok()
                .and_then(|u| match u.uid {
                    Some(Value::String(uid)) if !uid.is_empty() => Some(uid),
                    _ => None,
                })
                .ok_or(DecodeError::NoUid)?;
            Ok(Decoded::Malformed {
                api_version,
                uid,
                message: format!("malformed AdmissionReview request: {e}"),
            })
        }
    }
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
            // The JSON is base64-encoded as it is written, in chunks: a large
            // pod's patch (tens of MB for 50,000 containers) is not held
            // twice, once as JSON and once as base64.
            let base64_out =
                base64::write::EncoderStringWriter::new(&base64::engine::general_purpose::STANDARD);
            let mut writer = std::io::BufWriter::with_capacity(8 * 1024, base64_out);
            // Serializing values and pointers into a String cannot fail.
            let _ = serde_json::to_writer(&mut writer, patch);
            let encoded = writer
                .into_inner()
                .map(base64::write::EncoderStringWriter::into_inner)
                .unwrap_or_default();
            self.patch = Some(encoded);
            self.patch_type = Some("JSONPatch".to_owned());
        }
        self
    }

    /// Attaches the patch `writer` holds, written once as JSON and encoded
    /// once as base64; an empty patch attaches nothing.
    #[must_use]
    pub fn with_written_patch(mut self, writer: &crate::mutate::writer::Writer) -> Self {
        use base64::Engine as _;
        if !writer.is_empty() {
            let mut json = Vec::with_capacity(512);
            writer.write_json(&mut json);
            self.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
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

/// The AdmissionReview that carries a response.
#[derive(Serialize)]
struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: &'a Response,
}

/// Encodes the AdmissionReview that answers with `response`.
#[must_use]
pub fn encode(api_version: ApiVersion, response: &Response) -> Vec<u8> {
    // One allocation for the whole answer: the envelope and the fixed
    // fields fit in the slack, the patch and the texts are counted.
    let texts = response.patch.as_ref().map_or(0, String::len)
        + response.warnings.iter().map(String::len).sum::<usize>()
        + response.status.as_ref().map_or(0, |s| s.message.len())
        + response
            .audit_annotations
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    let mut out = Vec::with_capacity(256 + texts + texts / 8);
    // Serializing plain strings, bools and maps of strings cannot fail.
    let _ = serde_json::to_writer(
        &mut out,
        &ReviewOut {
            api_version: api_version.as_str(),
            kind: "AdmissionReview",
            response,
        },
    );
    out
}

/// A Pod Security mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Violations deny.
    Enforce,
    /// Violations are recorded in audit annotations.
    Audit,
    /// Violations are returned as warnings.
    Warn,
}

impl Mode {
    /// The mode's name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Audit => "audit",
            Self::Warn => "warn",
        }
    }
}

/// One Pod Security evaluation that counted towards a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PssResult {
    /// The mode it was evaluated for.
    pub mode: Mode,
    /// The level and version, as the namespace asked for them.
    pub policy: LevelVersion,
    /// Whether the pod or template passed.
    pub allowed: bool,
    /// The IDs of the checks that failed, in upstream order.
    pub checks: Vec<&'static str>,
}

/// A Pod Security evaluation error, by whether it decided the request (the
/// `fatal` label of upstream's `pod_security_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PssError {
    /// The error decided the request: the namespace could not be read, so
    /// the pod was denied (or a workload allowed) without evaluation.
    Fatal,
    /// The error was recorded and evaluation went on: a namespace label
    /// that does not parse fell back as upstream's does.
    Recovered,
}

impl PssError {
    /// Whether the error decided the request.
    #[must_use]
    pub fn is_fatal(self) -> bool {
        self == Self::Fatal
    }
}

/// What a decision found, for the shell to count, log and audit. The core
/// never touches metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The mutations applied.
    pub mutations: Vec<Applied>,
    /// Pod Security evaluations that counted, in order enforce, audit, warn.
    pub pss: Vec<PssResult>,
    /// Why Pod Security did not evaluate: `namespace`, `user`, `runtimeClass`.
    pub exempt: Option<&'static str>,
    /// A Pod Security evaluation error, if one happened.
    pub pss_error: Option<PssError>,
    /// The hardening mode a pod was admitted in, when it was considered for
    /// hardening.
    pub harden: Option<HardenMode>,
}

/// A response and the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The answer.
    pub response: Response,
    /// What was found.
    pub facts: Facts,
}

impl From<Response> for Decision {
    fn from(response: Response) -> Self {
        Self {
            response,
            facts: Facts::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_rejects_what_cannot_be_answered() {
        let cases: [(&[u8], DecodeError); 7] = [
            (b"nope", DecodeError::NotJson("expected ident at line 1 column 2".to_owned())),
            (b"[]", DecodeError::NotReview("expected a JSON object".to_owned())),
            (br#"{"kind":"Pod"}"#, DecodeError::NotReview(r#"kind is "Pod", expected "AdmissionReview""#.to_owned())),
            (br#"{"kind":"AdmissionReview","apiVersion":"v1"}"#, DecodeError::NotReview(r#"apiVersion is "v1", expected one of admission.k8s.io/v1, admission.k8s.io/v1beta1"#.to_owned())),
            (br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#, DecodeError::NoRequest),
            (br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":null}"#, DecodeError::NoRequest),
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
        let body = json!({"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","request":{"uid":"u1","operation":7}}).to_string();
        let Decoded::Malformed {
            api_version,
            uid,
            message,
        } = decode(body.as_bytes()).unwrap()
        else {
            panic!("expected a malformed review");
        };
        assert_eq!((api_version, uid.as_str()), (ApiVersion::V1Beta1, "u1"));
        assert!(
            message.starts_with("malformed AdmissionReview request: invalid type: integer `7`"),
            "{message}"
        );
    }

    #[test]
    fn requests_borrow_their_objects_and_dispatch_on_the_resource() {
        let body = json!({"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{
            "uid":"u1","operation":"PATCH","resource":{"group":"apps","version":"v1","resource":"deployments"},
            "object":{"kind":"Deployment"},"oldObject":null}})
        .to_string();
        let Decoded::Review(review) = decode(body.as_bytes()).unwrap() else {
            panic!("expected a review");
        };
        let request = review.request;
        assert_eq!(request.operation, Operation::Other);
        assert_eq!(
            request.target(),
            Target::Workload(workload::Kind::Deployment)
        );
        assert_eq!(request.object.unwrap().get(), r#"{"kind":"Deployment"}"#);
        assert!(request.old_object.is_none());
    }

    #[test]
    fn encoded_reviews_echo_the_version() {
        let bytes = encode(
            ApiVersion::V1Beta1,
            &Response::deny("u", 403, "Forbidden", "no"),
        );
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            value,
            json!({"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","response":{
                "uid":"u","allowed":false,"status":{"status":"Failure","message":"no","reason":"Forbidden","code":403}}})
        );
    }

    #[test]
    fn patches_are_the_base64_of_their_json() {
        use base64::Engine as _;
        for n in [1, 3, 5_000] {
            let ops: Vec<Value> = (0..n)
                .map(
                    |i| json!({"op": "add", "path": format!("/a{i}"), "value": {"x": [i, "é\"/"]}}),
                )
                .collect();
            let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
            let want = base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(&patch).unwrap());
            let got = Response::allow("u").with_patch(&patch);
            assert_eq!(got.patch.as_deref(), Some(want.as_str()), "{n} operations");
            assert_eq!(got.patch_type.as_deref(), Some("JSONPatch"));
        }
        let empty = Response::allow("u").with_patch(&json_patch::Patch(Vec::new()));
        assert_eq!(empty, Response::allow("u"));
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
