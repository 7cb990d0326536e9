//! `unroot review`: replay an AdmissionReview offline through the code the
//! `/mutate` or `/validate` handler runs, and print the review it answers.

use std::collections::BTreeMap;
use std::io::{Read as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

use super::replay::{self, Webhook};
use crate::admission::{self, Decoded};
use crate::policy::{Document, DocumentFile as _, Snapshot};

/// Exit code when the request is allowed (patched or not).
pub const EXIT_ALLOWED: u8 = 0;
/// Exit code when the request is denied (`allowed: false`).
pub const EXIT_DENIED: u8 = 1;
/// Exit code for input that is no review, a review the webhook answers
/// with 400 (malformed), or one that cannot be replayed offline.
pub const EXIT_INVALID: u8 = 2;

const AFTER_HELP: &str = "\
The review is what the API server POSTs to the webhook: an AdmissionReview
(admission.k8s.io/v1 or v1beta1) with a request, as JSON or YAML, e.g. from
a decision log or written by hand. The answer is what unroot would send back
(its patch base64-encoded, as on the wire); the policy-hash audit annotation
names the policy that decided.

What the webhook would do against the API server is said on stderr instead:
the identity ConfigMap /mutate applies for a provisioned pod, the pods
/validate lists when a namespace's enforce level is raised.

Exit status: 0 when the answer allows the request, 1 when it denies it, 2
when the input is no AdmissionReview, one the webhook answers with 400 (the
answer is printed), or one that cannot be replayed offline.";

/// Arguments of `unroot review`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The webhook that decides. Default: the one the API server sends the
    /// request to; /mutate when both would see it (it runs first).
    #[arg(long, value_enum)]
    pub webhook: Option<Webhook>,
    /// Policy file. Without it, the embedded default policy applies.
    #[arg(long, env = "UNROOT_POLICY")]
    pub policy: Option<PathBuf>,
    /// Labels of the request's namespace (`k=v,...`). Without them (and
    /// without --namespace-file), the namespace is unknown, as to a server
    /// without a cluster: the policy's podSecurity defaults apply.
    #[arg(long, value_name = "K=V,...", value_delimiter = ',', value_parser = super::mutate::parse_label, conflicts_with = "namespace_file")]
    pub namespace_labels: Vec<(String, String)>,
    /// A Namespace manifest (YAML or JSON) whose labels are the request's
    /// namespace's.
    #[arg(long, value_name = "FILE")]
    pub namespace_file: Option<PathBuf>,
    /// How the answering AdmissionReview is printed. `--format` is an alias.
    #[arg(short = 'o', long = "output", alias = "format", value_enum, default_value_t = ReviewFormat::Json)]
    pub output: ReviewFormat,
    /// The AdmissionReview; `-` reads stdin.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
}

/// How a review is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReviewFormat {
    /// Indented JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Runs `unroot review`.
#[must_use]
pub fn run(args: &Args) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    ExitCode::from(execute(args, &mut stdout.lock(), &mut stderr.lock()))
}

/// The command, writing the answer to `out` and notes and errors to `err`;
/// returns the exit code.
pub fn execute(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match review(args, out, err) {
        Ok(code) => code,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            EXIT_INVALID
        }
    }
}

fn read(path: &PathBuf) -> Result<String, String> {
    let shown = path.display();
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("-: failed to read stdin: {e}"))?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{shown}: failed to read: {e}"))
    }
}

/// The review as JSON bytes: JSON as given, YAML converted.
fn review_json(shown: &str, text: &str) -> Result<Vec<u8>, String> {
    if text.trim_start().starts_with(['{', '[']) {
        return Ok(text.as_bytes().to_vec());
    }
    let value: Value =
        serde_saphyr::from_str(text).map_err(|e| format!("{shown}: neither JSON nor YAML: {e}"))?;
    serde_json::to_vec(&value).map_err(|e| format!("{shown}: {e}"))
}

