#!/usr/bin/env python3
"""Hugging Face transformers decode-step baseline, measured the way `specontext bench` measures.

For each (attention implementation, requests R, depth S): a model of the chosen shape with random
bf16 weights built directly on the GPU (no checkpoint), a DynamicCache filled directly with random
keys and values to S tokens per request (no prefill is run), then `--steps` decode steps of one new
token per request, timed with CUDA events after `--warmup` untimed steps, repeated `--reps` times
(the cache is cropped back to S between repetitions).

Per point it reports the median over repetitions of the mean step time of each repetition, the spread
as min–max of those per-repetition means, tokens/s = R / step time, and the achieved HBM bandwidth
counting only the bytes a decode step must read: every weight once (the embedding table: only the R
rows looked up, unless tied to the LM head) plus every layer's K and V up to the current depth once.
What transformers moves beyond that (DynamicCache's torch.cat copies the whole cache each step, eager
attention expands GQA heads with repeat_kv) is overhead the number exposes, not bytes it counts.
Points that do not fit in GPU memory are reported as "oom" and the sweep goes on.
"""
import argparse
import gc
import json
import math
import statistics
import subprocess
import sys
import time

import warnings

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

# Llama-3.1-8B's config.json fields that set the shape (configs/models/llama-3.1-8b.json).
LLAMA_31_8B = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "tie_word_embeddings": False,
    "attention_bias": False,
    "mlp_bias": False,
    "hidden_act": "silu",
    "bos_token_id": 128000,
    "eos_token_id": 128001,
}

H200_HBM_GBPS = 4800.0  # datasheet, GB/s (10^9 B/s)


def int_list(s):
    return [int(x) for x in s.split(",") if x]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def load_config(path, layers):
    if path:
        with open(path) as f:
            fields = json.load(f)
        name = path
    else:
        fields = dict(LLAMA_31_8B)
        name = "Llama-3.1-8B shape (inline)"
    fields = {k: v for k, v in fields.items() if k not in ("torch_dtype", "dtype", "transformers_version")}
    if "model_type" not in fields:
        sys.exit(f"{name}: config has no 'model_type'")
    model_type = fields.pop("model_type")
    if layers:
        fields["num_hidden_layers"] = layers
    try:
        cfg = AutoConfig.for_model(model_type, **fields)
    except ValueError as e:
        sys.exit(f"{name}: model_type '{model_type}': {e}")
    return cfg, name


def build_model(cfg, attn, device):
    """Random bf16 weights allocated on `device`; transformers' own init draws them there."""
    kwargs = dict(attn_implementation=attn)
    with torch.device(device):
        try:
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, **kwargs)
        except TypeError:  # transformers 4.x spells it torch_dtype
            model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16, **kwargs)
    model = model.to(device=device, dtype=torch.bfloat16).eval()
    return model


def switch_attn(model, attn):
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(attn)
        return True
    return False


def shape_of(cfg):
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return cfg.num_hidden_layers, kv_heads, head_dim


def weight_bytes_per_step(model, cfg, requests):
    total = sum(p.numel() * p.element_size() for p in model.parameters())  # tied weights counted once
    emb = model.get_input_embeddings().weight
    if getattr(cfg, "tie_word_embeddings", False):
        return total
    row = emb.shape[1] * emb.element_size()
    return total - emb.numel() * emb.element_size() + min(requests, emb.shape[0]) * row


def kv_bytes(cfg, requests, tokens, elem=2):
    layers, kv_heads, head_dim = shape_of(cfg)
    return 2 * layers * requests * kv_heads * head_dim * tokens * elem


def new_cache(cfg):
    try:
        return DynamicCache(config=cfg)  # transformers >= 4.56 / 5.x: layers built from the config
    except TypeError:
        return DynamicCache()


