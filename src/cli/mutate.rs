//! `unroot mutate`: print objects hardened as the webhook would harden them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::admission::namespace;
use crate::manifest;
use crate::mutate::{self, Input};
use crate::policy::names::{is_label_key, is_label_value};
use crate::policy::{Document, DocumentFile as _, HARDEN_LABEL, HardenMode};

/// Arguments of `unroot mutate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy file. Without it, the embedded default policy applies.
    #[arg(long, env = "UNROOT_POLICY")]
    pub policy: Option<PathBuf>,
    /// Labels of the namespace the objects are created in (`k=v,...`), as
    /// in the cluster: `unroot.dev/harden` (on, warn, off) stages the
    /// hardening, and they select `securityContext.namespaceOverrides`, the
    /// trust bundle and provisioning. Labels the namespace webhook would
    /// refuse (an invalid `unroot.dev/` value) are an error.
    #[arg(long, value_name = "K=V,...", value_delimiter = ',', value_parser = parse_label)]
    pub namespace_labels: Vec<(String, String)>,
    /// The user creating the pods, as the API server would report it
    /// (`userInfo.username`): identity annotations are honoured only for
    /// the policy's `provisioning.trustedRequesters`.
    #[arg(long, env = "UNROOT_REQUESTER", default_value = "")]
    pub requester: String,
    /// Print the RFC 6902 JSON Patch of each object (one per line) instead
    /// of the hardened objects.
    #[arg(long)]
    pub patch: bool,
    /// How the hardened objects are printed: YAML documents, or one JSON
    /// object per line. `--format` is an alias.
    #[arg(short = 'o', long = "output", alias = "format", value_enum, default_value_t = ObjectFormat::Yaml)]
    pub output: ObjectFormat,
    /// Files of YAML (multi-document) or JSON objects; `-` reads stdin.
    /// Pods and workload pod templates are hardened; other objects are
    /// printed unchanged.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// How objects are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectFormat {
    /// YAML (documents separated by `---` when there are several).
    Yaml,
    /// JSON (one object per line when there are several).
    Json,
}

/// Exit code for an object the webhook would deny (a forbidden identity).
pub const EXIT_DENIED: u8 = 1;
/// Exit code for invalid input.
pub const EXIT_INVALID: u8 = 2;

