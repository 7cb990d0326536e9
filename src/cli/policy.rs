//! `unroot policy`: check a policy before it is deployed, or print the default.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;

use crate::policy::{self, Document, watch::CONFIGMAP_KEY};

/// Arguments of `unroot policy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `unroot policy` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check a policy document (or a ConfigMap manifest holding one under
    /// `policy.yaml`). Exit 0 when valid, 1 when invalid (every error is
    /// printed with its field path), 2 when the file cannot be read.
    Validate {
        /// The file; `-` reads stdin.
        file: PathBuf,
    },
    /// Print the effective policy of a file: every field, with the ones
    /// the file omits filled in from the embedded default. Exit 0 when
    /// valid, 1 when invalid, 2 when the file cannot be read.
    Show {
        /// The file (a policy or a ConfigMap manifest); `-` reads stdin.
        file: PathBuf,
        /// YAML (with a comment naming the file and hash) or JSON.
        /// `--format` is an alias.
        #[arg(short = 'o', long = "output", alias = "format", value_enum, default_value_t = super::mutate::ObjectFormat::Yaml)]
        output: super::mutate::ObjectFormat,
    },
    /// Print the embedded default policy (the shipped
    /// webhook-config/policy.yaml, comments included).
    Default,
    /// Print the JSON Schema of a policy document (the shipped
    /// webhook-config/policy.schema.json), generated from unroot's own
    /// types. Editors and CI check a policy with it before it reaches the
    /// cluster; `unroot policy validate` checks everything it says and
    /// more (capabilities, names, ranges against each other).
    Schema,
}

/// Runs `unroot policy`.
#[must_use]
pub fn run(args: &Args) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    ExitCode::from(execute(args, &mut stdout.lock(), &mut stderr.lock()))
}

/// The command, writing to the given streams; returns the exit code.
pub fn execute(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match &args.command {
        Command::Default => {
            let _ = write!(out, "{}", policy::DEFAULT_YAML);
            0
        }
        Command::Schema => match serde_json::to_string_pretty(&schema()) {
            Ok(text) => {
                let _ = writeln!(out, "{text}");
                0
            }
            Err(e) => {
                let _ = writeln!(err, "error: failed to print the schema: {e}");
                2
            }
        },
        Command::Validate { file } => validate(file, None, out, err),
        Command::Show { file, output } => validate(file, Some(*output), out, err),
    }
}

/// Validates `file`; with `show`, prints its effective policy in that format.
fn validate(
    file: &Path,
    show: Option<super::mutate::ObjectFormat>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let shown = file.display().to_string();
    let text = if shown == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map(|_| text)
    } else {
        std::fs::read_to_string(file)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "error: {shown}: failed to read: {e}");
            return 2;
        }
    };
    let text = match policy_text(&text) {
        Ok(t) => t,
        Err(message) => {
            let _ = writeln!(err, "{shown}: {message}");
            return 1;
        }
    };
    match Document::from_yaml(&text) {
        Ok(doc) if show == Some(super::mutate::ObjectFormat::Json) => {
            match serde_json::to_string_pretty(&doc) {
                Ok(json) => {
                    let _ = writeln!(out, "{json}");
                    0
                }
                Err(e) => {
                    let _ = writeln!(err, "{shown}: failed to print the policy: {e}");
                    2
                }
            }
        }
        Ok(doc) if show.is_some() => match doc.to_yaml() {
            Ok(yaml) => {
                let _ = writeln!(
                    out,
                    "# The effective policy of {shown} (hash {}): omitted fields\n# carry the embedded default.\n{yaml}",
                    doc.hash()
                );
                0
            }
            Err(e) => {
                let _ = writeln!(err, "{shown}: {e}");
                2
            }
        },
        Ok(doc) => {
            let _ = writeln!(out, "{shown}: valid (hash {})", doc.hash());
            0
        }
        Err(policy::Error::Invalid(errors)) => {
            let _ = writeln!(err, "{shown}: invalid policy, {} error(s):", errors.len());
            for e in errors {
                let _ = writeln!(err, "  {e}");
            }
            1
        }
        Err(e) => {
            let _ = writeln!(err, "{shown}: {e}");
            1
        }
    }
}

/// The policy text of a file: the file itself, or the `policy.yaml` key of a
/// ConfigMap manifest.
fn policy_text(text: &str) -> Result<String, String> {
    let Ok(value) = serde_saphyr::from_str::<Value>(text) else {
        return Ok(text.to_owned());
    };
    if value.get("kind").and_then(Value::as_str) != Some("ConfigMap") {
        return Ok(text.to_owned());
    }
    value
        .get("data")
        .and_then(|d| d.get(CONFIGMAP_KEY))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("the ConfigMap has no data.{CONFIGMAP_KEY} key"))
}

/// Definitions that replace the default whole when a policy is laid over it
/// (see `policy::load`): inside them, required fields stay required.
const WHOLE: [&str; 4] = [
    "LabelSelector",
    "Requirement",
    "InitContainer",
    "HomeVolume",
];

/// The JSON Schema of a policy document as a user writes it: derived from
/// [`Document`]'s types, their doc comments as descriptions. A policy states
/// only what it changes, the rest comes from the embedded default, so no
/// field is required, except inside what replaces the default whole (a
/// label selector, the init container, the home volume).
#[must_use]
pub fn schema() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<Document>().to_value();
    if let Some(root) = schema.as_object_mut() {
        root.remove("required");
        root.insert(
            "title".to_owned(),
            Value::String("unroot policy (apiVersion unroot.dev/v1, kind Policy)".to_owned()),
        );
    }
    if let Some(Value::Object(definitions)) = schema.get_mut("$defs") {
        for (name, definition) in definitions.iter_mut() {
            if !WHOLE.contains(&name.as_str())
                && let Some(definition) = definition.as_object_mut()
            {
                definition.remove("required");
            }
        }
    }
    schema
}
