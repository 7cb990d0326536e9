//! `unroot certs issue` and `inspect` as a user runs them: the real binary
//! on a directory of PEM files.

use std::process::Command;

/// Runs `unroot certs ARGS`: (exit code, stdout, stderr).
fn certs(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_unroot"))
        .arg("certs")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn issue_writes_a_ca_and_a_serving_pair_that_inspect_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pki");
    let out = out.to_str().unwrap();
    let (code, stdout, stderr) = certs(&[
        "issue",
        "--out-dir",
        out,
        "--namespace",
        "platform",
        "--ip",
        "127.0.0.1",
        "--dns-name",
        "webhook.example.com",
        "--serving-cert-lifetime",
        "30d",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("wrote ca.crt, ca.key, tls.crt, tls.key"),
        "{stdout}"
    );
    for name in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
        assert!(dir.path().join("pki").join(name).is_file(), "{name}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("pki/tls.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "keys are not readable by others");
    }

    let (code, stdout, _) = certs(&["inspect", out]);
    assert_eq!(code, Some(0), "{stdout}");
    for want in [
        "names:       unroot.platform.svc, unroot.platform.svc.cluster.local, webhook.example.com, 127.0.0.1",
        "kind:        CA, ECDSA P-256",
        "kind:        end entity, ECDSA P-256",
        "(expires in 29d 23h)",
        "(expires in 364d 23h)",
        "signed by:   ca.crt",
        "tls.key: matches tls.crt",
        "ca.key: matches ca.crt",
        "caBundle: 1 CA certificate(s)",
        "usable: yes",
        "sha256:      ",
    ] {
        assert!(stdout.contains(want), "{want:?} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("PRIVATE"), "no key material printed");

    // Files one by one: certificates are described, keys are not shown.
    let tls = format!("{out}/tls.crt");
    let key = format!("{out}/tls.key");
    let (code, stdout, _) = certs(&["inspect", &tls, &key]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("subject:     CN=unroot.platform.svc"),
        "{stdout}"
    );
    assert!(stdout.contains("a private key (not shown)"), "{stdout}");

    // Issuing over existing files needs --force.
    let (code, _, stderr) = certs(&["issue", "--out-dir", out]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("already holds certificates; pass --force"),
        "{stderr}"
    );
}

#[test]
fn inspect_exits_1_when_the_key_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        let (code, _, stderr) = certs(&["issue", "--out-dir", d.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{stderr}");
    }
    std::fs::copy(b.join("tls.key"), a.join("tls.key")).unwrap();
    let (code, stdout, _) = certs(&["inspect", a.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("usable: no (serving certificate: "),
        "{stdout}"
    );

    let (code, _, stderr) = certs(&["inspect", "/nonexistent/tls.crt"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("failed to read /nonexistent/tls.crt"),
        "{stderr}"
    );
}
