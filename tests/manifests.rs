//! The shipped install, `kubectl apply -k manifests/`, rendered the way
//! kubectl renders it (`kubectl kustomize`, built into kubectl, which `make
//! test` needs anyway), and held to what the README and rbac.yaml promise:
//! unroot's own pods run the way unroot demands of others, stay available
//! through rollouts and drains, the webhooks ship failing open and name the
//! pod and namespace webhooks that fail closed once served, never covering
//! the namespaces a cluster needs to recover, the observe overlay changes
//! only the policy and what fails closed, RBAC names what it can and
//! grants nothing broad, and the e2e overlay changes only what its node
//! demands.
//!
//! The e2e suite applies the same rendering to a real API server
//! (`--dry-run=server`, then for real; e2e/scenarios/50-self.sh).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};
use unroot::pss::{self, Level, LevelVersion, Version};

const NAMESPACE: &str = "unroot";
/// The namespaces the base install excludes, and the only ones: the
/// cluster's own and unroot's (it must start while it is down), which exist
/// whenever the webhooks do. Excluding a name that may not exist yet would
/// let whoever creates it first run pods there unchecked.
const EXCLUDED: [&str; 2] = ["kube-system", "unroot"];

fn render(dir: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let out = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned()))
        .arg("kustomize")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("failed to run `kubectl kustomize` (kubectl is needed for make test): {e}")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("kustomize prints UTF-8");
    serde_saphyr::from_multiple::<Value>(&text)
        .expect("kustomize prints YAML")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn manifests() -> &'static [Value] {
    static OBJECTS: OnceLock<Vec<Value>> = OnceLock::new();
    OBJECTS.get_or_init(|| render("manifests"))
}

fn cert_manager_mode() -> &'static [Value] {
    static OBJECTS: OnceLock<Vec<Value>> = OnceLock::new();
    OBJECTS.get_or_init(|| render("tests/fixtures/cert-manager-mode"))
}

fn observe_mode() -> &'static [Value] {
    static OBJECTS: OnceLock<Vec<Value>> = OnceLock::new();
    OBJECTS.get_or_init(|| render("tests/fixtures/observe-mode"))
}

fn overlay() -> &'static [Value] {
    static OBJECTS: OnceLock<Vec<Value>> = OnceLock::new();
    OBJECTS.get_or_init(|| render("e2e/overlay"))
}

fn key(o: &Value) -> (String, String, String) {
    let s = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    (s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("manifests/ has no {kind} {name}"))
}

fn of_kind<'a>(objects: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
    objects.iter().filter(move |o| o["kind"] == kind)
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn deployment() -> &'static Value {
    find(manifests(), "Deployment", "unroot")
}

fn pod_spec() -> &'static Value {
    &deployment()["spec"]["template"]["spec"]
}

fn container() -> &'static Value {
    let containers = pod_spec()["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one container: unroot");
    &containers[0]
}

fn args() -> Vec<&'static str> {
    strings(&container()["args"])
}

/// The value of `--flag=value` (or `--flag value`) in the container's args.
fn flag(name: &str) -> Option<&'static str> {
    let args = args();
    let prefix = format!("{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix(&prefix)
            .or_else(|| (*a == name).then(|| args.get(i + 1).copied()).flatten())
    })
}

fn seconds(duration: &str) -> u64 {
    humantime::parse_duration(duration)
        .unwrap_or_else(|e| panic!("{duration:?} is not a duration: {e}"))
        .as_secs()
}

