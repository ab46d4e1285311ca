"""The EAGLE-3 draft (our distilled LM) as a PyTorch module, with EAGLE-3's tensor names and layout.

Layout (EAGLE-3, Li et al. 2025; the names its released checkpoints use, e.g. the drafts for
Llama-3.1-8B-Instruct):
    fc.weight                                   [hidden, 3*hidden]  no bias
    midlayer.hidden_norm.weight                 [hidden]            RMSNorm of fc's output
    midlayer.input_layernorm.weight             [hidden]            RMSNorm of the token embedding
    midlayer.self_attn.{q,k,v}_proj.weight      [heads*d, 2*hidden] attention over [embed ; fc] (embed first)
    midlayer.self_attn.o_proj.weight            [hidden, heads*d]
    midlayer.post_attention_layernorm.weight    [hidden]
    midlayer.mlp.{gate,up,down}_proj.weight     SwiGLU
    norm.weight                                 [hidden]
    lm_head.weight                              [draft_vocab, hidden]
    d2t                                         [draft_vocab] int64: target id = draft id + d2t[draft id]
    t2d                                         [vocab] bool: whether a target id is in the draft vocabulary
The token embedding is the target's (shared, not saved).

Alignment: the draft's position t takes the target's features at position t (the residual stream
entering layers `aux_layer_ids`, EAGLE-3's low/middle/high choice) and the embedding of token t+1,
and predicts the target's next-token distribution at position t+1 (the token t+2).
"""
import json
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight.float() * x).to(dtype)


