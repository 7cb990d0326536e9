//! Named readiness conditions behind `/readyz`.
//!
//! Each part of the server that must be in place before the replica takes
//! traffic (the listener, the policy, the namespace cache) registers a
//! condition and flips it; `/readyz` is ready when all are true.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A set of named conditions, all of which must hold for readiness.
#[derive(Debug, Default)]
pub struct Readiness {
    // Only /readyz and state changes touch this, never the admission path.
    conditions: Mutex<BTreeMap<&'static str, bool>>,
}

impl Readiness {
    /// A set with the given conditions, all false.
    #[must_use]
    pub fn new(names: &[&'static str]) -> Self {
        Self {
            conditions: Mutex::new(names.iter().map(|n| (*n, false)).collect()),
        }
    }

    /// Sets (or adds) a condition.
    pub fn set(&self, name: &'static str, value: bool) {
        if let Ok(mut c) = self.conditions.lock() {
            c.insert(name, value);
        }
    }

    /// `None` when ready, else the names of the unmet conditions. A lock
    /// poisoned by a panic elsewhere reports not ready: the state behind it
    /// can no longer be trusted.
    #[must_use]
    pub fn unready(&self) -> Option<String> {
        let Ok(c) = self.conditions.lock() else {
            return Some("internal error (readiness state poisoned by a panic)".to_owned());
        };
        let unmet: Vec<&str> = c.iter().filter(|(_, ok)| !**ok).map(|(n, _)| *n).collect();
        (!unmet.is_empty()).then(|| unmet.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_condition_holds() {
        let r = Readiness::new(&["serving", "policy"]);
        assert_eq!(r.unready().as_deref(), Some("policy, serving"));
        r.set("serving", true);
        assert_eq!(r.unready().as_deref(), Some("policy"));
        r.set("policy", true);
        assert_eq!(r.unready(), None);
    }

    #[test]
    fn a_poisoned_lock_is_not_ready() {
        let r = std::sync::Arc::new(Readiness::new(&["serving"]));
        r.set("serving", true);
        let poisoner = std::sync::Arc::clone(&r);
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.conditions.lock().unwrap();
            panic!("poison the readiness lock");
        })
        .join();
        assert!(r.unready().unwrap().contains("poisoned"));
    }
}
