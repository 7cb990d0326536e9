//! `unroot policy validate` and `unroot policy show` as a user runs them.

use std::process::Command;

fn unroot(args: &[&str], file: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_unroot"))
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn show_prints_the_effective_policy_of_a_partial_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(
        &file,
        "apiVersion: unroot.dev/v1\nkind: Policy\nsecurityContext: {runAsUser: 10001}\n",
    )
    .unwrap();
    let (code, out, err) = unroot(&["policy", "validate"], &file);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid (hash "), "{out}");
    let (code, out, err) = unroot(&["policy", "show"], &file);
    assert_eq!(code, 0, "{err}");
    for line in [
        "  runAsUser: 10001\n",
        "  runAsGroup: 65532\n",
        "    enforce: baseline\n",
        "  mountPath: /etc/ssl/certs\n",
        "  - kube-system\n",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
}

#[test]
fn validate_lists_every_error_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(
        &file,
        "apiVersion: unroot.dev/v1\nkind: Policy\nsecurityContext:\n  runAsUser: 0\n  overide: true\npodSecurity: {defaults: {enforce: strict}}\n",
    )
    .unwrap();
    let (code, _, err) = unroot(&["policy", "validate"], &file);
    assert_eq!(code, 1);
    assert!(err.contains("invalid policy, 3 error(s):"), "{err}");
    for want in [
        "securityContext.overide: unknown field \"overide\"",
        "securityContext.runAsUser: 0 is not allowed",
        "podSecurity.defaults.enforce: \"strict\" is not one of",
    ] {
        assert!(err.contains(want), "{want} not in {err}");
    }
    let (code, _, err) = unroot(&["policy", "show"], &file);
    assert_eq!(code, 1, "{err}");
}