def rope_cos_sin(positions, head_dim, theta, device):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x, cos, sin):
    # x [B, heads, L, d]; rotate_half convention (Hugging Face Llama).
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, d = cfg["hidden_size"], cfg["head_dim"]
        self.heads, self.kv_heads, self.head_dim = cfg["num_attention_heads"], cfg["num_key_value_heads"], d
        self.q_proj = nn.Linear(2 * h, self.heads * d, bias=False)
        self.k_proj = nn.Linear(2 * h, self.kv_heads * d, bias=False)
        self.v_proj = nn.Linear(2 * h, self.kv_heads * d, bias=False)
        self.o_proj = nn.Linear(self.heads * d, h, bias=False)

    def qk(self, x, cos, sin):
        """Roped queries [B, heads, L, d] and keys [B, kv_heads, L, d]: all a retrieval head needs."""
        b, l, _ = x.shape
        q = self.q_proj(x).view(b, l, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, l, self.kv_heads, self.head_dim).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin)

    def forward(self, x, cos, sin):
        b, l, _ = x.shape
        q, k = self.qk(x, cos, sin)
        v = self.v_proj(x).view(b, l, self.kv_heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.o_proj(out.transpose(1, 2).reshape(b, l, self.heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, f = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(h, f, bias=False)
        self.up_proj = nn.Linear(h, f, bias=False)
        self.down_proj = nn.Linear(f, h, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MidLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        eps = cfg["rms_norm_eps"]
        self.hidden_norm = RMSNorm(cfg["hidden_size"], eps)
        self.input_layernorm = RMSNorm(cfg["hidden_size"], eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], eps)
        self.mlp = MLP(cfg)

    def attention_input(self, embeds, hidden):
        return torch.cat((self.input_layernorm(embeds), self.hidden_norm(hidden)), dim=-1)

    def forward(self, embeds, hidden, cos, sin):
        x = hidden + self.self_attn(self.attention_input(embeds, hidden), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Eagle3Draft(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        h = cfg["hidden_size"]
        self.fc = nn.Linear(3 * h, h, bias=False)
        self.midlayer = MidLayer(cfg)
        self.norm = RMSNorm(h, cfg["rms_norm_eps"])
        self.lm_head = nn.Linear(h, cfg["draft_vocab_size"], bias=False)
        self.register_buffer("d2t", torch.zeros(cfg["draft_vocab_size"], dtype=torch.int64))
        self.register_buffer("t2d", torch.zeros(cfg["vocab_size"], dtype=torch.bool))

    def init_weights(self, generator):
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            else:
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=generator) * self.cfg["initializer_range"])

    def set_vocabulary(self, draft_to_target):
        """draft_to_target: [draft_vocab] target ids, ascending."""
        ids = torch.as_tensor(draft_to_target, dtype=torch.int64)
        self.d2t.copy_(ids - torch.arange(len(ids)))
        self.t2d.zero_()
        self.t2d[ids] = True

    def draft_to_target_ids(self):
        return self.d2t + torch.arange(len(self.d2t), device=self.d2t.device)

    def rope(self, length, device):
        return rope_cos_sin(torch.arange(length, device=device), self.cfg["head_dim"], self.cfg["rope_theta"], device)

    def forward(self, embeds, features):
        """embeds [B, L, h] (embedding of token t+1 at position t), features [B, L, 3h] -> draft logits."""
        cos, sin = self.rope(embeds.shape[1], embeds.device)
        x = self.midlayer(embeds, self.fc(features), cos, sin)
        return self.lm_head(self.norm(x))

    def retrieval_qk(self, embeds, features):
        """The retrieval head's view (paper §1.3): roped q and k, nothing after attention."""
        cos, sin = self.rope(embeds.shape[1], embeds.device)
        mid = self.midlayer
        return mid.self_attn.qk(mid.attention_input(embeds, self.fc(features)), cos, sin)


def draft_config(target_config, draft_vocab_size, aux_layer_ids):
    """EAGLE-3's config.json for a draft of a Llama target: the target's shapes, one layer."""
    t = target_config
    heads = t.num_attention_heads
    return {
        "architectures": ["LlamaForCausalLMEagle3"],
        "model_type": "llama",
        "hidden_size": t.hidden_size,
        "intermediate_size": t.intermediate_size,
        "num_hidden_layers": 1,
        "num_attention_heads": heads,
        "num_key_value_heads": t.num_key_value_heads,
        "head_dim": getattr(t, "head_dim", None) or t.hidden_size // heads,
        "hidden_act": "silu",
        "rms_norm_eps": t.rms_norm_eps,
        "rope_theta": float(t.rope_parameters["rope_theta"] if getattr(t, "rope_parameters", None) else t.rope_theta),
        "max_position_embeddings": t.max_position_embeddings,
        "vocab_size": t.vocab_size,
        "draft_vocab_size": draft_vocab_size,
        "tie_word_embeddings": False,
        "initializer_range": 0.02,
        "torch_dtype": "bfloat16",
        "bos_token_id": t.bos_token_id,
        "eos_token_id": t.eos_token_id,
        # vLLM's convention: id j is the residual stream entering layer j (the output of layer j-1).
        "eagle_aux_hidden_state_layer_ids": list(aux_layer_ids),
    }


def default_aux_layer_ids(num_layers):
    """EAGLE-3's low/middle/high choice as vLLM applies it to a target without pinned ids."""
    return [2, num_layers // 2, num_layers - 3]


def save_draft(model, out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu()
        tensors[name] = t if name in ("d2t", "t2d") else t.to(torch.bfloat16)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(model.cfg, indent=2) + "\n")


def load_draft(path, device="cpu"):
    path = Path(path)
    cfg = json.loads((path / "config.json").read_text())
    model = Eagle3Draft(cfg)
    state = load_file(str(path / "model.safetensors"))
    model.load_state_dict({k: (v if k in ("d2t", "t2d") else v.float()) for k, v in state.items()})
    return model.to(device)


def parameter_bytes(model, bytes_per_param=2):
    return sum(p.numel() for p in model.parameters()) * bytes_per_param + sum(
        b.numel() * b.element_size() for b in model.buffers())


def causal_softmax_rows(q, k, query_positions):
    """softmax(q kᵀ/√d) of the given query rows over keys 0..pos (GQA: k repeated per group).
    q [B, heads, Q, d] (rows at query_positions), k [B, kv_heads, L, d] -> [B, heads, Q, L] fp32."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    scores = torch.einsum("bhqd,bhkd->bhqk", q.float(), k.float()) / math.sqrt(q.shape[-1])
    keys = torch.arange(k.shape[2], device=q.device)
    mask = keys[None, :] > torch.as_tensor(query_positions, device=q.device)[:, None]
    return scores.masked_fill(mask[None, None], float("-inf")).softmax(-1)
