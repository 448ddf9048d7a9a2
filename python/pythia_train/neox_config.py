"""GPT-NeoX ``.yml`` run configs (Pythia's key names) → our model and training settings.

GPT-NeoX treats ``-`` and ``_`` in keys alike; so do we. Keys outside the ones below (parallelism
layout, fusion switches, tokenizer paths...) do not change what is trained here and are ignored;
``bias-gelu-fusion``, a fusion switch that also picks the GELU, is read.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

__all__ = ["read_neox_config", "SUPPORTED_KEYS"]

# NeoX key → our setting (the CLI option's dest).
_DIRECT = {
    "num_layers": "num_layers",
    "hidden_size": "hidden_size",
    "num_attention_heads": "num_attention_heads",
    "seq_length": "seq_length",
    "max_position_embeddings": "max_seq_len",
    "rotary_pct": "rotary_pct",
    "rotary_emb_base": "rotary_emb_base",
    "gpt_j_residual": "parallel_residual",
    "layernorm_epsilon": "layernorm_eps",
    "init_method": "init_method",
    "output_layer_init_method": "output_layer_init_method",
    "init_method_std": "init_method_std",
    "train_batch_size": "global_batch",
    "train_micro_batch_size_per_gpu": "micro_batch",
    "train_iters": "train_iters",
    "lr_decay_iters": "lr_decay_iters",
    "warmup": "warmup",
    "min_lr": "min_lr",
    "weight_decay": "weight_decay",
    "gradient_clipping": "clip_grad",
    "seed": "seed",
    "checkpoint_factor": "checkpoint_factor",
    "extra_save_iters": "extra_save_iters",
    "save": "save",
    "load": "resume",
    "log_interval": "log_interval",
    "exit_interval": "exit_interval",
    "checkpoint_activations": "activation_checkpointing",
    "padded_vocab_size": "vocab_size",
}
SUPPORTED_KEYS = sorted(
    [*_DIRECT, "optimizer", "fp16", "bf16", "precision", "lr_decay_style", "activation"]
    + ["gradient_accumulation_steps", "gas", "train_data_paths", "data_path", "save_interval"]
    + ["hidden_dropout", "attention_dropout", "no_weight_tying", "pos_emb", "norm", "gpt_j_tied"]
    + ["model_parallel_size", "make_vocab_size_divisible_by", "attention_config"]
    + ["checkpoint_scale", "split", "bias_gelu_fusion"]
)

# Keys whose other values would train another architecture than Pythia's: refused, not ignored.
_FIXED = {
    "hidden_dropout": (0, "no dropout: 0"),
    "attention_dropout": (0, "no dropout: 0"),
    "no_weight_tying": (True, "untied input and output embeddings: true"),
    "pos_emb": ("rotary", "rotary positions"),
    "norm": ("layernorm", "LayerNorm"),
    "gpt_j_tied": (False, "two LayerNorms per layer: false"),
}
_PRECISIONS = ("fp32", "fp16", "bfloat16")
# Architecture keys whose GPT-NeoX default pythia-train cannot build: a model config silent on
# one would train another model under GPT-NeoX, so the run says which it trains.
_SILENT = (
    ("pos_emb", "learned positions", "rotary", '"rotary"'),
    ("no_weight_tying", "tied input and output embeddings", "untied", "true"),
    ("hidden_dropout", "hidden dropout 0.1", "no dropout", "0"),
    ("attention_dropout", "attention dropout 0.1", "no dropout", "0"),
)
# Training settings whose GPT-NeoX (or DeepSpeed) default is not Pythia's: a config that sets
# the optimizer but is silent on one trains otherwise under GPT-NeoX. (config key, the
# pythia-train option, GPT-NeoX's default, pythia-train's default.)
_SILENT_TRAINING = (
    ("min_lr", "min_lr", "0 (the lr decays to 0)", "0.1 x lr, as Pythia's configs"),
    ("weight_decay", "weight_decay", "0.01", "0.1, Pythia's"),
    ("gradient_clipping", "clip_grad", "none (DeepSpeed's 0)", "1.0, Pythia's"),
    ("lr_decay_style", None, "linear", "cosine, Pythia's"),
)

# GPT-NeoX's default split of one data-path into train, valid and test documents.
_DEFAULT_SPLIT = "969, 30, 1"
# The GPT-NeoX-20B tokenizer's size (its get_vocab_size(), added tokens included), which
# GPT-NeoX pads into the embedding's rows when a config gives no padded-vocab-size.
_TOKENIZER_VOCAB = 50277
# Keys that make a config describe a model, whose unset keys then take GPT-NeoX's defaults.
_MODEL_KEYS = ("num_layers", "hidden_size", "num_attention_heads")

# The type GPT-NeoX's NeoXArgs declares for each key we read. As there, an int is accepted where
# a float is expected; nothing else is converted (a quoted "2" or "false" is an error).
_INT = {
    "num_layers",
    "hidden_size",
    "num_attention_heads",
    "seq_length",
    "max_position_embeddings",
    "train_batch_size",
    "train_micro_batch_size_per_gpu",
    "train_iters",
    "lr_decay_iters",
    "seed",
    "checkpoint_factor",
    "log_interval",
    "exit_interval",
    "save_interval",
    "padded_vocab_size",
    "gradient_accumulation_steps",
    "gas",
    "model_parallel_size",
    "make_vocab_size_divisible_by",
}
_FLOAT = {
    "rotary_pct",
    "rotary_emb_base",
    "layernorm_epsilon",
    "init_method_std",
    "warmup",
    "min_lr",
    "weight_decay",
    "gradient_clipping",
}
_BOOL = {"gpt_j_residual", "checkpoint_activations", "bias_gelu_fusion"}
_STR = {
    "init_method",
    "output_layer_init_method",
    "save",
    "load",
    "lr_decay_style",
    "activation",
    "precision",
    "data_path",
    "split",
}
_INT_LIST = {"extra_save_iters"}
_STR_LIST = {"train_data_paths"}


def _type_error(p: Path, key: str, want: str, value) -> ValueError:
    return ValueError(f"{p}: {key.replace('_', '-')} must be {want}, got {value!r}")


def _check_value(p: Path, key: str, value, kind: str):
    """``value`` as ``kind`` ("int", "float", "bool", "str", "int list", "str list")."""
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(p, key, "an integer", value)
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(p, key, "a number", value)
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise _type_error(p, key, "true or false (unquoted)", value)
    elif kind == "str":
        if not isinstance(value, str):
            raise _type_error(p, key, "a string", value)
    elif kind == "int list":
        if not isinstance(value, list) or any(
            isinstance(v, bool) or not isinstance(v, int) for v in value
        ):
            raise _type_error(p, key, "a list of integers", value)
    elif kind == "str list":
        if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
            raise _type_error(p, key, "a list of paths", value)
    return value


def _kind(key: str) -> str | None:
    for kind, keys in (
        ("int", _INT),
        ("float", _FLOAT),
        ("bool", _BOOL),
        ("str", _STR),
        ("int list", _INT_LIST),
        ("str list", _STR_LIST),
    ):
        if key in keys:
            return kind
    return None


def _loader():
    """PyYAML's SafeLoader, reading ``1e-3`` as a number like GPT-NeoX's configs mean it
    (YAML 1.1 needs a dot: PyYAML alone reads ``1e-3`` as a string)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            # YAML keeps the last of two equal keys; a run config must not lose one silently.
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep)

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    return Loader