def fill_cache(cfg, requests, depth, device):
    layers, kv_heads, head_dim = shape_of(cfg)
    cache = new_cache(cfg)
    for layer in range(layers):
        k = torch.randn(requests, kv_heads, depth, head_dim, dtype=torch.bfloat16, device=device)
        v = torch.randn(requests, kv_heads, depth, head_dim, dtype=torch.bfloat16, device=device)
        cache.update(k, v, layer)
        del k, v
    got = cache.get_seq_length()
    if got != depth:
        raise RuntimeError(f"DynamicCache holds {got} tokens after filling to {depth}")
    return cache


class Timer:
    """CUDA events on a GPU; time.perf_counter on the CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def start(self):
        if self.cuda:
            self.t0 = torch.cuda.Event(enable_timing=True)
            self.t0.record()
        else:
            self.t0 = time.perf_counter()

    def stop_ms(self):
        if self.cuda:
            t1 = torch.cuda.Event(enable_timing=True)
            t1.record()
            t1.synchronize()
            return self.t0.elapsed_time(t1)
        return (time.perf_counter() - self.t0) * 1e3


def crop_to(cache, depth):
    # A negative argument removes that many tokens in every transformers version; a positive one
    # meant "keep this many" before 5.2x and is refused after.
    extra = cache.get_seq_length() - depth
    if extra > 0:
        cache.crop(-extra)


def decode_steps(model, cache, tokens, n):
    # The DynamicCache is updated in place; `past_key_values` is the keyword every version up to at
    # least 5.24 accepts (5.2x also offers `cache` and warns about the old name).
    for _ in range(n):
        out = model(input_ids=tokens, past_key_values=cache, use_cache=True)
        tokens = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
    return tokens, cache


def is_oom(e):
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def free_memory(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def measure_point(model, cfg, attn, requests, depth, args, device):
    point = {"attn": attn, "requests": requests, "depth": depth}
    timer = Timer(device)
    cache = tokens = None
    oom_msg = None
    try:
        cache = fill_cache(cfg, requests, depth, device)
        gen = torch.Generator(device="cpu").manual_seed(requests * 1000003 + depth)
        tokens = torch.randint(0, cfg.vocab_size, (requests, 1), generator=gen).to(device)
        with torch.inference_mode():
            tokens, cache = decode_steps(model, cache, tokens, args.warmup)
            per_rep = []
            for _ in range(args.reps):
                crop_to(cache, depth)
                timer.start()
                tokens, cache = decode_steps(model, cache, tokens, args.steps)
                per_rep.append(timer.stop_ms() / args.steps)
    except (torch.cuda.OutOfMemoryError, RuntimeError) as e:
        if not is_oom(e):
            raise
        oom_msg = str(e).splitlines()[0][:200]
    # Free outside the except block: the traceback would otherwise keep the cache alive.
    del cache, tokens
    free_memory(device)
    if oom_msg is not None:
        point.update(status="oom", detail=oom_msg, median_ms=None, spread_ms=None, tokens_per_s=None,
                     hbm_gbps=None, roofline_pct=None)
        return point
    med = statistics.median(per_rep)
    mean_depth = depth + args.steps / 2.0  # the cache grows by one token per step within a repetition
    bytes_step = weight_bytes_per_step(model, cfg, requests) + kv_bytes(cfg, requests, mean_depth)
    gbps = bytes_step / (med * 1e-3) / 1e9
    point.update(
        status="ok",
        median_ms=round(med, 4),
        spread_ms=[round(min(per_rep), 4), round(max(per_rep), 4)],
        tokens_per_s=round(requests / (med * 1e-3), 3),
        hbm_gbps=round(gbps, 2),
        roofline_pct=round(100.0 * gbps / args.peak_gbps, 2),
        bytes_per_step=int(bytes_step),
        per_rep_ms=[round(x, 4) for x in per_rep],
    )
    return point


def driver_version():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def print_table(points, header):
    print(header)
    cols = f"{'attn':6s} {'R':>4s} {'depth':>7s} {'ms/step':>9s} {'min–max ms':>19s} {'tokens/s':>10s} {'GB/s':>8s} {'% peak':>7s}"
    print(cols)
    print("-" * len(cols))
    for p in points:
        if p["status"] != "ok":
            print(f"{p['attn']:6s} {p['requests']:4d} {p['depth']:7d} {'out of memory':>9s}")
            continue
        lo, hi = p["spread_ms"]
        print(f"{p['attn']:6s} {p['requests']:4d} {p['depth']:7d} {p['median_ms']:9.2f} "
              f"{lo:9.2f}–{hi:<9.2f} {p['tokens_per_s']:10.1f} {p['hbm_gbps']:8.1f} {p['roofline_pct']:6.1f}%")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", default="1,4,16,32", help="comma-separated request counts R")
    ap.add_argument("--depth", default="2048,16384,32768", help="comma-separated KV depths S (tokens)")
    ap.add_argument("--steps", type=int, default=8, help="timed decode steps per repetition")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per point")
    ap.add_argument("--warmup", type=int, default=2, help="untimed decode steps before the repetitions")
    ap.add_argument("--attn", default="eager,sdpa", help="comma-separated attn_implementation values")
    ap.add_argument("--model-config", default="", help="a Hugging Face config.json (default: Llama-3.1-8B shape)")
    ap.add_argument("--layers", type=int, default=0, help="override num_hidden_layers (quick runs)")
    ap.add_argument("--peak-gbps", type=float, default=H200_HBM_GBPS, help="HBM peak for the roofline, GB/s")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    if args.steps < 1 or args.reps < 1 or args.warmup < 0:
        sys.exit("--steps and --reps must be >= 1, --warmup >= 0")

    warnings.filterwarnings("ignore", message=".*past_key_values.*")
    transformers.logging.set_verbosity_error()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device visible")
    torch.backends.cuda.matmul.allow_tf32 = False
    cfg, cfg_name = load_config(args.model_config, args.layers)
    requests, depths, attns = int_list(args.requests), int_list(args.depth), [a for a in args.attn.split(",") if a]

    points = []
    model = None
    for attn in attns:
        if model is None or not switch_attn(model, attn):
            del model
            free_memory(device)
            log(f"building {cfg_name} ({cfg.num_hidden_layers} layers) with random bf16 weights on {device}, attn={attn}")
            model = build_model(cfg, attn, device)
        for r in requests:
            for s in depths:
                log(f"  {attn} R={r} S={s} ...")
                p = measure_point(model, cfg, attn, r, s, args, device)
                log(f"    {p['status']}" + (f" {p['median_ms']:.2f} ms/step" if p["status"] == "ok" else ""))
                points.append(p)
    weights_total = sum(p.numel() * p.element_size() for p in model.parameters())

    layers, kv_heads, head_dim = shape_of(cfg)
    meta = {
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "driver": driver_version() if device.type == "cuda" else None,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "model": {"config": cfg_name, "layers": layers, "hidden": cfg.hidden_size,
                  "heads": cfg.num_attention_heads, "kv_heads": kv_heads, "head_dim": head_dim,
                  "vocab": cfg.vocab_size, "weight_bytes": weights_total, "dtype": "bfloat16"},
        "method": {"steps": args.steps, "reps": args.reps, "warmup": args.warmup,
                   "timer": "cuda events" if device.type == "cuda" else "time.perf_counter",
                   "median_ms": "median over reps of each rep's mean ms/step",
                   "spread_ms": "[min, max] over reps of each rep's mean ms/step",
                   "hbm_gbps": "(weights read once + K,V up to depth+steps/2 read once) / median step, GB = 1e9 B",
                   "peak_gbps": args.peak_gbps},
        "points": points,
    }
    if args.json:
        print(json.dumps(meta, indent=1))
    else:
        header = (f"{meta['gpu']}  driver {meta['driver']}  CUDA {meta['cuda']}  torch {meta['torch']}  "
                  f"transformers {meta['transformers']}\n{cfg_name}: {layers} layers, {weights_total / 1e9:.2f} GB bf16 weights; "
                  f"{args.steps} steps x {args.reps} reps (median; spread = min–max over reps); "
                  f"peak {args.peak_gbps:.0f} GB/s")
        print_table(points, header)


if __name__ == "__main__":
    main()
