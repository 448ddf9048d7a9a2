"""Hugging Face ``GPTNeoXForCausalLM`` checkpoint directories: load and save.

A directory holds ``config.json`` and the weights as ``model.safetensors`` or
``pytorch_model.bin``, or as shards listed in ``model.safetensors.index.json`` /
``pytorch_model.bin.index.json``. Our parameter names are HF's, so no renaming is needed;
legacy buffers of older checkpoints (``attention.bias``, ``attention.masked_bias``,
``attention.rotary_emb.inv_freq``) are ignored.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch

from pythia_train.configs import ModelConfig
from pythia_train.model import GPTNeoX

__all__ = [
    "CheckpointError",
    "config_to_hf",
    "config_from_hf",
    "load_hf",
    "load_hf_state_dict",
    "save_hf",
]

SAFE, SAFE_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
_LEGACY_SUFFIXES = ("attention.bias", "attention.masked_bias", "attention.rotary_emb.inv_freq")
_GELU = {"gelu": "none", "gelu_new": "tanh", "gelu_fast": "tanh", "gelu_pytorch_tanh": "tanh"}


class CheckpointError(ValueError):
    """A checkpoint directory that is missing, malformed or of another architecture."""


def config_to_hf(cfg: ModelConfig, dtype: torch.dtype = torch.float32, eod_id: int = 0) -> dict:
    """config.json's fields; ``eod_id``: the tokenizer's end-of-document id (0 in GPT-NeoX's),
    which transformers' generate stops at (bos and eos, as in Pythia's repositories)."""
    act = "gelu" if cfg.gelu_approximate == "none" else "gelu_new"
    return {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "hidden_act": act,
        "rotary_pct": cfg.rotary_pct,
        "rotary_emb_base": cfg.rotary_base,
        "max_position_embeddings": cfg.max_seq_len,
        "layer_norm_eps": cfg.layernorm_eps,
        "use_parallel_residual": cfg.parallel_residual,
        "tie_word_embeddings": False,
        "attention_bias": True,
        "bos_token_id": eod_id,
        "eos_token_id": eod_id,
        "initializer_range": cfg.init_std,
        "use_cache": True,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def config_from_hf(conf: dict, where: str = "config.json") -> ModelConfig:
    if not isinstance(conf, dict):
        raise CheckpointError(f"{where}: not a JSON object of settings ({type(conf).__name__})")
    if conf.get("model_type") != "gpt_neox":
        raise CheckpointError(f"{where}: model_type is {conf.get('model_type')!r}, not 'gpt_neox'")
    for key in ("hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size"):
        if key not in conf:
            raise CheckpointError(f"{where}: missing key {key!r}")
    d, heads = (
        _number(conf, "hidden_size", where, int),
        _number(conf, "num_attention_heads", where, int),
    )
    layers, vocab = (
        _number(conf, "num_hidden_layers", where, int),
        _number(conf, "vocab_size", where, int),
    )
    act = conf.get("hidden_act", "gelu")
    if not isinstance(act, str) or act not in _GELU:
        raise CheckpointError(f"{where}: unsupported hidden_act {act!r}")
    if conf.get("intermediate_size", 4 * d) != 4 * d:
        raise CheckpointError(f"{where}: intermediate_size must be 4 × hidden_size")
    if conf.get("tie_word_embeddings", False):
        # Loading would untie them, and training then changes a model transformers would not.
        raise CheckpointError(
            f"{where}: tie_word_embeddings is true (the output layer shares embed_in's "
            f"weights), which this GPT-NeoX keeps apart; untie it with transformers first: "
            f"model.config.tie_word_embeddings = False, model.get_output_embeddings().weight = "
            f"torch.nn.Parameter(model.get_input_embeddings().weight.clone()), then "
            f"model.save_pretrained(...)"
        )
    if not conf.get("attention_bias", True):
        raise CheckpointError(
            f"{where}: attention_bias is false (no biases on the attention's projections), "
            f"which this GPT-NeoX does not build: Pythia's and GPT-NeoX-20B's checkpoints have "
            f"them. Load it with transformers' GPTNeoXForCausalLM instead"
        )
    # transformers takes rope_scaling over rope_parameters; before 4.45 it named the type "type".
    rope = conf.get("rope_scaling") or conf.get("rope_parameters") or {}
    if not isinstance(rope, dict):
        raise CheckpointError(f"{where}: rope_scaling / rope_parameters is {rope!r}, not an object")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise CheckpointError(f"{where}: rope type {rope_type!r} is not supported")
    rotary_pct = _rope_value(conf, rope, "rotary_pct", "partial_rotary_factor", 0.25, where)
    base = _rope_value(conf, rope, "rotary_emb_base", "rope_theta", 10000.0, where)
    context = _number(conf, "max_position_embeddings", where, int, 2048)
    eps = _number(conf, "layer_norm_eps", where, float, 1e-5)
    init_std = _number(conf, "initializer_range", where, float, 0.02)
    try:
        return ModelConfig(
            num_layers=layers,
            hidden_size=d,
            num_heads=heads,
            vocab_size=vocab,
            max_seq_len=context,
            rotary_pct=rotary_pct,
            rotary_base=base,
            layernorm_eps=eps,
            parallel_residual=bool(conf.get("use_parallel_residual", True)),
            gelu_approximate=_GELU[act],
            init_std=init_std,
        )
    except ValueError as e:  # sizes that build no model, such as heads that do not divide
        raise CheckpointError(f"{where}: {e}") from None


def _finite(value: int | float) -> bool:
    """Whether ``value`` is a finite float, or an integer within float's range: Python's json
    reads an integer of any length, and math.isfinite raised OverflowError past 1.8e308."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _number(conf: dict, key: str, where: str, kind: type, default=None, value=None):
    """config.json's ``key`` (or ``value``) as ``kind``: a null or a string there ended in a
    TypeError traceback, and a fraction as an integer was cut silently."""
    if value is None:
        value = conf.get(key, default)
    # Python's json reads Infinity and NaN: int() of them raised OverflowError or ValueError
    # tracebacks, and a NaN epsilon built a model of NaNs.
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
    if not ok or (kind is int and value != int(value)):
        want = "an integer" if kind is int else "a number"
        raise CheckpointError(f"{where}: {key} is {json.dumps(value)}, not {want}")
    return kind(value)


