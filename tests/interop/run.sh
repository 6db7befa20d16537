#!/usr/bin/env bash
# tests/interop/run.sh [SWITCHYARD_BINARY]: the NestJS wire interop test (ctest label `interop`).
#
# Installs the pinned NestJS 11 / kafkajs 2.2.4 packages with `npm ci` when node_modules is missing or older than
# package-lock.json, compiles src/ with tsc, then runs dist/run-test.js: switchyard with tests/interop/routes.lua on
# random ports and a fresh data directory, a NestJS microservice + ClientKafka on its embedded broker, both
# directions checked, and every record on the test topics printed byte by byte.
#
# Exit: 0 all checks passed, or "SKIP: npm registry unreachable" (the packages cannot be installed here);
#       1 a check failed, or the setup failed (no node/npm, npm ci failed with the registry reachable, tsc failed).
# Env:  INTEROP_VERBOSE=1 (kafkajs/NestJS logs, switchyard log tail), INTEROP_KEEP=1 (keep the data directory).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:-$ROOT/build/switchyard}
case "$BIN" in /*) ;; *) BIN=$PWD/$BIN ;; esac

fail() { echo "FAIL: $*" >&2; exit 1; }

[ -x "$BIN" ] || fail "switchyard binary not found or not executable: $BIN"
command -v node >/dev/null || fail "node is not installed (Debian: apt-get install nodejs npm)"
command -v npm >/dev/null || fail "npm is not installed (Debian: apt-get install npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || fail "node $(node --version) is too old: NestJS 11 needs node >= 18 (officially >= 20)"

cd "$HERE"

# ---- install -------------------------------------------------------------------------------------------------------
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    registry=$(npm config get registry 2>/dev/null || echo https://registry.npmjs.org/)
    # the one case that skips: npm cannot reach its registry (offline build machine). Anything else is a failure.
    if ! timeout 60 npm ping --fetch-retries=0 --fetch-timeout=20000 >/dev/null 2>&1; then
        echo "SKIP: npm registry unreachable ($registry): cannot install NestJS/kafkajs for the interop test"
        exit 0
    fi
    echo "installing the interop test's packages (npm ci, $registry)"
    npm ci --no-audit --no-fund --loglevel=error || fail "npm ci failed although the registry answered"
fi

# ---- compile -------------------------------------------------------------------------------------------------------
rm -rf dist
node node_modules/typescript/bin/tsc -p tsconfig.json || fail "tsc failed"

# ---- run -----------------------------------------------------------------------------------------------------------
DATA=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-interop.XXXXXX")
PID=""
cleanup() {
    local rc=$?
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        # the test runs in its own process group (setsid): stop it and the switchyard it started
        kill -TERM -- "-$PID" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$PID" 2>/dev/null || true
    fi
    if [ -z "${INTEROP_KEEP:-}" ]; then rm -rf "$DATA"; else echo "data directory kept: $DATA"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export KAFKAJS_NO_PARTITIONER_WARNING=1
setsid node dist/run-test.js --bin "$BIN" --routes "$HERE/routes.lua" --data-dir "$DATA" &
PID=$!
set +e
wait "$PID"
rc=$?
set -e
PID=""
exit "$rc"
