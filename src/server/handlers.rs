//! One handler per webhook: the async steps each needs around the pure core.

mod mutate;
mod namespace;
mod validate;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;

use super::deadline::{Deadline, Expired};
use super::review;
use super::{AppState, Caller};
use crate::admission::{self, Decision};
use crate::namespaces::{self, Labels, OnMiss};
use crate::policy::Snapshot;

/// The webhooks unroot serves (also `unroot review --webhook`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Webhook {
    /// `/mutate`: hardening, as a JSON Patch (pods on CREATE, ephemeral
    /// containers on add).
    Mutate,
    /// `/validate`: Pod Security, unroot's refusals, the namespace label
    /// guard, the policy ConfigMap check.
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

    /// Decides one request of `caller` with `policy`; every step that waits
    /// on the API server is bounded by `deadline`. For an unauthenticated
    /// caller nothing is read from the cluster beyond what the review holds
    /// (the namespace cache, the pods counted in a namespace dry run).
    pub(super) async fn decide(
        self,
        state: &AppState,
        policy: &Snapshot,
        request: &admission::Request<'_>,
        caller: Caller,
        deadline: Deadline,
    ) -> Decision {
        match self {
            Self::Mutate => mutate::decide(state, policy, request, caller, deadline).await,
            Self::Validate => validate::decide(state, policy, request, caller, deadline).await,
        }
    }
}

/// `POST /mutate`.
pub(super) async fn mutate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    review::answer(Webhook::Mutate, state, request).await
}

/// `POST /validate`.
pub(super) async fn validate(State(state): State<Arc<AppState>>, request: Request) -> Response {
    review::answer(Webhook::Validate, state, request).await
}

/// The labels of the request's namespace, read within `deadline`: from the
/// cache, or on a miss from the API server when `caller` is authenticated
/// (an unauthenticated caller's review only waits for the watch).
async fn namespace_labels(
    state: &AppState,
    req: &admission::Request<'_>,
    caller: Caller,
    deadline: Deadline,
) -> Result<Result<Option<Labels>, namespaces::Error>, Expired> {
    let on_miss = if caller.is_authenticated() {
        OnMiss::Read
    } else {
        OnMiss::WaitForWatch
    };
    deadline
        .bound(
            || format!("reading the labels of namespace {:?}", req.namespace()),
            state.namespaces.labels(req.namespace(), on_miss),
        )
        .await
}
