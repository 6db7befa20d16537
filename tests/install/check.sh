#!/bin/sh
# tests/install/check.sh BUILD_DIR SOURCE_DIR: `cmake --install` into a scratch prefix gives a binary that uses the
# Lua library installed next to it (PREFIX/share/switchyard/scripts) and checks the reference routes file.
set -eu
build=$1 src=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
version=$("$prefix/bin/switchyard" --version)
echo "$version"
case "$version" in
*"Lua library: $prefix/share/switchyard/scripts"*) ;;
*) echo "FAIL: the installed binary does not use the installed Lua library"; exit 1 ;;
esac
[ -f "$prefix/share/switchyard/scripts/switchyard/runtime.lua" ] || { echo "FAIL: runtime.lua not installed"; exit 1; }
"$prefix/bin/switchyard" --check "$src/routes.lua" >/dev/null || { echo "FAIL: --check with the installed binary"; exit 1; }
echo "ok: installed binary and Lua library work from $prefix"
