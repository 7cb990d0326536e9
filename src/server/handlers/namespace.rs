//! Namespace CREATE/UPDATE on `/validate`: the pure core decides; when
//! enforcement is raised, this lists the namespace's pods within upstream's
//! time budget and has the core check them. An authenticated caller is
//! told which pods violate the new level; an unauthenticated one only how
//! many, and why.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use tracing::{info, warn};

use crate::admission::namespace::{self, BUDGET, LIST_FAILED, Step};
use crate::admission::{self, Decision, Response};
use crate::cluster;
use crate::policy::Snapshot;
use crate::server::deadline::Deadline;
use crate::server::{AppState, Caller};

/// Decides a namespace request. `deadline` bounds the review; the check of
/// existing pods gets upstream's budget within it.
pub(super) async fn decide(
    state: &AppState,
    policy: &Snapshot,
    req: &admission::Request<'_>,
    caller: Caller,
    deadline: Deadline,
) -> Decision {
    let dry = match namespace::decide(req, policy) {
        Step::Done(decision) => return decision,
        Step::DryRun(dry) => dry,
    };
    let started = Instant::now();
    let stop = started + budget(started, Some(deadline.caller_gives_up()));
    // A lister that ignores `stop` (a cache answers late, and the checks
    // then stop at the budget) is still cut off at the review's deadline.
    let pods = match &state.pods {
        Some(lister) => deadline
            .bound(
                || format!("listing the pods of namespace {:?}", dry.namespace),
                lister.list(&dry.namespace, stop),
            )
            .await
            .unwrap_or(Err(cluster::Error::TimedOut)),
        None => Err(cluster::Error::NoCluster),
    };
    let mut response = Response::allow(&req.uid);
    response.warnings = match pods {
        Err(e) => {
            warn!(namespace = %dry.namespace, error = %e, "failed to list pods while checking the new enforce level");
            vec![LIST_FAILED.to_owned()]
        }
        Ok(pods) => {
            let input = crate::mutate::Input {
                policy,
                namespace_labels: &dry.labels,
                requester: &req.user_info.username,
            };
            let provenance = |pod: &Pod| {
                crate::mutate::provenance_index(pod, &input, crate::mutate::Requester::StoredPod)
            };
            let listed = pods.len();
            // Evaluated on this task: at most MAX_PODS pods and the budget
            // (1 s), for a label change, which is rare; a blocking-pool hop
            // would need owned copies of the policy and labels.
            let check = if caller.is_authenticated() {
                namespace::check_existing_pods
            } else {
                namespace::count_existing_pods
            };
            let warnings = check(
                &dry.namespace,
                dry.enforce,
                pods,
                &policy.pod_security.exemptions.runtime_class_names,
                provenance,
                || Instant::now() >= stop,
            );
            info!(namespace = %dry.namespace, enforce = %dry.enforce, pods = listed, warnings = warnings.len(), elapsed_ms = started.elapsed().as_millis(), "checked existing pods against the new enforce level");
            warnings
        }
    };
    response.into()
}

/// Upstream's budget: [`BUDGET`], or half the time left before `deadline`
/// when that is shorter.
fn budget(now: Instant, deadline: Option<Instant>) -> Duration {
    deadline.map_or(BUDGET, |d| BUDGET.min(d.saturating_duration_since(now) / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_a_second_or_half_the_time_left() {
        let now = Instant::now();
        assert_eq!(budget(now, None), Duration::from_secs(1));
        assert_eq!(
            budget(now, Some(now + Duration::from_secs(10))),
            Duration::from_secs(1)
        );
        assert_eq!(
            budget(now, Some(now + Duration::from_millis(300))),
            Duration::from_millis(150)
        );
        assert_eq!(budget(now, Some(now)), Duration::ZERO);
    }
}
