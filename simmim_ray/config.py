"""Typed configuration: one dataclass per concern, validated at load time.

Pure Python: no YAML, argparse or Ray here. `Config.from_dict` rejects unknown keys and wrong types;
`Config.validate` checks the cross-field rules (mask patch vs model patch, Swin windows, ...).
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from simmim_ray.errors import UserError


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
    # Small batches: on digits SimMIM is limited by optimiser steps, not images seen (a CPU epoch costs about the
    # same at batch 8 or 64), so 2 workers x 8 at lr 1.25e-3 beat 64 per worker (docs/digits_numbers.md).
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

    # ---- cross-field rules --------------------------------------------------------------------
    def validate(self) -> None:
        m, k, lo, da, tr, ev = self.model, self.mask, self.loss, self.data, self.train, self.eval
        _choice("model.arch", m.arch, ("vit", "swin", "swinv2"))
        _choice("loss.type", lo.type, ("l1", "smooth_l1", "l2"))
        _choice("data.source", da.source, ("digits", "cifar10", "imagefolder", "parquet"))
        _choice("eval.protocol", ev.protocol, ("finetune", "linear", "knn"))
        _choice("eval.proxy", ev.proxy, ("knn", "none"))
        for key, v in (("model.img_size", m.img_size), ("model.patch_size", m.patch_size),
                       ("model.embed_dim", m.embed_dim), ("model.window_size", m.window_size),
                       ("mask.patch_size", k.patch_size), ("train.epochs", tr.epochs),
                       ("train.batch_size", tr.batch_size), ("eval.batch_size", ev.batch_size),
                       ("eval.knn_k", ev.knn_k)):
            _rule(v >= 1, f"`{key} >= 1` must hold, but got {v}")
        _rule(0 < k.ratio < 1, f"`0 < mask.ratio < 1` must hold, but got {k.ratio}")
        _rule(0 < ev.labeled_fraction < 1,
              f"`0 < eval.labeled_fraction < 1` must hold, but got {ev.labeled_fraction}")
        _rule(0 < da.test_fraction < 1, f"`0 < data.test_fraction < 1` must hold, but got {da.test_fraction}")
        _rule(0 < da.val_fraction < 1, f"`0 < data.val_fraction < 1` must hold, but got {da.val_fraction}")
        _rule(da.test_fraction + da.val_fraction < 1,
              f"`data.test_fraction + data.val_fraction < 1` must hold, but got {da.test_fraction} + "
              f"{da.val_fraction}")
        _rule(not da.preprocess_nodes or (da.preprocess_nodes.count("=") == 1
                                          and all(da.preprocess_nodes.split("="))),
              f"`data.preprocess_nodes` must be empty or KEY=VALUE (a Ray node label), but got "
              f"{da.preprocess_nodes!r}")
        _rule(ev.epochs >= 0, f"`eval.epochs >= 0` must hold, but got {ev.epochs}")
        _rule(tr.warmup_epochs >= 0, f"`train.warmup_epochs >= 0` must hold, but got {tr.warmup_epochs}")
        _rule(m.mlp_ratio > 0, f"`model.mlp_ratio > 0` must hold, but got {m.mlp_ratio}")
        _rule(0 <= m.drop_path < 1, f"`0 <= model.drop_path < 1` must hold, but got {m.drop_path}")
        for key, v in (("train.base_lr", tr.base_lr), ("eval.base_lr", ev.base_lr)):
            _rule(v > 0, f"`{key} > 0` must hold, but got {v}")
        for key, v in (("loss.masked_weight", lo.masked_weight), ("loss.visible_weight", lo.visible_weight),
                       ("loss.fgbg_weight", lo.fgbg_weight)):
            _rule(v >= 0 and math.isfinite(v), f"`{key} >= 0` must hold, but got {v}")
        _rule(len(tr.betas) == 2 and all(0 <= b < 1 for b in tr.betas),
              f"`train.betas` must be two numbers in [0, 1), but got {tr.betas}")
        _rule(k.patch_size % m.patch_size == 0,
              f"`mask.patch_size % model.patch_size == 0` must hold, but got {k.patch_size} % {m.patch_size}")
        _rule(m.img_size % k.patch_size == 0,
              f"`model.img_size % mask.patch_size == 0` must hold, but got {m.img_size} % {k.patch_size}")
        if m.arch == "vit":
            _rule(m.depth >= 1, f"`model.depth >= 1` must hold, but got {m.depth}")
            _rule(m.num_heads >= 1 and m.embed_dim % m.num_heads == 0,
                  f"`model.embed_dim % model.num_heads == 0` must hold, but got {m.embed_dim} % {m.num_heads}")
        else:
            _rule(len(m.depths) == len(m.heads) and len(m.depths) >= 1 and min(m.depths) >= 1,
                  f"`model.depths` and `model.heads` must be equally long lists of positive ints, "
                  f"but got {m.depths} and {m.heads}")
            for i, h in enumerate(m.heads):
                width = m.embed_dim * 2 ** i
                _rule(h >= 1 and width % h == 0,
                      f"`model.heads[{i}]` must divide the stage width {width}, but got {h}")
            grid = m.img_size // m.patch_size
            _rule(m.img_size % m.patch_size == 0 and grid % m.window_size == 0,
                  f"`(model.img_size / model.patch_size) % model.window_size == 0` must hold for Swin, "
                  f"but got {m.img_size}/{m.patch_size}={grid} and window {m.window_size}")
            stride = m.patch_size * 2 ** (len(m.depths) - 1)
            _rule(m.img_size % stride == 0,
                  f"`model.img_size % encoder stride == 0` must hold for Swin, but got {m.img_size} % {stride}")


def encoder_stride(m: ModelConfig) -> int:
    return m.patch_size if m.arch == "vit" else m.patch_size * 2 ** (len(m.depths) - 1)


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = d
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            raise UserError(f"unknown config key `{key}`")
        node = node[p]
    if parts[-1] not in node:
        raise UserError(f"unknown config key `{key}`")
    node[parts[-1]] = value


def field_type(key: str) -> Any:
    """Type annotation of a dotted config key, or UserError if no such field."""
    cls: Any = Config
    parts = key.split(".")
    for i, p in enumerate(parts):
        hints = typing.get_type_hints(cls)
        if p not in hints:
            raise UserError(f"unknown config key `{key}`")
        t = hints[p]
        if i < len(parts) - 1:
            if not dataclasses.is_dataclass(t):
                raise UserError(f"unknown config key `{key}`")
            cls = t
    return t


def _build(cls: Any, d: Any, prefix: str) -> Any:
    if not isinstance(d, dict):
        raise UserError(f"`{prefix.rstrip('.') or 'config'}` must be a mapping, but got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if key not in hints:
            raise UserError(f"unknown config key `{name}`")
        t = hints[key]
        if dataclasses.is_dataclass(t):
            kwargs[key] = _build(t, value, name + ".")
        else:
            kwargs[key] = coerce(name, t, value)
    return cls(**kwargs)


def coerce(name: str, t: Any, value: Any) -> Any:
    """Check `value` against annotation `t`; ints are accepted for floats, nothing else is converted."""
    origin = typing.get_origin(t)
    if origin is list:
        (inner,) = typing.get_args(t)
        if not isinstance(value, (list, tuple)):
            raise UserError(f"`{name}` must be a list of {inner.__name__}, but got {value!r}")
        return [coerce(f"{name}[{i}]", inner, v) for i, v in enumerate(value)]
    if t is bool:
        ok = isinstance(value, bool)
    elif t is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif t is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - every field is one of the above
        ok = True
    if not ok:
        raise UserError(f"`{name}` must be {t.__name__}, but got {value!r} ({type(value).__name__})")
    return value


def _choice(key: str, value: str, options: tuple[str, ...]) -> None:
    _rule(value in options, f"`{key}` must be one of {', '.join(options)}, but got {value!r}")


def _rule(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)
