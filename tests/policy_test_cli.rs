//! `unroot test DIR`: the worked example passes, a wrong expectation fails
//! with the difference shown, and a broken suite is bad input.

use std::path::Path;
use std::process::Command;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy-test");

fn unroot_test(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_unroot"))
        .arg("test")
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A copy of the example, whose files `edit` may change.
fn example_copy(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["", "pods", "workloads", "expected"] {
        let from = Path::new(EXAMPLE).join(sub);
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.path().join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    edit(dir.path());
    dir
}

fn replace(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", file.display());
    std::fs::write(file, text.replace(from, to)).unwrap();
}

#[test]
fn the_worked_example_passes() {
    let (code, out, err) = unroot_test(&[], Path::new(EXAMPLE));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("5 passed, 0 failed"), "{out}");
    let (code, out, _) = unroot_test(&["-o", "json"], Path::new(EXAMPLE));
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["passed"], 5);
    assert_eq!(report["cases"][1]["got"]["verdict"], "denied");
}

#[test]
fn a_wrong_hardened_object_fails_with_a_diff() {
    // The expectation says the root filesystem stays writable; the policy
    // makes it read-only.
    let dir = example_copy(|d| {
        replace(
            &d.join("expected/web.yaml"),
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: false",
        );
    });
    let (code, out, err) = unroot_test(&[], dir.path());
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("web is hardened "), "{out}");
    assert!(out.contains("FAIL web is hardened"), "{out}");
    assert!(out.contains("--- expected\n"), "{out}");
    assert!(
        out.contains("-      readOnlyRootFilesystem: false\n"),
        "{out}"
    );
    assert!(
        out.contains("+      readOnlyRootFilesystem: true\n"),
        "{out}"
    );
    assert!(out.contains("4 passed, 1 failed"), "{out}");
}

#[test]
fn a_wrong_verdict_or_message_fails_naming_both() {
    let dir = example_copy(|d| {
        let tests = d.join("tests.yaml");
        replace(
            &tests,
            "      message: allowPrivilegeEscalation != false",
            "      message: hostPath volumes",
        );
        replace(
            &tests,
            "    file: pods/root.yaml\n    expect:\n      verdict: denied",
            "    file: pods/root.yaml\n    expect:\n      verdict: allowed",
        );
        replace(
            &tests,
            "      message: unroot refuses root",
            "      # message: unroot refuses root",
        );
    });
    let (code, out, _) = unroot_test(&[], dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("message: expected it to contain \"hostPath volumes\", got \"pods \\\"escalating\\\" is forbidden"), "{out}");
    assert!(out.contains("verdict: expected allowed, got denied: pods \"legacy\" is forbidden: unroot refuses root"), "{out}");
    assert!(out.contains("3 passed, 2 failed"), "{out}");
}

#[test]
fn a_broken_suite_exits_2_naming_each_problem() {
    let dir = example_copy(|d| {
        let tests = d.join("tests.yaml");
        replace(
            &tests,
            "namespace: team-baseline\n    file: pods/root.yaml",
            "namespace: team-nowhere\n    file: pods/root.yaml",
        );
        replace(&tests, "file: pods/web.yaml", "file: pods/missing.yaml");
        replace(
            &d.join("namespaces.yaml"),
            "unroot.dev/enforce: restricted",
            "unroot.dev/enforce: strict",
        );
        std::fs::write(
            d.join("more.test.yaml"),
            "cases:\n- name: typo\n  file: pods/web.yaml\n  namespace: team-baseline\n  expect: {verdict: refused}\n",
        )
        .unwrap();
    });
    let (code, out, err) = unroot_test(&[], dir.path());
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    for says in [
        "namespace \"team-nowhere\" is not declared in namespaces.yaml",
        "pods/missing.yaml: failed to read",
        "more.test.yaml",
        "refused",
        "namespace \"team-restricted\"",
        "the namespace webhook refuses such labels",
    ] {
        assert!(err.contains(says), "{says:?} not in:\n{err}");
    }
}
