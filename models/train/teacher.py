"""The LLM the draft is distilled from: SmolLM2-135M-Instruct, read from the project's GGUF by Hugging
Face transformers (its gguf path needs the `gguf` and `accelerate` packages; on the GPU machine they
come from models/wheels/, see scripts/fetch_gpu_wheels.sh)."""
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from eagle3_draft import apply_rope, causal_softmax_rows

GGUF = Path("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")


def load_teacher(device, dtype=torch.bfloat16, gguf=GGUF):
    gguf = Path(gguf)
    if not gguf.exists():
        raise SystemExit(f"{gguf}: missing (scripts/fetch_smollm2.sh fetches it)")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype,
                                                 attn_implementation="sdpa").to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return tokenizer, model


@torch.no_grad()
def teacher_forward(model, ids, aux_layer_ids):
    """ids [B, L] -> (features [B, L, 3h] = the residual streams entering the aux layers,
    logits [B, L, vocab], hidden_states: the tuple (embeddings, input of layer 1, ...))."""
    out = model(ids, output_hidden_states=True, use_cache=False)
    features = torch.cat([out.hidden_states[j] for j in aux_layer_ids], dim=-1)
    return features, out.logits, out.hidden_states


@torch.no_grad()
def layer_attention_rows(model, hidden_states, layer, query_positions):
    """The LLM's own attention probabilities in `layer` for the given query rows, recomputed from the
    layer's input (RMSNorm, q/k projections, RoPE, causal softmax) — [B, heads, Q, L] fp32."""
    attn = model.model.layers[layer].self_attn
    x = model.model.layers[layer].input_layernorm(hidden_states[layer])
    b, length, _ = x.shape
    cfg = model.config
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    positions = torch.arange(length, device=x.device)[None].expand(b, -1)
    cos, sin = model.model.rotary_emb(x, positions)
    qpos = torch.as_tensor(query_positions, device=x.device)
    q = attn.q_proj(x[:, qpos]).view(b, len(qpos), cfg.num_attention_heads, d).transpose(1, 2)
    k = attn.k_proj(x).view(b, length, cfg.num_key_value_heads, d).transpose(1, 2)
    cos, sin = cos[:, None].float(), sin[:, None].float()  # [B, 1, L, d]: broadcast over heads
    q = apply_rope(q, cos[:, :, qpos], sin[:, :, qpos])
    k = apply_rope(k, cos, sin)
    return causal_softmax_rows(q, k, query_positions)
