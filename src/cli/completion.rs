//! `unroot completion`: shell completion scripts, generated from the clap
//! definition so they cannot drift from the flags.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell;

const AFTER_HELP: &str = "\
Load the completions:
  bash  source <(unroot completion bash)
        (or write it to /etc/bash_completion.d/unroot)
  zsh   unroot completion zsh > \"${fpath[1]}/_unroot\"
  fish  unroot completion fish > ~/.config/fish/completions/unroot.fish";

/// Arguments of `unroot completion`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The shell: bash, zsh or fish (elvish and powershell work too).
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Runs `unroot completion`, printing the script to stdout.
#[must_use]
pub fn run(args: &Args) -> ExitCode {
    let mut script = Vec::new();
    execute(args, &mut script);
    // A closed pipe is not the script's failure.
    let _ = std::io::stdout().lock().write_all(&script);
    ExitCode::SUCCESS
}

/// Writes the completion script for `args.shell` to `out`.
pub fn execute(args: &Args, out: &mut dyn Write) {
    let mut command = super::Cli::command();
    clap_complete::generate(args.shell, &mut command, "unroot", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_completes_the_subcommands_and_their_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            execute(&Args { shell }, &mut script);
            let script = String::from_utf8(script).unwrap_or_default();
            for word in ["review", "completion", "output", "namespace-labels"] {
                assert!(script.contains(word), "{shell}: no {word:?}");
            }
        }
    }
}
