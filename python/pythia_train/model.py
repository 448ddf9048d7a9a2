"""The GPT-NeoX architecture (Pythia), with greedy generation through a KV cache.

Module names equal Hugging Face's ``GPTNeoXForCausalLM`` so that state dicts map one to one:
``gpt_neox.embed_in``, ``gpt_neox.layers.{i}.attention.query_key_value``, ..., ``embed_out``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from pythia_train.configs import ModelConfig

__all__ = ["GPTNeoX", "GPTNeoXModel", "KVCache", "init_pythia_weights", "build_model", "lm_loss"]


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over every position (Pythia masks nothing), in fp32."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryEmbedding(nn.Module):
    """cos/sin tables of the half-split rotary convention, in float32 as transformers computes
    them. GPT-NeoX v1.0 computed them from its ``inv_freq`` buffer, which DeepSpeed's
    ``module.half()`` made fp16 in Pythia's fp16 runs (angles off by up to about 0.8 rad at
    position 2047); float32 is what Pythia's Hugging Face checkpoints are evaluated with."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim = cfg.rotary_dim
        inv_freq = 1.0 / (cfg.rotary_base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables for ``positions`` of any shape: (seq,) gives (seq, rotary_dim), the
        per-row positions of a padded batch, (batch, seq), give (batch, seq, rotary_dim)."""
        freqs = positions[..., None].float() * self.inv_freq.float()
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    rot = cos.shape[-1]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    x_rot = x_rot * cos + rotate_half(x_rot) * sin
    return torch.cat((x_rot, x_pass), dim=-1)


class KVCache:
    """Preallocated keys and values of every layer, for incremental decoding."""

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, device, dtype):
        shape = (cfg.num_layers, batch, cfg.num_heads, max_len, cfg.head_dim)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0
        self.max_len = max_len

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        start, stop = self.length, self.length + k.shape[2]
        if stop > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions, asked for {stop}")
        self.k[layer, :, :, start:stop] = k
        self.v[layer, :, :, start:stop] = v
        return self.k[layer, :, :, :stop], self.v[layer, :, :, :stop]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.cfg = cfg
        self.layer = layer
        self.query_key_value = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x, cos, sin, cache: KVCache | None = None, attn_mask=None) -> torch.Tensor:
        B, T, _ = x.shape
        H, hd = self.cfg.num_heads, self.cfg.head_dim
        # GPT-NeoX groups the fused rows per head: [q_h, k_h, v_h] for each head h.
        qkv = self.query_key_value(x).view(B, T, H, 3 * hd).transpose(1, 2)
        q, k, v = qkv.split(hd, dim=-1)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.update(self.layer, k, v)
        if attn_mask is not None:
            # A padded batch: the mask is causal and hides every row's padding keys.
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        elif past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif T == 1:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            # A chunk after a prefix: query t sees keys up to past + t.
            qpos = torch.arange(past, past + T, device=x.device)[:, None]
            mask = torch.arange(past + T, device=x.device)[None, :] <= qpos
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, H * hd)
        return self.dense(y)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.dense_4h_to_h = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.approximate = cfg.gelu_approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(x), approximate=self.approximate))


class Layer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.parallel_residual = cfg.parallel_residual
        self.input_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_eps)
        self.post_attention_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_eps)
        self.attention = Attention(cfg, layer)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, cache: KVCache | None = None, attn_mask=None) -> torch.Tensor:
        a = self.attention(self.input_layernorm(x), cos, sin, cache, attn_mask)
        if self.parallel_residual:
            return x + a + self.mlp(self.post_attention_layernorm(x))
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x))


class GPTNeoXModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_in = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Layer(cfg, i) for i in range(cfg.num_layers))
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layernorm_eps)
        self.rotary_emb = RotaryEmbedding(cfg)


class GPTNeoX(nn.Module):
    """``GPTNeoXForCausalLM``: ``model(tokens)`` gives logits of shape (batch, seq, vocab)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.gpt_neox = GPTNeoXModel(cfg)
        self.embed_out = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.activation_checkpointing = False

    def forward(
        self,
        tokens: torch.Tensor,
        cache: KVCache | None = None,
        targets: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits, (batch, seq, vocab); or, given ``targets``, the mean cross-entropy of
        ``logits[:, t]`` against ``targets[:, t]`` (inside a compiled region).

        ``targets`` are already shifted: for a row ``r`` of seq + 1 ids, ``tokens = r[:-1]`` and
        ``targets = r[1:]`` (transformers' ``labels`` are the unshifted ``tokens``; passing
        them here trains the model to copy its input). -100 is ignored, as in transformers.
        ``cache``: a ``KVCache`` the new keys and values go into, after its ``length`` ones.
        ``attention_mask``: for a padded batch, (batch, cache length + seq), 1 for a token and
        0 for padding (what ``generate`` passes, as transformers takes it): no token attends
        to padding, and positions count only tokens (a row's logits are those of its tokens
        alone; those at padding are meaningless). None: every id is a token."""
        # A (seq,) row failed with "tuple index out of range", (batch, 1, seq) with "too many
        # values to unpack": say what shape is wanted.
        if tokens.ndim != 2:
            raise ValueError(
                f"tokens must have shape (batch, seq), got {tuple(tokens.shape)}; add a batch "
                f"dimension with tokens[None]"
                if tokens.ndim == 1
                else f"tokens must have shape (batch, seq), got {tuple(tokens.shape)}"
            )
        m = self.gpt_neox
        T = tokens.shape[1]
        past = 0 if cache is None else cache.length
        attn_mask = None
        if attention_mask is None:
            positions = torch.arange(past, past + T, device=tokens.device)
            cos, sin = m.rotary_emb(positions)
        else:
            cos, sin, attn_mask = _padded_batch(m.rotary_emb, attention_mask, tokens, past)
        x = m.embed_in(tokens)
        for layer in m.layers:
            if self.activation_checkpointing and self.training and cache is None:
                x = checkpoint(layer, x, cos, sin, None, attn_mask, use_reentrant=False)
            else:
                x = layer(x, cos, sin, cache, attn_mask)
        if cache is not None:
            cache.length += T
        logits = self.embed_out(m.final_layer_norm(x))
        if targets is None:
            return logits
        return lm_loss(logits, targets)

    @torch.no_grad()
    def generate(
        self,
        prompt,
        max_new_tokens: int,
        eos_token_id: int | list[int] | None = None,
        attention_mask=None,
    ) -> torch.Tensor:
        """Greedy decoding with a KV cache; returns prompt and continuation, (batch, len).
        ``prompt``: token ids, (len,) or (batch, len), as a tensor, a numpy array (such as
        ``Tokenizer.encode`` returns) or a list. ``eos_token_id``: an id, or several (as
        transformers takes them), that end a row; finished rows repeat the first.

        Prompts of different lengths go in one batch left-padded, with ``attention_mask`` of
        the prompt's shape: 1 for a token, 0 for padding (as transformers' decoder-only
        ``generate`` takes them; the padding ids must be in the vocabulary, and come back as
        given). Each row then generates what it would alone: positions count its tokens only
        and nothing attends to padding. Without a mask (or with one of all 1s), every id is a
        token and the batch takes the unmasked (causal SDPA) path."""
        vocab = self.cfg.vocab_size
        eos = _eos_ids(eos_token_id)
        if not isinstance(prompt, torch.Tensor):
            ids = np.asarray(prompt)
            # As int64, 1.5 was token 1 and uint64 ids past int64 turned negative.
            if ids.size and ids.dtype.kind not in "iu":
                raise TypeError(f"token ids must be integers, not {ids.dtype}")
            if ids.size and ids.dtype.kind == "u" and int(ids.max()) >= vocab:
                raise ValueError(
                    f"the prompt has token id {int(ids.max())}, outside the model's vocabulary "
                    f"of {vocab} (ids 0..{vocab - 1})"
                )
            # numpy's uint32 ids (tokenizer output) have no torch embedding: as int64.
            prompt = torch.from_numpy(ids.astype(np.int64)).to(next(self.parameters()).device)
        elif prompt.is_floating_point() or prompt.is_complex() or prompt.dtype == torch.bool:
            raise TypeError(f"token ids must be integers, not {prompt.dtype}")
        if prompt.ndim == 1:
            prompt = prompt[None]
        if prompt.ndim != 2:
            # A scalar failed with "tuple index out of range", (batch, 1, len) deep in attention.
            raise ValueError(
                f"the prompt must be (len,) or (batch, len), got {tuple(prompt.shape)}"
            )
        # embedding() takes only int32/int64: a uint8 or int16 tensor failed there, while the
        # same ids as a numpy array were accepted.
        prompt = prompt.long()
        # Checked here: otherwise they surface as an opaque KV-cache size error or IndexError.
        if max_new_tokens < 0:
            raise ValueError("max_new_tokens must be >= 0")
        if prompt.shape[1] == 0:
            raise ValueError("the prompt needs at least one token to condition on")
        if attention_mask is not None:
            attention_mask = _prompt_mask(attention_mask, prompt)
        bad = prompt[(prompt < 0) | (prompt >= vocab)]
        if bad.numel():
            raise ValueError(
                f"the prompt has token id {int(bad[0])}, outside the model's vocabulary of "
                f"{vocab} (ids 0..{vocab - 1})"
            )
        total = prompt.shape[1] + max_new_tokens
        # Padding takes no position: the longest row's tokens are what must fit the context.
        longest = prompt.shape[1] if attention_mask is None else int(attention_mask.sum(1).max())
        if longest + max_new_tokens > self.cfg.max_seq_len:
            raise ValueError(
                f"prompt {longest} + {max_new_tokens} new tokens exceed the "
                f"context of {self.cfg.max_seq_len}"
            )
        param = next(self.parameters())
        cache = KVCache(self.cfg, prompt.shape[0], total, param.device, param.dtype)
        out = prompt
        if attention_mask is not None:
            # The generated tokens are tokens: the mask of every step is a prefix of this one.
            keys = torch.ones(prompt.shape[0], total, dtype=torch.bool, device=prompt.device)
            keys[:, : prompt.shape[1]] = attention_mask
        logits = self(prompt, cache, attention_mask=attention_mask)
        done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
        stops = None if eos is None else torch.tensor(eos, device=prompt.device)
        for _ in range(max_new_tokens):
            nxt = logits[:, -1].argmax(dim=-1)
            if stops is not None:
                # A finished row only pads while others go on; like transformers, whose pad id
                # defaults to the (first) EOS id, it repeats EOS.
                nxt = nxt.masked_fill(done, eos[0])
            out = torch.cat((out, nxt[:, None]), dim=1)
            if stops is not None:
                done |= torch.isin(nxt, stops)
                if bool(done.all()):
                    break
            if out.shape[1] == total:
                break
            mask = None if attention_mask is None else keys[:, : cache.length + 1]
            logits = self(nxt[:, None], cache, attention_mask=mask)
        return out

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _prompt_mask(attention_mask, prompt: torch.Tensor) -> torch.Tensor | None:
    """``generate``'s attention mask, checked, as bool on the prompt's device; None when it
    masks nothing (the unmasked path then gives the same tokens, faster)."""
    mask = attention_mask
    if not isinstance(mask, torch.Tensor):
        mask = torch.as_tensor(np.asarray(mask))
    given = tuple(mask.shape)
    if mask.ndim == 1:
        mask = mask[None]
    if tuple(mask.shape) != tuple(prompt.shape):
        raise ValueError(
            f"attention_mask has shape {given} but the prompt {tuple(prompt.shape)}: it needs "
            f"one 1 (token) or 0 (padding) per prompt id"
        )
    mask = mask.to(prompt.device)
    bad = mask[(mask != 0) & (mask != 1)]
    if bad.numel():
        raise ValueError(
            f"attention_mask must hold 1 (token) or 0 (padding) only, got {bad[0].item()}"
        )
    mask = mask != 0
    empty = (~mask.any(dim=1)).nonzero()
    if empty.numel():
        raise ValueError(
            f"attention_mask row {int(empty[0])} is all padding: every prompt needs at least "
            f"one token to condition on"
        )
    # New tokens go after the last column, so padding after a row's tokens would sit between
    # its prompt and its continuation.
    right = (mask[:, :-1] & ~mask[:, 1:]).any(dim=1).nonzero()
    if right.numel():
        raise ValueError(
            f"attention_mask row {int(right[0])} has padding after a token: generate takes "
            f"left-padded prompts (padding first, as a tokenizer with padding_side='left' "
            f"gives them)"
        )
    return None if bool(mask.all()) else mask


def _padded_batch(rotary_emb, attention_mask, tokens, past):
    """Rotary tables and the attention mask of a padded batch: positions are
    ``cumsum(mask) - 1`` as in transformers (a row's first token is at 0 however much
    padding precedes it), and query t sees the keys up to past + t that are tokens."""
    B, T = tokens.shape
    if tuple(attention_mask.shape) != (B, past + T):
        raise ValueError(
            f"attention_mask must have shape (batch, cache length + seq) = {(B, past + T)}, "
            f"got {tuple(attention_mask.shape)}"
        )
    keep = attention_mask.to(tokens.device) != 0
    positions = (keep.long().cumsum(-1) - 1).clamp(min=0)[:, past:]
    cos, sin = rotary_emb(positions)
    qpos = torch.arange(past, past + T, device=keep.device)[:, None]
    kpos = torch.arange(past + T, device=keep.device)[None, :]
    # A padding query sees itself too: one whose keys are all masked gives NaN on some SDPA
    # backends and torch versions, which would reach the tokens' outputs in the next layer
    # through the padding's values (0 * NaN).
    mask = ((kpos <= qpos) & keep[:, None, :]) | (kpos == qpos)
    # (batch, seq, rotary_dim) tables and the mask broadcast over the heads.
    return cos[:, None], sin[:, None], mask[:, None]


def _eos_ids(eos_token_id) -> list[int] | None:
    """``generate``'s end ids as a list: one id or several (a list made masked_fill fail)."""
    if eos_token_id is None:
        return None
    ids = [eos_token_id] if not isinstance(eos_token_id, (list, tuple)) else list(eos_token_id)
    if not ids or any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) for i in ids):
        raise TypeError(f"eos_token_id must be an id or a list of ids, got {eos_token_id!r}")
    return [int(i) for i in ids]