def _norm(key: str) -> str:
    return key.replace("-", "_")


def read_neox_config(
    path: str | os.PathLike, world_size: int = 1, run_precision: str | None = None
) -> dict:
    """Settings from one GPT-NeoX yml file, keyed by pythia-train's option names; ``notes``
    (when there are any) lists what the caller should show, such as a key that looks misspelt.
    ``run_precision``: the one the command line gives, which wins over the config's (its fp16
    settings then do not apply unless it is fp16)."""
    import yaml

    p = Path(path)
    try:
        raw = yaml.load(p.read_text(encoding="utf-8"), Loader=_loader())  # noqa: S506 - safe
    except FileNotFoundError:
        raise ValueError(f"{p}: config file not found") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML ({' '.join(str(e).split())})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: cannot read ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{p}: expected a mapping of GPT-NeoX keys")
    conf: dict = {}
    for k, v in raw.items():
        key = _norm(str(k))
        if key in conf and conf[key] != v:
            raise ValueError(
                f"{p}: {key.replace('_', '-')} is given twice, as {conf[key]!r} and {v!r}"
            )
        conf[key] = v
    if conf.get("save_interval") is not None:
        # GPT-NeoX v1.0's name (the Pythia configs' "save-interval") for the checkpoint factor.
        other = conf.get("checkpoint_factor")
        if other is not None and other != conf["save_interval"]:
            raise ValueError(
                f"{p}: save-interval {conf['save_interval']!r} and checkpoint-factor "
                f"{other!r} disagree; give one"
            )
        conf["checkpoint_factor"] = conf["save_interval"]
    # GPT-NeoX refuses a key it does not know; most of its keys change nothing here and are
    # ignored, so only a key within a typo of one we read is named (train-iter for train-iters
    # trained the whole default length). No GPT-NeoX key is this close to one of ours.
    notes = [
        f"{p}: {key.replace('_', '-')} is no key pythia-train reads, so it is ignored; did you "
        f"mean {near[0].replace('_', '-')}?"
        for key in conf
        if key not in SUPPORTED_KEYS
        and (near := difflib.get_close_matches(key, SUPPORTED_KEYS, n=1, cutoff=0.86))
    ]
    for key, (supported, what) in _FIXED.items():
        if conf.get(key) is not None and conf[key] != supported:
            raise ValueError(
                f"{p}: {key.replace('_', '-')} {conf[key]!r} is not supported: pythia-train "
                f"trains Pythia's architecture ({what})"
            )
    for key, value in conf.items():
        kind = _kind(key)
        if kind is not None and value is not None:
            conf[key] = _check_value(p, key, value, kind)
    out: dict = {}
    for key, dest in _DIRECT.items():
        if key in conf and conf[key] is not None:
            out[dest] = conf[key]
    if conf.get("bias_gelu_fusion") is not None:
        # GPT-NeoX's fused bias+GELU kernel is the tanh approximation; without it the MLP runs
        # F.gelu, the exact one. Read as a fusion switch (ignored), a config saying false
        # trained the --gelu default, tanh, where GPT-NeoX trains the exact GELU.
        out["gelu"] = "tanh" if conf["bias_gelu_fusion"] else "exact"
    opt = conf.get("optimizer")
    if opt is not None and not isinstance(opt, dict):
        raise _type_error(p, "optimizer", 'a mapping like {"type": "Adam", "params": {...}}', opt)
    if isinstance(opt, dict):
        kind = str(opt.get("type", "adam")).lower()
        if kind not in ("adam", "adamw"):
            raise ValueError(f"{p}: optimizer type {opt.get('type')!r} is not supported (Adam)")
        params = opt.get("params") or {}
        if not isinstance(params, dict):
            raise _type_error(p, "optimizer params", "a mapping", params)
        for k in ("lr", "eps"):
            if params.get(k) is not None:
                out[k] = _check_value(p, f"optimizer params {k}", params[k], "float")
        betas = params.get("betas")
        if betas is not None:
            if (
                not isinstance(betas, list)
                or len(betas) != 2
                or any(isinstance(b, bool) or not isinstance(b, int | float) for b in betas)
            ):
                raise _type_error(p, "optimizer params betas", "a list of two numbers", betas)
            out["betas"] = tuple(float(b) for b in betas)
    style = conf.get("lr_decay_style", "cosine")
    if style != "cosine":
        raise ValueError(f"{p}: lr_decay_style {style!r} is not supported (cosine)")
    precision = conf.get("precision")
    if precision is not None and precision not in _PRECISIONS:
        raise ValueError(
            f"{p}: precision {precision!r} is not one of GPT-NeoX's: {', '.join(_PRECISIONS)}"
        )
    fp16 = _section(p, conf, "fp16")
    bf16 = _section(p, conf, "bf16")
    bf16_on = _flag(p, "bf16 enabled", bf16.get("enabled", False))
    bf16_on = bf16_on or conf.get("precision") == "bfloat16"
    fp16_on = _flag(p, "fp16 enabled", fp16.get("enabled", fp16.get("fp16", False)))
    fp16_on = fp16_on or conf.get("precision") == "fp16"
    if bf16_on and fp16_on:
        raise ValueError(f"{p}: both fp16 and bf16 are enabled; enable at most one")
    if precision is not None:
        named = {"fp32": "fp32", "fp16": "fp16", "bfloat16": "bf16"}[precision]
        for section, on, name in ((fp16, fp16_on, "fp16"), (bf16, bf16_on, "bf16")):
            enabled = section.get("enabled")
            if (on and named != name) or (enabled is False and named == name):
                raise ValueError(
                    f"{p}: precision {precision!r} and {name} enabled: {enabled} disagree; give one"
                )
    if bf16_on:
        out["precision"] = "bf16"
    elif fp16_on:
        out["precision"] = "fp16"
        for k in ("initial_scale_power", "loss_scale_window"):
            if fp16.get(k) is not None:
                out[k] = _check_value(p, f"fp16 {k}", fp16[k], "int")
        # DeepSpeed's loss_scale above 0 is a static scale; dynamic scaling ran instead.
        static = fp16.get("loss_scale")
        is_static = static is not None and _check_value(p, "fp16 loss_scale", static, "float")
        # Not for a run that --precision makes bf16 or fp32: nothing is scaled there (as the
        # hysteresis note below is only shown for an fp16 run).
        if is_static and run_precision in (None, "fp16"):
            raise ValueError(
                f"{p}: fp16 loss_scale {static} (a static loss scale) is not supported: "
                f"pythia-train scales the loss dynamically; give loss_scale 0"
            )
        hysteresis = fp16.get("hysteresis", 2)  # DeepSpeed's default, and Pythia's
        if _check_value(p, "fp16 hysteresis", hysteresis, "int") > 1:
            # Noted by the caller when the run is fp16 (a --precision given there wins).
            out["fp16_hysteresis_note"] = (
                f"{p}: fp16 hysteresis {hysteresis} is not followed: pythia-train lowers the "
                f"loss scale at every overflow (hysteresis 1), where DeepSpeed keeps it through "
                f"the first {hysteresis - 1} overflow(s) since it last rose"
            )
    _check_attention_config(p, conf.get("attention_config"))
    scale = conf.get("checkpoint_scale")
    if scale is not None and scale != "linear":
        raise ValueError(
            f"{p}: checkpoint-scale {scale!r} is not supported: pythia-train saves every "
            f"checkpoint-factor steps (linear) and at extra-save-iters; list the steps there"
        )
    if "activation" in conf:
        act = conf["activation"]
        if act not in ("gelu",):
            raise ValueError(f"{p}: activation {act!r} is not supported (gelu)")
    gas = conf.get("gradient_accumulation_steps", conf.get("gas"))
    if gas is None and "micro_batch" in out and "global_batch" not in out:
        # DeepSpeed's rule for a micro batch given alone: no accumulation, so the global batch
        # is micro × ranks (pythia-train's default 1024 accumulated another run's batch).
        gas = 1
        out["grad_accum_implied"] = True
    if gas is not None:
        # The global batch is micro × gas × ranks, with the micro batch that the command line
        # may still change: the caller reckons it (pythia-train's CLI does).
        out["grad_accum"] = int(gas)
    if gas is not None and "micro_batch" in out and "global_batch" in out:
        implied = int(out["micro_batch"]) * int(gas) * world_size
        if out["global_batch"] != implied:
            # DeepSpeed refuses this too: the three must agree on the ranks at hand.
            raise ValueError(
                f"{p}: train-batch-size {out['global_batch']} is not train-micro-batch-size-"
                f"per-gpu {out['micro_batch']} × gradient-accumulation-steps {gas} × "
                f"{world_size} data-parallel ranks ({implied}); drop one of them or make "
                f"them agree"
            )
    paths = conf.get("train_data_paths") or ([conf["data_path"]] if conf.get("data_path") else None)
    if paths:
        if len(paths) != 1:
            raise ValueError(f"{p}: {len(paths)} train data paths; blending is not supported")
        out["data"] = paths[0]
    if not conf.get("train_data_paths") and conf.get("data_path"):
        # GPT-NeoX trains on data-path's first documents only, cut by its split (default
        # "969, 30, 1"), named "train" and sized train-iters × batch without the 1.005 margin
        # that train-data-paths get: the rows differ from those of the whole dataset.
        out["data_split"] = conf.get("split") or _DEFAULT_SPLIT
    if "extra_save_iters" in out:
        out["extra_save_iters"] = tuple(out["extra_save_iters"])
    if any(conf.get(k) is not None for k in _MODEL_KEYS):
        # What GPT-NeoX builds where a model config is silent (Pythia's 6.9b and 12b configs
        # are): otherwise the base --model's vocabulary and initialisation were trained.
        out.setdefault("init_method", "normal")
        out.setdefault("output_layer_init_method", "scaled_normal")
        out.setdefault("vocab_size", _padded_vocab(p, conf))
        # Rotary on every channel of a head and the sequential residual, as GPT-NeoX builds them
        # (GPT-NeoX's own configs/125M.yml names no rotary-pct: the base --model's 0.25 was
        # trained instead).
        out.setdefault("rotary_pct", 1.0)
        out.setdefault("parallel_residual", False)
        # GPT-NeoX's bias-gelu-fusion is false by default: the exact GELU (configs/125M.yml).
        out.setdefault("gelu", "exact")
        notes += [
            f"{p}: {key.replace('_', '-')} is not given, so GPT-NeoX would build {what}; "
            f"pythia-train builds Pythia's ({ours}): add {key.replace('_', '-')}: {value} "
            f"to the config to say so"
            for key, what, ours, value in _SILENT
            if conf.get(key) is None
        ]
    if isinstance(opt, dict):
        # Said by the caller, which knows which of them the command line sets.
        out["silent_training"] = [
            (key, option, theirs, ours)
            for key, option, theirs, ours in _SILENT_TRAINING
            if conf.get(key) is None
        ]
    if notes:
        out["notes"] = notes
    if "rotary_pct" in out and not 0 <= out["rotary_pct"] <= 1:
        raise ValueError(f"{p}: rotary-pct must be in [0, 1], got {out['rotary_pct']}")
    if out.get("warmup", 0) < 0:
        raise ValueError(f"{p}: warmup must be a fraction >= 0, got {out['warmup']}")
    if "min_lr" in out and "lr" in out and out["min_lr"] > out["lr"]:
        raise ValueError(f"{p}: min_lr {out['min_lr']} is above the optimizer's lr {out['lr']}")
    return out


