//! webhook-config/policy.schema.json: what `unroot policy schema` prints,
//! met by every policy the project ships, and refusing, by sample, what the
//! parser refuses.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use unroot::policy::Document;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn committed_schema() -> Value {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("webhook-config/policy.schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&committed_schema()).unwrap()
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap()
}

#[test]
fn the_committed_schema_is_what_unroot_prints() {
    let out = Command::new(env!("CARGO_BIN_EXE_unroot"))
        .args(["policy", "schema"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let committed =
        std::fs::read_to_string(Path::new(ROOT).join("webhook-config/policy.schema.json")).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "webhook-config/policy.schema.json is stale: run `cargo run -- policy schema > webhook-config/policy.schema.json`"
    );
}

/// Every policy document in the repository's manifests, examples and
/// fixtures (YAML files whose top level is `kind: Policy`).
fn shipped_policies() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml")
                && std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .any(|l| l == "kind: Policy")
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for dir in ["webhook-config", "manifests", "examples", "tests/fixtures"] {
        walk(&Path::new(ROOT).join(dir), &mut out);
    }
    out
}

/// The parser and the schema agree on every policy the project ships: the
/// default, manifests and examples are valid; a fuzz seed may be invalid
/// on purpose, and then the schema refuses it too.
#[test]
fn every_shipped_policy_meets_the_schema() {
    let validator = validator();
    let policies = shipped_policies();
    assert!(policies.len() >= 5, "found only {policies:?}");
    for path in policies {
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = Document::from_yaml(&text);
        let errors: Vec<String> = validator
            .iter_errors(&yaml(&text))
            .map(|e| e.to_string())
            .collect();
        let shown = path.display();
        let fuzz_seed = shown.to_string().contains("/fuzz/");
        match parsed {
            Ok(_) => assert!(errors.is_empty(), "{shown}: {errors:?}"),
            Err(e) => {
                assert!(fuzz_seed, "{shown} does not parse: {e}");
                assert!(!errors.is_empty(), "{shown}: the schema accepts it");
            }
        }
    }
}

#[test]
fn the_schema_refuses_what_the_parser_refuses() {
    let validator = validator();
    let head = "apiVersion: unroot.dev/v1\nkind: Policy\n";
    // (what is wrong, the document after the head)
    let samples = [
        ("an unknown top-level field", "extra: 1\n"),
        (
            "an unknown nested field",
            "securityContext:\n  runAsUsr: 1000\n",
        ),
        ("a wrong type", "securityContext:\n  runAsUser: \"many\"\n"),
        (
            "root as the default user",
            "securityContext:\n  runAsUser: 0\n",
        ),
        (
            "an unknown seccomp type",
            "securityContext:\n  seccompProfileType: Unconfined\n",
        ),
        (
            "an unknown hardening mode",
            "securityContext:\n  harden: maybe\n",
        ),
        (
            "an unknown level",
            "podSecurity:\n  defaults:\n    enforce: strict\n",
        ),
        (
            "a malformed version",
            "podSecurity:\n  defaults:\n    enforceVersion: v1.07\n",
        ),
        ("a list where a map goes", "webhook: [kube-system]\n"),
        (
            "a string where a list goes",
            "webhook:\n  excludedNamespaces: kube-system\n",
        ),
        (
            "an unknown selector operator",
            "trustBundle:\n  namespaceSelector:\n    matchExpressions:\n      - {key: a, operator: Like, values: [b]}\n",
        ),
        (
            "a selector requirement without its operator",
            "trustBundle:\n  namespaceSelector:\n    matchExpressions:\n      - {key: a}\n",
        ),
        (
            "containers neither all nor a list",
            "trustBundle:\n  containers: some\n",
        ),
        (
            "an id range starting at root",
            "provisioning:\n  uidRange: {min: 0, max: 10}\n",
        ),
        (
            "an init container without an image",
            "provisioning:\n  initContainer: {name: init}\n",
        ),
        (
            "another apiVersion",
            "apiVersion: unroot.dev/v2\nkind: Policy\n",
        ),
    ];
    for (what, rest) in samples {
        let text = if rest.starts_with("apiVersion") {
            rest.to_owned()
        } else {
            format!("{head}{rest}")
        };
        assert!(
            Document::from_yaml(&text).is_err(),
            "{what}: the parser accepts it"
        );
        assert!(
            !validator.is_valid(&yaml(&text)),
            "{what}: the schema accepts it"
        );
    }
    // And what the parser accepts, the schema does too: a policy states only
    // what it changes; YAML 1.1 reads an unquoted `off` as false.
    for text in [
        head.to_owned(),
        format!("{head}securityContext:\n  harden: off\n  runAsUser: 1000\n"),
        format!("{head}trustBundle:\n  containers: [app]\n"),
        format!("{head}podSecurity:\n  defaults:\n    warnVersion: v1.30\n"),
    ] {
        assert!(Document::from_yaml(&text).is_ok(), "{text}");
        let errors: Vec<String> = validator
            .iter_errors(&yaml(&text))
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{text}: {errors:?}");
    }
}
