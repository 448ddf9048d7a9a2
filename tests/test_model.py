"""The GPT-NeoX module against transformers' GPTNeoXForCausalLM (the oracle), init, configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from train_fixtures import tiny_config

from pythia_train.configs import PYTHIA_MODELS, model_config, pythia_checkpoint_steps
from pythia_train.hf import config_to_hf
from pythia_train.model import GPTNeoX, KVCache, build_model

transformers = pytest.importorskip("transformers")


def hf_twin(model: GPTNeoX):
    """transformers' model of the same config holding the same weights."""
    conf = transformers.GPTNeoXConfig(**config_to_hf(model.cfg))
    hf = transformers.GPTNeoXForCausalLM(conf).eval()
    state = model.state_dict()
    if "lm_head.weight" in hf.state_dict():  # transformers 5 renames embed_out when loading
        state["lm_head.weight"] = state.pop("embed_out.weight")
    missing, unexpected = hf.load_state_dict(state, strict=False)
    # transformers keeps no persistent buffers here; every parameter must be matched.
    assert not unexpected and not [k for k in missing if "inv_freq" not in k]
    return hf


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


CONFIGS = {
    "pythia-like": tiny_config(),
    "rotary-full-tanh": tiny_config(rotary_pct=1.0, gelu_approximate="tanh", num_heads=2),
    "sequential-residual": tiny_config(
        parallel_residual=False, num_layers=3, hidden_size=48, num_heads=3, rotary_base=500.0
    ),
    "6.9b-init": tiny_config(init_method="normal", output_layer_init_method="scaled_normal"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_equal_transformers(name):
    cfg = CONFIGS[name]
    model = build_model(cfg, seed=1).eval()
    hf = hf_twin(model)
    tokens = torch.randint(0, cfg.vocab_size, (3, 37), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, theirs = model(tokens), hf(tokens).logits
    assert ours.shape == (3, 37, cfg.vocab_size)
    assert rel_err(ours, theirs) < 1e-5


def test_greedy_generation_matches_transformers_and_uncached_argmax():
    cfg = tiny_config()
    model = build_model(cfg, seed=3).eval()
    hf = hf_twin(model)
    prompt = torch.randint(0, cfg.vocab_size, (2, 7), generator=torch.Generator().manual_seed(4))
    ours = model.generate(prompt, max_new_tokens=12)
    theirs = hf.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=12,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
    )
    assert torch.equal(ours, theirs)
    # Without the cache: argmax of a full forward pass each time.
    seq = prompt
    with torch.no_grad():
        for _ in range(12):
            seq = torch.cat((seq, model(seq)[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(ours, seq)
    # Ids as the tokenizer gives them (numpy uint32) or as a list: a TypeError from embedding().
    ids = prompt[0].numpy().astype(np.uint32)
    assert torch.equal(model.generate(ids, max_new_tokens=12), ours[:1])
    assert torch.equal(model.generate(ids.tolist(), max_new_tokens=12), ours[:1])


def test_greedy_generation_pads_finished_rows_with_eos_like_transformers():
    cfg = tiny_config()
    model = build_model(cfg, seed=3).eval()
    hf = hf_twin(model)
    prompt = torch.randint(0, cfg.vocab_size, (2, 7), generator=torch.Generator().manual_seed(4))
    free = model.generate(prompt, max_new_tokens=12)[:, 7:]
    # Without EOS, row 0 greedily emits 147 at its 6th new token and row 1 never does.
    eos = 147
    assert free[0, 5] == eos and eos not in free[0, :5] and eos not in free[1]
    ours = model.generate(prompt, max_new_tokens=12, eos_token_id=eos)
    # No pad_token_id: transformers pads finished rows with the EOS id.
    theirs = hf.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=12,
        do_sample=False,
        eos_token_id=eos,
    )
    assert torch.equal(ours, theirs)
    assert ours[0, 7 + 5 :].eq(eos).all() and torch.equal(ours[1, 7:], free[1])
    # Once every row has finished, generation stops early.
    alone = model.generate(prompt[:1], max_new_tokens=12, eos_token_id=eos)
    assert torch.equal(alone, ours[:1, : 7 + 6])
    # Several end ids, as transformers takes them (a list failed in masked_fill): each row stops
    # at the first of them it emits, and pads with the first id of the list.
    other = int(free[1, 3])
    assert other != eos and other not in free[1, :3] and other not in free[0, :5]
    ours = model.generate(prompt, max_new_tokens=12, eos_token_id=[eos, other])
    theirs = hf.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=12,
        do_sample=False,
        eos_token_id=[eos, other],
    )
    assert torch.equal(ours, theirs)
    assert ours[1, 7 + 3] == other and ours[1, 7 + 4 :].eq(eos).all()
    with pytest.raises(TypeError, match="eos_token_id must be an id or a list of ids"):
        model.generate(prompt, max_new_tokens=2, eos_token_id="<|endoftext|>")


def test_cached_chunks_equal_one_forward():
    cfg = tiny_config()
    model = build_model(cfg, seed=5).eval()
    tokens = torch.randint(0, cfg.vocab_size, (2, 20), generator=torch.Generator().manual_seed(6))
    cache = KVCache(cfg, 2, 20, "cpu", torch.float32)
    with torch.no_grad():
        full = model(tokens)
        parts = [
            model(tokens[:, :8], cache),
            model(tokens[:, 8:13], cache),
            model(tokens[:, 13:], cache),
        ]
    assert torch.allclose(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


def test_generation_rejects_overlong_requests():
    model = build_model(tiny_config(max_seq_len=16), seed=0)
    with pytest.raises(ValueError, match="exceed the context of 16"):
        model.generate(torch.zeros(1, 10, dtype=torch.long), max_new_tokens=7)


def test_generation_rejects_negative_max_new_tokens_and_empty_prompts():
    model = build_model(tiny_config(), seed=0)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
        model.generate(torch.zeros(1, 5, dtype=torch.long), max_new_tokens=-1)
    with pytest.raises(ValueError, match="at least one token"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), max_new_tokens=3)


def test_wrong_shapes_are_named_and_small_integer_prompts_work():
    # A (seq,) row in forward failed with "tuple index out of range", a 3-D input with "too many
    # values to unpack", a scalar prompt with "tuple index out of range"; a uint8 tensor prompt
    # failed in embedding() though the same ids as numpy were accepted.
    model = build_model(tiny_config(), seed=0)
    with pytest.raises(ValueError, match=r"shape \(batch, seq\), got \(3,\); add a batch"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"shape \(batch, seq\), got \(1, 1, 3\)"):
        model(torch.tensor([[[1, 2, 3]]]))
    for prompt in (torch.tensor(5), 5, torch.tensor([[[1, 2, 3]]])):
        with pytest.raises(ValueError, match=r"the prompt must be \(len,\) or \(batch, len\)"):
            model.generate(prompt, 1)
    ids = torch.tensor([[1, 2, 3]])
    want = model.generate(ids, 2)
    for dtype in (torch.uint8, torch.int16, torch.int32):
        assert torch.equal(model.generate(ids.to(dtype), 2), want)


@pytest.mark.parametrize("bad", [512, 60000, -1])
def test_generation_rejects_ids_outside_the_vocabulary(bad):
    # They failed deep in the embedding with a bare "IndexError: index out of range in self".
    model = build_model(tiny_config(), seed=0)
    with pytest.raises(ValueError, match=f"token id {bad}, outside the model's vocabulary of 512"):
        model.generate([1, bad], 2)
    with pytest.raises(ValueError, match=f"token id {bad},"):
        model.generate(torch.tensor([[1, 2], [3, bad]]), 2)


def test_generation_rejects_ids_that_are_not_integers():
    # 1.5 was read as token 1, a float or bool tensor failed in the embedding, and a uint64 id
    # past int64 was named as a negative number.
    model = build_model(tiny_config(), seed=0)
    for prompt, dtype in (([1.5, 2.0], "float64"), ([True, False], "bool")):
        with pytest.raises(TypeError, match=f"token ids must be integers, not {dtype}"):
            model.generate(prompt, 1)
    for tensor in (torch.tensor([[1.0, 2.0]]), torch.tensor([[True, False]])):
        with pytest.raises(TypeError, match="token ids must be integers, not torch."):
            model.generate(tensor, 1)
    huge = np.array([1, 2**63 + 5], dtype=np.uint64)
    with pytest.raises(ValueError, match=f"token id {2**63 + 5}, outside the model's vocab"):
        model.generate(huge, 1)
    ids = np.array([1, 2], dtype=np.uint32)  # what Tokenizer.encode gives
    assert model.generate(ids, 1)[0, :2].tolist() == [1, 2]


def _std(model, suffix):
    ws = [p for n, p in model.named_parameters() if n.endswith(suffix)]
    return float(torch.cat([w.detach().flatten() for w in ws]).std())


@pytest.mark.parametrize("big", [False, True])
def test_pythia_init(big):
    kw = {"init_method": "normal", "output_layer_init_method": "scaled_normal"} if big else {}
    cfg = tiny_config(hidden_size=256, num_layers=4, vocab_size=1024, **kw)
    model = build_model(cfg, seed=0)
    d, L = 256, 4
    std_in = 0.02 if big else math.sqrt(2 / (5 * d))
    std_out = 0.02 / math.sqrt(2 * L) if big else 2 / (L * math.sqrt(d))
    for suffix in (
        "query_key_value.weight",
        "dense_h_to_4h.weight",
        "embed_in.weight",
        "embed_out.weight",
    ):
        assert _std(model, suffix) == pytest.approx(std_in, rel=0.03), suffix
    for suffix in ("attention.dense.weight", "dense_4h_to_h.weight"):
        assert _std(model, suffix) == pytest.approx(std_out, rel=0.03), suffix
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert not p.any(), name
        elif "layernorm" in name or "layer_norm" in name:
            assert bool((p == 1).all()), name
    # The same seed gives the same weights (what every data-parallel rank relies on).
    again = build_model(cfg, seed=0)
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(), strict=True)
    )


def test_named_configs_match_pythia_table():
    table = {  # non-embedding parameters, from the Pythia paper's table
        "pythia-70m": 18_915_328,
        "pythia-160m": 85_056_000,
        "pythia-410m": 302_311_424,
        "pythia-1b": 805_736_448,
        "pythia-1.4b": 1_208_602_624,
        "pythia-2.8b": 2_517_652_480,
        "pythia-6.9b": 6_444_163_072,
        "pythia-12b": 11_327_027_200,
    }
    for name, n in table.items():
        assert PYTHIA_MODELS[name].non_embedding_params() == n, name
    assert model_config("160m-deduped") == PYTHIA_MODELS["pythia-160m"]
    assert model_config("12b").vocab_size == 50688
    assert model_config("6.9b").init_method == "normal"
    with pytest.raises(ValueError, match="unknown model"):
        model_config("pythia-7b")
    with pytest.raises(ValueError, match="not divisible"):
        tiny_config(num_heads=5)


def test_parameter_count_of_a_built_model_matches_its_config():
    cfg = tiny_config()
    model = build_model(cfg, seed=0)
    embeddings = 2 * cfg.vocab_size * cfg.hidden_size
    assert model.num_params() == cfg.non_embedding_params() + embeddings


def test_pythia_checkpoint_schedule_has_154_steps():
    steps = pythia_checkpoint_steps(143_000)
    assert len(steps) == 154
    assert steps[:12] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]
    assert steps[-1] == 143_000 and steps[-2] == 142_000