#[test]
fn one_apply_creates_every_object_of_the_install() {
    let objects = manifests();
    let got: BTreeSet<_> = objects.iter().map(key).collect();
    let want: BTreeSet<_> = [
        ("Namespace", "", "unroot"),
        ("ServiceAccount", NAMESPACE, "unroot"),
        ("ClusterRole", "", "unroot"),
        ("ClusterRole", "", "unroot-identity"),
        ("ClusterRoleBinding", "", "unroot"),
        ("Role", NAMESPACE, "unroot"),
        ("RoleBinding", NAMESPACE, "unroot"),
        ("ConfigMap", NAMESPACE, "unroot-policy"),
        ("Secret", NAMESPACE, "unroot-tls"),
        ("Lease", NAMESPACE, "unroot-certs"),
        ("Service", NAMESPACE, "unroot"),
        ("Deployment", NAMESPACE, "unroot"),
        ("PodDisruptionBudget", NAMESPACE, "unroot"),
        ("NetworkPolicy", NAMESPACE, "unroot"),
        ("MutatingWebhookConfiguration", "", "unroot"),
        ("ValidatingWebhookConfiguration", "", "unroot"),
        ("MutatingWebhookConfiguration", "", "unroot-fail-closed"),
        ("ValidatingWebhookConfiguration", "", "unroot-fail-closed"),
    ]
    .into_iter()
    .map(|(k, ns, n)| (k.to_owned(), ns.to_owned(), n.to_owned()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(objects.len(), want.len(), "no object twice");
    // The uninstall checks (and users) find everything by this label.
    for o in objects {
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/name"],
            "unroot",
            "{:?} lacks app.kubernetes.io/name=unroot",
            key(o)
        );
    }
}

#[test]
fn the_namespace_holds_unroots_pods_to_restricted_and_is_excluded_by_name() {
    let labels = &find(manifests(), "Namespace", NAMESPACE)["metadata"]["labels"];
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    // What the webhooks' exclusion selects on, also before 1.21.
    assert_eq!(labels["kubernetes.io/metadata.name"], NAMESPACE);
}

#[test]
fn unroot_runs_the_way_it_makes_every_pod_run() {
    let pod = pod_spec();
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert!(
        psc["runAsUser"].as_u64().is_some_and(|u| u > 0),
        "a non-zero runAsUser"
    );
    assert!(
        psc["runAsGroup"].as_u64().is_some_and(|g| g > 0),
        "a non-zero runAsGroup"
    );
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_ne!(pod[field], true, "{field}");
    }
    assert_eq!(
        pod["enableServiceLinks"], false,
        "no UNROOT_* service variables"
    );
    for c in pod["containers"].as_array().into_iter().flatten() {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_ne!(sc["privileged"], true);
        assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
        assert!(sc["capabilities"]["add"].is_null(), "no capability added");
    }
    for v in pod["volumes"].as_array().into_iter().flatten() {
        assert!(v["hostPath"].is_null(), "no hostPath volume");
    }

    // And unroot's own evaluator agrees: restricted, latest, no violation.
    let meta: ObjectMeta =
        serde_json::from_value(deployment()["spec"]["template"]["metadata"].clone()).unwrap();
    let spec: PodSpec = serde_json::from_value(pod.clone()).unwrap();
    let violations = pss::evaluate(
        &meta,
        &spec,
        LevelVersion {
            level: Level::Restricted,
            version: Version::Latest,
        },
    );
    assert!(
        violations.is_empty(),
        "restricted violations: {violations:?}"
    );
}

