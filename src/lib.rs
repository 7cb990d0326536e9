//! unroot: a Kubernetes admission webhook that runs every tenant pod without root.
//!
//! This crate is the shell: the server, cluster access, certificates,
//! telemetry and the CLI. The pure core ([`admission`], [`mutate`], [`pss`],
//! the policy document) is the crate `unroot_core`, which does no I/O; it is
//! re-exported here under the same paths.
#![forbid(unsafe_code)]

/// The version unroot reports (`unroot --version`, `unroot_build_info`,
/// `/dashboard`): the Cargo.toml version and, when the build knew it, the git
/// commit, as in `0.1.0 (4e7eb00)`. Set by build.rs.
pub const VERSION: &str = env!("UNROOT_VERSION");

pub use unroot_core::{admission, defaults, mutate, pss, view, workload};

pub mod audit;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod dashboard;
pub mod identities;
pub mod manifest;
pub mod metrics;
pub mod namespaces;
pub mod policy;
pub mod readiness;
pub mod report;
pub mod server;
pub mod telemetry;