/// Parses one `k=v` namespace label.
pub(crate) fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not k=v"))?;
    if !is_label_key(key) {
        return Err(format!("{key:?} is not a valid label key"));
    }
    if !is_label_value(value) {
        return Err(format!("{value:?} is not a valid label value"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Runs `unroot mutate`, printing to stdout; errors and warnings go to stderr.
#[must_use]
pub fn run(args: &Args) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    ExitCode::from(execute(args, &mut stdout.lock(), &mut stderr.lock()))
}

/// The command, writing to the given streams; returns the exit code.
pub fn execute(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match mutate_all(args, out, err) {
        Ok(()) => 0,
        Err((code, message)) => {
            let _ = writeln!(err, "error: {message}");
            code
        }
    }
}

/// Says on `err` what the namespace's labels change: a hardening mode other
/// than `on`, a namespace override.
fn note_namespace_settings(
    policy: &Document,
    labels: &BTreeMap<String, String>,
    err: &mut dyn Write,
) {
    let mode = policy.harden_mode(labels);
    let source = if labels.contains_key(HARDEN_LABEL) {
        format!("label {HARDEN_LABEL}")
    } else {
        "policy securityContext.harden".to_owned()
    };
    match mode {
        HardenMode::On => {}
        HardenMode::Warn => {
            let _ = writeln!(
                err,
                "note: hardening mode warn ({source}): the securityContext is not changed; the \"would\" warnings name each field mode on would set"
            );
        }
        HardenMode::Off => {
            let _ = writeln!(
                err,
                "note: hardening mode off ({source}): the securityContext is not changed"
            );
        }
    }
    if let Some((index, _)) = policy.namespace_override(labels) {
        let _ = writeln!(
            err,
            "note: securityContext.namespaceOverrides[{index}] matches these namespace labels"
        );
    }
}

fn mutate_all(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), (u8, String)> {
    let invalid = |message: String| (EXIT_INVALID, message);
    let policy = match &args.policy {
        Some(path) => Document::from_file(path).map_err(|e| invalid(e.to_string()))?,
        None => Document::embedded(),
    };
    let labels = namespace_labels(args, &policy)?;
    note_namespace_settings(&policy, &labels, err);
    let input = Input {
        policy: &policy,
        namespace_labels: &labels,
        requester: &args.requester,
    };
    let objects = manifest::read_all(&args.files).map_err(|e| invalid(e.to_string()))?;
    // Mutate everything before printing anything: invalid input yields no
    // partial output to pipe into kubectl.
    let results = mutate_objects(&objects, &input, err)?;
    print_outcomes(args, &results, out, err)
}

/// The `--namespace-labels`, refused when the namespace webhook would
/// refuse them.
fn namespace_labels(
    args: &Args,
    policy: &Document,
) -> Result<BTreeMap<String, String>, (u8, String)> {
    let labels: BTreeMap<String, String> = args.namespace_labels.iter().cloned().collect();
    let (_, label_errors) = namespace::evaluate_labels(&labels, policy.pod_security_defaults());
    if !label_errors.is_empty() {
        let shown: Vec<String> = label_errors.iter().map(ToString::to_string).collect();
        return Err((
            EXIT_INVALID,
            format!(
                "--namespace-labels: {} (the namespace webhook refuses such labels)",
                shown.join("; ")
            ),
        ));
    }
    Ok(labels)
}

/// Hardens every object, saying on `err` what each one's warnings are;
/// stops at the first the webhook would deny or cannot read.
fn mutate_objects(
    objects: &[manifest::Object],
    input: &Input<'_>,
    err: &mut dyn Write,
) -> Result<Vec<mutate::Outcome>, (u8, String)> {
    let mut results = Vec::with_capacity(objects.len());
    for obj in objects {
        let outcome = mutate::Checked::object(&obj.value)
            .and_then(|pod| mutate::pod(pod, input))
            .and_then(|planned| planned.apply_to(&obj.value));
        let outcome = outcome.map_err(|e| {
            let code = match e {
                mutate::Error::Forbidden(_) => EXIT_DENIED,
                mutate::Error::Decode { .. } | mutate::Error::Template { .. } => EXIT_INVALID,
            };
            let message = format!(
                "{}: document {} ({} {:?}): {e}",
                obj.file,
                obj.index,
                obj.kind(),
                obj.meta("name")
            );
            (code, message)
        })?;
        for warning in &outcome.warnings {
            let _ = writeln!(
                err,
                "warning: {}: {} {:?}: {warning}",
                obj.file,
                obj.kind(),
                obj.meta("name")
            );
        }
        results.push(outcome);
    }
    Ok(results)
}

/// Prints each outcome as `--patch` and `--output` say: its patch, or the
/// hardened object after the identity ConfigMap it mounts.
fn print_outcomes(
    args: &Args,
    results: &[mutate::Outcome],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), (u8, String)> {
    let invalid = |message: String| (EXIT_INVALID, message);
    let write = |e: std::io::Error| invalid(format!("failed to write output: {e}"));
    let yaml = |value: &serde_json::Value| {
        serde_saphyr::to_string(value).map_err(|e| invalid(format!("failed to print YAML: {e}")))
    };
    let mut first = true;
    for outcome in results {
        if args.patch {
            print_patch(outcome, out, err)?;
            continue;
        }
        // The identity ConfigMap goes first: `kubectl apply -f -` then
        // creates it before the pod that mounts it.
        let identity = outcome
            .identity
            .as_ref()
            .map(|cm| serde_json::to_value(cm).map_err(|e| invalid(e.to_string())))
            .transpose()?;
        for value in identity.iter().chain([&outcome.object]) {
            if args.output == ObjectFormat::Json {
                let line = serde_json::to_string(value).map_err(|e| invalid(e.to_string()))?;
                writeln!(out, "{line}").map_err(write)?;
                continue;
            }
            if !first {
                writeln!(out, "---").map_err(write)?;
            }
            first = false;
            write!(out, "{}", yaml(value)?).map_err(write)?;
        }
    }
    Ok(())
}

/// Prints the outcome's patch on one line, and notes on `err` the identity
/// ConfigMap the patched pod mounts, which the patch does not hold.
fn print_patch(
    outcome: &mutate::Outcome,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), (u8, String)> {
    let line = serde_json::to_string(&outcome.patch).map_err(|e| (EXIT_INVALID, e.to_string()))?;
    writeln!(out, "{line}").map_err(|e| (EXIT_INVALID, format!("failed to write output: {e}")))?;
    if let Some(cm) = &outcome.identity {
        let _ = writeln!(
            err,
            "note: the patched pod mounts the ConfigMap {:?}, which the webhook writes; run without --patch to print it",
            cm.metadata.name.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}