def init_pythia_weights(model: GPTNeoX, generator: torch.Generator | None = None) -> GPTNeoX:
    """Pythia's initialisation.

    14m..2.8b: "small_init" N(0, sqrt(2 / 5d)) for QKV, MLP-in, both embeddings; "wang_init"
    N(0, 2 / (L sqrt(d))) for the attention output and MLP-out. 6.9b/12b: N(0, 0.02) and
    N(0, 0.02 / sqrt(2L)). Biases 0, LayerNorm weight 1 / bias 0.
    """
    cfg = model.cfg
    d, L = cfg.hidden_size, cfg.num_layers
    std_in = math.sqrt(2 / (5 * d)) if cfg.init_method == "small_init" else cfg.init_std
    if cfg.output_layer_init_method == "wang_init":
        std_out = 2 / (L * math.sqrt(d))
    else:
        std_out = cfg.init_std / math.sqrt(2 * L)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif "layernorm" in name or "layer_norm" in name:
                p.fill_(1.0)
            elif name.endswith(("attention.dense.weight", "dense_4h_to_h.weight")):
                p.normal_(0.0, std_out, generator=generator)
            else:
                p.normal_(0.0, std_in, generator=generator)
    return model


def build_model(cfg: ModelConfig, seed: int | None = None, device=None) -> GPTNeoX:
    """A freshly initialised model; the same seed gives the same weights on every rank."""
    with torch.device(device or "cpu"):
        model = GPTNeoX(cfg)
    gen = None
    if seed is not None:
        gen = torch.Generator(device=model.embed_out.weight.device).manual_seed(seed)
    return init_pythia_weights(model, gen)
