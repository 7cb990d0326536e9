//! Writes the AdmissionReview bodies of the benchmarks (the ones
//! `benches/admission.rs` measures) for the load test of `make bench`.
//!
//! ```text
//! cargo run --release --example bench_review -- --containers 3 > review-3.json
//! cargo run --release --example bench_review -- --small-containers 50000 > review-3mb.json
//! ```

#[path = "../benches/support/review.rs"]
mod review;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// A realistic pod (defaults, managedFields, service-account volume)
    /// with this many containers.
    #[arg(long, conflicts_with = "small_containers")]
    containers: Option<usize>,
    /// A pod with this many minimal `{name, image}` containers.
    #[arg(long)]
    small_containers: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let pod = match (args.containers, args.small_containers) {
        (_, Some(n)) => review::small_container_pod(n),
        (n, None) => review::pod(n.unwrap_or(3)),
    };
    let body = match serde_json::to_vec(&review::review(&pod)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::io::stdout().lock().write_all(&body) {
        eprintln!("error: failed to write the review: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
