#!/usr/bin/env bash
# make fuzz: runs each fuzz target for FUZZ_SECONDS (default 60) on one core,
# seeded from tests/fixtures/fuzz/seeds/<target>/ and every earlier crash in
# tests/fixtures/fuzz/<target>/. A crash is copied to
# tests/fixtures/fuzz/<target>/ (which `cargo test --test integration fuzz_regressions`
# replays) and the run fails.
#
# cargo-fuzz comes from crates.io, installed once into FUZZ_ROOT
# (~/.cache/unroot-fuzz). The machine's stable toolchain builds the targets
# with --sanitizer none (the crate forbids unsafe code; coverage
# instrumentation needs no nightly flag); FUZZ_SANITIZER=address needs
# RUSTC_BOOTSTRAP=1 for -Zsanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_ROOT=${FUZZ_ROOT:-$HOME/.cache/unroot-fuzz}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-none}
FUZZ_TARGETS=${FUZZ_TARGETS:-review policy}
CARGO_FUZZ=$FUZZ_ROOT/bin/cargo-fuzz

if [[ ! -x $CARGO_FUZZ ]]; then
    echo "fuzz: installing cargo-fuzz into $FUZZ_ROOT"
    cargo install --locked --root "$FUZZ_ROOT" cargo-fuzz
fi
if [[ $FUZZ_SANITIZER != none ]]; then
    export RUSTC_BOOTSTRAP=1
fi

# The fuzzed code uses the versions the server ships with.
cp Cargo.lock fuzz/Cargo.lock
"$CARGO_FUZZ" build --fuzz-dir fuzz --sanitizer "$FUZZ_SANITIZER" -O --debug-assertions

status=0
for target in $FUZZ_TARGETS; do
    corpus=fuzz/corpus/$target
    artifacts=fuzz/artifacts/$target
    found=tests/fixtures/fuzz/$target
    mkdir -p "$corpus" "$artifacts" "$found"
    if [[ $target == policy ]]; then
        # The shipped policies, as they are now (tests/fuzz_regressions.rs
        # SHIPPED_POLICIES).
        cp webhook-config/policy.yaml "$corpus/shipped-default.yaml"
        cp tests/fixtures/provisioning/policy.yaml "$corpus/shipped-provisioning.yaml"
    fi
    echo "fuzz: $target for ${FUZZ_SECONDS}s"
    dict=()
    [[ -f fuzz/$target.dict ]] && dict=(-dict="fuzz/$target.dict")
    set +e
    # One process (no -jobs/-fork): the machine's cores are shared.
    "$CARGO_FUZZ" run --fuzz-dir fuzz --sanitizer "$FUZZ_SANITIZER" -O --debug-assertions "$target" \
        "$corpus" "tests/fixtures/fuzz/seeds/$target" "$found" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 "${dict[@]}" 2>&1 | tee "fuzz/$target.log"
    rc=${PIPESTATUS[0]}
    set -e
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)' "fuzz/$target.log" || true
    for crash in "$artifacts"/crash-* "$artifacts"/timeout-* "$artifacts"/oom-*; do
        [[ -e $crash ]] || continue
        cp "$crash" "$found/"
        echo "fuzz: $target: $(basename "$crash") saved to $found/: fix it, then keep it as a regression case"
        status=1
    done
    if [[ $rc -ne 0 ]]; then
        echo "fuzz: $target exited with $rc"
        status=1
    fi
done
exit $status
