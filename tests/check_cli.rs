//! `unroot check` as a user runs it: the real binary on fixture files and stdin.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};

const DIR: &str = "tests/fixtures/check";

fn unroot(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_unroot"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs `unroot check ARGS` and returns (exit code, stdout, stderr).
fn check(args: &[&str]) -> (Option<i32>, String, String) {
    let mut full = vec!["check"];
    full.extend_from_slice(args);
    let out = unroot(&full, None);
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn fixture(name: &str) -> String {
    format!("{DIR}/{name}")
}

const BARE_RESTRICTED: &str = "violates PodSecurity \"restricted:latest\": \
    allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), \
    unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]), \
    runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true), \
    seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")";

#[test]
fn compliant_manifest_is_allowed_and_other_kinds_are_skipped() {
    let file = fixture("compliant.yaml");
    let (code, stdout, stderr) = check(&[&file]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        format!("{file}: Deployment shop/web: allowed\n{file}: Pod debug: allowed\n")
    );
    assert_eq!(
        stderr,
        format!("note: {file}: document 2: Service shop/web has no pod template; skipped\n")
    );
}

#[test]
fn every_workload_kind_is_checked_through_its_template() {
    let file = fixture("workloads.yaml");
    let (code, stdout, _) = check(&[&file]);
    assert_eq!(code, Some(1));
    let mut want = String::new();
    for object in [
        "Pod ns/p",
        "Deployment ns/d",
        "ReplicaSet ns/rs",
        "StatefulSet ns/sts",
        "DaemonSet ns/ds",
        "Job ns/job",
        "CronJob ns/cron",
        "ReplicationController ns/rc",
        "PodTemplate ns/pt",
    ] {
        writeln!(want, "{file}: {object}: {BARE_RESTRICTED}").unwrap();
    }
    assert_eq!(stdout, want);

    let (code, stdout, _) = check(&["--level", "baseline", &file]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout.lines().count(), 9);
    assert!(stdout.lines().all(|l| l.ends_with(": allowed")), "{stdout}");
}

#[test]
fn json_lines_carry_check_ids_and_upstream_wording() {
    let file = fixture("privileged.json");
    let (code, stdout, stderr) = check(&["--format", "json", "--level", "baseline", &file]);
    assert_eq!(code, Some(1), "{stderr}");
    let want = format!(
        concat!(
            r#"{{"file":"{}","kind":"Pod","namespace":"ops","name":"root","allowed":false,"violations":["#,
            r#"{{"check":"appArmorProfile","reason":"forbidden AppArmor profile","detail":"annotation must not set AppArmor profile type to \"container.apparmor.security.beta.kubernetes.io/agent=\"unconfined\"\""}},"#,
            r#"{{"check":"hostNamespaces","reason":"host namespaces","detail":"hostNetwork=true, hostPID=true"}},"#,
            r#"{{"check":"hostPathVolumes","reason":"hostPath volumes","detail":"volume \"root\""}},"#,
            r#"{{"check":"hostPorts","reason":"hostPort","detail":"container \"agent\" uses hostPort 9100"}},"#,
            r#"{{"check":"privileged","reason":"privileged","detail":"container \"setup\" must not set securityContext.privileged=true"}}"#,
            "]}}\n"
        ),
        file
    );
    assert_eq!(stdout, want);
}

#[test]
fn json_allowed_objects_have_no_violations_and_null_for_unset_fields() {
    let file = fixture("compliant.yaml");
    let (code, stdout, _) = check(&["--format", "json", &file]);
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout,
        format!(
            "{{\"file\":\"{file}\",\"kind\":\"Deployment\",\"namespace\":\"shop\",\"name\":\"web\",\"allowed\":true,\"violations\":[]}}\n\
             {{\"file\":\"{file}\",\"kind\":\"Pod\",\"namespace\":null,\"name\":\"debug\",\"allowed\":true,\"violations\":[]}}\n"
        )
    );
}

#[test]
fn invalid_objects_exit_2_naming_file_document_and_field() {
    let invalid = fixture("invalid.yaml");
    let compliant = fixture("compliant.yaml");
    let (code, stdout, stderr) =
        check(&[&invalid, "tests/fixtures/check/missing.yaml", &compliant]);
    assert_eq!(code, Some(2));
    // Valid objects are still reported, in input order.
    assert_eq!(
        stdout,
        format!(
            "{invalid}: Pod ok: allowed\n{invalid}: Deployment nospec: allowed\n{compliant}: Deployment shop/web: allowed\n{compliant}: Pod debug: allowed\n"
        )
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors,
        [
            format!("error: {invalid}: document 2: Pod broken: failed to decode object: spec.containers[0].securityContext.privileged: invalid type: string \"yes please\", expected a boolean"),
            "error: tests/fixtures/check/missing.yaml: failed to read: No such file or directory (os error 2)".to_owned(),
        ]
    );
}

#[test]
fn invalid_input_wins_over_violations() {
    let (code, _, _) = check(&[&fixture("workloads.yaml"), &fixture("invalid.yaml")]);
    assert_eq!(code, Some(2));
}