#[test]
fn unroot_is_highly_available() {
    let spec = &deployment()["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], 1);
    let pod = pod_spec();
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    let labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(
        spec["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "unroot"
    );
    assert_eq!(labels["app.kubernetes.io/name"], "unroot");
    let spread = pod["topologySpreadConstraints"]
        .as_array()
        .expect("topologySpreadConstraints");
    assert!(
        spread
            .iter()
            .any(|t| t["topologyKey"] == "kubernetes.io/hostname"
                && t["whenUnsatisfiable"] == "ScheduleAnyway"
                && t["maxSkew"] == 1
                && t["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]),
        "spread over nodes, ScheduleAnyway: {spread:?}"
    );

    // The PodDisruptionBudget lets a drain take one replica at a time.
    let pdb = find(manifests(), "PodDisruptionBudget", "unroot");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        spec["selector"]["matchLabels"]
    );
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
}

#[test]
fn probes_are_on_the_admin_port_and_shutdown_drains_before_the_kill() {
    let c = container();
    let admin = c["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == "admin"))
        .expect("an admin port");
    let admin_listen = flag("--admin-listen").expect("--admin-listen");
    assert!(
        admin_listen.ends_with(&format!(":{}", admin["containerPort"])),
        "--admin-listen {admin_listen} is the admin port {admin}"
    );
    // The dashboard, the readiness report and every POST stay on the pod's
    // loopback (kubectl port-forward), and no port is published for them.
    let dashboard: std::net::SocketAddr = flag("--dashboard-listen")
        .expect("--dashboard-listen")
        .parse()
        .expect("an address");
    assert!(dashboard.ip().is_loopback(), "{dashboard}");
    assert!(
        c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|p| p["containerPort"] != dashboard.port()),
        "{dashboard} is not a container port"
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }
    let webhook = c["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == "webhook"))
        .expect("a webhook port");
    let listen = flag("--listen").expect("--listen");
    assert!(
        listen.ends_with(&format!(":{}", webhook["containerPort"])),
        "{listen}"
    );

    assert!(
        args().contains(&"--manage-certs"),
        "unroot manages its certificate"
    );
    let delay = seconds(flag("--shutdown-delay").expect("--shutdown-delay"));
    let drain = seconds(flag("--drain-timeout").expect("--drain-timeout"));
    assert!(
        delay >= 3,
        "endpoints need a few seconds to drop the replica"
    );
    let grace = pod_spec()["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("a grace period");
    assert!(
        grace > delay + drain,
        "grace {grace} s > delay {delay} s + drain {drain} s"
    );

    let env: BTreeSet<_> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["valueFrom"]["fieldRef"]["fieldPath"].is_string())
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(env.contains(&("POD_NAME", "metadata.name")), "{env:?}");
    assert!(
        env.contains(&("POD_NAMESPACE", "metadata.namespace")),
        "{env:?}"
    );

    let resources = &c["resources"];
    for path in ["/requests/cpu", "/requests/memory", "/limits/memory"] {
        assert!(resources.pointer(path).is_some(), "resources{path}");
    }
}

/// Every webhook of both configurations, with the resources its rules name.
fn webhooks() -> Vec<(&'static str, &'static Value, BTreeSet<&'static str>)> {
    webhooks_of(manifests())
}

fn webhooks_of(
    objects: &'static [Value],
) -> Vec<(&'static str, &'static Value, BTreeSet<&'static str>)> {
    let mut all = Vec::new();
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        for w in find(objects, kind, "unroot")["webhooks"]
            .as_array()
            .expect("webhooks")
        {
            let resources = w["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| strings(&r["resources"]))
                .collect();
            all.push((w["name"].as_str().expect("a name"), w, resources));
        }
    }
    all
}

/// The webhooks a configuration's `unroot.dev/fail-closed` names.
fn fail_closed(kind: &str) -> BTreeSet<&'static str> {
    find(manifests(), kind, "unroot")["metadata"]["annotations"]["unroot.dev/fail-closed"]
        .as_str()
        .map(|list| list.split(',').map(str::trim).collect())
        .unwrap_or_default()
}

#[test]
fn pod_and_namespace_webhooks_fail_closed_once_served_and_everything_else_fails_open() {
    let webhooks = webhooks();
    let names: Vec<_> = webhooks.iter().map(|(n, ..)| *n).collect();
    assert_eq!(
        names,
        [
            "mutate.pods.unroot.dev",
            "validate.pods.unroot.dev",
            "validate.namespaces.unroot.dev",
            "validate.workloads.unroot.dev",
            "validate.policy.unroot.dev",
            "serving-check.unroot.dev"
        ]
    );
    // Every webhook ships failing open: until a replica of this install has
    // answered a review, nothing is blocked (an image that cannot be pulled
    // stops no pod). unroot then sets Fail on the ones the annotation names.
    let listed: BTreeSet<_> = fail_closed("MutatingWebhookConfiguration")
        .union(&fail_closed("ValidatingWebhookConfiguration"))
        .copied()
        .collect();
    assert_eq!(
        fail_closed("MutatingWebhookConfiguration"),
        BTreeSet::from(["mutate.pods.unroot.dev"]),
        "each configuration names its own webhooks"
    );
    for (name, w, resources) in &webhooks {
        assert_eq!(w["failurePolicy"], "Ignore", "{name}: shipped failing open");
        // Namespaces fail closed too: failing open would let a tenant who
        // may label its namespace turn hardening off while unroot is down.
        let fails_closed = resources
            .iter()
            .any(|r| *r == "pods" || r.starts_with("pods/") || *r == "namespaces");
        assert_eq!(
            listed.contains(name),
            fails_closed,
            "{name}: fails closed once served exactly when it covers pods or namespaces"
        );
        let service = &w["clientConfig"]["service"];
        assert_eq!(
            (&service["namespace"], &service["name"]),
            (&json!(NAMESPACE), &json!("unroot")),
            "{name}"
        );
        assert_eq!(service["port"], 443, "{name}");
        assert!(
            w["clientConfig"]["url"].is_null(),
            "{name}: through the Service"
        );
        assert!(
            w["timeoutSeconds"].as_u64().is_some_and(|t| t <= 10),
            "{name}: a short timeout"
        );
    }
    // The Service's port 443 leads to the container's webhook port.
    let service = find(manifests(), "Service", "unroot");
    assert_eq!(
        service["spec"]["selector"]["app.kubernetes.io/name"],
        "unroot"
    );
    assert!(
        service["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["port"] == 443 && p["targetPort"] == "webhook"),
        "Service port 443 -> webhook"
    );
}

fn policy_of(objects: &[Value]) -> unroot::policy::Document {
    let shipped = find(objects, "ConfigMap", "unroot-policy")["data"]["policy.yaml"]
        .as_str()
        .expect("the policy ConfigMap has policy.yaml");
    unroot::policy::Document::from_yaml(shipped).expect("the shipped policy is valid")
}

fn excluded_by_policy(objects: &[Value]) -> BTreeSet<String> {
    policy_of(objects)
        .webhook
        .excluded_namespaces
        .into_iter()
        .collect()
}

/// The names a webhook's namespaceSelector excludes.
fn excluded_by(w: &Value) -> BTreeSet<String> {
    w["namespaceSelector"]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
        .flat_map(|e| strings(&e["values"]))
        .map(str::to_owned)
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn the_shipped_policy_excludes_what_the_webhooks_exclude() {
    assert_eq!(excluded_by_policy(manifests()), names(&EXCLUDED));
}

#[test]
fn no_webhook_excludes_a_namespace_that_may_not_exist_yet() {
    for (name, w, resources) in webhooks() {
        if resources.contains("leases") {
            // The serving check: only the dry run that labels unroot's own
            // Lease, in unroot's namespace, reaches it, and it fails open.
            assert_eq!(resources, BTreeSet::from(["leases"]), "{name}");
            assert_eq!(
                w["objectSelector"]["matchExpressions"],
                json!([{"key": "unroot.dev/serving-check", "operator": "Exists"}]),
                "{name}"
            );
            assert_eq!(w["sideEffects"], "None", "{name}");
            continue;
        }
        if resources.contains("configmaps") {
            // The policy check selects on an object label, fails open, and
            // must see unroot's own namespace, where the policy lives.
            assert!(
                w["objectSelector"]["matchLabels"]["unroot.dev/policy"] == "true",
                "{name}"
            );
            continue;
        }
        assert_eq!(excluded_by(w), names(&EXCLUDED), "{name}");
        assert!(
            w["namespaceSelector"]["matchLabels"].is_null(),
            "{name}: no opt-in label; every other namespace is covered"
        );
    }
}

#[test]
fn every_route_to_a_namespaces_labels_is_guarded() {
    let (_, w, resources) = webhooks()
        .into_iter()
        .find(|(name, ..)| *name == "validate.namespaces.unroot.dev")
        .expect("the namespace webhook");
    assert_eq!(
        resources,
        BTreeSet::from(["namespaces", "namespaces/status", "namespaces/finalize"])
    );
    let operations: BTreeSet<&str> = w["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| strings(&r["operations"]))
        .collect();
    assert_eq!(operations, BTreeSet::from(["CREATE", "UPDATE"]));
}

#[test]
fn the_cert_manager_mode_excludes_its_namespace_from_pods_and_reserves_its_name() {
    let objects = cert_manager_mode();
    let with_cert_manager = names(&["kube-system", "unroot", "cert-manager"]);
    assert_eq!(excluded_by_policy(objects), with_cert_manager);
    for (name, w, resources) in webhooks_of(objects) {
        if resources.contains("configmaps") || resources.contains("leases") {
            continue;
        }
        let want = if resources.contains("namespaces") {
            // Creating the cert-manager namespace stays reserved: the
            // namespace webhook must see it.
            names(&EXCLUDED)
        } else {
            with_cert_manager.clone()
        };
        assert_eq!(excluded_by(w), want, "{name}");
    }
    // No second policy ConfigMap: the component's replaces the base's.
    assert_eq!(of_kind(objects, "ConfigMap").count(), 1);
}

/// One RBAC rule as a comparable row: (apiGroups, resources, resourceNames, verbs).
type Rule = (Vec<String>, Vec<String>, Vec<String>, Vec<String>);

fn rules(o: &Value) -> Vec<Rule> {
    let list = |v: &Value| {
        strings(v)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    o["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                list(&r["apiGroups"]),
                list(&r["resources"]),
                list(&r["resourceNames"]),
                list(&r["verbs"]),
            )
        })
        .collect()
}

fn rule(groups: &[&str], resources: &[&str], names: &[&str], verbs: &[&str]) -> Rule {
    let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    (own(groups), own(resources), own(names), own(verbs))
}

#[test]
fn rbac_grants_exactly_what_unroot_uses_and_no_wildcard() {
    let objects = manifests();
    let roles: Vec<_> = of_kind(objects, "ClusterRole")
        .chain(of_kind(objects, "Role"))
        .collect();
    for role in &roles {
        for (groups, resources, names, verbs) in rules(role) {
            for word in groups.iter().chain(&resources).chain(&names).chain(&verbs) {
                assert!(!word.contains('*'), "{:?}: wildcard {word:?}", key(role));
            }
            for verb in ["escalate", "bind", "impersonate", "deletecollection"] {
                assert!(!verbs.iter().any(|v| v == verb), "{:?}: {verb}", key(role));
            }
            // create cannot be limited by name: a rule that names objects and
            // grants create would promise more than RBAC checks.
            assert!(
                names.is_empty() || !verbs.iter().any(|v| v == "create"),
                "{:?}",
                key(role)
            );
            assert!(
                !resources.iter().any(|r| r == "secrets") || !names.is_empty(),
                "{:?}: Secrets only by name",
                key(role)
            );
        }
    }

    let cluster = find(objects, "ClusterRole", "unroot");
    assert_eq!(
        rules(cluster),
        [
            rule(&[""], &["namespaces"], &[], &["get", "list", "watch"]),
            rule(&[""], &["pods"], &[], &["get", "list", "watch"]),
            rule(
                &["admissionregistration.k8s.io"],
                &[
                    "mutatingwebhookconfigurations",
                    "validatingwebhookconfigurations"
                ],
                &["unroot", "unroot-fail-closed"],
                &["get", "list", "watch", "patch"]
            ),
        ]
    );
    let own = find(objects, "Role", "unroot");
    assert_eq!(own["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        rules(own),
        [
            rule(
                &[""],
                &["configmaps"],
                &["unroot-policy"],
                &["get", "list", "watch"]
            ),
            rule(
                &[""],
                &["secrets"],
                &["unroot-tls"],
                &["get", "list", "watch", "update", "patch"]
            ),
            rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["unroot-certs"],
                &["get", "list", "watch", "update", "patch"]
            ),
            rule(&["events.k8s.io"], &["events"], &[], &["create", "patch"]),
        ]
    );
    let identity = find(objects, "ClusterRole", "unroot-identity");
    assert_eq!(
        rules(identity),
        [rule(
            &[""],
            &["configmaps"],
            &[],
            &["create", "patch", "list", "delete"]
        )]
    );

    // Bindings: the ClusterRole cluster-wide and the Role in its namespace,
    // both to unroot's ServiceAccount only; unroot-identity is bound by the
    // platform per provisioning namespace, never here.
    let subject = json!([{"kind": "ServiceAccount", "name": "unroot", "namespace": NAMESPACE}]);
    let bindings: Vec<_> = of_kind(objects, "ClusterRoleBinding")
        .chain(of_kind(objects, "RoleBinding"))
        .collect();
    assert_eq!(bindings.len(), 2);
    for b in bindings {
        assert_eq!(b["subjects"], subject, "{:?}", key(b));
        let want = if b["kind"] == "RoleBinding" {
            "Role"
        } else {
            "ClusterRole"
        };
        assert_eq!(b["roleRef"]["kind"], want, "{:?}", key(b));
        assert_eq!(b["roleRef"]["name"], "unroot", "{:?}", key(b));
    }
    assert_eq!(
        find(objects, "ServiceAccount", "unroot")["metadata"]["namespace"],
        NAMESPACE
    );
    assert_eq!(pod_spec()["serviceAccountName"], "unroot");
}

#[test]
fn the_objects_rbac_names_are_shipped_and_empty() {
    let objects = manifests();
    let secret = find(objects, "Secret", "unroot-tls");
    assert!(
        secret["data"].is_null() && secret["stringData"].is_null(),
        "no key material in git"
    );
    // Opaque: a kubernetes.io/tls Secret must hold tls.crt and tls.key.
    assert_eq!(secret["type"], "Opaque");
    let lease = find(objects, "Lease", "unroot-certs");
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "nobody holds it yet"
    );
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        for w in find(objects, kind, "unroot")["webhooks"]
            .as_array()
            .unwrap()
        {
            assert!(
                w["clientConfig"]["caBundle"].is_null(),
                "unroot writes the caBundle"
            );
            // unroot turns a failing-open original off by its
            // objectSelector once its failing-closed copy is in force; the
            // manifests setting one would turn it back on at every apply.
            if fail_closed(kind).contains(w["name"].as_str().unwrap()) {
                assert!(w["objectSelector"].is_null(), "{}", w["name"]);
            }
        }
        // Where the failing-closed copies go: no webhooks field at all, so
        // that no apply of the manifests touches what unroot adds.
        let twin = find(objects, kind, "unroot-fail-closed");
        assert!(twin.get("webhooks").is_none(), "{kind}: {twin}");
    }

    let policy = find(objects, "ConfigMap", "unroot-policy");
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("webhook-config/policy.yaml"),
    )
    .unwrap();
    assert_eq!(
        policy["data"]["policy.yaml"],
        shipped.as_str(),
        "the ConfigMap is policy.yaml as is"
    );
    assert_eq!(policy["metadata"]["labels"]["unroot.dev/policy"], "true");
}

#[test]
fn the_network_policy_admits_the_api_server_and_monitoring_only() {
    let np = find(manifests(), "NetworkPolicy", "unroot");
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"],
        deployment()["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(strings(&np["spec"]["policyTypes"]), ["Ingress"]);
    let ingress = np["spec"]["ingress"].as_array().expect("ingress rules");
    assert_eq!(ingress.len(), 2);
    let port = |r: &Value| r["ports"][0]["port"].clone();
    let webhook = ingress
        .iter()
        .find(|r| port(r) == "webhook")
        .expect("a webhook rule");
    assert!(
        webhook["from"].is_null(),
        "the API server may come from anywhere"
    );
    let admin = ingress
        .iter()
        .find(|r| port(r) == "admin")
        .expect("an admin rule");
    // By a label only an administrator may set, never by a name a tenant
    // who creates namespaces could take.
    assert_eq!(
        admin["from"],
        json!([{"namespaceSelector": {"matchLabels": {"unroot.dev/monitoring": "true"}}}])
    );
    for r in ingress {
        assert_eq!(
            r["ports"].as_array().map(Vec::len),
            Some(1),
            "one port per rule"
        );
    }
}

/// The paths (JSON pointers) where two documents differ.
fn differences(ours: &Value, theirs: &Value, at: &str, out: &mut Vec<String>) {
    match (ours, theirs) {
        (Value::Object(mine), Value::Object(other)) => {
            for field in mine.keys().chain(other.keys()).collect::<BTreeSet<_>>() {
                let path = format!("{at}/{field}");
                match (mine.get(field), other.get(field)) {
                    (Some(left), Some(right)) => differences(left, right, &path, out),
                    _ => out.push(path),
                }
            }
        }
        (Value::Array(mine), Value::Array(other)) if mine.len() == other.len() => {
            for (i, (left, right)) in mine.iter().zip(other).enumerate() {
                differences(left, right, &format!("{at}/{i}"), out);
            }
        }
        _ if ours == theirs => {}
        _ => out.push(at.to_owned()),
    }
}

#[test]
fn the_e2e_overlay_changes_only_what_its_node_demands() {
    let product = manifests();
    let e2e = overlay();
    assert_eq!(
        product.iter().map(key).collect::<BTreeSet<_>>(),
        e2e.iter().map(key).collect::<BTreeSet<_>>(),
        "the same objects"
    );
    // Image and pull policy (no registry) and the PDB's API version (1.20);
    // nothing else: unroot runs with the shipped args, --manage-certs
    // included.
    let c = "/spec/template/spec/containers/0";
    let allowed = [
        format!("Deployment{c}/image"),
        format!("Deployment{c}/imagePullPolicy"),
        "PodDisruptionBudget/apiVersion".to_owned(),
    ];
    let mut changed = Vec::new();
    for o in product {
        let theirs = e2e.iter().find(|e| key(e) == key(o)).unwrap();
        let mut diffs = Vec::new();
        differences(o, theirs, "", &mut diffs);
        changed.extend(
            diffs
                .into_iter()
                .map(|d| format!("{}{d}", o["kind"].as_str().unwrap())),
        );
    }
    for path in &changed {
        assert!(
            allowed
                .iter()
                .any(|a| path == a || path.starts_with(&format!("{a}/"))),
            "the e2e overlay changes {path}"
        );
    }
    assert!(
        changed.iter().any(|p| p.ends_with("/imagePullPolicy")),
        "{changed:?}"
    );
    let e2e_args = strings(
        &find(e2e, "Deployment", "unroot")["spec"]["template"]["spec"]["containers"][0]["args"],
    );
    assert_eq!(e2e_args, args(), "the e2e overlay runs the shipped args");
}

/// The trust bundle's root signs through a namespaced Issuer in
/// cert-manager's namespace only: a ClusterIssuer over it would let anyone
/// who may create a Certificate in any namespace obtain a leaf or a CA
/// certificate that every pod with the bundle trusts.
#[test]
fn no_cluster_wide_issuer_signs_with_the_trust_root() {
    let objects = render("manifests/trust");
    let trust_namespace = "cert-manager";
    assert_eq!(
        of_kind(&objects, "ClusterIssuer")
            .map(key)
            .collect::<Vec<_>>(),
        Vec::<(String, String, String)>::new(),
        "no ClusterIssuer in manifests/trust/"
    );
    let issuers: Vec<_> = of_kind(&objects, "Issuer").collect();
    assert!(!issuers.is_empty());
    for issuer in &issuers {
        assert_eq!(
            issuer["metadata"]["namespace"],
            trust_namespace,
            "{:?}",
            key(issuer)
        );
    }
    let root = find(&objects, "Certificate", "cluster-root-ca");
    let signer = issuers
        .iter()
        .find(|i| i["spec"]["ca"]["secretName"] == root["spec"]["secretName"])
        .expect("an Issuer signs with the root");
    assert_eq!(
        signer["metadata"]["namespace"],
        root["metadata"]["namespace"]
    );
    for cert in of_kind(&objects, "Certificate") {
        let issuer = &cert["spec"]["issuerRef"];
        assert_eq!(issuer["kind"], "Issuer", "{:?}", key(cert));
        assert_eq!(
            cert["metadata"]["namespace"],
            trust_namespace,
            "{:?}: a namespaced Issuer signs only in its namespace",
            key(cert)
        );
    }
    // The Bundle publishes the root's certificate, from the same namespace.
    let bundle = find(&objects, "Bundle", "trust-bundle");
    assert!(
        bundle["spec"]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["secret"]["name"] == root["spec"]["secretName"]),
        "{bundle}"
    );
}

#[test]
fn the_observe_overlay_changes_only_the_policy_and_what_fails_closed() {
    let observe = observe_mode();
    let product = manifests();
    assert_eq!(
        product.iter().map(key).collect::<BTreeSet<_>>(),
        observe.iter().map(key).collect::<BTreeSet<_>>(),
        "the same objects"
    );
    let mut changed = Vec::new();
    for o in product {
        let theirs = observe.iter().find(|e| key(e) == key(o)).unwrap();
        let mut diffs = Vec::new();
        differences(o, theirs, "", &mut diffs);
        changed.extend(
            diffs
                .into_iter()
                .map(|d| format!("{}{d}", o["kind"].as_str().unwrap())),
        );
    }
    assert_eq!(
        changed,
        [
            "ConfigMap/data/policy.yaml",
            "MutatingWebhookConfiguration/metadata/annotations/unroot.dev/fail-closed",
            "ValidatingWebhookConfiguration/metadata/annotations/unroot.dev/fail-closed",
        ]
    );
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        assert_eq!(
            find(observe, kind, "unroot")["metadata"]["annotations"]["unroot.dev/fail-closed"],
            "",
            "{kind}: nothing fails closed"
        );
    }
    // The policy: the embedded default but for hardening in warn and
    // enforcement at privileged; audit and warn stay on.
    let policy = find(observe, "ConfigMap", "unroot-policy");
    assert_eq!(policy["metadata"]["labels"]["unroot.dev/policy"], "true");
    let text = policy["data"]["policy.yaml"].as_str().unwrap();
    let observed = unroot::policy::Document::from_yaml(text).expect("a valid policy");
    let mut want = unroot::policy::Document::embedded();
    want.security_context.harden = unroot::policy::HardenMode::Warn;
    want.pod_security.defaults.enforce = "privileged".to_owned();
    assert_eq!(observed, want);
    assert_eq!(observed.pod_security.defaults.audit, "restricted");
    assert_eq!(observed.pod_security.defaults.warn, "restricted");
}

#[test]
fn with_cert_manager_the_pod_and_namespace_webhooks_fail_closed_from_the_first_apply() {
    // No certificate task runs in this mode, so nothing would make them fail
    // closed once served: they do from the start, and none is copied.
    let objects = cert_manager_mode();
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let config = find(objects, kind, "unroot");
        assert_eq!(
            config["metadata"]["annotations"]["unroot.dev/fail-closed"], "",
            "{kind}"
        );
        for w in config["webhooks"].as_array().unwrap() {
            let name = w["name"].as_str().unwrap();
            let want = if fail_closed(kind).contains(name) {
                "Fail"
            } else {
                "Ignore"
            };
            assert_eq!(w["failurePolicy"], want, "{name}");
        }
    }
}
