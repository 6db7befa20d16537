#!/bin/sh
# Builds the libFuzzer targets of tests/fuzz into OUTDIR (default: build-fuzz at the repository root).
#   tests/fuzz/build.sh [OUTDIR]     build
#   tests/fuzz/build.sh --probe      only say whether clang's libFuzzer is usable (exit 0, or 77)
#
# The core sources (core/*/*.c but main.c, the same files as the sycore library) are compiled with clang, coverage
# instrumentation and ASan/UBSan into OUTDIR/obj, then each tests/fuzz/fuzz_*.c is linked with libFuzzer. Objects are
# rebuilt only when their source or a header is newer. It does not touch the CMake build directories.
#
# Exit status: 0 built, 77 when clang or its libFuzzer runtime (Debian: libclang-rt-14-dev) is missing (the ctest
# "skipped" code), 1 on a compile error.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FUZZ_DIR="$ROOT/tests/fuzz"
CC=${SY_FUZZ_CC:-clang}
PKGS="libh2o-evloop rdkafka luajit openssl"

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz: $CC not found (Debian: apt-get install clang libclang-rt-14-dev); the fuzz targets are skipped" >&2
    exit 77
fi
probe=$(mktemp -d)
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' >"$probe/p.c"
if ! "$CC" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >/dev/null 2>&1; then
    rm -rf "$probe"
    echo "fuzz: $CC has no libFuzzer runtime (Debian: apt-get install libclang-rt-14-dev); the fuzz targets are skipped" >&2
    exit 77
fi
rm -rf "$probe"
[ "${1:-}" = "--probe" ] && exit 0

OUT=${1:-"$ROOT/build-fuzz"}
mkdir -p "$OUT/obj"
OUT=$(cd "$OUT" && pwd)

# One build at a time in OUTDIR (ctest -j runs the fuzz tests side by side).
exec 9>"$OUT/.lock"
flock 9

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-std=gnu11 -g -O1 $SAN -DH2O_USE_LIBUV=0 -D_GNU_SOURCE -DSY_VERSION=\"fuzz\" \
-DSY_SCRIPTS_BUILD_DIR=\"$ROOT/scripts\" -DSY_SCRIPTS_INSTALL_DIR=\"$ROOT/scripts\" -DSY_FUZZ_DIR=\"$FUZZ_DIR\" \
-I$ROOT/core $(pkg-config --cflags $PKGS) -Wall -Wno-unused-parameter -Wno-missing-field-initializers \
-Werror=implicit-function-declaration"
LIBS="$(pkg-config --libs $PKGS) -llmdb -lpthread -lm -ldl"
HEADERS=$(ls "$ROOT"/core/*/*.h "$FUZZ_DIR"/*.h)

# newer SRC than OBJ, or any header newer than OBJ
stale() {
    [ ! -e "$2" ] && return 0
    [ "$1" -nt "$2" ] && return 0
    for h in $HEADERS; do [ "$h" -nt "$2" ] && return 0; done
    return 1
}

OBJS=""
for src in "$ROOT"/core/*/*.c; do
    obj="$OUT/obj/$(basename "$(dirname "$src")")_$(basename "$src" .c).o"
    OBJS="$OBJS $obj"
    if stale "$src" "$obj"; then
        echo "fuzz: cc $src"
        # shellcheck disable=SC2086
        $CC $CFLAGS -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
    fi
done

for src in "$FUZZ_DIR"/fuzz_*.c; do
    name=$(basename "$src" .c)
    bin="$OUT/$name"
    need=0
    stale "$src" "$bin" && need=1
    for o in $OBJS; do [ "$o" -nt "$bin" ] && need=1; done
    if [ $need = 1 ]; then
        echo "fuzz: link $name"
        # shellcheck disable=SC2086
        $CC $CFLAGS -fsanitize=fuzzer "$src" $OBJS $LIBS -o "$bin"
    fi
done
