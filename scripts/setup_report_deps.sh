#!/usr/bin/env bash
# Installs what `kvscope report` and its tests need on Debian 12, idempotently:
#  - gnuplot (draws every plot; gnuplot-nox has the pngcairo and svg terminals, no X11),
#    and the DejaVu fonts the plots and the report name;
#  - Chromium, Node.js and playwright-core (pinned in tools/package.json, installed into
#    third_party/npm): the test that renders report.html headless and checks its images.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

sudo_cmd=""
if [[ $(id -u) -ne 0 ]]; then sudo_cmd="sudo"; fi

packages=(gnuplot-nox fonts-dejavu-core chromium nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A gnuplot from another package (gnuplot-qt, gnuplot-x11) does as well.
if command -v gnuplot >/dev/null; then
  missing=("${missing[@]/gnuplot-nox/}")
fi
# Node.js from another source (e.g. a newer nodejs that bundles npm) does as well.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs/}")
  missing=("${missing[@]/npm/}")
fi
todo=()
for p in "${missing[@]}"; do [[ -n "$p" ]] && todo+=("$p"); done
if ((${#todo[@]})); then
  echo "setup_report_deps: installing ${todo[*]}" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${todo[@]}" >/dev/null
fi

# playwright-core drives the system Chromium (it downloads no browser of its own).
version="$(node -p "require('./tools/package.json').dependencies['playwright-core']")"
prefix="$root/third_party/npm"
installed="$(node -p "try { require('$prefix/node_modules/playwright-core/package.json').version } catch (e) { '' }")"
if [[ "$installed" != "$version" ]]; then
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --save-exact --no-audit --no-fund --loglevel=error "playwright-core@$version"
fi

echo "gnuplot:         $(command -v gnuplot)"
echo "chromium:        $(command -v chromium)"
echo "node:            $(node --version)"
echo "playwright-core: $prefix/node_modules/playwright-core ($version)"