def _check_attention_config(p: Path, value) -> None:
    """GPT-NeoX's attention-config ([[["flash"], 12]], or expanded: ["flash", "flash", ...]):
    only full causal attention ("global", or "flash", its fused kernel) is Pythia's; local or
    sparse layers were ignored."""
    if value is None:
        return
    kinds = None
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        # GPT-NeoX's expand_attention_types takes a list of strings as already expanded (one
        # type per layer): refusing it as malformed refused a valid full-attention config.
        kinds = set(value)
    elif isinstance(value, list) and all(
        isinstance(item, list) and len(item) == 2 and isinstance(item[0], list) for item in value
    ):
        kinds = {k for item in value for k in item[0]}
    if kinds is None:
        raise _type_error(
            p, "attention_config", 'a list like [[["flash"], 12]] or ["flash", "flash"]', value
        )
    other = sorted(str(k) for k in kinds - {"global", "flash"})
    if other:
        raise ValueError(
            f"{p}: attention-config {', '.join(other)} is not supported: pythia-train trains "
            f"full causal attention (global or flash) in every layer"
        )


def _padded_vocab(p: Path, conf: dict) -> int:
    """GPT-NeoX's padded vocabulary: the tokenizer's size rounded up to a multiple of
    make-vocab-size-divisible-by × model-parallel-size (pythia-6.9b: 50432, 12b: 50688)."""
    multiple = 1
    for key, default in (("make_vocab_size_divisible_by", 128), ("model_parallel_size", 1)):
        value = conf.get(key)
        value = default if value is None else value
        if value < 1:
            raise ValueError(f"{p}: {key.replace('_', '-')} must be at least 1, got {value}")
        multiple *= value
    return -(-_TOKENIZER_VOCAB // multiple) * multiple


def _section(p: Path, conf: dict, key: str) -> dict:
    value = conf.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _type_error(p, key, 'a mapping like {"enabled": true}', value)
    return value


def _flag(p: Path, key: str, value) -> bool:
    return _check_value(p, key, value, "bool")
