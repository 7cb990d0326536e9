//! Message building shared by the checks (quoting, container lists, setters)
//! and the admission output strings of spec §3.2.

use std::fmt::Write as _;

use super::{LevelVersion, Violation, detail_list};

/// `violates PodSecurity "{lv}": {detail list}`: the inner enforce message.
#[must_use]
pub fn deny_reason(lv: LevelVersion, violations: &[Violation]) -> String {
    format!("violates PodSecurity \"{lv}\": {}", detail_list(violations))
}

/// `pods "{name}" is forbidden: violates PodSecurity …`, the status message of
/// an enforce deny (`pods is forbidden: …` when the request has no name, e.g.
/// `generateName`).
#[must_use]
pub fn deny_message(pod_name: &str, lv: LevelVersion, violations: &[Violation]) -> String {
    let reason = deny_reason(lv, violations);
    if pod_name.is_empty() {
        format!("pods is forbidden: {reason}")
    } else {
        format!("pods \"{pod_name}\" is forbidden: {reason}")
    }
}

/// `would violate PodSecurity "{lv}": {detail list}`: the warning, and the
/// value of the `audit-violations` annotation.
#[must_use]
pub fn violation_message(lv: LevelVersion, violations: &[Violation]) -> String {
    format!(
        "would violate PodSecurity \"{lv}\": {}",
        detail_list(violations)
    )
}

/// Go's `%q` (`strconv.Quote`): the spelling upstream uses for annotation and
/// label values in messages. Rust's `{:?}` differs (`\u{a0}` vs `\u00a0`,
/// `\0` vs `\x00`, and which characters count as printable).
#[must_use]
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_go_quoted(&mut out, s);
    out
}

pub(crate) fn push_go_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if c < ' ' || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_ascii() || is_printable(c) => out.push(c),
            c if u32::from(c) < 0x1_0000 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push('"');
}

/// Go's `unicode.IsPrint` for non-ASCII characters: letters, marks, numbers,
/// punctuation and symbols; not other spaces, controls, format characters,
/// private use, surrogates or unassigned code points. Rust's `escape_debug`
/// escapes exactly those categories (outside the first position, where it
/// also escapes grapheme extenders), so it serves as the table; the two agree
/// except for characters assigned in Unicode versions newer than Go's.
fn is_printable(c: char) -> bool {
    let mut buf = [0u8; 8];
    buf[0] = b'a';
    let len = 1 + c.encode_utf8(&mut buf[1..]).len();
    std::str::from_utf8(&buf[..len]).is_ok_and(|s| s.escape_debug().count() == 2)
}

/// `Q(list)`: each item wrapped in `"` and joined with `", "`; items are not
/// escaped.
pub(crate) fn push_quoted<'a>(out: &mut String, items: impl IntoIterator<Item = &'a str>) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('"');
        out.push_str(item);
        out.push('"');
    }
}

/// Items joined with `, `, unquoted.
pub(crate) fn push_joined<'a>(out: &mut String, items: impl IntoIterator<Item = &'a str>) {
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(item);
    }
}

/// `CN(names)`: `container "a"` or `containers "a", "b"`.
pub(crate) fn push_containers(out: &mut String, names: &[&str]) {
    out.push_str(if names.len() == 1 {
        "container "
    } else {
        "containers "
    });
    push_quoted(out, names.iter().copied());
}

/// `setters`: `pod`, then `CN(containers)`, joined with ` and `.
pub(crate) fn setters(pod: bool, containers: &[&str]) -> String {
    let mut out = String::new();
    if pod {
        out.push_str("pod");
    }
    if !containers.is_empty() {
        if pod {
            out.push_str(" and ");
        }
        push_containers(&mut out, containers);
    }
    out
}

/// `singular` when `count == 1`, else `plural`.
pub(crate) fn plural(count: usize, singular: &'static str, plural: &'static str) -> &'static str {
    if count == 1 { singular } else { plural }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pss::{Level, Version};

    #[test]
    fn go_quote_matches_go_percent_q() {
        for (input, want) in [
            ("", r#""""#),
            ("unconfined", r#""unconfined""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("\x07\x08\x0c\n\r\t\x0b", r#""\a\b\f\n\r\t\v""#),
            ("\x00\x1b\x7f", r#""\x00\x1b\x7f""#),
            ("é✓日本", "\"é✓日本\""),
            ("\u{a0}\u{200b}\u{2028}", r#""\u00a0\u200b\u2028""#),
            ("\u{e000}", r#""\ue000""#),
            ("\u{10ffff}", r#""\U0010ffff""#),
            ("\u{1f600}", "\"\u{1f600}\""),
            // Combining marks are printable in Go, even first.
            ("\u{301}x", "\"\u{301}x\""),
            ("a b", r#""a b""#),
        ] {
            assert_eq!(go_quote(input), want, "{input:?}");
        }
    }

    #[test]
    fn lists_and_setters() {
        let mut out = String::new();
        push_containers(&mut out, &["a"]);
        assert_eq!(out, "container \"a\"");
        out.clear();
        push_containers(&mut out, &["a", "b", "a"]);
        assert_eq!(out, "containers \"a\", \"b\", \"a\"");
        assert_eq!(setters(true, &[]), "pod");
        assert_eq!(setters(false, &["c"]), "container \"c\"");
        assert_eq!(
            setters(true, &["c", "d"]),
            "pod and containers \"c\", \"d\""
        );
    }

    #[test]
    fn output_strings() {
        let lv = LevelVersion {
            level: Level::Baseline,
            version: Version::Minor(99),
        };
        let violations = [Violation {
            check: "privileged",
            reason: "privileged".into(),
            detail: "container \"a\" must not set securityContext.privileged=true".into(),
        }];
        assert_eq!(
            deny_message("web", lv, &violations),
            "pods \"web\" is forbidden: violates PodSecurity \"baseline:v1.99\": privileged (container \"a\" must not set securityContext.privileged=true)"
        );
        assert_eq!(
            deny_message("", lv, &violations),
            "pods is forbidden: violates PodSecurity \"baseline:v1.99\": privileged (container \"a\" must not set securityContext.privileged=true)"
        );
        assert_eq!(
            violation_message(lv, &violations),
            "would violate PodSecurity \"baseline:v1.99\": privileged (container \"a\" must not set securityContext.privileged=true)"
        );
    }
}