#[test]
fn stdin_and_documents_that_are_not_objects() {
    let out = unroot(
        &["check", "-"],
        Some(
            b"apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: app}]}\n",
        ),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("-: Pod a: {BARE_RESTRICTED}\n")
    );

    let out = unroot(&["check", "-"], Some(b"---\n- just\n- a list\n"));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: -: document 1: not a Kubernetes object: expected a mapping\n"
    );
    let out = unroot(&["check", "-"], Some(b"\xff\xfe"));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn version_selects_behaviour_and_is_printed_as_requested() {
    let root = b"apiVersion: v1\nkind: Pod\nmetadata: {name: r}\nspec:\n  securityContext: {runAsUser: 0, runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}\n  containers: [{name: app, securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}}]\n";
    let run = |version: &str| {
        let out = unroot(&["check", "--version", version, "-"], Some(root));
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    assert_eq!(run("v1.22"), (Some(0), "-: Pod r: allowed\n".to_owned()));
    assert_eq!(
        run("v1.23"),
        (
            Some(1),
            "-: Pod r: violates PodSecurity \"restricted:v1.23\": runAsUser=0 (pod must not set runAsUser=0)\n".to_owned()
        )
    );
    assert_eq!(
        run("v1.99"),
        (
            Some(1),
            "-: Pod r: violates PodSecurity \"restricted:v1.99\": runAsUser=0 (pod must not set runAsUser=0)\n".to_owned()
        )
    );
}

#[test]
fn bad_flags_exit_2_with_the_accepted_values() {
    let (code, _, stderr) = check(&["--version", "1.25", "x.yaml"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("must be \"latest\" or \"v1.x\""),
        "{stderr}"
    );
    let (code, _, stderr) = check(&["--level", "privileged", "x.yaml"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("[possible values: baseline, restricted]"),
        "{stderr}"
    );
    let (code, _, _) = check(&[]);
    assert_eq!(code, Some(2));
}

#[test]
fn mutated_pods_pass_restricted() {
    // Pods whose only problems are ones `mutate` fixes pass `check` afterwards.
    let mutated = unroot(&["mutate", "tests/fixtures/mutate/root-pod.yaml"], None);
    assert_eq!(mutated.status.code(), Some(0));
    let before = check(&["tests/fixtures/mutate/root-pod.yaml"]);
    assert_eq!(before.0, Some(1), "the fixture must need mutation");
    let out = unroot(
        &["check", "--level", "restricted", "-"],
        Some(&mutated.stdout),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "-: Pod team-a/root-app: allowed\n-: Deployment web: allowed\n"
    );
}

#[test]
fn objects_are_judged_as_the_api_server_stores_them() {
    let file = fixture("defaulted.yaml");
    let (code, stdout, stderr) = check(&["--level", "baseline", &file]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "{file}: Pod scratch: allowed\n{file}: Pod annotated: allowed\n{file}: Pod hostnet: violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true), hostPort (container \"web\" uses hostPort 8080)\n"
        )
    );
    let (_, stdout, _) = check(&["--level", "restricted", &file]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], format!("{file}: Pod scratch: allowed"));
    assert_eq!(lines[1], format!("{file}: Pod annotated: allowed"));
}

/// The provisioning fixture policy with homes on a claim (restricted does
/// not allow nfs).
fn provisioning_policy(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string("tests/fixtures/provisioning/policy.yaml")
        .unwrap()
        .replace(
            "    nfs:\n      server: nfs.example.com\n      path: /export/home\n",
            "    persistentVolumeClaim:\n      claimName: homes\n",
        );
    assert!(text.contains("claimName: homes"), "{text}");
    let path = dir.join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn mutate_then_check_gives_the_webhooks_verdict_for_provisioned_pods() {
    let dir = tempfile::tempdir().unwrap();
    let policy = provisioning_policy(dir.path());
    let mutated = unroot(
        &[
            "mutate",
            "--policy",
            &policy,
            "--namespace-labels",
            "unroot.dev/provisioning=enabled",
            "--requester",
            "system:serviceaccount:jupyterhub:hub",
            "tests/fixtures/provisioning/notebook.yaml",
        ],
        None,
    );
    assert!(
        mutated.status.success(),
        "{}",
        String::from_utf8_lossy(&mutated.stderr)
    );
    // Only the ConfigMap and the Pod are printed; the pod's provisioning
    // container is exempt by provenance, as in the webhook.
    let judged = unroot(
        &[
            "check",
            "--policy",
            &policy,
            "--namespace-labels",
            "unroot.dev/provisioning=enabled",
            "-",
        ],
        Some(&mutated.stdout),
    );
    let stdout = String::from_utf8_lossy(&judged.stdout);
    assert_eq!(
        judged.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&judged.stderr)
    );
    assert_eq!(stdout, "-: Pod hub-users/jupyter-alice: allowed\n");
    // Without the namespace's provisioning label there is no provenance.
    let judged = unroot(&["check", "--policy", &policy, "-"], Some(&mutated.stdout));
    let stdout = String::from_utf8_lossy(&judged.stdout);
    assert_eq!(judged.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("\"unroot-provision\""), "{stdout}");
}

#[test]
fn the_policys_exemptions_apply() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: unroot.dev/v1\nkind: Policy\npodSecurity:\n  exemptions:\n    namespaces: [legacy]\n    runtimeClassNames: [gvisor]\n",
    )
    .unwrap();
    let pods = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: legacy}\nspec: {containers: [{name: c, image: x, securityContext: {privileged: true}}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: team}\nspec: {runtimeClassName: gvisor, containers: [{name: c, image: x, securityContext: {privileged: true}}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: c, namespace: kube-system}\nspec: {containers: [{name: c, image: x, securityContext: {privileged: true}}]}\n";
    let out = unroot(
        &["check", "--policy", policy.to_str().unwrap(), "-"],
        Some(pods.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "-: Pod legacy/a: allowed (exempt: namespace)\n-: Pod team/b: allowed (exempt: runtimeClass)\n-: Pod kube-system/c: allowed (exempt: excluded)\n"
    );
    // Without the policy, the embedded default exempts nothing but its
    // excluded namespaces.
    let out = unroot(&["check", "-"], Some(pods.as_bytes()));
    assert_eq!(out.status.code(), Some(1));
}
