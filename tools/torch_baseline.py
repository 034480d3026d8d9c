#!/usr/bin/python3
"""Eager PyTorch greedy-decoding baseline for kvscope benchmarks.

The seeds' lab-script loop (model(input_ids, past_key_values=past), then
argmax of the last position), run on the independent GPT-2 in
torch_gpt2_ref.py: plain matmul/softmax attention as in Hugging Face's eager
GPT-2, KV cache grown with torch.cat per layer, torch.inference_mode().

Run it like this (Debian python3-torch, T threads):

  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OMP_NUM_THREADS=T \\
      /usr/bin/python3 tools/torch_baseline.py --model DIR --threads T [...]

LD_LIBRARY_PATH selects the OpenMP build of OpenBLAS: the default pthread build
spins its own threads next to PyTorch's OpenMP threads and thrashes.

Options: --model DIR (HF GPT-2 directory), --threads T (default 2),
--dtype float32|bfloat16|float16 (weights and compute, like model.to(dtype)),
--prompt-len L (default 8; random ids from --seed, or --prompt-ids a,b,c),
--new-tokens N (default 128), --batch B (default 1), --use-cache 1|0 (0 =
recompute the whole sequence every step), --warmup W (default 1 full run),
--reps R (default 3 timed full runs).

One run = prefill (forward over the prompt, argmax -> new token 1) followed by
N-1 decode steps (forward over the last token with the cache, argmax -> tokens
2..N). Every call is timed with time.perf_counter, argmax included.

Prints ONE JSON object on stdout:
  {"impl": "pytorch-eager", "torch_version", "threads", "dtype", "batch",
   "prompt_len", "new_tokens", "use_cache",
   "prefill_ms_median"           median over reps of the prefill call,
   "decode_ms_per_token_median"  median over all decode steps of all reps
                                 (one step = one new token per sequence),
   "decode_ms_per_token_p95"     95th percentile of the same,
   "decode_tok_s_median"         median over reps of B*(N-1)/decode seconds,
   "reps",
   extras: "model", "decode_steps", "omp_num_threads", "blas",
   "prompt_ids_row0", "generated_row0"}
On failure (e.g. float16, which CPU PyTorch 1.13 cannot compute) it prints
{"impl": "pytorch-eager", ..., "error": "..."} and exits with status 2.
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt2_ref import forward, load_model  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def make_prompt(args, vocab):
    if args.prompt_ids:
        row = [int(t) for t in args.prompt_ids.split(",")]
        if any(t < 0 or t >= vocab for t in row):
            raise ValueError("--prompt-ids out of range")
        return torch.tensor([row] * args.batch, dtype=torch.long)
    g = torch.Generator().manual_seed(args.seed)
    return torch.randint(0, vocab, (args.batch, args.prompt_len), generator=g)


def generate(model, prompt, new_tokens, use_cache):
    """One timed greedy run. Returns (prefill_s, [decode step s], generated [B, N])."""
    past, seq, out, steps = None, prompt, [], []
    with torch.inference_mode():
        t0 = time.perf_counter()
        logits, past = forward(model, prompt, None)
        tok = torch.argmax(logits[:, -1, :], dim=-1, keepdim=True)
        prefill = time.perf_counter() - t0
        out.append(tok)
        for _ in range(new_tokens - 1):
            t0 = time.perf_counter()
            if use_cache:
                logits, past = forward(model, tok, past)
            else:
                seq = torch.cat((seq, tok), dim=1)
                logits, _ = forward(model, seq, None)
            tok = torch.argmax(logits[:, -1, :], dim=-1, keepdim=True)
            steps.append(time.perf_counter() - t0)
            out.append(tok)
    return prefill, steps, torch.cat(out, dim=1)


def blas_in_use():
    """Which libopenblas the process mapped (to make the thread setup visible)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "openblas" in line}
        return sorted(libs)
    except OSError:
        return []


def main():
    ap = argparse.ArgumentParser(description="eager PyTorch GPT-2 decode baseline")
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    ap.add_argument("--prompt-len", type=int, default=8)
    ap.add_argument("--prompt-ids", help="comma-separated ids (overrides --prompt-len)")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--use-cache", type=int, default=1, choices=[0, 1])
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.new_tokens < 1 or args.reps < 1 or args.batch < 1:
        ap.error("--new-tokens, --reps and --batch must be >= 1")

    torch.set_num_threads(args.threads)
    omp = os.environ.get("OMP_NUM_THREADS")
    if omp != str(args.threads):
        print(f"torch_baseline: warning: OMP_NUM_THREADS={omp} but --threads {args.threads}",
              file=sys.stderr)

    result = {"impl": "pytorch-eager", "torch_version": torch.__version__,
              "threads": args.threads, "dtype": args.dtype, "batch": args.batch,
              "prompt_len": len(args.prompt_ids.split(",")) if args.prompt_ids else args.prompt_len,
              "new_tokens": args.new_tokens, "use_cache": args.use_cache}
    try:
        model = load_model(args.model, DTYPES[args.dtype])
        prompt = make_prompt(args, model["cfg"]["vocab_size"])
        for _ in range(args.warmup):
            generate(model, prompt, args.new_tokens, args.use_cache)
        prefills, steps, tok_s, generated = [], [], [], None
        for _ in range(args.reps):
            pre, st, gen = generate(model, prompt, args.new_tokens, args.use_cache)
            prefills.append(pre)
            steps.extend(st)
            if st:
                tok_s.append(args.batch * len(st) / sum(st))
            if generated is not None and not torch.equal(gen, generated):
                print("torch_baseline: warning: generated tokens differ between reps", file=sys.stderr)
            generated = gen
    except (RuntimeError, ValueError, OSError, KeyError) as e:
        result["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(result))
        return 2

    ms = np.array(steps) * 1e3
    result.update({
        "prefill_ms_median": statistics.median(prefills) * 1e3,
        "decode_ms_per_token_median": float(np.median(ms)) if len(ms) else None,
        "decode_ms_per_token_p95": float(np.percentile(ms, 95)) if len(ms) else None,
        "decode_tok_s_median": statistics.median(tok_s) if tok_s else None,
        "reps": args.reps,
        "model": args.model,
        "decode_steps": args.new_tokens - 1,
        "omp_num_threads": omp,
        "blas": blas_in_use(),
        "prompt_ids_row0": prompt[0].tolist(),
        "generated_row0": generated[0].tolist(),
    })
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
