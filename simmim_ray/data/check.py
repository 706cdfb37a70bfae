"""Cheap up-front data checks on the driver, so bad paths fail before Ray starts any worker."""
from __future__ import annotations

from simmim_ray.config import Config
from simmim_ray.errors import UserError


def check_data(cfg: Config) -> dict:
    """Raises UserError for a missing path, a Parquet file without its columns, fg/bg loss without masks.

    Returns a small summary (image counts) for the log. Parquet is checked by schema only (no full read).
    """
    d = cfg.data
    if d.source == "parquet":
        import pyarrow.dataset as pads
        import pyarrow.fs as pafs

        try:
            fs, root = pafs.FileSystem.from_uri(d.path) if "://" in d.path else (pafs.LocalFileSystem(), d.path)
            if not d.path or fs.get_file_info(root).type == pafs.FileType.NotFound:
                raise UserError(f"data.path: Parquet path {d.path!r} does not exist")
            schema = pads.dataset(root, filesystem=fs, format="parquet").schema
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001
            raise UserError(f"data.path: cannot read Parquet at {d.path!r}: {str(e).splitlines()[0]}") from None
        for col, key in ((d.image_column, "data.image_column"), (d.label_column, "data.label_column")):
            if col not in schema.names:
                raise UserError(f"{key}: Parquet at {d.path!r} has no column {col!r} "
                                f"(columns: {', '.join(schema.names)})")
        if cfg.loss.fgbg_weight > 0 and d.mask_column not in schema.names:
            raise UserError(f"loss.fgbg_weight: must be 0 for Parquet data without a {d.mask_column!r} column, "
                            f"but got {cfg.loss.fgbg_weight}")
        return {"source": "parquet"}
    from simmim_ray.data.splits import build_splits

    s = build_splits(cfg)
    return {"source": d.source, **s.sizes()}
