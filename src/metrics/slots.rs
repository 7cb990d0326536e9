//! The children of a metric vector, resolved once per label combination.
//!
//! `with_label_values` hashes every label value and takes the vector's
//! lock; a review would pay that five to ten times. Here each combination
//! of bounded label values has a slot, indexed by the enums behind them;
//! the slot is filled on the combination's first use (so `/metrics` shows
//! the same series as before: a series appears when it is first counted),
//! and every later use is an index and an atomic load.

use std::sync::OnceLock;

/// One slot per combination, filled on first use.
pub(super) struct Slots<T> {
    slots: Box<[OnceLock<T>]>,
}

impl<T> Slots<T> {
    /// `len` empty slots.
    pub(super) fn new(len: usize) -> Self {
        Self {
            slots: (0..len).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The value in slot `index`, made by `make` on first use; `None` for
    /// an index out of range (a combination not known when the slots were
    /// sized: the caller falls back to a lookup).
    pub(super) fn get(&self, index: usize, make: impl FnOnce() -> T) -> Option<&T> {
        self.slots.get(index).map(|slot| slot.get_or_init(make))
    }
}

impl<T> std::fmt::Debug for Slots<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let filled = self.slots.iter().filter(|s| s.get().is_some()).count();
        write!(f, "Slots({filled}/{})", self.slots.len())
    }
}

/// Most distinct names [`Names`] numbers; more are looked up each time.
pub(super) const NAMES: usize = 64;

/// Numbers the `&'static str` names of an open set (Pod Security check IDs)
/// in the order they are first seen, without a lock: each name takes the
/// first free place, and a name is never in two places (every caller scans
/// the places in the same order and stops at the first that holds its name
/// or that it fills).
pub(super) struct Names {
    places: [OnceLock<&'static str>; NAMES],
}

impl Names {
    pub(super) fn new() -> Self {
        Self {
            places: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// The number of `name`; `None` once every place holds another name.
    pub(super) fn index(&self, name: &'static str) -> Option<usize> {
        self.places
            .iter()
            .position(|place| *place.get_or_init(|| name) == name)
    }
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.places.iter().filter_map(OnceLock::get))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_made_once_and_out_of_range_is_none() {
        let slots = Slots::new(2);
        let mut made = 0;
        for _ in 0..3 {
            let value = slots.get(1, || {
                made += 1;
                "one"
            });
            assert_eq!(value, Some(&"one"));
        }
        assert_eq!(made, 1);
        assert_eq!(slots.get(2, || "two"), None);
    }

    #[test]
    fn names_are_numbered_once_in_the_order_first_seen() {
        let names = Names::new();
        assert_eq!(names.index("runAsNonRoot"), Some(0));
        assert_eq!(names.index("privileged"), Some(1));
        assert_eq!(names.index("runAsNonRoot"), Some(0));
        let many: Vec<&'static str> = (0..NAMES)
            .map(|i| &*Box::leak(format!("check{i}").into_boxed_str()))
            .collect();
        let numbered = many.iter().filter(|n| names.index(n).is_some()).count();
        assert_eq!(numbered, NAMES - 2, "the places run out");
        assert_eq!(names.index("privileged"), Some(1));
    }

    #[test]
    fn threads_racing_for_the_same_names_agree() {
        let names = std::sync::Arc::new(Names::new());
        let ids = ["a", "b", "c", "d", "e", "f"];
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let names = std::sync::Arc::clone(&names);
                std::thread::spawn(move || {
                    let mut order = ids;
                    order.rotate_left(t);
                    order.map(|id| (id, names.index(id).unwrap()))
                })
            })
            .collect();
        let seen: Vec<_> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        for id in ids {
            let places: std::collections::BTreeSet<usize> = seen
                .iter()
                .filter(|(n, _)| *n == id)
                .map(|(_, i)| *i)
                .collect();
            assert_eq!(places.len(), 1, "{id} in {places:?}");
        }
        let distinct: std::collections::BTreeSet<usize> = seen.iter().map(|(_, i)| *i).collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
