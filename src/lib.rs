//! unroot: a Kubernetes admission webhook that runs every tenant pod without root.
//!
//! The pure parts ([`mutate`], [`pss`], [`policy`]) do no I/O; the async
//! shell ([`server`], [`certs`], the CLI's `serve`) gathers what they need.
#![forbid(unsafe_code)]

/// The version unroot reports (`unroot --version`, `unroot_build_info`,
/// `/dashboard`): the Cargo.toml version and, when the build knew it, the git
/// commit, as in `0.1.0 (4e7eb00)`. Set by build.rs.
pub const VERSION: &str = env!("UNROOT_VERSION");

pub mod admission;
pub mod audit;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod dashboard;
pub mod defaults;
pub mod identities;
pub mod manifest;
pub mod metrics;
pub mod mutate;
pub mod namespaces;
pub mod policy;
pub mod pss;
pub mod readiness;
pub mod report;
pub mod server;
pub mod telemetry;
pub mod view;
pub mod workload;
