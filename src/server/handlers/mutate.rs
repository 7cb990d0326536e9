//! `/mutate`: the namespace's labels in, the identity ConfigMap out.

use tracing::{info, warn};

use crate::admission::{self, Applied, Decision, Response};
use crate::policy::Snapshot;
use crate::server::deadline::{Deadline, Expired};
use crate::server::{AppState, Caller};

pub(super) async fn decide(
    state: &AppState,
    policy: &Snapshot,
    req: &admission::Request<'_>,
    caller: Caller,
    deadline: Deadline,
) -> Decision {
    let labels = match super::namespace_labels(state, req, caller, deadline).await {
        Err(expired) => return out_of_time(req, &expired),
        Ok(Ok(labels)) => labels.unwrap_or_default(),
        Ok(Err(e)) => {
            return Response::deny(
                &req.uid,
                500,
                "InternalError",
                format!(
                    "Internal error occurred: failed to lookup namespace {:?}: {e}",
                    req.namespace()
                ),
            )
            .into();
        }
    };
    let mutation = admission::mutate(req, policy, &labels);
    store_identity(req, state, caller, mutation, deadline).await
}

/// The answer when a step ran out of time: denied (fail closed).
pub(super) fn out_of_time(req: &admission::Request<'_>, expired: &Expired) -> Decision {
    warn!(uid = %req.uid, namespace = req.namespace(), name = req.name(), step = %expired.step, budget_ms = expired.budget.as_millis(), "review ran out of time");
    Response::deny(&req.uid, 504, "Timeout", expired.to_string()).into()
}

/// Applies the identity ConfigMap a mutation needs, then answers; a pod whose
/// ConfigMap cannot be written is denied (it could not start without it).
async fn store_identity(
    req: &admission::Request<'_>,
    state: &AppState,
    caller: Caller,
    mutation: admission::Mutation,
    deadline: Deadline,
) -> Decision {
    let admission::Mutation {
        mut decision,
        identity,
    } = mutation;
    let Some(mut config_map) = identity.filter(|_| decision.response.allowed) else {
        return decision;
    };
    // When it was last written: the sweep keeps an unmounted ConfigMap for a
    // grace period after this (see crate::identities).
    config_map
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(
            crate::identities::APPLIED_AT.to_owned(),
            k8s_openapi::jiff::Timestamp::now().to_string(),
        );
    let name = config_map.metadata.name.clone().unwrap_or_default();
    let namespace = req.namespace();
    // With --client-ca every caller is authenticated at the handshake; the
    // connection's own proof is checked all the same.
    let refused = match state.side_effects {
        crate::server::SideEffects::Refused => true,
        crate::server::SideEffects::AuthenticatedCallers => !caller.is_authenticated(),
        crate::server::SideEffects::AnyCaller => false,
    };
    if refused {
        return Response::deny(
            &req.uid,
            403,
            "Forbidden",
            format!(
                "unroot does not provision pods for unauthenticated callers: writing the identity ConfigMap {namespace}/{name} is a side effect, and this unroot runs without --client-ca, so a forged review could cause it (give the API server a client certificate and start unroot with --client-ca, see docs/hardening.md, \"mTLS from the API server\"; or accept the risk with --unauthenticated-provisioning)"
            ),
        )
        .into();
    }
    let Some(store) = &state.identity_store else {
        return Response::deny(
            &req.uid,
            500,
            "InternalError",
            format!(
                "unroot cannot provision this pod: writing the identity ConfigMap {namespace}/{name} needs a Kubernetes client, and this unroot runs without one (run it in the cluster, or remove the unroot.dev/ identity annotations)"
            ),
        )
        .into();
    };
    if req.is_dry_run() {
        info!(uid = %req.uid, %namespace, configmap = %name, "dry run: identity ConfigMap not written");
        return decision;
    }
    // Nothing is written once the API server may have given up on the pod:
    // the write does not start late, and is abandoned at the deadline.
    let step = || format!("writing the identity ConfigMap {namespace}/{name}");
    if let Err(expired) = deadline.check(step) {
        return out_of_time(req, &expired);
    }
    match deadline.bound(step, store.apply(config_map)).await {
        Err(expired) => out_of_time(req, &expired),
        Ok(Ok(())) => {
            info!(uid = %req.uid, %namespace, configmap = %name, "identity ConfigMap applied");
            decision.facts.mutations.push(Applied::IdentityConfigMap);
            decision
        }
        Ok(Err(e)) => {
            warn!(uid = %req.uid, %namespace, configmap = %name, error = %e, "failed to apply the identity ConfigMap");
            Response::deny(
                &req.uid,
                500,
                "InternalError",
                format!("failed to apply the identity ConfigMap {namespace}/{name}: {e}"),
            )
            .into()
        }
    }
}
