//! Bytes in → the server's review path (decode, `/mutate` and `/validate`
//! decisions, encode) → an answer a client can act on, never a panic.
#![no_main]

#[path = "../../tests/support/fuzz_entry.rs"]
mod fuzz_entry;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

type Namespaces = std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>;

fn setup() -> &'static (unroot::policy::Snapshot, Namespaces) {
    static SETUP: OnceLock<(unroot::policy::Snapshot, Namespaces)> = OnceLock::new();
    SETUP.get_or_init(|| (fuzz_entry::snapshot(), fuzz_entry::namespaces()))
}

fuzz_target!(|data: &[u8]| {
    let (policy, namespaces) = setup();
    for answer in fuzz_entry::review(data, policy, namespaces) {
        fuzz_entry::check_answer(&answer);
    }
});
