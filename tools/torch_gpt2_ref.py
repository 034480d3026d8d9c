#!/usr/bin/python3
"""Independent PyTorch reference implementation of GPT-2 (for testing kvscope).

Written from the GPT-2 definition (Radford et al. 2019 / the Hugging Face
"GPT2LMHeadModel" eager code path), not from kvscope's C++ sources.
Needs only torch + numpy (Debian python3-torch); run it with /usr/bin/python3.
There is no transformers/safetensors dependency: safetensors is parsed here.

Model directory (Hugging Face layout):
  config.json        n_layer, n_embd, n_head, n_positions, vocab_size,
                     layer_norm_epsilon, activation_function (gelu_new),
                     n_inner (null => 4*n_embd)
  model.safetensors  wte.weight [V,E], wpe.weight [P,E], h.{i}.ln_1.{weight,bias},
                     h.{i}.attn.c_attn.{weight [E,3E], bias}, h.{i}.attn.c_proj.*,
                     h.{i}.ln_2.*, h.{i}.mlp.c_fc.{weight [E,I], bias},
                     h.{i}.mlp.c_proj.*, ln_f.*, optional lm_head.weight [V,E]
                     (else tied to wte). Names may carry a "transformer." prefix.
                     Conv1D layout: y = x @ W + b. attn.bias / attn.masked_bias
                     buffers are ignored. Tensor dtypes F32, F16, BF16, F64.

Usage:
  torch_gpt2_ref.py --model DIR --prompt-ids 1,2,3 [--prompt-ids 4,5 ...]
                    [--out FILE.json] [--out-bin FILE.bin] [--greedy N]
                    [--dtype float32|bfloat16] [--float64] [--threads T]
  torch_gpt2_ref.py --self-test
  torch_gpt2_ref.py --make-random DIR [--shape tiny|distilgpt2] [--seed S]
                    [--st-dtype F32|F16|BF16]

Output (--out, or stdout when --out is absent):
  {"model": DIR, "dtype": "float32"|"float64"|"bfloat16", "n_vocab": V,
   "prompts": [{"ids": [...], "logits": [[V floats] per position], "greedy": [...]}]}
  "greedy" is present only with --greedy N (N new token ids, KV-cache loop).
  With --out-bin FILE the "logits" arrays are omitted from the JSON; instead the
  binary file holds float32 little-endian logits, row-major [n_pos, V] for each
  prompt, prompts concatenated in order. Each prompt entry then carries
  "n_pos" and "bin_offset" (offset in float32 elements into the file), and the
  top level carries "bin": FILE.
"""

import argparse
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------
# safetensors I/O
# --------------------------------------------------------------------------

_ST_NUMPY = {"F32": np.float32, "F16": np.float16, "F64": np.float64,
             "I64": np.int64, "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path, wanted=None):
    """Return {name: float32/float64 numpy array}. `wanted(name)` filters names."""
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or (wanted is not None and not wanted(name)):
            continue
        dtype, shape = info["dtype"], info["shape"]
        start, end = info["data_offsets"]
        raw = blob[base + start:base + end]
        if dtype == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        elif dtype in _ST_NUMPY:
            arr = np.frombuffer(raw, dtype=np.dtype(_ST_NUMPY[dtype]).newbyteorder("<"))
        else:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dtype}")
        n = int(np.prod(shape)) if shape else 1
        if arr.size != n:
            raise ValueError(f"{path}: tensor {name}: {arr.size} elements, shape {shape}")
        out[name] = arr.reshape(shape).copy()
    return out


