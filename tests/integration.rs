//! The integration tests, as one binary: each module talks to the real
//! server (or runs the real `unroot` binary) the way a user would. One binary
//! links the dependency graph once instead of once per file, which keeps a
//! cold `make test` within the build machine's disk and time. The tests whose
//! figures a second busy thread would skew (`linear_cost`, `edges_load`)
//! stay binaries of their own.
// A test is one scenario read top to bottom (set up, act, assert what a
// user notices); splitting one over helpers hides the story it tells.
#![allow(clippy::too_many_lines)]

mod common;
#[path = "support/fuzz_entry.rs"]
mod fuzz_entry;
#[path = "audit/mix.rs"]
mod mix;
#[path = "support/pod_strategy.rs"]
mod pod_strategy;

mod audit_admissions;
mod bad_input;
mod bypass;
mod callers;
mod certs_cli;
mod certs_fail_closed;
mod certs_files;
mod certs_mtls;
mod certs_rotation;
mod check_cli;
mod cli_mutate;
mod core_deps;
mod dashboard;
mod dashboard_browser;
mod docs;
mod edges_auth;
mod edges_deadline;
mod edges_http;
mod edges_lag;
mod faults_apiserver;
mod faults_certs;
mod faults_policy;
mod faults_sigterm;
mod fuzz_regressions;
mod harden_modes;
mod hostile_shapes;
mod image;
mod manifests;
mod mutate_props;
mod mutate_webhook;
mod namespaces;
mod policy_cli;
mod policy_reload;
mod policy_schema;
mod policy_test_cli;
mod provisioning;
mod pss_props;
mod review_cli;
mod serve_process;
mod trust_bundle;
mod validate_webhook;
mod version;
