//! The command line: `serve`, `mutate`, `check`, `review`, `test`, `report`
//! and friends (clap derive). docs/cli.md describes every command and flag.

pub mod certs;
pub mod check;
pub mod completion;
pub mod mutate;
pub mod policy;
pub mod replay;
pub mod report;
pub mod review;
pub mod serve;
pub mod test;

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
    // `audit`: its old name, hidden, kept for one release (CHANGELOG.md).
    #[command(alias = "audit")]
    Report(report::Args),
    /// Replay an AdmissionReview offline through /mutate or /validate and
    /// print the AdmissionReview unroot would answer.
    Review(review::Args),
    /// Run a directory of policy test cases offline (a policy, namespaces,
    /// pods and workloads with their expected verdicts) and print a table.
    Test(test::Args),
    /// Print a shell completion script (bash, zsh, fish).
    Completion(completion::Args),
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

    /// `unroot report` and its flags in `serve`; the old spellings (`audit`,
    /// `--audit-interval`, `--audit-page-size`) still parse for one release
    /// and are not shown in the help.
    #[test]
    fn the_report_has_its_name_and_the_old_one_is_a_hidden_alias() {
        use clap::CommandFactory;
        for name in ["report", "audit"] {
            let cli = Cli::try_parse_from(["unroot", name, "--namespace", "a"]).unwrap();
            assert!(matches!(cli.command, Command::Report(_)), "{name}");
        }
        for (interval, page) in [
            ("--report-interval=3s", "--report-page-size=2"),
            ("--audit-interval=3s", "--audit-page-size=2"),
        ] {
            let cli = Cli::try_parse_from(["unroot", "serve", interval, page]).unwrap();
            let Command::Serve(args) = cli.command else {
                panic!("not serve");
            };
            assert_eq!(args.report_interval, Duration::from_secs(3), "{interval}");
            assert_eq!(args.report_page_size, 2, "{page}");
        }
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("report"), "{help}");
        assert!(!help.contains("audit"), "{help}");
        let mut serve = Cli::command();
        let serve = serve.find_subcommand_mut("serve").unwrap();
        let help = serve.render_long_help().to_string();
        assert!(help.contains("--report-interval"), "{help}");
        assert!(!help.contains("--audit-interval"), "{help}");
    }

    #[test]
    fn old_flag_names_still_parse_as_aliases() {
        use clap::Parser as _;
        let parse = |args: &[&str]| Cli::try_parse_from(args).map_err(|e| format!("{args:?}: {e}"));
        let Ok(Cli {
            command: Command::Check(check),
            ..
        }) = parse(&["unroot", "check", "--format", "json", "pod.yaml"])
        else {
            panic!("check --format");
        };
        assert_eq!(check.format, check::Format::Json);
        let Ok(Cli {
            command: Command::Check(check),
            ..
        }) = parse(&["unroot", "check", "-o", "yaml", "pod.yaml"])
        else {
            panic!("check -o");
        };
        assert_eq!(check.format, check::Format::Yaml);
        let old = ["unroot", "certs", "rotate", "--secret", "ns/s"];
        let Ok(Cli {
            command:
                Command::Certs(certs::Args {
                    command:
                        certs::Command::Rotate {
                            secret,
                            cert_propagation_delay,
                            ..
                        },
                }),
            ..
        }) = parse(&[&old[..], &["--propagation-delay", "5s"]].concat())
        else {
            panic!("certs rotate --secret --propagation-delay");
        };
        assert_eq!(secret.as_deref(), Some("ns/s"));
        assert_eq!(cert_propagation_delay, Duration::from_secs(5));
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
