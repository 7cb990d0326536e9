//! `unroot check`: evaluate Pods and workload pod templates against a Pod
//! Security Standards level, offline, as the validating webhook would.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize as _;
use serde_json::Value;

use crate::manifest::{self, Object};
use crate::pss::{self, Level, LevelVersion, Version, Violation};
use crate::workload;

/// Exit code when every object is allowed.
pub const EXIT_ALLOWED: u8 = 0;
/// Exit code when any object violates the level.
pub const EXIT_VIOLATIONS: u8 = 1;
/// Exit code for unreadable or invalid input (wins over violations).
pub const EXIT_INVALID: u8 = 2;

const AFTER_HELP: &str = "\
Objects: Pods, and the pod template of Deployment, ReplicaSet, StatefulSet,
DaemonSet, Job, CronJob (spec.jobTemplate.spec.template), ReplicationController
and PodTemplate. The template's metadata and spec are evaluated, as the
built-in Pod Security Admission does for workloads. Other kinds (Service,
ConfigMap, ...) are skipped with a note on stderr and do not change the exit
code, so a whole application manifest can be checked at once.

Exit status: 0 when every object is allowed, 1 when any violates the level,
2 when a file cannot be read or an object is invalid (other files are still
checked and reported).";

/// Arguments of `unroot check`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The Pod Security Standards level to check against.
    #[arg(long, value_enum, default_value_t = CheckLevel::Restricted)]
    pub level: CheckLevel,
    /// The Pod Security Standards version: `v1.N` or `latest`. Versions newer
    /// than this binary knows behave as `latest`.
    #[arg(long, default_value = "latest", value_name = "vX.Y|latest")]
    pub version: Version,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Files of YAML (multi-document) or JSON objects; `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// The levels worth checking against (`privileged` allows everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckLevel {
    /// Prevents known privilege escalations.
    Baseline,
    /// Current pod hardening best practice.
    Restricted,
}

impl From<CheckLevel> for Level {
    fn from(level: CheckLevel) -> Level {
        match level {
            CheckLevel::Baseline => Level::Baseline,
            CheckLevel::Restricted => Level::Restricted,
        }
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One readable line per object.
    Text,
    /// One JSON object per object per line:
    /// `{"file","kind","namespace","name","allowed","violations":[{"check","reason","detail"}]}`.
    Json,
}

/// Runs `unroot check` on the process's stdout and stderr.
#[must_use]
pub fn run(args: &Args) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    ExitCode::from(execute(args, &mut stdout.lock(), &mut stderr.lock()))
}

/// The command, writing verdicts to `out` and notes and errors to `err`;
/// returns the exit code.
pub fn execute(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let lv = LevelVersion {
        level: args.level.into(),
        version: args.version,
    };
    let mut invalid = false;
    let mut violations_found = false;
    for path in &args.files {
        let objects = match manifest::read_all(std::slice::from_ref(path)) {
            Ok(objects) => objects,
            Err(e) => {
                let _ = writeln!(err, "error: {e}");
                invalid = true;
                continue;
            }
        };
        for object in &objects {
            match evaluate(object, lv) {
                Ok(Some(verdict)) => {
                    violations_found |= !verdict.violations.is_empty();
                    if let Err(e) = print(out, args.format, object, lv, &verdict.violations) {
                        let _ = writeln!(err, "error: failed to write output: {e}");
                        return EXIT_INVALID;
                    }
                }
                Ok(None) => {
                    let _ = writeln!(
                        err,
                        "note: {}: document {}: {} has no pod template; skipped",
                        object.file,
                        object.index,
                        describe(object)
                    );
                }
                Err(message) => {
                    let _ = writeln!(
                        err,
                        "error: {}: document {}: {}: {message}",
                        object.file,
                        object.index,
                        describe(object)
                    );
                    invalid = true;
                }
            }
        }
    }
    if invalid {
        EXIT_INVALID
    } else if violations_found {
        EXIT_VIOLATIONS
    } else {
        EXIT_ALLOWED
    }
}

struct Verdict {
    violations: Vec<Violation>,
}

/// Evaluates one object: `None` when it carries no pod template.
fn evaluate(object: &Object, lv: LevelVersion) -> Result<Option<Verdict>, String> {
    let kind = object.kind();
    let (template, at) = if kind == "Pod" {
        (&object.value, String::new())
    } else if let Some(path) = workload::template_path(kind) {
        let Some(template) = path.iter().try_fold(&object.value, |v, key| v.get(key)) else {
            return Ok(None);
        };
        (template, format!("{}.", path.join(".")))
    } else {
        return Ok(None);
    };
    let meta = match template.get("metadata") {
        None | Some(Value::Null) => ObjectMeta::default(),
        Some(meta) => ObjectMeta::deserialize(meta)
            .map_err(|e| format!("failed to decode {at}metadata: {e}"))?,
    };
    let spec = match template.get("spec") {
        None | Some(Value::Null) => return Err(format!("{at}spec is missing")),
        Some(spec) => {
            PodSpec::deserialize(spec).map_err(|e| format!("failed to decode {at}spec: {e}"))?
        }
    };
    Ok(Some(Verdict {
        violations: pss::evaluate(&meta, &spec, lv),
    }))
}

/// `Kind namespace/name`, `Kind name` without a namespace.
fn describe(object: &Object) -> String {
    let kind = object.kind();
    let name = object.meta("name");
    let name = if name.is_empty() { "(unnamed)" } else { name };
    match object.meta("namespace") {
        "" => format!("{kind} {name}"),
        namespace => format!("{kind} {namespace}/{name}"),
    }
}

fn print(
    out: &mut dyn Write,
    format: Format,
    object: &Object,
    lv: LevelVersion,
    violations: &[Violation],
) -> std::io::Result<()> {
    match format {
        Format::Text if violations.is_empty() => {
            writeln!(out, "{}: {}: allowed", object.file, describe(object))
        }
        Format::Text => writeln!(
            out,
            "{}: {}: {}",
            object.file,
            describe(object),
            pss::deny_reason(lv, violations)
        ),
        Format::Json => {
            let optional = |field| Some(object.meta(field)).filter(|v| !v.is_empty());
            let line = JsonLine {
                file: &object.file,
                kind: object.kind(),
                namespace: optional("namespace"),
                name: optional("name"),
                allowed: violations.is_empty(),
                violations: violations
                    .iter()
                    .map(|v| JsonViolation {
                        check: v.check,
                        reason: &v.reason,
                        detail: &v.detail,
                    })
                    .collect(),
            };
            serde_json::to_writer(&mut *out, &line)?;
            writeln!(out)
        }
    }
}

/// One line of `--format json`, fields in the documented order.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    file: &'a str,
    kind: &'a str,
    /// `null` when the manifest leaves it to `kubectl apply`.
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    allowed: bool,
    violations: Vec<JsonViolation<'a>>,
}

#[derive(serde::Serialize)]
struct JsonViolation<'a> {
    check: &'a str,
    reason: &'a str,
    detail: &'a str,
}
