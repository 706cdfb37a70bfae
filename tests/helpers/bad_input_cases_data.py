"""The data rows of docs/bad_input.md (bad_input_cases.py gathers every family): image folders, CIFAR-10, Parquet,
images, and the foreground loss on data without masks."""
from __future__ import annotations

from bad_input_cases_flags import S

DATA = [
    # ---- data ------------------------------------------------------------------------------------------------
    ("imagefolder-missing", "data", "missing image folder",
     "train --set data.source=imagefolder --set data.path=no_such_dir", "data.path",
     "data.path: image folder '$PWD/no_such_dir' does not exist"),
    ("imagefolder-empty", "data", "image folder without class folders",
     "train --set data.source=imagefolder --set data.path=empty_dir", "data.path",
     "data.path: image folder '$PWD/empty_dir' has 0 class folder(s) (none); `classes >= 2` must hold to "
     "classify anything"),
    ("cifar10-missing", "data", "CIFAR-10 root without its batches",
     "train --set data.source=cifar10 --set data.path=imgs", "data.path",
     "data.path: no CIFAR-10 batches under '$PWD/imgs' (expected cifar-10-batches-py/; "
     "pass --set data.download=true to fetch them)"),
    ("parquet-missing", "data", "missing Parquet path",
     "train --set data.source=parquet --set data.path=no_such.parquet", "data.path",
     "data.path: Parquet path '$PWD/no_such.parquet' does not exist"),
    ("parquet-no-image", "data", "Parquet without an image column",
     "train --set data.source=parquet --set data.path=pq_img", "data.image_column",
     "data.image_column: Parquet file part-000.parquet of '$PWD/pq_img' has no column 'image' (columns: img, label)"),
    ("data-path-empty", "data", "`data.path=''` for an image folder (it meant this directory)",
     "train --set data.source=imagefolder --set data.path=''", "data.path",
     "data.path must name an image folder, but got an empty value"),
    ("imagefolder-is-file", "data", "an image folder that is a file",
     "train --set data.source=imagefolder --set data.path=typo.yaml", "data.path",
     "data.path: image folder '$PWD/typo.yaml' is a file; give a directory"),
    ("parquet-fifo", "data", "a named pipe among the Parquet files (reading it would block)",
     "train --set data.source=parquet --set data.path=pq_fifo", "data.path",
     "data.path: zz.parquet under '$PWD/pq_fifo' is a named pipe; every .parquet file of a dataset must be a "
     "regular file"),
    ("imagefolder-shared-link", "data", "two class folders linking one folder (its images in two classes)",
     "train --set data.source=imagefolder --set data.path=imgs_shared", "data.path",
     "data.path: class folders 'class_0' and 'class_1' of '$PWD/imgs_shared' both reach '$PWD/extra' through "
     "symbolic links; each image must belong to one class (link it into one class folder)"),
    ("image-bombs", "data", "every sampled image a decompression bomb (10000x10000 PNGs of 12 kB)",
     "train --set data.source=imagefolder --set data.path=bombs", "data.path",
     "data.path: none of the 8 images sampled from '$PWD/bombs' decodes (first: a/bomb_0.png: 10000x10000 is "
     "100,000,000 pixels; `pixels <= 89,478,485` must hold (a decompression bomb, or far more pixels than "
     "training uses)); images must be encoded PNG/JPEG (or another format Pillow reads)"),
    ("fgbg-imagefolder", "data", "`loss.fgbg_weight > 0` on an image folder",
     "train --set data.source=imagefolder --set data.path=imgs --set loss.fgbg_weight=0.5", "loss.fgbg_weight",
     "loss.fgbg_weight: must be 0 for data.source='imagefolder', which has no foreground masks, but got 0.5"),
    ("fgbg-cifar10", "data", "`loss.fgbg_weight > 0` on CIFAR-10",
     "train --set data.source=cifar10 --set data.path=cifar --set loss.fgbg_weight=0.5", "loss.fgbg_weight",
     "loss.fgbg_weight: must be 0 for data.source='cifar10', which has no foreground masks, but got 0.5"),
    ("fgbg-parquet", "data", "`loss.fgbg_weight > 0` on Parquet without a mask column",
     "train --set data.source=parquet --set data.path=pq --set loss.fgbg_weight=0.5", "loss.fgbg_weight",
     "loss.fgbg_weight: must be 0 for Parquet data without a 'mask' column, but got 0.5"),
    ("fgbg-search", "data", "the same, found by `search` before any trial",
     f"{S} --set data.source=imagefolder --set data.path=imgs --set loss.fgbg_weight=0.5", "loss.fgbg_weight",
     "loss.fgbg_weight: must be 0 for data.source='imagefolder', which has no foreground masks, but got 0.5"),
]
