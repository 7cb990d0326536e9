//! `unroot test DIR`: a policy's test suite, run offline through the
//! webhooks' own decisions (see [`super::replay`]), in the manner of
//! `kyverno test` and `gator verify`.
//!
//! A directory holds:
//! - `policy.yaml`: the policy under test (the embedded default when absent);
//! - `namespaces.yaml`: the namespaces the cases use, with their labels
//!   (Namespace objects: multi-document YAML, a `List`, or a YAML list);
//! - `tests.yaml` and `*.test.yaml`: the cases, each a pod or workload (a
//!   file, or inline), its namespace, and what is expected: the verdict, a
//!   part of the deny message, the warnings, the hardened object.
//!
//! Each case is a CREATE as the API server makes it: `/mutate`, the patch
//! applied, then `/validate` on the patched object. docs/policy-test.md
//! walks through an example (examples/policy-test/).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::replay::{self, Webhook};
use crate::admission::{self, Decoded};
use crate::namespaces::Labels;
use crate::policy::{Document, DocumentFile as _, Snapshot};

/// Exit code when every case passes.
pub const EXIT_PASSED: u8 = 0;
/// Exit code when any case fails.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for a suite that cannot be run: unreadable or invalid files,
/// an undeclared namespace, an object that is no Pod or workload.
pub const EXIT_INVALID: u8 = 2;

const AFTER_HELP: &str = "\
DIR holds policy.yaml (optional: the embedded default policy otherwise),
namespaces.yaml (the Namespaces the cases use, with their labels) and the
cases in tests.yaml and *.test.yaml:

  cases:
  - name: web is hardened
    namespace: team-a          # declared in namespaces.yaml
    file: pods/web.yaml        # or `object:` with the manifest inline
    user: alice                # optional: userInfo.username of the request
    expect:
      verdict: allowed         # or denied
      message: runAsNonRoot    # optional: part of the deny message
      warnings: []             # optional: each a part of one warning, all of them
      object: expected/web.yaml  # optional: the hardened object

Each case is a CREATE as the API server sends it: /mutate, its patch
applied, then /validate on the result. Paths are relative to the file that
names them. See docs/policy-test.md.

Exit status: 0 when every case passes, 1 when any fails, 2 when the suite
cannot be run (a file is unreadable or invalid, a namespace is not
declared, an object is no Pod or workload).";

/// Arguments of `unroot test`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// A table and the differences of failed cases, or the results as one
    /// JSON or YAML object. `--format` is an alias.
    #[arg(short = 'o', long = "output", alias = "format", value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// The directory of the suite.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table (case, namespace, expected, got, result), then what differs.
    Text,
    /// `{"passed","failed","cases":[{"name","file","namespace","expected","got","result","failures"}]}`.
    Json,
    /// The same object as YAML.
    Yaml,
}

/// A file of cases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    cases: Vec<Case>,
}

/// One case, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// Default: the object's `metadata.namespace`.
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    user: String,
    expect: Expect,
}

/// What a case expects.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warnings: Option<Vec<String>>,
    /// A file with the hardened object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    object: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Allowed,
    Denied,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
        }
    }
}

/// A case ready to run: files read, namespace found.
struct Loaded {
    name: String,
    file: String,
    namespace: String,
    labels: Labels,
    user: String,
    object: Value,
    expect: Expect,
    expected_object: Option<Value>,
}

/// What the webhooks did with a case.
#[derive(Debug, Serialize)]
struct Got {
    verdict: Verdict,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip)]
    object: Value,
}

/// One case's result.
#[derive(Debug, Serialize)]
struct Outcome {
    name: String,
    file: String,
    namespace: String,
    expected: Expect,
    got: Got,
    result: &'static str,
    /// What differs, one entry per expectation; a hardened object's
    /// difference as a unified diff of its YAML.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failures: Vec<String>,
}

/// The results of a suite.
#[derive(Debug, Serialize)]
struct Report {
    passed: usize,
    failed: usize,
    cases: Vec<Outcome>,
}

/// Runs `unroot test`.
#[must_use]
pub fn run(args: &Args) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    ExitCode::from(execute(args, &mut stdout.lock(), &mut stderr.lock()))
}