def write_safetensors(path, tensors, st_dtype="F32"):
    """Write {name: numpy array} as safetensors with one dtype (F32, F16, BF16)."""
    header, chunks, offset = {}, [], 0
    for name, arr in tensors.items():
        a = np.ascontiguousarray(arr, dtype=np.float32)
        if st_dtype == "F32":
            raw = a.astype("<f4").tobytes()
        elif st_dtype == "F16":
            raw = a.astype("<f2").tobytes()
        elif st_dtype == "BF16":  # round to nearest even
            u = a.view(np.uint32).astype(np.uint64)
            u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
            raw = u.astype("<u2").tobytes()
        else:
            raise ValueError(st_dtype)
        header[name] = {"dtype": st_dtype, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    hbytes = json.dumps(header).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for c in chunks:
            f.write(c)


# --------------------------------------------------------------------------
# config + weights
# --------------------------------------------------------------------------

def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    cfg = {
        "n_layer": int(c["n_layer"]),
        "n_embd": int(c["n_embd"]),
        "n_head": int(c["n_head"]),
        "n_positions": int(c.get("n_positions", c.get("n_ctx", 1024))),
        "vocab_size": int(c["vocab_size"]),
        "eps": float(c.get("layer_norm_epsilon", 1e-5)),
        "act": c.get("activation_function", "gelu_new"),
        "n_inner": c.get("n_inner") or 4 * int(c["n_embd"]),
        "scale_attn_weights": bool(c.get("scale_attn_weights", True)),
        "scale_by_inv_layer": bool(c.get("scale_attn_by_inverse_layer_idx", False)),
    }
    if cfg["n_embd"] % cfg["n_head"]:
        raise ValueError("n_embd must be divisible by n_head")
    if cfg["act"] not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu"):
        raise ValueError(f"unsupported activation_function {cfg['act']!r}")
    return cfg


def _is_ignored(name):
    return name.endswith(".attn.bias") or name.endswith(".attn.masked_bias")


def load_weights(model_dir, cfg, dtype):
    """Return {canonical name (no 'transformer.' prefix): torch tensor of dtype}."""
    path = os.path.join(model_dir, "model.safetensors")
    raw = read_safetensors(path, wanted=lambda n: not _is_ignored(n))
    w = {}
    for name, arr in raw.items():
        key = name[len("transformer."):] if name.startswith("transformer.") else name
        w[key] = torch.from_numpy(arr).to(dtype)
    E, I, V, P = cfg["n_embd"], cfg["n_inner"], cfg["vocab_size"], cfg["n_positions"]
    expect = {"wte.weight": (V, E), "wpe.weight": (P, E),
              "ln_f.weight": (E,), "ln_f.bias": (E,)}
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        expect.update({
            p + "ln_1.weight": (E,), p + "ln_1.bias": (E,),
            p + "attn.c_attn.weight": (E, 3 * E), p + "attn.c_attn.bias": (3 * E,),
            p + "attn.c_proj.weight": (E, E), p + "attn.c_proj.bias": (E,),
            p + "ln_2.weight": (E,), p + "ln_2.bias": (E,),
            p + "mlp.c_fc.weight": (E, I), p + "mlp.c_fc.bias": (I,),
            p + "mlp.c_proj.weight": (I, E), p + "mlp.c_proj.bias": (E,),
        })
    for k, shape in expect.items():
        if k not in w:
            raise ValueError(f"{path}: missing tensor {k}")
        if tuple(w[k].shape) != shape:
            raise ValueError(f"{path}: {k} has shape {tuple(w[k].shape)}, want {shape}")
    if "lm_head.weight" not in w:
        w["lm_head.weight"] = w["wte.weight"]  # tied embeddings
    elif tuple(w["lm_head.weight"].shape) != (V, E):
        raise ValueError(f"{path}: lm_head.weight shape {tuple(w['lm_head.weight'].shape)}")
    return w


# --------------------------------------------------------------------------
# the model, one function per block
# --------------------------------------------------------------------------

def conv1d(x, weight, bias):
    """GPT-2 Conv1D: y = x @ W + b with W [in, out] (HF uses addmm)."""
    shape = x.shape[:-1] + (weight.shape[1],)
    return torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight).view(shape)


