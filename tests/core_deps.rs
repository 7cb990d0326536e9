//! The pure core stays pure: `crates/unroot-core` is its own crate so that
//! the compiler, not a comment, keeps I/O out of the decisions. This test
//! reads its normal dependency tree from `cargo tree` and fails naming any
//! crate of the async shell that got in.

use std::process::Command;

/// Crates the core must not depend on, directly or not: the runtime, the
/// HTTP stack, the Kubernetes client, TLS, metrics and logging. A crate
/// named `X` or `X-…` (tokio-util, hyper-util, kube-core) counts as `X`.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "hyper",
    "axum",
    "tower",
    "kube",
    "rustls",
    "prometheus",
    "tracing",
];

/// The forbidden crates among `cargo tree --prefix none` lines
/// (`name vX.Y.Z (…)`), each once.
fn forbidden_in(tree: &str) -> Vec<String> {
    let mut found: Vec<String> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| {
            FORBIDDEN.iter().any(|f| {
                name == f
                    || name
                        .strip_prefix(f)
                        .is_some_and(|rest| rest.starts_with('-'))
            })
        })
        .map(str::to_owned)
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn the_core_depends_on_no_runtime_network_tls_metrics_or_logging_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "unroot-core",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("unroot-core v"),
        "cargo tree did not list the core:\n{stdout}"
    );
    let found = forbidden_in(&stdout);
    assert!(
        found.is_empty(),
        "crates/unroot-core depends on {} (normal dependencies, see `cargo tree -p unroot-core -e normal -i NAME`); \
         the core does no I/O: move the code that needs them to the shell",
        found.join(", ")
    );
}

#[test]
fn the_check_names_prefixed_crates_and_spares_lookalikes() {
    let tree = "unroot-core v0.1.0 (/src)\ntokio-util v0.7.0\nserde v1.0.0\ntowerish v1.0.0\nkube-core v5.0.0\n";
    assert_eq!(forbidden_in(tree), ["kube-core", "tokio-util"]);
}