/// The command, writing results to `out` and errors to `err`; returns the
/// exit code.
pub fn execute(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let (policy, cases) = match load(&args.dir) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for e in errors {
                let _ = writeln!(err, "error: {e}");
            }
            return EXIT_INVALID;
        }
    };
    let mut outcomes = Vec::with_capacity(cases.len());
    for case in cases {
        match run_case(&policy, case) {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => {
                let _ = writeln!(err, "error: {e}");
                return EXIT_INVALID;
            }
        }
    }
    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    let report = Report {
        passed: outcomes.len() - failed,
        failed,
        cases: outcomes,
    };
    let printed = match args.output {
        Format::Text => Ok(render_text(&report)),
        Format::Json => serde_json::to_string_pretty(&report)
            .map(|t| t + "\n")
            .map_err(|e| e.to_string()),
        Format::Yaml => serde_saphyr::to_string(&report).map_err(|e| e.to_string()),
    };
    match printed.map(|text| out.write_all(text.as_bytes())) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = writeln!(err, "error: failed to write the results: {e}");
            return EXIT_INVALID;
        }
        Err(e) => {
            let _ = writeln!(err, "error: failed to print the results: {e}");
            return EXIT_INVALID;
        }
    }
    if failed == 0 {
        EXIT_PASSED
    } else {
        EXIT_FAILED
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: failed to read: {e}", path.display()))
}

/// Reads the whole suite, collecting every error rather than the first.
fn load(dir: &Path) -> Result<(Snapshot, Vec<Loaded>), Vec<String>> {
    let mut errors = Vec::new();
    if !dir.is_dir() {
        return Err(vec![format!("{}: not a directory", dir.display())]);
    }
    let policy_path = dir.join("policy.yaml");
    let policy = if policy_path.exists() {
        match Document::from_file(&policy_path) {
            Ok(doc) => doc,
            Err(e) => {
                errors.push(e.to_string());
                Document::embedded()
            }
        }
    } else {
        Document::embedded()
    };
    let namespaces = match load_namespaces(&dir.join("namespaces.yaml")) {
        Ok(namespaces) => namespaces,
        Err(e) => {
            errors.push(e);
            BTreeMap::new()
        }
    };
    let snapshot = Snapshot::new(policy);
    for (name, labels) in &namespaces {
        if let Err(e) = replay::check_labels(&snapshot, labels) {
            errors.push(format!("namespaces.yaml: namespace {name:?}: {e}"));
        }
    }
    let files = match suite_files(dir) {
        Ok(files) if files.is_empty() => {
            errors.push(format!(
                "{}: no tests.yaml or *.test.yaml: nothing to test",
                dir.display()
            ));
            files
        }
        Ok(files) => files,
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    };
    let mut names = BTreeSet::new();
    let mut cases = Vec::new();
    for file in files {
        let suite = match read(&file).and_then(|text| {
            serde_saphyr::from_str::<Suite>(&text).map_err(|e| format!("{}: {e}", file.display()))
        }) {
            Ok(suite) => suite,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let base = file.parent().unwrap_or(dir);
        for (index, case) in suite.cases.into_iter().enumerate() {
            let at = format!("{}: cases[{index}] ({:?})", file.display(), case.name);
            if !names.insert(case.name.clone()) {
                errors.push(format!("{at}: another case has this name"));
                continue;
            }
            match load_case(case, &file, base, &namespaces) {
                Ok(loaded) => cases.push(loaded),
                Err(e) => errors.push(format!("{at}: {e}")),
            }
        }
    }
    if errors.is_empty() {
        Ok((snapshot, cases))
    } else {
        Err(errors)
    }
}

/// `tests.yaml` and `*.test.yaml` in `dir`, sorted.
fn suite_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("{}: failed to list: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == "tests.yaml" || n.ends_with(".test.yaml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The namespaces of `namespaces.yaml` and their labels (none when the file
/// is absent).
fn load_namespaces(path: &Path) -> Result<BTreeMap<String, Labels>, String> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let shown = path.display().to_string();
    let text = read(path)?;
    // A plain YAML list of Namespaces, or what manifest files hold.
    let values: Vec<Value> = match serde_saphyr::from_str::<Value>(&text) {
        Ok(Value::Array(items)) => items,
        _ => crate::manifest::parse(&shown, &text)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|o| o.value)
            .collect(),
    };
    let mut out = BTreeMap::new();
    for (index, value) in values.iter().enumerate() {
        let at = format!("{shown}: item {index}");
        if value.get("kind").and_then(Value::as_str) != Some("Namespace") {
            return Err(format!("{at}: expected a Namespace"));
        }
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("{at}: metadata.name is missing"))?;
        let labels: BTreeMap<String, String> = value
            .pointer("/metadata/labels")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| format!("{at} ({name}): metadata.labels: {e}"))?
            .unwrap_or_default();
        for (key, value) in &labels {
            super::mutate::parse_label(&format!("{key}={value}"))
                .map_err(|e| format!("{at} ({name}): metadata.labels: {e}"))?;
        }
        if out
            .insert(name.to_owned(), replay::stored_labels(name, &labels))
            .is_some()
        {
            return Err(format!("{at}: namespace {name:?} is declared twice"));
        }
    }
    Ok(out)
}

