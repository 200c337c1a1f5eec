#!/usr/bin/env bash
# check_format.sh: every tracked C file is formatted as the checked-in .clang-format says.
# Run by CTest (style_format); fix a failure with: git ls-files '*.c' '*.h' | xargs clang-format -i
set -euo pipefail
cd "${TERN_SOURCE_DIR:-$(dirname "$0")/../..}"
command -v clang-format >/dev/null || { echo "FAIL: clang-format not installed (Debian: clang-format)"; exit 1; }
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files '*.c' '*.h')
else
    mapfile -t files < <(find . -path ./build\* -prune -o \( -name '*.c' -o -name '*.h' \) -print)
fi
bad=0
for f in "${files[@]}"; do
    [ -f "$f" ] || continue
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
        echo "not formatted: $f"
        bad=$((bad + 1))
    fi
done
echo "checked ${#files[@]} files, $bad not formatted ($(clang-format --version))"
[ "$bad" -eq 0 ]
