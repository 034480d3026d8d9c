#!/usr/bin/python3
"""Independent PyTorch reference for the Llama family (Llama, Mistral, Qwen2) on a Hugging Face
directory: logits at every position of each prompt, computed in float64 from the safetensors
(single file or shards listed in model.safetensors.index.json), as transformers' modeling_llama
defines them: RMSNorm, rotate-half rotary embeddings (rope_theta, "linear" and "llama3"
rope_scaling), grouped-query attention (K/V heads repeated per group), SwiGLU, optional q/k/v
biases (Qwen2) and an untied output head.

  torch_llama_ref.py --make-random DIR [--variant llama|qwen2|llama3] [--shards N] [--seed S]
  torch_llama_ref.py --model DIR --prompt-ids 1,2,3 [--prompt-ids ...] --out ref.json --out-bin ref.bin
  torch_llama_ref.py --model DIR --prompt-ids 1,2,3 --stream-budget B [--stream-sinks S] --out ... --out-bin ...

--stream-budget decodes the ids one token at a time as StreamingLLM does: each layer caches
pre-RoPE keys and values, a step's query attends over the cache and itself with positions
counted within the cache (0 for the first cached token, the query last), and after each step
the cache keeps the first S tokens and the newest B - S (S = 0: a plain sliding window).

--make-random writes a small GQA model (4 query heads, 2 KV heads, untied head) with weights
large enough (std 0.25) that attention is far from uniform, so rotary or grouping mistakes move
the logits. Needs Debian's python3-torch and python3-numpy (run with /usr/bin/python3).
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt2_ref import read_safetensors, write_safetensors  # noqa: E402

VARIANTS = {
    "llama": {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "rope_theta": 10000.0},
    "qwen2": {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "rope_theta": 1000000.0},
    "llama3": {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "rope_theta": 500000.0,
               "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 32}},
}


def make_random(out, variant, shards, seed):
    cfg = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 97, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
           "hidden_act": "silu", "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
           "torch_dtype": "float32"}
    cfg.update(VARIANTS[variant])
    g = np.random.default_rng(seed)
    d, f, L, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    hd = d // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    t = {"model.embed_tokens.weight": g.normal(0, 1.0, (V, d))}
    for il in range(L):
        p = f"model.layers.{il}."
        t[p + "input_layernorm.weight"] = 1 + g.normal(0, 0.1, d)
        t[p + "self_attn.q_proj.weight"] = g.normal(0, 0.25, (q, d))
        t[p + "self_attn.k_proj.weight"] = g.normal(0, 0.25, (kv, d))
        t[p + "self_attn.v_proj.weight"] = g.normal(0, 0.25, (kv, d))
        if variant == "qwen2":
            t[p + "self_attn.q_proj.bias"] = g.normal(0, 0.2, q)
            t[p + "self_attn.k_proj.bias"] = g.normal(0, 0.2, kv)
            t[p + "self_attn.v_proj.bias"] = g.normal(0, 0.2, kv)
        t[p + "self_attn.o_proj.weight"] = g.normal(0, 0.1, (d, q))
        t[p + "post_attention_layernorm.weight"] = 1 + g.normal(0, 0.1, d)
        t[p + "mlp.gate_proj.weight"] = g.normal(0, 0.15, (f, d))
        t[p + "mlp.up_proj.weight"] = g.normal(0, 0.15, (f, d))
        t[p + "mlp.down_proj.weight"] = g.normal(0, 0.1, (d, f))
    t["model.norm.weight"] = 1 + g.normal(0, 0.1, d)
    t["lm_head.weight"] = g.normal(0, 0.2, (V, d))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as fp:
        json.dump(cfg, fp, indent=2)
    names = list(t)
    if shards <= 1:
        write_safetensors(os.path.join(out, "model.safetensors"), t)
        return
    weight_map = {}
    per = math.ceil(len(names) / shards)
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: t[n] for n in names[s * per:(s + 1) * per]}
        write_safetensors(os.path.join(out, fname), part)
        weight_map.update({n: fname for n in part})
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as fp:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, fp, indent=2)


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as fp:
            files = sorted(set(json.load(fp)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    w = {}
    for f in files:
        w.update(read_safetensors(os.path.join(model_dir, f)))
    return {k: torch.from_numpy(v.astype(np.float64)) for k, v in w.items()}


def inv_freq(cfg, hd):
    base = float(cfg.get("rope_theta", 10000.0))
    inv = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "linear":
        inv = inv / rs["factor"]
    elif kind == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > old / lo, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old / hi) & (wavelen <= old / lo)
        inv = torch.where(medium, smoothed, scaled)
    return inv


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def forward(cfg, w, ids):
    d, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim", d // nh)
    eps = cfg.get("rms_norm_eps", 1e-6)
    T = len(ids)
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    pos = torch.arange(T, dtype=torch.float64)
    ang = torch.outer(pos, inv_freq(cfg, hd))
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for il in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{il}."
        h = rms(x, w[p + "input_layernorm.weight"], eps)

        def proj(name):
            y = h @ w[p + name + ".weight"].T
            b = w.get(p + name + ".bias")
            return y + b if b is not None else y

        q = proj("self_attn.q_proj").view(T, nh, hd).transpose(0, 1)
        k = proj("self_attn.k_proj").view(T, nkv, hd).transpose(0, 1)
        v = proj("self_attn.v_proj").view(T, nkv, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=0)
        v = v.repeat_interleave(nh // nkv, dim=0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + mask, dim=-1) @ v
        x = x + att.transpose(0, 1).reshape(T, nh * hd) @ w[p + "self_attn.o_proj.weight"].T
        h = rms(x, w[p + "post_attention_layernorm.weight"], eps)
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rms(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x @ head.T


def stream_forward(cfg, w, ids, budget, sinks):
    d, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim", d // nh)
    eps = cfg.get("rms_norm_eps", 1e-6)
    inv = inv_freq(cfg, hd)
    L = cfg["num_hidden_layers"]
    keys = [[] for _ in range(L)]
    vals = [[] for _ in range(L)]
    out = []

    def rot(x, positions):
        ang = torch.outer(torch.tensor(positions, dtype=torch.float64), inv)
        emb = torch.cat((ang, ang), dim=-1)[:, None, :]
        return x * emb.cos() + rotate_half(x) * emb.sin()

    for tok in ids:
        x = w["model.embed_tokens.weight"][torch.tensor([tok])]
        for il in range(L):
            p = f"model.layers.{il}."
            h = rms(x, w[p + "input_layernorm.weight"], eps)

            def proj(name):
                y = h @ w[p + name + ".weight"].T
                b = w.get(p + name + ".bias")
                return y + b if b is not None else y

            q = proj("self_attn.q_proj").view(1, nh, hd)
            keys[il].append(proj("self_attn.k_proj").view(nkv, hd))
            vals[il].append(proj("self_attn.v_proj").view(nkv, hd))
            n = len(keys[il])
            k = rot(torch.stack(keys[il]), list(range(n)))  # [n, nkv, hd]
            q = rot(q, [n - 1])[0]                            # [nh, hd]
            k = k.repeat_interleave(nh // nkv, dim=1).transpose(0, 1)              # [nh, n, hd]
            v = torch.stack(vals[il]).repeat_interleave(nh // nkv, dim=1).transpose(0, 1)
            a = torch.softmax((k @ q[:, :, None])[:, :, 0] / math.sqrt(hd), dim=-1)  # [nh, n]
            att = (a[:, None, :] @ v)[:, 0, :]                                      # [nh, hd]
            x = x + att.reshape(1, nh * hd) @ w[p + "self_attn.o_proj.weight"].T
            h = rms(x, w[p + "post_attention_layernorm.weight"], eps)
            g = h @ w[p + "mlp.gate_proj.weight"].T
            u = h @ w[p + "mlp.up_proj.weight"].T
            x = x + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
        x = rms(x, w["model.norm.weight"], eps)
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        out.append((x @ head.T)[0])
        for il in range(L):
            while len(keys[il]) > budget:
                del keys[il][sinks]
                del vals[il][sinks]
    return torch.stack(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--make-random", metavar="DIR")
    ap.add_argument("--variant", default="llama", choices=sorted(VARIANTS))
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model")
    ap.add_argument("--prompt-ids", action="append", default=[])
    ap.add_argument("--out")
    ap.add_argument("--out-bin")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stream-budget", type=int, default=0)
    ap.add_argument("--stream-sinks", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.make_random:
        make_random(a.make_random, a.variant, a.shards, a.seed)
        return
    with open(os.path.join(a.model, "config.json")) as fp:
        cfg = json.load(fp)
    w = load_weights(a.model)
    res = {"n_vocab": cfg["vocab_size"], "prompts": []}
    offset = 0
    with open(a.out_bin, "wb") as fb:
        for s in a.prompt_ids:
            ids = [int(t) for t in s.split(",")]
            if a.stream_budget > 0:
                logits = stream_forward(cfg, w, ids, a.stream_budget, a.stream_sinks).to(torch.float32).numpy()
            else:
                logits = forward(cfg, w, ids).to(torch.float32).numpy()
            fb.write(logits.astype("<f4").tobytes())
            res["prompts"].append({"ids": ids, "n_pos": len(ids), "bin_offset": offset})
            offset += logits.size
    with open(a.out, "w") as fp:
        json.dump(res, fp)


if __name__ == "__main__":
    main()
