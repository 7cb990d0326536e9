//! `/mutate` over real TLS in each hardening mode (`unroot.dev/harden`: on,
//! warn, off) and with `securityContext.namespaceOverrides`: what the pod
//! gets, the warnings, the audit annotations and the metric.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{RecordingStore, apply, hardening_gaps, labels, patch_of, review_as, review_for};
use serde_json::{Value, json};
use unroot::policy::{Document, HardenMode};
use unroot::server::IdentityStore;

#[allow(clippy::needless_pass_by_value)] // reads better at the call sites
fn pod(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

fn plain() -> Value {
    pod(
        "p",
        json!({"containers": [{"name": "app", "image": "busybox"}]}),
    )
}

fn namespaces() -> BTreeMap<String, BTreeMap<String, String>> {
    [
        ("team-on", labels(&[])),
        ("team-warn", labels(&[("unroot.dev/harden", "warn")])),
        ("team-off", labels(&[("unroot.dev/harden", "off")])),
        ("team-typo", labels(&[("unroot.dev/harden", "Off")])),
        ("team-explicit-on", labels(&[("unroot.dev/harden", "on")])),
        (
            "trusted-warn",
            labels(&[
                ("unroot.dev/harden", "warn"),
                ("unroot.dev/trust-bundle", "enabled"),
            ]),
        ),
        (
            "trusted-off",
            labels(&[
                ("unroot.dev/harden", "off"),
                ("unroot.dev/trust-bundle", "enabled"),
            ]),
        ),
        ("hpc", labels(&[("unroot.dev/profile", "hpc")])),
        (
            "legacy",
            labels(&[("kubernetes.io/metadata.name", "legacy")]),
        ),
        (
            "hpc-legacy",
            labels(&[
                ("unroot.dev/profile", "hpc"),
                ("kubernetes.io/metadata.name", "legacy"),
            ]),
        ),
        (
            "legacy-warn",
            labels(&[
                ("kubernetes.io/metadata.name", "legacy"),
                ("unroot.dev/harden", "warn"),
            ]),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn start(policy: Document) -> common::Server {
    common::start_with(common::Options {
        policy,
        namespace_labels: namespaces(),
        ..Default::default()
    })
    .await
}

/// What `on` sets on a pod with one bare container `app`, in patch order.
const WOULD_SET: [&str; 8] = [
    "would set securityContext.allowPrivilegeEscalation=false on container \"app\"",
    "would set securityContext.capabilities.drop=[\"ALL\"] on container \"app\"",
    "would set securityContext.fsGroup=65532 on pod",
    "would set securityContext.fsGroupChangePolicy=\"OnRootMismatch\" on pod",
    "would set securityContext.runAsGroup=65532 on pod",
    "would set securityContext.runAsNonRoot=true on pod",
    "would set securityContext.runAsUser=65532 on pod",
    "would set securityContext.seccompProfile.type=\"RuntimeDefault\" on pod",
];

fn annotations(response: &Value) -> Value {
    let mut a = response["auditAnnotations"].clone();
    a.as_object_mut().unwrap().remove("policy-hash");
    a
}

#[tokio::test]
async fn each_mode_on_a_plain_pod() {
    let server = start(Document::embedded()).await;
    let object = plain();

    for ns in ["team-on", "team-explicit-on", "team-typo"] {
        let on = server
            .admit("/mutate", &review_for("CREATE", ns, &object))
            .await;
        let hardened = apply(&object, &on);
        assert_eq!(hardening_gaps(&hardened), Vec::<String>::new(), "{ns}");
        assert!(on.get("warnings").is_none(), "{ns}");
        assert_eq!(annotations(&on), json!({}), "{ns}");
    }

    let warn = server
        .admit("/mutate", &review_for("CREATE", "team-warn", &object))
        .await;
    assert!(warn.get("patch").is_none(), "{warn:#}");
    assert_eq!(common::warnings_of(&warn), WOULD_SET);
    assert_eq!(
        annotations(&warn),
        json!({
            "harden": "warn",
            "harden-would": WOULD_SET.iter().map(|w| w.strip_prefix("would ").unwrap()).collect::<Vec<_>>().join("; "),
        })
    );

    let off = server
        .admit("/mutate", &review_for("CREATE", "team-off", &object))
        .await;
    assert!(off.get("patch").is_none(), "{off:#}");
    assert!(off.get("warnings").is_none(), "{off:#}");
    assert_eq!(annotations(&off), json!({"harden": "off"}));

    for (mode, count) in [("on", 3.0), ("warn", 1.0), ("off", 1.0)] {
        assert_eq!(
            server
                .metric(&format!("unroot_hardening_pods_total{{mode=\"{mode}\"}}"))
                .await,
            Some(count),
            "{mode}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_default_mode_comes_from_the_policy() {
    let mut policy = Document::embedded();
    policy.security_context.harden = HardenMode::Warn;
    let server = start(policy).await;
    let object = plain();
    let unlabelled = server
        .admit("/mutate", &review_for("CREATE", "team-on", &object))
        .await;
    assert!(unlabelled.get("patch").is_none());
    assert_eq!(common::warnings_of(&unlabelled), WOULD_SET);
    let labelled = server
        .admit(
            "/mutate",
            &review_for("CREATE", "team-explicit-on", &object),
        )
        .await;
    assert_eq!(
        hardening_gaps(&apply(&object, &labelled)),
        Vec::<String>::new()
    );
    server.shutdown().await;
}

fn explicit() -> Value {
    pod(
        "explicit",
        json!({"securityContext": {"runAsUser": 0},
            "containers": [{"name": "app", "image": "x", "securityContext": {
                "allowPrivilegeEscalation": true, "capabilities": {"add": ["SYS_ADMIN", "NET_BIND_SERVICE", "NET_RAW"]}}}]}),
    )
}

#[tokio::test]
async fn warn_keeps_what_is_left_as_set_and_names_what_override_would_change() {
    let server = start(Document::embedded()).await;
    let warn = server
        .admit("/mutate", &review_for("CREATE", "team-warn", &explicit()))
        .await;
    assert!(warn.get("patch").is_none());
    assert_eq!(
        common::warnings_of(&warn),
        [
            "would set securityContext.capabilities.drop=[\"ALL\"] on container \"app\"",
            "would set securityContext.runAsGroup=65532 on pod",
            "would set securityContext.fsGroup=65532 on pod",
            "would set securityContext.fsGroupChangePolicy=\"OnRootMismatch\" on pod",
            "would set securityContext.seccompProfile.type=\"RuntimeDefault\" on pod",
            "unroot: spec.containers[0].securityContext.allowPrivilegeEscalation (container \"app\")=true is left as set: it lets processes gain privileges (setuid binaries)",
            "unroot: spec.containers[0].securityContext.capabilities.add[0] (container \"app\")=\"SYS_ADMIN\" is left as set: the capability is not in the policy's allowedCapabilities",
            "unroot: spec.containers[0].securityContext.capabilities.add[2] (container \"app\")=\"NET_RAW\" is left as set: the capability is not in the policy's allowedCapabilities",
            "unroot: spec.securityContext.runAsUser=0 is left as set: it runs the pod as root",
            "unroot: spec.securityContext.runAsNonRoot is not set because spec.securityContext.runAsUser explicitly runs as root",
        ]
    );
    server.shutdown().await;

    let mut policy = Document::embedded();
    policy.security_context.r#override = true;
    let server = start(policy).await;
    let on = server
        .admit("/mutate", &review_for("CREATE", "team-on", &explicit()))
        .await;
    let warn = server
        .admit("/mutate", &review_for("CREATE", "team-warn", &explicit()))
        .await;
    assert!(warn.get("patch").is_none());
    let would = common::warnings_of(&warn);
    assert_eq!(
        would,
        [
            "would set securityContext.allowPrivilegeEscalation=false on container \"app\" (instead of true)",
            "would set securityContext.capabilities.drop=[\"ALL\"] on container \"app\"",
            "would remove \"SYS_ADMIN\" from securityContext.capabilities.add on container \"app\"",
            "would remove \"NET_RAW\" from securityContext.capabilities.add on container \"app\"",
            "would set securityContext.runAsUser=65532 on pod (instead of 0)",
            "would set securityContext.runAsGroup=65532 on pod",
            "would set securityContext.fsGroup=65532 on pod",
            "would set securityContext.fsGroupChangePolicy=\"OnRootMismatch\" on pod",
            "would set securityContext.seccompProfile.type=\"RuntimeDefault\" on pod",
            "would set securityContext.runAsNonRoot=true on pod",
        ]
    );
    // One line per operation of the patch `on` answers with.
    assert_eq!(
        would.len(),
        patch_of(&on).0.len() - 1,
        "all but the marker annotation"
    );
    assert!(
        common::warnings_of(&on)
            .iter()
            .any(|w| w.contains("is overridden"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_trust_bundle_is_mounted_in_every_mode() {
    let server = start(Document::embedded()).await;
    let object = plain();
    for ns in ["trusted-warn", "trusted-off"] {
        let response = server
            .admit("/mutate", &review_for("CREATE", ns, &object))
            .await;
        let mutated = apply(&object, &response);
        let app = &mutated["spec"]["containers"][0];
        assert_eq!(
            mutated["spec"]["volumes"][0]["configMap"]["name"], "trust-bundle",
            "{ns}: {mutated:#}"
        );
        assert_eq!(
            app["volumeMounts"][0]["mountPath"], "/etc/ssl/certs",
            "{ns}"
        );
        assert!(app.get("securityContext").is_none(), "{ns}: {mutated:#}");
        assert!(mutated["spec"].get("securityContext").is_none(), "{ns}");
        assert_eq!(
            mutated["metadata"]["annotations"]["unroot.dev/mutated"],
            "true"
        );
        let warned = common::warnings_of(&response) == WOULD_SET;
        assert_eq!(warned, ns == "trusted-warn", "{ns}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn provisioning_follows_its_selector_when_hardening_is_off() {
    let store = Arc::new(RecordingStore::default());
    let server = common::start_with(common::Options {
        namespace_labels: BTreeMap::from([(
            "hub-users".to_owned(),
            labels(&[
                ("unroot.dev/provisioning", "enabled"),
                ("unroot.dev/harden", "off"),
            ]),
        )]),
        ..common::hub(Arc::clone(&store) as Arc<dyn IdentityStore>)
    })
    .await;
    let notebook = common::fixture("tests/fixtures/provisioning/notebook.yaml");
    let response = server
        .admit(
            "/mutate",
            &review_as(
                "CREATE",
                "hub-users",
                &notebook,
                "system:serviceaccount:jupyterhub:hub",
            ),
        )
        .await;
    let mutated = apply(&notebook, &response);
    assert_eq!(
        mutated["spec"]["initContainers"][0]["name"],
        "unroot-provision"
    );
    assert_eq!(mutated["spec"]["securityContext"]["runAsUser"], 1001);
    assert!(
        mutated["spec"]["containers"][0]
            .get("securityContext")
            .is_none(),
        "{mutated:#}"
    );
    assert_eq!(store.applied().len(), 1);
    assert_eq!(annotations(&response)["harden"], "off");
    server.shutdown().await;
}

#[tokio::test]
async fn added_ephemeral_containers_follow_the_mode() {
    let server = start(Document::embedded()).await;
    let old = pod("p", json!({"containers": [{"name": "app", "image": "x"}]}));
    let new = pod(
        "p",
        json!({"containers": [{"name": "app", "image": "x"}],
            "ephemeralContainers": [{"name": "debug", "image": "x"}]}),
    );
    for (ns, patched, warnings) in [
        ("team-on", true, vec![]),
        (
            "team-warn",
            false,
            vec![
                "would set securityContext.allowPrivilegeEscalation=false on container \"debug\"",
                "would set securityContext.capabilities.drop=[\"ALL\"] on container \"debug\"",
            ],
        ),
        ("team-off", false, vec![]),
    ] {
        let mut review = review_for("UPDATE", ns, &new);
        review["request"]["subResource"] = json!("ephemeralcontainers");
        review["request"]["oldObject"] = old.clone();
        let response = server.admit("/mutate", &review).await;
        assert_eq!(response.get("patch").is_some(), patched, "{ns}");
        assert_eq!(common::warnings_of(&response), warnings, "{ns}");
    }
    server.shutdown().await;
}

const OVERRIDES: &str = "apiVersion: unroot.dev/v1
kind: Policy
securityContext:
  namespaceOverrides:
    - namespaceSelector: {matchLabels: {unroot.dev/profile: hpc}}
      allowedCapabilities: [NET_BIND_SERVICE, IPC_LOCK]
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: legacy}}
      runAsUser: 1000
      runAsGroup: 1001
      fsGroup: 1002
      seccompProfileType: RuntimeDefault
";

fn ipc_lock() -> Value {
    pod(
        "mpi",
        json!({"containers": [{"name": "rank", "image": "x",
            "securityContext": {"capabilities": {"add": ["IPC_LOCK"]}}}]}),
    )
}

const IPC_LOCK_LEFT: &str = "unroot: spec.containers[0].securityContext.capabilities.add[0] (container \"rank\")=\"IPC_LOCK\" is left as set: the capability is not in the policy's allowedCapabilities";
const IPC_LOCK_REMOVED: &str = "unroot: spec.containers[0].securityContext.capabilities.add[0] (container \"rank\")=\"IPC_LOCK\" is removed by policy (securityContext.override)";

#[tokio::test]
async fn namespace_overrides_allow_capabilities_where_they_match() {
    for r#override in [false, true] {
        let mut policy = Document::from_yaml(OVERRIDES).unwrap();
        policy.security_context.r#override = r#override;
        let server = start(policy).await;
        let object = ipc_lock();
        for (ns, kept) in [
            ("hpc", true),
            ("hpc-legacy", true),
            ("team-on", false),
            ("legacy", false),
        ] {
            let response = server
                .admit("/mutate", &review_for("CREATE", ns, &object))
                .await;
            let mutated = apply(&object, &response);
            let sc = &mutated["spec"]["containers"][0]["securityContext"];
            let what = format!("override={override}, {ns}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
            let warnings = common::warnings_of(&response);
            if kept {
                assert_eq!(sc["capabilities"]["add"], json!(["IPC_LOCK"]), "{what}");
                assert_eq!(warnings, Vec::<String>::new(), "{what}");
            } else if r#override {
                assert_eq!(sc["capabilities"]["add"], json!([]), "{what}");
                assert_eq!(warnings, [IPC_LOCK_REMOVED], "{what}");
            } else {
                assert_eq!(sc["capabilities"]["add"], json!(["IPC_LOCK"]), "{what}");
                assert_eq!(warnings, [IPC_LOCK_LEFT], "{what}");
            }
        }
        server.shutdown().await;
    }
}

#[tokio::test]
async fn namespace_overrides_set_ids_and_the_first_match_wins() {
    let server = start(Document::from_yaml(OVERRIDES).unwrap()).await;
    let object = plain();
    // Namespace, runAsUser, runAsGroup, fsGroup.
    for (ns, uid, gid, fs) in [
        ("legacy", 1000, 1001, 1002),
        // hpc comes first and sets no ids: the top level's apply.
        ("hpc-legacy", 65532, 65532, 65532),
        ("team-on", 65532, 65532, 65532),
    ] {
        let response = server
            .admit("/mutate", &review_for("CREATE", ns, &object))
            .await;
        let mutated = apply(&object, &response);
        let sc = &mutated["spec"]["securityContext"];
        assert_eq!(
            (&sc["runAsUser"], &sc["runAsGroup"], &sc["fsGroup"]),
            (&json!(uid), &json!(gid), &json!(fs)),
            "{ns}"
        );
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{ns}");
        assert_eq!(sc["runAsNonRoot"], true, "{ns}");
        assert_eq!(hardening_gaps(&mutated), Vec::<String>::new(), "{ns}");
    }
    // In warn mode the warnings name the namespace's own values.
    let warn = server
        .admit("/mutate", &review_for("CREATE", "legacy-warn", &object))
        .await;
    let warnings = common::warnings_of(&warn);
    for want in [
        "would set securityContext.runAsUser=1000 on pod",
        "would set securityContext.runAsGroup=1001 on pod",
        "would set securityContext.fsGroup=1002 on pod",
        "would set securityContext.fsGroupChangePolicy=\"OnRootMismatch\" on pod",
    ] {
        assert!(
            warnings.iter().any(|w| w == want),
            "{want} not in {warnings:?}"
        );
    }
    server.shutdown().await;
}

/// `unroot mutate` with the given arguments and stdin.
fn unroot_mutate(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_unroot"))
        .arg("mutate")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn unroot_mutate_shows_what_a_namespaces_labels_do() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: app}\nspec:\n  containers:\n  - {name: app, image: busybox}\n";
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let stdout = |o: &std::process::Output| -> Value {
        serde_saphyr::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap()
    };
    let original: Value = serde_saphyr::from_str(pod).unwrap();

    let warn = unroot_mutate(&["--namespace-labels", "unroot.dev/harden=warn", "-"], pod);
    assert_eq!(warn.status.code(), Some(0), "{}", stderr(&warn));
    assert_eq!(stdout(&warn), original);
    let text = stderr(&warn);
    assert!(
        text.starts_with("note: hardening mode warn (label unroot.dev/harden): the securityContext is not changed"),
        "{text}"
    );
    for line in WOULD_SET {
        assert!(
            text.contains(&format!("warning: -: Pod \"app\": {line}\n")),
            "{line} not in {text}"
        );
    }

    let off = unroot_mutate(
        &["--namespace-labels", "team=a,unroot.dev/harden=off", "-"],
        pod,
    );
    assert_eq!(stdout(&off), original);
    assert_eq!(
        stderr(&off),
        "note: hardening mode off (label unroot.dev/harden): the securityContext is not changed\n"
    );

    let typo = unroot_mutate(
        &[
            "--namespace-labels",
            "unroot.dev/harden=Off,unroot.dev/enforce=strict",
            "-",
        ],
        pod,
    );
    assert_eq!(typo.status.code(), Some(2));
    assert_eq!(
        stderr(&typo),
        "error: --namespace-labels: metadata.labels[unroot.dev/enforce]: Invalid value: \"strict\": must be one of privileged, baseline, restricted; \
         metadata.labels[unroot.dev/harden]: Invalid value: \"Off\": must be one of on, warn, off (the namespace webhook refuses such labels)\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, OVERRIDES).unwrap();
    let policy = policy.to_str().unwrap();
    let mpi = "apiVersion: v1\nkind: Pod\nmetadata: {name: mpi}\nspec:\n  containers:\n  - name: rank\n    image: x\n    securityContext: {capabilities: {add: [IPC_LOCK]}}\n";
    let hpc = unroot_mutate(
        &[
            "--policy",
            policy,
            "--namespace-labels",
            "unroot.dev/profile=hpc",
            "-",
        ],
        mpi,
    );
    assert_eq!(
        stderr(&hpc),
        "note: securityContext.namespaceOverrides[0] matches these namespace labels\n"
    );
    assert_eq!(
        stdout(&hpc)["spec"]["containers"][0]["securityContext"]["capabilities"],
        json!({"add": ["IPC_LOCK"], "drop": ["ALL"]})
    );
    let elsewhere = unroot_mutate(&["--policy", policy, "-"], mpi);
    assert_eq!(
        stderr(&elsewhere),
        format!("warning: -: Pod \"mpi\": {IPC_LOCK_LEFT}\n")
    );
}
