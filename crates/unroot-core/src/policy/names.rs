//! The syntax rules for names that policy validation and the mutations share:
//! Kubernetes object names, label keys and values, ConfigMap keys, POSIX
//! user names, file names, paths, capabilities and digest-pinned images.
//!
//! Each function answers yes or no; the caller words the error, because it
//! knows the field path.

/// A DNS-1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63
/// characters): container names, volume names.
#[must_use]
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && is_dns1123_part(s)
}

/// A DNS-1123 subdomain (labels joined by `.`, at most 253 characters): the
/// names of most objects, ConfigMaps included.
#[must_use]
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_part)
}

fn is_dns1123_part(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            alnum(first) && alnum(last) && b.iter().all(|c| alnum(c) || *c == b'-')
        }
        _ => false,
    }
}

/// A label value: empty, or up to 63 characters of `[A-Za-z0-9._-]` that
/// start and end with an alphanumeric character.
#[must_use]
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || (s.len() <= 63 && is_qualified_part(s))
}

/// A label key: an optional DNS-1123 subdomain prefix and `/`, then a name of
/// up to 63 characters of `[A-Za-z0-9._-]` that starts and ends with an
/// alphanumeric character (`unroot.dev/trust-bundle`, `team`).
#[must_use]
pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    prefix.is_none_or(is_dns1123_subdomain) && name.len() <= 63 && is_qualified_part(name)
}

fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A ConfigMap data key (`[-._a-zA-Z0-9]+`, at most 253 characters, not `.`
/// or `..`).
#[must_use]
pub fn is_config_map_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A POSIX portable user or group name as `useradd` accepts it by default:
/// `[a-z_][a-z0-9_-]*[$]?`, at most 32 characters.
#[must_use]
pub fn is_portable_user_name(s: &str) -> bool {
    let body = s.strip_suffix('$').unwrap_or(s);
    let b = body.as_bytes();
    !b.is_empty()
        && s.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'))
}

/// A single file name: not empty, not `.` or `..`, no `/` or NUL, at most
/// 255 bytes.
#[must_use]
pub fn is_file_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s != "." && s != ".." && !s.contains(['/', '\0'])
}

