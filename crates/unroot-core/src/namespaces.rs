//! A namespace's labels, as the admission decisions take them. Where they
//! come from (a watch, the API server, a fixed table) is the shell's
//! `namespaces` module.

use std::collections::BTreeMap;

/// Labels of one namespace.
pub type Labels = BTreeMap<String, String>;
