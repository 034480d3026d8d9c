#!/usr/bin/env bash
# README's main command in its quick form, the way a new user runs it: from the repository
# root, on the default model, into a relative output folder; then report.html must exist and
# render in headless Chromium with every image it names loaded (tools/check_report.js).
#   bash scripts/first_run.sh          # results in results-ci/
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out=results-ci
rm -rf "$out"
start=$SECONDS
./build/kvscope study --quick --out "$out"
[[ -s "$out/report.html" ]] || { echo "first_run.sh: $out/report.html was not written" >&2; exit 1; }
node tools/check_report.js "$out/report.html" "$out/report.png" >"$out/check_report.json" ||
    { echo "first_run.sh: $out/report.html did not render cleanly:" >&2; cat "$out/check_report.json" >&2; exit 1; }
echo "first_run.sh: kvscope study --quick --out $out: report written and rendered in $((SECONDS - start)) s" >&2