/// The labels of a Namespace manifest.
fn labels_of_manifest(path: &PathBuf) -> Result<(String, BTreeMap<String, String>), String> {
    let shown = path.display().to_string();
    let objects = crate::manifest::parse(&shown, &read(path)?).map_err(|e| e.to_string())?;
    let [object] = objects.as_slice() else {
        return Err(format!(
            "{shown}: expected one Namespace, found {} objects",
            objects.len()
        ));
    };
    if object.kind() != "Namespace" {
        return Err(format!(
            "{shown}: expected a Namespace, found {:?}",
            object.kind()
        ));
    }
    let labels = object
        .value
        .pointer("/metadata/labels")
        .cloned()
        .map(serde_json::from_value::<BTreeMap<String, String>>)
        .transpose()
        .map_err(|e| format!("{shown}: metadata.labels: {e}"))?
        .unwrap_or_default();
    for (key, value) in &labels {
        super::mutate::parse_label(&format!("{key}={value}"))
            .map_err(|e| format!("{shown}: metadata.labels: {e}"))?;
    }
    Ok((object.meta("name").to_owned(), labels))
}

fn review(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, String> {
    let policy = match &args.policy {
        Some(path) => Document::from_file(path).map_err(|e| e.to_string())?,
        None => Document::embedded(),
    };
    let policy = Snapshot::new(policy);
    let shown = args.file.display().to_string();
    let bytes = review_json(&shown, &read(&args.file)?)?;
    let review = match admission::decode(&bytes) {
        Err(e) => return Err(format!("{shown}: {e}")),
        Ok(Decoded::Malformed {
            api_version,
            uid,
            message,
        }) => {
            // What the server answers, printed; the input is still bad.
            let response = admission::Response::deny(&uid, 400, "BadRequest", &message);
            print(out, args.output, &admission::encode(api_version, &response))?;
            return Err(format!("{shown}: {message}"));
        }
        Ok(Decoded::Review(review)) => review,
    };
    let request = &review.request;
    let given = match &args.namespace_file {
        Some(path) => {
            let (name, labels) = labels_of_manifest(path)?;
            if !name.is_empty() && name != request.namespace() {
                let _ = writeln!(
                    err,
                    "note: {} is namespace {name:?}; the request is in {:?}",
                    path.display(),
                    request.namespace()
                );
            }
            Some(labels)
        }
        None if args.namespace_labels.is_empty() => None,
        None => Some(args.namespace_labels.iter().cloned().collect()),
    };
    let labels = given
        .as_ref()
        .map(|given| replay::stored_labels(request.namespace(), given));
    if let Some(labels) = &labels {
        replay::check_labels(&policy, labels).map_err(|e| format!("namespace labels: {e}"))?;
    }
    let webhook = if let Some(webhook) = args.webhook {
        webhook
    } else {
        let (webhook, why) = replay::default_webhook(request);
        let _ = writeln!(err, "note: replaying through /{}: {why}", webhook.as_str());
        webhook
    };
    let replayed = replay::replay(webhook, request, &policy, labels.as_ref())?;
    for note in &replayed.notes {
        let _ = writeln!(err, "note: {note}");
    }
    print(
        out,
        args.output,
        &admission::encode(review.api_version, &replayed.response),
    )?;
    let response = &replayed.response;
    if response.allowed {
        return Ok(EXIT_ALLOWED);
    }
    let status = response.status.as_ref();
    if status.and_then(|s| s.code) == Some(400) {
        // Not a verdict on the object: the review itself is wrong.
        let message = status.map_or("", |s| s.message.as_str());
        let _ = writeln!(err, "error: {shown}: the webhook answers 400: {message}");
        return Ok(EXIT_INVALID);
    }
    Ok(EXIT_DENIED)
}

fn print(out: &mut dyn Write, format: ReviewFormat, encoded: &[u8]) -> Result<(), String> {
    let value: Value =
        serde_json::from_slice(encoded).map_err(|e| format!("failed to print the answer: {e}"))?;
    let text = match format {
        ReviewFormat::Json => serde_json::to_string_pretty(&value)
            .map(|t| t + "\n")
            .map_err(|e| e.to_string()),
        ReviewFormat::Yaml => serde_saphyr::to_string(&value).map_err(|e| e.to_string()),
    }
    .map_err(|e| format!("failed to print the answer: {e}"))?;
    out.write_all(text.as_bytes())
        .map_err(|e| format!("failed to write the answer: {e}"))
}
