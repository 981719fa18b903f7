#!/usr/bin/env bash
# fuzz.sh [TARGET…]: coverage-guided fuzzing (libFuzzer) of the parsers of untrusted bytes
# (docs/security.md, "Fuzzing"). Builds fuzz/ into .build-fuzz (release, -sanitize=fuzzer,address,
# -enable-testing for `@testable import`), replays fuzz/crashes/, then fuzzes each target for
# FUZZ_SECONDS (default 60) from its seed corpus fuzz/corpus/TARGET. The grown corpus, libFuzzer's
# artifacts and the logs go to fuzz/out/ (ignored by git). Exits non-zero on any crash, failed
# invariant, timeout, leak or out-of-memory. Not part of `make test` or CI.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$REPO"

SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(json jwt signature query)
OUT=$REPO/fuzz/out
SCRATCH=$REPO/.build-fuzz
# -timeout: an input taking 2 s is a failure (a 64 KB input takes under 0.1 s in this
# instrumented build); -report_slow_units: inputs over 1 s are saved as slow-unit-* and counted.
LIBFUZZER_OPTIONS=(-max_len=65536 -timeout=2 -rss_limit_mb=2048 -report_slow_units=1 -detect_leaks=1
    -print_final_stats=1)

mkdir -p "$OUT"
build=(swift build -c release --package-path fuzz --scratch-path "$SCRATCH" -j 2
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -enable-testing)
# Swift's own crash backtracer would race libFuzzer's handler (and trip ASan): leave crashes to libFuzzer.
export SWIFT_BACKTRACE=enable=no
log "fuzz: building (${build[*]})"
# gold warns about every ASan helper symbol it cannot export: keep that out of the terminal.
if ! "${build[@]}" >"$OUT/build.log" 2>&1; then
    grep -v 'Cannot export local symbol' "$OUT/build.log" | tail -n 40 >&2
    die "the fuzzing build failed (log: $OUT/build.log)"
fi
BIN=$("${build[@]}" --show-bin-path)/payments-fuzz

failed=()

# Reproducers of earlier findings (fuzz/crashes/TARGET-*): each must now pass.
for reproducer in fuzz/crashes/*; do
    [ -f "$reproducer" ] || continue
    target=$(basename "$reproducer"); target=${target%%-*}
    if ! FUZZ_TARGET=$target "$BIN" "${LIBFUZZER_OPTIONS[@]}" "$reproducer" >"$OUT/replay.log" 2>&1; then
        log "fuzz: $reproducer still fails (FUZZ_TARGET=$target $BIN $reproducer)"
        failed+=("$reproducer")
    fi
done

summary=$OUT/summary.txt
printf '%-10s %8s %12s %8s %6s %7s %7s %20s %7s  %s\n' target seconds executions exec/s cov ft corpus slowest rss_mb result \
    >"$summary"
for target in "${TARGETS[@]}"; do
    [ -d "fuzz/corpus/$target" ] || die "no seed corpus fuzz/corpus/$target"
    mkdir -p "$OUT/$target/corpus" "$OUT/$target/artifacts"
    dict=()
    [ -f "fuzz/dict/$target.dict" ] && dict=(-dict="fuzz/dict/$target.dict")
    log "fuzz: $target for ${SECONDS_PER_TARGET}s (log: $OUT/$target/fuzz.log)"
    status=0
    # New units go to the first corpus folder; the checked-in seeds are only read.
    FUZZ_TARGET=$target "$BIN" "${LIBFUZZER_OPTIONS[@]}" "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET" \
        -artifact_prefix="$OUT/$target/artifacts/" "$OUT/$target/corpus" "fuzz/corpus/$target" \
        >"$OUT/$target/fuzz.log" 2>&1 || status=$?

    final_stat() { sed -n "s/^stat::$1: *//p" "$OUT/$target/fuzz.log" | tail -n 1; }
    last=$(grep -E '^#[0-9]+.*cov: ' "$OUT/$target/fuzz.log" | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corpus=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    slow=$(find "$OUT/$target/artifacts" -name 'slow-unit-*' -newer "$OUT/build.log" | wc -l)
    result=ok
    if [ "$status" -ne 0 ]; then
        result="FAILED (exit $status)"
        failed+=("$target")
        grep -E 'ERROR: |invariant failed|Test unit written to' "$OUT/$target/fuzz.log" | head -n 5 >&2 || true
    elif [ "$slow" -gt 0 ]; then
        result="ok, $slow slow unit(s) over 1 s in $OUT/$target/artifacts"
    fi
    slowest=$(sed -n 's/^payments-fuzz: slowest input \([0-9.]*\) ms (\([0-9]*\) bytes)/\1ms@\2B/p' "$OUT/$target/fuzz.log")
    printf '%-10s %8s %12s %8s %6s %7s %7s %20s %7s  %s\n' "$target" "$SECONDS_PER_TARGET" \
        "$(final_stat number_of_executed_units)" "$(final_stat average_exec_per_sec)" "${cov:-?}" "${ft:-?}" "${corpus:-?}" \
        "${slowest:-?}" "$(final_stat peak_rss_mb)" "$result" >>"$summary"
done

cat "$summary"
if [ ${#failed[@]} -gt 0 ]; then
    die "fuzzing found problems in: ${failed[*]} (inputs in $OUT/*/artifacts; see docs/security.md, Fuzzing)"
fi
