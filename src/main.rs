//! The `unroot` binary: install the crypto provider, parse the command line,
//! start logging, run.

use std::process::ExitCode;

use clap::Parser as _;
use unroot::cli::{Cli, Command};

// Admission decodes and builds JSON trees: allocation is most of its cost,
// and mimalloc does it in a fraction of glibc's time (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // One provider for every TLS user in the process (server, kube client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            unroot::telemetry::init(cli.log_format, &cli.log);
            unroot::cli::serve::run(&args, cli.log_format)
        }
        Command::Mutate(args) => unroot::cli::mutate::run(&args),
        Command::Policy(args) => unroot::cli::policy::run(&args),
        Command::Check(args) => unroot::cli::check::run(&args),
        Command::Certs(args) => unroot::cli::certs::run(&args),
        Command::Report(args) => unroot::cli::report::run(&args),
        Command::Review(args) => unroot::cli::review::run(&args),
        Command::Test(args) => unroot::cli::test::run(&args),
        Command::Completion(args) => unroot::cli::completion::run(&args),
    }
}