/// The one object of a manifest file.
fn one_object(path: &Path) -> Result<Value, String> {
    let shown = path.display().to_string();
    let mut objects = crate::manifest::parse(&shown, &read(path)?).map_err(|e| e.to_string())?;
    match objects.len() {
        1 => Ok(objects.remove(0).value),
        n => Err(format!("{shown}: expected one object, found {n}")),
    }
}

fn load_case(
    case: Case,
    file: &Path,
    base: &Path,
    namespaces: &BTreeMap<String, Labels>,
) -> Result<Loaded, String> {
    let object = match (case.file, case.object) {
        (Some(path), None) => one_object(&base.join(path))?,
        (None, Some(object)) => object,
        _ => return Err("give one of file and object".to_owned()),
    };
    if case.expect.message.is_some() && case.expect.verdict == Verdict::Allowed {
        return Err("expect.message is for a denied verdict".to_owned());
    }
    let namespace = case
        .namespace
        .or_else(|| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .ok_or("no namespace: give `namespace`, or metadata.namespace in the object")?;
    let labels = namespaces.get(&namespace).cloned().ok_or_else(|| {
        format!("namespace {namespace:?} is not declared in namespaces.yaml (declare it, with its labels)")
    })?;
    // Checked now, so that a bad object is bad input, not a failed case.
    replay::create_review(&object, &namespace, &case.user)?;
    let expected_object = case
        .expect
        .object
        .as_ref()
        .map(|path| one_object(&base.join(path)))
        .transpose()?;
    Ok(Loaded {
        name: case.name,
        file: file.display().to_string(),
        namespace,
        labels,
        user: case.user,
        object,
        expect: case.expect,
        expected_object,
    })
}

/// Sends `object` to `webhook` as a CREATE, as the API server would.
fn call(
    webhook: Webhook,
    policy: &Snapshot,
    case: &Loaded,
    object: &Value,
) -> Result<replay::Replayed, String> {
    let review = replay::create_review(object, &case.namespace, &case.user)?;
    let bytes = serde_json::to_vec(&review).map_err(|e| e.to_string())?;
    match admission::decode(&bytes) {
        Ok(Decoded::Review(review)) => {
            replay::replay(webhook, &review.request, policy, Some(&case.labels))
        }
        Ok(Decoded::Malformed { message, .. }) => Err(format!("case {:?}: {message}", case.name)),
        Err(e) => Err(format!("case {:?}: {e}", case.name)),
    }
}

fn message_of(response: &admission::Response) -> String {
    response
        .status
        .as_ref()
        .map(|s| s.message.clone())
        .unwrap_or_default()
}

/// `/mutate`, the patch applied to the object as written, then `/validate`.
fn decide(policy: &Snapshot, case: &Loaded) -> Result<Got, String> {
    let mutated = call(Webhook::Mutate, policy, case, &case.object)?;
    let mut warnings = mutated.response.warnings.clone();
    let mut object = case.object.clone();
    if !mutated.response.allowed {
        return Ok(Got {
            verdict: Verdict::Denied,
            message: message_of(&mutated.response),
            warnings,
            object,
        });
    }
    if let Some(patch) = replay::patch_of(&mutated.response)? {
        json_patch::patch(&mut object, &patch)
            .map_err(|e| format!("case {:?}: failed to apply the patch: {e}", case.name))?;
    }
    let validated = call(Webhook::Validate, policy, case, &object)?;
    warnings.extend(validated.response.warnings.iter().cloned());
    Ok(Got {
        verdict: if validated.response.allowed {
            Verdict::Allowed
        } else {
            Verdict::Denied
        },
        message: message_of(&validated.response),
        warnings,
        object,
    })
}

fn run_case(policy: &Snapshot, case: Loaded) -> Result<Outcome, String> {
    let got = decide(policy, &case)?;
    let mut failures = Vec::new();
    let expect = &case.expect;
    if got.verdict != expect.verdict {
        let why = if got.message.is_empty() {
            String::new()
        } else {
            format!(": {}", got.message)
        };
        failures.push(format!(
            "verdict: expected {}, got {}{why}",
            expect.verdict.as_str(),
            got.verdict.as_str()
        ));
    } else if let Some(part) = &expect.message
        && !got.message.contains(part.as_str())
    {
        failures.push(format!(
            "message: expected it to contain {part:?}, got {:?}",
            got.message
        ));
    }
    if let Some(expected) = &expect.warnings {
        failures.extend(compare_warnings(expected, &got.warnings));
    }
    if let (Some(expected), Some(path)) = (&case.expected_object, &expect.object)
        && *expected != got.object
    {
        let diff = diff_yaml(expected, &got.object)?;
        failures.push(format!(
            "object: the hardened object differs from {}:\n{diff}",
            path.display()
        ));
    }
    Ok(Outcome {
        result: if failures.is_empty() { "PASS" } else { "FAIL" },
        name: case.name,
        file: case.file,
        namespace: case.namespace,
        expected: case.expect,
        got,
        failures,
    })
}

/// Each expected warning must be part of its own warning, and every warning
/// must be expected.
fn compare_warnings(expected: &[String], got: &[String]) -> Vec<String> {
    let mut unmatched: Vec<&String> = got.iter().collect();
    let mut failures = Vec::new();
    for part in expected {
        match unmatched.iter().position(|w| w.contains(part.as_str())) {
            Some(i) => {
                unmatched.remove(i);
            }
            None => failures.push(format!("warnings: expected one containing {part:?}")),
        }
    }
    for warning in unmatched {
        failures.push(format!("warnings: not expected: {warning:?}"));
    }
    failures
}

/// A unified diff of the YAML of `expected` and `got` (`-` expected, `+`
/// got), three lines of context.
fn diff_yaml(expected: &Value, got: &Value) -> Result<String, String> {
    let yaml = |v: &Value| serde_saphyr::to_string(v).map_err(|e| e.to_string());
    let (a, b) = (yaml(expected)?, yaml(got)?);
    Ok(unified_diff(
        &a.lines().collect::<Vec<_>>(),
        &b.lines().collect::<Vec<_>>(),
    ))
}

/// A unified diff of two line lists (longest common subsequence; objects
/// are a few hundred lines).
fn unified_diff(a: &[&str], b: &[&str]) -> String {
    const CONTEXT: usize = 3;
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // The edit script: (tag, line) with ' ', '-', '+'.
    let mut script = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            script.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            script.push(('-', a[i]));
            i += 1;
        } else {
            script.push(('+', b[j]));
            j += 1;
        }
    }
    // Lines within CONTEXT of a change are shown; a gap becomes `@@`.
    let changed: Vec<usize> = (0..script.len()).filter(|&k| script[k].0 != ' ').collect();
    let shown = |k: usize| changed.iter().any(|&c| c.abs_diff(k) <= CONTEXT);
    let mut out = String::from("--- expected\n+++ got\n");
    let mut last_shown = None;
    for (k, (tag, line)) in script.iter().enumerate() {
        if !shown(k) {
            continue;
        }
        if last_shown.is_none_or(|l: usize| l + 1 != k) {
            out.push_str("@@\n");
        }
        let _ = writeln!(out, "{tag}{line}");
        last_shown = Some(k);
    }
    out
}

