"""Up-front data checks on the driver, before Ray starts: each failure is one line naming the key, column or file
and the rule (UserError, exit 2). The single entry point the CLI calls is `check_data(cfg)`.

Streamed sources (Parquet, image folders) are checked from their label column (or folder names) and a small
sample of images, never read whole: schema, label type (integers only: strings and floats are refused, not
truncated) and range (>= 0), class count (>= 2), rows in every split (and labelled rows of >= 2 classes), and
that sampled images decode (some corrupt images are skipped and counted during training; all corrupt is refused).
"""
from __future__ import annotations

from simmim_ray.config import Config
from simmim_ray.data.scan import scan_cached
from simmim_ray.data.splits import build_splits
from simmim_ray.data.stream_read import sample_images
from simmim_ray.errors import UserError

SAMPLE_UNITS, SAMPLE_ROWS = 4, 4  # images decoded: up to 4 rows from each of up to 4 units, spread over the data


def check_data(cfg: Config) -> dict:
    """Raises UserError for anything a worker would trip over; returns a small summary (image counts) for the log."""
    d = cfg.data
    if d.source not in ("parquet", "imagefolder"):
        s = build_splits(cfg)
        return {"source": d.source, **s.sizes()}
    plan = scan_cached(cfg)
    fgbg_rule(cfg, plan.has_masks)
    empty = [name for name, n in plan.sizes.items() if n == 0]
    sizes = ", ".join(f"{k} {v}" for k, v in plan.sizes.items())
    if empty:
        raise UserError(f"data.path: {d.source} data at {d.path!r} gives empty split(s) {', '.join(empty)} "
                        f"({sizes}); every split must hold images (more rows, or other data.test_fraction / "
                        f"data.val_fraction / eval.labeled_fraction)")
    if plan.labeled_classes < 2:
        raise UserError(f"eval.labeled_fraction: the labelled split of {d.path!r} holds {plan.labeled_classes} "
                        f"class ({sizes}); `labelled classes >= 2` must hold for a classifier to be measured")
    check_sample(plan)
    return {"source": d.source, "classes": plan.num_classes, **plan.sizes}


def fgbg_rule(cfg: Config, has_masks: bool) -> None:
    if cfg.loss.fgbg_weight > 0 and not has_masks:
        what = (f"Parquet data without a {cfg.data.mask_column!r} column" if cfg.data.source == "parquet"
                else f"data.source={cfg.data.source!r}, which has no foreground masks")
        raise UserError(f"loss.fgbg_weight: must be 0 for {what}, but got {cfg.loss.fgbg_weight}")


def check_sample(plan) -> None:
    """Decodes a few images spread over the data; refuses data none of whose sampled images decode, naming the
    first and the rule it broke (image_decode.py: the pixel limit, the modes)."""
    from simmim_ray.data.image_decode import ImageRefused, decode  # simplejpeg: not at the CLI's startup

    step = max(1, len(plan.units) // SAMPLE_UNITS)
    units = plan.units[::step][:SAMPLE_UNITS]
    tried = []
    for where, data in sample_images(plan, units, SAMPLE_ROWS):
        try:
            decode(data)
            return
        except ImageRefused as e:
            tried.append(f"{where}: {e}")
    if tried:
        key = "data.image_column" if plan.source == "parquet" else "data.path"
        raise UserError(f"{key}: none of the {len(tried)} images sampled from {plan.root!r} decodes (first: "
                        f"{tried[0]}); images must be encoded PNG/JPEG (or another format Pillow reads)")
