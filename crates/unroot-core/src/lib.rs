//! unroot-core: the pure core of unroot. It decides and rewrites admission
//! reviews and does no I/O: no network, no files, no clock, no logging. The
//! shell (the `unroot` crate) reads requests, files and the cluster, hands
//! the core what it read, and logs and counts the facts the core returns.
//!
//! - [`admission`]: the AdmissionReview types and the decisions of both
//!   webhooks;
//! - [`view`]: the borrowed view of a pod that the decisions read;
//! - [`mutate`]: the JSON Patch the mutating webhook answers with;
//! - [`pss`]: Pod Security Standards, check by check;
//! - [`policy`]: the policy document, its validation, hash and snapshot;
//! - [`workload`]: the kinds that carry a pod template;
//! - [`defaults`]: the API server's defaulting of what Pod Security reads;
//! - [`namespaces`]: a namespace's labels, as the decisions take them.
#![forbid(unsafe_code)]

pub mod admission;
pub mod defaults;
pub mod mutate;
pub mod namespaces;
pub mod policy;
pub mod pss;
pub mod view;
pub mod workload;