fn render_text(report: &Report) -> String {
    let headers = ["CASE", "NAMESPACE", "EXPECTED", "GOT", "RESULT"];
    let rows: Vec<[&str; 5]> = report
        .cases
        .iter()
        .map(|o| {
            [
                o.name.as_str(),
                o.namespace.as_str(),
                o.expected.verdict.as_str(),
                o.got.verdict.as_str(),
                o.result,
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&headers).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    for outcome in report.cases.iter().filter(|o| !o.failures.is_empty()) {
        let _ = writeln!(
            out,
            "\nFAIL {} ({}, namespace {}):",
            outcome.name, outcome.file, outcome.namespace
        );
        for failure in &outcome.failures {
            for (n, line) in failure.lines().enumerate() {
                let indent = if n == 0 { "  " } else { "    " };
                let _ = writeln!(out, "{indent}{line}");
            }
        }
        if !outcome.got.warnings.is_empty() {
            let _ = writeln!(out, "  warnings received:");
            for warning in &outcome.got.warnings {
                let _ = writeln!(out, "    {warning}");
            }
        }
    }
    let _ = writeln!(out, "\n{} passed, {} failed", report.passed, report.failed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_shows_changed_lines_with_context() {
        let a = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        let b = ["a", "b", "c", "d", "E", "f", "g", "h", "i", "j"];
        let diff = unified_diff(&a, &b);
        assert!(diff.contains("-e\n+E\n"), "{diff}");
        assert!(diff.contains("+j\n"), "{diff}");
        assert!(!diff.contains(" a\n"), "{diff}");
        assert_eq!(unified_diff(&a, &a), "--- expected\n+++ got\n");
    }

    #[test]
    fn warnings_match_one_to_one() {
        let got = vec!["would set x".to_owned(), "would set y".to_owned()];
        assert!(compare_warnings(&["set x".to_owned(), "set y".to_owned()], &got).is_empty());
        let missing = compare_warnings(&["set z".to_owned()], &got);
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert_eq!(compare_warnings(&[], &got).len(), 2);
    }
}
