//! `unroot check`: evaluate Pods and workload pod templates against a Pod
//! Security Standards level, offline, as the validating webhook would.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::defaults;
use crate::manifest::{self, Object};
use crate::mutate::{Input, Requester, provenance_index};
use crate::policy::{Document, DocumentFile as _};
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

Objects are judged as the cluster stores them: the API server's defaults
that Pod Security reads are applied first (a volume without a source is an
emptyDir; in a Pod, hostNetwork ports get their hostPort and seccomp
annotations and fields follow each other). The policy (--policy, or the
embedded default) decides as in the webhook: its excluded and exempt
namespaces and exempt runtime classes are allowed, and the provisioning
init container of a Pod is exempt when it is exactly the one the policy
injects for the pod's identity (--namespace-labels selects provisioning).

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
    /// Output format. `--format` is an alias.
    #[arg(short = 'o', long = "output", alias = "format", value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Policy file (exemptions, provisioning). Without it, the embedded
    /// default policy applies.
    #[arg(long, env = "UNROOT_POLICY")]
    pub policy: Option<PathBuf>,
    /// Labels of the namespace the objects are created in (`k=v,...`), for
    /// the policy's namespace selectors (provisioning).
    #[arg(long, value_name = "K=V,...", value_delimiter = ',', value_parser = super::mutate::parse_label)]
    pub namespace_labels: Vec<(String, String)>,
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
    /// The same objects as YAML documents, each opening with `---`.
    Yaml,
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
    let policy = match &args.policy {
        Some(path) => match Document::from_file(path) {
            Ok(policy) => policy,
            Err(e) => {
                let _ = writeln!(err, "error: {e}");
                return EXIT_INVALID;
            }
        },
        None => Document::embedded(),
    };
    let labels: BTreeMap<String, String> = args.namespace_labels.iter().cloned().collect();
    let judge = Judge {
        lv,
        policy: &policy,
        labels: &labels,
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
            match judge.evaluate(object) {
                Ok(Some(verdict)) => {
                    violations_found |= !verdict.violations.is_empty();
                    if let Err(e) = print(out, args.format, object, lv, &verdict) {
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
    /// Why the object was not evaluated: `namespace`, `runtimeClass`,
    /// `excluded`.
    exempt: Option<&'static str>,
}

/// What a verdict depends on besides the object.
struct Judge<'a> {
    lv: LevelVersion,
    policy: &'a Document,
    labels: &'a BTreeMap<String, String>,
}

impl Judge<'_> {
    /// Evaluates one object: `None` when it carries no pod template.
    fn evaluate(&self, object: &Object) -> Result<Option<Verdict>, String> {
        let allowed = |why| {
            Ok(Some(Verdict {
                violations: Vec::new(),
                exempt: Some(why),
            }))
        };
        let Some(template) = workload::pod_template_of(&object.value).map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let namespace = object.meta("namespace");
        if self.policy.is_excluded_namespace(namespace) {
            return allowed("excluded");
        }
        if !namespace.is_empty()
            && self
                .policy
                .pod_security
                .exemptions
                .namespaces
                .iter()
                .any(|n| n == namespace)
        {
            return allowed("namespace");
        }
        let is_pod = object.kind() == "Pod";
        let mut meta = template.metadata.unwrap_or_default();
        let mut spec = template.spec.unwrap_or_default();
        let kind = if is_pod {
            defaults::Object::Pod
        } else {
            defaults::Object::Template
        };
        defaults::apply(kind, &mut meta, &mut spec);
        if let Some(class) = spec.runtime_class_name.as_deref().filter(|c| !c.is_empty())
            && self
                .policy
                .pod_security
                .exemptions
                .runtime_class_names
                .iter()
                .any(|r| r == class)
        {
            return allowed("runtimeClass");
        }
        let pod = Pod {
            metadata: meta,
            spec: Some(spec),
            status: None,
        };
        // Offline there is no requester: the manifest is judged as a pod
        // the platform's spawner created (what `unroot mutate` prints).
        let skip = if is_pod {
            let input = Input {
                policy: self.policy,
                namespace_labels: self.labels,
                requester: "",
            };
            provenance_index(&pod, &input, Requester::StoredPod)
        } else {
            None
        };
        let spec = pod
            .spec
            .as_ref()
            .map_or_else(Default::default, Clone::clone);
        Ok(Some(Verdict {
            violations: pss::evaluate_excluding_init(&pod.metadata, &spec, self.lv, skip),
            exempt: None,
        }))
    }
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
    verdict: &Verdict,
) -> std::io::Result<()> {
    let violations = &verdict.violations;
    match format {
        Format::Text if violations.is_empty() => match verdict.exempt {
            None => writeln!(out, "{}: {}: allowed", object.file, describe(object)),
            Some(why) => writeln!(
                out,
                "{}: {}: allowed (exempt: {why})",
                object.file,
                describe(object)
            ),
        },
        Format::Text => writeln!(
            out,
            "{}: {}: {}",
            object.file,
            describe(object),
            pss::deny_reason(lv, violations)
        ),
        Format::Json | Format::Yaml => {
            let optional = |field| Some(object.meta(field)).filter(|v| !v.is_empty());
            let line = JsonLine {
                file: &object.file,
                kind: object.kind(),
                namespace: optional("namespace"),
                name: optional("name"),
                allowed: violations.is_empty(),
                exempt: verdict.exempt,
                violations: violations
                    .iter()
                    .map(|v| JsonViolation {
                        check: v.check,
                        reason: &v.reason,
                        detail: &v.detail,
                    })
                    .collect(),
            };
            if format == Format::Yaml {
                let yaml = serde_saphyr::to_string(&line).map_err(std::io::Error::other)?;
                return write!(out, "---\n{yaml}");
            }
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
    /// Why the object was not evaluated, when it was not (an extension of
    /// the documented line, absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    exempt: Option<&'static str>,
    violations: Vec<JsonViolation<'a>>,
}

#[derive(serde::Serialize)]
struct JsonViolation<'a> {
    check: &'a str,
    reason: &'a str,
    detail: &'a str,
}
