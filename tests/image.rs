//! The Containerfile users build and `make image` builds (image/build.sh):
//! its default bases are pinned by digest, its stages are the ones the README
//! describes (the binary as entrypoint, user 65532, the OCI labels), its
//! version is Cargo.toml's, and `.dockerignore` keeps what is built or secret
//! out of the build context. The e2e suite runs the image itself
//! (e2e/scenarios/50-self.sh).

use std::path::Path;

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()))
}

/// The Containerfile's instructions, continuation lines joined, comments out.
fn instructions() -> Vec<String> {
    let text = read("Containerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(line);
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

/// The default of `ARG NAME=...` (the first one).
fn arg_default(name: &str) -> Option<String> {
    instructions().iter().find_map(|i| {
        i.strip_prefix("ARG ")
            .and_then(|rest| rest.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix('='))
            .map(str::to_owned)
    })
}

/// `name[:tag]@sha256:<64 hex>`.
fn pinned(reference: &str) -> bool {
    reference
        .split_once("@sha256:")
        .is_some_and(|(name, digest)| {
            !name.is_empty()
                && !name.contains(char::is_whitespace)
                && digest.len() == 64
                && digest
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

#[test]
fn the_default_bases_are_pinned_by_digest_and_every_stage_starts_from_one() {
    for arg in ["BUILDER_IMAGE", "RUNTIME_IMAGE"] {
        let default =
            arg_default(arg).unwrap_or_else(|| panic!("no `ARG {arg}=` in the Containerfile"));
        assert!(
            pinned(&default),
            "ARG {arg}={default} is not pinned by digest (NAME@sha256:...)"
        );
    }
    assert!(arg_default("BUILDER_IMAGE").unwrap().contains("rust:"));
    assert!(
        arg_default("RUNTIME_IMAGE")
            .unwrap()
            .contains("distroless/cc-debian12:nonroot")
    );
    let froms: Vec<String> = instructions()
        .into_iter()
        .filter_map(|i| i.strip_prefix("FROM ").map(str::to_owned))
        .collect();
    assert_eq!(
        froms,
        ["${BUILDER_IMAGE} AS build", "${RUNTIME_IMAGE}"],
        "every stage starts from a pinned base argument"
    );
    for i in instructions() {
        assert!(
            !i.starts_with("COPY --from=") || i.starts_with("COPY --from=build "),
            "a COPY from an image that is not pinned: {i}"
        );
    }
}

#[test]
fn the_final_stage_runs_the_binary_as_65532_and_carries_the_oci_labels() {
    let all = instructions();
    let runtime = all
        .iter()
        .position(|i| i == "FROM ${RUNTIME_IMAGE}")
        .expect("a final stage from RUNTIME_IMAGE");
    let last = &all[runtime..];
    for want in [
        "COPY --from=build /out/unroot /unroot",
        "USER 65532:65532",
        r#"ENTRYPOINT ["/unroot"]"#,
    ] {
        assert!(
            last.iter().any(|i| i == want),
            "the final stage has no `{want}`: {last:#?}"
        );
    }
    let labels = last
        .iter()
        .find(|i| i.starts_with("LABEL "))
        .expect("a LABEL");
    for label in [
        r#"org.opencontainers.image.version="${VERSION}""#,
        r#"org.opencontainers.image.revision="${UNROOT_GIT_COMMIT}""#,
        r#"org.opencontainers.image.source="${SOURCE_URL}""#,
        r#"org.opencontainers.image.licenses="Apache-2.0""#,
    ] {
        assert!(labels.contains(label), "{label} not in {labels}");
    }
    assert_eq!(
        arg_default("VERSION").as_deref(),
        Some(env!("CARGO_PKG_VERSION")),
        "the Containerfile's default VERSION is Cargo.toml's"
    );
}

#[test]
fn dockerignore_keeps_built_secret_and_history_out_of_the_context() {
    // Docker's and podman's patterns are relative to the context root; a
    // trailing slash does not matter, and a later `!pattern` takes a path
    // back in.
    let patterns: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_start_matches('/').trim_end_matches('/').to_owned())
        .collect();
    for dir in [
        "target",
        "certs",
        ".git",
        "fuzz/artifacts",
        "fuzz/corpus",
        "fuzz/target",
    ] {
        let excluded = patterns.iter().rposition(|p| p == dir);
        let taken_back = patterns.iter().rposition(|p| {
            p.strip_prefix('!')
                .is_some_and(|p| p == dir || p.starts_with(&format!("{dir}/")))
        });
        assert!(
            excluded.is_some() && taken_back.is_none_or(|back| back < excluded.unwrap()),
            "{dir}/ must stay out of the build context: .dockerignore has {patterns:?}"
        );
    }
}