def gelu(x, kind):
    if kind == "gelu":
        return F.gelu(x)
    # gelu_new / gelu_pytorch_tanh / gelu_fast: the tanh approximation
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def split_heads(x, n_head):
    """[B, T, E] -> [B, H, T, D]"""
    B, T, E = x.shape
    return x.view(B, T, n_head, E // n_head).permute(0, 2, 1, 3)


def merge_heads(x):
    """[B, H, T, D] -> [B, T, E]"""
    B, H, T, D = x.shape
    return x.permute(0, 2, 1, 3).contiguous().view(B, T, H * D)


def attention(x, w, p, cfg, layer_idx, past):
    """Causal multi-head self-attention with a (key, value) cache.

    past: None or (k, v) each [B, H, T_past, D]. Returns (out, (k, v))."""
    E, H = cfg["n_embd"], cfg["n_head"]
    qkv = conv1d(x, w[p + "attn.c_attn.weight"], w[p + "attn.c_attn.bias"])
    q, k, v = qkv.split(E, dim=2)
    q, k, v = split_heads(q, H), split_heads(k, H), split_heads(v, H)
    if past is not None:
        k = torch.cat((past[0], k), dim=-2)
        v = torch.cat((past[1], v), dim=-2)
    scores = torch.matmul(q, k.transpose(-1, -2))
    if cfg["scale_attn_weights"]:
        scores = scores / torch.full([], v.size(-1) ** 0.5, dtype=scores.dtype)
    if cfg["scale_by_inv_layer"]:
        scores = scores / float(layer_idx + 1)
    q_len, k_len = q.size(-2), k.size(-2)
    # query i (absolute position k_len - q_len + i) sees keys 0..k_len-q_len+i
    causal = torch.ones(q_len, k_len, dtype=torch.bool).tril(diagonal=k_len - q_len)
    scores = torch.where(causal, scores, torch.full([], torch.finfo(scores.dtype).min, dtype=scores.dtype))
    probs = torch.softmax(scores, dim=-1).to(v.dtype)
    out = merge_heads(torch.matmul(probs, v))
    out = conv1d(out, w[p + "attn.c_proj.weight"], w[p + "attn.c_proj.bias"])
    return out, (k, v)


def mlp(x, w, p, cfg):
    h = gelu(conv1d(x, w[p + "mlp.c_fc.weight"], w[p + "mlp.c_fc.bias"]), cfg["act"])
    return conv1d(h, w[p + "mlp.c_proj.weight"], w[p + "mlp.c_proj.bias"])


def layer_norm(x, w, name, cfg):
    return F.layer_norm(x, (x.shape[-1],), w[name + ".weight"], w[name + ".bias"], cfg["eps"])


def block(x, w, cfg, i, past):
    """Pre-LN transformer block: x + attn(ln_1 x); x + mlp(ln_2 x)."""
    p = f"h.{i}."
    a, present = attention(layer_norm(x, w, p + "ln_1", cfg), w, p, cfg, i, past)
    x = x + a
    x = x + mlp(layer_norm(x, w, p + "ln_2", cfg), w, p, cfg)
    return x, present


def embed(ids, w, past_len):
    pos = torch.arange(past_len, past_len + ids.shape[1], dtype=torch.long)
    return F.embedding(ids, w["wte.weight"]) + F.embedding(pos, w["wpe.weight"]).unsqueeze(0)


def forward(model, ids, past=None):
    """ids: LongTensor [B, T]. past: None or list of per-layer (k, v).

    Returns (logits [B, T, V], present list of per-layer (k, v))."""
    w, cfg = model["w"], model["cfg"]
    past_len = 0 if past is None else past[0][0].shape[-2]
    if past_len + ids.shape[1] > cfg["n_positions"]:
        raise ValueError(f"sequence length {past_len + ids.shape[1]} > n_positions {cfg['n_positions']}")
    x = embed(ids, w, past_len)
    present = []
    for i in range(cfg["n_layer"]):
        x, kv = block(x, w, cfg, i, None if past is None else past[i])
        present.append(kv)
    x = layer_norm(x, w, "ln_f", cfg)
    return F.linear(x, w["lm_head.weight"]), present


def load_model(model_dir, dtype=torch.float32):
    cfg = load_config(model_dir)
    return {"cfg": cfg, "w": load_weights(model_dir, cfg, dtype), "dtype": dtype}


# --------------------------------------------------------------------------
# drivers
# --------------------------------------------------------------------------

def prompt_logits(model, ids):
    """Full logits [T, V] for one prompt (batch 1, one forward pass)."""
    with torch.inference_mode():
        logits, _ = forward(model, torch.tensor([ids], dtype=torch.long))
    return logits[0]


def greedy_decode(model, ids, n_new):
    """Greedy decoding with a KV cache: prefill, then one token per step."""
    out = []
    with torch.inference_mode():
        logits, past = forward(model, torch.tensor([ids], dtype=torch.long))
        for step in range(n_new):
            tok = int(torch.argmax(logits[0, -1]))
            out.append(tok)
            if step + 1 < n_new:
                logits, past = forward(model, torch.tensor([[tok]], dtype=torch.long), past)
    return out


def greedy_decode_nocache(model, ids, n_new):
    """Greedy decoding recomputing the whole sequence each step (for checks)."""
    seq = list(ids)
    with torch.inference_mode():
        for _ in range(n_new):
            logits, _ = forward(model, torch.tensor([seq], dtype=torch.long))
            seq.append(int(torch.argmax(logits[0, -1])))
    return seq[len(ids):]


def parse_ids(text, vocab):
    ids = [int(t) for t in text.replace(" ", "").split(",") if t != ""]
    if not ids:
        raise ValueError("empty --prompt-ids")
    bad = [t for t in ids if t < 0 or t >= vocab]
    if bad:
        raise ValueError(f"token ids out of range [0,{vocab}): {bad}")
    return ids


def run(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.float64 if args.float64 else {"float32": torch.float32,
                                                "bfloat16": torch.bfloat16}[args.dtype]
    model = load_model(args.model, dtype)
    cfg = model["cfg"]
    V = cfg["vocab_size"]
    prompts = [parse_ids(p, V) for p in args.prompt_ids]
    result = {"model": args.model, "dtype": str(dtype).replace("torch.", ""),
              "n_vocab": V, "prompts": []}
    binf = open(args.out_bin, "wb") if args.out_bin else None
    offset = 0
    for ids in prompts:
        logits = prompt_logits(model, ids).to(torch.float64)
        entry = {"ids": ids}
        if binf is not None:
            arr = logits.numpy().astype("<f4")
            binf.write(arr.tobytes())
            entry.update({"n_pos": len(ids), "bin_offset": offset})
            offset += arr.size
        else:
            entry["logits"] = logits.tolist()
        if args.greedy:
            entry["greedy"] = greedy_decode(model, ids, args.greedy)
        result["prompts"].append(entry)
    if binf is not None:
        binf.close()
        result["bin"] = args.out_bin
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


# --------------------------------------------------------------------------
# random model writer + self-test
# --------------------------------------------------------------------------

SHAPES = {
    "tiny": dict(n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=64),
    "distilgpt2": dict(n_layer=6, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024),
}


def make_random_model(model_dir, shape="tiny", seed=0, st_dtype="F32", prefix="",
                      lm_head=False, attn_buffers=False, ln_random=False, n_inner=None,
                      std=0.02):
    """Write a GPT-2 HF directory with N(0, std) weights (std 0.02 by default).

    LayerNorm weights are 1 and biases 0 unless ln_random (then all random,
    which makes tests more sensitive)."""
    s = SHAPES[shape]
    E, L, V, P = s["n_embd"], s["n_layer"], s["vocab_size"], s["n_positions"]
    I = n_inner or 4 * E
    rng = np.random.default_rng(seed)

    def normal(*shape_):
        return rng.standard_normal(shape_, dtype=np.float32) * np.float32(std)

    def ln_w(n):
        return (1.0 + rng.standard_normal(n, dtype=np.float32) * 0.1) if ln_random else np.ones(n, np.float32)

    def bias(n):
        return rng.standard_normal(n, dtype=np.float32) * 0.02 if ln_random else np.zeros(n, np.float32)

    t = {"wte.weight": normal(V, E), "wpe.weight": normal(P, E)}
    for i in range(L):
        p = f"h.{i}."
        t[p + "ln_1.weight"], t[p + "ln_1.bias"] = ln_w(E), bias(E)
        if attn_buffers:
            t[p + "attn.bias"] = np.tril(np.ones((P, P), np.float32)).reshape(1, 1, P, P)
        t[p + "attn.c_attn.weight"], t[p + "attn.c_attn.bias"] = normal(E, 3 * E), bias(3 * E)
        t[p + "attn.c_proj.weight"], t[p + "attn.c_proj.bias"] = normal(E, E), bias(E)
        t[p + "ln_2.weight"], t[p + "ln_2.bias"] = ln_w(E), bias(E)
        t[p + "mlp.c_fc.weight"], t[p + "mlp.c_fc.bias"] = normal(E, I), bias(I)
        t[p + "mlp.c_proj.weight"], t[p + "mlp.c_proj.bias"] = normal(I, E), bias(E)
    t["ln_f.weight"], t["ln_f.bias"] = ln_w(E), bias(E)
    t = {prefix + k: v for k, v in t.items()}
    if lm_head:
        t["lm_head.weight"] = t[prefix + "wte.weight"].copy()
    os.makedirs(model_dir, exist_ok=True)
    write_safetensors(os.path.join(model_dir, "model.safetensors"), t, st_dtype)
    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
              "n_layer": L, "n_embd": E, "n_head": s["n_head"], "n_positions": P,
              "n_ctx": P, "vocab_size": V, "layer_norm_epsilon": 1e-5,
              "activation_function": "gelu_new", "n_inner": n_inner}
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def numpy_reference_logits(model_dir, ids):
    """A second, deliberately naive float64 GPT-2 in numpy (explicit loops
    over heads and query positions) used only to cross-check `forward`."""
    cfg = load_config(model_dir)
    raw = read_safetensors(os.path.join(model_dir, "model.safetensors"),
                           wanted=lambda n: not _is_ignored(n))
    w = {(k[12:] if k.startswith("transformer.") else k): v.astype(np.float64) for k, v in raw.items()}
    E, H, eps = cfg["n_embd"], cfg["n_head"], cfg["eps"]
    D = E // H

    def ln(x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]

    T = len(ids)
    x = w["wte.weight"][ids] + w["wpe.weight"][:T]
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        h = ln(x, p + "ln_1")
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = qkv[:, :E], qkv[:, E:2 * E], qkv[:, 2 * E:]
        att = np.zeros((T, E))
        for hd in range(H):
            sl = slice(hd * D, (hd + 1) * D)
            for t in range(T):
                s = np.array([q[t, sl] @ k[j, sl] / math.sqrt(D) for j in range(t + 1)])
                e = np.exp(s - s.max())
                pr = e / e.sum()
                att[t, sl] = sum(pr[j] * v[j, sl] for j in range(t + 1))
        x = x + att @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = ln(x, p + "ln_2") @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]
        h = 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
        x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = ln(x, "ln_f")
    head = w.get("lm_head.weight", w["wte.weight"])
    return x @ head.T


