//! The command line: `serve`, `mutate`, `check`, `audit` and friends (clap derive).

pub mod audit;
pub mod certs;
pub mod check;
pub mod mutate;
pub mod policy;
pub mod serve;

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// unroot: a Kubernetes admission webhook that runs every tenant pod without root.
#[derive(Debug, Parser)]
#[command(name = "unroot", version = crate::VERSION, about, long_about = None)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "UNROOT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info,unroot=debug`).
    #[arg(long, env = "UNROOT_LOG", default_value = "info", global = true)]
    pub log: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log pipelines).
    Json,
}

/// The subcommands.
// Parsed once per process; boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the admission webhooks over HTTPS, and health, readiness and
    /// metrics over plain HTTP.
    Serve(serve::Args),
    /// Print objects hardened as the webhook would harden them.
    Mutate(mutate::Args),
    /// Validate a policy, or print the default one.
    Policy(policy::Args),
    /// Check Pods and workload pod templates against a Pod Security
    /// Standards level, as the validating webhook would.
    Check(check::Args),
    /// Issue, inspect and rotate unroot's certificates.
    Certs(certs::Args),
    /// Report, per namespace, how many running pods would be denied at
    /// baseline and at restricted (the readiness report, once).
    Audit(audit::Args),
}

/// Parses durations such as `500ms`, `10s`, `2m`, `90d`, `1y` (humantime).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration ({e}; use e.g. 500ms, 10s, 2m, 90d)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(
            parse_duration("90d"),
            Ok(Duration::from_secs(90 * 24 * 3600))
        );
        assert!(
            parse_duration("ten")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(
            parse_duration("3 fortnights")
                .unwrap_err()
                .contains("not a duration")
        );
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
