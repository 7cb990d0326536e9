//! `/validate`: dispatch on what the request is about; for Pod Security,
//! the namespace's labels and (1.20/1.21 ephemeral containers, for an
//! authenticated caller only) the stored pod in.

use k8s_openapi::api::core::v1::Pod;

use crate::admission::validate::{self, NamespaceLabels};
use crate::admission::{self, Decision, Response, Target};
use crate::cluster;
use crate::policy::Snapshot;
use crate::server::deadline::Deadline;
use crate::server::{AppState, Caller};

pub(super) async fn decide(
    state: &AppState,
    policy: &Snapshot,
    req: &admission::Request<'_>,
    caller: Caller,
    deadline: Deadline,
) -> Decision {
    match req.target() {
        Target::ConfigMap => admission::validate_policy_configmap(req).into(),
        Target::Pod | Target::Workload(_) => {
            pod_security(state, policy, req, caller, deadline).await
        }
        Target::Namespace => super::namespace::decide(state, policy, req, caller, deadline).await,
        // The serving check of the replica holding the certificate Lease
        // (it echoes the nonce it is sent, so any caller may have it); any
        // other object is allowed.
        Target::Other => admission::serving_check::answer(req)
            .unwrap_or_else(|| Response::allow(&req.uid))
            .into(),
    }
}

async fn pod_security(
    state: &AppState,
    policy: &Snapshot,
    req: &admission::Request<'_>,
    caller: Caller,
    deadline: Deadline,
) -> Decision {
    if let Some(answer) = validate::before_lookup(req, policy) {
        return answer;
    }
    let namespace = match super::namespace_labels(state, req, caller, deadline).await {
        // A pod is denied naming the step; a workload is let through with
        // the failure in its audit annotations, as for any failed lookup.
        Err(expired) if req.target() == Target::Pod => {
            return super::mutate::out_of_time(req, &expired);
        }
        Err(expired) => NamespaceLabels::Failed(expired.to_string()),
        Ok(Ok(Some(labels))) => NamespaceLabels::Found(labels),
        Ok(Ok(None)) => NamespaceLabels::Unknown,
        Ok(Err(e)) => NamespaceLabels::Failed(e.to_string()),
    };
    let pod = if validate::needs_pod(req) {
        if !caller.is_authenticated() {
            return refuse_pod_read(req);
        }
        let read = deadline
            .bound(
                || format!("reading pod {:?} for its ephemeral containers", req.name()),
                read_pod_with_ephemeral_containers(state, req),
            )
            .await;
        match read {
            Err(expired) => return super::mutate::out_of_time(req, &expired),
            Ok(Ok(pod)) => Some(pod),
            Ok(Err(failed)) => {
                return Response::deny(&req.uid, 500, "InternalError", failed.to_string()).into();
            }
        }
    } else {
        None
    };
    validate::pod_security(req, policy, &namespace, pod)
}

/// The answer to a 1.20/1.21 `pods/ephemeralcontainers` request from an
/// unauthenticated caller: judging it needs the stored pod, and reading a
/// pod for whoever reaches the port would show any pod to anyone.
fn refuse_pod_read(req: &admission::Request<'_>) -> Decision {
    Response::deny(
        &req.uid,
        403,
        "Forbidden",
        format!(
            "unroot cannot judge ephemeral containers for pod {:?} from an unauthenticated caller: on Kubernetes 1.20 and 1.21 the review holds only the ephemeral containers, and unroot reads no pod from the API server for a caller without a client certificate, or a forged review would reveal any pod; start unroot with --client-ca and give the API server a client certificate (docs/hardening.md, \"mTLS from the API server\"), or use Kubernetes 1.22 or newer, whose review holds the whole pod",
            req.name()
        ),
    )
    .into()
}

/// Why the stored pod of an ephemeral-containers review could not be had;
/// shown as the deny message.
#[derive(Debug, thiserror::Error)]
#[error(
    "Internal error occurred: failed to read pod {name:?} to evaluate its ephemeral containers: {why}"
)]
struct PodReadFailed {
    name: String,
    why: cluster::Error,
}

/// For a 1.20/1.21 `pods/ephemeralcontainers` request: the stored pod with
/// the requested ephemeral containers in it.
async fn read_pod_with_ephemeral_containers(
    state: &AppState,
    req: &admission::Request<'_>,
) -> Result<Pod, PodReadFailed> {
    let failed = |why: cluster::Error| PodReadFailed {
        name: req.name().to_owned(),
        why,
    };
    let reader = state
        .stored_pods
        .as_ref()
        .ok_or_else(|| failed(cluster::Error::NoCluster))?;
    let pod = reader
        .get(req.namespace(), req.name())
        .await
        .map_err(failed)?;
    let object = req
        .object
        .ok_or_else(|| failed("no object in the request".to_owned().into()))?;
    validate::merge_ephemeral_containers(pod, object).ok_or_else(|| {
        failed(
            "the object is not an EphemeralContainers list"
                .to_owned()
                .into(),
        )
    })
}
