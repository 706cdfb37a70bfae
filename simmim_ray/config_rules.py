"""The rule of every config field, in one table: `FIELD_RULES` maps each dotted key to its allowed values.

`Config.validate` applies this table first (one field at a time), then the rules that tie fields together
(divisibility, Swin windows, model size). A field without a row here is a bug that tests/unit/test_config_properties.py
reports; its type alone (finite float, real bool, ...) is still checked by `config.coerce`.

Upper bounds are sanity limits, far above any model this project trains: a typo such as `embed_dim=6400000` must
be refused on the driver, not found as an out-of-memory error in every worker after Ray started. Pure Python.
"""
from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass
from typing import Any

from simmim_ray.errors import UserError, excerpt

# numpy's and Optuna's samplers take seeds in [0, 2**32); the engine derives per-epoch seeds as
# seed * 100_003 + epoch * 1009 + rank, which stays far inside torch's 64-bit range from there
SEED_MAX = 2**32 - 1
MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
MAX_TEXT = 4096  # PATH_MAX on Linux; column names are far shorter


@dataclass(frozen=True)
class Range:
    """low (<|<=) value (<|<=) high; either end may be open-ended (None)."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low < value
    high_open: bool = False  # value < high

    def check(self, key: str, v: Any) -> None:
        ok = ((self.low is None or (v > self.low if self.low_open else v >= self.low))
              and (self.high is None or (v < self.high if self.high_open else v <= self.high)))
        if not ok:
            raise UserError(f"`{self.expr(key)}` must hold, but got {excerpt(v)}")

    def expr(self, key: str) -> str:
        lo = "<" if self.low_open else "<="
        hi = "<" if self.high_open else "<="
        if self.high is None:
            return f"{key} {lo.replace('<', '>')} {self.low}"
        if self.low is None:
            return f"{key} {hi} {self.high}"
        return f"{self.low} {lo} {key} {hi} {self.high}"


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]

    def check(self, key: str, v: Any) -> None:
        if v not in self.options:
            raise UserError(f"`{key}` must be one of {', '.join(self.options)}, but got {excerpt(v)}")


@dataclass(frozen=True)
class Text:
    """A string without control characters (they break paths, Parquet column lookups and one-line messages)."""
    nonempty: bool = False
    max_len: int = MAX_TEXT

    def check(self, key: str, v: Any) -> None:
        if self.nonempty and not v:
            raise UserError(f"`{key}` must be a non-empty string")
        if len(v) > self.max_len:
            raise UserError(f"`len({key}) <= {self.max_len}` must hold, but got {len(v)} characters")
        if not v.isprintable():
            raise UserError(f"`{key}` must not hold control characters (line breaks, NUL, ...), "
                            f"but got {excerpt(v)}")


@dataclass(frozen=True)
class Flag:
    """A bool: the type check in `config.coerce` (a real bool, not "true" or 1) is the whole rule."""

    def check(self, key: str, v: Any) -> None:
        return None


@dataclass(frozen=True)
class Items:
    """A list of `min_len`..`max_len` elements, each following `each`."""
    min_len: int
    max_len: int
    each: Range

    def check(self, key: str, v: Any) -> None:
        if not self.min_len <= len(v) <= self.max_len:
            expr = (f"len({key}) == {self.min_len}" if self.min_len == self.max_len
                    else f"{self.min_len} <= len({key}) <= {self.max_len}")
            raise UserError(f"`{expr}` must hold, but got {len(v)} items: {excerpt(v)}")
        for i, x in enumerate(v):
            self.each.check(f"{key}[{i}]", x)


POSITIVE = Range(0, None, low_open=True)
NON_NEGATIVE = Range(0)
FRACTION_OPEN = Range(0, 1, low_open=True, high_open=True)  # 0 < x < 1
SIZE = Range(1, 4096)  # image sizes, patch sizes, windows, in pixels or patches

FIELD_RULES: dict[str, Any] = {
    "seed": Range(0, SEED_MAX),
    "model.arch": Choice(("vit", "swin", "swinv2")),
    "model.img_size": SIZE,
    "model.patch_size": SIZE,
    "model.embed_dim": Range(1, 16_384),
    "model.depth": Range(1, 256),
    "model.num_heads": Range(1, 1024),
    "model.mlp_ratio": Range(0, 64, low_open=True),
    "model.depths": Items(1, 8, Range(1, 256)),
    "model.heads": Items(1, 8, Range(1, 1024)),
    "model.window_size": SIZE,
    "model.drop_path": Range(0, 1, high_open=True),
    "mask.patch_size": SIZE,
    "mask.ratio": FRACTION_OPEN,
    "loss.type": Choice(("l1", "smooth_l1", "l2")),
    "loss.masked_weight": NON_NEGATIVE,
    "loss.visible_weight": NON_NEGATIVE,
    "loss.fgbg_weight": NON_NEGATIVE,
    "loss.norm_target": Flag(),
    "data.source": Choice(("digits", "cifar10", "imagefolder", "parquet")),
    "data.path": Text(),
    "data.download": Flag(),
    "data.test_fraction": FRACTION_OPEN,
    "data.val_fraction": FRACTION_OPEN,
    "data.image_column": Text(nonempty=True, max_len=256),
    "data.label_column": Text(nonempty=True, max_len=256),
    "data.mask_column": Text(nonempty=True, max_len=256),
    "data.loader_workers": Range(0, 256),
    "data.preprocess_nodes": Text(max_len=256),
    "train.epochs": Range(1, MAX_EPOCHS),
    "train.batch_size": Range(1, MAX_BATCH),
    "train.base_lr": POSITIVE,
    "train.min_lr": NON_NEGATIVE,
    "train.warmup_epochs": Range(0, MAX_EPOCHS),
    "train.weight_decay": NON_NEGATIVE,
    "train.betas": Items(2, 2, Range(0, 1, high_open=True)),
    "train.clip_grad": NON_NEGATIVE,  # 0: no clipping
    "train.amp": Flag(),
    "train.log_images": Flag(),
    "train.checkpoint_every": Range(1, MAX_EPOCHS),  # the worker checkpoints when epoch % checkpoint_every == 0
    "eval.protocol": Choice(("finetune", "linear", "knn")),
    "eval.labeled_fraction": FRACTION_OPEN,  # the rest of the training rows is the pre-training pool
    "eval.epochs": Range(0, MAX_EPOCHS),
    "eval.batch_size": Range(1, MAX_BATCH),
    "eval.base_lr": POSITIVE,
    "eval.layer_decay": Range(0, 1, low_open=True),  # lr scale per layer: decay ** depth
    "eval.weight_decay": NON_NEGATIVE,
    "eval.label_smoothing": Range(0, 1, high_open=True),  # cross_entropy refuses smoothing outside [0, 1]
    "eval.knn_k": Range(1, 100_000),
    "eval.proxy": Choice(("knn", "none")),
}


@functools.lru_cache(maxsize=None)
def leaf_fields(cls: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> type annotation of every non-dataclass field under `cls` (the config schema's leaves)."""
    out = {}
    for name, t in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(t):
            out.update(leaf_fields(t, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = t
    return out


def check_fields(cfg: Any) -> None:
    """Applies FIELD_RULES to every field of `cfg` (types were checked when it was built)."""
    for key in leaf_fields(type(cfg)):
        rule = FIELD_RULES.get(key)
        if rule is not None:
            node = cfg
            for part in key.split("."):
                node = getattr(node, part)
            rule.check(key, node)
