//! The version unroot reports, as a user sees it: `unroot --version`, and
//! `unroot_build_info` and `/dashboard` of a running `unroot serve`. It is the
//! Cargo.toml version plus the commit the binary was built from (build.rs),
//! found here the way the build found it: `UNROOT_GIT_COMMIT` (the
//! Containerfile passes it), else `git rev-parse HEAD`.

use std::process::Command;

use crate::common;

/// `0.1.0 (4e7eb00)`, or `0.1.0` where neither the variable nor git knows
/// the commit.
fn expected() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let commit = std::env::var("UNROOT_GIT_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        });
    match commit {
        Some(commit) => format!("{version} ({})", &commit[..7]),
        None => version.to_owned(),
    }
}

#[test]
fn version_flag_prints_the_cargo_version_and_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_unroot"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("unroot {}\n", expected())
    );
    assert_eq!(unroot::VERSION, expected(), "the library reports the same");
}

#[tokio::test]
async fn a_running_unroot_reports_the_same_version_in_metrics_and_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let (_process, server) = common::Process::standalone(dir.path(), &[]);
    let version = expected();
    assert_eq!(
        server
            .metric(&format!(r#"unroot_build_info{{version="{version}"}}"#))
            .await,
        Some(1.0)
    );
    let dashboard = String::from_utf8(server.dashboard_get("/dashboard").await.body).unwrap();
    assert!(
        dashboard.contains(&format!(r#"<span id="version">{version}</span>"#)),
        "{dashboard}"
    );
}
