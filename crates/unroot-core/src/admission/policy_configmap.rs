//! The policy ConfigMap check: a CREATE or UPDATE of a ConfigMap labelled as
//! an unroot policy is refused when the policy in it is invalid, with every
//! error, before it is stored.

use k8s_openapi::api::core::v1::ConfigMap;

use super::{Operation, Request, Response};
use crate::policy::{self, CONFIGMAP_KEY, CONFIGMAP_LABEL};

/// Answers a ConfigMap request.
#[must_use]
pub fn validate_policy_configmap(request: &Request<'_>) -> Response {
    let uid = &request.uid;
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Response::allow(uid);
    }
    let Some(raw) = request.object else {
        return Response::allow(uid);
    };
    let what = format!("ConfigMap {}/{}", request.namespace(), request.name());
    let config_map: ConfigMap = match serde_json::from_str(raw.get()) {
        Ok(cm) => cm,
        Err(e) => {
            return Response::deny(
                uid,
                400,
                "BadRequest",
                format!("{what}: failed to decode ConfigMap: {e}"),
            );
        }
    };
    let labelled = config_map
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CONFIGMAP_LABEL))
        .map(String::as_str)
        == Some("true");
    if !labelled {
        return Response::allow(uid);
    }
    let text = config_map.data.as_ref().and_then(|d| d.get(CONFIGMAP_KEY));
    let message = match text {
        None => {
            format!("{what} is labelled {CONFIGMAP_LABEL}=true but has no data.{CONFIGMAP_KEY}")
        }
        Some(text) => match policy::Document::from_yaml(text) {
            Ok(_) => return Response::allow(uid),
            Err(policy::Error::Invalid(errors)) => format!(
                "{what}: invalid unroot policy in data.{CONFIGMAP_KEY}, {} error(s): {}",
                errors.len(),
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Err(e) => format!("{what}: invalid unroot policy in data.{CONFIGMAP_KEY}: {e}"),
        },
    };
    Response::deny(uid, 422, "Invalid", message)
}
