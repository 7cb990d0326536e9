//! `/validate` for namespaces over real TLS: invalid `unroot.dev/` labels get
//! upstream's 422, weakening needs a `namespaceLabelAdmins` requester, and
//! raising enforcement checks the existing pods (listed by a fake lister)
//! within upstream's time budget and pod cap, grouped and ordered as
//! upstream does.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use unroot::policy::Document;
use unroot::server::PodLister;

fn namespace(name: &str, labels: &[(&str, &str)]) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// A namespace review as the API server sends it: the request namespace is
/// the namespace's own name.
fn review(
    operation: &str,
    new: &Value,
    old: Option<&Value>,
    username: &str,
    groups: &[&str],
) -> Value {
    let name = new["metadata"]["name"].clone();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "uid-ns",
            "kind": {"group": "", "version": "v1", "kind": "Namespace"},
            "resource": {"group": "", "version": "v1", "resource": "namespaces"},
            "name": name, "namespace": name,
            "operation": operation,
            "userInfo": {"username": username, "groups": groups},
            "object": new,
            "oldObject": old,
        }
    })
}

const TENANT: (&str, &[&str]) = ("tenant", &["system:authenticated"]);
const ADMIN: (&str, &[&str]) = (
    "kubernetes-admin",
    &["system:masters", "system:authenticated"],
);

/// Pods handed to the dry run, after an optional wait; records each call
/// and the time it was given.
#[derive(Debug, Default)]
struct FakePods {
    pods: Vec<Pod>,
    /// How long listing takes.
    delay: Duration,
    /// Give up at the deadline, as a lister on the network does; otherwise
    /// answer late, as a cache would.
    honour_deadline: bool,
    fail: Option<String>,
    /// Per call: the namespace and the time left until its deadline.
    calls: Mutex<Vec<(String, Duration)>>,
}

impl FakePods {
    fn with(pods: Vec<Pod>) -> Arc<Self> {
        Arc::new(Self {
            pods,
            ..Self::default()
        })
    }

    fn calls(&self) -> Vec<(String, Duration)> {
        self.calls.lock().unwrap().clone()
    }
}

impl PodLister for FakePods {
    fn list(
        &self,
        namespace: &str,
        deadline: Instant,
    ) -> BoxFuture<'_, unroot::cluster::Result<Vec<Pod>>> {
        self.calls.lock().unwrap().push((
            namespace.to_owned(),
            deadline.saturating_duration_since(Instant::now()),
        ));
        Box::pin(async move {
            if self.honour_deadline {
                let wait = tokio::time::sleep(self.delay);
                tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), wait)
                    .await
                    .map_err(|_| unroot::cluster::Error::TimedOut)?;
            } else {
                tokio::time::sleep(self.delay).await;
            }
            if let Some(reason) = &self.fail {
                return Err(reason.clone().into());
            }
            Ok(self.pods.clone())
        })
    }
}

/// The API server's reviews: authenticated, so a dry run names the pods
/// (an unauthenticated caller is told how many: tests/callers.rs).
async fn server_with(policy: Document, pods: Option<Arc<FakePods>>) -> common::Server {
    common::start_with(common::Options {
        policy,
        pods: pods.map(|p| p as Arc<dyn PodLister>),
        authenticated: true,
        ..Default::default()
    })
    .await
}

fn pod(name: &str, controller: Option<&str>, spec: &Value) -> Pod {
    let mut meta = json!({"name": name, "namespace": "team-a"});
    if let Some(uid) = controller {
        meta["ownerReferences"] = json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-the-controller", "uid": "other"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true},
        ]);
    }
    serde_json::from_value(json!({"metadata": meta, "spec": spec})).unwrap()
}

/// Restricted-compliant.
fn hardened() -> Value {
    json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "image": "x", "securityContext":
            {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]})
}

/// Baseline-compliant, violates restricted four ways.
fn plain() -> Value {
    json!({"containers": [{"name": "c", "image": "x"}]})
}

const PLAIN_REASONS: &str = "allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile";

fn warnings(response: &Value) -> Vec<String> {
    common::warnings_of(response)
}