/// An absolute path without empty, `.` or `..` components, without a
/// trailing `/` and without control characters (`/etc/ssl/certs`).
#[must_use]
pub fn is_clean_absolute_path(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('/') else {
        return false;
    };
    !rest.is_empty()
        && !s.chars().any(char::is_control)
        && rest
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Whether `path` is strictly below the directory `dir` (both clean and
/// absolute).
#[must_use]
pub fn is_below(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
}

/// A Linux capability name as Kubernetes spells it: upper case, digits and
/// `_`, without the `CAP_` prefix (`NET_BIND_SERVICE`).
#[must_use]
pub fn is_capability_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with("CAP_")
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Every Linux capability (capabilities(7), Linux 6.x), as Kubernetes spells
/// them: without the `CAP_` prefix, in kernel number order (`CHOWN` is 0,
/// `CHECKPOINT_RESTORE` is 40).
pub const LINUX_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// A capability the Linux kernel defines ([`LINUX_CAPABILITIES`]).
#[must_use]
pub fn is_linux_capability(s: &str) -> bool {
    LINUX_CAPABILITIES.contains(&s)
}

/// An image reference pinned by digest: `name@sha256:<64 lower-case hex>`
/// (a tag before the digest is allowed; the digest decides).
#[must_use]
pub fn is_pinned_image(s: &str) -> bool {
    let Some((name, digest)) = s.rsplit_once('@') else {
        return false;
    };
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return false;
    };
    !name.is_empty()
        && !name.contains(|c: char| c.is_whitespace() || c == '@')
        && hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::too_many_lines)] // one table, one row per name and rule
    fn names_follow_their_rules() {
        type Rule = fn(&str) -> bool;
        let sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let pinned = format!("reg.example/p@sha256:{sha}");
        let tagged_and_pinned = format!("reg.example:5000/p:1.0@sha256:{sha}");
        let upper = format!("p@sha256:{}", sha.to_uppercase());
        let nameless = format!("@sha256:{sha}");
        let (a64, a33) = ("a".repeat(64), "a".repeat(33));
        let cases: Vec<(&str, Rule, &str, bool)> = vec![
            ("label", is_dns1123_label, "app-1", true),
            ("label", is_dns1123_label, "App", false),
            ("label", is_dns1123_label, "-a", false),
            ("label", is_dns1123_label, "a-", false),
            ("label", is_dns1123_label, "", false),
            ("label", is_dns1123_label, &a64, false),
            (
                "subdomain",
                is_dns1123_subdomain,
                "unroot-identity-bob",
                true,
            ),
            ("subdomain", is_dns1123_subdomain, "a.b-c", true),
            (
                "subdomain",
                is_dns1123_subdomain,
                "unroot-identity-b_b",
                false,
            ),
            (
                "subdomain",
                is_dns1123_subdomain,
                "unroot-identity-bob-",
                false,
            ),
            ("subdomain", is_dns1123_subdomain, "a..b", false),
            ("label key", is_label_key, "unroot.dev/trust-bundle", true),
            ("label key", is_label_key, "team", true),
            ("label key", is_label_key, "Bad_Prefix/x", false),
            ("label key", is_label_key, "a/", false),
            ("label value", is_label_value, "", true),
            ("label value", is_label_value, "enabled", true),
            ("label value", is_label_value, "-x", false),
            (
                "configmap key",
                is_config_map_key,
                "ca-certificates.crt",
                true,
            ),
            ("configmap key", is_config_map_key, "a/b", false),
            ("configmap key", is_config_map_key, "..", false),
            ("user", is_portable_user_name, "jovyan", true),
            ("user", is_portable_user_name, "_svc", true),
            ("user", is_portable_user_name, "machine$", true),
            ("user", is_portable_user_name, "a-b_c9", true),
            ("user", is_portable_user_name, "Bob", false),
            ("user", is_portable_user_name, "9lives", false),
            ("user", is_portable_user_name, "a:b", false),
            ("user", is_portable_user_name, "$", false),
            ("user", is_portable_user_name, &a33, false),
            ("file", is_file_name, "cert.pem", true),
            ("file", is_file_name, "a/b", false),
            ("file", is_file_name, "..", false),
            ("path", is_clean_absolute_path, "/etc/ssl/certs", true),
            ("path", is_clean_absolute_path, "/", false),
            ("path", is_clean_absolute_path, "etc", false),
            ("path", is_clean_absolute_path, "/etc/", false),
            ("path", is_clean_absolute_path, "/etc//ssl", false),
            ("path", is_clean_absolute_path, "/home/../etc", false),
            ("path", is_clean_absolute_path, "/home/a\nb", false),
            ("capability", is_capability_name, "CHOWN", true),
            ("capability", is_capability_name, "CAP_CHOWN", false),
            ("capability", is_capability_name, "chown", false),
            ("linux capability", is_linux_capability, "IPC_LOCK", true),
            (
                "linux capability",
                is_linux_capability,
                "CHECKPOINT_RESTORE",
                true,
            ),
            ("linux capability", is_linux_capability, "IPC_LOK", false),
            ("linux capability", is_linux_capability, "ALL", false),
            ("image", is_pinned_image, &pinned, true),
            ("image", is_pinned_image, &tagged_and_pinned, true),
            ("image", is_pinned_image, "busybox:1.36", false),
            ("image", is_pinned_image, "busybox@sha256:abc", false),
            ("image", is_pinned_image, &upper, false),
            ("image", is_pinned_image, &nameless, false),
        ];
        for (what, rule, input, want) in cases {
            assert_eq!(rule(input), want, "{what}: {input:?}");
        }
    }

    #[test]
    fn below_means_strictly_inside() {
        assert!(is_below("/home/bob", "/home"));
        assert!(!is_below("/home", "/home"));
        assert!(!is_below("/homework/bob", "/home"));
        assert!(!is_below("/home/", "/home"));
    }
}
