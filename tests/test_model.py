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


def left_padded(cfg, lens, seed, pad=0):
    """Random prompts of the given lengths, left-padded with ``pad`` into one batch, their
    attention mask, and each prompt alone."""
    gen = torch.Generator().manual_seed(seed)
    rows = [torch.randint(0, cfg.vocab_size, (n,), generator=gen) for n in lens]
    width = max(lens)
    prompt = torch.full((len(lens), width), pad, dtype=torch.long)
    mask = torch.zeros(len(lens), width, dtype=torch.long)
    for i, row in enumerate(rows):
        prompt[i, width - len(row) :] = row
        mask[i, width - len(row) :] = 1
    return prompt, mask, rows


RAGGED = ["pythia-like", "rotary-full-tanh", "sequential-residual"]  # rotary 0.25 / 1.0, residuals


@pytest.mark.parametrize("name", RAGGED)
def test_ragged_batch_generation_matches_transformers_and_each_row_alone(name):
    cfg = CONFIGS[name]
    assert {CONFIGS[n].rotary_pct for n in RAGGED} == {0.25, 1.0}
    assert {CONFIGS[n].parallel_residual for n in RAGGED} == {True, False}
    model = build_model(cfg, seed=3).eval()
    hf = hf_twin(model)
    lens = [7, 3, 1, 5]  # one row unpadded, one a single token
    prompt, mask, rows = left_padded(cfg, lens, seed=4)
    ours = model.generate(prompt, max_new_tokens=12, attention_mask=mask)
    theirs = hf.generate(
        prompt,
        attention_mask=mask,
        max_new_tokens=12,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
    )
    assert torch.equal(ours, theirs)
    assert torch.equal(ours[:, :7], prompt)  # the padding comes back as given
    for i, row in enumerate(rows):
        assert torch.equal(ours[i, 7:], model.generate(row, max_new_tokens=12)[0, len(row) :])
    # Other padding ids change nothing: nothing attends to them.
    noisy = torch.where(mask.bool(), prompt, torch.randint_like(prompt, cfg.vocab_size))
    again = model.generate(noisy, max_new_tokens=12, attention_mask=mask)
    assert torch.equal(again[:, 7:], ours[:, 7:])
    # forward with the mask: the tokens' logits are transformers' and each row's alone.
    with torch.no_grad():
        logits = model(prompt, attention_mask=mask)
        want = hf(prompt, attention_mask=mask).logits
        keep = mask.bool()
        assert rel_err(logits[keep], want[keep]) < 1e-5
        for i, row in enumerate(rows):
            assert rel_err(logits[i, 7 - len(row) :], model(row[None])[0]) < 1e-5


def test_ragged_batch_generation_stops_rows_at_their_eos_like_transformers():
    cfg = tiny_config()
    model = build_model(cfg, seed=3).eval()
    hf = hf_twin(model)
    prompt, mask, rows = left_padded(cfg, [7, 3, 1, 5], seed=4)
    free = model.generate(prompt, max_new_tokens=12, attention_mask=mask)[:, 7:]
    # Without end ids, rows 0 and 1 first emit 278 at new tokens 4 and 6, rows 2 and 3 first
    # emit 161 at new tokens 4 and 7: with both as end ids every row stops, at different steps.
    eos = [278, 161]
    ends = [int(torch.isin(r, torch.tensor(eos)).nonzero()[0]) for r in free]
    assert ends == [3, 5, 3, 6]
    ours = model.generate(prompt, max_new_tokens=12, eos_token_id=eos, attention_mask=mask)
    theirs = hf.generate(
        prompt, attention_mask=mask, max_new_tokens=12, do_sample=False, eos_token_id=eos
    )
    assert torch.equal(ours, theirs)
    assert ours.shape[1] == 7 + 7  # all rows done after the 7th new token
    for i, (row, end) in enumerate(zip(rows, ends, strict=True)):
        assert torch.equal(ours[i, 7 : 7 + end + 1], free[i, : end + 1])
        assert ours[i, 7 + end + 1 :].eq(eos[0]).all()  # finished rows repeat the first end id
        alone = model.generate(row, max_new_tokens=12, eos_token_id=eos)
        assert torch.equal(alone[0, len(row) :], free[i, : end + 1])


def test_a_mask_of_all_ones_takes_the_unmasked_path(monkeypatch):
    model = build_model(tiny_config(), seed=3).eval()
    prompt = torch.randint(0, 512, (3, 32), generator=torch.Generator().manual_seed(4))
    want = model.generate(prompt, max_new_tokens=8)

    def masked(*args):
        raise AssertionError("an equal-length batch went through the padded path")

    monkeypatch.setattr("pythia_train.model._padded_batch", masked)
    for mask in (torch.ones_like(prompt), np.ones((3, 32), dtype=bool), [[1] * 32] * 3):
        assert torch.equal(model.generate(prompt, max_new_tokens=8, attention_mask=mask), want)
    # A single row's mask may be (len,), as its prompt.
    assert torch.equal(model.generate(prompt[0], 8, attention_mask=[1] * 32), want[:1])


def test_ragged_generation_rejects_bad_masks():
    model = build_model(tiny_config(max_seq_len=16), seed=0).eval()
    prompt = torch.tensor([[0, 0, 5, 6], [1, 2, 3, 4]])
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 3\) but the prompt "):
        model.generate(prompt, 2, attention_mask=torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(4,\) but the prompt \(2, 4\)"):
        model.generate(prompt, 2, attention_mask=[0, 0, 1, 1])
    for bad, shown in ((2, "2"), (-1, "-1"), (0.5, "0.5")):
        mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, bad]])
        with pytest.raises(ValueError, match=f"must hold 1 \\(token\\) or 0 .*, got {shown}"):
            model.generate(prompt, 2, attention_mask=mask)
    for mask in ([[1, 1, 0, 0], [1, 1, 1, 1]], [[0, 0, 1, 1], [1, 0, 1, 1]]):
        with pytest.raises(ValueError, match="row [01] has padding after a token: .*left-pad"):
            model.generate(prompt, 2, attention_mask=mask)
    with pytest.raises(ValueError, match="row 1 is all padding: every prompt needs"):
        model.generate(prompt, 2, attention_mask=[[0, 0, 1, 1], [0, 0, 0, 0]])
    # Padding takes no position: the longest row's tokens (2 + 1 = 3 here) must fit the context.
    wide = torch.cat((torch.zeros(2, 12, dtype=torch.long), prompt), dim=1)
    mask = torch.tensor([[0] * 14 + [1, 1], [0] * 13 + [1, 1, 1]])
    assert model.generate(wide, 13, attention_mask=mask).shape == (2, 16 + 13)
    with pytest.raises(ValueError, match="prompt 3 \\+ 14 new tokens exceed the context of 16"):
        model.generate(wide, 14, attention_mask=mask)
    # The padding's ids are still ids: outside the vocabulary, they are named.
    with pytest.raises(ValueError, match="token id 600, outside"):
        model.generate([[600, 1], [2, 3]], 1, attention_mask=[[0, 1], [1, 1]])


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
