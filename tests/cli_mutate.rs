//! `unroot mutate` as a user runs it: the real binary, files and stdin.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn unroot(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_unroot"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

const FIXTURE: &str = "tests/fixtures/mutate/root-pod.yaml";

#[test]
fn mutate_prints_the_hardened_objects_as_yaml() {
    let out = unroot(&["mutate", FIXTURE], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    assert_eq!(docs.len(), 3);
    let pod = &docs[0];
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    assert_eq!(
        pod["spec"]["containers"][0]["command"][2],
        "id && sleep 3600"
    );
    let template = &docs[1]["spec"]["template"];
    assert_eq!(template["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        template["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(docs[2]["kind"], "Service");
    assert!(docs[2]["spec"].get("securityContext").is_none());
}

#[test]
fn mutate_patch_prints_one_rfc6902_patch_per_object() {
    let text = std::fs::read_to_string(FIXTURE).unwrap();
    let out = unroot(&["mutate", "--patch", "-"], Some(&text));
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let first: Vec<&str> = lines[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        first,
        [
            "/spec/containers/0/securityContext",
            "/spec/securityContext",
            "/metadata/annotations"
        ]
    );
    assert_eq!(
        lines[1][0]["path"],
        "/spec/template/spec/containers/0/securityContext"
    );
    assert_eq!(lines[2], serde_json::json!([]));
}

#[test]
fn mutate_warns_on_stderr_about_explicit_root() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: r}\nspec:\n  securityContext: {runAsUser: 0}\n  containers: [{name: a, image: x}]\n";
    let out = unroot(&["mutate", "-"], Some(pod));
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(
            "warning: -: Pod \"r\": unroot: spec.securityContext.runAsUser=0 is left as set"
        ),
        "{err}"
    );
}

#[test]
fn invalid_input_exits_2_naming_the_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad_pod = dir.path().join("bad.yaml");
    std::fs::write(
        &bad_pod,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: 5}\n",
    )
    .unwrap();
    let not_yaml = dir.path().join("broken.yaml");
    std::fs::write(&not_yaml, "a: [b\n").unwrap();
    let missing = dir.path().join("missing.yaml");
    let bad_policy = dir.path().join("policy.yaml");
    std::fs::write(
        &bad_policy,
        unroot::policy::DEFAULT_YAML.replace("runAsUser: 65532", "runAsUser: 0"),
    )
    .unwrap();
    for (args, want) in [
        (
            vec!["mutate", bad_pod.to_str().unwrap()],
            "bad.yaml: document 1 (Pod \"p\"): failed to decode Pod: spec.containers: invalid type: integer `5`",
        ),
        (
            vec!["mutate", not_yaml.to_str().unwrap()],
            "broken.yaml: failed to parse:",
        ),
        (
            vec!["mutate", missing.to_str().unwrap()],
            "missing.yaml: failed to read: No such file or directory",
        ),
        (
            vec!["mutate", "--policy", bad_policy.to_str().unwrap(), FIXTURE],
            "policy.yaml: securityContext.runAsUser: 0 is not allowed",
        ),
    ] {
        let out = unroot(&args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "no partial output");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.starts_with("error: ") && err.contains(want),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn namespace_labels_select_the_trust_bundle() {
    let file = "tests/fixtures/trust-bundle/model-server.yaml";
    let without = unroot(&["mutate", file], None);
    let with = unroot(
        &[
            "mutate",
            "--namespace-labels",
            "team=ml,unroot.dev/trust-bundle=enabled",
            file,
        ],
        None,
    );
    for out in [&without, &with] {
        assert_eq!(out.status.code(), Some(0));
    }
    let pod = |out: &Output| -> Value {
        serde_saphyr::from_str(&String::from_utf8(out.stdout.clone()).unwrap()).unwrap()
    };
    assert!(pod(&without)["spec"].get("volumes").is_none());
    assert_eq!(
        pod(&with)["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
        "/etc/ssl/certs"
    );
    let bad = unroot(&["mutate", "--namespace-labels", "team", file], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8(bad.stderr)
            .unwrap()
            .contains("\"team\" is not k=v")
    );
}

#[test]
fn provisioning_prints_the_configmap_first_and_denies_forged_identities() {
    let args = |requester: &'static str| {
        vec![
            "mutate",
            "--policy",
            "tests/fixtures/provisioning/policy.yaml",
            "--namespace-labels",
            "unroot.dev/provisioning=enabled",
            "--requester",
            requester,
            "tests/fixtures/provisioning/notebook.yaml",
        ]
    };
    let out = unroot(&args("system:serviceaccount:jupyterhub:hub"), None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["kind"], "ConfigMap");
    assert_eq!(docs[0]["metadata"]["name"], "unroot-identity-alice");
    assert_eq!(docs[0]["metadata"]["namespace"], "hub-users");
    assert_eq!(
        docs[1]["spec"]["initContainers"][0]["name"],
        "unroot-provision"
    );

    let mut patch_args = args("system:serviceaccount:jupyterhub:hub");
    patch_args.insert(1, "--patch");
    let out = unroot(&patch_args, None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("mounts the ConfigMap \"unroot-identity-alice\"")
    );

    let out = unroot(&args("bob"), None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(
            "identity claim denied: requester \"bob\" is not in provisioning.trustedRequesters"
        ),
        "{err}"
    );
}
