//! `unroot mutate`: print objects hardened as the webhook would harden them.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::manifest;
use crate::mutate;
use crate::policy::Document;

/// Arguments of `unroot mutate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy file. Without it, the embedded default policy applies.
    #[arg(long, env = "UNROOT_POLICY")]
    pub policy: Option<PathBuf>,
    /// Print the RFC 6902 JSON Patch of each object (one per line) instead
    /// of the hardened objects.
    #[arg(long)]
    pub patch: bool,
    /// Files of YAML (multi-document) or JSON objects; `-` reads stdin.
    /// Pods and workload pod templates are hardened; other objects are
    /// printed unchanged.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Exit code for invalid input.
pub const EXIT_INVALID: u8 = 2;

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
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            EXIT_INVALID
        }
    }
}

fn mutate_all(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), String> {
    let policy = match &args.policy {
        Some(path) => Document::from_file(path).map_err(|e| e.to_string())?,
        None => Document::embedded(),
    };
    let objects = manifest::read_all(&args.files).map_err(|e| e.to_string())?;
    // Mutate everything before printing anything: invalid input yields no
    // partial output to pipe into kubectl.
    let mut results = Vec::with_capacity(objects.len());
    for obj in &objects {
        let outcome = mutate::object(&obj.value, &policy).map_err(|e| {
            format!(
                "{}: document {} ({} {:?}): {e}",
                obj.file,
                obj.index,
                obj.kind(),
                obj.meta("name")
            )
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
    let write = |e: std::io::Error| format!("failed to write output: {e}");
    for (i, outcome) in results.iter().enumerate() {
        if args.patch {
            let line = serde_json::to_string(&outcome.patch).map_err(|e| e.to_string())?;
            writeln!(out, "{line}").map_err(write)?;
        } else {
            let yaml = serde_saphyr::to_string(&outcome.object)
                .map_err(|e| format!("failed to print YAML: {e}"))?;
            if i > 0 {
                writeln!(out, "---").map_err(write)?;
            }
            write!(out, "{yaml}").map_err(write)?;
        }
    }
    Ok(())
}