def _rope_value(conf: dict, rope: dict, legacy: str, key: str, default: float, where: str):
    """A rotary setting given by the top-level key older transformers read, or in the rope
    dict transformers 5 reads first: two that disagree would build another model in each."""
    old, new = conf.get(legacy), rope.get(key)
    old = None if old is None else _number(conf, legacy, where, float, value=old)
    new = None if new is None else _number(rope, key, where, float, value=new)
    if old is not None and new is not None and old != new:
        raise CheckpointError(
            f"{where}: {legacy} {old} and the rope's {key} {new} disagree (transformers 5 "
            f"reads the rope's, older versions {legacy}); make them equal"
        )
    return next((v for v in (new, old) if v is not None), default)


def _natural(p: Path) -> tuple:
    """step2 before step10."""
    digits = "".join(c for c in p.name if c.isdigit())
    return (p.name.rstrip("0123456789"), int(digits) if digits else -1, p.name)


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: weight file not found")
    try:
        if path.name.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as e:  # every reader has its own error types for a corrupt file
        raise CheckpointError(f"{path}: cannot read weights ({e})") from None


def load_hf_state_dict(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint, legacy buffers removed."""
    d = Path(directory)
    if not d.is_dir():
        why = "no such file or directory" if not d.exists() else "a file, not a directory"
        raise CheckpointError(f"{d}: not a checkpoint directory ({why})")
    for single, index in ((SAFE, SAFE_INDEX), (BIN, BIN_INDEX)):
        if (d / single).is_file():
            state = _load_file(d / single)
            break
        if (d / index).is_file():
            weight_map = _read_json(d / index)
            weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
            if not isinstance(weight_map, dict) or not all(
                isinstance(v, str) for v in weight_map.values()
            ):
                raise CheckpointError(
                    f"{d / index}: no weight_map (an object of tensor name: shard file name)"
                )
            state = {}
            for shard in sorted(set(weight_map.values())):
                state.update(_load_file(d / shard))
            break
    else:
        raise CheckpointError(f"{d}: no {SAFE}, {SAFE_INDEX}, {BIN} or {BIN_INDEX}")
    if "lm_head.weight" in state and "embed_out.weight" not in state:
        # transformers 5 names the output head lm_head in memory; accept files that kept it.
        state["embed_out.weight"] = state.pop("lm_head.weight")
    return {k: v for k, v in state.items() if not k.endswith(_LEGACY_SUFFIXES)}


def _as_dtype(dtype) -> torch.dtype | None:
    """``dtype`` as a torch dtype: also its name ("bfloat16", as transformers' torch_dtype takes
    it), which Tensor.to() read as a device ("Invalid device string: 'bfloat16'")."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    found = getattr(torch, dtype.removeprefix("torch."), None) if isinstance(dtype, str) else None
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise TypeError(
            f"dtype must be a floating-point torch.dtype, such as torch.bfloat16, not {dtype!r}"
        )
    return found


def load_hf(
    directory: str | os.PathLike,
    device=None,
    dtype: torch.dtype | None = None,
    overrides: dict | None = None,
) -> GPTNeoX:
    """A model from a Hugging Face GPT-NeoX checkpoint directory (``dtype``, a torch dtype or
    its name such as "bfloat16": the file's by default).

    ``overrides``: ModelConfig fields that replace config.json's and leave the weights as they
    are, such as ``gelu_approximate`` (Pythia's checkpoints declare the exact GELU, and
    trained with the tanh one) or ``max_seq_len`` (the context, which only sizes the rotary
    table)."""
    dtype = _as_dtype(dtype)
    d = Path(directory)
    if not d.is_dir():
        why = "no such file or directory" if not d.exists() else "a file, not a directory"
        raise CheckpointError(f"{d}: not a checkpoint directory ({why})")
    if not (d / "config.json").is_file():
        # Such as a training run's --save directory, whose checkpoints are its stepN folders.
        # Not the hidden ones: a checkpoint being written (.stepN.partial) or parked by a
        # replace (.stepN.old) is no checkpoint to load.
        found = (p.parent for p in d.glob("*/config.json"))
        inside = sorted((p for p in found if not p.name.startswith(".")), key=_natural)
        if inside:
            names = ", ".join(p.name for p in inside[-3:])
            raise CheckpointError(
                f"{d}: no config.json, not a checkpoint directory; it holds checkpoint "
                f"folders ({'..., ' if len(inside) > 3 else ''}{names}): pass one, such as "
                f"{inside[-1]}"
            )
    cfg = config_from_hf(_read_json(d / "config.json"), str(d / "config.json"))
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    state = load_hf_state_dict(d)
    with torch.device("meta"):
        model = GPTNeoX(cfg)
    expected = set(model.state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise CheckpointError(
            f"{d}: weights do not match config.json "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
        )
    for name, p in model.state_dict().items():
        if tuple(state[name].shape) != tuple(p.shape):
            raise CheckpointError(
                f"{d}: {name} has shape {tuple(state[name].shape)}, config.json implies {tuple(p.shape)}"
            )
        if not state[name].is_floating_point():
            # Cast to float (as --init-from asks for fp32), such ids or flags trained silently.
            raise CheckpointError(
                f"{d}: {name} is stored as {state[name].dtype}, not as floating-point weights"
            )
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    model.load_state_dict(state, assign=True)
    # The rotary table is a non-persistent buffer: rebuild it for real after the meta build.
    from pythia_train.model import RotaryEmbedding

    model.gpt_neox.rotary_emb = RotaryEmbedding(cfg)
    return model.to(device) if device is not None else model


def _atomic_dir(final: Path):
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a file system without it
        return False
    raise OSError(err, os.strerror(err), str(b))


def old_dir(final: Path) -> Path:
    """Where ``replace_dir`` parks the directory it replaces, where it cannot swap."""
    return final.with_name(f".{final.name}.old")


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished temp directory into place; an older ``final`` is replaced.

    The two are swapped in one step where the system can, so a kill leaves either the old
    directory or the new one in place; elsewhere the old one is first parked at
    ``old_dir(final)``, from which ``restore_dir`` brings it back after a kill."""
    if not final.exists():
        os.rename(tmp, final)
    elif _exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)  # now the old directory
    else:
        old = old_dir(final)
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)


def restore_dir(final: Path) -> bool:
    """After a kill inside ``replace_dir``'s fallback: put the parked directory back."""
    old = old_dir(final)
    if final.exists() or not old.is_dir():
        return False
    try:
        os.rename(old, final)
    except FileNotFoundError:
        pass  # another rank of the same job put it back first
    return final.exists()


def share_like_umask(directory: Path) -> None:
    """Give ``directory`` and the files in it the modes the umask allows: temp directories are
    private (0700) and safetensors writes 0600, so colleagues could not read checkpoints."""
    mask = os.umask(0)
    os.umask(mask)
    for root, _dirs, files in os.walk(directory):
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


def write_hf_files(
    directory: Path,
    cfg: ModelConfig,
    state: dict[str, torch.Tensor],
    safe_serialization: bool = True,
    max_shard_bytes: int = 5 * 1024**3,
    eod_id: int = 0,
) -> None:
    """Write config.json and weights (sharded above max_shard_bytes) into an existing directory.

    ``eod_id``: the id of the end-of-document token of the tokenizer written beside them."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    dtype = next(iter(state.values())).dtype
    with open(directory / "config.json", "w", encoding="utf-8") as f:
        json.dump(config_to_hf(cfg, dtype, eod_id), f, indent=2)
        f.write("\n")
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    single, index = (SAFE, SAFE_INDEX) if safe_serialization else (BIN, BIN_INDEX)
    stem, ext = single.split(".", 1)
    names = (
        [single]
        if len(shards) == 1
        else [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.{ext}" for i in range(len(shards))]
    )
    for fname, shard in zip(names, shards, strict=True):
        if safe_serialization:
            from safetensors.torch import save_file

            save_file(shard, str(directory / fname), metadata={"format": "pt"})
        else:
            torch.save(shard, directory / fname)
    if len(shards) > 1:
        total = sum(t.numel() * t.element_size() for t in state.values())
        weight_map = {k: fname for fname, s in zip(names, shards, strict=True) for k in s}
        with open(directory / index, "w", encoding="utf-8") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


#: The tokenizer files a checkpoint holds, as Pythia's Hugging Face repositories ship them.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def token_id(tokenizer_json: str | os.PathLike | bytes, token: str) -> int | None:
    """The id of ``token`` in a ``tokenizer.json`` (its path, or its bytes), as ``tokenizers``'
    ``token_to_id`` finds it: an added token's id, else the model vocabulary's; None if absent."""
    if isinstance(tokenizer_json, bytes):
        conf = json.loads(tokenizer_json)
    else:
        conf = json.loads(Path(tokenizer_json).read_bytes())
    for added in conf.get("added_tokens") or ():
        if added.get("content") == token:
            return int(added["id"])
    vocab = (conf.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):  # BPE, WordPiece, WordLevel
        return int(vocab[token]) if token in vocab else None
    if isinstance(vocab, list):  # Unigram: [piece, score] at each id
        return next((i for i, entry in enumerate(vocab) if entry and entry[0] == token), None)
    return None


def write_tokenizer_files(
    directory: Path, tokenizer_json: str | os.PathLike | bytes, eod: str
) -> None:
    """``tokenizer.json`` (its path, or its bytes) and the two small files beside it that
    transformers' AutoTokenizer reads, so that a checkpoint loads whole (model and tokenizer)
    from its directory. The end-of-document token is also bos, eos and unk, as in Pythia's
    repositories; the class is the generic fast tokenizer, which reads any ``tokenizer.json``."""
    directory = Path(directory)
    if isinstance(tokenizer_json, bytes):
        (directory / "tokenizer.json").write_bytes(tokenizer_json)
    else:
        shutil.copyfile(tokenizer_json, directory / "tokenizer.json")
    special = {"bos_token": eod, "eos_token": eod, "unk_token": eod}
    config = {"add_prefix_space": False, **special, "tokenizer_class": "PreTrainedTokenizerFast"}
    for name, content in (("tokenizer_config.json", config), ("special_tokens_map.json", special)):
        with open(directory / name, "w", encoding="utf-8") as f:
            json.dump(content, f, indent=2)
            f.write("\n")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside torch.compile's and DDP's wrappers, whose state dicts prefix every name
    (``_orig_mod.``, ``module.``): transformers found none of its weights in such a file and
    started from random ones, with only a warning."""
    from torch.nn.parallel import DistributedDataParallel

    while True:
        if isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        elif isinstance(model, DistributedDataParallel):
            model = model.module
        else:
            return model


def _check_replaceable(final: Path) -> None:
    """The whole directory is swapped for the new one: a notebook's save_hf(model, "runs/")
    deleted everything else in runs/, and a path naming a file replaced that file."""
    if final.is_dir():
        weights = any((final / name).is_file() for name in (SAFE, SAFE_INDEX, BIN, BIN_INDEX))
        if ((final / "config.json").is_file() and weights) or not any(final.iterdir()):
            return
        raise CheckpointError(
            f"{final}: not a checkpoint directory (config.json and weights) and not empty; "
            f"saving replaces the whole directory, so pass a new or an empty one, such as "
            f"{final / 'model'}"
        )
    if final.exists() or final.is_symlink():
        raise CheckpointError(f"{final}: exists and is not a directory; pass a directory path")


def save_hf(
    model: GPTNeoX,
    directory: str | os.PathLike,
    safe_serialization: bool = True,
    max_shard_bytes: int = 5 * 1024**3,
    dtype: torch.dtype | None = None,
) -> Path:
    """Save as a HF checkpoint directory, atomically (built beside it, then renamed into place).

    ``model``: a GPTNeoX, or one wrapped by ``torch.compile`` or DistributedDataParallel.
    An existing ``directory`` is replaced whole only if it is a checkpoint (``config.json``
    and weights) or empty; anything else there is refused, not deleted."""
    dtype = _as_dtype(dtype)
    final = Path(directory)
    _check_replaceable(final)
    model = _unwrap(model)
    state = model.state_dict()
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    tmp = _atomic_dir(final)
    try:
        write_hf_files(tmp, model.cfg, state, safe_serialization, max_shard_bytes)
        share_like_umask(tmp)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
