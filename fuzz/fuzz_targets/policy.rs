//! Bytes in → the policy parser: a valid policy or an error naming what is
//! wrong, never a panic; a valid policy prints and parses back to itself.
#![no_main]

#[path = "../../tests/support/fuzz_entry.rs"]
mod fuzz_entry;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzz_entry::policy(data);
});
