#!/bin/sh
# Builds the fuzz targets (build.sh) and runs each for SECONDS, starting from its seed corpus.
#
#   tests/fuzz/run.sh SECONDS [TARGET...]     e.g. tests/fuzz/run.sh 60, tests/fuzz/run.sh 10 fuzz_router
#
# Targets: fuzz_router (core/http/router.c), fuzz_dto (the HTTP pipeline of scripts/switchyard/runtime.lua and
# dto.lua), fuzz_nest_headers (the NestJS Kafka wire format in runtime.lua). Each first replays every file of
# tests/fuzz/corpus/<target>/ (the seeds and the regression inputs of past crashes), then mutates. New interesting
# inputs go to OUTDIR/corpus/<target>/, never into the repository; a crash is written to OUTDIR/<target>-crash-*.
# To keep an input as a seed or regression input, copy it into tests/fuzz/corpus/<target>/ (after
# `OUTDIR/<target> -minimize_crash=1 -runs=10000 <crash>` for a crash).
#
# Environment: SY_FUZZ_BUILD (OUTDIR, default build-fuzz), SY_FUZZ_ARGS (more libFuzzer flags), SY_FUZZ_SCRIPTS_DIR
# (run the Lua targets against another copy of scripts/, e.g. to try a fix), SY_FUZZ_LOG=1 (show the routes' log
# lines).
#
# Exit status: 0 no crash, 1 a crash or a build error, 77 clang's libFuzzer is not installed (skipped), 2 usage.
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FUZZ_DIR="$ROOT/tests/fuzz"
OUT=${SY_FUZZ_BUILD:-"$ROOT/build-fuzz"}

if [ $# -lt 1 ] || ! [ "$1" -gt 0 ] 2>/dev/null; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
SECONDS_EACH=$1
shift
TARGETS=${*:-"fuzz_router fuzz_dto fuzz_nest_headers"}

"$FUZZ_DIR/build.sh" "$OUT"
rc=$?
[ $rc -eq 0 ] || exit $rc
OUT=$(cd "$OUT" && pwd)

failed=""
for t in $TARGETS; do
    if [ ! -x "$OUT/$t" ]; then
        echo "fuzz: no target $t" >&2
        exit 2
    fi
    mkdir -p "$OUT/corpus/$t"
    dict=""
    [ -f "$FUZZ_DIR/$t.dict" ] && dict="-dict=$FUZZ_DIR/$t.dict"
    echo "fuzz: $t for ${SECONDS_EACH}s"
    # the first directory receives new inputs; the repository's corpus is only read
    # shellcheck disable=SC2086
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
    LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$FUZZ_DIR/lsan.supp:print_suppressions=0} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        "$OUT/$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$OUT/$t-" $dict ${SY_FUZZ_ARGS:-} \
        "$OUT/corpus/$t" "$FUZZ_DIR/corpus/$t" >"$OUT/$t.log" 2>&1
    status=$?
    grep -E '^(stat::|Done|INFO: seed corpus)' "$OUT/$t.log" | sed "s/^/fuzz: $t: /"
    if [ $status -ne 0 ]; then
        echo "fuzz: $t FAILED (exit $status), log in $OUT/$t.log:" >&2
        grep -m 3 -A 3 -E 'fuzz assertion failed|^fuzz: |ERROR: |runtime error: ' "$OUT/$t.log" >&2
        grep -E '^(MS:|0x|artifact_prefix|Base64)' "$OUT/$t.log" | cut -c 1-300 >&2
        failed="$failed $t"
    fi
done

if [ -n "$failed" ]; then
    echo "fuzz: crashes in:$failed" >&2
    exit 1
fi
echo "fuzz: no crash"