def self_test():
    torch.manual_seed(0)
    failures = []

    def check(name, ok, detail=""):
        print(f"[{'PASS' if ok else 'FAIL'}] {name} {detail}")
        if not ok:
            failures.append(name)

    def maxdiff(a, b):
        return float((torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)).abs().max())

    with tempfile.TemporaryDirectory() as tmp:
        d_a = os.path.join(tmp, "a")  # F32, transformer. prefix, attn.bias buffers, tied
        make_random_model(d_a, "tiny", seed=1, prefix="transformer.", attn_buffers=True, ln_random=True)
        m64 = load_model(d_a, torch.float64)
        m32 = load_model(d_a, torch.float32)
        rng = np.random.default_rng(7)
        prompt = [int(t) for t in rng.integers(0, 100, size=20)]

        # 1. torch forward vs the naive numpy float64 implementation
        ref = numpy_reference_logits(d_a, prompt)
        full64 = prompt_logits(m64, prompt)
        full32 = prompt_logits(m32, prompt)
        d = maxdiff(full64, ref)
        check("float64 forward == naive numpy GPT-2", d < 1e-10, f"max|diff|={d:.3g}")
        d = maxdiff(full32, ref)
        check("float32 forward ~= naive numpy GPT-2", d < 1e-4, f"max|diff|={d:.3g}")

        # 2. KV-cache loop, one token at a time, vs full forward at each position
        for m, tol, label in ((m64, 1e-10, "float64"), (m32, 1e-4, "float32")):
            full = prompt_logits(m, prompt)
            worst = 0.0
            with torch.inference_mode():
                past = None
                for t, tok in enumerate(prompt):
                    lg, past = forward(m, torch.tensor([[tok]]), past)
                    worst = max(worst, maxdiff(lg[0, -1], full[t]))
            check(f"{label} token-by-token KV cache == full forward (all {len(prompt)} positions)",
                  worst < tol, f"max|diff|={worst:.3g}")

        # 3. chunked prefill (prefix 7, then chunk of 9, then 4) vs full forward
        with torch.inference_mode():
            parts, past, rows = [prompt[:7], prompt[7:16], prompt[16:]], None, []
            for part in parts:
                lg, past = forward(m64, torch.tensor([part]), past)
                rows.append(lg[0])
            d = maxdiff(torch.cat(rows), full64)
        check("float64 chunked prefill (7+9+4) == full forward", d < 1e-10, f"max|diff|={d:.3g}")

        # 4. batch of 2 == each prompt alone
        other = [int(t) for t in rng.integers(0, 100, size=20)]
        with torch.inference_mode():
            lg, _ = forward(m64, torch.tensor([prompt, other]))
        d = max(maxdiff(lg[0], full64), maxdiff(lg[1], prompt_logits(m64, other)))
        check("batch of 2 == separate runs", d < 1e-10, f"max|diff|={d:.3g}")

        # 5. greedy with KV cache == greedy recomputing the full sequence
        # (std 0.3 weights so that greedy does not collapse onto one token)
        d_g = os.path.join(tmp, "g")
        make_random_model(d_g, "tiny", seed=5, ln_random=True, std=0.3)
        for dt in (torch.float64, torch.float32):
            mg = load_model(d_g, dt)
            g_cache = greedy_decode(mg, prompt[:5], 40)
            g_full = greedy_decode_nocache(mg, prompt[:5], 40)
            check(f"{str(dt)[6:]} greedy(40) KV cache == full recompute", g_cache == g_full,
                  f"{len(set(g_cache))} distinct ids, first {g_cache[:8]}")

        # 6. loader: no prefix, explicit lm_head, BF16 / F16 storage, n_inner
        for st in ("BF16", "F16"):
            d_b = os.path.join(tmp, "b_" + st)
            make_random_model(d_b, "tiny", seed=1, st_dtype=st, lm_head=True, ln_random=True)
            mb = load_model(d_b, torch.float64)
            if st == "BF16":
                expect = m32["w"]["h.1.mlp.c_fc.weight"].to(torch.bfloat16).to(torch.float64)
            else:
                expect = m32["w"]["h.1.mlp.c_fc.weight"].to(torch.float16).to(torch.float64)
            d = maxdiff(mb["w"]["h.1.mlp.c_fc.weight"], expect)
            check(f"{st} safetensors decode exact", d == 0.0, f"max|diff|={d:.3g}")
            d = maxdiff(prompt_logits(mb, prompt), numpy_reference_logits(d_b, prompt))
            check(f"{st} model (no prefix, untied lm_head) == numpy", d < 1e-10, f"max|diff|={d:.3g}")
        d_c = os.path.join(tmp, "c")
        make_random_model(d_c, "tiny", seed=3, n_inner=96, ln_random=True)
        mc = load_model(d_c, torch.float64)
        d = maxdiff(prompt_logits(mc, prompt), numpy_reference_logits(d_c, prompt))
        check("n_inner=96 model == numpy", d < 1e-10, f"max|diff|={d:.3g}")

        # 7. hand-computed single layer: layer-0 output at position 0 only
        # depends on token 0 (attention over one key is just v).
        w = m64["w"]
        x0 = w["wte.weight"][prompt[0]] + w["wpe.weight"][0]
        ln = lambda v, n: (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + 1e-5) * w[n + ".weight"] + w[n + ".bias"]
        qkv = ln(x0, "h.0.ln_1") @ w["h.0.attn.c_attn.weight"] + w["h.0.attn.c_attn.bias"]
        x1 = x0 + qkv[128:] @ w["h.0.attn.c_proj.weight"] + w["h.0.attn.c_proj.bias"]
        hmid = ln(x1, "h.0.ln_2") @ w["h.0.mlp.c_fc.weight"] + w["h.0.mlp.c_fc.bias"]
        hmid = 0.5 * hmid * (1 + torch.tanh(math.sqrt(2 / math.pi) * (hmid + 0.044715 * hmid ** 3)))
        x2 = x1 + hmid @ w["h.0.mlp.c_proj.weight"] + w["h.0.mlp.c_proj.bias"]
        with torch.inference_mode():
            y, _ = block(embed(torch.tensor([prompt[:3]]), w, 0), w, m64["cfg"], 0, None)
        d = maxdiff(y[0, 0], x2)
        check("hand-computed layer 0, position 0", d < 1e-12, f"max|diff|={d:.3g}")

        # 8. CLI round trip: JSON logits vs --out-bin
        js, jb, bn = (os.path.join(tmp, n) for n in ("o.json", "ob.json", "o.bin"))
        common = ["--model", d_a, "--prompt-ids", ",".join(map(str, prompt[:6])),
                  "--prompt-ids", ",".join(map(str, other[:4])), "--greedy", "5"]
        run(build_parser().parse_args(common + ["--out", js]))
        run(build_parser().parse_args(common + ["--out", jb, "--out-bin", bn]))
        with open(js) as f:
            a = json.load(f)
        with open(jb) as f:
            b = json.load(f)
        blob = np.fromfile(bn, dtype="<f4")
        ok = os.path.getsize(bn) == 4 * 100 * 10 and "logits" not in b["prompts"][0]
        for pa, pb in zip(a["prompts"], b["prompts"]):
            rows = blob[pb["bin_offset"]:pb["bin_offset"] + pb["n_pos"] * 100].reshape(pb["n_pos"], 100)
            ok = ok and np.allclose(rows, np.array(pa["logits"], dtype=np.float32), atol=0, rtol=0)
            ok = ok and pa["greedy"] == pb["greedy"] == greedy_decode(m32, pa["ids"], 5)
            if pa["ids"] == prompt[:6]:  # causal: a prefix's logits are a prefix of the rows
                ok = ok and float(np.abs(np.array(pa["logits"]) - full32.numpy()[:6]).max()) < 1e-5
        check("CLI --out JSON == --out-bin, greedy field", bool(ok))

    print("self-test:", "OK" if not failures else f"{len(failures)} FAILED: {failures}")
    return 0 if not failures else 1