#[tokio::test]
async fn invalid_labels_are_refused_with_upstreams_422() {
    let mut policy = Document::embedded();
    policy.pod_security.exemptions.namespaces = vec!["legacy".to_owned()];
    let server = server_with(policy, None).await;

    let ns = namespace(
        "team-a",
        &[
            ("unroot.dev/harden", "maybe"),
            ("unroot.dev/audit-version", "1.25"),
            ("unroot.dev/enforce", "strict"),
        ],
    );
    let response = server
        .admit("/validate", &review("CREATE", &ns, None, ADMIN.0, ADMIN.1))
        .await;
    assert_eq!(
        response["status"],
        json!({
            "status": "Failure",
            "code": 422,
            "reason": "Invalid",
            "message": "Namespace \"team-a\" is invalid: [\
                metadata.labels[unroot.dev/enforce]: Invalid value: \"strict\": must be one of privileged, baseline, restricted, \
                metadata.labels[unroot.dev/audit-version]: Invalid value: \"1.25\": must be \"latest\" or \"v1.x\", \
                metadata.labels[unroot.dev/harden]: Invalid value: \"maybe\": must be one of on, warn, off]",
            "details": {"name": "team-a", "kind": "Namespace", "causes": [
                {"reason": "FieldValueInvalid", "field": "metadata.labels[unroot.dev/enforce]",
                 "message": "Invalid value: \"strict\": must be one of privileged, baseline, restricted"},
                {"reason": "FieldValueInvalid", "field": "metadata.labels[unroot.dev/audit-version]",
                 "message": "Invalid value: \"1.25\": must be \"latest\" or \"v1.x\""},
                {"reason": "FieldValueInvalid", "field": "metadata.labels[unroot.dev/harden]",
                 "message": "Invalid value: \"maybe\": must be one of on, warn, off"},
            ]},
        })
    );
    assert_eq!(response["allowed"], false);
    // Upstream's invalid response carries no annotations; unroot adds only
    // the hash of the policy that decided.
    assert_eq!(
        response["auditAnnotations"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["policy-hash"]
    );

    // One error: no brackets. Exempt namespaces are checked too.
    for name in ["team-b", "legacy"] {
        let ns = namespace(name, &[("unroot.dev/harden", "")]);
        let response = server
            .admit("/validate", &review("CREATE", &ns, None, ADMIN.0, ADMIN.1))
            .await;
        assert_eq!(
            response["status"]["message"],
            format!(
                "Namespace \"{name}\" is invalid: metadata.labels[unroot.dev/harden]: Invalid value: \"\": must be one of on, warn, off"
            )
        );
    }
    assert_eq!(
        server
            .metric(r#"unroot_admission_requests_total{kind="Namespace",operation="CREATE",outcome="denied",webhook="validate"}"#)
            .await,
        Some(3.0)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn unchanged_invalid_labels_are_tolerated_on_update() {
    let server = server_with(Document::embedded(), None).await;
    let bad = [
        ("unroot.dev/enforce", "strict"),
        ("unroot.dev/harden", "maybe"),
    ];
    let old = namespace("team-a", &bad);
    let relabelled = namespace("team-a", &[bad[0], bad[1], ("team", "a")]);
    let response = server
        .admit(
            "/validate",
            &review("UPDATE", &relabelled, Some(&old), TENANT.0, TENANT.1),
        )
        .await;
    assert_eq!(response["allowed"], true, "{response:#}");

    for (what, new) in [
        (
            "a different invalid value",
            namespace("team-a", &[bad[0], ("unroot.dev/harden", "mabye")]),
        ),
        (
            "one more invalid label",
            namespace("team-a", &[bad[0], bad[1], ("unroot.dev/warn", "x")]),
        ),
    ] {
        let response = server
            .admit(
                "/validate",
                &review("UPDATE", &new, Some(&old), ADMIN.0, ADMIN.1),
            )
            .await;
        assert_eq!(response["status"]["code"], 422, "{what}");
    }
    let valid = namespace("team-a", &[]);
    let response = server
        .admit(
            "/validate",
            &review("UPDATE", &bad_of(&valid), Some(&valid), ADMIN.0, ADMIN.1),
        )
        .await;
    assert_eq!(response["status"]["code"], 422, "newly invalid");
    server.shutdown().await;
}

fn bad_of(ns: &Value) -> Value {
    let mut ns = ns.clone();
    ns["metadata"]["labels"]["unroot.dev/harden"] = json!("Off");
    ns
}

/// Name, operation, old labels (UPDATE), new labels, requester, allowed.
type WeakeningCase = (
    &'static str,
    &'static str,
    Option<&'static [(&'static str, &'static str)]>,
    &'static [(&'static str, &'static str)],
    (&'static str, &'static [&'static str]),
    bool,
);

#[tokio::test]
#[allow(clippy::too_many_lines)] // one table, one row per rule
async fn only_namespace_label_admins_may_weaken_a_namespace() {
    let mut policy = Document::embedded();
    policy.namespace_label_admins.users = vec!["platform-bot".to_owned()];
    policy.namespace_label_admins.groups = vec!["system:masters".to_owned(), "platform".to_owned()];
    let server = server_with(policy, None).await;
    let restricted: &[(&str, &str)] = &[("unroot.dev/enforce", "restricted")];
    let cases: Vec<WeakeningCase> = vec![
        (
            "tenant: on to warn",
            "UPDATE",
            Some(&[]),
            &[("unroot.dev/harden", "warn")],
            TENANT,
            false,
        ),
        (
            "tenant: on to off",
            "UPDATE",
            Some(&[("unroot.dev/harden", "on")]),
            &[("unroot.dev/harden", "off")],
            TENANT,
            false,
        ),
        (
            "tenant: warn to off",
            "UPDATE",
            Some(&[("unroot.dev/harden", "warn")]),
            &[("unroot.dev/harden", "off")],
            TENANT,
            false,
        ),
        (
            "tenant: off to warn",
            "UPDATE",
            Some(&[("unroot.dev/harden", "off")]),
            &[("unroot.dev/harden", "warn")],
            TENANT,
            true,
        ),
        (
            "tenant: warn to on by removal",
            "UPDATE",
            Some(&[("unroot.dev/harden", "warn")]),
            &[],
            TENANT,
            true,
        ),
        (
            "tenant: other labels of a weak namespace",
            "UPDATE",
            Some(&[("unroot.dev/harden", "off")]),
            &[("unroot.dev/harden", "off"), ("team", "a")],
            TENANT,
            true,
        ),
        (
            "tenant: creates with warn",
            "CREATE",
            None,
            &[("unroot.dev/harden", "warn")],
            TENANT,
            false,
        ),
        (
            "tenant: creates with on",
            "CREATE",
            None,
            &[("unroot.dev/harden", "on")],
            TENANT,
            true,
        ),
        (
            "tenant: creates enforce=privileged",
            "CREATE",
            None,
            &[("unroot.dev/enforce", "privileged")],
            TENANT,
            false,
        ),
        (
            "tenant: creates enforce=restricted",
            "CREATE",
            None,
            restricted,
            TENANT,
            true,
        ),
        (
            "tenant: removes enforce=restricted",
            "UPDATE",
            Some(restricted),
            &[],
            TENANT,
            false,
        ),
        (
            "tenant: pins an older version",
            "UPDATE",
            Some(restricted),
            &[
                ("unroot.dev/enforce", "restricted"),
                ("unroot.dev/enforce-version", "v1.22"),
            ],
            TENANT,
            false,
        ),
        (
            "tenant: lowers warn (hides violations from the tenant)",
            "UPDATE",
            Some(&[("unroot.dev/warn", "restricted")]),
            &[("unroot.dev/warn", "privileged")],
            TENANT,
            false,
        ),
        (
            "tenant: lowers audit (hides violations from the audit)",
            "UPDATE",
            Some(&[]),
            &[("unroot.dev/audit", "baseline")],
            TENANT,
            false,
        ),
        (
            "tenant: pins an older audit version",
            "UPDATE",
            Some(&[]),
            &[("unroot.dev/audit-version", "v1.22")],
            TENANT,
            false,
        ),
        (
            "tenant: creates with warn=privileged",
            "CREATE",
            None,
            &[("unroot.dev/warn", "privileged")],
            TENANT,
            false,
        ),
        (
            "tenant: raises warn",
            "UPDATE",
            Some(&[("unroot.dev/warn", "baseline")]),
            &[("unroot.dev/warn", "restricted")],
            TENANT,
            true,
        ),
        (
            "tenant: allows root",
            "UPDATE",
            Some(&[]),
            &[("unroot.dev/allow-root", "true")],
            TENANT,
            false,
        ),
        (
            "tenant: creates a namespace that allows root",
            "CREATE",
            None,
            &[("unroot.dev/allow-root", "true")],
            TENANT,
            false,
        ),
        (
            "tenant: asks for the trust bundle",
            "UPDATE",
            Some(&[]),
            &[("unroot.dev/trust-bundle", "enabled")],
            TENANT,
            false,
        ),
        (
            "tenant: claims provisioning (disabled in this policy, reserved all the same)",
            "CREATE",
            None,
            &[("unroot.dev/provisioning", "enabled")],
            TENANT,
            false,
        ),
        (
            "tenant: opens the admin port to its namespace",
            "UPDATE",
            Some(&[]),
            &[("unroot.dev/monitoring", "true")],
            TENANT,
            false,
        ),
        (
            "tenant: removes the trust bundle an admin gave",
            "UPDATE",
            Some(&[("unroot.dev/trust-bundle", "enabled")]),
            &[],
            TENANT,
            false,
        ),
        (
            "tenant: an unroot.dev label no rule knows",
            "UPDATE",
            Some(&[]),
            &[("unroot.dev/anything", "x")],
            TENANT,
            false,
        ),
        (
            "admin: allows root",
            "UPDATE",
            Some(&[]),
            &[("unroot.dev/allow-root", "true")],
            ADMIN,
            true,
        ),
        (
            "system:masters",
            "UPDATE",
            Some(&[]),
            &[("unroot.dev/harden", "off")],
            ADMIN,
            true,
        ),
        (
            "group platform",
            "CREATE",
            None,
            &[("unroot.dev/harden", "off")],
            ("someone", &["platform"]),
            true,
        ),
        (
            "user platform-bot",
            "UPDATE",
            Some(restricted),
            &[("unroot.dev/enforce", "privileged")],
            ("platform-bot", &[]),
            true,
        ),
        (
            "a user named like the group",
            "UPDATE",
            Some(&[]),
            &[("unroot.dev/harden", "off")],
            ("platform", &["system:authenticated"]),
            false,
        ),
    ];
    for (name, op, old, new, (user, groups), allowed) in cases {
        let new = namespace("team-a", new);
        let old = old.map(|l| namespace("team-a", l));
        let response = server
            .admit("/validate", &review(op, &new, old.as_ref(), user, groups))
            .await;
        assert_eq!(response["allowed"], allowed, "{name}: {response:#}");
        if !allowed {
            assert_eq!(response["status"]["code"], 403, "{name}");
            assert_eq!(response["status"]["reason"], "Forbidden", "{name}");
            assert_eq!(
                response["status"]["details"],
                json!({"name": "team-a", "kind": "namespaces"}),
                "{name}"
            );
        }
    }

    // The whole message, with both labels weakened at once.
    let new = namespace(
        "team-a",
        &[
            ("unroot.dev/harden", "off"),
            ("unroot.dev/enforce", "baseline"),
        ],
    );
    let old = namespace(
        "team-a",
        &[
            ("unroot.dev/harden", "warn"),
            ("unroot.dev/enforce", "restricted"),
        ],
    );
    let response = server
        .admit(
            "/validate",
            &review("UPDATE", &new, Some(&old), TENANT.0, TENANT.1),
        )
        .await;
    assert_eq!(
        response["status"]["message"],
        "namespaces \"team-a\" is forbidden: only the policy's namespaceLabelAdmins may weaken a namespace, and user \"tenant\" is not one: \
         unroot.dev/harden lowers hardening from warn to off; \
         unroot.dev/enforce lowers Pod Security enforcement from restricted:latest to baseline:latest"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_policy_default_is_what_a_new_namespace_weakens() {
    let mut policy = Document::embedded();
    policy.security_context.harden = unroot::policy::HardenMode::Warn;
    let server = server_with(policy, None).await;
    for (labels, allowed) in [
        (&[("unroot.dev/harden", "warn")][..], true),
        (&[("unroot.dev/harden", "off")][..], false),
    ] {
        let ns = namespace("team-a", labels);
        let response = server
            .admit(
                "/validate",
                &review("CREATE", &ns, None, TENANT.0, TENANT.1),
            )
            .await;
        assert_eq!(response["allowed"], allowed, "{labels:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn raising_enforce_lists_the_pods_that_would_be_denied() {
    let mut policy = Document::embedded();
    policy.pod_security.exemptions.runtime_class_names = vec!["gvisor".to_owned()];
    let host_network = json!({"hostNetwork": true, "containers": [{"name": "c", "image": "x"}]});
    let privileged = json!({"containers": [{"name": "c", "image": "x", "securityContext": {"privileged": true}}]});
    let lister = FakePods::with(vec![
        pod("web-7f9c-2", Some("rs-web"), &plain()),
        pod("web-7f9c-1", Some("rs-web"), &plain()),
        pod("db-0", None, &privileged),
        pod("ok", None, &hardened()),
        pod("net-b", None, &host_network),
        pod("net-a", None, &host_network),
        pod("job-x", Some("job"), &plain()),
        pod(
            "sandboxed",
            None,
            &json!({"runtimeClassName": "gvisor", "containers": [{"name": "c", "image": "x", "securityContext": {"privileged": true}}]}),
        ),
    ]);
    let server = server_with(policy, Some(Arc::clone(&lister))).await;
    let old = namespace("team-a", &[]);
    let new = namespace("team-a", &[("unroot.dev/enforce", "restricted")]);
    // Raising enforcement is not weakening: the tenant may do it.
    let response = server
        .admit(
            "/validate",
            &review("UPDATE", &new, Some(&old), TENANT.0, TENANT.1),
        )
        .await;
    assert_eq!(response["allowed"], true);
    assert_eq!(
        warnings(&response),
        [
            "existing pods in namespace \"team-a\" violate the new PodSecurity enforce level \"restricted:latest\"".to_owned(),
            "db-0: privileged, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile".to_owned(),
            format!("job-x (and 2 other pods): {PLAIN_REASONS}"),
            format!("net-a (and 1 other pod): host namespaces, {PLAIN_REASONS}"),
        ]
    );
    assert_eq!(lister.calls().len(), 1);
    assert_eq!(lister.calls()[0].0, "team-a");
    server.shutdown().await;
}

type Labels = Vec<(&'static str, &'static str)>;

#[tokio::test]
async fn the_dry_run_runs_only_when_enforcement_rises() {
    let lister = FakePods::with(vec![pod("p", None, &plain())]);
    let mut policy = Document::embedded();
    policy.pod_security.exemptions.namespaces = vec!["legacy".to_owned()];
    let server = server_with(policy, Some(Arc::clone(&lister))).await;
    let lv = |level: &'static str, version: &'static str| -> Vec<(&'static str, &'static str)> {
        let mut l = vec![("unroot.dev/enforce", level)];
        if !version.is_empty() {
            l.push(("unroot.dev/enforce-version", version));
        }
        l
    };
    let cases: [(&str, &str, Labels, Labels, bool); 7] = [
        (
            "unchanged",
            "team-a",
            lv("restricted", ""),
            lv("restricted", ""),
            false,
        ),
        (
            "to privileged",
            "team-a",
            lv("restricted", ""),
            lv("privileged", ""),
            false,
        ),
        (
            "lower, same version",
            "team-a",
            lv("restricted", ""),
            lv("baseline", ""),
            false,
        ),
        (
            "higher",
            "team-a",
            lv("baseline", ""),
            lv("restricted", ""),
            true,
        ),
        (
            "latest to v1.37 is a change",
            "team-a",
            lv("restricted", ""),
            lv("restricted", "v1.37"),
            true,
        ),
        (
            "a newer version",
            "team-a",
            lv("restricted", "v1.25"),
            lv("restricted", "v1.30"),
            true,
        ),
        (
            "exempt namespace",
            "legacy",
            lv("baseline", ""),
            lv("restricted", ""),
            false,
        ),
    ];
    for (name, ns, old, new, runs) in cases {
        let before = lister.calls().len();
        let response = server
            .admit(
                "/validate",
                &review(
                    "UPDATE",
                    &namespace(ns, &new),
                    Some(&namespace(ns, &old)),
                    ADMIN.0,
                    ADMIN.1,
                ),
            )
            .await;
        assert_eq!(response["allowed"], true, "{name}");
        assert_eq!(lister.calls().len() - before, usize::from(runs), "{name}");
        if ns == "legacy" {
            assert_eq!(
                warnings(&response),
                [
                    "namespace \"legacy\" is exempt from Pod Security, and the policy (enforce=restricted:latest) will be ignored"
                ],
                "{name}"
            );
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn an_exempt_namespace_is_warned_on_create() {
    let mut policy = Document::embedded();
    policy.pod_security.exemptions.namespaces = vec!["legacy".to_owned()];
    let server = server_with(policy, None).await;
    let ns = namespace(
        "legacy",
        &[
            ("unroot.dev/enforce", "restricted"),
            ("unroot.dev/audit-version", "v1.25"),
        ],
    );
    // Only an administrator may create it: the name is reserved.
    let refused = server
        .admit(
            "/validate",
            &review("CREATE", &ns, None, TENANT.0, TENANT.1),
        )
        .await;
    assert_eq!(refused["allowed"], false, "{refused:#}");
    assert_eq!(
        refused["status"]["message"],
        "namespaces \"legacy\" is forbidden: only the policy's namespaceLabelAdmins may create it, and user \"tenant\" is not one: the name \"legacy\" is on the policy's podSecurity.exemptions.namespaces, so pods there are not judged for their name alone"
    );
    let response = server
        .admit("/validate", &review("CREATE", &ns, None, ADMIN.0, ADMIN.1))
        .await;
    assert_eq!(
        warnings(&response),
        [
            "namespace \"legacy\" is exempt from Pod Security, and the policy (enforce=restricted:latest, audit=restricted:v1.25) will be ignored"
        ]
    );
    // Equivalent to the defaults: nothing to say.
    let ns = namespace("legacy", &[("unroot.dev/enforce", "baseline")]);
    let response = server
        .admit("/validate", &review("CREATE", &ns, None, ADMIN.0, ADMIN.1))
        .await;
    assert_eq!(warnings(&response), Vec::<String>::new());
    server.shutdown().await;
}

/// A lister that answers after `delay`, whatever the deadline (like a cache).
fn slow(delay: Duration, pods: Vec<Pod>) -> Arc<FakePods> {
    Arc::new(FakePods {
        pods,
        delay,
        ..FakePods::default()
    })
}

fn raise() -> (Value, Value) {
    (
        namespace("team-a", &[("unroot.dev/enforce", "restricted")]),
        namespace("team-a", &[]),
    )
}

#[tokio::test]
async fn the_budget_is_a_second_or_half_the_api_servers_timeout() {
    let three = || {
        vec![
            pod("a", None, &plain()),
            pod("b", None, &plain()),
            pod("c", None, &plain()),
        ]
    };
    let (new, old) = raise();
    let request = review("UPDATE", &new, Some(&old), ADMIN.0, ADMIN.1);
    let cut = "new PodSecurity enforce level only checked against the first 1 of 3 existing pods";
    // Path, listing time, whether the budget runs out, the budget given
    // to the lister (within 50 ms).
    let cases = [
        ("/validate", 300, false, 1000),
        ("/validate", 1200, true, 1000),
        ("/validate?timeout=30s", 1200, true, 1000),
        ("/validate?timeout=30s", 500, false, 1000),
        ("/validate?timeout=400ms", 300, true, 200),
        ("/validate?timeout=2s", 300, false, 1000),
    ];
    for (path, delay, cut_short, budget) in cases {
        let lister = slow(Duration::from_millis(delay), three());
        let server = server_with(Document::embedded(), Some(Arc::clone(&lister))).await;
        let response = server.admit(path, &request).await;
        let got = warnings(&response);
        let what = format!("{path}, listing {delay} ms: {got:?}");
        assert_eq!(
            got.first().map(String::as_str) == Some(cut),
            cut_short,
            "{what}"
        );
        let group = if cut_short {
            format!("a: {PLAIN_REASONS}")
        } else {
            format!("a (and 2 other pods): {PLAIN_REASONS}")
        };
        assert_eq!(got.last(), Some(&group), "{what}");
        let given = lister.calls()[0].1;
        assert!(
            given <= Duration::from_millis(budget) && given > Duration::from_millis(budget - 50),
            "{what}: lister given {given:?}"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_failed_list_is_a_warning_not_a_denial() {
    let (new, old) = raise();
    let request = review("UPDATE", &new, Some(&old), ADMIN.0, ADMIN.1);
    let failing = Arc::new(FakePods {
        fail: Some("forbidden".to_owned()),
        ..FakePods::default()
    });
    let past_deadline = Arc::new(FakePods {
        delay: Duration::from_millis(300),
        honour_deadline: true,
        ..FakePods::default()
    });
    for (what, path, lister) in [
        ("the API server refuses", "/validate", Some(failing)),
        (
            "the list outlives the budget",
            "/validate?timeout=200ms",
            Some(past_deadline),
        ),
        ("no cluster", "/validate", None),
    ] {
        let server = server_with(Document::embedded(), lister).await;
        let response = server.admit(path, &request).await;
        assert_eq!(response["allowed"], true, "{what}");
        assert_eq!(
            warnings(&response),
            ["failed to list pods while checking new PodSecurity enforce level"],
            "{what}"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn at_most_3000_pods_are_checked_and_one_per_controller_goes_first() {
    // 3000 compliant pods of one ReplicaSet, listed first, then two that
    // violate: without upstream's ordering, the cap would hide them.
    let compliant = hardened();
    let mut pods: Vec<Pod> = (0..3000)
        .map(|i| pod(&format!("rs-{i:04}"), Some("rs"), &compliant))
        .collect();
    pods.push(pod("free", None, &plain()));
    pods.push(pod("b-0", Some("other-rs"), &plain()));
    let lister = FakePods::with(pods);
    let server = server_with(Document::embedded(), Some(lister)).await;
    let (new, old) = raise();
    let response = server
        .admit(
            "/validate",
            &review("UPDATE", &new, Some(&old), ADMIN.0, ADMIN.1),
        )
        .await;
    assert_eq!(
        warnings(&response),
        [
            "new PodSecurity enforce level only checked against the first 3000 of 3002 existing pods".to_owned(),
            "existing pods in namespace \"team-a\" violate the new PodSecurity enforce level \"restricted:latest\"".to_owned(),
            format!("b-0 (and 1 other pod): {PLAIN_REASONS}"),
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn other_subresources_operations_and_excluded_namespaces_pass() {
    let lister = FakePods::with(vec![pod("p", None, &plain())]);
    let server = server_with(Document::embedded(), Some(Arc::clone(&lister))).await;
    let bad = namespace("team-a", &[("unroot.dev/enforce", "strict")]);
    let mut other = review(
        "UPDATE",
        &bad,
        Some(&namespace("team-a", &[])),
        TENANT.0,
        TENANT.1,
    );
    other["request"]["subResource"] = json!("scale");
    let delete = review("DELETE", &bad, None, TENANT.0, TENANT.1);
    let kube_system = namespace(
        "kube-system",
        &[
            ("unroot.dev/harden", "off"),
            ("unroot.dev/enforce", "strict"),
        ],
    );
    let excluded = review(
        "UPDATE",
        &kube_system,
        Some(&namespace("kube-system", &[])),
        TENANT.0,
        TENANT.1,
    );
    for (what, request) in [
        ("another subresource", other),
        ("DELETE", delete),
        ("kube-system", excluded),
    ] {
        let response = server.admit("/validate", &request).await;
        assert_eq!(response["allowed"], true, "{what}: {response:#}");
        assert!(response.get("warnings").is_none(), "{what}");
    }
    assert!(lister.calls().is_empty());
    server.shutdown().await;
}

/// The API server keeps the labels a `status` or `finalize` update sends:
/// both are routes to a namespace's labels, guarded like an UPDATE.
#[tokio::test]
async fn the_status_and_finalize_subresources_are_guarded_like_an_update() {
    let server = server_with(Document::embedded(), None).await;
    let old = namespace("team-a", &[("unroot.dev/enforce", "restricted")]);
    for sub in ["status", "finalize"] {
        let weakened = namespace(
            "team-a",
            &[
                ("unroot.dev/enforce", "privileged"),
                ("unroot.dev/harden", "off"),
            ],
        );
        let mut request = review("UPDATE", &weakened, Some(&old), TENANT.0, TENANT.1);
        request["request"]["subResource"] = json!(sub);
        let response = server.admit("/validate", &request).await;
        assert_eq!(response["allowed"], false, "{sub}: {response:#}");
        assert_eq!(
            response["status"]["message"],
            "namespaces \"team-a\" is forbidden: only the policy's namespaceLabelAdmins may weaken a namespace, and user \"tenant\" is not one: unroot.dev/harden lowers hardening from on to off; unroot.dev/enforce lowers Pod Security enforcement from restricted:latest to privileged:latest",
            "{sub}"
        );
        let invalid = namespace("team-a", &[("unroot.dev/enforce", "strict")]);
        let mut request = review("UPDATE", &invalid, Some(&old), ADMIN.0, ADMIN.1);
        request["request"]["subResource"] = json!(sub);
        let response = server.admit("/validate", &request).await;
        assert_eq!(response["status"]["code"], 422, "{sub}: {response:#}");
        // The namespace controller's finalize, and an update that changes
        // no label, pass for anyone.
        let mut request = review(
            "UPDATE",
            &old,
            Some(&old),
            "system:serviceaccount:kube-system:namespace-controller",
            &[],
        );
        request["request"]["subResource"] = json!(sub);
        let response = server.admit("/validate", &request).await;
        assert_eq!(response["allowed"], true, "{sub}: {response:#}");
    }
    server.shutdown().await;
}

/// A name on an exclusion or exemption list is not judged for its name
/// alone: whoever created such a namespace first would run pods there
/// unchecked, so only namespaceLabelAdmins may create one.
#[tokio::test]
async fn reserved_namespace_names_are_created_only_by_admins() {
    let mut policy = Document::embedded();
    policy
        .webhook
        .excluded_namespaces
        .push("cert-manager".to_owned());
    policy.pod_security.exemptions.namespaces = vec!["legacy".to_owned()];
    let server = server_with(policy, None).await;
    for (name, list) in [
        ("kube-system", "webhook.excludedNamespaces"),
        ("unroot", "webhook.excludedNamespaces"),
        ("cert-manager", "webhook.excludedNamespaces"),
        ("legacy", "podSecurity.exemptions.namespaces"),
    ] {
        let ns = namespace(name, &[]);
        let response = server
            .admit(
                "/validate",
                &review("CREATE", &ns, None, TENANT.0, TENANT.1),
            )
            .await;
        assert_eq!(response["allowed"], false, "{name}: {response:#}");
        assert_eq!(response["status"]["code"], 403, "{name}");
        assert_eq!(
            response["status"]["message"],
            format!(
                "namespaces \"{name}\" is forbidden: only the policy's namespaceLabelAdmins may create it, and user \"tenant\" is not one: the name \"{name}\" is on the policy's {list}, so pods there are not judged for their name alone"
            ),
        );
        let response = server
            .admit("/validate", &review("CREATE", &ns, None, ADMIN.0, ADMIN.1))
            .await;
        assert_eq!(response["allowed"], true, "{name}: {response:#}");
    }
    // A name on no list is anyone's to create.
    let ns = namespace("team-b", &[]);
    let response = server
        .admit(
            "/validate",
            &review("CREATE", &ns, None, TENANT.0, TENANT.1),
        )
        .await;
    assert_eq!(response["allowed"], true, "{response:#}");
    server.shutdown().await;
}

/// Before Kubernetes 1.21 the API server does not set
/// kubernetes.io/metadata.name, by which the webhooks exclude namespaces:
/// a namespace may not claim another's name with it.
#[tokio::test]
async fn a_namespace_cannot_claim_another_name_with_the_name_label() {
    let server = server_with(Document::embedded(), None).await;
    let spoof = namespace("team-c", &[("kubernetes.io/metadata.name", "kube-system")]);
    for (user, groups) in [TENANT, ADMIN] {
        let response = server
            .admit("/validate", &review("CREATE", &spoof, None, user, groups))
            .await;
        assert_eq!(response["status"]["code"], 422, "{user}: {response:#}");
        assert_eq!(
            response["status"]["message"],
            "Namespace \"team-c\" is invalid: metadata.labels[kubernetes.io/metadata.name]: Invalid value: \"kube-system\": must be the namespace's own name \"team-c\"",
        );
    }
    let own = namespace("team-c", &[("kubernetes.io/metadata.name", "team-c")]);
    let response = server
        .admit(
            "/validate",
            &review("CREATE", &own, None, TENANT.0, TENANT.1),
        )
        .await;
    assert_eq!(response["allowed"], true, "{response:#}");
    server.shutdown().await;
}

/// A namespace override (here: IPC_LOCK) selected by name must not be
/// picked up by whoever creates a namespace of that name, nor by relabelling.
#[tokio::test]
async fn what_the_policy_selects_for_a_namespace_changes_only_by_admins() {
    let mut policy = Document::embedded();
    policy.security_context.namespace_overrides = vec![
        serde_json::from_value(json!({
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "hpc"}},
        "allowedCapabilities": ["NET_BIND_SERVICE", "IPC_LOCK"]}))
        .expect("an override"),
    ];
    policy.security_context.namespace_overrides.push(
        serde_json::from_value(json!({
            "namespaceSelector": {"matchLabels": {"team": "legacy"}},
            "runAsUser": 1000}))
        .expect("an override"),
    );
    let server = server_with(policy, None).await;
    let hpc = namespace("hpc", &[("kubernetes.io/metadata.name", "hpc")]);
    let response = server
        .admit(
            "/validate",
            &review("CREATE", &hpc, None, TENANT.0, TENANT.1),
        )
        .await;
    assert_eq!(response["allowed"], false, "{response:#}");
    assert!(
        response["status"]["message"].as_str().unwrap_or_default().ends_with(
            "the labels change what the policy selects for the namespace: now matched by securityContext.namespaceOverrides[0]"
        ),
        "{response:#}"
    );
    let old = namespace("team-d", &[]);
    let new = namespace("team-d", &[("team", "legacy")]);
    let response = server
        .admit(
            "/validate",
            &review("UPDATE", &new, Some(&old), TENANT.0, TENANT.1),
        )
        .await;
    assert_eq!(response["allowed"], false, "{response:#}");
    for (user, groups) in [ADMIN] {
        let response = server
            .admit("/validate", &review("CREATE", &hpc, None, user, groups))
            .await;
        assert_eq!(response["allowed"], true, "{response:#}");
    }
    // Labels no selector reads stay the tenant's.
    let new = namespace("team-d", &[("team", "web")]);
    let response = server
        .admit(
            "/validate",
            &review("UPDATE", &new, Some(&old), TENANT.0, TENANT.1),
        )
        .await;
    assert_eq!(response["allowed"], true, "{response:#}");
    server.shutdown().await;
}
