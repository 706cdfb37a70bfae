"""Typed configuration: one dataclass per concern, validated at load time.

Pure Python: no YAML, argparse or Ray here. `Config.from_dict` rejects unknown keys and wrong types;
`Config.validate` checks each field's rule (the table in config_rules.py), then the cross-field rules (mask patch
vs model patch, Swin windows, model size).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from simmim_ray.config_rules import check_fields
from simmim_ray.errors import UserError, excerpt


@dataclass
class ModelConfig:
    arch: str = "vit"  # vit | swin | swinv2
    img_size: int = 32
    patch_size: int = 4
    embed_dim: int = 64
    depth: int = 4  # ViT blocks
    num_heads: int = 4  # ViT heads
    mlp_ratio: float = 2.0
    depths: list[int] = field(default_factory=lambda: [2, 2])  # Swin blocks per stage
    heads: list[int] = field(default_factory=lambda: [2, 4])  # Swin heads per stage
    window_size: int = 4
    drop_path: float = 0.0


@dataclass
class MaskConfig:
    patch_size: int = 8
    ratio: float = 0.6


@dataclass
class LossConfig:
    type: str = "l1"  # l1 | smooth_l1 | l2
    masked_weight: float = 1.0
    visible_weight: float = 0.0  # 0 = the paper
    fgbg_weight: float = 0.0  # foreground/background BCE head; needs data with masks
    norm_target: bool = False  # per-patch normalised target (MAE-style); paper: False


@dataclass
class DataConfig:
    source: str = "digits"  # digits | cifar10 | imagefolder | parquet
    path: str = ""
    download: bool = False  # cifar10 only, and only when the user asks
    # Four disjoint splits (data/splits.py): test and validation are these fractions of all rows (test only where
    # the source has no test split of its own), the rest is training: `eval.labeled_fraction` of it is labelled,
    # the remainder is the unlabelled pre-training pool.
    test_fraction: float = 0.2
    val_fraction: float = 0.2
    image_column: str = "image"
    label_column: str = "label"
    mask_column: str = "mask"
    loader_workers: int = 0
    # Parquet / image folders: Ray node label KEY=VALUE; reading and decoding run only on nodes carrying it (CPU-only
    # preprocessing nodes, e.g. cluster.yaml's cpu.data type). Empty: on any node with a free CPU.
    preprocess_nodes: str = ""


@dataclass
class TrainConfig:
    epochs: int = 30
    # Small batches: on a dataset as small as digits SimMIM is limited by optimiser steps, not images seen, and a
    # CPU epoch costs about the same at batch 8 or 64.
    batch_size: int = 8  # per worker
    base_lr: float = 4e-2  # scaled by global batch / 512: 1.25e-3 at the default 2 workers x 8
    min_lr: float = 1e-5
    warmup_epochs: int = 2
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    clip_grad: float = 5.0
    amp: bool = True  # bf16 autocast, GPU only
    log_images: bool = True
    checkpoint_every: int = 1


@dataclass
class EvalConfig:
    protocol: str = "finetune"  # finetune | linear | knn
    labeled_fraction: float = 0.1  # of the training rows (neither validation nor test); the rest pre-trains
    # ~150 labelled digits: 30 epochs left the classifier under-fitted (train accuracy 60-90%)
    epochs: int = 50
    batch_size: int = 8  # per worker; ~150 labelled digits: small batches give the fine-tune enough steps
    base_lr: float = 1e-1  # scaled by global batch / 512, as in pre-training: 3.1e-3 at 2 workers x 8
    layer_decay: float = 0.75
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    knn_k: int = 10
    proxy: str = "knn"  # per-epoch cheap metric reported for early stopping: knn | none


@dataclass
class Config:
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Config":
        cfg = _build(cls, d or {}, "")
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_overrides(self, overrides: dict[str, Any]) -> "Config":
        """Return a new config with dotted keys (`model.embed_dim`) set; validated."""
        d = self.to_dict()
        for key, value in overrides.items():
            set_dotted(d, key, value)
        return Config.from_dict(d)

    # ---- rules --------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Each field's own rule (config_rules.FIELD_RULES), then the rules that tie fields together."""
        check_fields(self)
        m, k, lo, tr, da = self.model, self.mask, self.loss, self.train, self.data
        _rule(da.test_fraction + da.val_fraction < 1,
              f"`data.test_fraction + data.val_fraction < 1` must hold, but got {da.test_fraction} + "
              f"{da.val_fraction}")
        _rule(not da.preprocess_nodes or (da.preprocess_nodes.count("=") == 1
                                          and all(da.preprocess_nodes.split("="))),
              f"`data.preprocess_nodes` must be empty or KEY=VALUE (a Ray node label), but got "
              f"{da.preprocess_nodes!r}")
        _rule(k.patch_size % m.patch_size == 0,
              f"`mask.patch_size % model.patch_size == 0` must hold, but got {k.patch_size} % {m.patch_size}")
        _rule(m.img_size % k.patch_size == 0,
              f"`model.img_size % mask.patch_size == 0` must hold, but got {m.img_size} % {k.patch_size}")
        _rule(int(m.embed_dim * m.mlp_ratio) >= 1,  # the MLP's hidden width
              f"`int(model.embed_dim * model.mlp_ratio) >= 1` must hold, but got {m.embed_dim} * {m.mlp_ratio}")
        _rule(lo.masked_weight + lo.visible_weight + lo.fgbg_weight > 0,
              "`loss.masked_weight + loss.visible_weight + loss.fgbg_weight > 0` must hold (else nothing is "
              "learned), but got 0")
        _rule(tr.min_lr <= tr.base_lr, f"`train.min_lr <= train.base_lr` must hold, but got {tr.min_lr} > "
                                       f"{tr.base_lr}")
        if m.arch == "vit":
            _rule(m.embed_dim % m.num_heads == 0,
                  f"`model.embed_dim % model.num_heads == 0` must hold, but got {m.embed_dim} % {m.num_heads}")
        else:
            _rule(len(m.depths) == len(m.heads),
                  f"`model.depths` and `model.heads` must be equally long lists of positive ints, "
                  f"but got {m.depths} and {m.heads}")
            _rule(sum(m.depths) >= 2,  # torchvision spreads drop-path over blocks: / (blocks - 1)
                  f"`sum(model.depths) >= 2` must hold for Swin, but got {m.depths}")
            for i, h in enumerate(m.heads):
                width = m.embed_dim * 2 ** i
                _rule(width % h == 0, f"`model.heads[{i}]` must divide the stage width {width}, but got {h}")
            grid = m.img_size // m.patch_size
            _rule(m.img_size % m.patch_size == 0 and grid % m.window_size == 0,
                  f"`(model.img_size / model.patch_size) % model.window_size == 0` must hold for Swin, "
                  f"but got {m.img_size}/{m.patch_size}={grid} and window {m.window_size}")
            stride = m.patch_size * 2 ** (len(m.depths) - 1)
            _rule(m.img_size % stride == 0,
                  f"`model.img_size % encoder stride == 0` must hold for Swin, but got {m.img_size} % {stride}")
        tokens = (m.img_size // m.patch_size) ** 2
        _rule(tokens <= MAX_TOKENS, f"`(model.img_size / model.patch_size)^2 <= {MAX_TOKENS}` tokens must hold, "
                                    f"but got {tokens}")
        params = estimated_params(m)
        _rule(params <= MAX_ENCODER_PARAMS, f"the encoder must have at most {MAX_ENCODER_PARAMS:.0e} parameters, "
                                            f"but this model has about {params:.2g}")


# Sanity limits on the whole model (each field has its own in config_rules.py): attention over more tokens, or an
# encoder over 2 billion parameters, cannot train in this project's settings; refused before any worker starts.
MAX_TOKENS = 65_536
MAX_ENCODER_PARAMS = 2_000_000_000


def estimated_params(m: ModelConfig) -> float:
    """Encoder parameters within about 10% (attention 4 d^2, MLP 2 r d^2 per block, Swin's patch merging)."""
    block = 4 + 2 * m.mlp_ratio
    embed = 3 * m.patch_size ** 2 * m.embed_dim
    if m.arch == "vit":
        return embed + (m.img_size // m.patch_size) ** 2 * m.embed_dim + m.depth * block * m.embed_dim ** 2
    widths = [m.embed_dim * 2 ** i for i in range(len(m.depths))]
    # per block, the relative position bias: a table per head (Swin), a small MLP to the heads (Swin V2)
    bias = [(512 * (3 + h) if m.arch == "swinv2" else (2 * m.window_size - 1) ** 2 * h) for h in m.heads]
    return (embed + sum(d * (block * w * w + b) for d, w, b in zip(m.depths, widths, bias))
            + sum(8 * w * w for w in widths[:-1]))


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = _key_parts(key)
    node = d
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            raise UserError(f"unknown config key `{_short(key)}`")
        node = node[p]
    if parts[-1] not in node:
        raise UserError(f"unknown config key `{_short(key)}`")
    node[parts[-1]] = value


def field_type(key: str) -> Any:
    """Type annotation of a dotted config key, or UserError if no such field."""
    cls: Any = Config
    parts = _key_parts(key)
    for i, p in enumerate(parts):
        hints = _hints(cls)
        if p not in hints:
            raise UserError(f"unknown config key `{_short(key)}`")
        t = hints[p]
        if i < len(parts) - 1:
            if not dataclasses.is_dataclass(t):
                raise UserError(f"unknown config key `{_short(key)}`")
            cls = t
    return t


def _key_parts(key: Any) -> list[str]:
    if not isinstance(key, str):
        raise UserError(f"config keys must be strings like `model.depth`, but got {excerpt(key)} "
                        f"({type(key).__name__})")
    return key.split(".")


def _short(key: str) -> str:
    """A key as the user wrote it, cut short (a key can be anything a YAML file holds)."""
    return excerpt(key)[1:-1] if isinstance(key, str) else excerpt(key)


def _build(cls: Any, d: Any, prefix: str) -> Any:
    if not isinstance(d, dict):
        raise UserError(f"`{prefix.rstrip('.') or 'config'}` must be a mapping, but got {type(d).__name__}")
    hints = _hints(cls)
    kwargs = {}
    for key, value in d.items():
        if not isinstance(key, str):
            raise UserError(f"config keys must be strings, but got {excerpt(key)} ({type(key).__name__}) "
                            f"in `{prefix.rstrip('.') or 'config'}`")
        name = f"{prefix}{key}"
        if key not in hints:
            raise UserError(f"unknown config key `{_short(name)}`")
        t = hints[key]
        if dataclasses.is_dataclass(t):
            kwargs[key] = _build(t, value, name + ".")
        else:
            kwargs[key] = coerce(name, t, value)
    return cls(**kwargs)


@functools.lru_cache(maxsize=None)
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(name: str, t: Any, value: Any) -> Any:
    """Check `value` against annotation `t`. Ints are accepted for floats; nothing else is converted: a bool is
    a real bool (not "true" or 1), a float is finite (no inf, nan, or 1e309 read as inf)."""
    origin = typing.get_origin(t)
    if origin is list:
        (inner,) = typing.get_args(t)
        if not isinstance(value, (list, tuple)):
            raise UserError(f"`{name}` must be a list of {inner.__name__}, but got {excerpt(value)}")
        return [coerce(f"{name}[{i}]", inner, v) for i, v in enumerate(value)]
    if t is bool:
        ok = isinstance(value, bool)
    elif t is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            try:
                value = float(value)
            except OverflowError:  # an int beyond float's range
                value = math.inf
            if not math.isfinite(value):
                raise UserError(f"`{name}` must be a finite number, but got {value}")
    elif t is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - every field is one of the above
        ok = True
    if not ok:
        raise UserError(f"`{name}` must be {t.__name__}, but got {excerpt(value)} ({type(value).__name__})")
    return value


def _rule(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)