# --------------------------------------------------------------------------

def build_parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="Hugging Face GPT-2 directory")
    ap.add_argument("--prompt-ids", action="append", default=[],
                    help="comma-separated token ids; repeat for several prompts")
    ap.add_argument("--out", help="output JSON (default: stdout)")
    ap.add_argument("--out-bin", help="write float32 LE logits here; JSON omits logits")
    ap.add_argument("--greedy", type=int, default=0, help="greedy-decode N new tokens (KV cache)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="weight/compute dtype (default float32)")
    ap.add_argument("--float64", action="store_true", help="compute in float64 (tighter reference)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = default)")
    ap.add_argument("--self-test", action="store_true", help="run built-in consistency checks")
    ap.add_argument("--make-random", metavar="DIR", help="write a random GPT-2 HF directory")
    ap.add_argument("--shape", default="tiny", choices=sorted(SHAPES), help="for --make-random")
    ap.add_argument("--seed", type=int, default=0, help="for --make-random")
    ap.add_argument("--st-dtype", default="F32", choices=["F32", "F16", "BF16"], help="for --make-random")
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test()
    if args.make_random:
        make_random_model(args.make_random, args.shape, args.seed, args.st_dtype)
        print(f"wrote {args.shape} random GPT-2 to {args.make_random}")
        return 0
    if not args.model or not args.prompt_ids:
        ap.error("--model and at least one --prompt-ids are required")
    try:
        run(args)
    except (ValueError, OSError, KeyError) as e:
        print(f"torch_gpt2_ref: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
