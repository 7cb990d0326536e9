//! unroot: a Kubernetes admission webhook that runs every tenant pod without root.
#![forbid(unsafe_code)]

pub mod pss;
