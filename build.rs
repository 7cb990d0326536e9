//! The version unroot reports (`unroot --version`, `unroot_build_info`,
//! `/dashboard`): the Cargo.toml version, plus the git commit when known, as
//! `UNROOT_VERSION` (`0.1.0 (4e7eb00)`, or `0.1.0`).
//!
//! The commit comes from `UNROOT_GIT_COMMIT` when set (the Containerfile's
//! build argument: an image build has no `.git`), else from `git rev-parse
//! HEAD`. The script reruns only when that variable, `HEAD` or the branch it
//! points at changes: never for a source edit.

use std::path::Path;
use std::process::Command;

/// Digits of the commit in the version string, as `git log --oneline` shows.
const SHORT: usize = 7;

fn main() {
    println!("cargo:rerun-if-env-changed=UNROOT_GIT_COMMIT");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let commit = match std::env::var("UNROOT_GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => Some(commit.trim().to_owned()),
        _ => git_head(),
    };
    let full = match commit {
        Some(commit) => {
            let commit = commit.to_ascii_lowercase();
            if commit.len() < SHORT || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
                // A build error with the cause, rather than a version that lies.
                eprintln!(
                    "UNROOT_GIT_COMMIT (or git rev-parse HEAD) must be a commit id of at least {SHORT} hex digits, got {commit:?}"
                );
                std::process::exit(1);
            }
            format!("{version} ({})", &commit[..SHORT])
        }
        None => version,
    };
    println!("cargo:rustc-env=UNROOT_VERSION={full}");
}

/// `git rev-parse HEAD` in the package directory, and the files whose change
/// moves it (HEAD, the branch's loose ref, packed-refs) as rerun triggers.
/// None outside a git checkout or without git.
fn git_head() -> Option<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let head = git(&["rev-parse", "--verify", "-q", "HEAD"])?;
    let mut args = vec!["rev-parse", "--path-format=absolute"];
    args.extend(["--git-path", "HEAD", "--git-path", "packed-refs"]);
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    if let Some(branch) = &branch {
        args.extend(["--git-path", branch]);
    }
    for path in git(&args).unwrap_or_default().lines() {
        // A watched file that does not exist would rerun the script on every
        // build: watch only those there are.
        if Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(head)
}
